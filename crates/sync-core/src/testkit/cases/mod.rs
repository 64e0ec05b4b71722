//! The store conformance cases. Each takes a [`StoreFactory`], creates its own
//! temporary directory and panics on any deviation from the contract of
//! [`LocalStore`](crate::LocalStore) (as [`MemoryStore`](crate::MemoryStore) implements it).
//!
//! Rows are compared with a null property counting as absent: the query
//! language treats both alike and a SQL store cannot tell them apart.

mod marks;
mod query;
mod queue;

pub use marks::*;
pub use query::*;
pub use queue::*;

use serde_json::{Value, json};
use tidesync_protocol::odata::Query;

use super::StoreFactory;
use super::fixture::*;
use crate::error::StoreError;
use crate::model::{ColumnType, OpKind, TableDef, normalize_value};
use crate::store::Write;
use crate::testkit::QueueView;

/// Writes 5 changes whose 3rd is `bad` and checks that nothing of the batch is
/// visible afterwards: items, ops, errors and config alike.
fn check_atomic(factory: &dyn StoreFactory, bad: Write, expected: fn(&StoreError) -> bool) {
    let (_place, store) = fresh(factory);
    write(
        &*store,
        vec![put("todo", json!({"id": "keep", "text": "before"}))],
    );
    let first_op = op("op-1", 1, "todo", "new1", OpKind::Insert);
    let writes = vec![
        put("todo", json!({"id": "new1", "text": "one"})),
        Write::PutOperation(first_op.clone()),
        bad,
        Write::PutError(op_error(&first_op, Some(500))),
        Write::SetConfig {
            key: "deltaToken|todo|all".to_owned(),
            value: Some("2024-01-01T00:00:00.000Z".to_owned()),
        },
    ];
    let mut writes = writes;
    writes.push(put("todo", json!({"id": "keep", "text": "after"})));
    writes.push(Write::DeleteItem {
        table: "todo".to_owned(),
        id: "keep".to_owned(),
    });
    assert_err(store.write(&batch(writes)), expected, "the bad write");
    assert_eq!(
        store.get("todo", "new1").unwrap(),
        None,
        "item of a failed batch"
    );
    assert_same_item(
        store.get("todo", "keep").unwrap().as_ref(),
        Some(&item(json!({"id": "keep", "text": "before"}))),
        "row changed by a failed batch",
    );
    assert_eq!(
        store.operation("op-1").unwrap(),
        None,
        "op of a failed batch"
    );
    assert_eq!(store.count_operations(None).unwrap(), 0);
    assert_eq!(store.max_sequence().unwrap(), 0);
    assert!(
        store.errors().unwrap().is_empty(),
        "error of a failed batch"
    );
    assert_eq!(store.config("deltaToken|todo|all").unwrap(), None);
    assert_eq!(all_ids(&*store, "todo"), vec!["keep".to_owned()]);
    // The store still works after the rollback.
    write(
        &*store,
        vec![put("todo", json!({"id": "new1", "text": "one"}))],
    );
    assert_eq!(all_ids(&*store, "todo").len(), 2);
}

/// A batch whose 3rd write targets an undefined table leaves no trace.
pub fn atomic_batch_undefined_table(factory: &dyn StoreFactory) {
    check_atomic(
        factory,
        put("nowhere", json!({"id": "x"})),
        |e| matches!(e, StoreError::UnknownTable(t) if t == "nowhere"),
    );
}

/// A batch whose 3rd write has a value of the wrong type leaves no trace.
pub fn atomic_batch_type_mismatch(factory: &dyn StoreFactory) {
    check_atomic(
        factory,
        put("todo", json!({"id": "x", "rank": "high"})),
        |e| matches!(e, StoreError::TypeMismatch { column, .. } if column == "rank"),
    );
}

/// A batch whose 3rd write has an unknown column leaves no trace.
pub fn atomic_batch_unknown_column(factory: &dyn StoreFactory) {
    check_atomic(
        factory,
        put("todo", json!({"id": "x", "colour": "red"})),
        |e| matches!(e, StoreError::UnknownColumn { column, .. } if column == "colour"),
    );
}

/// Items, ops (with their JSON), errors, config and table definitions survive
/// drop and reopen when the store is durable; otherwise the store reopens empty.
pub fn durable_reopen(factory: &dyn StoreFactory) {
    let place = place();
    let store = open(factory, &place);
    store.define_table(&todo_def()).unwrap();
    store.define_table(&fx_def()).unwrap();
    let mut first = op("op-1", 7, "todo", "a", OpKind::Delete);
    first.item = Some(item(
        json!({"id": "a", "text": "gone", "nested": {"k": [1, 2]}}),
    ));
    first.base = Some(item(json!({"id": "a", "version": "v9", "text": "base"})));
    let error = op_error(&first, Some(412));
    write(
        &*store,
        vec![
            put(
                "todo",
                json!({"id": "a", "text": "hello", "done": true, "rank": 3}),
            ),
            put("fx", fx_rows()[0].clone().into()),
            Write::PutOperation(first.clone()),
            Write::PutError(error.clone()),
            Write::SetConfig {
                key: "k".to_owned(),
                value: Some("v".to_owned()),
            },
        ],
    );
    drop(store);
    let store = open(factory, &place);
    if factory.capabilities().durable {
        assert_eq!(store.table("todo").unwrap(), Some(todo_def()));
        assert_eq!(store.table("fx").unwrap(), Some(fx_def()));
        assert_same_item(
            store.get("todo", "a").unwrap().as_ref(),
            Some(&item(
                json!({"id": "a", "text": "hello", "done": true, "rank": 3}),
            )),
            "item after reopen",
        );
        assert_same_item(
            store.get("fx", "a").unwrap().as_ref(),
            Some(&fx_stored()[0]),
            "fixture row after reopen",
        );
        assert_eq!(store.operation("op-1").unwrap(), Some(first));
        assert_eq!(store.errors().unwrap(), vec![error]);
        assert_eq!(store.config("k").unwrap().as_deref(), Some("v"));
        assert_eq!(store.max_sequence().unwrap(), 7);
    } else {
        assert_eq!(store.table("todo").unwrap(), None);
        assert_eq!(store.count_operations(None).unwrap(), 0);
        assert_eq!(store.config("k").unwrap(), None);
    }
}

/// Defining the same table twice changes nothing.
pub fn define_twice_is_noop(factory: &dyn StoreFactory) {
    let (_place, store) = fresh(factory);
    write(&*store, vec![put("todo", json!({"id": "a", "text": "x"}))]);
    store.define_table(&todo_def()).unwrap();
    assert_eq!(store.table("todo").unwrap(), Some(todo_def()));
    assert_eq!(all_ids(&*store, "todo"), vec!["a".to_owned()]);
    // Declaring a system column with its own type is allowed and changes nothing visible.
    let with_system = todo_def().column("version", ColumnType::String);
    store.define_table(&with_system).unwrap();
    assert_eq!(store.table("missing").unwrap(), None);
}

/// Defining a table again with an extra column adds it; old rows keep their
/// data and read the new column as null.
pub fn schema_growth(factory: &dyn StoreFactory) {
    let (place, store) = fresh(factory);
    write(
        &*store,
        vec![put("todo", json!({"id": "a", "text": "old", "rank": 1}))],
    );
    let grown = todo_def()
        .column("due", ColumnType::DateTime)
        .column("meta", ColumnType::Json);
    store.define_table(&grown).unwrap();
    assert_eq!(store.table("todo").unwrap(), Some(grown.clone()));
    let old = store.get("todo", "a").unwrap().unwrap();
    assert_same_item(
        Some(&old),
        Some(&item(json!({"id": "a", "text": "old", "rank": 1}))),
        "old row",
    );
    assert_eq!(old.get("due").cloned().unwrap_or(Value::Null), Value::Null);
    write(
        &*store,
        vec![put(
            "todo",
            json!({"id": "b", "text": "new", "due": "2024-05-05T05:05:05.000Z", "meta": {"x": 1}}),
        )],
    );
    // A definition that lists fewer columns does not drop any.
    store
        .define_table(&TableDef::new("todo").column("text", ColumnType::String))
        .unwrap();
    assert_eq!(store.table("todo").unwrap(), Some(grown.clone()));
    let found = store.query("todo", &filter("due ne null")).unwrap();
    assert_eq!(ids(&found.items), vec!["b".to_owned()]);
    drop((found, store));
    if factory.capabilities().durable {
        let store = open(factory, &place);
        assert_eq!(store.table("todo").unwrap(), Some(grown));
        assert_eq!(
            all_ids(&*store, "todo"),
            vec!["a".to_owned(), "b".to_owned()]
        );
    }
}

/// Redefining a column with another type is refused and changes nothing.
pub fn conflicting_redefinition(factory: &dyn StoreFactory) {
    let (_place, store) = fresh(factory);
    let retyped = TableDef::new("todo")
        .column("extra", ColumnType::Real)
        .column("rank", ColumnType::String);
    assert_err(
        store.define_table(&retyped),
        |e| matches!(e, StoreError::InvalidDefinition(_)),
        "retyping rank",
    );
    assert_eq!(
        store.table("todo").unwrap().unwrap().column_type("rank"),
        Some(ColumnType::Integer)
    );
    assert_eq!(
        store.table("todo").unwrap().unwrap().column_type("extra"),
        None,
        "a refused definition changes nothing"
    );
    let system = TableDef::new("todo").column("updatedAt", ColumnType::String);
    assert_err(
        store.define_table(&system),
        |e| matches!(e, StoreError::InvalidDefinition(_)),
        "retyping a system column",
    );
}

/// Malformed table and column names are refused.
pub fn invalid_names(factory: &dyn StoreFactory) {
    let (_place, store) = fresh(factory);
    let long = "a".repeat(129);
    let bad_tables = [
        "",
        "1abc",
        "with space",
        "semi;colon",
        "quo\"te",
        "dash-ed",
        "ünï",
        "__operations",
        "__anything",
        "sqlite_master",
        "SQLITE_x",
        long.as_str(),
    ];
    for name in bad_tables {
        assert_err(
            store.define_table(&TableDef::new(name)),
            |e| matches!(e, StoreError::InvalidDefinition(_)),
            &format!("table name {name:?}"),
        );
        assert_eq!(store.table(name).unwrap(), None);
    }
    for name in ["", "9lives", "a b", "x\"); DROP TABLE todo; --", "é"] {
        let def = TableDef::new("other").column(name, ColumnType::String);
        assert_err(
            store.define_table(&def),
            |e| matches!(e, StoreError::InvalidDefinition(_)),
            &format!("column name {name:?}"),
        );
    }
    assert_eq!(store.table("other").unwrap(), None);
    // Names that differ only in letter case: SQL identifiers ignore case.
    for def in [
        TableDef::new("other")
            .column("text", ColumnType::String)
            .column("Text", ColumnType::String),
        TableDef::new("other").column("ID", ColumnType::String),
        TableDef::new("TODO"),
    ] {
        assert_err(
            store.define_table(&def),
            |e| matches!(e, StoreError::InvalidDefinition(_)),
            &format!("case-only difference in {def:?}"),
        );
    }
    assert_eq!(store.table("other").unwrap(), None);
    assert_eq!(store.table("TODO").unwrap(), None);
    let longest = format!("_{}", "z".repeat(127));
    store
        .define_table(&TableDef::new(&longest).column("_c9", ColumnType::Integer))
        .unwrap();
    assert!(store.table(&longest).unwrap().is_some());
}

/// Puts each value into a fresh row of a one-column table of type `ty` and
/// reads it back as [`normalize_value`] gives it.
fn check_round_trip(factory: &dyn StoreFactory, ty: ColumnType, values: &[Value]) {
    let place = place();
    let store = open(factory, &place);
    store
        .define_table(&TableDef::new("rt").column("v", ty))
        .unwrap();
    let rows: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, v)| item(json!({"id": format!("r{i:03}"), "v": v})))
        .collect();
    write(
        &*store,
        rows.iter()
            .map(|r| Write::PutItem {
                table: "rt".to_owned(),
                item: r.clone(),
            })
            .collect(),
    );
    for (row, value) in rows.iter().zip(values) {
        let id = row["id"].as_str().unwrap();
        let expected = normalize_value("rt", "v", ty, value).unwrap();
        let got = store
            .get("rt", id)
            .unwrap()
            .unwrap_or_else(|| panic!("row {id} missing"));
        let got_value = got.get("v").cloned().unwrap_or(Value::Null);
        assert_eq!(got_value, expected, "{ty:?} value {value}");
        if let (Some(a), Some(b)) = (got_value.as_f64(), expected.as_f64()) {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{ty:?} value {value} keeps its bits"
            );
        }
        assert_eq!(got.get("id"), row.get("id"));
    }
    let all = store.query("rt", &Query::all()).unwrap();
    assert_eq!(all.items.len(), values.len());
}

/// Strings: unicode, emoji, control characters (no NUL), quotes, empty.
pub fn round_trip_strings(factory: &dyn StoreFactory) {
    check_round_trip(
        factory,
        ColumnType::String,
        &[
            json!(""),
            json!("plain"),
            json!("Grüße, 東京, Ελληνικά, עברית"),
            json!("emoji 🍎👩‍👩‍👧 ok"),
            json!("tab\tnew\nline\r\u{1}\u{1f}\u{7f}\u{9f}"),
            json!("quote ' and \" and \\ and %_"),
            json!(" spaced "),
            json!("x".repeat(10_000)),
            Value::Null,
        ],
    );
}

/// Integers, the `i64` bounds included, and an integral float accepted as an integer.
pub fn round_trip_integers(factory: &dyn StoreFactory) {
    check_round_trip(
        factory,
        ColumnType::Integer,
        &[
            json!(0),
            json!(-1),
            json!(42),
            json!(i64::MIN),
            json!(i64::MAX),
            json!(3.0),
            Value::Null,
        ],
    );
}

/// Reals: 0.1, 1e300, negative zero, tiny, integral and negative values.
pub fn round_trip_reals(factory: &dyn StoreFactory) {
    check_round_trip(
        factory,
        ColumnType::Real,
        &[
            json!(0.1),
            json!(1e300),
            json!(-0.0),
            json!(0.0),
            json!(5e-324),
            json!(-123.456),
            json!(7),
            json!(f64::MAX),
            json!(i64::MAX),
            Value::Null,
        ],
    );
}

/// Booleans and nulls.
pub fn round_trip_bools_and_nulls(factory: &dyn StoreFactory) {
    check_round_trip(
        factory,
        ColumnType::Bool,
        &[json!(true), json!(false), Value::Null],
    );
}

/// Date-times come back as normalised UTC text with their precision.
pub fn round_trip_date_times(factory: &dyn StoreFactory) {
    check_round_trip(
        factory,
        ColumnType::DateTime,
        &[
            json!("2024-01-15T10:20:30.123Z"),
            json!("2024-01-15T10:20:30.123456Z"),
            json!("2024-01-15T10:20:30.123456789Z"),
            json!("2024-01-15T10:20:30+05:30"),
            json!("2024-01-15T10:20:30.5-08:00"),
            json!("2024-01-15"),
            json!("1970-01-01T00:00:00Z"),
            json!("9999-12-31T23:59:59.999Z"),
            Value::Null,
        ],
    );
}

/// JSON values of every kind, nested.
pub fn round_trip_json(factory: &dyn StoreFactory) {
    check_round_trip(
        factory,
        ColumnType::Json,
        &[
            json!({"a": {"b": [1, 2.5, "x", null, true, {"c": []}]}, "emoji": "🍎"}),
            json!([[], {}, [1, [2, [3]]]]),
            json!("just a string"),
            json!(12),
            json!(-0.5),
            json!(true),
            json!({}),
            json!([]),
        ],
    );
}

/// A put replaces the whole row: columns it lacks become null.
pub fn put_replaces_whole_row(factory: &dyn StoreFactory) {
    let (_place, store) = fresh(factory);
    write(
        &*store,
        vec![put(
            "todo",
            json!({"id": "a", "text": "t", "done": true, "rank": 1, "version": "v1"}),
        )],
    );
    write(&*store, vec![put("todo", json!({"id": "a", "rank": 2}))]);
    assert_same_item(
        store.get("todo", "a").unwrap().as_ref(),
        Some(&item(json!({"id": "a", "rank": 2}))),
        "replaced row",
    );
    // The same id twice in one batch: the last put wins.
    write(
        &*store,
        vec![
            put("todo", json!({"id": "b", "text": "1"})),
            put("todo", json!({"id": "b", "text": "2"})),
        ],
    );
    assert_same_item(
        store.get("todo", "b").unwrap().as_ref(),
        Some(&item(json!({"id": "b", "text": "2"}))),
        "last put wins",
    );
}

/// A bulk [`Write::PutItems`] leaves the table exactly as the same rows put one by one:
/// more rows than one statement of a SQL store takes, varying columns, nulls, an id twice
/// (the last wins) and a delete between two bulk writes; a bad row refuses the whole batch.
pub fn put_items_as_puts(factory: &dyn StoreFactory) {
    let rows: Vec<Value> = (0..300)
        .map(|n| match n % 4 {
            0 => json!({"id": format!("r{n:03}"), "text": format!("row {n}"), "done": true, "rank": n}),
            1 => json!({"id": format!("r{n:03}"), "rank": -n}),
            2 => json!({"id": format!("r{n:03}"), "text": null, "done": false}),
            _ => json!({"id": format!("r{}", n % 7), "text": "again"}),
        })
        .collect();
    let (_one, one_by_one) = fresh(factory);
    let (_bulk, bulk) = fresh(factory);
    let mut puts: Vec<Write> = rows.iter().map(|r| put("todo", r.clone())).collect();
    puts.insert(
        200,
        Write::DeleteItem {
            table: "todo".to_owned(),
            id: "r001".to_owned(),
        },
    );
    write(&*one_by_one, puts);
    let bulk_write = |rows: &[Value]| Write::PutItems {
        table: "todo".to_owned(),
        items: rows.iter().cloned().map(item).collect(),
    };
    write(
        &*bulk,
        vec![
            bulk_write(&rows[..200]),
            Write::DeleteItem {
                table: "todo".to_owned(),
                id: "r001".to_owned(),
            },
            bulk_write(&rows[200..]),
        ],
    );
    let by_id = Query {
        order_by: vec![tidesync_protocol::odata::OrderBy {
            member: "id".to_owned(),
            descending: false,
        }],
        ..Query::default()
    };
    let all = |store: &dyn crate::store::LocalStore| store.query("todo", &by_id).unwrap().items;
    let expected = all(&*one_by_one);
    assert!(expected.len() > 200);
    assert_same_items(&all(&*bulk), &expected, "bulk rows");
    let mut bad = rows[..150].to_vec();
    bad.push(json!({"id": "zz", "colour": "red"}));
    assert_err(
        bulk.write(&batch(vec![bulk_write(&bad)])),
        |e| matches!(e, StoreError::UnknownColumn { .. }),
        "a bulk write with a bad row",
    );
    assert_same_items(&all(&*bulk), &expected, "rows after a refused bulk write");
}

/// A put with a property that is not a column is refused.
pub fn put_unknown_column(factory: &dyn StoreFactory) {
    let (_place, store) = fresh(factory);
    for column in ["colour", "Text", "deleted"] {
        assert_err(
            store.write(&batch(vec![put("todo", json!({"id": "a", column: "x"}))])),
            |e| matches!(e, StoreError::UnknownColumn { table, .. } if table == "todo"),
            &format!("column {column}"),
        );
    }
    assert_eq!(store.get("todo", "a").unwrap(), None);
}

/// A put with a value of the wrong type is refused.
pub fn put_type_mismatch(factory: &dyn StoreFactory) {
    let (_place, store) = fresh(factory);
    let cases = [
        ("text", json!(5)),
        ("done", json!("yes")),
        ("done", json!(1)),
        ("rank", json!(1.5)),
        ("rank", json!("1")),
        ("updatedAt", json!("yesterday")),
        ("version", json!(3)),
    ];
    for (column, value) in cases {
        assert_err(
            store.write(&batch(vec![put("todo", json!({"id": "a", column: value}))])),
            |e| matches!(e, StoreError::TypeMismatch { .. }),
            &format!("{column} = {value}"),
        );
    }
    assert_eq!(store.get("todo", "a").unwrap(), None);
}

/// A put without a string id is refused.
pub fn put_missing_id(factory: &dyn StoreFactory) {
    let (_place, store) = fresh(factory);
    for row in [json!({"text": "x"}), json!({"id": 5}), json!({"id": null})] {
        assert_err(
            store.write(&batch(vec![put("todo", row.clone())])),
            |e| matches!(e, StoreError::MissingId { .. }),
            &format!("{row}"),
        );
    }
    assert!(all_ids(&*store, "todo").is_empty());
}

/// Getting a missing row gives `None`.
pub fn get_missing_row(factory: &dyn StoreFactory) {
    let (_place, store) = fresh(factory);
    assert_eq!(store.get("todo", "nope").unwrap(), None);
    write(&*store, vec![put("todo", json!({"id": "a"}))]);
    assert_eq!(
        store.get("todo", "A").unwrap(),
        None,
        "ids are case-sensitive"
    );
    assert_eq!(store.get("todo", "").unwrap(), None);
    assert!(store.get("todo", "a").unwrap().is_some());
}

/// Reads and writes of an undefined table fail with `UnknownTable`.
pub fn unknown_table(factory: &dyn StoreFactory) {
    let (_place, store) = fresh(factory);
    let unknown = |e: &StoreError| matches!(e, StoreError::UnknownTable(t) if t == "ghost");
    assert_err(store.get("ghost", "a"), unknown, "get");
    assert_err(store.query("ghost", &Query::all()), unknown, "query");
    assert_err(
        store.write(&batch(vec![put("ghost", json!({"id": "a"}))])),
        unknown,
        "put",
    );
    let delete = Write::DeleteItem {
        table: "ghost".to_owned(),
        id: "a".to_owned(),
    };
    assert_err(store.write(&batch(vec![delete])), unknown, "delete");
    let delete_many = Write::DeleteItems {
        table: "ghost".to_owned(),
        query: Query::all(),
    };
    assert_err(
        store.write(&batch(vec![delete_many])),
        unknown,
        "delete many",
    );
    assert_err(
        store.get("Todo", "a"),
        |e| matches!(e, StoreError::UnknownTable(_)),
        "case-sensitive table names",
    );
}

/// A garbage file at the path: a clear error for a file-backed store, ignored otherwise.
pub fn corrupt_file(factory: &dyn StoreFactory) {
    let place = place();
    let garbage: Vec<u8> = b"this is not a database, just some text\n"
        .iter()
        .copied()
        .cycle()
        .take(64 * 1024)
        .collect();
    std::fs::write(&place.path, garbage).unwrap();
    let opened = factory.open(&place.path);
    if factory.capabilities().file_backed {
        match opened {
            Err(StoreError::Corrupt(_) | StoreError::Backend(_)) => {}
            Err(other) => panic!("garbage file gave {other:?}"),
            Ok(store) => panic!("garbage file opened as a store: {store:?}"),
        }
    } else {
        let store = opened.expect("a store that is not file-backed ignores the file");
        assert_eq!(store.table("todo").unwrap(), None);
        assert_eq!(store.count_operations(None).unwrap(), 0);
        store.define_table(&todo_def()).unwrap();
    }
}
