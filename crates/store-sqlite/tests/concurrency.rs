//! Two handles (two connections sets) on one file: both work, writers take
//! turns, a held write lock gives `Busy` after the timeout and never blocks readers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;
use tidesync_core::testkit::QueueView;

use serde_json::json;
use tidesync_core::{
    ColumnType, LocalStore, OpKind, OpState, Operation, Query, StoreError, TableDef, Write,
    WriteBatch,
};
use tidesync_store_sqlite::{SqliteOptions, SqliteStore, Synchronous};

fn put(id: String, n: i64) -> Write {
    Write::PutItem {
        table: "t".into(),
        item: json!({"id": id, "n": n}).as_object().cloned().unwrap(),
    }
}

fn op(id: String, sequence: u64, item_id: String) -> Operation {
    Operation {
        id,
        kind: OpKind::Insert,
        state: OpState::Pending,
        table: "t".into(),
        item_id,
        item: None,
        base: None,
        sequence,
        version: 1,
    }
}

#[test]
fn two_handles_write_in_turns_and_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let first = Arc::new(SqliteStore::open(&path).unwrap());
    let full = SqliteOptions {
        synchronous: Synchronous::Full,
        ..SqliteOptions::default()
    };
    let second = Arc::new(SqliteStore::open_with(&path, full).unwrap());
    first
        .define_table(&TableDef::new("t").column("n", ColumnType::Integer))
        .unwrap();
    assert!(
        second.table("t").unwrap().is_some(),
        "a definition made through another handle"
    );
    let writers: Vec<_> = [(0u64, Arc::clone(&first)), (1, Arc::clone(&second))]
        .into_iter()
        .map(|(who, store)| {
            std::thread::spawn(move || {
                for i in 0..100u64 {
                    let sequence = who * 1000 + i + 1;
                    let id = format!("w{who}-{i}");
                    let mut batch = WriteBatch::new();
                    batch.push(put(id.clone(), i64::try_from(i).unwrap()));
                    batch.push(Write::PutOperation(op(format!("op-{id}"), sequence, id)));
                    store.write(&batch).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    for store in [&first, &second] {
        let all = store.query("t", &Query::all().with_count().top(0)).unwrap();
        assert_eq!(all.count, Some(200));
        assert_eq!(store.count_operations(None).unwrap(), 200);
        assert_eq!(store.max_sequence().unwrap(), 1100);
    }
    // The second handle grows the table; the first sees and uses the new column.
    second
        .define_table(&TableDef::new("t").column("extra", ColumnType::String))
        .unwrap();
    let mut batch = WriteBatch::new();
    batch.push(Write::PutItem {
        table: "t".into(),
        item: json!({"id": "x", "extra": "yes"})
            .as_object()
            .cloned()
            .unwrap(),
    });
    first.write(&batch).unwrap();
    assert_eq!(
        second.get("t", "x").unwrap().unwrap()["extra"],
        json!("yes")
    );
}

#[test]
fn a_held_write_lock_gives_busy_and_leaves_readers_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let options = SqliteOptions {
        busy_timeout: Duration::from_millis(100),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&path, options).unwrap();
    store
        .define_table(&TableDef::new("t").column("n", ColumnType::Integer))
        .unwrap();
    let mut batch = WriteBatch::new();
    batch.push(put("a".into(), 1));
    store.write(&batch).unwrap();

    // Another process (here: another connection) holds the write lock.
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("BEGIN IMMEDIATE; INSERT INTO \"t\" (\"id\", \"n\") VALUES ('b', 2);")
        .unwrap();
    let mut blocked = WriteBatch::new();
    blocked.push(put("c".into(), 3));
    match store.write(&blocked) {
        Err(StoreError::Busy(_)) => {}
        other => panic!("expected Busy, got {other:?}"),
    }
    // Readers are not blocked and see only committed data.
    assert!(store.get("t", "a").unwrap().is_some());
    assert_eq!(store.get("t", "b").unwrap(), None);
    assert_eq!(store.query("t", &Query::all()).unwrap().items.len(), 1);
    // Opening another handle meanwhile is fine too (the format is current).
    let reader = SqliteStore::open_with(&path, options).unwrap();
    assert_eq!(reader.query("t", &Query::all()).unwrap().items.len(), 1);

    other.execute_batch("COMMIT").unwrap();
    store.write(&blocked).unwrap();
    assert_eq!(reader.query("t", &Query::all()).unwrap().items.len(), 3);
}
