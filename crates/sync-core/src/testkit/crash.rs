//! The SIGKILL crash harness shared by the store crates.
//!
//! A store crate's test file holds two tests: an `#[ignore]`d writer that calls
//! [`crash_writer`], and the test proper that calls [`sigkill_never_tears_a_batch`]
//! with the writer's name. The test re-runs its own binary with
//! [`CRASH_STORE_VAR`] set, so the child runs only the writer, which writes items
//! and their queue entries in a loop through [`LocalStore::write`] (each item
//! and its insert op in one batch, as the engine writes them) until it is killed
//! with SIGKILL (`Child::kill` on Unix) at a random moment. After each kill the
//! store must reopen with every item matched by exactly one queue entry and every
//! entry by its item, and with its sequence counter in step with the queue.
//!
//! `TIDESYNC_CRASH_ROUNDS` sets the number of kills (default 20) and
//! `TIDESYNC_CRASH_SEED` replays a run's delays (the seed is printed).
//!
//! ```ignore
//! #[test]
//! #[ignore = "the child process of sigkill_never_tears_a_batch"]
//! fn crash_writer() {
//!     tidesync_core::testkit::crash::crash_writer(&MyFactory);
//! }
//!
//! #[test]
//! fn sigkill_never_tears_a_batch() {
//!     tidesync_core::testkit::crash::sigkill_never_tears_a_batch(&MyFactory, "crash_writer");
//! }
//! ```

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tidesync_protocol::odata::Query;

use super::StoreFactory;
use crate::error::StoreError;
use crate::model::{ColumnType, OpKind, OpState, Operation, TableDef};
use crate::store::{LocalStore, Write, WriteBatch};

/// The variable naming the store file; set only in the child.
pub const CRASH_STORE_VAR: &str = "TIDESYNC_CRASH_STORE";

/// The metadata key holding the next sequence number; written in every batch.
const NEXT: &str = "crash|next";

fn def() -> TableDef {
    TableDef::new("notes")
        .column("text", ColumnType::String)
        .column("n", ColumnType::Integer)
}

fn op(sequence: u64, item_id: &str) -> Operation {
    Operation {
        id: format!("op-{sequence}"),
        kind: OpKind::Insert,
        state: OpState::Pending,
        table: "notes".to_owned(),
        item_id: item_id.to_owned(),
        item: None,
        base: None,
        sequence,
        version: 1,
    }
}

/// The child's body: writes until it is killed. Without [`CRASH_STORE_VAR`] it
/// returns at once, so `cargo test -- --ignored` does not hang on it.
///
/// # Panics
/// When the store fails to open or to write.
pub fn crash_writer(factory: &dyn StoreFactory) {
    let Some(path) = std::env::var_os(CRASH_STORE_VAR) else {
        return;
    };
    let store = factory.open(Path::new(&path)).unwrap();
    store.define_table(&def()).unwrap();
    let mut next: u64 = store
        .config(NEXT)
        .unwrap()
        .map_or(1, |v| v.parse().unwrap());
    loop {
        let mut batch = WriteBatch::new();
        // One to four new items, each with its insert op.
        for _ in 0..(next % 4 + 1) {
            let id = format!("item-{next}");
            batch.push(Write::PutItem {
                table: "notes".to_owned(),
                item: json!({"id": id, "text": "x".repeat((next % 300) as usize), "n": next})
                    .as_object()
                    .cloned()
                    .unwrap(),
            });
            batch.push(Write::PutOperation(op(next, &id)));
            next += 1;
        }
        // Every fifth batch pushes the oldest op: its item and op leave together.
        if next % 5 == 0 {
            if let Some(oldest) = store.operations(0, 1).unwrap().pop() {
                batch.push(Write::DeleteOperation {
                    id: oldest.id.clone(),
                });
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
        store.write(&batch).unwrap();
    }
}

/// Reopens the store and checks the invariant; returns the number of items.
fn check(factory: &dyn StoreFactory, path: &Path, round: u32) -> usize {
    let store: std::sync::Arc<dyn LocalStore> = match factory.open(path) {
        Ok(store) => store,
        Err(StoreError::Busy(_)) => panic!("round {round}: the killed child still holds the file"),
        Err(e) => panic!("round {round}: reopen failed: {e}"),
    };
    if store.table("notes").unwrap().is_none() {
        return 0; // killed before its first definition committed
    }
    let items: BTreeSet<String> = store
        .query("notes", &Query::all())
        .unwrap()
        .items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    let ops = store.operations(0, usize::MAX).unwrap();
    let op_items: BTreeSet<String> = ops.iter().map(|o| o.item_id.clone()).collect();
    assert_eq!(ops.len(), items.len(), "round {round}: one op per item");
    assert_eq!(items, op_items, "round {round}: items and queue disagree");
    // The (table, id) lookup on a spread of about 200 items: every item would
    // make each round's check cost grow with everything written so far.
    let stride = items.len() / 200 + 1;
    for id in items.iter().step_by(stride) {
        assert_eq!(
            store.operations_for("notes", id).unwrap().len(),
            1,
            "round {round}: lookup of {id}"
        );
    }
    assert_eq!(
        store.count_operations(None).unwrap(),
        ops.len() as u64,
        "round {round}: the op count"
    );
    let next: u64 = store
        .config(NEXT)
        .unwrap()
        .map_or(1, |v| v.parse().unwrap());
    assert!(
        store.max_sequence().unwrap() < next,
        "round {round}: the counter travels with its batch"
    );
    items.len()
}

/// A small xorshift generator: the delays need no statistics.
pub fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A seed from `var` when set, else from the clock (never zero).
pub fn seed_from_env(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
        | 1
}

/// The parent: re-runs the current test binary's `writer_test` as a child
/// against one store file, kills it at a random moment, reopens and checks, for
/// `TIDESYNC_CRASH_ROUNDS` rounds (default 20). Returns the item count after
/// each kill.
///
/// # Panics
/// On a torn batch, a failed reopen, a writer that exits by itself, or a run
/// in which nothing was ever committed.
pub fn sigkill_never_tears_a_batch(factory: &dyn StoreFactory, writer_test: &str) -> Vec<usize> {
    let rounds: u32 = std::env::var("TIDESYNC_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed = seed_from_env("TIDESYNC_CRASH_SEED");
    eprintln!("crash test: {rounds} rounds, TIDESYNC_CRASH_SEED={seed}");
    let mut random = seed;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.store");
    let exe = std::env::current_exe().unwrap();
    let mut counts = Vec::new();
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([writer_test, "--exact", "--ignored", "--test-threads=1"])
            .env(CRASH_STORE_VAR, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = 40 + next_random(&mut random) % 360;
        std::thread::sleep(Duration::from_millis(delay));
        // If the child already ended, it failed: a writer only stops when killed.
        if let Some(status) = child.try_wait().unwrap() {
            panic!("round {round}: the writer exited by itself with {status}");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        counts.push(check(factory, &path, round));
    }
    eprintln!("crash test: items after each kill {counts:?}");
    assert!(
        counts.last().copied().unwrap_or(0) > 0,
        "the writer never committed anything"
    );
    counts
}
