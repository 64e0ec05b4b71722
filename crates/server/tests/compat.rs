//! The official clients' dialect, accepted as the official server accepts it ([compat] #21
//! items 1–3), through HTTP on SQLite and PostgreSQL: date-times in dynamic and declared
//! columns (learned from ISO-8601 strings, compared as instants, with the v2 and v3 date
//! literals and the date functions), the ids the official server takes, and nested values
//! refused with a clear 400.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, golden_builder};
use serde_json::{Value, json};
use tidesync_server::{ColumnType, ServerBuilder, TableConfig};

const T: &str = "/tables/TodoItem";

fn builder() -> ServerBuilder {
    golden_builder().table_config(
        TableConfig::new("Declared")
            .column("title", ColumnType::String)
            .column("releaseDate", ColumnType::DateTime),
    )
}

/// The ids a query answers, in order, for a v2 `$filter` (spaces as `%20`).
async fn v2_ids(c: &Client, table: &str, filter: &str) -> Vec<String> {
    let path = format!(
        "/tables/{table}?$filter={}&$orderby=id",
        filter.replace('+', "%2B").replace(' ', "%20")
    );
    let r = c.v2("GET", &path, &[], None).await;
    assert_eq!(r.status, 200, "{filter}: {}", r.text);
    r.ids()
}

async fn v3_ids(c: &Client, table: &str, filter: &str) -> Vec<String> {
    let path = format!(
        "/tables/{table}?$filter={}&$orderby=id",
        filter.replace('+', "%2B").replace(' ', "%20")
    );
    let r = c.v3("GET", &path, &[], None).await;
    assert_eq!(r.status, 200, "{filter}: {}", r.text);
    r.ids()
}

// --- item 1: date-times --------------------------------------------------------------------

async fn dates(c: &Client) {
    for table in ["TodoItem", "Declared"] {
        let path = format!("/tables/{table}");
        for (id, date) in [
            ("a", "2024-01-01T00:00:00.000Z"),
            ("b", "1994-10-14T10:20:30Z"),
            ("c", "2023-06-15T23:59:59.999Z"),
        ] {
            let r = c
                .v2(
                    "POST",
                    &path,
                    &[],
                    Some(json!({"id": id, "releaseDate": date, "title": date})),
                )
                .await;
            assert_eq!(r.status, 201, "{table}: {}", r.text);
            // Stored and answered in the canonical form; a later read agrees.
            let canonical = tidesync_protocol::format_timestamp(
                tidesync_protocol::parse_timestamp(date).unwrap(),
            );
            assert_eq!(r.body["releaseDate"], canonical.as_str());
            let read = c.v2("GET", &format!("{path}/{id}"), &[], None).await;
            assert_eq!(read.body, r.body);
        }
        for filter in [
            "releaseDate gt datetime'2023-01-01T00:00:00.000Z'",
            "releaseDate gt datetimeoffset'2023-01-01T00:00:00.000Z'",
            "releaseDate gt '2023-01-01T00:00:00Z'",
            "releaseDate ge datetime'2023-06-15T23:59:59.999Z'",
        ] {
            assert_eq!(
                v2_ids(c, table, filter).await,
                ["a", "c"],
                "{table}: {filter}"
            );
        }
        for filter in [
            "releaseDate gt 2023-01-01T00:00:00.000Z",
            "releaseDate gt cast(2023-01-01T00:00:00Z,Edm.DateTimeOffset)",
            "releaseDate gt cast('2023-01-01T00:00:00Z',Edm.DateTimeOffset)",
        ] {
            assert_eq!(
                v3_ids(c, table, filter).await,
                ["a", "c"],
                "{table}: {filter}"
            );
        }
        // Instants, whatever the offset of the literal.
        assert_eq!(
            v2_ids(
                c,
                table,
                "releaseDate eq datetimeoffset'1994-10-14T12:20:30+02:00'"
            )
            .await,
            ["b"]
        );
        for (filter, ids) in [
            ("year(releaseDate) eq 1994", vec!["b"]),
            ("month(releaseDate) eq 6", vec!["c"]),
            ("day(releaseDate) eq 14", vec!["b"]),
            ("hour(releaseDate) eq 10", vec!["b"]),
            ("minute(releaseDate) eq 20", vec!["b"]),
            ("second(releaseDate) eq 59", vec!["c"]),
            (
                "year(releaseDate) gt 2000 and month(releaseDate) lt 6",
                vec!["a"],
            ),
        ] {
            assert_eq!(v2_ids(c, table, filter).await, ids, "{table}: {filter}");
            assert_eq!(v3_ids(c, table, filter).await, ids, "v3 {table}: {filter}");
        }
        // Ordered as instants, not as text.
        let r = c
            .v3(
                "GET",
                &format!("{path}?$orderby=releaseDate%20desc"),
                &[],
                None,
            )
            .await;
        assert_eq!(r.ids(), ["a", "c", "b"], "{}", r.text);
        // A date-time column takes only date-times.
        let r = c
            .v2(
                "POST",
                &path,
                &[],
                Some(json!({"id": "x", "releaseDate": "soon"})),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.body["error"].as_str().unwrap().contains("releaseDate"));
    }
    // A string that is not a date stays a string, and is compared as one.
    let r = c
        .v2(
            "POST",
            T,
            &[],
            Some(json!({"id": "s", "day": "2024-01-01", "local": "2024-01-01T00:00:00"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(v2_ids(c, "TodoItem", "day eq '2024-01-01'").await, ["s"]);
    assert_eq!(
        v2_ids(c, "TodoItem", "local eq '2024-01-01T00:00:00'").await,
        ["s"]
    );
    let r = c
        .v2(
            "GET",
            &format!("{T}?$filter=day%20gt%20datetime'2023-01-01T00:00:00Z'"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    // A batch insert learns and canonicalises the same way.
    let r = c
        .batch(
            &json!({"operations": [{"id": "o1", "kind": "insert", "table": "TodoItem",
                                    "itemId": "bd", "item": {"shipped": "2025-02-03T04:05:06Z"}}]}),
            &[],
        )
        .await;
    assert_eq!(
        r.body["results"][0]["item"]["shipped"], "2025-02-03T04:05:06.000Z",
        "{}",
        r.text
    );
    assert_eq!(v2_ids(c, "TodoItem", "year(shipped) eq 2025").await, ["bd"]);
}

on_both_stores!(dates_sqlite, dates_pg, builder(), dates);

// --- item 2: ids ---------------------------------------------------------------------------

async fn ids(c: &Client) {
    for (version, body) in [
        ("2.0.0", json!({"id": "", "text": "empty"})),
        ("2.0.0", json!({"id": null, "text": "null"})),
        ("3.0.0", json!({"id": "", "text": "empty v3"})),
    ] {
        let r = c
            .send(
                "POST",
                T,
                &[
                    ("zumo-api-version", version),
                    ("content-type", "application/json"),
                ],
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(r.status, 201, "{body}: {}", r.text);
        let id = r.body["id"].as_str().unwrap();
        assert!(!id.is_empty());
        let read = c.v2("GET", &format!("{T}/{id}"), &[], None).await;
        assert_eq!(read.body, r.body);
    }
    // A body id that is a number equal to the URL's is the same id: 404 when missing (as the
    // official server), applied when present.
    for expected in [404, 200] {
        if expected == 200 {
            let r = c
                .v2("POST", T, &[], Some(json!({"id": "5", "text": "five"})))
                .await;
            assert_eq!(r.status, 201, "{}", r.text);
        }
        for (version, method) in [("2.0.0", "PATCH"), ("3.0.0", "PUT")] {
            let body = json!({"id": 5, "text": method});
            let r = c
                .send(
                    method,
                    &format!("{T}/5"),
                    &[
                        ("zumo-api-version", version),
                        ("content-type", "application/json"),
                    ],
                    Some(&body.to_string()),
                )
                .await;
            assert_eq!(r.status, expected, "{method}: {}", r.text);
            if expected == 200 {
                assert_eq!(r.body["id"], "5");
                assert_eq!(r.body["text"], method);
            }
        }
    }
    // Another id is still refused.
    for body in [
        json!({"id": 6, "text": "x"}),
        json!({"id": "6", "text": "x"}),
    ] {
        let r = c
            .v2("PATCH", &format!("{T}/5"), &[], Some(body.clone()))
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        let r = c
            .v3("PUT", &format!("{T}/5"), &[], Some(body.clone()))
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
    }
}

on_both_stores!(ids_sqlite, ids_pg, builder(), ids);

// --- item 3: nested values -----------------------------------------------------------------

async fn nested(c: &Client) {
    let r = c
        .v2("POST", T, &[], Some(json!({"id": "a", "text": "t"})))
        .await;
    assert_eq!(r.status, 201);
    for (name, value) in [
        ("obj", json!({"x": 1})),
        ("arr", json!([1, 2])),
        ("empty", json!([])),
        ("text", json!({"x": 1})),
    ] {
        let mut body = json!({"id": "n"});
        body[name] = value.clone();
        for r in [
            c.v2("POST", T, &[], Some(body.clone())).await,
            c.v3("POST", T, &[], Some(body.clone())).await,
            c.v2(
                "PATCH",
                &format!("{T}/a"),
                &[],
                Some(json!({name: value.clone()})),
            )
            .await,
        ] {
            assert_eq!(r.status, 400, "{name}: {}", r.text);
            let error = r.body["error"].as_str().unwrap();
            assert!(error.contains(&format!("'{name}'")), "{error}");
        }
        let r = c
            .batch(
                &json!({"operations": [{"id": "o", "kind": "insert", "table": "TodoItem",
                                        "itemId": "n", "item": {name: value}}]}),
                &[],
            )
            .await;
        assert_eq!(r.body["results"][0]["status"], 400, "{}", r.text);
    }
    let r = c.v2("GET", &format!("{T}/n"), &[], None).await;
    assert_eq!(r.status, 404);
    let r = c
        .v2("GET", &format!("{T}?$filter=obj%20eq%20null"), &[], None)
        .await;
    assert_eq!(r.status, 400, "no column was learned: {}", r.text);
    let r = c.v2("GET", &format!("{T}/a"), &[], None).await;
    assert_eq!(r.body["text"], Value::from("t"));
}

on_both_stores!(nested_sqlite, nested_pg, builder(), nested);
