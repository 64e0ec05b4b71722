//! What the commands and the demo share: the item type, opening a client,
//! syncing with a progress bar, and printing push results and errors.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::PullProgress;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use tidesync::{
    ApiKey, ChangeEvent, Client, Error, Item, OperationError, Protocol, PullOptions, PushResult,
    PushStatus, Query, RetryPolicy, SyncItem, TransportError,
};

/// The table of the tutorial.
pub const TABLE: &str = TodoItem::TABLE;
/// The incremental pull's query id, as in the tutorial.
pub const QUERY_ID: &str = "allTodoItems";

/// One todo item, as the app sees it; the local table is defined from this type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SyncItem)]
#[tidesync(table = "TodoItem")]
pub struct TodoItem {
    /// The id (32 hex digits, given by the engine on insert).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What to do.
    #[serde(default, deserialize_with = "null_as_default")]
    pub text: String,
    /// Done or not.
    #[serde(default, deserialize_with = "null_as_default")]
    pub complete: bool,
    /// The server's version of the item (absent until it was pushed or pulled);
    /// kept so that an update is sent conditioned on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl TodoItem {
    /// A new, not yet completed item.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            id: None,
            text: text.into(),
            complete: false,
            version: None,
        }
    }

    /// The id, or an empty string for an item that has none yet.
    pub fn id(&self) -> &str {
        self.id.as_deref().unwrap_or("")
    }
}

/// Which local store file format to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// One SQLite file.
    Sqlite,
    /// One redb file (pure Rust).
    Redb,
}

/// Which table protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolArg {
    /// Ask the server (v3 when a tidesync server offers it, else v2).
    Auto,
    /// Azure Mobile Apps (`ZUMO-API-VERSION: 2.0.0`).
    V2,
    /// Datasync (`ZUMO-API-VERSION: 3.0.0`).
    V3,
}

impl From<ProtocolArg> for Protocol {
    fn from(value: ProtocolArg) -> Self {
        match value {
            ProtocolArg::Auto => Protocol::Auto,
            ProtocolArg::V2 => Protocol::V2,
            ProtocolArg::V3 => Protocol::V3,
        }
    }
}

/// Where a client keeps its data and which server it talks to.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The local store file.
    pub db: PathBuf,
    /// The server's base URL.
    pub url: String,
    /// The store format.
    pub store: StoreKind,
    /// The protocol.
    pub protocol: ProtocolArg,
    /// An API key sent in `X-API-KEY`, if any.
    pub api_key: Option<String>,
}

/// Opens the local store and wires it to the server. No request is made, so
/// this works offline.
pub fn open(conn: &Connection) -> Result<Client> {
    // Short limits: a CLI run offline should come back in a moment, and the
    // queue keeps whatever could not be sent for the next run.
    let mut builder = Client::builder()
        .define::<TodoItem>()
        .url(&conn.url)
        .with_context(|| format!("server url {:?}", conn.url))?
        .protocol(conn.protocol.into())
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .retry(RetryPolicy {
            max_retries: 1,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(1),
        })
        .user_agent(concat!("tidesync-todo/", env!("CARGO_PKG_VERSION")));
    if let Some(key) = &conn.api_key {
        builder = builder.auth(ApiKey::new(key.clone()));
    }
    let what = || format!("cannot open the local store {}", conn.db.display());
    let builder = match conn.store {
        StoreKind::Sqlite => {
            builder.store(tidesync::SqliteStore::open(&conn.db).with_context(what)?)
        }
        StoreKind::Redb => builder.store(tidesync::RedbStore::open(&conn.db).with_context(what)?),
    };
    Ok(builder.build()?)
}

/// Every local item, ordered by text then id.
pub async fn list(client: &Client) -> Result<Vec<TodoItem>> {
    let todo = client.sync_table::<TodoItem>();
    Ok(todo.query(&list_order()).await?)
}

/// The local item whose id is `id`, or the only one whose id starts with it.
pub async fn find(client: &Client, id: &str) -> Result<TodoItem> {
    let todo = client.sync_table::<TodoItem>();
    if let Some(item) = todo.get(id).await? {
        return Ok(item);
    }
    let mut matches: Vec<TodoItem> = list(client)
        .await?
        .into_iter()
        .filter(|item| !id.is_empty() && item.id().starts_with(id))
        .collect();
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => bail!("no item with id {id}"),
        n => bail!("{n} items have an id starting with {id}; give more of it"),
    }
}

/// Marks an item complete locally (and queues the update).
pub async fn complete(client: &Client, id: &str) -> Result<TodoItem> {
    let item = find(client, id).await?;
    Ok(client
        .sync_table::<TodoItem>()
        .update_with(item.id(), |item| item.complete = true)
        .await?)
}

/// How a pull went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pulled {
    /// Rows received.
    Rows(u64),
    /// Not tried, or refused, because local changes could not all be pushed.
    Skipped,
    /// No answer from the server.
    NetworkError(String),
}

/// What a sync (push, then pull) did.
#[derive(Debug, Clone)]
pub struct SyncReport {
    /// The push.
    pub push: PushResult,
    /// The pull.
    pub pulled: Pulled,
    /// The error records left in the store (conflicts and other per-item failures).
    pub errors: Vec<OperationError>,
}

/// How a sync ended, as the `sync` command's exit code tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Everything was pushed and pulled.
    Complete,
    /// The server could not be reached (exit 2).
    Network,
    /// Conflicts or other per-item errors remain (exit 3).
    ItemErrors,
    /// Something else stopped the push (exit 1).
    Other,
}

impl SyncReport {
    /// The verdict.
    pub fn verdict(&self) -> Verdict {
        match self.push.status {
            PushStatus::Complete => {}
            PushStatus::CancelledByNetworkError => return Verdict::Network,
            _ => return Verdict::Other,
        }
        if matches!(self.pulled, Pulled::NetworkError(_)) {
            Verdict::Network
        } else if !self.errors.is_empty() {
            Verdict::ItemErrors
        } else if self.pulled == Pulled::Skipped {
            Verdict::Other
        } else {
            Verdict::Complete
        }
    }

    /// The result lines: `push: <status>`, the pull, then one line per error.
    pub fn lines(&self, client: &Client) -> Vec<String> {
        let mut lines = vec![format!("push: {}", self.push.status)];
        if let Some(other) = &self.push.other_error {
            lines.push(format!("push failed: {other}"));
        }
        lines.push(match &self.pulled {
            Pulled::Rows(n) => format!("pulled: {n}"),
            Pulled::Skipped => "pulled: skipped (not every change could be pushed)".to_owned(),
            Pulled::NetworkError(e) => format!("pulled: failed ({e})"),
        });
        lines.extend(self.errors.iter().map(|e| describe_error(client, e)));
        lines
    }
}

/// The order `todo list` shows.
fn list_order() -> Query {
    Query::all().order_by("text").order_by("id")
}

/// A progress bar on stderr (drawn only when stderr is a terminal): a bar when
/// the total is known, a spinner with a count otherwise.
pub fn progress_bar(len: Option<u64>, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    let template = if len.is_some() {
        "{spinner} {msg:5} [{bar:30}] {pos}/{len}"
    } else {
        "{spinner} {msg:5} {pos} rows"
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Pushes every queued change, with a progress bar counting ops.
pub async fn push(client: &Client) -> Result<PushResult> {
    let bar = progress_bar(Some(client.pending_operations()?), "push");
    let mut events = client.subscribe();
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                if matches!(
                    event,
                    ChangeEvent::Pushed { .. } | ChangeEvent::PushFailed { .. }
                ) {
                    bar.inc(1);
                }
            }
        })
    };
    let result = client.push().await;
    ticker.abort();
    bar.finish_and_clear();
    Ok(result?)
}

/// Rows of the first screen: on a first sync the rows `todo list` shows first
/// are pulled before the rest of the table.
const FIRST_SCREEN: u64 = 50;

/// Pulls the table (query id `allTodoItems`) with its progress on stderr (a bar on a
/// terminal, plain lines otherwise). On a first sync the first screen of `todo list`
/// (by text) comes first. Pending changes of the table are pushed first by the engine.
pub async fn pull(client: &Client) -> Result<Result<tidesync::PullResult, Error>> {
    let progress = PullProgress::follow(client, TABLE);
    let options = PullOptions::default().first_screen(list_order().order_by, FIRST_SCREEN);
    let result = client
        .table::<TodoItem>(TABLE)
        .pull_with(QUERY_ID, Query::all(), options)
        .await;
    progress.done().await;
    Ok(result)
}

/// True for failures that mean "no usable answer from the server".
pub fn is_network(error: &Error) -> bool {
    match error {
        Error::Transport(TransportError::Network(_)) => true,
        Error::Transport(e) => e.is_retryable(),
        _ => false,
    }
}

/// Push, then (when the push went through) pull: the tutorial's sync.
pub async fn sync(client: &Client) -> Result<SyncReport> {
    let pushed = push(client).await?;
    let pulled = if pushed.status == PushStatus::Complete && pushed.errors.is_empty() {
        match pull(client).await? {
            Ok(result) => Pulled::Rows(result.received()),
            Err(Error::PushFailed(again)) => {
                // Something was written between our push and the pull and could
                // not be sent; report that push instead.
                return Ok(SyncReport {
                    push: *again,
                    pulled: Pulled::Skipped,
                    errors: client.operation_errors()?,
                });
            }
            Err(e) if is_network(&e) => Pulled::NetworkError(e.to_string()),
            Err(e) => return Err(e).context("pull failed"),
        }
    } else {
        Pulled::Skipped
    };
    Ok(SyncReport {
        push: pushed,
        pulled,
        errors: client.operation_errors()?,
    })
}

/// The user's fields of an item as compact JSON (`{"text":…,"complete":…}`), or `-`.
pub fn values(item: Option<&Item>) -> String {
    let Some(item) = item else {
        return "-".to_owned();
    };
    let field = |key: &str| item.get(key).cloned().unwrap_or(Value::Null);
    format!(
        "{{\"text\":{},\"complete\":{}}}",
        field("text"),
        field("complete")
    )
}

/// One line for an error record: `conflict: …` for 409/412, `error: …` otherwise,
/// with the item, the local values and the server's values.
pub fn describe_error(client: &Client, error: &OperationError) -> String {
    let local = client.get(&error.table, &error.item_id).ok().flatten();
    let local = local.as_ref().or(error.item.as_ref());
    let status = error
        .status
        .map_or_else(|| "no status".to_owned(), |s| format!("HTTP {s}"));
    if error.is_conflict() {
        format!(
            "conflict: {} ({:?}, {status}) local {} server {}",
            error.item_id,
            error.kind,
            values(local),
            values(error.server_item.as_ref()),
        )
    } else {
        format!(
            "error: {} ({:?}, {status}: {}) local {} server {}",
            error.item_id,
            error.kind,
            error.message,
            values(local),
            values(error.server_item.as_ref()),
        )
    }
}

/// The error record of the item `id` (or of the only one whose id starts with it).
pub fn find_error(client: &Client, id: &str) -> Result<OperationError> {
    let errors = client.operation_errors()?;
    if let Some(error) = errors.iter().find(|e| e.item_id == id) {
        return Ok(error.clone());
    }
    let mut matches: Vec<OperationError> = errors
        .into_iter()
        .filter(|e| !id.is_empty() && e.item_id.starts_with(id))
        .collect();
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => bail!("no conflict or error for item {id} (see `todo conflicts`)"),
        n => bail!("{n} errors are about items whose id starts with {id}; give more of it"),
    }
}

/// Which side wins a resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Send the local values again, over the server's version.
    Local,
    /// Take the server's values and drop the local change.
    Server,
}

/// Resolves the error of item `id`; returns a description of what was done.
pub fn resolve(client: &Client, id: &str, keep: Keep) -> Result<String> {
    let error = find_error(client, id)?;
    match keep {
        Keep::Server => match &error.server_item {
            Some(server) => {
                client.cancel_and_update(&error, server.clone())?;
                Ok(format!(
                    "resolved: {} kept the server's values {}",
                    error.item_id,
                    values(Some(server))
                ))
            }
            None => {
                client.cancel_and_discard(&error)?;
                Ok(format!(
                    "resolved: {} dropped the local change (the server sent no copy)",
                    error.item_id
                ))
            }
        },
        Keep::Local => {
            let mut local = client
                .get(&error.table, &error.item_id)?
                .or_else(|| error.item.clone())
                .unwrap_or_default();
            let version = error
                .server_item
                .as_ref()
                .and_then(|s| s.get("version"))
                .cloned()
                .unwrap_or(Value::Null);
            local.insert("version".to_owned(), version);
            let shown = values(Some(&local));
            client.update_and_retry(&error, local)?;
            Ok(format!(
                "resolved: {} keeps the local values {shown} (queued to overwrite the server's)",
                error.item_id
            ))
        }
    }
}
