//! Translation tests: what becomes SQL, what stays a bound value, and what is
//! left to the evaluator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rusqlite::types::Value as SqlValue;
use tidesync_core::{ColumnType, Query, StoreError, TableDef};
use tidesync_protocol::odata::parse_filter;

use super::{run, translate_filter};

fn def() -> TableDef {
    TableDef::new("t")
        .column("text", ColumnType::String)
        .column("n", ColumnType::Integer)
        .column("x", ColumnType::Real)
        .column("flag", ColumnType::Bool)
        .column("at", ColumnType::DateTime)
        .column("doc", ColumnType::Json)
}

/// Translates `filter` and checks the SQL, the bound values and exactness.
fn check(filter: &str, sql: &str, params: &[SqlValue], exact: bool) {
    let expr = parse_filter(filter).unwrap();
    let t = translate_filter(&def(), Some(&expr));
    assert_eq!(
        (t.sql.as_str(), t.params.as_slice(), t.exact),
        (sql, params, exact),
        "{filter}"
    );
}

#[test]
fn comparisons_bind_values() {
    let text = |s: &str| SqlValue::Text(s.to_owned());
    check("text eq 'a'", "(\"text\" IS ?)", &[text("a")], true);
    check("'a' lt text", "IFNULL(\"text\" > ?, 0)", &[text("a")], true);
    check(
        "n ge 5",
        "IFNULL(\"n\" >= ?, 0)",
        &[SqlValue::Integer(5)],
        true,
    );
    check(
        "x lt 2",
        "IFNULL(\"x\" < ?, 0)",
        &[SqlValue::Real(2.0)],
        true,
    );
    check(
        "flag ne true",
        "(\"flag\" IS NOT ?)",
        &[SqlValue::Integer(1)],
        true,
    );
    check("at eq null", "(\"at\" IS NULL)", &[], true);
    check("n gt null", "0", &[], true);
    check(
        "not (n eq 1 or text in ('a', 'b'))",
        "(NOT ((\"n\" IS ?) OR ((\"text\" IS ?) OR (\"text\" IS ?))))",
        &[SqlValue::Integer(1), text("a"), text("b")],
        true,
    );
}

#[test]
fn injection_attempts_stay_values() {
    let evil = "x' OR 1=1; DROP TABLE t; --";
    let filter = format!("text eq '{}'", evil.replace('\'', "''"));
    check(
        &filter,
        "(\"text\" IS ?)",
        &[SqlValue::Text(evil.to_owned())],
        true,
    );
    let store = crate::SqliteStore::open_in_memory().unwrap();
    use tidesync_core::LocalStore;
    store.define_table(&def()).unwrap();
    let found = store
        .query("t", &Query::all().filter(parse_filter(&filter).unwrap()))
        .unwrap();
    assert!(found.items.is_empty());
    assert!(store.table("t").unwrap().is_some(), "the table survived");
}

#[test]
fn untranslatable_parts_are_left_to_rust() {
    // Functions, arithmetic, cross-kind comparisons and JSON stay in Rust; a
    // leading translatable conjunct still narrows the rows.
    check("tolower(text) eq 'a'", "1", &[], false);
    check("n add 1 eq 2", "1", &[], false);
    check("n eq 2.5", "1", &[], false);
    check("doc eq 1", "1", &[], false);
    check(
        "at gt datetimeoffset'2024-01-01T00:00:00Z'",
        "1",
        &[],
        false,
    );
    check(
        "n eq 1 and length(text) eq 2 and x gt 1.5",
        "(\"n\" IS ?)",
        &[SqlValue::Integer(1)],
        false,
    );
    check("flag", "1", &[], false);
}

#[test]
fn unknown_columns_are_invalid_queries() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    for query in [
        Query::all().filter(parse_filter("nope eq 1").unwrap()),
        Query::all().order_by("nope"),
        Query::all().select(["text", "nope"]),
        Query::all().filter(
            parse_filter("\"text\" eq 1").unwrap_or_else(|_| parse_filter("TEXT eq 1").unwrap()),
        ),
    ] {
        match run(&conn, &def(), &query) {
            Err(StoreError::InvalidQuery { table, message }) => {
                assert_eq!(table, "t");
                assert!(message.contains("no column"), "{message}");
            }
            other => panic!("{query:?}: {other:?}"),
        }
    }
}

#[test]
fn real_columns_keep_negative_zero() {
    // `REAL` affinity would store -0.0 as the integer 0; real columns have none.
    let store = crate::SqliteStore::open_in_memory().unwrap();
    use tidesync_core::{LocalStore, Write, WriteBatch};
    store.define_table(&def()).unwrap();
    let item = serde_json::json!({"id": "z", "x": -0.0});
    let mut batch = WriteBatch::new();
    batch.push(Write::PutItem {
        table: "t".into(),
        item: item.as_object().cloned().unwrap(),
    });
    store.write(&batch).unwrap();
    let got = store.get("t", "z").unwrap().unwrap();
    assert!(got["x"].as_f64().unwrap().is_sign_negative());
}
