//! redb-specific behaviour beyond the conformance suite: locking, foreign and
//! newer files, atomic growth, `updatedAt`-ordered queries and eventual durability.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tidesync_core::testkit::QueueView;
use tidesync_core::{ColumnType, Item, LocalStore, StoreError, TableDef, Write, WriteBatch};
use tidesync_protocol::odata::eval::run_query;
use tidesync_protocol::odata::{Query, parse_filter};
use tidesync_store_redb::{Durability, FORMAT_VERSION, RedbOptions, RedbStore};

fn item(value: Value) -> Item {
    value.as_object().cloned().unwrap()
}

fn put(table: &str, value: Value) -> Write {
    Write::PutItem {
        table: table.to_owned(),
        item: item(value),
    }
}

fn write(store: &RedbStore, writes: Vec<Write>) {
    store.write(&WriteBatch { writes }).unwrap();
}

fn todo() -> TableDef {
    TableDef::new("todo")
        .column("text", ColumnType::String)
        .column("n", ColumnType::Integer)
}

#[test]
fn a_second_handle_is_busy_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let first = RedbStore::open(&path).unwrap();
    match RedbStore::open(&path) {
        Err(StoreError::Busy(_)) => {}
        other => panic!("second open gave {other:?}"),
    }
    first.define_table(&todo()).unwrap();
    drop(first);
    let again = RedbStore::open(&path).unwrap();
    assert_eq!(again.table("todo").unwrap(), Some(todo()));
}

#[test]
fn a_foreign_redb_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.redb");
    let db = redb::Database::create(&path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(redb::TableDefinition::<&str, u64>::new("theirs"))
        .unwrap()
        .insert("k", 1)
        .unwrap();
    txn.commit().unwrap();
    drop(db);
    match RedbStore::open(&path) {
        Err(StoreError::Corrupt(message)) => assert!(message.contains("not a tidesync store")),
        other => panic!("foreign file gave {other:?}"),
    }
}

#[test]
fn a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    drop(RedbStore::open(&path).unwrap());
    let db = redb::Database::create(&path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(redb::TableDefinition::<&str, u64>::new("tidesync/meta"))
        .unwrap()
        .insert("format_version", FORMAT_VERSION + 1)
        .unwrap();
    txn.commit().unwrap();
    drop(db);
    match RedbStore::open(&path) {
        Err(StoreError::UnsupportedFormat { found, supported }) => {
            assert_eq!(u64::from(found), FORMAT_VERSION + 1);
            assert_eq!(u64::from(supported), FORMAT_VERSION);
        }
        other => panic!("newer format gave {other:?}"),
    }
}

#[test]
fn a_refused_redefinition_adds_no_column() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("s.redb")).unwrap();
    store.define_table(&todo()).unwrap();
    let retyped = TableDef::new("todo")
        .column("extra", ColumnType::Real)
        .column("n", ColumnType::String);
    assert!(matches!(
        store.define_table(&retyped),
        Err(StoreError::InvalidDefinition(_))
    ));
    assert_eq!(store.table("todo").unwrap(), Some(todo()));
}

/// Rows whose `updatedAt` values tie, are null, and differ only in fraction
/// width (text order is not time order there), to check that queries ordered
/// by `updatedAt` (format 1 answered them from an index; format 2 scans)
/// gives exactly what the evaluator gives.
fn index_store() -> (tempfile::TempDir, RedbStore, Vec<Item>) {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("s.redb")).unwrap();
    store.define_table(&todo()).unwrap();
    let stamps = [
        Value::Null,
        json!("2024-01-15T10:20:30.123Z"),
        json!("2024-01-15T10:20:30.123456Z"),
        json!("2024-01-15T10:20:30Z"),
        json!("2023-12-31T23:00:00+05:00"),
    ];
    let writes: Vec<Write> = (0..60)
        .map(|i| {
            put(
                "todo",
                json!({"id": format!("r{:02}", (i * 37) % 60), "n": i % 7,
                       "text": if i % 5 == 0 { Value::Null } else { json!(format!("t{i}")) },
                       "updatedAt": stamps[i % stamps.len()]}),
            )
        })
        .collect();
    write(&store, writes);
    // Move some rows to another stamp and delete others.
    write(
        &store,
        vec![
            put(
                "todo",
                json!({"id": "r03", "n": 1, "updatedAt": "2030-01-01T00:00:00Z"}),
            ),
            put("todo", json!({"id": "r04", "n": 1})),
            Write::DeleteItem {
                table: "todo".to_owned(),
                id: "r05".to_owned(),
            },
        ],
    );
    let rows = store.query("todo", &Query::all()).unwrap().items;
    assert_eq!(rows.len(), 59);
    (dir, store, rows)
}

#[test]
fn updated_at_queries_match_the_evaluator() {
    let (_dir, store, rows) = index_store();
    let filters = [
        None,
        Some("n ge 3"),
        Some("n eq 1 or text eq null"),
        Some("not (n eq 2) and updatedAt gt '2024-01-01T00:00:00Z'"),
        Some("n in (0, 6)"),
    ];
    for filter in filters {
        for (skip, top) in [
            (None, None),
            (None, Some(0)),
            (None, Some(5)),
            (Some(3), Some(4)),
            (Some(50), None),
        ] {
            for then_id in [false, true] {
                let mut query = Query::all().order_by("updatedAt");
                if then_id {
                    query = query.order_by("id");
                }
                if let Some(f) = filter {
                    query = query.filter(parse_filter(f).unwrap());
                }
                query.skip = skip;
                query.top = top;
                for select in [None, Some(vec!["id".to_owned(), "n".to_owned()])] {
                    query.select = select;
                    let expected = run_query(rows.clone(), &query).unwrap().items;
                    let actual = store.query("todo", &query).unwrap().items;
                    assert_eq!(actual, expected, "{query:?}");
                }
            }
        }
    }
}

#[test]
fn eventual_durability_keeps_batches_across_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let options = RedbOptions {
        durability: Durability::Eventual,
        ..RedbOptions::default()
    };
    let store = RedbStore::open_with(&path, options).unwrap();
    store.define_table(&todo()).unwrap();
    for i in 0..50 {
        write(
            &store,
            vec![put("todo", json!({"id": format!("a{i}"), "n": i}))],
        );
    }
    drop(store);
    let store = RedbStore::open(&path).unwrap();
    let count = store
        .query("todo", &Query::all().with_count().top(0))
        .unwrap();
    assert_eq!(count.count, Some(50));
}

fn op(id: &str, sequence: u64, item_id: &str) -> tidesync_core::Operation {
    tidesync_core::Operation {
        id: id.to_owned(),
        kind: tidesync_core::OpKind::Update,
        state: tidesync_core::OpState::Pending,
        table: "todo".to_owned(),
        item_id: item_id.to_owned(),
        item: None,
        base: None,
        sequence,
        version: 1,
    }
}

#[test]
fn ops_sharing_a_sequence_are_both_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("s.redb")).unwrap();
    store.define_table(&todo()).unwrap();
    let (b, a, c) = (op("b", 5, "x"), op("a", 5, "x"), op("c", 6, "y"));
    write(
        &store,
        [&b, &a, &c]
            .into_iter()
            .map(|o| Write::PutOperation(o.clone()))
            .collect(),
    );
    let ids =
        |ops: Vec<tidesync_core::Operation>| ops.into_iter().map(|o| o.id).collect::<Vec<_>>();
    assert_eq!(ids(store.operations(0, 10).unwrap()), ["a", "b", "c"]);
    assert_eq!(ids(store.operations(5, 10).unwrap()), ["c"]);
    assert_eq!(ids(store.operations_for("todo", "x").unwrap()), ["a", "b"]);
    assert_eq!(store.operation("b").unwrap(), Some(b));
    assert_eq!(store.count_operations(Some("todo")).unwrap(), 3);
    write(&store, vec![Write::DeleteOperation { id: "a".to_owned() }]);
    assert_eq!(ids(store.operations_for("todo", "x").unwrap()), ["b"]);
    assert_eq!(store.max_sequence().unwrap(), 6);
}

#[test]
fn table_names_differing_only_in_case_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("s.redb")).unwrap();
    store.define_table(&todo()).unwrap();
    assert!(matches!(
        store.define_table(&TableDef::new("TODO")),
        Err(StoreError::InvalidDefinition(_))
    ));
    assert_eq!(store.table("TODO").unwrap(), None);
}
