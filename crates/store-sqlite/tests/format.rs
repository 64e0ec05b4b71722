//! The file format: the pinned fixtures, files written by each format and each layout a
//! format had on main (recovered from history; see `docs/FORMATS.md`), open, read back and
//! migrate to the current format; files this build must not use are refused clearly.
//!
//! The fixtures are frozen: the tidy test pins each file's sha256. A new format adds a
//! fixture with `TIDESYNC_WRITE_FIXTURE=1 cargo test -p tidesync-store-sqlite --test format
//! -- --ignored`, which refuses to overwrite one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use tidesync_core::testkit::QueueView;

use serde_json::json;
use tidesync_core::{
    ColumnType, LocalStore, OpKind, OpState, Operation, OperationError, Query, StoreError,
    TableDef, Write, WriteBatch,
};
use tidesync_store_sqlite::SqliteStore;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{name}"))
}

/// The format this build writes.
const CURRENT: u32 = 5;

fn todo_def() -> TableDef {
    TableDef::new("TodoItem")
        .column("text", ColumnType::String)
        .column("complete", ColumnType::Bool)
        .column("rank", ColumnType::Integer)
        .column("weight", ColumnType::Real)
        .column("due", ColumnType::DateTime)
        .column("tags", ColumnType::Json)
}

fn item(value: serde_json::Value) -> tidesync_core::Item {
    value.as_object().cloned().unwrap()
}

fn fixture_op() -> Operation {
    Operation {
        id: "0190a0b0-0000-7000-8000-000000000001".to_owned(),
        kind: OpKind::Update,
        state: OpState::Failed,
        table: "TodoItem".to_owned(),
        item_id: "a".to_owned(),
        item: None,
        base: Some(item(
            json!({"id": "a", "text": "milk", "version": "AAAAAAAAB9E="}),
        )),
        sequence: 1,
        version: 2,
    }
}

fn fixture_error() -> OperationError {
    OperationError {
        operation_id: fixture_op().id,
        operation_version: 2,
        kind: OpKind::Update,
        table: "TodoItem".to_owned(),
        item_id: "a".to_owned(),
        status: Some(412),
        item: Some(item(json!({"id": "a", "text": "buy milk 🥛"}))),
        server_item: Some(item(
            json!({"id": "a", "text": "milk", "version": "AAAAAAAAB9I="}),
        )),
        raw_result: Some("{\"id\":\"a\"}".to_owned()),
        message: "precondition failed".to_owned(),
    }
}

fn fixture_row() -> tidesync_core::Item {
    item(json!({
        "id": "a", "text": "buy milk 🥛", "complete": false, "rank": -3, "weight": 0.1,
        "due": "2024-03-01T08:00:00.250Z", "tags": {"list": ["x", 1]},
        "updatedAt": "2024-02-29T12:00:00.000Z", "version": "AAAAAAAAB9E="
    }))
}

/// Writes the fixture of the current format: only with `TIDESYNC_WRITE_FIXTURE` set, and
/// never over an existing file (a committed fixture never changes; a layout change bumps
/// the format and adds a fixture).
#[test]
#[ignore = "writes a new format's fixture; run by hand"]
fn generate_current_format_fixture() {
    let path = fixture(&format!("format-v{CURRENT}.sqlite"));
    if !tidesync_core::testkit::may_write_fixture(&path) {
        return;
    }
    let store = SqliteStore::open(&path).unwrap();
    store.define_table(&todo_def()).unwrap();
    let mut batch = WriteBatch::new();
    batch.push(Write::PutItem {
        table: "TodoItem".into(),
        item: fixture_row(),
    });
    batch.push(Write::PutItem {
        table: "TodoItem".into(),
        item: item(json!({"id": "b", "complete": true})),
    });
    batch.push(Write::PutOperation(fixture_op()));
    batch.push(Write::PutError(fixture_error()));
    batch.push(Write::SetConfig {
        key: "deltaToken|TodoItem|all".into(),
        value: Some("2024-02-29T12:00:00.000Z".into()),
    });
    store.write(&batch).unwrap();
}

#[test]
fn opens_the_format_v1_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let path = opens_fixture("format-v1.sqlite", dir.path());
    // The migration left the queue without indexes and dropped the app
    // tables' (updatedAt, id) index.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let indexes: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(indexes, Vec::<String>::new());
}

/// Format 2 as commit ab4395a wrote it, with `WITHOUT ROWID` app tables.
#[test]
fn opens_the_first_format_v2_fixture_and_gives_its_tables_a_rowid() {
    let dir = tempfile::tempdir().unwrap();
    let before = dir.path().join("before.sqlite");
    std::fs::copy(fixture("format-v2-ab4395a.sqlite"), &before).unwrap();
    assert!(table_sql(&before).ends_with("WITHOUT ROWID"));
    let path = opens_fixture("format-v2-ab4395a.sqlite", dir.path());
    assert_eq!(op_places(&path), (1, 0));
}

#[test]
fn opens_the_format_v2_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let path = opens_fixture("format-v2.sqlite", dir.path());
    // The migration added the op column; the queued op stayed in `__operations`.
    assert_eq!(op_places(&path), (1, 0));
}

/// Format 3 as commit af44667 wrote it, without `__row_op_tables`: the op in the row must
/// be found again after another connection wrote (when the queue is read from the file).
#[test]
fn opens_the_first_format_v3_fixture_and_lists_its_row_op_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = opens_fixture("format-v3-af44667.sqlite", dir.path());
    assert_eq!(op_places(&path), (0, 1));
    assert_eq!(row_op_tables(&path), ["TodoItem"]);
    queue_is_read_again_after_another_connection_writes(&path);
}

#[test]
fn opens_the_format_v3_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let path = opens_fixture("format-v3.sqlite", dir.path());
    // Format 3 keeps the op in its item's row.
    assert_eq!(op_places(&path), (0, 1));
    assert_eq!(row_op_tables(&path), ["TodoItem"]);
    queue_is_read_again_after_another_connection_writes(&path);
}

#[test]
fn opens_the_format_v4_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let path = opens_fixture("format-v4.sqlite", dir.path());
    assert_eq!(op_places(&path), (0, 1));
    assert_eq!(row_op_tables(&path), ["TodoItem"]);
    assert_eq!(attempted_rows(&path), 0, "the migration adds __attempted");
    queue_is_read_again_after_another_connection_writes(&path);
}

#[test]
fn opens_the_format_v5_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let path = opens_fixture("format-v5.sqlite", dir.path());
    assert_eq!(op_places(&path), (0, 1));
    assert_eq!(row_op_tables(&path), ["TodoItem"]);
    queue_is_read_again_after_another_connection_writes(&path);
    // A mark is one row of `__attempted`, read back by another connection, and gone
    // with the op it marked.
    let store = SqliteStore::open(&path).unwrap();
    let mut batch = WriteBatch::new();
    batch.push(Write::MarkAttempted {
        ids: vec![fixture_op().id],
    });
    store.write(&batch).unwrap();
    assert_eq!(attempted_rows(&path), 1);
    let attempted = Operation {
        state: OpState::Attempted,
        ..fixture_op()
    };
    assert_eq!(
        SqliteStore::open(&path).unwrap().operations(0, 10).unwrap(),
        vec![attempted]
    );
    let mut batch = WriteBatch::new();
    batch.push(Write::DeleteOperation {
        id: fixture_op().id,
    });
    store.write(&batch).unwrap();
    assert_eq!(attempted_rows(&path), 0);
}

/// How many rows `__attempted` holds in the file at `path`.
fn attempted_rows(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT count(*) FROM __attempted", [], |r| r.get(0))
        .unwrap()
}

/// A format-1 file from before commit 9a62c28 kept date-times with the fraction they were
/// given (up to nine digits), which sorts wrongly as text next to the three-digit form
/// stores keep now: the migration cuts them to milliseconds. (The v1 fixture has only
/// millisecond values, so a copy gets a wider one as the old code wrote it.)
#[test]
fn a_format_v1_date_time_with_microseconds_is_cut_to_milliseconds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copy.sqlite");
    std::fs::copy(fixture("format-v1.sqlite"), &path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE TodoItem SET due = '2024-03-01T08:00:00.250999Z' WHERE id = 'b'",
        [],
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.get("TodoItem", "b").unwrap().unwrap()["due"],
        "2024-03-01T08:00:00.250Z"
    );
    assert_eq!(
        store.get("TodoItem", "a").unwrap().unwrap()["due"],
        "2024-03-01T08:00:00.250Z"
    );
}

/// The `CREATE TABLE` text of `TodoItem`.
fn table_sql(path: &Path) -> String {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'TodoItem'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

fn row_op_tables(path: &Path) -> Vec<String> {
    rusqlite::Connection::open(path)
        .unwrap()
        .prepare("SELECT name FROM __row_op_tables ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A second store on the file commits, so the first reads its queue from the file again
/// (`PRAGMA data_version` changed): the op kept in the row must still be found.
fn queue_is_read_again_after_another_connection_writes(path: &Path) {
    let first = SqliteStore::open(path).unwrap();
    assert_eq!(first.operations(0, 10).unwrap(), vec![fixture_op()]);
    let second = SqliteStore::open(path).unwrap();
    let mut batch = WriteBatch::new();
    batch.push(Write::SetConfig {
        key: "touched".into(),
        value: Some("yes".into()),
    });
    second.write(&batch).unwrap();
    assert_eq!(first.operations(0, 10).unwrap(), vec![fixture_op()]);
    assert_eq!(
        first.operations_for("TodoItem", "a").unwrap(),
        vec![fixture_op()]
    );
}

/// How many ops the file at `path` holds in `__operations` and in `TodoItem` rows.
fn op_places(path: &Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(
        "SELECT (SELECT count(*) FROM __operations), \
                (SELECT count(*) FROM TodoItem WHERE __tidesync_op IS NOT NULL)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

/// Opens a copy of the fixture `name`, checks its content, writes to it and checks it is
/// now of the current format, with rowid app tables. Returns the copy's path in `dir`.
fn opens_fixture(name: &str, dir: &Path) -> PathBuf {
    let path = dir.join("copy.sqlite");
    std::fs::copy(fixture(name), &path).unwrap();
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.table("TodoItem").unwrap(), Some(todo_def()));
    assert_eq!(store.get("TodoItem", "a").unwrap(), Some(fixture_row()));
    assert_eq!(
        store.get("TodoItem", "b").unwrap(),
        Some(item(json!({"id": "b", "complete": true})))
    );
    assert_eq!(store.operations(0, 10).unwrap(), vec![fixture_op()]);
    assert_eq!(store.errors().unwrap(), vec![fixture_error()]);
    assert_eq!(
        store.config("deltaToken|TodoItem|all").unwrap().as_deref(),
        Some("2024-02-29T12:00:00.000Z")
    );
    let found = store
        .query("TodoItem", &Query::all().order_by_desc("rank").with_count())
        .unwrap();
    assert_eq!(found.count, Some(2));
    // Still writable, and the definition still grows.
    store
        .define_table(&todo_def().column("note", ColumnType::String))
        .unwrap();
    let mut batch = WriteBatch::new();
    batch.push(Write::PutItem {
        table: "TodoItem".into(),
        item: item(json!({"id": "c", "note": "new"})),
    });
    store.write(&batch).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let found: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(found, CURRENT);
    drop(conn);
    assert!(
        !table_sql(&path).contains("WITHOUT ROWID"),
        "{}",
        table_sql(&path)
    );
    path
}

#[test]
fn a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.sqlite");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    match SqliteStore::open(&path) {
        Err(StoreError::UnsupportedFormat {
            found: 99,
            supported: CURRENT,
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn another_applications_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        .unwrap();
    drop(conn);
    match SqliteStore::open(&path) {
        Err(StoreError::Corrupt(message)) => assert!(message.contains("not a tidesync store")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.sqlite");
    std::fs::write(&path, vec![0xA5; 8192]).unwrap();
    match SqliteStore::open(&path) {
        Err(StoreError::Corrupt(_)) => {}
        other => panic!("{other:?}"),
    }
}
