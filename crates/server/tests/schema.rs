//! A schema clients cannot pollute ([harden] #15 item 2), through HTTP on SQLite and
//! PostgreSQL: declared columns, columns learned only from writes that commit, the caps on
//! dynamic tables, column names both stores can hold, no 500 from a full table, and values
//! stored exactly (the answer to a write equals a later read of the same version).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, Resp, golden_builder};
use serde_json::{Map, Value, json};
use tidesync_server::{ColumnType, SchemaConfig, ServerBuilder, ServerConfig, TableConfig};

const T: &str = "/tables/TodoItem";

/// Whether the table has a column `name`: a filter on a missing column is a 400.
async fn has_column(c: &Client, table: &str, name: &str) -> bool {
    let r = c
        .v2(
            "GET",
            &format!("/tables/{table}?$filter={name}%20eq%20null&__includedeleted=true"),
            &[],
            None,
        )
        .await;
    assert!(r.status == 200 || r.status == 400, "{}", r.text);
    r.status == 200
}

fn assert_refused(r: &Resp, status: u16, naming: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    if status == 400 {
        let error = r.body["error"].as_str().unwrap_or_default();
        assert!(error.contains(naming), "'{error}' should name '{naming}'");
    }
}

fn item_with(id: &str, extra: &[(&str, Value)]) -> Value {
    let mut item = Map::new();
    item.insert("id".to_owned(), json!(id));
    for (name, value) in extra {
        item.insert((*name).to_owned(), value.clone());
    }
    Value::Object(item)
}

// --- columns are learned only from writes that commit -------------------------------------

async fn refused_writes_add_no_columns(c: &Client) {
    let r = c
        .v2("POST", T, &[], Some(json!({"id": "a", "text": "t"})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let stale = "\"AAAAAAAAAAA=\"";
    // 409: an insert of an existing id.
    let r = c
        .v2("POST", T, &[], Some(item_with("a", &[("p409", json!(1))])))
        .await;
    assert_refused(&r, 409, "");
    // 412: a stale If-Match (v2 PATCH and v3 PUT).
    let r = c
        .v2(
            "PATCH",
            &format!("{T}/a"),
            &[("if-match", stale)],
            Some(json!({"p412": true})),
        )
        .await;
    assert_refused(&r, 412, "");
    let r = c
        .v3(
            "PUT",
            &format!("{T}/a"),
            &[("if-match", stale)],
            Some(item_with("a", &[("p412v3", json!("x"))])),
        )
        .await;
    assert_refused(&r, 412, "");
    // 404: an update of a missing row.
    let r = c
        .v2(
            "PATCH",
            &format!("{T}/missing"),
            &[],
            Some(json!({"p404": 1})),
        )
        .await;
    assert_refused(&r, 404, "");
    // 400: a new property beside a value of the wrong type.
    let r = c
        .v2(
            "POST",
            T,
            &[],
            Some(json!({"id": "b", "p400": 1, "text": 5})),
        )
        .await;
    assert_refused(&r, 400, "text");
    // 410: a v3 update of a deleted row.
    c.v2("POST", T, &[], Some(json!({"id": "gone"}))).await;
    let r = c.v3("DELETE", &format!("{T}/gone"), &[], None).await;
    assert_eq!(r.status, 204);
    let r = c
        .v3(
            "PUT",
            &format!("{T}/gone"),
            &[],
            Some(item_with("gone", &[("p410", json!(1))])),
        )
        .await;
    assert_refused(&r, 410, "");
    // The batch: refused ops beside an applied one.
    let r = c
        .batch(
            &json!({"operations": [
                {"id": "o1", "kind": "update", "table": "TodoItem", "itemId": "missing",
                 "item": {"pb404": 1}},
                {"id": "o2", "kind": "insert", "table": "TodoItem", "itemId": "a",
                 "item": {"pb409": 1}},
                {"id": "o3", "kind": "update", "table": "TodoItem", "itemId": "a",
                 "item": {"pbok": "yes"}, "ifMatch": null}]}),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let statuses: Vec<u64> = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [404, 409, 200]);
    for name in [
        "p409", "p412", "p412v3", "p404", "p400", "p410", "pb404", "pb409",
    ] {
        assert!(!has_column(c, "TodoItem", name).await, "{name} was added");
    }
    assert!(has_column(c, "TodoItem", "pbok").await);
    // The same property sent by a write that commits becomes a column.
    let r = c
        .v2("PATCH", &format!("{T}/a"), &[], Some(json!({"p409": 7})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = c
        .v2("GET", &format!("{T}?$filter=p409%20eq%207"), &[], None)
        .await;
    assert_eq!(r.ids(), ["a"]);
}

on_both_stores!(
    refused_writes_sqlite,
    refused_writes_pg,
    golden_builder(),
    refused_writes_add_no_columns
);

// --- caps on dynamic tables --------------------------------------------------------------

fn capped() -> ServerBuilder {
    golden_builder().schema(SchemaConfig {
        max_new_columns_per_write: 32,
        max_columns_per_table: 40,
    })
}

fn props(prefix: &str, n: usize) -> Vec<(String, Value)> {
    (0..n).map(|i| (format!("{prefix}{i}"), json!(i))).collect()
}

fn item_of(id: &str, props: &[(String, Value)]) -> Value {
    let extra: Vec<(&str, Value)> = props.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
    item_with(id, &extra)
}

async fn caps(c: &Client) {
    // One request with 1,990 new properties adds nothing.
    let r = c
        .v2("POST", T, &[], Some(item_of("wide", &props("c", 1990))))
        .await;
    assert_refused(&r, 400, "max_new_columns_per_write");
    assert!(!has_column(c, "TodoItem", "c0").await);
    let r = c.v2("GET", &format!("{T}/wide"), &[], None).await;
    assert_eq!(r.status, 404);
    // 33 new properties are too many, 32 are fine.
    let r = c
        .v3("POST", T, &[], Some(item_of("b", &props("d", 33))))
        .await;
    assert_refused(&r, 400, "max_new_columns_per_write");
    let r = c
        .v2("POST", T, &[], Some(item_of("a", &props("c", 32))))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Nulls of unknown properties count too (they are new properties).
    let nulls: Vec<(String, Value)> = (0..33).map(|i| (format!("n{i}"), Value::Null)).collect();
    let r = c.v2("POST", T, &[], Some(item_of("b", &nulls))).await;
    assert_refused(&r, 400, "max_new_columns_per_write");
    // The table grows to 40 columns and no further, single writes and batch ops alike.
    let r = c
        .v2("POST", T, &[], Some(item_of("b", &props("e", 8))))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = c
        .v2(
            "PATCH",
            &format!("{T}/b"),
            &[],
            Some(json!({"one_more": 1})),
        )
        .await;
    assert_refused(&r, 400, "max_columns_per_table");
    let r = c
        .batch(
            &json!({"operations": [
                {"id": "o1", "kind": "update", "table": "TodoItem", "itemId": "b",
                 "item": {"one_more": 1}},
                {"id": "o2", "kind": "update", "table": "TodoItem", "itemId": "b",
                 "item": {"c0": 100}}]}),
            &[],
        )
        .await;
    assert_eq!(r.body["results"][0]["status"], 400, "{}", r.text);
    assert!(
        r.body["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("max_columns_per_table")
    );
    assert_eq!(r.body["results"][1]["status"], 200, "{}", r.text);
    assert!(!has_column(c, "TodoItem", "one_more").await);
    // Known columns stay writable.
    let r = c
        .v2("PATCH", &format!("{T}/a"), &[], Some(json!({"c1": 5})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

on_both_stores!(caps_sqlite, caps_pg, capped(), caps);

// --- names both stores can hold ------------------------------------------------------------

async fn names(c: &Client) {
    let longest = "n".repeat(63);
    let r = c
        .v2(
            "POST",
            T,
            &[],
            Some(item_with("a", &[(&longest, json!(1))])),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body[&longest], 1);
    let too_long = "n".repeat(64);
    let r = c
        .v2(
            "POST",
            T,
            &[],
            Some(item_with("b", &[(&too_long, json!(1))])),
        )
        .await;
    assert_refused(&r, 400, "at most 63");
    for name in [
        "rowid",
        "ROWID",
        "_rowid_",
        "oid",
        "ctid",
        "xmin",
        "xmax",
        "cmin",
        "Cmax",
        "tableoid",
        "__includeDeleted",
        "__anything",
        "_tidesync_ops",
    ] {
        let r = c
            .v2("POST", T, &[], Some(item_with("c", &[(name, json!(1))])))
            .await;
        assert_refused(&r, 400, name);
        let r = c
            .v3("POST", T, &[], Some(item_with("c", &[(name, json!(1))])))
            .await;
        assert_refused(&r, 400, name);
    }
    let r = c.v2("GET", &format!("{T}/c"), &[], None).await;
    assert_eq!(r.status, 404);
}

on_both_stores!(names_sqlite, names_pg, golden_builder(), names);

// --- declared columns ----------------------------------------------------------------------

fn declared() -> ServerBuilder {
    golden_builder().table_config(
        TableConfig::new("Declared")
            .column("text", ColumnType::String)
            .column("complete", ColumnType::Boolean)
            .column("priority", ColumnType::Integer)
            .column("score", ColumnType::Number)
            .column("due", ColumnType::DateTime),
    )
}

async fn declared_columns(c: &Client) {
    const D: &str = "/tables/Declared";
    // Declared columns exist before any write, with their types.
    for name in ["text", "complete", "priority", "score", "due"] {
        assert!(has_column(c, "Declared", name).await, "{name}");
    }
    let sent = json!({"id": "d1", "text": "a", "complete": true,
                      "priority": 9_007_199_254_740_993_i64, "score": 1.5,
                      "due": "2024-01-01T01:00:00+01:00"});
    let r = c.v2("POST", D, &[], Some(sent)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["priority"], 9_007_199_254_740_993_i64);
    assert_eq!(r.body["due"], "2024-01-01T00:00:00.000Z");
    let read = c.v2("GET", &format!("{D}/d1"), &[], None).await;
    assert_eq!(read.body, r.body);
    let r = c
        .v2(
            "POST",
            D,
            &[],
            Some(json!({"id": "d2", "priority": 9_007_199_254_740_992_i64})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = c
        .v2(
            "GET",
            &format!("{D}?$filter=priority%20eq%209007199254740993"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.ids(), ["d1"], "{}", r.text);
    // A fixed schema: an unknown property is refused, whatever its value, on every path.
    for value in [json!("red"), json!(1), Value::Null] {
        let r = c
            .v2("POST", D, &[], Some(json!({"id": "x", "colour": value})))
            .await;
        assert_refused(&r, 400, "colour");
    }
    let r = c
        .v2(
            "PATCH",
            &format!("{D}/d1"),
            &[],
            Some(json!({"colour": "red"})),
        )
        .await;
    assert_refused(&r, 400, "colour");
    let r = c
        .v3(
            "PUT",
            &format!("{D}/d1"),
            &[],
            Some(json!({"id": "d1", "colour": "red"})),
        )
        .await;
    assert_refused(&r, 400, "colour");
    let r = c
        .batch(
            &json!({"operations": [{"id": "o1", "kind": "insert", "table": "Declared",
                                    "itemId": "x", "item": {"colour": "red"}}]}),
            &[],
        )
        .await;
    assert_eq!(r.body["results"][0]["status"], 400, "{}", r.text);
    assert!(!has_column(c, "Declared", "colour").await);
    // Wrong types.
    for (name, value) in [
        ("text", json!(5)),
        ("complete", json!("yes")),
        ("priority", json!(1.5)),
        ("priority", json!("1")),
        ("priority", json!(u64::MAX)),
        ("score", json!("x")),
        ("due", json!("tomorrow")),
        ("due", json!(5)),
        ("text", json!({"nested": true})),
    ] {
        let r = c
            .v2(
                "POST",
                D,
                &[],
                Some(item_with("x", &[(name, value.clone())])),
            )
            .await;
        assert_refused(&r, 400, name);
    }
    let r = c.v2("GET", &format!("{D}/x"), &[], None).await;
    assert_eq!(r.status, 404);
    // A whole number is an integer.
    let r = c
        .v2(
            "PATCH",
            &format!("{D}/d2"),
            &[],
            Some(json!({"priority": 7.0})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["priority"], 7);
}

on_both_stores!(declared_sqlite, declared_pg, declared(), declared_columns);

#[tokio::test]
async fn declared_columns_come_from_the_config_file_and_bad_ones_stop_the_start() {
    let config = ServerConfig::from_toml(
        r#"
        [[tables]]
        name = "Todo"
        columns = { text = "string", complete = "bool", priority = "integer", score = "number", due = "datetime" }
        "#,
    )
    .unwrap();
    let columns = config.tables[0].columns.clone().unwrap();
    assert_eq!(columns["priority"], ColumnType::Integer);
    assert_eq!(columns["due"], ColumnType::DateTime);
    let dir = tempfile::tempdir().unwrap();
    let c = common::sqlite_client(golden_builder().config(config), dir.path()).await;
    let r = c
        .v2(
            "POST",
            "/tables/Todo",
            &[],
            Some(json!({"id": "a", "priority": "high"})),
        )
        .await;
    assert_refused(&r, 400, "priority");
    for bad in [
        r#"[[tables]]
           name = "T"
           columns = { text = "text" }"#,
        r#"[[tables]]
           name = "T"
           columns = { text = "json" }"#,
    ] {
        assert!(ServerConfig::from_toml(bad).is_err(), "{bad}");
    }
    for bad in ["rowid", "__x", "a-b"] {
        let start = golden_builder()
            .table_config(TableConfig::new("T").column(bad, ColumnType::String))
            .sqlite(dir.path().join("bad.db"))
            .build()
            .await;
        assert!(
            matches!(start, Err(tidesync_server::StartError::Config(_))),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_declared_type_that_contradicts_the_database_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let c = common::sqlite_client(golden_builder(), dir.path()).await;
    let r = c
        .v2("POST", T, &[], Some(json!({"id": "a", "text": "t"})))
        .await;
    assert_eq!(r.status, 201);
    drop(c);
    let start = tidesync_server::Server::builder()
        .table_config(TableConfig::new("TodoItem").column("text", ColumnType::Integer))
        .sqlite(dir.path().join("server.db"))
        .build()
        .await;
    let Err(tidesync_server::StartError::Database(error)) = start else {
        panic!("a contradicting declaration must not start");
    };
    assert!(error.to_string().contains("text"), "{error}");
}

// --- exact values: the answer to a write is what a later read returns ---------------------

/// Values of every kind, with edge cases of each.
fn every_value() -> Value {
    json!({
        "max": i64::MAX, "min": i64::MIN, "above53": 9_007_199_254_740_993_i64,
        "whole": 5.0, "negzero": -0.0, "tenth": 0.1, "huge": 1e300, "tiny": 5e-324,
        "beyond64": u64::MAX, "text": "zoë \u{1f600} \"quoted\"", "empty": "",
        "yes": true, "no": false, "nothing": null,
    })
}

async fn exact_values(c: &Client) {
    let mut sent = every_value();
    sent["id"] = json!("v2");
    let written = c.v2("POST", T, &[], Some(sent.clone())).await;
    assert_eq!(written.status, 201, "{}", written.text);
    assert_eq!(written.body["max"], i64::MAX);
    assert_eq!(written.body["min"], i64::MIN);
    assert_eq!(written.body["above53"], 9_007_199_254_740_993_i64);
    assert_eq!(written.body["whole"], 5);
    assert_eq!(written.body["negzero"], 0);
    assert_eq!(written.body["tiny"], 5e-324);
    let read = c.v2("GET", &format!("{T}/v2"), &[], None).await;
    assert_eq!(read.body, written.body);
    assert_eq!(read.etag(), written.etag());
    // v3, an update, and a batch op answer the same way.
    sent["id"] = json!("v3");
    let written = c.v3("POST", T, &[], Some(sent.clone())).await;
    assert_eq!(written.status, 201, "{}", written.text);
    let read = c.v3("GET", &format!("{T}/v3"), &[], None).await;
    assert_eq!(read.body, written.body);
    let written = c
        .v2(
            "PATCH",
            &format!("{T}/v2"),
            &[],
            Some(json!({"max": i64::MAX - 1, "tenth": 0.2})),
        )
        .await;
    let read = c.v2("GET", &format!("{T}/v2"), &[], None).await;
    assert_eq!(read.body, written.body);
    assert_eq!(read.body["max"], i64::MAX - 1);
    sent["id"] = json!("vb");
    let r = c
        .batch(
            &json!({"operations": [{"id": "o1", "kind": "insert", "table": "TodoItem",
                                    "itemId": "vb", "item": sent}]}),
            &[],
        )
        .await;
    let batch_item = r.body["results"][0]["item"].clone();
    let read = c.v3("GET", &format!("{T}/vb"), &[], None).await;
    assert_eq!(read.body, batch_item, "{}", r.text);
    // Integers compare exactly.
    let r = c
        .v2(
            "POST",
            T,
            &[],
            Some(json!({"id": "w", "above53": 9_007_199_254_740_992_i64})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = c
        .v2(
            "GET",
            &format!("{T}?$filter=above53%20eq%209007199254740993&$orderby=id"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.ids(), ["v2", "v3", "vb"], "{}", r.text);
    // Division stays a division of numbers, also for whole values.
    let r = c
        .v2(
            "GET",
            &format!("{T}?$filter=(whole%20div%202)%20eq%202.5&$orderby=id"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.ids(), ["v2", "v3", "vb"], "{}", r.text);
}

on_both_stores!(exact_sqlite, exact_pg, golden_builder(), exact_values);

// --- a full table never answers 500 ------------------------------------------------------

fn wide() -> ServerBuilder {
    golden_builder().schema(SchemaConfig {
        max_new_columns_per_write: 32,
        max_columns_per_table: SchemaConfig::MAX_COLUMNS_LIMIT,
    })
}

/// The widest table the caps allow, then a row too wide for PostgreSQL's 8 KB row limit:
/// a 4xx naming the limit (SQLite has room), never a 500, and the server goes on.
async fn full_table(c: &Client) {
    for chunk in 0..(SchemaConfig::MAX_COLUMNS_LIMIT / 32 + 1) {
        let names: Vec<(String, Value)> = (0..32)
            .map(|i| chunk * 32 + i)
            .filter(|n| *n < SchemaConfig::MAX_COLUMNS_LIMIT - 1)
            .map(|n| (format!("c{n}"), json!("x")))
            .collect();
        if names.is_empty() {
            break;
        }
        let r = c
            .v2("POST", T, &[], Some(item_of(&format!("r{chunk}"), &names)))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = c
        .v2(
            "POST",
            T,
            &[],
            Some(json!({"id": "last", "c999": "x", "c1000": "y"})),
        )
        .await;
    assert_refused(&r, 400, "max_columns_per_table");
    // Every column filled with text that does not compress: too wide a row for PostgreSQL.
    let filled: Vec<(String, Value)> = (0..SchemaConfig::MAX_COLUMNS_LIMIT - 1)
        .map(|n| {
            let text: String = (0..2100)
                .map(|i| char::from(b'a' + u8::try_from((i * 7 + n * 13) % 26).unwrap()))
                .collect();
            (format!("c{n}"), json!(text))
        })
        .collect();
    let r = c.v2("POST", T, &[], Some(item_of("full", &filled))).await;
    assert!(
        r.status == 201 || r.status == 400,
        "{} {}",
        r.status,
        r.text
    );
    if r.status == 400 {
        assert_refused(&r, 400, "row is too big");
    }
    let r = c
        .v2("PATCH", &format!("{T}/r0"), &[], Some(json!({"c0": "z"})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

on_both_stores!(full_sqlite, full_pg, wide(), full_table);

// --- concurrent writers adding columns ------------------------------------------------------

/// Writers that add columns at once (single writes and batches, on one table) with readers
/// beside them: no 5xx (on PostgreSQL each takes the table lock before any other lock on
/// it), and every column a committed write sent exists.
async fn concurrent_learning(c: &Client) {
    let mut tasks = Vec::new();
    for n in 0..12 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let r = if n % 3 == 0 {
                c.batch(
                    &json!({"operations": [
                        {"id": format!("o{n}"), "kind": "insert", "table": "TodoItem",
                         "itemId": format!("b{n}"), "item": {format!("col{n}"): n}},
                        {"id": format!("p{n}"), "kind": "insert", "table": "TodoItem",
                         "itemId": format!("c{n}"), "item": {format!("col{n}x"): "x"}}]}),
                    &[],
                )
                .await
            } else {
                c.v2(
                    "POST",
                    T,
                    &[],
                    Some(json!({"id": format!("s{n}"), format!("col{n}"): n})),
                )
                .await
            };
            assert!(
                r.status == 200 || r.status == 201,
                "{} {}",
                r.status,
                r.text
            );
            if r.status == 200 {
                for result in r.body["results"].as_array().unwrap() {
                    assert_eq!(result["status"], 201, "{}", r.text);
                }
            }
            let r = c.v2("GET", &format!("{T}?$top=5"), &[], None).await;
            assert_eq!(r.status, 200, "{}", r.text);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for n in 0..12 {
        assert!(
            has_column(c, "TodoItem", &format!("col{n}")).await,
            "col{n}"
        );
    }
}

on_both_stores!(
    concurrent_sqlite,
    concurrent_pg,
    golden_builder(),
    concurrent_learning
);
