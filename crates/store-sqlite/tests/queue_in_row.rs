//! Format 3 keeps an op in its item's row when it can (see the `queue`
//! module): these tests look at the file with plain rusqlite to check where
//! each op is, and through the store that it reads back the same wherever it is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use tidesync_core::testkit::QueueView;

use serde_json::json;
use tidesync_core::{
    ColumnType, Item, LocalStore, OpKind, OpState, Operation, OperationError, Query, StoreError,
    TableDef, Write, WriteBatch,
};
use tidesync_store_sqlite::SqliteStore;

fn def() -> TableDef {
    TableDef::new("t").column("n", ColumnType::Integer)
}

fn row(id: &str, n: i64) -> Item {
    json!({"id": id, "n": n}).as_object().cloned().unwrap()
}

fn put(id: &str, n: i64) -> Write {
    Write::PutItem {
        table: "t".into(),
        item: row(id, n),
    }
}

fn op(id: &str, kind: OpKind, sequence: u64, item_id: &str) -> Operation {
    Operation {
        id: id.into(),
        kind,
        state: OpState::Pending,
        table: "t".into(),
        item_id: item_id.into(),
        item: (kind == OpKind::Delete).then(|| row(item_id, 0)),
        base: (kind != OpKind::Insert).then(|| row(item_id, -1)),
        sequence,
        version: 1,
    }
}

fn write(store: &SqliteStore, writes: Vec<Write>) {
    store.write(&WriteBatch { writes }).unwrap();
}

/// `(queue rows, rows holding an op)` as the file holds them, after checking
/// that the table is listed in `__row_op_tables` exactly when a row holds an op.
fn places(path: &Path) -> (Vec<String>, Vec<String>) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let strings = |sql: &str| -> Vec<String> {
        conn.prepare(sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let in_rows = strings("SELECT id FROM t WHERE __tidesync_op IS NOT NULL ORDER BY id");
    let listed = strings("SELECT name FROM __row_op_tables");
    let expected: Vec<String> = if in_rows.is_empty() {
        vec![]
    } else {
        vec!["t".into()]
    };
    assert_eq!(listed, expected, "tables listed as holding ops in rows");
    (
        strings("SELECT id FROM __operations ORDER BY sequence"),
        in_rows,
    )
}

fn open(dir: &Path) -> SqliteStore {
    let store = SqliteStore::open(dir.join("q.db")).unwrap();
    store.define_table(&def()).unwrap();
    store
}

#[test]
fn a_row_and_its_op_are_one_row_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let insert = op("op1", OpKind::Insert, 1, "a");
    write(
        &store,
        vec![put("a", 1), Write::PutOperation(insert.clone())],
    );
    assert_eq!(places(&dir.path().join("q.db")), (vec![], vec!["a".into()]));
    assert_eq!(store.operations(0, 10).unwrap(), vec![insert.clone()]);
    assert_eq!(store.operation("op1").unwrap(), Some(insert.clone()));
    assert_eq!(
        store.operations_for("t", "a").unwrap(),
        vec![insert.clone()]
    );
    // The op column is not part of the item.
    assert_eq!(store.get("t", "a").unwrap(), Some(row("a", 1)));
    let all = store.query("t", &Query::all()).unwrap();
    assert_eq!(all.items, vec![row("a", 1)]);

    // Replacing the row keeps its op; changing the op keeps it in the row.
    write(&store, vec![put("a", 2)]);
    let mut attempted = insert;
    attempted.state = OpState::Attempted;
    attempted.version = 2;
    write(&store, vec![Write::PutOperation(attempted.clone())]);
    assert_eq!(places(&dir.path().join("q.db")), (vec![], vec!["a".into()]));
    assert_eq!(store.operations(0, 10).unwrap(), vec![attempted]);
    assert_eq!(store.get("t", "a").unwrap(), Some(row("a", 2)));

    // Completing it clears the column.
    write(&store, vec![Write::DeleteOperation { id: "op1".into() }]);
    assert_eq!(places(&dir.path().join("q.db")), (vec![], vec![]));
    assert_eq!(store.count_operations(None).unwrap(), 0);
    assert_eq!(store.get("t", "a").unwrap(), Some(row("a", 2)));
}

#[test]
fn an_op_written_after_its_row_goes_into_the_row_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    write(&store, vec![put("a", 1)]);
    let update = op("op1", OpKind::Update, 1, "a");
    write(&store, vec![Write::PutOperation(update.clone())]);
    assert_eq!(places(&dir.path().join("q.db")), (vec![], vec!["a".into()]));
    assert_eq!(store.operations_for("t", "a").unwrap(), vec![update]);
}

#[test]
fn a_second_op_and_ops_without_rows_use_the_queue_table_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = op("op1", OpKind::Insert, 1, "a");
    let orphan = op("op2", OpKind::Delete, 2, "gone");
    let second = op("op3", OpKind::Update, 3, "a");
    write(
        &store,
        vec![
            put("a", 1),
            Write::PutOperation(first.clone()),
            Write::PutOperation(orphan.clone()),
            put("a", 2),
            Write::PutOperation(second.clone()),
        ],
    );
    assert_eq!(
        places(&dir.path().join("q.db")),
        (vec!["op2".into(), "op3".into()], vec!["a".into()])
    );
    let all = vec![first.clone(), orphan.clone(), second.clone()];
    assert_eq!(store.operations(0, 10).unwrap(), all);
    assert_eq!(store.operations(1, 1).unwrap(), vec![orphan.clone()]);
    assert_eq!(
        store.operations_for("t", "a").unwrap(),
        vec![first.clone(), second.clone()]
    );
    assert_eq!(store.max_sequence().unwrap(), 3);
    assert_eq!(store.count_operations(Some("t")).unwrap(), 3);

    // A reopened store finds them all again, in the same order.
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.operations(0, 10).unwrap(), all);
    assert_eq!(store.operations_for("t", "a").unwrap(), vec![first, second]);
}

#[test]
fn deleting_a_row_moves_its_op_to_the_queue_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = op("op1", OpKind::Update, 1, "a");
    let b = op("op2", OpKind::Update, 2, "b");
    let c = op("op3", OpKind::Update, 3, "c");
    write(
        &store,
        vec![
            put("a", 1),
            Write::PutOperation(a.clone()),
            put("b", 2),
            Write::PutOperation(b.clone()),
            put("c", 3),
            Write::PutOperation(c.clone()),
        ],
    );
    write(
        &store,
        vec![Write::DeleteItem {
            table: "t".into(),
            id: "a".into(),
        }],
    );
    assert_eq!(
        places(&dir.path().join("q.db")),
        (vec!["op1".into()], vec!["b".into(), "c".into()])
    );
    // A purge by query: the deleted rows' ops move, the others stay.
    let query = Query::all().filter(tidesync_protocol::odata::parse_filter("n eq 2").unwrap());
    write(
        &store,
        vec![Write::DeleteItems {
            table: "t".into(),
            query,
        }],
    );
    assert_eq!(
        places(&dir.path().join("q.db")),
        (vec!["op1".into(), "op2".into()], vec!["c".into()])
    );
    assert_eq!(store.operations(0, 10).unwrap(), vec![a, b, c.clone()]);
    // The moved op can change like any other, and a new row of the same id
    // does not take it back (an op moves only when its row goes).
    write(&store, vec![put("a", 9)]);
    assert_eq!(store.operations_for("t", "a").unwrap().len(), 1);

    // A forced purge of the table's ops clears both places.
    write(
        &store,
        vec![Write::DeleteTableOperations { table: "t".into() }],
    );
    assert_eq!(places(&dir.path().join("q.db")), (vec![], vec![]));
    assert_eq!(store.count_operations(None).unwrap(), 0);
    assert_eq!(store.operation("op3").unwrap(), None);
    assert_eq!(store.get("t", "c").unwrap(), Some(row("c", 3)));
}

#[test]
fn a_failed_batch_leaves_no_op_in_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let bad = Write::PutItem {
        table: "t".into(),
        item: json!({"id": "b", "nope": 1}).as_object().cloned().unwrap(),
    };
    let err = store
        .write(&WriteBatch {
            writes: vec![
                put("a", 1),
                Write::PutOperation(op("op1", OpKind::Insert, 1, "a")),
                bad,
            ],
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownColumn { .. }), "{err:?}");
    assert_eq!(store.count_operations(None).unwrap(), 0);
    assert_eq!(store.operation("op1").unwrap(), None);
    assert_eq!(places(&dir.path().join("q.db")), (vec![], vec![]));
    // The same op can then be written.
    write(
        &store,
        vec![
            put("a", 1),
            Write::PutOperation(op("op1", OpKind::Insert, 1, "a")),
        ],
    );
    assert_eq!(store.count_operations(None).unwrap(), 1);
}

#[test]
fn another_handle_sees_ops_kept_in_rows() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let second = open(dir.path());
    assert_eq!(second.count_operations(None).unwrap(), 0);
    let insert = op("op1", OpKind::Insert, 1, "a");
    write(
        &first,
        vec![put("a", 1), Write::PutOperation(insert.clone())],
    );
    assert_eq!(second.operations(0, 10).unwrap(), vec![insert]);
    write(&second, vec![Write::DeleteOperation { id: "op1".into() }]);
    assert_eq!(first.count_operations(None).unwrap(), 0);
    assert_eq!(places(&dir.path().join("q.db")), (vec![], vec![]));
}

/// A handle's writes notice another handle's commit made between two of its
/// own writes (the writer's map of where ops are is checked at each write).
#[test]
fn a_write_after_another_handles_commit_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let second = open(dir.path());
    write(
        &first,
        vec![
            put("a", 1),
            Write::PutOperation(op("op1", OpKind::Insert, 1, "a")),
        ],
    );
    write(&first, vec![put("b", 2)]);
    // The other handle drops the op kept in row a ...
    write(&second, vec![Write::DeleteOperation { id: "op1".into() }]);
    // ... so row a holds none: deleting it moves nothing, and a new op of
    // row b goes into that row.
    write(
        &first,
        vec![
            Write::DeleteItem {
                table: "t".into(),
                id: "a".into(),
            },
            Write::PutItemAndOperation {
                table: "t".into(),
                item: row("b", 3),
                op: op("op2", OpKind::Update, 2, "b"),
            },
        ],
    );
    assert_eq!(places(&dir.path().join("q.db")), (vec![], vec!["b".into()]));
    assert_eq!(
        second.operations(0, 10).unwrap(),
        vec![op("op2", OpKind::Update, 2, "b")]
    );
}

/// A local write alone in its batch: the row with its op.
fn local(id: &str, n: i64, op_id: &str, sequence: u64) -> Write {
    Write::PutItemAndOperation {
        table: "t".into(),
        item: row(id, n),
        op: op(op_id, OpKind::Update, sequence, id),
    }
}

/// A local write alone in its batch runs as one statement (its own
/// transaction); what that statement cannot know from this handle's map it
/// checks itself: here another handle unlisted the table (its last row op
/// gone) between two lone writes of this handle, and the op of the second
/// still lands in its row with the table listed.
#[test]
fn a_lone_local_write_after_another_handle_unlisted_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let second = open(dir.path());
    write(&first, vec![local("a", 1, "op1", 1)]);
    write(&first, vec![local("b", 2, "op2", 2)]);
    assert_eq!(
        places(&dir.path().join("q.db")),
        (vec![], vec!["a".into(), "b".into()])
    );
    write(
        &second,
        vec![
            Write::DeleteOperation { id: "op1".into() },
            Write::DeleteOperation { id: "op2".into() },
        ],
    );
    assert_eq!(places(&dir.path().join("q.db")), (vec![], vec![]));
    write(&first, vec![local("c", 3, "op3", 3)]);
    assert_eq!(places(&dir.path().join("q.db")), (vec![], vec!["c".into()]));
    let third = open(dir.path());
    assert_eq!(
        third.operations(0, 10).unwrap(),
        vec![op("op3", OpKind::Update, 3, "c")]
    );
    assert_eq!(
        first.operations(0, 10).unwrap(),
        vec![op("op3", OpKind::Update, 3, "c")]
    );
}

/// A lone local write into a row that holds another op (put there by another
/// handle, unknown to this handle's map) leaves that op in the row and
/// queues its own in `__operations`; the same in one handle, where the map
/// knows but the write does not ask it.
#[test]
fn a_lone_local_write_never_replaces_another_op_in_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let second = open(dir.path());
    write(&first, vec![local("a", 1, "op1", 1)]);
    write(&first, vec![local("a", 2, "op1", 1)]);
    write(&second, vec![local("b", 1, "op2", 2)]);
    write(&first, vec![local("b", 2, "op3", 3)]);
    write(&first, vec![local("a", 3, "op4", 4)]);
    assert_eq!(
        places(&dir.path().join("q.db")),
        (
            vec!["op3".into(), "op4".into()],
            vec!["a".into(), "b".into()]
        )
    );
    let all = vec![
        op("op1", OpKind::Update, 1, "a"),
        op("op2", OpKind::Update, 2, "b"),
        op("op3", OpKind::Update, 3, "b"),
        op("op4", OpKind::Update, 4, "a"),
    ];
    assert_eq!(first.operations(0, 10).unwrap(), all);
    assert_eq!(open(dir.path()).operations(0, 10).unwrap(), all);
    assert_eq!(first.get("t", "b").unwrap(), Some(row("b", 2)));
    assert_eq!(first.get("t", "a").unwrap(), Some(row("a", 3)));
}

#[test]
fn errors_follow_the_order_of_their_ops_wherever_the_ops_are() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let error = |id: &str, item_id: &str| OperationError {
        operation_id: id.into(),
        operation_version: 1,
        kind: OpKind::Update,
        table: "t".into(),
        item_id: item_id.into(),
        status: Some(412),
        item: None,
        server_item: None,
        raw_result: None,
        message: "conflict".into(),
    };
    write(
        &store,
        vec![
            Write::PutOperation(op("op1", OpKind::Delete, 1, "x")),
            put("a", 1),
            Write::PutOperation(op("op2", OpKind::Update, 2, "a")),
            Write::PutError(error("op2", "a")),
            Write::PutError(error("op1", "x")),
            Write::PutError(error("op0", "gone")),
        ],
    );
    let ids: Vec<String> = store
        .errors()
        .unwrap()
        .into_iter()
        .map(|e| e.operation_id)
        .collect();
    assert_eq!(ids, ["op1", "op2", "op0"]);
}

#[test]
fn the_op_column_name_is_reserved() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let err = store
        .define_table(&def().column("__TideSync_Op", ColumnType::String))
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidDefinition(_)), "{err:?}");
}

#[test]
fn an_op_of_an_undefined_table_is_kept_in_the_queue_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut elsewhere = op("op1", OpKind::Delete, 1, "a");
    elsewhere.table = "Undefined".into();
    write(&store, vec![Write::PutOperation(elsewhere.clone())]);
    assert_eq!(
        places(&dir.path().join("q.db")),
        (vec!["op1".into()], vec![])
    );
    assert_eq!(store.operations(0, 10).unwrap(), vec![elsewhere]);
}

#[test]
fn completing_ops_kept_in_rows_clears_them_and_writes_the_rows_in_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = op("op1", OpKind::Insert, 1, "a");
    let second = op("op2", OpKind::Insert, 2, "b");
    let other = op("op3", OpKind::Update, 3, "c");
    write(
        &store,
        vec![
            put("a", 1),
            Write::PutOperation(first),
            put("b", 1),
            Write::PutOperation(second),
            put("c", 1),
            Write::PutOperation(other.clone()),
        ],
    );
    assert_eq!(
        places(&dir.path().join("q.db")),
        (vec![], vec!["a".into(), "b".into(), "c".into()])
    );
    // What a push's completion writes: per op, the op and its error record
    // gone, then the server's copy of the row.
    let completion = |op_id: &str, id: &str, n: i64| {
        vec![
            Write::DeleteOperation { id: op_id.into() },
            Write::DeleteError {
                operation_id: op_id.into(),
            },
            put(id, n),
        ]
    };
    let mut writes = completion("op1", "a", 10);
    writes.extend(completion("op2", "b", 20));
    // A row put after deleting an op kept in another row keeps its own op.
    writes.push(Write::DeleteOperation { id: "nope".into() });
    writes.push(put("c", 30));
    write(&store, writes);
    assert_eq!(places(&dir.path().join("q.db")), (vec![], vec!["c".into()]));
    assert_eq!(store.get("t", "a").unwrap(), Some(row("a", 10)));
    assert_eq!(store.get("t", "b").unwrap(), Some(row("b", 20)));
    assert_eq!(store.get("t", "c").unwrap(), Some(row("c", 30)));
    assert_eq!(store.operations(0, 10).unwrap(), vec![other.clone()]);
    // A fresh handle reads the same from the file.
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.operations(0, 10).unwrap(), vec![other]);
    assert_eq!(store.count_operations(None).unwrap(), 1);
}
