//! The crash suite: a client on a SQLite store, talking HTTP to a real `tidesync-server`
//! started in-process by the test, is killed with SIGKILL at random points of its writes,
//! pushes and pulls, restarted on the same store file, and in the end synced once more;
//! then the server, the client and the client's write log must agree.
//!
//! The client is a child process: this test binary re-run with [`URL_VAR`] and friends
//! set, selecting the ignored `crash_client` test. It loops over local writes to table
//! `Note` (inserts, updates that append the write's number to the row's `text`, deletes),
//! pushes and pulls (of `Note`, and of `Memo`, which the parent writes on the server between
//! kills). Around each write it appends to an append-only log, fsynced: `B n kind id text`
//! before the call and `A n` when it returned `Ok` (acknowledged) or `E n` when it returned
//! an error. A write cut off by the kill (`B` without an answer) may or may not have
//! happened. Even lives use `Protocol::Auto` (which pushes through the batch extension),
//! odd lives `Protocol::V3` (one request per op).
//!
//! After the final sync (push and pulls in the parent on the same store file):
//! - the queue is empty and there are no error records (no stuck op, no spurious conflict);
//! - the client's rows equal the server's live rows, for `Note` and `Memo`;
//! - **nothing lost**: every acknowledged insert or update is in its row's `text` on the
//!   server, every row whose last acknowledged write is not a delete exists there (unless a
//!   cut-off delete followed), every acknowledged delete left no live row;
//! - **nothing doubled**: each row's `text` lists write numbers in strictly increasing
//!   order, each a write to that row that was not refused, starting with its insert; and the
//!   server applied no more writes to `Note` (its per-table version counter, tombstones
//!   included) than the client made.
//!
//! `sigkill_client_loses_and_doubles_nothing` kills 30 times (`TIDESYNC_CRASH_KILLS` sets
//! more); the ignored `crash_soak` kills `TIDESYNC_SOAK_KILLS` times (default 1000; run by
//! `cargo xtask soak --kills N`). `TIDESYNC_CRASH_SEED` replays a run's choices (printed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tidesync_core::{ColumnType, LocalStore, MemoryStore, OpState, Query, SyncContext, TableDef};
use tidesync_server::store::ReadRequest;
use tidesync_server::{App, RunningServer, Server};
use tidesync_store_sqlite::SqliteStore;
use tidesync_transport_http::{HttpTransport, Protocol, RetryPolicy};

const URL_VAR: &str = "TIDESYNC_CRASH_URL";
const STORE_VAR: &str = "TIDESYNC_CRASH_STORE";
const LOG_VAR: &str = "TIDESYNC_CRASH_LOG";
const SEED_VAR: &str = "TIDESYNC_CRASH_CHILD_SEED";
const LIFE_VAR: &str = "TIDESYNC_CRASH_LIFE";
/// Set: the child also edits rows whose op was sent but not acknowledged.
const STRICT_VAR: &str = "TIDESYNC_CRASH_STRICT";

/// How many recently inserted rows the child picks its updates and deletes from.
const WINDOW: usize = 12;

fn defs() -> [TableDef; 2] {
    [
        TableDef::new("Note").column("text", ColumnType::String),
        TableDef::new("Memo").column("text", ColumnType::String),
    ]
}

fn transport(url: &str, protocol: Protocol) -> HttpTransport {
    HttpTransport::builder(url)
        .protocol(protocol)
        .timeout(Duration::from_secs(10))
        .retry(RetryPolicy {
            max_retries: 1,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        })
        .build()
        .unwrap()
}

/// A client on the SQLite store file at `path`.
fn sqlite_client(url: &str, path: &Path, protocol: Protocol) -> SyncContext {
    let store = SqliteStore::open(path).unwrap();
    for def in defs() {
        store.define_table(&def).unwrap();
    }
    SyncContext::builder()
        .store(store)
        .transport(transport(url, protocol))
        .page_size(50)
        .build()
        .unwrap()
}

/// A small xorshift generator: the choices need no statistics.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn env_number(var: &str) -> Option<u64> {
    std::env::var(var).ok().and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------------------
// The log

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Insert,
    Update,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// The call returned `Ok`.
    Acked,
    /// The call returned an error: it must have changed nothing.
    Refused,
    /// Killed between `B` and the answer: it may or may not have happened.
    CutOff,
}

#[derive(Debug, Clone)]
struct LoggedWrite {
    kind: Kind,
    id: String,
    status: Status,
}

/// What the log says: every write by number, the next number, and where the last life died.
#[derive(Debug, Default)]
struct LogState {
    writes: BTreeMap<u64, LoggedWrite>,
    next: u64,
    /// The last line of the last life (a write's `B`, a phase marker, ...).
    last_line: String,
}

impl LogState {
    fn read(path: &Path) -> LogState {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut state = LogState {
            next: 1,
            ..LogState::default()
        };
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields.as_slice() {
                ["B", n, kind, id, _text] => {
                    let Ok(n) = n.parse::<u64>() else { continue };
                    let kind = match *kind {
                        "insert" => Kind::Insert,
                        "update" => Kind::Update,
                        "delete" => Kind::Delete,
                        _ => continue,
                    };
                    state.writes.insert(
                        n,
                        LoggedWrite {
                            kind,
                            id: (*id).to_owned(),
                            status: Status::CutOff,
                        },
                    );
                    state.next = state.next.max(n + 1);
                }
                ["A" | "E", n] => {
                    let Ok(n) = n.parse::<u64>() else { continue };
                    if let Some(write) = state.writes.get_mut(&n) {
                        write.status = if fields[0] == "A" {
                            Status::Acked
                        } else {
                            Status::Refused
                        };
                    }
                }
                _ => {}
            }
            state.last_line = line.to_owned();
        }
        state
    }

    /// The most recently inserted rows that no write deleted (or may have deleted).
    fn window(&self) -> Vec<String> {
        let mut live: Vec<String> = Vec::new();
        for write in self.writes.values() {
            match (write.kind, write.status) {
                (_, Status::Refused) => {}
                (Kind::Insert, _) => live.push(write.id.clone()),
                (Kind::Delete, _) => live.retain(|id| *id != write.id),
                (Kind::Update, _) => {}
            }
        }
        let skip = live.len().saturating_sub(WINDOW);
        live.split_off(skip)
    }

    /// The phase the last life was killed in, from its last line.
    fn phase(&self) -> &'static str {
        match self.last_line.split(' ').next().unwrap_or("") {
            "B" => "write",
            "push" => "push",
            "pull" => "pull",
            "A" | "E" | "synced" => "between",
            _ => "startup",
        }
    }
}

/// The append-only log of one life.
struct Log(File);

impl Log {
    fn open(path: &Path) -> Log {
        Log(OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap())
    }

    /// Appends a line in one `write` call; `sync` waits for it to reach the disk.
    fn line(&mut self, line: &str, sync: bool) {
        self.0.write_all(format!("{line}\n").as_bytes()).unwrap();
        if sync {
            self.0.sync_data().unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The child

/// The child: loops until killed. Without the variables it returns at once, so
/// `cargo test -- --ignored` does not hang on it.
#[test]
#[ignore = "the child process of the crash suite"]
fn crash_client() {
    let Some(url) = std::env::var_os(URL_VAR) else {
        return;
    };
    let url = url.into_string().unwrap();
    let store = PathBuf::from(std::env::var_os(STORE_VAR).unwrap());
    let log = PathBuf::from(std::env::var_os(LOG_VAR).unwrap());
    let seed = env_number(SEED_VAR).unwrap_or(1) | 1;
    let life = env_number(LIFE_VAR).unwrap_or(0);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(client_loop(
            &url,
            &store,
            &log,
            seed,
            life,
            std::env::var_os(STRICT_VAR).is_some(),
        ));
}

async fn client_loop(
    url: &str,
    store: &Path,
    log_path: &Path,
    mut random: u64,
    life: u64,
    strict: bool,
) {
    let state = LogState::read(log_path);
    let mut window = state.window();
    let mut next = state.next;
    let mut log = Log::open(log_path);
    let protocol = if life % 2 == 0 {
        Protocol::Auto
    } else {
        Protocol::V3
    };
    let ctx = sqlite_client(url, store, protocol);
    let notes = ctx.table::<Value>("Note");
    let memos = ctx.table::<Value>("Memo");
    log.line(&format!("life {life}"), false);
    loop {
        for _ in 0..=next_random(&mut random) % 3 {
            let n = next;
            next += 1;
            let roll = next_random(&mut random) % 100;
            let pick = (next_random(&mut random) as usize) % window.len().max(1);
            // Unless strict, leave rows alone whose op was sent but not acknowledged, so
            // the two variants cover both shapes of history (the strict one folds edits
            // into such ops; see `regressions.rs`, `edit_after_lost_ack_*`).
            let target = window.get(pick).cloned();
            let sent = match &target {
                Some(id) if !strict => ctx
                    .operations()
                    .unwrap()
                    .iter()
                    .any(|op| op.item_id == *id && op.state != OpState::Pending),
                _ => false,
            };
            if roll < 45 || window.is_empty() || sent {
                let id = format!("c{n}");
                log.line(&format!("B {n} insert {id} {n}"), true);
                let done = notes
                    .insert(&json!({"id": id, "text": n.to_string()}))
                    .await;
                log.line(
                    &format!("{} {n}", if done.is_ok() { "A" } else { "E" }),
                    true,
                );
                if done.is_ok() {
                    window.push(id);
                    if window.len() > WINDOW {
                        window.remove(0);
                    }
                }
            } else if roll < 85 {
                let id = target.unwrap();
                let Some(row) = notes.get(&id).await.unwrap() else {
                    // A cut-off insert that never happened.
                    window.retain(|w| *w != id);
                    continue;
                };
                let text = format!("{},{n}", row["text"].as_str().unwrap());
                log.line(&format!("B {n} update {id} {text}"), true);
                let done = notes.update(&json!({"id": id, "text": text})).await;
                log.line(
                    &format!("{} {n}", if done.is_ok() { "A" } else { "E" }),
                    true,
                );
            } else {
                let id = target.unwrap();
                log.line(&format!("B {n} delete {id} -"), true);
                let done = notes.delete_id(&id).await;
                log.line(
                    &format!("{} {n}", if done.is_ok() { "A" } else { "E" }),
                    true,
                );
                if done.is_ok() {
                    window.retain(|w| *w != id);
                }
            }
        }
        if next_random(&mut random) % 2 == 0 {
            log.line("push", false);
            let _ = ctx.push().await;
            log.line("synced", false);
        }
        if next_random(&mut random) % 3 == 0 {
            log.line("pull", false);
            let _ = notes.pull("all", Query::all()).await;
            let _ = memos.pull("all", Query::all()).await;
            log.line("synced", false);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The parent

/// What one run found.
#[derive(Debug, Default)]
struct Outcome {
    seed: u64,
    kills: u64,
    phases: BTreeMap<&'static str, u64>,
    acked: usize,
    cut_off: usize,
    refused: usize,
    server_writes: u64,
    lost: Vec<String>,
    doubled: Vec<String>,
    other: Vec<String>,
}

impl Outcome {
    fn summary(&self) -> String {
        let mut phases = String::new();
        for (phase, count) in &self.phases {
            let _ = write!(phases, "{phase} {count}, ");
        }
        format!(
            "{} kill points survived ({}); {} acknowledged local writes, {} cut off by a kill, \
             {} refused; the server applied {} writes to Note; lost {}, doubled {}, other \
             problems {}",
            self.kills,
            phases.trim_end_matches(", "),
            self.acked,
            self.cut_off,
            self.refused,
            self.server_writes,
            self.lost.len(),
            self.doubled.len(),
            self.other.len()
        )
    }

    fn assert_clean(&self) {
        let problems: Vec<&String> = self
            .lost
            .iter()
            .chain(&self.doubled)
            .chain(&self.other)
            .collect();
        assert!(
            problems.is_empty(),
            "{}\n{problems:#?}\n(replay with TIDESYNC_CRASH_SEED={})",
            self.summary(),
            self.seed
        );
    }
}

async fn start_server(db: &Path) -> (App, RunningServer) {
    let app = Server::builder()
        .sqlite(db)
        .table("Note")
        .table("Memo")
        .bind("127.0.0.1:0")
        .build()
        .await
        .unwrap();
    let running = app.clone().serve().await.unwrap();
    (app, running)
}

/// The server's rows of a table, tombstones included.
async fn server_rows(app: &App, table: &str) -> Vec<tidesync_server::store::Row> {
    app.store()
        .read(
            table,
            &ReadRequest {
                limit: u64::MAX / 2,
                include_deleted: true,
                ..ReadRequest::default()
            },
        )
        .await
        .unwrap()
        .rows
}

fn local_texts(ctx: &SyncContext, table: &str) -> BTreeMap<String, String> {
    ctx.query(table, &Query::all())
        .unwrap()
        .items
        .iter()
        .map(|item| {
            (
                item["id"].as_str().unwrap().to_owned(),
                item["text"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn live_texts(rows: &[tidesync_server::store::Row]) -> BTreeMap<String, String> {
    rows.iter()
        .filter(|row| !row.deleted)
        .map(|row| {
            (
                row.id.clone(),
                row.values
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect()
}

/// Runs the suite with `kills` kill points and checks the end state.
async fn run(kills: u64, strict: bool) -> Outcome {
    let seed = env_number("TIDESYNC_CRASH_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    }) | 1;
    eprintln!("crash suite: {kills} kills, TIDESYNC_CRASH_SEED={seed}");
    let mut random = seed;
    let dir = tempfile::tempdir().unwrap();
    let (app, server) = start_server(&dir.path().join("server.db")).await;
    let url = server.url();
    let store = dir.path().join("client.db");
    let log = dir.path().join("writes.log");
    let stderr_path = dir.path().join("child.stderr");
    let exe = std::env::current_exe().unwrap();

    // A second client writes Memo rows on the server between kills, for the child to pull.
    let other = SyncContext::builder()
        .store({
            let store = MemoryStore::new();
            store.define_table(&defs()[1]).unwrap();
            store
        })
        .transport(transport(&url, Protocol::Auto))
        .build()
        .unwrap();
    let memos = other.table::<Value>("Memo");

    let mut outcome = Outcome {
        seed,
        ..Outcome::default()
    };
    let started = Instant::now();
    for life in 0..kills {
        let mut command = Command::new(&exe);
        command
            .args(["crash_client", "--exact", "--ignored", "--test-threads=1"])
            .env(URL_VAR, &url)
            .env(STORE_VAR, &store)
            .env(LOG_VAR, &log)
            .env(SEED_VAR, next_random(&mut random).to_string())
            .env(LIFE_VAR, life.to_string())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_path).unwrap());
        if strict {
            command.env(STRICT_VAR, "1");
        }
        let mut child = command.spawn().unwrap();
        let delay = 30 + next_random(&mut random) % 450;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        if let Some(status) = child.try_wait().unwrap() {
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("life {life}: the client exited by itself with {status}:\n{stderr}");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        outcome.kills += 1;
        *outcome
            .phases
            .entry(LogState::read(&log).phase())
            .or_default() += 1;
        if life % 3 == 1 {
            let k = life / 3;
            memos
                .insert(&json!({"id": format!("m{k}"), "text": format!("memo {k}")}))
                .await
                .unwrap();
            if k > 0 {
                memos
                    .update(&json!({"id": "m0", "text": format!("memo 0 at {k}")}))
                    .await
                    .unwrap();
            }
            assert!(other.push().await.unwrap().is_success());
        }
        if life % 100 == 99 {
            eprintln!(
                "crash suite: {} kills after {:?}",
                life + 1,
                started.elapsed()
            );
        }
    }

    // The final sync, on the same store file.
    let ctx = sqlite_client(&url, &store, Protocol::Auto);
    let pushed = ctx.push().await.unwrap();
    if !pushed.is_success() {
        outcome
            .other
            .push(format!("the final push did not succeed: {pushed:?}"));
    }
    for table in ["Note", "Memo"] {
        if let Err(e) = ctx.table::<Value>(table).pull("all", Query::all()).await {
            outcome
                .other
                .push(format!("the final pull of {table} failed: {e}"));
        }
    }
    let pending = ctx.operations().unwrap();
    if !pending.is_empty() {
        outcome.other.push(format!(
            "ops still queued after the final sync: {pending:#?}"
        ));
    }
    let errors = ctx.operation_errors().unwrap();
    if !errors.is_empty() {
        outcome
            .other
            .push(format!("error records after the final sync: {errors:#?}"));
    }

    let note_rows = server_rows(&app, "Note").await;
    let memo_rows = server_rows(&app, "Memo").await;
    let server_notes = live_texts(&note_rows);
    let local_notes = local_texts(&ctx, "Note");
    if server_notes != local_notes {
        outcome.other.push(format!(
            "client and server disagree on Note: only on the server {:?}, only on the client {:?}",
            diff(&server_notes, &local_notes),
            diff(&local_notes, &server_notes)
        ));
    }
    let server_memos = live_texts(&memo_rows);
    if server_memos != local_texts(&ctx, "Memo") || server_memos != local_texts(&other, "Memo") {
        outcome
            .other
            .push("the clients and the server disagree on Memo".to_owned());
    }
    outcome.server_writes = note_rows.iter().map(|row| row.version).max().unwrap_or(0);
    check_log(&LogState::read(&log), &server_notes, &mut outcome);
    server.shutdown().await.unwrap();
    eprintln!(
        "crash suite: {} in {:?}",
        outcome.summary(),
        started.elapsed()
    );
    outcome
}

/// The entries of `a` that `b` lacks or holds differently.
fn diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<(String, String)> {
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Checks the server's live `Note` rows against the log.
fn check_log(log: &LogState, server: &BTreeMap<String, String>, outcome: &mut Outcome) {
    let mut by_id: BTreeMap<&str, Vec<(u64, &LoggedWrite)>> = BTreeMap::new();
    for (n, write) in &log.writes {
        match write.status {
            Status::Acked => outcome.acked += 1,
            Status::CutOff => outcome.cut_off += 1,
            Status::Refused => outcome.refused += 1,
        }
        by_id.entry(&write.id).or_default().push((*n, write));
    }
    let possible = (outcome.acked + outcome.cut_off) as u64;
    if outcome.server_writes > possible {
        outcome.doubled.push(format!(
            "the server applied {} writes to Note, the client made at most {possible}",
            outcome.server_writes
        ));
    }
    // Rows on the server: their write numbers.
    for (id, text) in server {
        let Some(writes) = by_id.get(id.as_str()) else {
            outcome
                .other
                .push(format!("{id} is on the server but no write made it"));
            continue;
        };
        let numbers: Vec<u64> = text.split(',').filter_map(|n| n.parse().ok()).collect();
        if numbers.windows(2).any(|w| w[0] >= w[1]) {
            outcome
                .doubled
                .push(format!("{id}: write numbers repeat or go back: {text}"));
        }
        let mut seen = BTreeSet::new();
        for (i, number) in numbers.iter().enumerate() {
            let made = writes.iter().find(|(n, _)| n == number);
            match made {
                Some((_, w)) if w.status == Status::Refused => outcome
                    .other
                    .push(format!("{id}: refused write {number} took effect")),
                Some((_, w)) if (i == 0) != (w.kind == Kind::Insert) => outcome
                    .other
                    .push(format!("{id}: write {number} ({:?}) at place {i}", w.kind)),
                Some(_) => {}
                None => outcome
                    .other
                    .push(format!("{id}: write {number} is not a write to this row")),
            }
            seen.insert(*number);
        }
        for (n, write) in writes {
            if write.status == Status::Acked && write.kind != Kind::Delete && !seen.contains(n) {
                outcome.lost.push(format!(
                    "{id}: acknowledged {:?} {n} is missing: {text}",
                    write.kind
                ));
            }
        }
    }
    // Rows the log says must (not) be there.
    for (id, writes) in &by_id {
        let last_acked = writes.iter().rev().find(|(_, w)| w.status == Status::Acked);
        let Some((last, write)) = last_acked else {
            continue;
        };
        let delete_cut_off = writes
            .iter()
            .any(|(n, w)| n > last && w.kind == Kind::Delete && w.status == Status::CutOff);
        let there = server.contains_key(*id);
        match write.kind {
            Kind::Delete if there => outcome
                .lost
                .push(format!("{id}: the acknowledged delete {last} is undone")),
            Kind::Insert | Kind::Update if !there && !delete_cut_off => outcome.lost.push(format!(
                "{id}: acknowledged {:?} {last}, but no row",
                write.kind
            )),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_client_loses_and_doubles_nothing() {
    let kills = env_number("TIDESYNC_CRASH_KILLS").unwrap_or(30);
    let outcome = run(kills, false).await;
    outcome.assert_clean();
    assert!(outcome.acked > 0, "the client never wrote anything");
}

/// The same, with edits to rows whose op was sent but not acknowledged: such an edit is
/// folded into the op, and when the kill had come after the server applied it, the resent
/// op meets 409/412 with the copy of its earlier attempt, which the engine must take as
/// its own write (see `regressions.rs`, `edit_after_lost_ack_*`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_client_with_edits_behind_unacknowledged_ops() {
    let kills = env_number("TIDESYNC_CRASH_KILLS").unwrap_or(30);
    let outcome = run(kills, true).await;
    outcome.assert_clean();
}

/// The long version, for `cargo xtask soak --kills N` (`TIDESYNC_SOAK_KILLS`, default
/// 1000; `TIDESYNC_CRASH_STRICT` set makes it the strict variant).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the soak run: cargo xtask soak --kills N"]
async fn crash_soak() {
    let kills = env_number("TIDESYNC_SOAK_KILLS").unwrap_or(1000);
    let outcome = run(kills, std::env::var_os(STRICT_VAR).is_some()).await;
    println!("soak: {}", outcome.summary());
    outcome.assert_clean();
}
