//! Measures a 100,000-row bulk apply through `SqliteStore::write` beside a raw
//! rusqlite loop doing the same inserts (same pragmas, one prepared statement,
//! one transaction). A measurement printed with `eprintln!`, not an assertion:
//! `cargo test -p tidesync-store-sqlite --release --test bulk -- --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::json;
use tidesync_core::{ColumnType, LocalStore, Query, TableDef, Write, WriteBatch};
use tidesync_store_sqlite::SqliteStore;

const N: usize = 100_000;

fn text(i: usize) -> String {
    format!("item number {i}")
}

#[allow(clippy::cast_precision_loss)]
fn real(i: usize) -> f64 {
    i as f64 / 7.0
}

fn updated_at(i: usize) -> String {
    format!(
        "2024-01-15T10:{:02}:{:02}.{:03}Z",
        (i / 60) % 60,
        i % 60,
        i % 1000
    )
}

fn store_apply(dir: &std::path::Path) -> Duration {
    let store = SqliteStore::open(dir.join("store.db")).unwrap();
    store
        .define_table(
            &TableDef::new("t")
                .column("text", ColumnType::String)
                .column("n", ColumnType::Integer)
                .column("x", ColumnType::Real)
                .column("flag", ColumnType::Bool),
        )
        .unwrap();
    let mut batch = WriteBatch::new();
    for i in 0..N {
        let item = json!({
            "id": format!("row-{i:06}"), "text": text(i), "n": i, "x": real(i),
            "flag": i % 2 == 0, "updatedAt": updated_at(i), "version": "v1",
        });
        batch.push(Write::PutItem {
            table: "t".into(),
            item: item.as_object().cloned().unwrap(),
        });
    }
    let started = Instant::now();
    store.write(&batch).unwrap();
    let elapsed = started.elapsed();
    let count = store
        .query("t", &Query::all().with_count().top(0))
        .unwrap()
        .count;
    assert_eq!(count, Some(N as u64));
    elapsed
}

fn raw_apply(dir: &std::path::Path) -> Duration {
    let mut conn = rusqlite::Connection::open(dir.join("raw.db")).unwrap();
    let _: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute_batch(
        "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, createdAt TEXT, updatedAt TEXT, \
         version TEXT, text TEXT, n INTEGER, x, flag INTEGER); \
         CREATE INDEX t_updated ON t (updatedAt, id);",
    )
    .unwrap();
    // The same inputs, prepared before the clock starts, as the store's batch is.
    let rows: Vec<(String, String, i64, f64, bool, String)> = (0..N)
        .map(|i| {
            (
                format!("row-{i:06}"),
                text(i),
                i64::try_from(i).unwrap(),
                real(i),
                i % 2 == 0,
                updated_at(i),
            )
        })
        .collect();
    let started = Instant::now();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT OR REPLACE INTO t (id, createdAt, updatedAt, version, text, n, x, flag) \
                 VALUES (?1, NULL, ?2, 'v1', ?3, ?4, ?5, ?6)",
            )
            .unwrap();
        for (id, text, n, x, flag, updated) in &rows {
            insert.execute((id, updated, text, n, x, flag)).unwrap();
        }
    }
    tx.commit().unwrap();
    started.elapsed()
}

#[test]
fn bulk_apply_100k_store_vs_raw_rusqlite() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_apply(dir.path());
    let store = store_apply(dir.path());
    #[allow(clippy::cast_precision_loss)]
    let ratio = store.as_secs_f64() / raw.as_secs_f64().max(1e-9);
    eprintln!(
        "bulk apply of {N} rows in one transaction: SqliteStore::write {store:?}, raw rusqlite loop {raw:?} ({ratio:.2}x)"
    );
}
