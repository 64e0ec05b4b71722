//! Sign-out (`clear_all`) and query ids derived from the query, through the facade.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app;

use app::{Todo, client, todo};
use futures_util::StreamExt;
use serde_json::json;
use tidesync::{Query, col, derived_query_id};
use tidesync_transport_mock::MockServer;

fn seeded() -> MockServer {
    let server = app::server();
    for (id, complete) in [("a", true), ("b", false), ("c", false)] {
        let mut row = serde_json::Map::new();
        row.insert("id".to_owned(), json!(id));
        row.insert("text".to_owned(), json!(id));
        row.insert("complete".to_owned(), json!(complete));
        server.server_insert("TodoItem", row);
    }
    server
}

#[tokio::test]
async fn clear_all_forgets_rows_ops_errors_and_every_cursor() {
    let server = seeded();
    let client = client(&server);
    let todos = client.sync_table::<Todo>();
    let open = Query::new().filter(col("complete").eq(false));
    assert_eq!(todos.pull("all", Query::all()).await.unwrap().upserted, 3);
    assert_eq!(todos.pull("open", open.clone()).await.unwrap().upserted, 2);
    let mut live = todos.live_query(Query::all());
    assert_eq!(live.next().await.unwrap().unwrap().len(), 3);

    // The first user's change, made offline, must never reach the server.
    server.set_offline(true);
    todos.insert(&todo("ana's secret", false)).await.unwrap();
    assert!(!client.push().await.unwrap().is_success());
    let mut status = client.status();
    assert_eq!(status.borrow_and_update().pending, 1);
    assert!(status.borrow().last_error.is_some());

    client.clear_all().await.unwrap();
    assert!(
        live.next().await.unwrap().unwrap().is_empty(),
        "live queries see it"
    );
    assert_eq!(client.pending_operations().unwrap(), 0);
    assert!(client.operation_errors().unwrap().is_empty());
    {
        let now = status.borrow_and_update();
        assert_eq!((now.pending, now.pending_by_table.len()), (0, 0));
        assert_eq!(now.last_error, None);
        assert_eq!(now.last_pulled_at, None);
    }

    // The next user starts from nothing: every query id pulls everything again.
    server.set_offline(false);
    assert_eq!(todos.pull("open", open).await.unwrap().upserted, 2);
    assert_eq!(todos.pull("all", Query::all()).await.unwrap().upserted, 3);
    assert!(
        server
            .items("TodoItem")
            .iter()
            .all(|row| row["text"] != "ana's secret"),
        "the cleared op was never pushed"
    );
    assert_eq!(client.pending_operations().unwrap(), 0);
}

#[tokio::test]
async fn each_query_pulled_without_an_id_keeps_its_own_cursor() {
    let open = Query::new().filter(col("complete").eq(false));
    assert_eq!(derived_query_id(&open), derived_query_id(&open.clone()));
    assert_ne!(derived_query_id(&open), derived_query_id(&Query::all()));

    let server = seeded();
    let client = client(&server);
    let todos = client.sync_table::<Todo>();
    // The open rows first: a shared cursor would now stand after `c` and the
    // second pull would miss `a`, which is older.
    assert_eq!(todos.pull_query(open.clone()).await.unwrap().upserted, 2);
    assert_eq!(todos.pull_query(Query::all()).await.unwrap().upserted, 3);
    // The same query again finds its cursor: nothing new.
    assert_eq!(todos.pull_query(open).await.unwrap().upserted, 0);
}
