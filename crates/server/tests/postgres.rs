//! The PostgreSQL store: the golden exchanges, the concurrent cursor case, and two servers
//! on one database. Each test uses its own schema and drops it at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, drop_pg_schema, golden, golden_builder, pg_schema, pg_url};
use serde_json::json;
use tidesync_server::Server;

#[tokio::test]
async fn golden_exchanges_on_postgres() {
    let Some(schema) = pg_schema("golden").await else {
        return;
    };
    let app = golden_builder()
        .postgres(pg_url(), Some(schema.clone()))
        .build()
        .await
        .unwrap();
    let done = golden::run(&Client {
        router: app.router(),
    })
    .await;
    assert_eq!(done, (1..=50).collect::<Vec<u32>>());
    drop_pg_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incremental_reader_never_misses_a_row_on_postgres() {
    let Some(schema) = pg_schema("cursor").await else {
        return;
    };
    let app = Server::builder()
        .postgres(pg_url(), Some(schema.clone()))
        .table("TodoItem")
        .build()
        .await
        .unwrap();
    common::cursor::writers_and_reader(Client {
        router: app.router(),
    })
    .await;
    drop_pg_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_database() {
    let Some(schema) = pg_schema("two").await else {
        return;
    };
    // Start both at once: schema creation is serialised by an advisory lock.
    let builder = || {
        Server::builder()
            .postgres(pg_url(), Some(schema.clone()))
            .table("TodoItem")
            .bind("127.0.0.1:0")
    };
    let (a, b) = tokio::join!(builder().build(), builder().build());
    let (a, b) = (
        Client {
            router: a.unwrap().router(),
        },
        Client {
            router: b.unwrap().router(),
        },
    );
    let r = a
        .v2(
            "POST",
            "/tables/TodoItem",
            &[],
            Some(json!({"id":"shared","text":"from a","colour":"red"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let stale = r.etag();
    let r = b.v2("GET", "/tables/TodoItem/shared", &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["text"], "from a");
    // A column learned through one server is queryable through the other.
    let r = b
        .v2(
            "GET",
            "/tables/TodoItem?$filter=colour%20eq%20'red'",
            &[],
            None,
        )
        .await;
    assert_eq!(r.ids(), ["shared"], "{}", r.text);
    let r = b
        .v2(
            "PATCH",
            "/tables/TodoItem/shared",
            &[("if-match", &stale)],
            Some(json!({"text":"from b"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for server in [&a, &b] {
        let r = server
            .v2(
                "PATCH",
                "/tables/TodoItem/shared",
                &[("if-match", &stale)],
                Some(json!({"text":"stale"})),
            )
            .await;
        assert_eq!(r.status, 412);
        assert_eq!(r.body["text"], "from b");
    }
    drop_pg_schema(&schema).await;
}
