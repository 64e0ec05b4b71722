//! `$orderby` orders by a column's value, not by the text the store selects it as: numbers
//! by magnitude (dynamic `number` columns, which PostgreSQL selects as `numeric::text`),
//! date-times by instant, on SQLite and PostgreSQL. Found by the official JS client suite
//! (`query/order-number-then-string`), where PostgreSQL ordered `duration` as text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, golden_builder};
use serde_json::json;

async fn ordered(c: &Client) {
    for (id, duration, due) in [
        ("a", json!(1000), "2024-01-01T00:00:00.000Z"),
        ("b", json!(142), "1994-10-14T10:20:30.000Z"),
        ("c", json!(76.5), "2023-06-15T23:59:59.999Z"),
        ("d", json!(200), "2100-01-01T00:00:00.000Z"),
        ("e", json!(-3), "1969-12-31T23:59:59.000Z"),
    ] {
        let r = c
            .v2(
                "POST",
                "/tables/TodoItem",
                &[],
                Some(json!({"id": id, "duration": duration, "due": due})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    for (order, expected) in [
        ("duration", ["e", "c", "b", "d", "a"]),
        ("duration desc", ["a", "d", "b", "c", "e"]),
        ("due", ["e", "b", "c", "a", "d"]),
    ] {
        for version in ["2.0.0", "3.0.0"] {
            let path = format!("/tables/TodoItem?$orderby={}", order.replace(' ', "%20"));
            let r = c
                .send("GET", &path, &[("zumo-api-version", version)], None)
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(r.ids(), expected, "$orderby={order} (v{version})");
        }
    }
}

#[tokio::test]
async fn order_by_value_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    ordered(&common::sqlite_client(golden_builder(), dir.path()).await).await;
}

#[tokio::test]
async fn order_by_value_on_postgres() {
    let Some((client, schema)) = common::postgres_client(golden_builder(), "order").await else {
        return;
    };
    ordered(&client).await;
    common::drop_pg_schema(&schema).await;
}
