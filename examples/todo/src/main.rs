//! `todo`: the Azure Mobile Apps offline tutorial (a todo list that keeps
//! working without a network) rebuilt as a command-line app on tidesync.
//!
//! Every command reads and writes a local store file (`--db`, SQLite by
//! default); `add` and `complete` then sync the way the tutorial app does after
//! each save, and never fail because the server is unreachable: the change
//! stays queued until a later `sync`. `todo demo` runs the whole tutorial in one
//! process against an in-process `tidesync-server`.
//!
//! Results go to stdout; logs (`RUST_LOG`) and progress bars go to stderr.
//! `sync` and `pull` exit 0 when everything completed, 2 when the server could
//! not be reached, 3 when conflicts or other per-item errors remain, and 1 on
//! any other failure. See `examples/todo/README.md` for a walkthrough.

mod app;
mod demo;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tidesync::{Client, Error};

use crate::app::{Connection, Keep, ProtocolArg, Pulled, StoreKind, TodoItem, Verdict};

/// The tidesync todo list: works offline, syncs when the server is reachable.
#[derive(Debug, Parser)]
#[command(name = "todo", version, about)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct Global {
    /// The local store file.
    #[arg(long, global = true, value_name = "PATH", default_value = "todo.db")]
    db: PathBuf,
    /// The sync server's URL.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// The local store's format.
    #[arg(long, global = true, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// The table protocol to speak.
    #[arg(long, global = true, value_enum, default_value_t = ProtocolArg::Auto)]
    protocol: ProtocolArg,
    /// An API key for the server (sent as `X-API-KEY`).
    #[arg(long, global = true, value_name = "K")]
    api_key: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Add an item locally, then sync (the local write succeeds even offline).
    Add {
        /// What to do.
        text: String,
        /// Only write locally; the change stays queued.
        #[arg(long)]
        no_sync: bool,
    },
    /// Mark an item complete locally, then sync.
    Complete {
        /// The item's id (or an unambiguous start of it).
        id: String,
        /// Only write locally; the change stays queued.
        #[arg(long)]
        no_sync: bool,
    },
    /// List the local items (no network).
    List {
        /// Print only a JSON array of {id, text, complete}.
        #[arg(long)]
        json: bool,
    },
    /// Push the queued changes, then pull `allTodoItems`.
    Sync,
    /// Pull `allTodoItems` (queued changes of the table are pushed first).
    Pull,
    /// Print the number of queued changes (no network).
    Pending,
    /// List the conflicts and errors left by pushes (no network).
    Conflicts,
    /// Resolve the conflict or error of one item, then sync.
    Resolve {
        /// The item's id (or an unambiguous start of it).
        id: String,
        #[command(flatten)]
        side: Side,
    },
    /// Keep the list up to date from the server's change feed and print each change as it
    /// arrives (`+` new, `~` changed, `-` gone); changes still queued here are pushed when
    /// it connects. Runs until interrupted, or for `--seconds`.
    Watch {
        /// Stop after this many seconds.
        #[arg(long, value_name = "N")]
        seconds: Option<u64>,
    },
    /// Run the whole offline tutorial against an in-process server.
    Demo,
}

/// One element of `todo list --json`.
#[derive(Debug, serde::Serialize)]
struct JsonItem<'a> {
    id: &'a str,
    text: &'a str,
    complete: bool,
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct Side {
    /// Keep the local values: send them again over the server's version.
    #[arg(long)]
    keep_local: bool,
    /// Keep the server's values: drop the local change.
    #[arg(long)]
    keep_server: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    // Usage errors exit 1, not clap's 2: `sync` and `pull` use 2 for "the
    // server could not be reached", and scripts must be able to tell them apart.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("todo: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("todo: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<u8> {
    let g = cli.global;
    let conn = Connection {
        db: g.db,
        url: g.url,
        store: g.store,
        protocol: g.protocol,
        api_key: g.api_key,
    };
    match cli.command {
        Command::Demo => demo::run(conn.store, conn.protocol, conn.api_key).await,
        Command::Watch { seconds } => watch_command(&app::open(&conn)?, seconds).await,
        Command::Add { text, no_sync } => {
            let client = app::open(&conn)?;
            let item = client
                .sync_table::<TodoItem>()
                .insert(&TodoItem::new(text))
                .await?;
            println!("added: {}", item.id());
            if !no_sync {
                sync_after_save(&client).await;
            }
            Ok(0)
        }
        Command::Complete { id, no_sync } => {
            let client = app::open(&conn)?;
            let item = app::complete(&client, &id).await?;
            println!("completed: {}", item.id());
            if !no_sync {
                sync_after_save(&client).await;
            }
            Ok(0)
        }
        Command::List { json } => {
            let client = app::open(&conn)?;
            let items = app::list(&client).await?;
            if json {
                let array: Vec<JsonItem<'_>> = items
                    .iter()
                    .map(|item| JsonItem {
                        id: item.id(),
                        text: &item.text,
                        complete: item.complete,
                    })
                    .collect();
                println!("{}", serde_json::to_string(&array)?);
            } else if items.is_empty() {
                println!("no items");
            } else {
                for item in &items {
                    let mark = if item.complete { "x" } else { " " };
                    println!("{} [{mark}] {}", item.id(), item.text);
                }
            }
            Ok(0)
        }
        Command::Sync => {
            let client = app::open(&conn)?;
            let report = app::sync(&client).await?;
            for line in report.lines(&client) {
                println!("{line}");
            }
            Ok(match report.verdict() {
                Verdict::Complete => 0,
                Verdict::Network => {
                    eprintln!(
                        "todo: the server at {} could not be reached; {} change(s) stay queued",
                        conn.url,
                        client.pending_operations()?
                    );
                    2
                }
                Verdict::ItemErrors => {
                    eprintln!("todo: see `todo conflicts` and `todo resolve`");
                    3
                }
                Verdict::Other => {
                    explain_push_failure(report.push.status);
                    1
                }
            })
        }
        Command::Pull => {
            let client = app::open(&conn)?;
            pull_command(&client, &conn.url).await
        }
        Command::Pending => {
            let client = app::open(&conn)?;
            println!("{}", client.pending_operations()?);
            Ok(0)
        }
        Command::Conflicts => {
            let client = app::open(&conn)?;
            let errors = client.operation_errors()?;
            if errors.is_empty() {
                println!("no conflicts");
            }
            for error in &errors {
                println!("{}", app::describe_error(&client, error));
            }
            Ok(0)
        }
        Command::Resolve { id, side } => {
            let client = app::open(&conn)?;
            let keep = if side.keep_local {
                Keep::Local
            } else {
                Keep::Server
            };
            println!("{}", app::resolve(&client, &id, keep)?);
            sync_after_save(&client).await;
            Ok(0)
        }
    }
}

/// The sync the tutorial app runs after each save: reports what happened and
/// never fails the command (the local change is safe in the queue).
async fn sync_after_save(client: &Client) {
    match app::sync(client).await {
        Ok(report) => {
            for line in report.lines(client) {
                println!("{line}");
            }
            match report.verdict() {
                Verdict::Complete => {}
                Verdict::Network => {
                    eprintln!("todo: offline; the change is queued for the next `todo sync`");
                }
                Verdict::ItemErrors => eprintln!("todo: see `todo conflicts` and `todo resolve`"),
                Verdict::Other => explain_push_failure(report.push.status),
            }
        }
        Err(e) => eprintln!("todo: sync failed, the change stays queued: {e:#}"),
    }
}

fn explain_push_failure(status: tidesync::PushStatus) {
    if status == tidesync::PushStatus::CancelledByAuthenticationError {
        eprintln!("todo: the server refused the credentials (HTTP 401); check --api-key");
    } else {
        eprintln!("todo: the sync did not complete ({status})");
    }
}

async fn pull_command(client: &Client, url: &str) -> Result<u8> {
    match app::pull(client).await? {
        Ok(result) => {
            if let Some(push) = &result.push {
                println!("push: {}", push.status);
            }
            println!("pulled: {}", result.received());
            Ok(0)
        }
        Err(Error::PushFailed(push)) => {
            let report = app::SyncReport {
                push: *push,
                pulled: Pulled::Skipped,
                errors: client.operation_errors()?,
            };
            for line in report.lines(client) {
                println!("{line}");
            }
            Ok(match report.verdict() {
                Verdict::Network => {
                    eprintln!("todo: the server at {url} could not be reached");
                    2
                }
                Verdict::ItemErrors => {
                    eprintln!("todo: see `todo conflicts` and `todo resolve`");
                    3
                }
                _ => {
                    explain_push_failure(report.push.status);
                    1
                }
            })
        }
        Err(e) if app::is_network(&e) => {
            println!("pulled: failed ({e})");
            eprintln!("todo: the server at {url} could not be reached");
            Ok(2)
        }
        Err(e) => Err(e.into()),
    }
}

/// `todo watch`: follows the change feed (see `tidesync::backend::SyncContext::watch`), printing
/// the difference in the local list after each change; lifecycle notes go to stderr.
async fn watch_command(client: &Client, seconds: Option<u64>) -> Result<u8> {
    use std::collections::BTreeMap;
    use std::time::Duration;
    use tidesync::{ChangeEvent, WatchOptions};

    let snapshot = |items: Vec<TodoItem>| -> BTreeMap<String, (String, bool)> {
        items
            .into_iter()
            .map(|i| (i.id().to_owned(), (i.text.clone(), i.complete)))
            .collect()
    };
    let mut shown = snapshot(app::list(client).await?);
    let mut events = client.subscribe();
    let watcher = client.watch(
        WatchOptions::new([app::TABLE])
            .query_id(app::QUERY_ID)
            .auto_push(Duration::from_millis(200)),
    )?;
    let deadline = seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    loop {
        let event = match deadline {
            Some(at) => match tokio::time::timeout_at(at, events.recv()).await {
                Ok(event) => event,
                Err(_) => break,
            },
            None => events.recv().await,
        };
        match event {
            Ok(ChangeEvent::FeedConnected { .. }) => eprintln!("todo: watching {}", app::TABLE),
            Ok(ChangeEvent::FeedDisconnected { reason, retry_in }) => {
                eprintln!("todo: feed down ({reason}); retrying in {retry_in:.1?}");
            }
            Ok(ChangeEvent::FeedPolling { interval }) => {
                eprintln!("todo: the server has no change feed; polling every {interval:?}");
            }
            Ok(event) if event.changes_rows() && event.table() == Some(app::TABLE) => {
                let now = snapshot(app::list(client).await?);
                for (id, (text, complete)) in &now {
                    let mark = if *complete { "x" } else { " " };
                    match shown.get(id) {
                        None => println!("+ {id} [{mark}] {text}"),
                        Some(old) if old != &(text.clone(), *complete) => {
                            println!("~ {id} [{mark}] {text}");
                        }
                        Some(_) => {}
                    }
                }
                for id in shown.keys().filter(|id| !now.contains_key(*id)) {
                    println!("- {id}");
                }
                shown = now;
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
    watcher.stop().await;
    Ok(0)
}
