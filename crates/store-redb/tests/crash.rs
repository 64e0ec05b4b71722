//! Crash safety: a child process (this test binary, re-run with a variable
//! selecting the ignored `crash_writer` test) writes items and their queue
//! entries in a loop through `LocalStore::write`, and is killed with SIGKILL
//! (`Child::kill`) at random moments. After each kill the store must reopen
//! with every item matched by its queue entry and every entry by its item.
//!
//! `TIDESYNC_CRASH_ROUNDS` sets the number of kills (default 20) and
//! `TIDESYNC_CRASH_SEED` replays a run's delays (the seed is printed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tidesync_core::{
    ColumnType, LocalStore, OpKind, OpState, Operation, StoreError, TableDef, Write, WriteBatch,
};
use tidesync_protocol::odata::Query;
use tidesync_store_redb::RedbStore;

const STORE_VAR: &str = "TIDESYNC_CRASH_STORE";
const NEXT: &str = "crash|next";

fn def() -> TableDef {
    TableDef::new("notes")
        .column("text", ColumnType::String)
        .column("n", ColumnType::Integer)
}

fn op(sequence: u64, item_id: &str, kind: OpKind) -> Operation {
    Operation {
        id: format!("op-{sequence}"),
        kind,
        state: OpState::Pending,
        table: "notes".to_owned(),
        item_id: item_id.to_owned(),
        item: None,
        base: None,
        sequence,
        version: 1,
    }
}

/// The child: writes until it is killed. Without the variable it returns at
/// once, so `cargo test -- --ignored` does not hang on it.
#[test]
#[ignore = "the child process of sigkill_never_tears_a_batch"]
fn crash_writer() {
    let Some(path) = std::env::var_os(STORE_VAR) else {
        return;
    };
    let store = RedbStore::open(&path).unwrap();
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
            batch.push(Write::PutOperation(op(next, &id, OpKind::Insert)));
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

/// Checks the invariant; returns the number of items.
fn check(path: &Path, round: u32) -> usize {
    let store = match RedbStore::open(path) {
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
    for id in &items {
        assert_eq!(
            store.operations_for("notes", id).unwrap().len(),
            1,
            "round {round}: lookup of {id}"
        );
    }
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
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sigkill_never_tears_a_batch() {
    let rounds: u32 = std::env::var("TIDESYNC_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed = std::env::var("TIDESYNC_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("crash test: {rounds} rounds, TIDESYNC_CRASH_SEED={seed}");
    let mut random = seed;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let exe = std::env::current_exe().unwrap();
    let mut counts = Vec::new();
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args(["crash_writer", "--exact", "--ignored", "--test-threads=1"])
            .env(STORE_VAR, &path)
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
        counts.push(check(&path, round));
    }
    eprintln!("crash test: items after each kill {counts:?}");
    assert!(
        counts.last().copied().unwrap_or(0) > 0,
        "the writer never committed anything"
    );
}
