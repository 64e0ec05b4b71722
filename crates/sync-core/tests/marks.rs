//! How a push marks ops attempted and gives an unsent batch its state back: what an op
//! keeps of an earlier attempt when its row changes while it is marked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;
use tidesync_core::{
    CancellationToken, LocalStore, OpState, PushOptions, PushStatus, SyncContext, WriteBatch,
};
use tidesync_transport_mock::{Fault, MockServer};

/// Counts the batches that mark ops attempted.
#[derive(Debug)]
struct MarkWatch {
    marks: tokio::sync::watch::Sender<usize>,
}

impl WriteHook for MarkWatch {
    fn after(&self, batch: &WriteBatch) {
        if batch.marks_attempted() {
            self.marks.send_modify(|n| *n += 1);
        }
    }
}

/// An op whose earlier attempt was applied (its answer lost) is marked again in a batch that
/// is never sent, and edited meanwhile: the edit keeps the row as that attempt, and giving
/// the unsent batch its state back keeps it too, so the next push sends the edit cleanly.
#[tokio::test]
async fn an_unsent_batch_keeps_the_attempt_an_edit_kept_while_it_was_marked() {
    let server = MockServer::new();
    server.add_table(TODO);
    server.add_table(TAGS);
    let (marks, mut marked) = tokio::sync::watch::channel(0usize);
    let store = Arc::new(HookedStore::new(MarkWatch { marks }));
    store.define_table(&todo_def()).unwrap();
    store.define_table(&tag_def()).unwrap();
    let client = SyncContext::builder()
        .store_arc(store.clone())
        .transport(server.transport())
        .batch_size(2)
        .build()
        .unwrap();
    let todo = client.table::<serde_json::Value>(TODO);
    let tags = client.table::<serde_json::Value>(TAGS);
    for id in ["a", "b"] {
        todo.insert(&json!({"id": id, "text": id})).await.unwrap();
    }
    tags.insert(&json!({"id": "x", "name": "v1"}))
        .await
        .unwrap();
    // x alone, as a single call: applied, but its answer is lost. (A batch would have the
    // mock remember x's op id, and it answers a remembered op id whatever the op now holds,
    // where our server applies an op id reused for new content as new.)
    server.fail_next(1, Fault::CommitThenLoseResponse);
    let result = client
        .push_with(PushOptions::new().tables([TAGS]))
        .await
        .unwrap();
    assert_eq!(result.status, PushStatus::CancelledByNetworkError);
    server.set_batch_support(true);
    let before = *marked.borrow();
    // [a, b] held on the wire, [x] marked behind it; x edited; the push cancelled.
    let gate = server.block_next_write();
    let token = CancellationToken::new();
    let push = {
        let client = client.clone();
        let token = token.clone();
        tokio::spawn(async move { client.push_with(PushOptions::new().cancel(token)).await })
    };
    gate.reached().await;
    marked.wait_for(|n| *n >= before + 2).await.unwrap();
    tags.update(&json!({"id": "x", "name": "v2"}))
        .await
        .unwrap();
    token.cancel();
    let result = push.await.unwrap().unwrap();
    assert_eq!(result.status, PushStatus::CancelledByToken);
    gate.release();
    let x = client
        .operations()
        .unwrap()
        .into_iter()
        .find(|op| op.item_id == "x")
        .unwrap();
    assert_eq!(x.state, OpState::Failed, "given back its state");
    let result = client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert!(client.operation_errors().unwrap().is_empty());
    assert_eq!(server.get(TAGS, "x").unwrap()["name"], "v2");
}
