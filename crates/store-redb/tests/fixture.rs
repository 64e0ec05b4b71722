//! The pinned format fixtures: store files written by each format, and by each layout a
//! format had on main (recovered from history; see `docs/FORMATS.md`), committed under
//! `tests/fixtures/`, must keep opening with the same content. `format-v1` and
//! `format-v1-f36987e` (format 1's first layout, its queue keyed by the sequence alone) are
//! opened through the migration to format 2, which drops their `op_ids`, `op_items` and
//! `updated/<table>` tables and moves the first layout's queue to the `(sequence, id)` key.
//!
//! The fixtures are frozen: the tidy test pins each file's sha256. When the format changes,
//! keep the old fixtures (their open now runs the migration) and add one for the new format
//! with `TIDESYNC_WRITE_FIXTURE=1 cargo test -p tidesync-store-redb --test fixture --
//! --ignored`, which refuses to overwrite a fixture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use tidesync_core::testkit::QueueView;

use serde_json::{Value, json};
use tidesync_core::{
    ColumnType, Item, LocalStore, OpKind, OpState, Operation, OperationError, TableDef, Write,
    WriteBatch,
};
use tidesync_protocol::odata::Query;
use tidesync_store_redb::{FORMAT_VERSION, RedbStore};

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn item(value: Value) -> Item {
    value.as_object().cloned().unwrap()
}

fn def() -> TableDef {
    TableDef::new("fx")
        .column("text", ColumnType::String)
        .column("n", ColumnType::Integer)
        .column("x", ColumnType::Real)
        .column("flag", ColumnType::Bool)
        .column("at", ColumnType::DateTime)
        .column("doc", ColumnType::Json)
}

fn rows() -> Vec<Item> {
    vec![
        item(
            json!({"id": "a", "text": "Grüße 🍎", "n": i64::MIN, "x": -0.0, "flag": true,
                    "at": "2024-01-15T10:20:30.123456Z", "doc": {"k": [1, null, "x"]},
                    "version": "v1", "updatedAt": "2024-01-15T10:20:30.123Z",
                    "createdAt": "2024-01-01T00:00:00.000Z"}),
        ),
        item(
            json!({"id": "b", "text": "", "n": i64::MAX, "x": 1e300, "flag": false,
                    "at": "1970-01-01T00:00:00.000Z", "doc": "plain"}),
        ),
        item(json!({"id": "c"})),
    ]
}

fn ops() -> Vec<Operation> {
    vec![
        Operation {
            id: "op-1".to_owned(),
            kind: OpKind::Insert,
            state: OpState::Pending,
            table: "fx".to_owned(),
            item_id: "b".to_owned(),
            item: None,
            base: None,
            sequence: 4,
            version: 1,
        },
        Operation {
            id: "op-2".to_owned(),
            kind: OpKind::Delete,
            state: OpState::Failed,
            table: "fx".to_owned(),
            item_id: "gone".to_owned(),
            item: Some(item(json!({"id": "gone", "version": "v7"}))),
            base: Some(item(json!({"id": "gone", "text": "base"}))),
            sequence: 9,
            version: 3,
        },
    ]
}

fn error() -> OperationError {
    OperationError {
        operation_id: "op-2".to_owned(),
        operation_version: 3,
        kind: OpKind::Delete,
        table: "fx".to_owned(),
        item_id: "gone".to_owned(),
        status: Some(412),
        item: Some(item(json!({"id": "gone", "version": "v7"}))),
        server_item: Some(item(json!({"id": "gone", "version": "v8"}))),
        raw_result: Some("{\"id\":\"gone\"}".to_owned()),
        message: "precondition failed".to_owned(),
    }
}

/// Writes the fixture file of the current format. Ignored, and a no-op
/// without the variable, so a plain `--ignored` run cannot overwrite it.
#[test]
#[ignore = "writes the committed fixture; run by hand for a new format"]
fn write_fixture() {
    let path = fixture_path(&format!("format-v{FORMAT_VERSION}.redb.bin"));
    if !tidesync_core::testkit::may_write_fixture(&path) {
        return;
    }
    let store = RedbStore::open(&path).unwrap();
    // Defined small, then grown: the fixture carries a grown slot list.
    store
        .define_table(&TableDef::new("fx").column("text", ColumnType::String))
        .unwrap();
    store.define_table(&def()).unwrap();
    let mut writes: Vec<Write> = rows()
        .into_iter()
        .map(|item| Write::PutItem {
            table: "fx".to_owned(),
            item,
        })
        .collect();
    writes.extend(ops().into_iter().map(Write::PutOperation));
    writes.push(Write::PutError(error()));
    writes.push(Write::SetConfig {
        key: "deltaToken|fx|all".to_owned(),
        value: Some("2024-01-15T10:20:30.123Z".to_owned()),
    });
    store.write(&WriteBatch { writes }).unwrap();
}

/// Format 1 as commit f36987e wrote it: the queue keyed by the sequence alone.
#[test]
fn format_1_first_layout_fixture_still_opens() {
    fixture_still_opens("format-v1-f36987e.redb.bin");
}

#[test]
fn format_1_fixture_still_opens() {
    fixture_still_opens("format-v1.redb.bin");
}

#[test]
fn format_2_fixture_still_opens() {
    fixture_still_opens("format-v2.redb.bin");
}

fn fixture_still_opens(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copy.redb");
    // Opening writes to the file, so work on a copy.
    std::fs::copy(fixture_path(name), &path).unwrap();
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.table("fx").unwrap(), Some(def()));
    let expected: Vec<Item> = rows()
        .into_iter()
        .map(|row| {
            row.iter()
                .map(|(k, v)| {
                    let ty = def().column_type(k).unwrap();
                    (
                        k.clone(),
                        tidesync_core::normalize_value("fx", k, ty, v).unwrap(),
                    )
                })
                .collect()
        })
        .collect();
    assert_eq!(store.query("fx", &Query::all()).unwrap().items, expected);
    assert_eq!(store.operations(0, 10).unwrap(), ops());
    assert_eq!(
        store.operations_for("fx", "gone").unwrap(),
        vec![ops()[1].clone()]
    );
    assert_eq!(store.errors().unwrap(), vec![error()]);
    assert_eq!(
        store.config("deltaToken|fx|all").unwrap().as_deref(),
        Some("2024-01-15T10:20:30.123Z")
    );
    let by_update = store
        .query("fx", &Query::all().order_by("updatedAt").top(1))
        .unwrap();
    assert_eq!(by_update.items[0]["id"], "b", "null updatedAt sorts first");
    assert_eq!(store.operation("op-1").unwrap(), Some(ops()[0].clone()));
    assert_eq!(store.count_operations(Some("fx")).unwrap(), 2);
    // Still writable, and the migration was committed: the file reopens as it is now.
    let later = Operation {
        id: "op-3".to_owned(),
        item_id: "c".to_owned(),
        sequence: 12,
        ..ops()[0].clone()
    };
    store
        .write(&WriteBatch {
            writes: vec![Write::PutOperation(later.clone())],
        })
        .unwrap();
    drop(store);
    let store = RedbStore::open(&path).unwrap();
    let mut all = ops();
    all.push(later);
    assert_eq!(store.operations(0, 10).unwrap(), all);
}
