//! Batched push: when the transport offers it, many ops travel in one request,
//! each with its op id so that a retried batch is applied once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;
use tidesync_core::{ClientWins, OpKind, OpState, PushStatus, SyncContext};
use tidesync_transport_mock::{CallKind, Fault, MockServer};

fn batching(server: &MockServer, store: &tidesync_core::MemoryStore, size: usize) -> SyncContext {
    batching_with(
        server,
        store,
        size,
        std::sync::Arc::new(tidesync_core::FailOnConflict),
    )
}

/// [`batching`] with a conflict handler.
fn batching_with(
    server: &MockServer,
    store: &tidesync_core::MemoryStore,
    size: usize,
    handler: std::sync::Arc<dyn tidesync_core::ConflictHandler>,
) -> SyncContext {
    server.set_batch_support(true);
    SyncContext::builder()
        .store(store.clone())
        .transport(server.transport())
        .conflict_handler_arc(handler)
        .batch_size(size)
        .build()
        .unwrap()
}

fn kinds(server: &MockServer) -> Vec<CallKind> {
    server.calls().iter().map(|c| c.kind).collect()
}

#[tokio::test]
async fn many_ops_go_out_in_few_requests() {
    let f = Fixture::new();
    let client = batching(&f.server, &f.store, 500);
    let todo = client.table::<serde_json::Value>(TODO);
    for i in 0..1200 {
        todo.insert(&json!({"id": format!("i{i:04}"), "text": "t"}))
            .await
            .unwrap();
    }
    let result = client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert_eq!(result.pushed, 1200);
    assert_eq!(kinds(&f.server), vec![CallKind::Batch; 3]);
    assert_eq!(f.server.items(TODO).len(), 1200);
    assert_eq!(client.pending_operations().unwrap(), 0);
    // The server's versions came back into the local rows.
    assert_eq!(
        f.local(TODO, "i0700").unwrap()["version"],
        f.server.get(TODO, "i0700").unwrap()["version"]
    );
}

#[tokio::test]
async fn a_conflict_inside_a_batch_goes_to_the_handler_and_the_rest_is_applied() {
    let f = Fixture::build(MockServer::new(), Some(std::sync::Arc::new(ClientWins)));
    f.seed("x", "s").await;
    f.server
        .server_update(TODO, obj(json!({"id": "x", "text": "theirs"})));
    let client = {
        f.server.set_batch_support(true);
        SyncContext::builder()
            .store(f.store.clone())
            .transport(f.server.transport())
            .conflict_handler(ClientWins)
            .build()
            .unwrap()
    };
    let todo = client.table::<serde_json::Value>(TODO);
    todo.insert(&json!({"id": "a"})).await.unwrap();
    todo.update(&json!({"id": "x", "text": "mine"}))
        .await
        .unwrap();
    todo.insert(&json!({"id": "b"})).await.unwrap();
    let result = client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert_eq!(text_of(&f.server.get(TODO, "x").unwrap()), "mine");
    assert!(f.server.get(TODO, "b").is_some());
    // One batch, then the conditioned retry of x as a single call.
    assert_eq!(kinds(&f.server), vec![CallKind::Batch, CallKind::Replace]);
}

#[tokio::test]
async fn a_lost_batch_response_is_retried_and_applied_once() {
    let f = Fixture::new();
    let client = batching(&f.server, &f.store, 500);
    let todo = client.table::<serde_json::Value>(TODO);
    for i in 0..10 {
        todo.insert(&json!({"id": format!("i{i}")})).await.unwrap();
    }
    f.server.fail_next(1, Fault::CommitThenLoseResponse);
    let result = client.push().await.unwrap();
    assert_eq!(result.status, PushStatus::CancelledByNetworkError);
    assert!(
        client
            .operations()
            .unwrap()
            .iter()
            .all(|op| op.state == OpState::Failed)
    );
    let result = client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert!(result.errors.is_empty(), "no 409 for our own inserts");
    assert_eq!(f.server.items(TODO).len(), 10);
}

#[tokio::test]
async fn two_ops_of_one_item_never_share_a_batch() {
    let f = Fixture::new();
    let client = batching(&f.server, &f.store, 500);
    let todo = client.table::<serde_json::Value>(TODO);
    todo.insert(&json!({"id": "x", "text": "v1"}))
        .await
        .unwrap();
    let gate = f.server.block_next_write();
    let push = {
        let client = client.clone();
        tokio::spawn(async move { client.push().await.unwrap() })
    };
    gate.reached().await;
    todo.update(&json!({"id": "x", "text": "v2"}))
        .await
        .unwrap();
    todo.insert(&json!({"id": "y"})).await.unwrap();
    gate.release();
    let result = push.await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert_eq!(kinds(&f.server), vec![CallKind::Batch, CallKind::Batch]);
    assert_eq!(text_of(&f.server.get(TODO, "x").unwrap()), "v2");
    assert!(client.operations().unwrap().is_empty());
}

#[tokio::test]
async fn per_op_errors_in_a_batch_are_recorded_like_single_calls() {
    let f = Fixture::new();
    f.server
        .server_insert(TODO, obj(json!({"id": "dup", "text": "theirs"})));
    let client = batching(&f.server, &f.store, 500);
    let todo = client.table::<serde_json::Value>(TODO);
    todo.insert(&json!({"id": "ok1"})).await.unwrap();
    todo.insert(&json!({"id": "dup", "text": "mine"}))
        .await
        .unwrap();
    todo.insert(&json!({"id": "ok2"})).await.unwrap();
    let result = client.push().await.unwrap();
    assert_eq!(result.status, PushStatus::Complete);
    assert_eq!(result.errors.len(), 1);
    assert_eq!(result.errors[0].status, Some(409));
    let queue: Vec<(OpKind, OpState)> = client
        .operations()
        .unwrap()
        .iter()
        .map(|op| (op.kind, op.state))
        .collect();
    assert_eq!(queue, vec![(OpKind::Insert, OpState::Failed)]);
}

/// A conflict handler that announces each call and answers only when let go.
#[derive(Debug, Default)]
struct HeldHandler {
    called: tokio::sync::Notify,
    go: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl tidesync_core::ConflictHandler for HeldHandler {
    async fn resolve(&self, _conflict: &tidesync_core::Conflict) -> tidesync_core::Resolution {
        self.called.notify_one();
        self.go.notified().await;
        tidesync_core::Resolution::TakeServer
    }
}

#[tokio::test]
async fn the_next_batch_is_sent_while_an_answer_is_being_settled() {
    let handler = std::sync::Arc::new(HeldHandler::default());
    let f = Fixture::build(MockServer::new(), Some(handler.clone()));
    f.seed("c", "s").await;
    f.server
        .server_update(TODO, obj(json!({"id": "c", "text": "theirs"})));
    let client = batching_with(&f.server, &f.store, 2, handler.clone());
    let todo = client.table::<serde_json::Value>(TODO);
    // The first batch: c (conflicts) and a; the second: b and d.
    todo.update(&json!({"id": "c", "text": "mine"}))
        .await
        .unwrap();
    for id in ["a", "b", "d"] {
        todo.insert(&json!({"id": id})).await.unwrap();
    }
    drop(f.server.block_next_write()); // the first batch passes
    let second = f.server.block_next_write();
    let push = {
        let client = client.clone();
        tokio::spawn(async move { client.push().await.unwrap() })
    };
    handler.called.notified().await;
    // The first batch's conflict is being resolved, and the second batch is
    // already at the server.
    tokio::time::timeout(std::time::Duration::from_secs(30), second.reached())
        .await
        .expect("the second batch was not sent while the first was being settled");
    handler.go.notify_one();
    second.release();
    let result = push.await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert_eq!(result.pushed, 4);
    assert_eq!(kinds(&f.server), vec![CallKind::Batch, CallKind::Batch]);
    assert_eq!(text_of(&f.server.get(TODO, "c").unwrap()), "theirs");
    assert_eq!(f.server.items(TODO).len(), 4);
    assert!(client.operations().unwrap().is_empty());
}

#[tokio::test]
async fn a_batch_marked_behind_a_failed_request_is_left_as_it_was() {
    let f = Fixture::new();
    let client = batching(&f.server, &f.store, 2);
    let todo = client.table::<serde_json::Value>(TODO);
    for id in ["a", "b", "c", "d"] {
        todo.insert(&json!({"id": id})).await.unwrap();
    }
    let before = client.operations().unwrap();
    // The first batch is held at the server until the second is marked
    // attempted, then fails as a whole.
    f.server.fail_next(1, Fault::Network);
    let first = f.server.block_next_write();
    let push = {
        let client = client.clone();
        tokio::spawn(async move { client.push().await.unwrap() })
    };
    first.reached().await;
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while !client
            .operations()
            .unwrap()
            .iter()
            .all(|op| op.state == OpState::Attempted)
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the second batch was not marked while the first was on the wire");
    first.release();
    let result = push.await.unwrap();
    assert_eq!(result.status, PushStatus::CancelledByNetworkError);
    let after = client.operations().unwrap();
    let states: Vec<(String, OpState)> = after
        .iter()
        .map(|op| (op.item_id.clone(), op.state))
        .collect();
    assert_eq!(
        states,
        vec![
            ("a".to_owned(), OpState::Failed),
            ("b".to_owned(), OpState::Failed),
            ("c".to_owned(), OpState::Pending),
            ("d".to_owned(), OpState::Pending),
        ]
    );
    // The unsent ops are exactly as they were queued.
    assert_eq!(after[2..], before[2..]);
    assert_eq!(kinds(&f.server), vec![CallKind::Batch]);
    let result = client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert_eq!(f.server.items(TODO).len(), 4);
}
