//! Local writes made while their item's op is being pushed. Unlike the
//! reference client (spec §2.4, scenario 15), a write never waits for the
//! network: it is queued behind the in-flight op and pushed after it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;
use tidesync_core::{Error, OpKind, OpState, PushResult, PushStatus, QueueRefusal};
use tidesync_transport_mock::{CallKind, Fault};
use tokio::task::JoinHandle;

fn spawn_push(f: &Fixture) -> JoinHandle<PushResult> {
    let client = f.client.clone();
    tokio::spawn(async move { client.push().await.unwrap() })
}

#[tokio::test]
async fn edits_during_a_push_do_not_wait_and_are_pushed_after_it() {
    let f = Fixture::new();
    f.todo()
        .insert(&json!({"id": "x", "text": "v1"}))
        .await
        .unwrap();
    let gate = f.server.block_next_write();
    let push = spawn_push(&f);
    gate.reached().await;
    // The insert of x is on the wire; these writes return at once.
    f.todo()
        .update(&json!({"id": "x", "text": "v2"}))
        .await
        .unwrap();
    f.todo()
        .update(&json!({"id": "x", "text": "v3"}))
        .await
        .unwrap();
    let queue = f.queue();
    assert_eq!(queue.len(), 2);
    assert_eq!(
        queue[1],
        (OpKind::Update, OpState::Pending, 2, 2),
        "one follow-up, collapsed"
    );
    gate.release();
    let result = push.await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert_eq!(result.pushed, 2, "the same push sends the follow-up");
    assert_eq!(
        f.write_calls(),
        vec![
            (CallKind::Insert, "x".into()),
            (CallKind::Replace, "x".into())
        ]
    );
    let server = f.server.get(TODO, "x").unwrap();
    assert_eq!(server["text"], "v3");
    let local = f.local(TODO, "x").unwrap();
    assert_eq!(local["text"], "v3");
    assert_eq!(local["version"], server["version"]);
    assert!(f.queue().is_empty());
}

#[tokio::test]
async fn the_insert_response_does_not_overwrite_a_newer_local_edit() {
    let f = Fixture::new();
    f.todo()
        .insert(&json!({"id": "x", "text": "v1"}))
        .await
        .unwrap();
    f.tags().insert(&json!({"id": "later"})).await.unwrap();
    let gate = f.server.block_next_write();
    let push = spawn_push(&f);
    gate.reached().await;
    f.todo()
        .update(&json!({"id": "x", "text": "v2"}))
        .await
        .unwrap();
    // Fail the follow-up so the state between the two ops stays visible.
    f.server.fail_next(1, Fault::Network);
    gate.release();
    let result = push.await.unwrap();
    assert_eq!(result.status, PushStatus::CancelledByNetworkError);
    let local = f.local(TODO, "x").unwrap();
    assert_eq!(
        local["text"], "v2",
        "the local edit survives the insert's response"
    );
    let server = f.server.get(TODO, "x").unwrap();
    assert_eq!(server["text"], "v1");
    assert_eq!(
        local["version"], server["version"],
        "but the server's version is taken"
    );
    let base = f
        .ops()
        .into_iter()
        .find(|op| op.item_id == "x")
        .unwrap()
        .base
        .unwrap();
    assert_eq!(
        base["text"], "v1",
        "the follow-up's base is what the server acknowledged"
    );
    assert!(f.client.push().await.unwrap().is_success());
    assert_eq!(text_of(&f.server.get(TODO, "x").unwrap()), "v2");
}

#[tokio::test]
async fn a_delete_during_an_in_flight_update_deletes_the_new_version() {
    let f = Fixture::new();
    f.seed("x", "s").await;
    f.todo()
        .update(&json!({"id": "x", "text": "u"}))
        .await
        .unwrap();
    let gate = f.server.block_next_write();
    let push = spawn_push(&f);
    gate.reached().await;
    f.todo().delete_id("x").await.unwrap();
    assert!(f.local(TODO, "x").is_none());
    gate.release();
    let result = push.await.unwrap();
    assert!(result.is_success(), "no spurious 412: {result:?}");
    assert_eq!(f.server.get(TODO, "x").unwrap()["deleted"], true);
    assert!(
        f.local(TODO, "x").is_none(),
        "the update's response does not resurrect the row"
    );
}

#[tokio::test]
async fn a_delete_behind_an_in_flight_insert_waits_for_it_when_it_fails() {
    let f = Fixture::new();
    f.server
        .server_insert(TODO, obj(json!({"id": "x", "text": "theirs"})));
    f.todo()
        .insert(&json!({"id": "x", "text": "mine"}))
        .await
        .unwrap();
    let gate = f.server.block_next_write();
    let push = spawn_push(&f);
    gate.reached().await;
    f.todo().delete_id("x").await.unwrap();
    gate.release();
    let result = push.await.unwrap();
    // The insert met an existing item (409); the delete behind it is not sent.
    assert_eq!(result.errors.len(), 1);
    assert_eq!(result.errors[0].status, Some(409));
    assert_eq!(
        f.queue().iter().map(|q| (q.0, q.1)).collect::<Vec<_>>(),
        vec![
            (OpKind::Insert, OpState::Failed),
            (OpKind::Delete, OpState::Pending)
        ]
    );
    assert_eq!(f.write_calls(), vec![(CallKind::Insert, "x".into())]);
    assert_eq!(f.server.get(TODO, "x").unwrap()["deleted"], false);
}

#[tokio::test]
async fn an_insert_or_edit_after_an_in_flight_delete_is_refused() {
    let f = Fixture::new();
    f.seed("x", "s").await;
    f.todo().delete_id("x").await.unwrap();
    let gate = f.server.block_next_write();
    let push = spawn_push(&f);
    gate.reached().await;
    let insert = f.todo().insert(&json!({"id": "x"})).await.unwrap_err();
    let update = f
        .todo()
        .update(&json!({"id": "x", "text": "zombie"}))
        .await
        .unwrap_err();
    for err in [insert, update] {
        assert!(
            matches!(
                err,
                Error::QueueRefused {
                    reason: QueueRefusal::DeleteQueued,
                    ..
                }
            ),
            "{err}"
        );
    }
    gate.release();
    assert!(push.await.unwrap().is_success());
    assert!(f.queue().is_empty());
}

#[tokio::test]
async fn a_resolution_cannot_touch_an_op_that_is_on_the_wire() {
    let f = Fixture::new();
    f.diverge("x", "theirs", "mine").await;
    let error = f.client.push().await.unwrap().errors.remove(0);
    let gate = f.server.block_next_write();
    let push = spawn_push(&f);
    gate.reached().await;
    let err = f.client.cancel_and_discard(&error).unwrap_err();
    assert!(matches!(err, Error::OperationChanged { .. }), "{err}");
    gate.release();
    push.await.unwrap();
}

#[tokio::test]
async fn a_write_made_while_a_push_runs_on_another_item_is_pushed_by_it() {
    let f = Fixture::new();
    f.todo().insert(&json!({"id": "a"})).await.unwrap();
    let gate = f.server.block_next_write();
    let push = spawn_push(&f);
    gate.reached().await;
    f.todo().insert(&json!({"id": "b"})).await.unwrap();
    gate.release();
    let result = push.await.unwrap();
    assert_eq!(result.pushed, 2);
    assert!(f.server.get(TODO, "b").is_some());
}

#[tokio::test]
async fn an_update_that_failed_with_a_delete_queued_behind_it_does_not_stall_the_queue() {
    let f = Fixture::new();
    // The server never had x, so the update will be answered 404.
    f.todo()
        .update(&json!({"id": "x", "text": "u"}))
        .await
        .unwrap();
    let gate = f.server.block_next_write();
    let push = spawn_push(&f);
    gate.reached().await;
    f.todo().delete_id("x").await.unwrap();
    gate.release();
    let result = push.await.unwrap();
    assert_eq!(result.errors.len(), 1, "the update's 404");
    assert_eq!(
        f.queue().len(),
        2,
        "the delete waits behind the failed update"
    );
    // The next push folds them: the delete replaces the update and goes out.
    let result = f.client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert!(f.queue().is_empty());
    assert!(f.client.operation_errors().unwrap().is_empty());
}

#[tokio::test]
async fn an_insert_cut_off_with_an_update_queued_behind_it_is_sent_once_with_the_latest_row() {
    let mut f = Fixture::new();
    f.todo()
        .insert(&json!({"id": "x", "text": "v1"}))
        .await
        .unwrap();
    let gate = f.server.block_next_write();
    f.server.fail_next(1, Fault::Network);
    let push = spawn_push(&f);
    gate.reached().await;
    f.todo()
        .update(&json!({"id": "x", "text": "v2"}))
        .await
        .unwrap();
    gate.release();
    assert_eq!(
        push.await.unwrap().status,
        PushStatus::CancelledByNetworkError
    );
    f.restart();
    f.server.clear_calls();
    assert!(f.client.push().await.unwrap().is_success());
    assert_eq!(f.write_calls(), vec![(CallKind::Insert, "x".into())]);
    assert_eq!(text_of(&f.server.get(TODO, "x").unwrap()), "v2");
}

/// The insert on the wire is applied but its answer is lost, and an edit was made
/// meanwhile: the next push sends the edit without a conflict, because the op kept
/// what its attempt sent (its row, as it was) before the edit changed the row.
#[tokio::test]
async fn an_edit_made_while_an_insert_whose_answer_is_lost_was_on_the_wire_is_sent_cleanly() {
    let f = Fixture::new();
    f.todo()
        .insert(&json!({"id": "x", "text": "v1"}))
        .await
        .unwrap();
    f.server.fail_next(1, Fault::CommitThenLoseResponse);
    let gate = f.server.block_next_write();
    let push = spawn_push(&f);
    gate.reached().await;
    f.todo()
        .update(&json!({"id": "x", "text": "v2"}))
        .await
        .unwrap();
    gate.release();
    let result = push.await.unwrap();
    assert_eq!(result.status, PushStatus::CancelledByNetworkError);
    assert_eq!(text_of(&f.server.get(TODO, "x").unwrap()), "v1");
    let result = f.client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert!(f.client.operation_errors().unwrap().is_empty());
    assert_eq!(text_of(&f.server.get(TODO, "x").unwrap()), "v2");
    assert!(f.queue().is_empty());
}
