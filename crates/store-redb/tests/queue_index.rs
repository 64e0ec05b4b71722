//! The in-memory queue index (format 2): it must agree with the file after
//! failed batches, batches that change the same op twice, reopening, and the
//! migration of a format 1 file whose lookups (and `updatedAt` index) were
//! redb tables.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use redb::{ReadableDatabase, TableDefinition, TableHandle};
use serde_json::{Value, json};
use tidesync_core::testkit::QueueView;
use tidesync_core::{
    ColumnType, Item, LocalStore, OpKind, OpState, Operation, StoreError, TableDef, Write,
    WriteBatch,
};
use tidesync_store_redb::{FORMAT_VERSION, RedbStore};

fn item(value: Value) -> Item {
    value.as_object().cloned().unwrap()
}

fn op(id: &str, table: &str, item_id: &str, sequence: u64) -> Operation {
    Operation {
        id: id.to_owned(),
        kind: OpKind::Insert,
        state: OpState::Pending,
        table: table.to_owned(),
        item_id: item_id.to_owned(),
        item: None,
        base: None,
        sequence,
        version: 1,
    }
}

fn put(table: &str, value: Value) -> Write {
    Write::PutItem {
        table: table.to_owned(),
        item: item(value),
    }
}

fn write(store: &RedbStore, writes: Vec<Write>) -> Result<(), StoreError> {
    store.write(&WriteBatch { writes })
}

fn ids(ops: &[Operation]) -> Vec<&str> {
    ops.iter().map(|o| o.id.as_str()).collect()
}

fn store() -> (tempfile::TempDir, RedbStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("s.redb")).unwrap();
    store
        .define_table(&TableDef::new("todo").column("text", ColumnType::String))
        .unwrap();
    store
        .define_table(&TableDef::new("note").column("text", ColumnType::String))
        .unwrap();
    (dir, store)
}

/// Everything the queue answers, to compare before and after a failed batch.
fn queue_view(store: &RedbStore) -> (Vec<Operation>, Vec<Vec<Operation>>, Vec<u64>) {
    let ops = store.operations(0, 100).unwrap();
    let per_item = [("todo", "a"), ("todo", "b"), ("note", "c")]
        .iter()
        .map(|(t, i)| store.operations_for(t, i).unwrap())
        .collect();
    let counts = vec![
        store.count_operations(None).unwrap(),
        store.count_operations(Some("todo")).unwrap(),
        store.count_operations(Some("note")).unwrap(),
        store.max_sequence().unwrap(),
    ];
    (ops, per_item, counts)
}

#[test]
fn a_batch_failing_midway_leaves_the_queue_as_it_was() {
    let (_dir, store) = store();
    let kept = op("op-kept", "todo", "a", 1);
    write(
        &store,
        vec![
            put("todo", json!({"id": "a", "text": "x"})),
            Write::PutOperation(kept.clone()),
        ],
    )
    .unwrap();
    let before = queue_view(&store);

    // Each batch changes the queue, then fails on a write to an unknown table.
    let failing: Vec<Vec<Write>> = vec![
        // A new op.
        vec![Write::PutOperation(op("op-new", "todo", "b", 2))],
        // The kept op moved to another sequence and another item.
        vec![Write::PutOperation(op("op-kept", "note", "c", 9))],
        // The kept op deleted.
        vec![Write::DeleteOperation {
            id: "op-kept".to_owned(),
        }],
        // The table's ops deleted, then a new one queued.
        vec![
            Write::DeleteTableOperations {
                table: "todo".to_owned(),
            },
            Write::PutOperation(op("op-new", "todo", "b", 3)),
        ],
    ];
    for mut writes in failing {
        writes.push(put("missing", json!({"id": "z"})));
        match write(&store, writes) {
            Err(StoreError::UnknownTable(t)) => assert_eq!(t, "missing"),
            other => panic!("the batch gave {other:?}"),
        }
        assert_eq!(queue_view(&store), before);
        assert_eq!(store.operation("op-kept").unwrap(), Some(kept.clone()));
        assert_eq!(store.operation("op-new").unwrap(), None);
        assert_eq!(
            store.get_with_operations("todo", "a").unwrap().1,
            vec![kept.clone()]
        );
    }
}

#[test]
fn one_batch_changing_an_op_twice_keeps_its_last_state() {
    let (_dir, store) = store();
    write(
        &store,
        vec![
            Write::PutOperation(op("x", "todo", "a", 1)),
            Write::PutOperation(op("x", "todo", "b", 2)),
            Write::PutOperation(op("y", "todo", "a", 3)),
            Write::DeleteOperation { id: "y".to_owned() },
            Write::PutOperation(op("y", "note", "c", 4)),
            Write::PutOperation(op("z", "todo", "b", 5)),
        ],
    )
    .unwrap();
    assert_eq!(ids(&store.operations(0, 10).unwrap()), ["x", "y", "z"]);
    assert!(store.operations_for("todo", "a").unwrap().is_empty());
    assert_eq!(ids(&store.operations_for("todo", "b").unwrap()), ["x", "z"]);
    assert_eq!(ids(&store.operations_for("note", "c").unwrap()), ["y"]);
    assert_eq!(store.count_operations(Some("todo")).unwrap(), 2);
    assert_eq!(store.count_operations(Some("note")).unwrap(), 1);

    // Ops queued and removed with their table in one batch, in both orders.
    write(
        &store,
        vec![
            Write::PutOperation(op("w", "todo", "a", 6)),
            Write::DeleteTableOperations {
                table: "todo".to_owned(),
            },
            Write::PutOperation(op("v", "todo", "a", 7)),
        ],
    )
    .unwrap();
    assert_eq!(ids(&store.operations(0, 10).unwrap()), ["y", "v"]);
    assert_eq!(store.operation("x").unwrap(), None);
    assert_eq!(store.operation("w").unwrap(), None);
    assert_eq!(store.count_operations(Some("todo")).unwrap(), 1);
    assert_eq!(store.count_operations(None).unwrap(), 2);
}

#[test]
fn the_index_is_rebuilt_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = RedbStore::open(&path).unwrap();
    store
        .define_table(&TableDef::new("todo").column("text", ColumnType::String))
        .unwrap();
    let mut with_item = op("b", "todo", "é\"q", 2);
    with_item.item = Some(item(
        json!({"id": "é\"q", "text": "quoted \" and \\ escaped"}),
    ));
    write(
        &store,
        vec![
            Write::PutOperation(op("a", "todo", "x", 1)),
            Write::PutOperation(with_item.clone()),
        ],
    )
    .unwrap();
    drop(store);
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.operation("b").unwrap(), Some(with_item.clone()));
    assert_eq!(
        store.operations_for("todo", "é\"q").unwrap(),
        vec![with_item]
    );
    assert_eq!(store.count_operations(Some("todo")).unwrap(), 2);
}

const META: TableDefinition<&str, u64> = TableDefinition::new("tidesync/meta");
const OPS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("tidesync/ops");
const ROWS_TODO: TableDefinition<&str, &[u8]> = TableDefinition::new("rows/todo");
const OP_IDS_V1: TableDefinition<&str, u64> = TableDefinition::new("tidesync/op_ids");
const OP_ITEMS_V1: TableDefinition<(&str, &str, u64, &str), ()> =
    TableDefinition::new("tidesync/op_items");
const UPDATED_TODO_V1: TableDefinition<(Option<&str>, &str), ()> =
    TableDefinition::new("updated/todo");

/// Turns a current file into the format 1 layout by hand: format version 1,
/// the two lookup tables format 1 kept beside the queue and the `todo`
/// table's `(updatedAt, id)` index.
fn downgrade_to_format_1(path: &std::path::Path) {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let ops = txn.open_table(OPS).unwrap();
        let mut op_ids = txn.open_table(OP_IDS_V1).unwrap();
        let mut op_items = txn.open_table(OP_ITEMS_V1).unwrap();
        for entry in redb::ReadableTable::iter(&ops).unwrap() {
            let (key, bytes) = entry.unwrap();
            let (sequence, id) = key.value();
            let op: Operation = serde_json::from_slice(bytes.value()).unwrap();
            op_ids.insert(id, sequence).unwrap();
            op_items
                .insert((op.table.as_str(), op.item_id.as_str(), sequence, id), ())
                .unwrap();
        }
        let rows = txn.open_table(ROWS_TODO).unwrap();
        let mut updated = txn.open_table(UPDATED_TODO_V1).unwrap();
        for entry in redb::ReadableTable::iter(&rows).unwrap() {
            // Format 1 keyed rows by (updatedAt, id); a null updatedAt will do.
            updated
                .insert((None, entry.unwrap().0.value()), ())
                .unwrap();
        }
        txn.open_table(META)
            .unwrap()
            .insert("format_version", 1)
            .unwrap();
    }
    txn.commit().unwrap();
}

fn table_names(path: &std::path::Path) -> Vec<String> {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_read().unwrap();
    txn.list_tables()
        .unwrap()
        .map(|t| t.name().to_owned())
        .collect()
}

fn format_of(path: &std::path::Path) -> u64 {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    redb::ReadableTable::get(&meta, "format_version")
        .unwrap()
        .unwrap()
        .value()
}

#[test]
fn a_format_1_file_is_migrated_and_keeps_its_queue() {
    assert_eq!(FORMAT_VERSION, 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    let queued = vec![
        op("op-1", "todo", "a", 1),
        op("op-2", "todo", "b", 2),
        op("op-3", "note", "c", 3),
        op("op-4", "todo", "a", 4),
    ];
    {
        let store = RedbStore::open(&path).unwrap();
        store
            .define_table(&TableDef::new("todo").column("text", ColumnType::String))
            .unwrap();
        let mut writes = vec![put("todo", json!({"id": "a", "text": "row a"}))];
        writes.extend(queued.iter().cloned().map(Write::PutOperation));
        write(&store, writes).unwrap();
    }
    downgrade_to_format_1(&path);
    assert_eq!(format_of(&path), 1);
    assert!(table_names(&path).contains(&"tidesync/op_ids".to_owned()));
    assert!(table_names(&path).contains(&"updated/todo".to_owned()));

    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.operation("op-3").unwrap(), Some(queued[2].clone()));
    assert_eq!(
        store.operations_for("todo", "a").unwrap(),
        vec![queued[0].clone(), queued[3].clone()]
    );
    let (row, ops) = store.get_with_operations("todo", "a").unwrap();
    assert_eq!(row.unwrap()["text"], "row a");
    assert_eq!(ids(&ops), ["op-1", "op-4"]);
    assert_eq!(store.count_operations(Some("todo")).unwrap(), 3);
    assert_eq!(store.operations(0, 10).unwrap(), queued);
    // The migrated file takes new writes through the index.
    write(
        &store,
        vec![
            Write::DeleteOperation {
                id: "op-1".to_owned(),
            },
            Write::PutOperation(op("op-5", "todo", "a", 5)),
        ],
    )
    .unwrap();
    assert_eq!(
        ids(&store.operations_for("todo", "a").unwrap()),
        ["op-4", "op-5"]
    );
    drop(store);

    assert_eq!(format_of(&path), FORMAT_VERSION);
    let tables = table_names(&path);
    assert!(
        !tables.contains(&"tidesync/op_ids".to_owned()),
        "{tables:?}"
    );
    assert!(
        !tables.contains(&"tidesync/op_items".to_owned()),
        "{tables:?}"
    );
    assert!(!tables.contains(&"updated/todo".to_owned()), "{tables:?}");
    assert!(tables.contains(&"rows/todo".to_owned()), "{tables:?}");
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(
        ids(&store.operations(0, 10).unwrap()),
        ["op-2", "op-3", "op-4", "op-5"]
    );
}
