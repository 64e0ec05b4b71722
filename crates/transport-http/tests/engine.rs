//! The sync engine over `HttpTransport` against wiremock: the exact requests the tutorial
//! flow (insert, update, delete, pull) puts on the wire, and what the engine keeps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{body, closed_port, header, query, requests, transport};
use serde_json::{Value, json};
use tidesync_core::{
    ColumnType, LocalStore, MemoryStore, PushStatus, Query, SyncContext, TableDef,
};
use tidesync_transport_http::{HttpTransport, Protocol};
use wiremock::matchers::{method, path, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const T1: &str = "2026-11-27T08:29:29.167Z";
const T2: &str = "2026-11-27T08:29:30.001Z";
const T3: &str = "2026-11-27T08:29:31.002Z";

fn context(transport: HttpTransport) -> SyncContext {
    let store = MemoryStore::new();
    store
        .define_table(
            &TableDef::new("TodoItem")
                .column("text", ColumnType::String)
                .column("complete", ColumnType::Bool),
        )
        .unwrap();
    SyncContext::builder()
        .store(store)
        .transport(transport)
        .page_size(50)
        .build()
        .unwrap()
}

fn server_row(id: &str, text: &str, updated: &str, version: &str, deleted: bool) -> Value {
    json!({
        "id": id, "text": text, "complete": false,
        "createdAt": T1, "updatedAt": updated, "version": version, "deleted": deleted
    })
}

#[tokio::test]
async fn the_tutorial_flow_puts_the_spec_requests_on_the_wire() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/tables/TodoItem"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(server_row("item-1", "buy milk", T1, "MQ==", false))
                .insert_header("ETag", "\"MQ==\""),
        )
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/tables/TodoItem/item-1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(server_row("item-1", "buy oat milk", T2, "body", false))
                .insert_header("ETag", "\"Mg==\""),
        )
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/tables/TodoItem/item-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(server_row(
            "item-1",
            "buy oat milk",
            T3,
            "Mw==",
            true,
        )))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/tables/TodoItem"))
        .and(query_param_is_missing("$filter"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            server_row("item-2", "from elsewhere", T2, "AQ==", false),
            server_row("item-3", "gone", T3, "Ag==", true),
        ])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/tables/TodoItem"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;

    let client = context(transport(&server, Protocol::V2));
    let todo = client.table::<Value>("TodoItem");

    // Insert, push: the server's version and timestamps come back into the local row.
    todo.insert(&json!({"id": "item-1", "text": "buy milk", "complete": false}))
        .await
        .unwrap();
    let pushed = client.push().await.unwrap();
    assert!(pushed.is_success(), "{pushed:?}");
    let local = todo.get("item-1").await.unwrap().unwrap();
    assert_eq!(local["version"], "MQ==");
    assert_eq!(local["updatedAt"], T1);

    // Update, push: PATCH of the full row with If-Match; the ETag wins over the body.
    todo.update(&json!({"id": "item-1", "text": "buy oat milk", "complete": false}))
        .await
        .unwrap();
    assert!(client.push().await.unwrap().is_success());
    assert_eq!(
        todo.get("item-1").await.unwrap().unwrap()["version"],
        "Mg=="
    );

    // Delete, push: DELETE with If-Match from the snapshot.
    todo.delete_id("item-1").await.unwrap();
    assert!(client.push().await.unwrap().is_success());
    assert_eq!(client.pending_operations().unwrap(), 0);

    // Pull: one page with a row and a tombstone, then an empty page after the cursor.
    let pulled = todo.pull("all", Query::all()).await.unwrap();
    assert_eq!((pulled.upserted, pulled.deleted), (1, 1));
    assert_eq!(pulled.requests, 2);
    assert!(todo.get("item-2").await.unwrap().is_some());

    let sent = requests(&server).await;
    let lines: Vec<String> = sent
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect();
    assert_eq!(
        lines,
        [
            "POST /tables/TodoItem",
            "PATCH /tables/TodoItem/item-1",
            "DELETE /tables/TodoItem/item-1",
            "GET /tables/TodoItem",
            "GET /tables/TodoItem",
        ]
    );
    for request in &sent {
        assert_eq!(header(request, "ZUMO-API-VERSION"), Some("2.0.0"));
    }
    assert_eq!(
        body(&sent[0]),
        json!({"id": "item-1", "text": "buy milk", "complete": false})
    );
    assert_eq!(header(&sent[0], "if-match"), None);
    assert_eq!(
        body(&sent[1]),
        json!({"id": "item-1", "text": "buy oat milk", "complete": false})
    );
    assert_eq!(header(&sent[1], "if-match"), Some("\"MQ==\""));
    assert_eq!(header(&sent[2], "if-match"), Some("\"Mg==\""));
    assert!(sent[2].body.is_empty());
    assert_eq!(
        query(&sent[3]),
        [
            ("$orderby".to_owned(), "updatedAt,id".to_owned()),
            ("$top".to_owned(), "50".to_owned()),
            ("__includeDeleted".to_owned(), "true".to_owned()),
        ]
    );
    assert_eq!(
        query(&sent[4]),
        [
            (
                "$filter".to_owned(),
                format!(
                    "(updatedAt ge datetimeoffset'{T3}') and ((updatedAt gt datetimeoffset'{T3}') or (id gt 'item-3'))"
                )
            ),
            ("$orderby".to_owned(), "updatedAt,id".to_owned()),
            ("$top".to_owned(), "50".to_owned()),
            ("__includeDeleted".to_owned(), "true".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_conflict_reaches_the_engine_with_the_server_item() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(409)
                .set_body_json(server_row("item-1", "theirs", T1, "MQ==", false))
                .insert_header("ETag", "\"MQ==\""),
        )
        .mount(&server)
        .await;
    let client = context(transport(&server, Protocol::V2));
    let todo = client.table::<Value>("TodoItem");
    todo.insert(&json!({"id": "item-1", "text": "mine", "complete": false}))
        .await
        .unwrap();
    let pushed = client.push().await.unwrap();
    assert_eq!(pushed.status, PushStatus::Complete);
    assert_eq!(pushed.errors.len(), 1);
    let error = &pushed.errors[0];
    assert_eq!(error.status, Some(409));
    assert_eq!(error.server_item.as_ref().unwrap()["text"], "theirs");
    assert_eq!(client.pending_operations().unwrap(), 1);
}

#[tokio::test]
async fn an_unreachable_server_cancels_the_push_and_keeps_the_op() {
    let closed = closed_port();
    let transport = HttpTransport::builder(&closed.url)
        .protocol(Protocol::V2)
        .build()
        .unwrap();
    let client = context(transport);
    let todo = client.table::<Value>("TodoItem");
    todo.insert(&json!({"id": "item-1", "text": "offline", "complete": false}))
        .await
        .unwrap();
    let pushed = client.push().await.unwrap();
    assert_eq!(pushed.status, PushStatus::CancelledByNetworkError);
    assert!(pushed.errors.is_empty());
    assert_eq!(client.pending_operations().unwrap(), 1);
}

#[tokio::test]
async fn a_401_cancels_the_push_by_authentication() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let client = context(transport(&server, Protocol::V3));
    let todo = client.table::<Value>("TodoItem");
    todo.insert(&json!({"id": "item-1", "text": "x", "complete": false}))
        .await
        .unwrap();
    let pushed = client.push().await.unwrap();
    assert_eq!(pushed.status, PushStatus::CancelledByAuthenticationError);
    assert_eq!(client.pending_operations().unwrap(), 1);
}
