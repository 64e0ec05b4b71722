//! The hostile-input harness: the real `tidesync-server` binary on a loopback port, over
//! SQLite or PostgreSQL, driven the way an attacker would drive it: over HTTP, with raw
//! sockets where HTTP clients are too polite.
//!
//! Every attack is checked by [`Hostile::attack`]'s rules: an answer within [`BOUND`] (a
//! generous bound: CI machines are slow and shared; it is a hang detector, not a speed goal),
//! the server process alive and healthy afterwards, and the database byte for byte as it was
//! (every table, column, row and remembered op: [`Hostile::fingerprint`]). Memory is the
//! process's peak resident size ([`Hostile::peak_rss_mb`]), checked at the end of a run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::{Resp, drop_pg_schema, pg_schema, pg_url};

/// The longest any attack may take to be answered (or closed).
pub const BOUND: Duration = Duration::from_secs(30);

/// The peak resident size a server may reach while it is attacked.
pub const MEMORY_BOUND_MB: u64 = 256;

/// The HS256 secret of the hostile servers (long enough to be accepted).
pub const SECRET: &str = "hostile-suite-secret-of-at-least-32-bytes";

/// An HS256 token of the hostile servers for `sub`: valid for ten minutes, with `claims`
/// on top (a null claim removes it).
pub fn token(sub: &str, claims: Value) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut all = serde_json::json!({
        "sub": sub, "iat": now, "exp": now + 600,
        "aud": "urn:microsoft:windows-azure:zumo", "iss": "urn:microsoft:windows-azure:zumo",
    });
    for (name, value) in claims.as_object().into_iter().flatten() {
        if value.is_null() {
            all.as_object_mut().unwrap().remove(name);
        } else {
            all[name] = value.clone();
        }
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &all,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Which database the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the test's directory.
    Sqlite,
    /// A PostgreSQL schema of its own.
    Postgres,
}

/// A running server binary.
#[derive(Debug)]
pub struct Hostile {
    pub backend: Backend,
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    dir: tempfile::TempDir,
    schema: Option<String>,
    log: PathBuf,
    http: reqwest::Client,
}

impl Hostile {
    /// Starts the binary with `config` (TOML: top-level keys first, then sections) and the
    /// environment `env`; `None` (skip) when PostgreSQL is unreachable outside CI.
    pub async fn start(
        backend: Backend,
        test: &str,
        config: &str,
        env: &[(&str, &str)],
    ) -> Option<Hostile> {
        let dir = tempfile::tempdir().unwrap();
        let (database, schema) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("data.db").display()),
                None,
            ),
            Backend::Postgres => (pg_url(), Some(pg_schema(test).await?)),
        };
        let schema_line = schema
            .as_ref()
            .map(|s| format!("postgres_schema = \"{s}\"\n"))
            .unwrap_or_default();
        let path = dir.path().join("server.toml");
        std::fs::write(
            &path,
            format!("listen = \"127.0.0.1:0\"\ndatabase = \"{database}\"\n{schema_line}{config}"),
        )
        .unwrap();
        let log = dir.path().join("server.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidesync-server"));
        command
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .env("RUST_LOG", "warn");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            line
        })
        .await
        .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "the server did not start: {line:?}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_owned();
        let addr = base.trim_start_matches("http://").to_owned();
        let http = reqwest::Client::builder()
            .timeout(BOUND)
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Some(Hostile {
            backend,
            child,
            base,
            addr,
            dir,
            schema,
            log,
            http,
        })
    }

    /// Sends a request; `body` as given (JSON content type when present).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: no answer within the bound: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        Resp::new(status, headers, &bytes)
    }

    /// Sends a v3 JSON request on a task of its own (for a request that will wait on a
    /// lock); its status.
    pub fn spawn_json(&self, method: &str, path: &str, body: &Value) -> JoinHandle<u16> {
        let request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("zumo-api-version", "3.0.0")
            .header("content-type", "application/json")
            .body(body.to_string());
        tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
    }

    /// `POST /tidesync/v1/batch` of `ops`.
    pub async fn batch(&self, ops: Vec<Value>, headers: &[(&str, &str)]) -> Resp {
        self.json(
            "POST",
            "/tidesync/v1/batch",
            headers,
            &serde_json::json!({ "operations": ops }),
        )
        .await
    }

    /// Inserts `rows` rows `r0000`, `r0001`, … into `TodoItem`, each with a `text` of `bytes`
    /// letters `a`, 500 to a batch.
    pub async fn seed_text_rows(&self, rows: usize, bytes: usize) {
        for chunk in (0..rows).step_by(500) {
            let ops: Vec<Value> = (chunk..rows.min(chunk + 500))
                .map(|n| {
                    let id = format!("r{n:04}");
                    serde_json::json!({"id": format!("seed-{id}"), "kind": "insert",
                        "table": "TodoItem", "itemId": id, "item": {"text": "a".repeat(bytes)}})
                })
                .collect();
            let r = self.batch(ops, &[]).await;
            assert_eq!(r.status, 200, "{}", &r.text[..r.text.len().min(300)]);
        }
    }

    /// A v3 `GET`.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut all = vec![("zumo-api-version", "3.0.0")];
        all.extend_from_slice(headers);
        self.send("GET", path, &all, None).await
    }

    /// A JSON request (v3 header) with `body`.
    pub async fn json(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Resp {
        let mut all = vec![("zumo-api-version", "3.0.0")];
        all.extend_from_slice(headers);
        self.send(method, path, &all, Some(body.to_string().into_bytes()))
            .await
    }

    /// Runs `attack` and checks the rules of the module documentation: answered within
    /// [`BOUND`], the server alive and healthy, and the database unchanged.
    pub async fn attack<T>(&self, what: &str, attack: impl Future<Output = T>) -> T {
        let before = self.fingerprint().await;
        let answer = tokio::time::timeout(BOUND, attack)
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within {BOUND:?}"));
        self.assert_alive(what).await;
        assert!(
            self.fingerprint().await == before,
            "{what}: the database changed"
        );
        answer
    }

    /// The server process runs and answers `/health`.
    pub async fn assert_alive(&self, what: &str) {
        let health = self.send("GET", "/health", &[], None).await;
        assert_eq!(health.status, 200, "{what}: the server is not healthy");
    }

    /// A raw connection to the server.
    pub async fn connect(&self) -> TcpStream {
        TcpStream::connect(&self.addr).await.unwrap()
    }

    /// Writes `bytes` on a raw connection.
    pub async fn write_raw(stream: &mut TcpStream, bytes: &[u8]) {
        stream.write_all(bytes).await.unwrap();
    }

    /// Reads a raw connection until the server closes it; what it sent.
    pub async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return out,
                Ok(n) => out.extend_from_slice(&buffer[..n]),
            }
        }
    }

    /// Reads a raw connection until a chunked response ends (its last chunk) or the server
    /// closes the connection; what it sent.
    pub async fn until_response_end(stream: &mut TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buffer = [0u8; 4096];
        while !out.ends_with(b"\r\n0\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buffer[..n]),
            }
        }
        out
    }

    /// The process's peak resident size in MB (`None` off Linux).
    pub fn peak_rss_mb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024)
    }

    /// The process's CPU time so far (`None` off Linux).
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // The kernel's USER_HZ is 100 on every Linux this runs on.
        Some(Duration::from_millis(ticks * 10))
    }

    /// Asserts the peak resident size stayed under [`MEMORY_BOUND_MB`].
    pub fn assert_memory_bounded(&self, what: &str) {
        if let Some(peak) = self.peak_rss_mb() {
            assert!(
                peak < MEMORY_BOUND_MB,
                "{what}: the server grew to {peak} MB (bound {MEMORY_BOUND_MB} MB)"
            );
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The PostgreSQL schema of this server (PostgreSQL only).
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Every table, column, row and remembered op of the database, as text.
    pub async fn fingerprint(&self) -> String {
        match self.backend {
            Backend::Sqlite => sqlite_fingerprint(self.dir.path().join("data.db")).await,
            Backend::Postgres => pg_fingerprint(self.schema.as_deref().unwrap()).await,
        }
    }

    /// Stops the server, checks it had not died, and drops its PostgreSQL schema.
    pub async fn finish(mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the server exited during the run:\n{}",
            self.log()
        );
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        if let Some(schema) = self.schema.take() {
            drop_pg_schema(&schema).await;
        }
    }
}

/// Runs the binary with `config` and the extra `args`, expecting it to refuse to start:
/// its exit code and what it wrote on stderr.
pub fn refused_start(config: &str, args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.toml");
    let database = format!("sqlite://{}", dir.path().join("data.db").display());
    std::fs::write(
        &path,
        format!("listen = \"127.0.0.1:0\"\ndatabase = \"{database}\"\n{config}"),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tidesync-server"))
        .arg("--config")
        .arg(&path)
        .args(["--table", "TodoItem"])
        .args(args)
        .env("RUST_LOG", "error")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("listening"),
        "the server started"
    );
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn sqlite_fingerprint(path: PathBuf) -> String {
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut out = String::new();
        let tables: Vec<(String, String)> = conn
            .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (name, sql) in tables {
            out.push_str(&format!("{sql}\n"));
            let mut statement = conn
                .prepare(&format!("SELECT * FROM \"{name}\" ORDER BY 1, 2"))
                .unwrap();
            let n = statement.column_count();
            let rows = statement
                .query_map([], |r| {
                    (0..n)
                        .map(|i| {
                            r.get::<_, rusqlite::types::Value>(i)
                                .map(|v| format!("{v:?}"))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap();
            for row in rows {
                out.push_str(&row.unwrap().join("|"));
                out.push('\n');
            }
        }
        out
    })
    .await
    .unwrap()
}

async fn pg_fingerprint(schema: &str) -> String {
    let (client, connection) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(connection);
    let mut out = String::new();
    let columns = client
        .query(
            "SELECT table_name::text, column_name::text, data_type::text
             FROM information_schema.columns WHERE table_schema = $1
             ORDER BY table_name, ordinal_position",
            &[&schema],
        )
        .await
        .unwrap();
    let mut tables: Vec<String> = Vec::new();
    for row in &columns {
        let (table, column, ty): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        out.push_str(&format!("{table}.{column} {ty}\n"));
        if !tables.contains(&table) {
            tables.push(table);
        }
    }
    for table in tables {
        let rows = client
            .query(
                &format!("SELECT t::text FROM \"{schema}\".\"{table}\" t ORDER BY 1"),
                &[],
            )
            .await
            .unwrap();
        for row in rows {
            out.push_str(&row.get::<_, String>(0));
            out.push('\n');
        }
    }
    drop(client);
    let _ = task.await;
    out
}
