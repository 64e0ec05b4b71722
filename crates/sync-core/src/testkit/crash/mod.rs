//! The SIGKILL crash harness shared by the store crates: does a store keep every batch it
//! acknowledged, and never half of one, when its process is killed?
//!
//! A store crate's test file holds an `#[ignore]`d writer test that calls [`crash_writer`]
//! with the store's [`CrashMode`]s (one per durability setting), and one test per mode that
//! calls [`sigkill_keeps_acknowledged_batches`] with that mode and the writer's name. The
//! test re-runs its own binary as a child with [`CRASH_STORE_VAR`], [`CRASH_LOG_VAR`] and
//! [`CRASH_MODE_VAR`] set, so the child runs only the writer. The child writes items and
//! their insert ops through [`LocalStore::write`] in a loop (one to four items and their
//! ops per batch, every fifth batch also removing the oldest op and its item, and the next
//! sequence number as metadata), and keeps an acknowledgement log in a file of its own,
//! apart from the store:
//!
//! - `B k first last del` before batch `k` is written (the items `first..=last`, and the
//!   item `del` removed, or `-`);
//! - `A k` once `write` returned `Ok`, synced to the disk (`fsync`) **before** the child
//!   reports the batch on stdout (`ack k`);
//! - `D k` once the store was closed and opened again after batch `k` (only for stores whose
//!   promise is [`Promise::UntilClose`]).
//!
//! The parent kills the child with SIGKILL (`Child::kill`) after a random number of `ack`
//! reports, then reopens the store and compares it with the log (the `check` module): every
//! acknowledged batch must be there (for [`Promise::UntilClose`], every batch acknowledged
//! before the last `D`, and the batches after it as a prefix: a lost batch takes every later
//! one with it), the batch being written when the kill came must be there whole or not at
//! all, nothing else may be there, every item must have exactly its queued op, and the
//! sequence metadata must travel with its batch. [`crash_rounds`] returns what it found as
//! a `Result`, so a test can show that the check catches a store that loses acknowledged
//! batches ([`Lossy`]).
//!
//! Before those rounds, [`creation_rounds`] kills the child as soon as it starts, on fresh
//! files, so that kills land while the store file is being created: it must open afterwards.
//!
//! `TIDESYNC_CRASH_ROUNDS` sets the number of kills per mode (default 20) and
//! `TIDESYNC_CRASH_SEED` replays a run's choices (the seed is printed).
//!
//! ```ignore
//! const MODES: &[CrashMode<'static>] = &[CrashMode {
//!     name: "default",
//!     factory: &MyFactory,
//!     promise: Promise::EveryAcknowledged,
//! }];
//!
//! #[test]
//! #[ignore = "the child process of the crash tests"]
//! fn crash_writer() {
//!     tidesync_core::testkit::crash::crash_writer(MODES);
//! }
//!
//! #[test]
//! fn sigkill_keeps_acknowledged_batches() {
//!     tidesync_core::testkit::crash::sigkill_keeps_acknowledged_batches(&MODES[0], "crash_writer");
//! }
//! ```

mod check;
mod lossy;

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;

use super::StoreFactory;
use crate::model::{ColumnType, OpKind, OpState, Operation, TableDef};
use crate::store::{LocalStore, Write, WriteBatch};
use crate::testkit::QueueView;

pub use check::{CrashFailure, CrashReport};
pub use lossy::Lossy;

/// The variable naming the store file; set only in the child.
pub const CRASH_STORE_VAR: &str = "TIDESYNC_CRASH_STORE";
/// The variable naming the child's acknowledgement log.
pub const CRASH_LOG_VAR: &str = "TIDESYNC_CRASH_LOG";
/// The variable naming the [`CrashMode`] the child writes with.
pub const CRASH_MODE_VAR: &str = "TIDESYNC_CRASH_MODE";

/// The metadata key holding the next sequence number; written in every batch.
const NEXT: &str = "crash|next";

/// What a store promises about acknowledged batches when its process is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promise {
    /// Every batch whose `write` returned `Ok` survives the kill (a store that syncs at each
    /// commit, or one whose commits reach the operating system before `write` returns: a
    /// killed process loses nothing the kernel already has).
    EveryAcknowledged,
    /// Batches survive once the store was closed after them; later ones may be lost, but
    /// only newest first and whole (what survives is the state after some batch). The
    /// writer closes and reopens the store every `close_every` batches.
    UntilClose {
        /// Batches between two closes.
        close_every: u64,
    },
}

/// One way to open a store for the crash test: a name (passed to the child), the factory
/// and what the store promises when opened that way.
#[derive(Clone, Copy)]
pub struct CrashMode<'a> {
    /// The name the child finds the mode by.
    pub name: &'a str,
    /// Opens the store.
    pub factory: &'a dyn StoreFactory,
    /// What survives a kill.
    pub promise: Promise,
}

impl std::fmt::Debug for CrashMode<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrashMode")
            .field("name", &self.name)
            .field("promise", &self.promise)
            .finish_non_exhaustive()
    }
}

fn def() -> TableDef {
    TableDef::new("notes")
        .column("text", ColumnType::String)
        .column("n", ColumnType::Integer)
}

fn item_id(n: u64) -> String {
    format!("item-{n}")
}

fn op(sequence: u64) -> Operation {
    Operation {
        id: format!("op-{sequence}"),
        kind: OpKind::Insert,
        state: OpState::Pending,
        table: "notes".to_owned(),
        item_id: item_id(sequence),
        item: None,
        base: None,
        sequence,
        version: 1,
    }
}

/// An append-only log file; a line goes out in one `write` call.
struct AckLog(File);

impl AckLog {
    fn line(&mut self, line: &str, sync: bool) {
        self.0.write_all(format!("{line}\n").as_bytes()).unwrap();
        if sync {
            self.0.sync_data().unwrap();
        }
    }
}

fn open_store(factory: &dyn StoreFactory, path: &Path) -> Arc<dyn LocalStore> {
    let store = factory.open(path).unwrap();
    store.define_table(&def()).unwrap();
    store
}

/// The child's body: writes until it is killed. Without the variables it returns at once,
/// so `cargo test -- --ignored` does not hang on it.
///
/// # Panics
/// When the store fails to open or to write, or the mode is not among `modes`.
pub fn crash_writer(modes: &[CrashMode<'_>]) {
    let (Some(path), Some(log), Ok(mode)) = (
        std::env::var_os(CRASH_STORE_VAR),
        std::env::var_os(CRASH_LOG_VAR),
        std::env::var(CRASH_MODE_VAR),
    ) else {
        return;
    };
    let mode = modes
        .iter()
        .find(|m| m.name == mode)
        .unwrap_or_else(|| panic!("no crash mode {mode:?}"));
    let path = PathBuf::from(path);
    let mut log = AckLog(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap(),
    );
    let mut store = open_store(mode.factory, &path);
    let mut next: u64 = store
        .config(NEXT)
        .unwrap()
        .map_or(1, |v| v.parse().unwrap());
    let mut stdout = std::io::stdout();
    for k in 1u64.. {
        let first = next;
        let mut batch = WriteBatch::new();
        // One to four new items, each with its insert op.
        for _ in 0..(next % 4 + 1) {
            batch.push(Write::PutItem {
                table: "notes".to_owned(),
                item: json!({"id": item_id(next), "text": "x".repeat((next % 300) as usize), "n": next})
                    .as_object()
                    .cloned()
                    .unwrap(),
            });
            batch.push(Write::PutOperation(op(next)));
            next += 1;
        }
        // Every fifth batch pushes the oldest op: its item and op leave together.
        let mut removed = None;
        if next % 5 == 0 {
            if let Some(oldest) = store.operations(0, 1).unwrap().pop() {
                removed = Some(oldest.sequence);
                batch.push(Write::DeleteOperation { id: oldest.id });
                batch.push(Write::DeleteItem {
                    table: "notes".to_owned(),
                    id: oldest.item_id,
                });
            }
        }
        batch.push(Write::SetConfig {
            key: NEXT.to_owned(),
            value: Some(next.to_string()),
        });
        let removed = removed.map_or("-".to_owned(), |n| n.to_string());
        // Not synced: a killed process loses nothing the kernel has, and a sync here would
        // put most kills between batches instead of inside one.
        log.line(&format!("B {k} {first} {} {removed}", next - 1), false);
        store.write(&batch).unwrap();
        log.line(&format!("A {k}"), true);
        writeln!(stdout, "ack {k}").unwrap();
        stdout.flush().unwrap();
        if let Promise::UntilClose { close_every } = mode.promise {
            if k % close_every == 0 {
                drop(store);
                store = open_store(mode.factory, &path);
                log.line(&format!("D {k}"), true);
            }
        }
    }
}

/// [`crash_rounds`] with `TIDESYNC_CRASH_ROUNDS` kills (default 20), after
/// [`creation_rounds`] (8 kills while a fresh store is being created); panics with the
/// finding when the store breaks its promise, and when nothing was ever acknowledged.
///
/// # Panics
/// On a lost acknowledged batch, a torn batch, a failed reopen, a writer that exits by itself,
/// or a run in which nothing was ever acknowledged.
pub fn sigkill_keeps_acknowledged_batches(mode: &CrashMode<'_>, writer_test: &str) -> CrashReport {
    let rounds: u32 = std::env::var("TIDESYNC_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let created =
        creation_rounds(mode, writer_test, 8).unwrap_or_else(|failure| panic!("{failure}"));
    eprintln!("crash test {} while creating: {created}", mode.name);
    let report =
        crash_rounds(mode, writer_test, rounds).unwrap_or_else(|failure| panic!("{failure}"));
    eprintln!("crash test {}: {report}", mode.name);
    assert!(
        report.acknowledged > 0,
        "the writer never acknowledged a batch"
    );
    report
}

/// The parent: re-runs the current test binary's `writer_test` as a child against one store
/// file, kills it after a random number (2 to 64) of acknowledged batches, reopens the store
/// and checks it against the child's log, `rounds` times.
///
/// # Errors
/// The first broken promise found, as a [`CrashFailure`].
///
/// # Panics
/// When the child cannot be started, or exits by itself (a writer only stops when killed).
pub fn crash_rounds(
    mode: &CrashMode<'_>,
    writer_test: &str,
    rounds: u32,
) -> Result<CrashReport, CrashFailure> {
    let seed = seed_from_env("TIDESYNC_CRASH_SEED");
    eprintln!(
        "crash test {}: {rounds} rounds, TIDESYNC_CRASH_SEED={seed}",
        mode.name
    );
    let mut random = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.store");
    let mut survivor = check::Survivor::default();
    let mut report = CrashReport::default();
    for round in 0..rounds {
        let kill_after = KillAfter::Acks(random.random_range(2..=64));
        let log = kill_child(mode, writer_test, &path, dir.path(), round, kill_after);
        survivor = check::check_round(mode, &path, round, &survivor, &log, &mut report)?;
    }
    Ok(report)
}

/// Kills the writer `rounds` times as soon as it starts, each time on a fresh store file, so
/// that the kill lands while the store is being created (or its table defined): the file
/// must open afterwards, empty or holding what was acknowledged.
///
/// # Errors
/// The first broken promise found, as a [`CrashFailure`].
///
/// # Panics
/// When the child cannot be started, or exits by itself.
pub fn creation_rounds(
    mode: &CrashMode<'_>,
    writer_test: &str,
    rounds: u32,
) -> Result<CrashReport, CrashFailure> {
    let dir = tempfile::tempdir().unwrap();
    let mut report = CrashReport::default();
    for round in 0..rounds {
        let path = dir.path().join(format!("fresh-{round}.store"));
        let log = kill_child(
            mode,
            writer_test,
            &path,
            dir.path(),
            round,
            KillAfter::Start,
        );
        let start = check::Survivor::default();
        check::check_round(mode, &path, round, &start, &log, &mut report)?;
    }
    Ok(report)
}

/// When the parent kills the child.
#[derive(Debug, Clone, Copy)]
enum KillAfter {
    /// At its first line on stdout (the test harness's, before the writer runs).
    Start,
    /// After it reported this many acknowledged batches.
    Acks(u64),
}

/// Runs the writer once against `path` and kills it at `kill_after`; returns its log.
fn kill_child(
    mode: &CrashMode<'_>,
    writer_test: &str,
    path: &Path,
    dir: &Path,
    round: u32,
    kill_after: KillAfter,
) -> check::RoundLog {
    let log = dir.join(format!("acks-{round}.log"));
    let stderr = dir.join(format!("child-{round}.stderr"));
    let _ = std::fs::remove_file(&log);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            writer_test,
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CRASH_STORE_VAR, path)
        .env(CRASH_LOG_VAR, &log)
        .env(CRASH_MODE_VAR, mode.name)
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let reports = BufReader::new(child.stdout.take().unwrap());
    let mut acks = 0;
    let mut reached = false;
    for line in reports.lines() {
        let line = line.unwrap();
        reached = match kill_after {
            KillAfter::Start => true,
            KillAfter::Acks(n) => {
                acks += u64::from(line.starts_with("ack "));
                acks == n
            }
        };
        if reached {
            break;
        }
    }
    if !reached {
        let status = child.wait().unwrap();
        let stderr = std::fs::read_to_string(&stderr).unwrap_or_default();
        panic!("round {round}: the writer exited by itself with {status}:\n{stderr}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    check::RoundLog::read(&log)
}

/// A seed from `var` when set, else from the clock.
pub fn seed_from_env(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}
