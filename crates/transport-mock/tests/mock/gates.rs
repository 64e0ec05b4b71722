//! Gates: a write held in flight between its arrival and its application.

use serde_json::json;
use tidesync_core::Transport;
use tidesync_protocol::Query;

use crate::support::{TABLE, item, read_request, setup};

#[tokio::test]
async fn a_gate_holds_the_next_write_until_released() {
    let (server, client) = setup();
    let gate = server.block_next_write();
    assert!(!gate.is_reached());
    let task = tokio::spawn({
        let client = client.clone();
        async move { client.insert(TABLE, &item(json!({"id": "a"}))).await }
    });
    gate.reached().await;
    assert!(gate.is_reached());

    // Arrived, not applied: reads (not gated) see nothing, and the log waits for the outcome.
    assert_eq!(server.get(TABLE, "a"), None);
    let page = client
        .read(&read_request(Query::all(), false))
        .await
        .unwrap();
    assert!(page.items.is_empty());
    assert_eq!(server.calls().len(), 1);

    gate.release();
    task.await.unwrap().unwrap();
    assert!(server.get(TABLE, "a").is_some());
    let kinds: Vec<_> = server.calls().iter().map(|c| c.kind).collect();
    use tidesync_transport_mock::CallKind::{Insert, Read};
    assert_eq!(kinds, [Insert, Read], "arrival order");
}

#[tokio::test]
async fn gates_hold_successive_writes_one_each() {
    let (server, client) = setup();
    let first = server.block_next_write();
    let second = server.block_next_write();
    let spawn_insert = |id: &'static str| {
        let client = client.clone();
        tokio::spawn(async move { client.insert(TABLE, &item(json!({"id": id}))).await })
    };
    let a = spawn_insert("a");
    first.reached().await;
    let b = spawn_insert("b");
    second.reached().await;
    second.release();
    b.await.unwrap().unwrap();
    assert!(server.get(TABLE, "b").is_some());
    assert_eq!(server.get(TABLE, "a"), None);
    drop(first); // dropping a gate releases it
    a.await.unwrap().unwrap();
    assert!(server.get(TABLE, "a").is_some());

    // No gate left: writes go straight through.
    client.delete(TABLE, "a", None).await.unwrap();
}
