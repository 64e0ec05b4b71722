//! A measurement, not a timing assertion: applying 100,000 pulled rows through
//! [`RedbStore`]'s `write` beside raw redb loops inserting the same rows in one
//! write transaction with the same durability, in the same run. Prints the
//! times (`cargo test -p tidesync-store-redb --test bulk -- --nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use redb::{Database, ReadableTableMetadata, TableDefinition};
use serde_json::json;
use tidesync_core::{ColumnType, Item, LocalStore, TableDef, Write, WriteBatch};
use tidesync_protocol::odata::Query;
use tidesync_store_redb::RedbStore;

const N: usize = 100_000;

fn rows() -> Vec<Item> {
    (0..N)
        .map(|i| {
            json!({
                "id": format!("row-{i:06}"),
                "text": format!("text {i}"),
                "n": i,
                "x": i as f64 / 7.0,
                "flag": i % 2 == 0,
                "updatedAt": "2024-01-15T10:20:30.123Z",
                "version": "v1",
            })
            .as_object()
            .cloned()
            .unwrap()
        })
        .collect()
}

fn store_time(rows: &[Item]) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("store.redb")).unwrap();
    store
        .define_table(
            &TableDef::new("fx")
                .column("text", ColumnType::String)
                .column("n", ColumnType::Integer)
                .column("x", ColumnType::Real)
                .column("flag", ColumnType::Bool),
        )
        .unwrap();
    let batch = WriteBatch {
        writes: rows
            .iter()
            .map(|item| Write::PutItem {
                table: "fx".to_owned(),
                item: item.clone(),
            })
            .collect(),
    };
    let started = Instant::now();
    store.write(&batch).unwrap();
    let elapsed = started.elapsed();
    let count = store
        .query("fx", &Query::all().with_count().top(0))
        .unwrap();
    assert_eq!(count.count, Some(N as u64));
    elapsed
}

/// The raw loop: each row's JSON text under its id, plus (when `indexed`) the
/// `(updatedAt, id)` entry, in one write transaction with immediate durability.
fn raw_time(rows: &[Item], indexed: bool) -> Duration {
    const ROWS: TableDefinition<&str, &[u8]> = TableDefinition::new("rows");
    const INDEX: TableDefinition<(&str, &str), ()> = TableDefinition::new("index");
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("raw.redb")).unwrap();
    let started = Instant::now();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(ROWS).unwrap();
        let mut index = txn.open_table(INDEX).unwrap();
        for item in rows {
            let id = item["id"].as_str().unwrap();
            let bytes = serde_json::to_vec(item).unwrap();
            table.insert(id, bytes.as_slice()).unwrap();
            if indexed {
                let updated = item["updatedAt"].as_str().unwrap();
                index.insert((updated, id), ()).unwrap();
            }
        }
    }
    txn.commit().unwrap();
    let elapsed = started.elapsed();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    assert_eq!(txn.open_table(ROWS).unwrap().len().unwrap(), N as u64);
    elapsed
}

#[test]
fn bulk_apply_100k_store_vs_raw_redb() {
    let rows = rows();
    let raw = raw_time(&rows, false);
    let raw_indexed = raw_time(&rows, true);
    let store = store_time(&rows);
    eprintln!(
        "bulk apply of {N} rows, one write transaction, immediate durability:\n  \
         RedbStore::write          {store:?}\n  \
         raw redb (JSON rows)      {raw:?}\n  \
         raw redb (JSON + index)   {raw_indexed:?}\n  \
         store / raw+index         {:.2}x",
        store.as_secs_f64() / raw_indexed.as_secs_f64()
    );
}
