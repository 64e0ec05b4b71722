//! Helpers shared by the conformance cases: temp stores, builders for ops and
//! error records, item comparison, and the fixture table the query cases run on.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use tidesync_protocol::Item;
use tidesync_protocol::odata::{Query, eval, parse_filter};

use super::StoreFactory;
use crate::error::StoreError;
use crate::model::{ColumnType, OpKind, OpState, Operation, OperationError, TableDef};
use crate::model::{item_id, normalize_value};
use crate::store::{LocalStore, Write, WriteBatch};

/// A fresh temporary directory and the store path inside it.
pub(crate) struct Place {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) path: PathBuf,
}

pub(crate) fn place() -> Place {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("store.db");
    Place { _dir: dir, path }
}

pub(crate) fn open(factory: &dyn StoreFactory, place: &Place) -> Arc<dyn LocalStore> {
    factory.open(&place.path).expect("open the store")
}

/// A fresh store with the fixture-free `todo` table defined.
pub(crate) fn fresh(factory: &dyn StoreFactory) -> (Place, Arc<dyn LocalStore>) {
    let place = place();
    let store = open(factory, &place);
    store.define_table(&todo_def()).expect("define todo");
    (place, store)
}

pub(crate) fn todo_def() -> TableDef {
    TableDef::new("todo")
        .column("text", ColumnType::String)
        .column("done", ColumnType::Bool)
        .column("rank", ColumnType::Integer)
}

pub(crate) fn item(value: Value) -> Item {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

pub(crate) fn put(table: &str, value: Value) -> Write {
    Write::PutItem {
        table: table.to_owned(),
        item: item(value),
    }
}

pub(crate) fn batch(writes: Vec<Write>) -> WriteBatch {
    WriteBatch { writes }
}

pub(crate) fn write(store: &dyn LocalStore, writes: Vec<Write>) {
    store.write(&batch(writes)).expect("write the batch");
}

pub(crate) fn op(id: &str, sequence: u64, table: &str, item_id: &str, kind: OpKind) -> Operation {
    Operation {
        id: id.to_owned(),
        kind,
        state: OpState::Pending,
        table: table.to_owned(),
        item_id: item_id.to_owned(),
        item: None,
        base: None,
        sequence,
        version: 1,
    }
}

pub(crate) fn op_error(op: &Operation, status: Option<u16>) -> OperationError {
    OperationError {
        operation_id: op.id.clone(),
        operation_version: op.version,
        kind: op.kind,
        table: op.table.clone(),
        item_id: op.item_id.clone(),
        status,
        item: Some(item(json!({"id": op.item_id, "text": "sent"}))),
        server_item: Some(item(json!({"id": op.item_id, "version": "v2"}))),
        raw_result: Some("{\"id\":\"x\"}".to_owned()),
        message: format!("failed {}", op.id),
    }
}

/// An item without its null-valued properties: a missing property and a null
/// one mean the same to the query language, and stores may return either.
pub(crate) fn without_nulls(item: &Item) -> Item {
    item.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Asserts two rows are equal, a null property counting as absent.
pub(crate) fn assert_same_item(actual: Option<&Item>, expected: Option<&Item>, what: &str) {
    assert_eq!(
        actual.map(without_nulls),
        expected.map(without_nulls),
        "{what}"
    );
}

/// Asserts two row lists are equal in order, a null property counting as absent.
pub(crate) fn assert_same_items(actual: &[Item], expected: &[Item], what: &str) {
    let actual: Vec<Item> = actual.iter().map(without_nulls).collect();
    let expected: Vec<Item> = expected.iter().map(without_nulls).collect();
    assert_eq!(actual, expected, "{what}");
}

pub(crate) fn ids(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .map(|i| item_id(i).unwrap_or("<no id>").to_owned())
        .collect()
}

pub(crate) fn all_ids(store: &dyn LocalStore, table: &str) -> Vec<String> {
    ids(&store.query(table, &Query::all()).expect("query all").items)
}

pub(crate) fn filter(text: &str) -> Query {
    Query::all().filter(parse_filter(text).unwrap_or_else(|e| panic!("parse {text:?}: {e}")))
}

pub(crate) fn assert_err<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    expected: fn(&StoreError) -> bool,
    what: &str,
) {
    match result {
        Err(e) if expected(&e) => {}
        other => panic!("{what}: unexpected result {other:?}"),
    }
}

/// The fixture table `fx`: every column type, nulls, unicode, mixed case, dates
/// with different fraction widths and offsets.
pub(crate) fn fx_def() -> TableDef {
    TableDef::new("fx")
        .column("text", ColumnType::String)
        .column("tag", ColumnType::String)
        .column("n", ColumnType::Integer)
        .column("m", ColumnType::Integer)
        .column("x", ColumnType::Real)
        .column("flag", ColumnType::Bool)
        .column("at", ColumnType::DateTime)
        .column("doc", ColumnType::Json)
}

pub(crate) fn fx_rows() -> Vec<Item> {
    [
        json!({"id": "a", "text": "apple", "tag": "fruit", "n": 1, "m": 3, "x": 1.5, "flag": true,
               "at": "2024-01-15T10:20:30.123Z", "doc": {"k": 1}, "version": "v1",
               "updatedAt": "2024-01-15T10:20:30.123Z"}),
        json!({"id": "b", "text": "Banana", "tag": "fruit", "n": 2, "m": 0, "x": -2.25, "flag": false,
               "at": "2024-02-29T23:59:59.999Z", "doc": [1, 2, 3],
               "updatedAt": "2024-01-15T10:20:30.123456Z"}),
        json!({"id": "c", "text": "  cherry pie ", "tag": "dessert", "n": -7, "m": 2, "x": 0.1,
               "flag": true, "at": "2023-12-31T18:30:00.5+05:30", "doc": "plain",
               "updatedAt": "2024-01-15T10:20:30Z"}),
        json!({"id": "d", "text": "Ümlaut ÄÖ straße", "tag": null, "n": null, "m": 5, "x": null,
               "flag": null, "at": null, "doc": null}),
        json!({"id": "e", "text": "emoji 🍎🍌 ok", "tag": "fruit", "n": 100, "m": -3, "x": 1e300,
               "flag": false, "at": "1999-06-01T00:00:00.000001Z", "doc": {"a": [true, null]}}),
        json!({"id": "f", "text": "", "tag": "Fruit", "n": 0, "m": 1, "x": 3.0, "flag": true,
               "at": "2024-01-15T10:20:30.123Z", "doc": 42}),
        json!({"id": "g", "tag": "veg", "n": 2, "m": 2, "x": 2.0, "doc": true}),
        json!({"id": "h", "text": "apple", "tag": "fruit", "n": 2, "m": 7, "x": 2.5, "flag": false,
               "at": "2024-01-15T10:20:30.1234Z", "doc": {"k": 0}}),
        json!({"id": "i", "text": "O'Brien \"quoted\" ; DROP TABLE fx; --", "tag": "a%b_c", "n": 9,
               "m": 4, "x": -0.5, "flag": true, "at": "2030-07-04T12:00:00Z"}),
    ]
    .into_iter()
    .map(item)
    .collect()
}

/// The fixture rows as a store keeps them: every value through [`normalize_value`].
pub(crate) fn fx_stored() -> Vec<Item> {
    let def = fx_def();
    fx_rows()
        .into_iter()
        .map(|row| {
            row.iter()
                .map(|(k, v)| {
                    let ty = def.column_type(k).expect("fixture column");
                    (
                        k.clone(),
                        normalize_value("fx", k, ty, v).expect("fixture value"),
                    )
                })
                .collect()
        })
        .collect()
}

/// A store holding the fixture table.
pub(crate) fn fx_store(factory: &dyn StoreFactory) -> (Place, Arc<dyn LocalStore>) {
    let place = place();
    let store = open(factory, &place);
    store.define_table(&fx_def()).expect("define fx");
    write(
        &*store,
        fx_rows()
            .into_iter()
            .map(|row| Write::PutItem {
                table: "fx".to_owned(),
                item: row,
            })
            .collect(),
    );
    (place, store)
}

/// Runs each query on the store and on [`eval::run_query`] over the stored
/// fixture rows (the reference), and asserts the same page and count, or an
/// `InvalidQuery` where the reference fails.
pub(crate) fn check_queries(store: &dyn LocalStore, queries: &[Query]) {
    let rows = fx_stored();
    for query in queries {
        let actual = store.query("fx", query);
        match eval::run_query(rows.clone(), query) {
            Ok(expected) => {
                let actual = actual.unwrap_or_else(|e| panic!("query {query:?} failed: {e}"));
                assert_same_items(&actual.items, &expected.items, &format!("{query:?}"));
                assert_eq!(actual.count, expected.count, "count of {query:?}");
            }
            Err(_) => assert_err(
                actual,
                |e| matches!(e, StoreError::InvalidQuery { .. }),
                &format!("{query:?} fails in the reference"),
            ),
        }
    }
}

/// Checks filters given as `$filter` text, with and without a count.
pub(crate) fn check_filters(store: &dyn LocalStore, filters: &[&str]) {
    let queries: Vec<Query> = filters
        .iter()
        .flat_map(|f| [filter(f), filter(f).with_count().top(2)])
        .collect();
    check_queries(store, &queries);
}
