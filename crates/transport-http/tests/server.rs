//! End to end: the engine over `HttpTransport` against `tidesync-server` started in-process
//! on a loopback port (SQLite), in v2, v3 and Auto mode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tidesync_core::{
    ColumnType, LocalStore, MemoryStore, PushStatus, Query, ServerWins, SyncContext, TableDef,
};
use tidesync_server::{RunningServer, Server};
use tidesync_transport_http::{HttpTransport, Protocol, RetryPolicy};

async fn start(db: &Path, bind: &str) -> RunningServer {
    Server::builder()
        .sqlite(db)
        .table("TodoItem")
        .bind(bind)
        .start()
        .await
        .unwrap()
}

fn transport(url: &str, protocol: Protocol) -> HttpTransport {
    HttpTransport::builder(url)
        .protocol(protocol)
        .timeout(Duration::from_secs(10))
        .retry(RetryPolicy {
            max_retries: 1,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        })
        .build()
        .unwrap()
}

fn client(url: &str, protocol: Protocol) -> SyncContext {
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
        .transport(transport(url, protocol))
        .page_size(2)
        .build()
        .unwrap()
}

fn texts(client: &SyncContext) -> Vec<String> {
    let mut texts: Vec<String> = client
        .query("TodoItem", &Query::all())
        .unwrap()
        .items
        .iter()
        .map(|item| item["text"].as_str().unwrap().to_owned())
        .collect();
    texts.sort();
    texts
}

async fn insert_update_delete_pull(protocol: Protocol) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("todo.db"), "127.0.0.1:0").await;
    let url = server.url();
    let alice = client(&url, protocol);
    let bob = client(&url, protocol);
    let todo = alice.table::<Value>("TodoItem");

    for (id, text) in [("a", "buy milk"), ("b", "walk dog"), ("c", "read")] {
        todo.insert(&json!({"id": id, "text": text, "complete": false}))
            .await
            .unwrap();
    }
    let pushed = alice.push().await.unwrap();
    assert!(pushed.is_success(), "{pushed:?}");
    assert_eq!(pushed.pushed, 3);
    let a = todo.get("a").await.unwrap().unwrap();
    let first_version = a["version"].as_str().unwrap().to_owned();
    assert!(!first_version.is_empty());
    assert!(a["updatedAt"].is_string());

    todo.update(&json!({"id": "a", "text": "buy oat milk", "complete": true}))
        .await
        .unwrap();
    assert!(alice.push().await.unwrap().is_success());
    let a = todo.get("a").await.unwrap().unwrap();
    assert_ne!(a["version"], first_version.as_str());

    // Bob pulls all three (two pages of two), with the update.
    let pulled = bob
        .table::<Value>("TodoItem")
        .pull("all", Query::all())
        .await
        .unwrap();
    assert_eq!(pulled.upserted, 3, "{pulled:?}");
    // v3 (explicit or found by Auto) ends on the short second page; v2 reads an empty third.
    let expected_requests = if protocol == Protocol::V2 { 3 } else { 2 };
    assert_eq!(pulled.requests, expected_requests);
    assert_eq!(texts(&bob), ["buy oat milk", "read", "walk dog"]);

    todo.delete_id("b").await.unwrap();
    assert!(alice.push().await.unwrap().is_success());

    // Bob's next pull brings only the tombstone.
    let pulled = bob
        .table::<Value>("TodoItem")
        .pull("all", Query::all())
        .await
        .unwrap();
    assert_eq!((pulled.upserted, pulled.deleted), (0, 1), "{pulled:?}");
    assert_eq!(texts(&bob), ["buy oat milk", "read"]);

    // Nothing changed: the pull is cheap and changes nothing.
    let pulled = bob
        .table::<Value>("TodoItem")
        .pull("all", Query::all())
        .await
        .unwrap();
    assert_eq!(pulled.received(), 0);
    assert_eq!(pulled.requests, 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn insert_update_delete_pull_v2() {
    insert_update_delete_pull(Protocol::V2).await;
}

#[tokio::test]
async fn insert_update_delete_pull_v3() {
    insert_update_delete_pull(Protocol::V3).await;
}

#[tokio::test]
async fn insert_update_delete_pull_auto() {
    insert_update_delete_pull(Protocol::Auto).await;
}

async fn conflicting_updates(protocol: Protocol) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("todo.db"), "127.0.0.1:0").await;
    let url = server.url();
    let alice = client(&url, protocol);
    let bob = client(&url, protocol);
    alice
        .table::<Value>("TodoItem")
        .insert(&json!({"id": "x", "text": "first", "complete": false}))
        .await
        .unwrap();
    assert!(alice.push().await.unwrap().is_success());
    bob.table::<Value>("TodoItem")
        .pull("all", Query::all())
        .await
        .unwrap();

    alice
        .table::<Value>("TodoItem")
        .update(&json!({"id": "x", "text": "alice", "complete": false}))
        .await
        .unwrap();
    assert!(alice.push().await.unwrap().is_success());

    // Bob's update carries the old version: 412 with the server's (alice's) item.
    bob.table::<Value>("TodoItem")
        .update(&json!({"id": "x", "text": "bob", "complete": true}))
        .await
        .unwrap();
    let pushed = bob.push().await.unwrap();
    assert_eq!(pushed.status, PushStatus::Complete);
    assert_eq!(pushed.errors.len(), 1, "{pushed:?}");
    let error = &pushed.errors[0];
    assert_eq!(error.status, Some(412));
    assert_eq!(error.server_item.as_ref().unwrap()["text"], "alice");
    assert_eq!(bob.pending_operations().unwrap(), 1);

    // A duplicate insert is a 409 carrying the stored item.
    bob.table::<Value>("TodoItem")
        .insert(&json!({"id": "y-dup", "text": "bob's y", "complete": false}))
        .await
        .unwrap();
    alice
        .table::<Value>("TodoItem")
        .insert(&json!({"id": "y-dup", "text": "alice's y", "complete": false}))
        .await
        .unwrap();
    assert!(alice.push().await.unwrap().is_success());
    let pushed = bob.push().await.unwrap();
    let dup = pushed.errors.iter().find(|e| e.item_id == "y-dup").unwrap();
    assert_eq!(dup.status, Some(409));
    assert_eq!(dup.server_item.as_ref().unwrap()["text"], "alice's y");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn conflicting_updates_v2() {
    conflicting_updates(Protocol::V2).await;
}

#[tokio::test]
async fn conflicting_updates_v3() {
    conflicting_updates(Protocol::V3).await;
}

#[tokio::test]
async fn server_wins_resolves_a_conflict_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("todo.db"), "127.0.0.1:0").await;
    let url = server.url();
    let alice = client(&url, Protocol::Auto);
    let store = MemoryStore::new();
    store
        .define_table(&TableDef::new("TodoItem").column("text", ColumnType::String))
        .unwrap();
    let bob = SyncContext::builder()
        .store(store)
        .transport(transport(&url, Protocol::Auto))
        .conflict_handler(ServerWins)
        .build()
        .unwrap();
    alice
        .table::<Value>("TodoItem")
        .insert(&json!({"id": "x", "text": "first"}))
        .await
        .unwrap();
    assert!(alice.push().await.unwrap().is_success());
    bob.table::<Value>("TodoItem")
        .pull("all", Query::all())
        .await
        .unwrap();
    alice
        .table::<Value>("TodoItem")
        .update(&json!({"id": "x", "text": "alice"}))
        .await
        .unwrap();
    assert!(alice.push().await.unwrap().is_success());
    bob.table::<Value>("TodoItem")
        .update(&json!({"id": "x", "text": "bob"}))
        .await
        .unwrap();
    let pushed = bob.push().await.unwrap();
    assert!(pushed.is_success(), "{pushed:?}");
    assert_eq!(bob.get("TodoItem", "x").unwrap().unwrap()["text"], "alice");
    server.shutdown().await.unwrap();
}

async fn implicit_push(protocol: Protocol) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("todo.db"), "127.0.0.1:0").await;
    let alice = client(&server.url(), protocol);
    let todo = alice.table::<Value>("TodoItem");
    todo.insert(&json!({"id": "p", "text": "pending", "complete": false}))
        .await
        .unwrap();
    let pulled = todo.pull("all", Query::all()).await.unwrap();
    assert!(pulled.push.as_ref().unwrap().is_success(), "{pulled:?}");
    assert_eq!(alice.pending_operations().unwrap(), 0);
    // The pulled copy carries the server's bookkeeping.
    let p = todo.get("p").await.unwrap().unwrap();
    assert!(p["version"].is_string());
    assert!(p["createdAt"].is_string());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn implicit_push_v2() {
    implicit_push(Protocol::V2).await;
}

#[tokio::test]
async fn implicit_push_v3() {
    implicit_push(Protocol::V3).await;
}

/// The server stops mid-test: the push is cancelled by the network and keeps every op;
/// once the server is back (same database, same address), the same push completes.
async fn offline_then_online(protocol: Protocol) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("todo.db");
    let server = start(&db, "127.0.0.1:0").await;
    let addr: SocketAddr = server.addr();
    let url = server.url();
    let alice = client(&url, protocol);
    let todo = alice.table::<Value>("TodoItem");
    todo.insert(&json!({"id": "1", "text": "online", "complete": false}))
        .await
        .unwrap();
    assert!(alice.push().await.unwrap().is_success());

    server.shutdown().await.unwrap();

    todo.insert(&json!({"id": "2", "text": "offline one", "complete": false}))
        .await
        .unwrap();
    todo.update(&json!({"id": "1", "text": "online, edited offline", "complete": true}))
        .await
        .unwrap();
    todo.insert(&json!({"id": "3", "text": "offline two", "complete": false}))
        .await
        .unwrap();
    let pushed = alice.push().await.unwrap();
    assert_eq!(
        pushed.status,
        PushStatus::CancelledByNetworkError,
        "{pushed:?}"
    );
    assert!(pushed.errors.is_empty());
    assert_eq!(alice.pending_operations().unwrap(), 3, "nothing lost");
    assert!(alice.operation_errors().unwrap().is_empty());

    // A pull while offline fails too, and its implicit push loses nothing.
    assert!(todo.pull("all", Query::all()).await.is_err());
    assert_eq!(alice.pending_operations().unwrap(), 3);

    let server = start(&db, &addr.to_string()).await;
    let pushed = alice.push().await.unwrap();
    assert!(pushed.is_success(), "{pushed:?}");
    assert_eq!(pushed.pushed, 3);
    assert_eq!(alice.pending_operations().unwrap(), 0);

    // Another client sees all of it.
    let bob = client(&server.url(), protocol);
    bob.table::<Value>("TodoItem")
        .pull("all", Query::all())
        .await
        .unwrap();
    assert_eq!(
        texts(&bob),
        ["offline one", "offline two", "online, edited offline"]
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn offline_then_online_v2() {
    offline_then_online(Protocol::V2).await;
}

#[tokio::test]
async fn offline_then_online_v3() {
    offline_then_online(Protocol::V3).await;
}

#[tokio::test]
async fn offline_then_online_auto() {
    offline_then_online(Protocol::Auto).await;
}

#[tokio::test]
async fn auto_finds_v3_and_the_server_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("todo.db"), "127.0.0.1:0").await;
    let caps = transport(&server.url(), Protocol::Auto)
        .capabilities()
        .await
        .unwrap();
    assert!(caps.tidesync);
    assert_eq!(caps.version, tidesync_protocol::ApiVersion::V3);
    assert!(caps.has_extension("capabilities"));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_api_key_server_accepts_the_default_header() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .sqlite(dir.path().join("todo.db"))
        .table("TodoItem")
        .api_key("k-123")
        .bind("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let keyed = HttpTransport::builder(server.url())
        .auth(tidesync_transport_http::ApiKey::new("k-123"))
        .build()
        .unwrap();
    let store = MemoryStore::new();
    store
        .define_table(&TableDef::new("TodoItem").column("text", ColumnType::String))
        .unwrap();
    let alice = SyncContext::builder()
        .store(store)
        .transport(keyed)
        .build()
        .unwrap();
    alice
        .table::<Value>("TodoItem")
        .insert(&json!({"id": "k", "text": "with key"}))
        .await
        .unwrap();
    assert!(alice.push().await.unwrap().is_success());

    let keyless = client(&server.url(), Protocol::V3);
    keyless
        .table::<Value>("TodoItem")
        .insert(&json!({"id": "n", "text": "no key", "complete": false}))
        .await
        .unwrap();
    let pushed = keyless.push().await.unwrap();
    assert_eq!(pushed.status, PushStatus::CancelledByAuthenticationError);
    server.shutdown().await.unwrap();
}

/// A client whose local table defines fewer columns than the server has updates a
/// row: the server keeps the other columns (a v3 update is a full `PUT`, so the
/// client sends back what the server last gave it), on per-op v2 and v3 and on the
/// batch extension (Auto). Alice keeps her rows in a SQLite file.
async fn update_keeps_columns_the_client_does_not_define(protocol: Protocol) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("todo.db"), "127.0.0.1:0").await;
    let url = server.url();
    let store = tidesync_store_sqlite::SqliteStore::open(dir.path().join("alice.db")).unwrap();
    store
        .define_table(
            &TableDef::new("TodoItem")
                .column("text", ColumnType::String)
                .column("complete", ColumnType::Bool),
        )
        .unwrap();
    let alice = SyncContext::builder()
        .store(store)
        .transport(transport(&url, protocol))
        .build()
        .unwrap();
    let bob_store = MemoryStore::new();
    bob_store
        .define_table(
            &TableDef::new("TodoItem")
                .column("text", ColumnType::String)
                .column("complete", ColumnType::Bool)
                .column("priority", ColumnType::Integer),
        )
        .unwrap();
    let bob = SyncContext::builder()
        .store(bob_store)
        .transport(transport(&url, protocol))
        .build()
        .unwrap();
    let bob_todo = bob.table::<Value>("TodoItem");
    bob_todo
        .insert(&json!({"id": "a", "text": "buy milk", "complete": false, "priority": 5}))
        .await
        .unwrap();
    assert!(bob.push().await.unwrap().is_success());

    let todo = alice.table::<Value>("TodoItem");
    todo.pull("all", Query::all()).await.unwrap();
    let mut item = todo.get("a").await.unwrap().unwrap();
    assert!(item.get("priority").is_none(), "{item}");
    item["complete"] = json!(true);
    todo.update(&item).await.unwrap();
    let pushed = alice.push().await.unwrap();
    assert!(pushed.is_success(), "{pushed:?}");

    bob_todo.pull("all", Query::all()).await.unwrap();
    let seen = bob_todo.get("a").await.unwrap().unwrap();
    assert_eq!(seen["complete"], json!(true), "{protocol:?}");
    assert_eq!(seen["priority"], json!(5), "{protocol:?}: {seen}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_update_keeps_columns_the_client_does_not_define_v2() {
    update_keeps_columns_the_client_does_not_define(Protocol::V2).await;
}

#[tokio::test]
async fn an_update_keeps_columns_the_client_does_not_define_v3() {
    update_keeps_columns_the_client_does_not_define(Protocol::V3).await;
}

#[tokio::test]
async fn an_update_keeps_columns_the_client_does_not_define_auto() {
    update_keeps_columns_the_client_does_not_define(Protocol::Auto).await;
}
