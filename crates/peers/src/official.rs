//! The official Azure Mobile Apps Node server (npm `azure-mobile-apps` 4.0.2) as a child
//! process on a free loopback port.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin};

use crate::{NodeEnv, PeerError};

/// The line prefix `official-server.js` prints with its URL once it is ready.
const READY: &str = "TIDESYNC_PEER_READY ";
/// Lines of the server's output kept for error messages and [`OfficialNodeServer::logs`].
const KEPT_LINES: usize = 400;
/// How long the server may take to report its address: a bound against hangs only.
pub const DEFAULT_START_LIMIT: Duration = Duration::from_secs(120);

/// The type of a declared column (the official server's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnKind {
    /// `string`
    String,
    /// `number`
    Number,
    /// `boolean`
    Boolean,
    /// `date`
    Date,
}

impl ColumnKind {
    fn as_str(self) -> &'static str {
        match self {
            ColumnKind::String => "string",
            ColumnKind::Number => "number",
            ColumnKind::Boolean => "boolean",
            ColumnKind::Date => "date",
        }
    }
}

/// One table of the official server: its name, declared columns and options.
///
/// Tables keep the official server's dynamic schema (columns are also learned from inserted
/// items, as tidesync-server does). Unlike the official default, soft delete is **on**, as
/// it is on tidesync-server: offline clients need tombstones.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    name: String,
    definition: Map<String, Value>,
}

impl TableSpec {
    /// A table with no declared columns and soft delete on.
    pub fn new(name: impl Into<String>) -> TableSpec {
        let mut definition = Map::new();
        definition.insert("columns".to_owned(), Value::Object(Map::new()));
        definition.insert("softDelete".to_owned(), Value::Bool(true));
        TableSpec {
            name: name.into(),
            definition,
        }
    }

    /// Declares a column.
    #[must_use]
    pub fn column(mut self, name: impl Into<String>, kind: ColumnKind) -> TableSpec {
        if let Some(Value::Object(columns)) = self.definition.get_mut("columns") {
            columns.insert(name.into(), Value::from(kind.as_str()));
        }
        self
    }

    /// Turns soft delete on or off.
    #[must_use]
    pub fn soft_delete(self, on: bool) -> TableSpec {
        self.option("softDelete", on)
    }

    /// Sets any other option of the official table definition (`dynamicSchema`,
    /// `authorize`, `perUser`, `maxTop`, `pageSize`, …), as the official docs name it.
    #[must_use]
    pub fn option(mut self, key: impl Into<String>, value: impl Into<Value>) -> TableSpec {
        self.definition.insert(key.into(), value.into());
        self
    }

    /// The table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn to_json(&self) -> Value {
        let mut table = self.definition.clone();
        table.insert("name".to_owned(), Value::from(self.name.clone()));
        Value::Object(table)
    }
}

/// Options for [`OfficialNodeServer`] beyond its tables.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct OfficialServerBuilder {
    tables: Vec<TableSpec>,
    options: Map<String, Value>,
    start_limit: Duration,
}

impl OfficialServerBuilder {
    /// Adds a table.
    pub fn table(mut self, table: TableSpec) -> OfficialServerBuilder {
        self.tables.push(table);
        self
    }

    /// Adds tables.
    pub fn tables(mut self, tables: &[TableSpec]) -> OfficialServerBuilder {
        self.tables.extend_from_slice(tables);
        self
    }

    /// Rows per page when a query has no `$top` (official default 50).
    pub fn page_size(self, rows: u64) -> OfficialServerBuilder {
        self.option("pageSize", rows)
    }

    /// The largest `$top` accepted (official default 1000).
    pub fn max_top(self, rows: u64) -> OfficialServerBuilder {
        self.option("maxTop", rows)
    }

    /// Sets any other top-level option of `azureMobileApps(options)` (`auth`, `cors`, …).
    /// `data` (SQLite in memory), `homePage`, `swagger` and `logging` have test defaults that
    /// this replaces.
    pub fn option(
        mut self,
        key: impl Into<String>,
        value: impl Into<Value>,
    ) -> OfficialServerBuilder {
        self.options.insert(key.into(), value.into());
        self
    }

    /// How long to wait for the server to report its address (default
    /// [`DEFAULT_START_LIMIT`]).
    pub fn start_limit(mut self, limit: Duration) -> OfficialServerBuilder {
        self.start_limit = limit;
        self
    }

    /// Starts the server and waits until it serves.
    ///
    /// # Errors
    ///
    /// [`PeerError::ServerStart`] (with the server's output) when it exits or stays silent
    /// past the start limit; [`PeerError::Io`] when node cannot be started.
    pub async fn start(self, node: &NodeEnv) -> Result<OfficialNodeServer, PeerError> {
        let config = json!({
            "options": self.options,
            "tables": self.tables.iter().map(TableSpec::to_json).collect::<Vec<_>>(),
        });
        let script = crate::install::js_dir().join("tidesync-peers/official-server.js");
        let mut child = node
            .command()
            .arg(&script)
            .arg(config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| PeerError::io(format!("starting node {}", script.display()), e))?;
        let log = Log::default();
        let stdin = child.stdin.take();
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(log.clone().drain(stderr));
        }
        let Some(stdout) = child.stdout.take() else {
            return Err(PeerError::ServerStart {
                reason: "its stdout was not captured".to_owned(),
                logs: String::new(),
            });
        };
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(self.start_limit, async {
            while let Ok(Some(line)) = lines.next_line().await {
                log.push(&line);
                if let Some(json) = line.strip_prefix(READY) {
                    return serde_json::from_str::<Value>(json)
                        .ok()
                        .and_then(|v| v["url"].as_str().map(str::to_owned));
                }
            }
            None
        })
        .await;
        let url = match ready {
            Ok(Some(url)) => url,
            Ok(None) => {
                let status = child.wait().await.ok();
                return Err(PeerError::ServerStart {
                    reason: format!(
                        "it exited ({}) without reporting its address",
                        status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string())
                    ),
                    logs: log.text(),
                });
            }
            Err(_) => {
                return Err(PeerError::ServerStart {
                    reason: format!(
                        "it did not report its address within {:?}",
                        self.start_limit
                    ),
                    logs: log.text(),
                });
            }
        };
        tokio::spawn(log.clone().drain_lines(lines));
        Ok(OfficialNodeServer {
            url,
            child,
            _stdin: stdin,
            log,
        })
    }
}

/// The official Azure Mobile Apps Node server, running: SQLite in memory, loopback only,
/// killed when dropped (and exiting on its own when this process's end of its standard
/// input closes, so it never outlives a killed test).
#[derive(Debug)]
pub struct OfficialNodeServer {
    url: String,
    child: Child,
    _stdin: Option<ChildStdin>,
    log: Log,
}

impl OfficialNodeServer {
    /// Starts a server with `tables` and the default options.
    ///
    /// # Errors
    ///
    /// As [`OfficialServerBuilder::start`].
    pub async fn start(
        node: &NodeEnv,
        tables: &[TableSpec],
    ) -> Result<OfficialNodeServer, PeerError> {
        OfficialNodeServer::builder()
            .tables(tables)
            .start(node)
            .await
    }

    /// A builder for a server with more options.
    pub fn builder() -> OfficialServerBuilder {
        OfficialServerBuilder {
            tables: Vec::new(),
            options: Map::new(),
            start_limit: DEFAULT_START_LIMIT,
        }
    }

    /// The base URL (`http://127.0.0.1:PORT`, no trailing slash); tables are under
    /// `/tables/{name}`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's latest lines of output (stdout and stderr interleaved).
    pub fn logs(&self) -> String {
        self.log.text()
    }

    /// Kills the server and waits until it has exited (dropping it kills it without
    /// waiting).
    ///
    /// # Errors
    ///
    /// [`PeerError::Io`] when the process cannot be killed or waited for.
    pub async fn stop(mut self) -> Result<(), PeerError> {
        self.child
            .kill()
            .await
            .map_err(|e| PeerError::io("stopping the official Node server", e))
    }
}

/// The last [`KEPT_LINES`] lines a child printed.
#[derive(Debug, Clone, Default)]
struct Log(Arc<Mutex<VecDeque<String>>>);

impl Log {
    fn push(&self, line: &str) {
        if let Ok(mut lines) = self.0.lock() {
            if lines.len() == KEPT_LINES {
                lines.pop_front();
            }
            lines.push_back(line.to_owned());
        }
    }

    fn text(&self) -> String {
        self.0
            .lock()
            .map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    async fn drain(self, stream: impl AsyncRead + Unpin) {
        self.drain_lines(BufReader::new(stream).lines()).await;
    }

    async fn drain_lines<R: AsyncRead + Unpin>(self, mut lines: tokio::io::Lines<BufReader<R>>) {
        while let Ok(Some(line)) = lines.next_line().await {
            self.push(&line);
        }
    }
}
