//! Push through the public API: order, request shapes, every push status,
//! per-item errors and their resolutions (spec scenarios 17–34).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use serde_json::json;
use tidesync_core::{
    CancellationToken, Error, FnHandler, Item, LocalStore, MemoryStore, OpKind, OpState,
    OperationError, PushOptions, PushStatus, Resolution, StoreError, SyncContext, Write,
    WriteBatch,
};
use tidesync_transport_mock::{CallKind, Fault, MockServer};

#[tokio::test]
async fn ops_go_out_in_sequence_across_tables_and_a_table_scope_sends_only_its_own() {
    let f = Fixture::new();
    f.todo().insert(&json!({"id": "t1"})).await.unwrap();
    f.tags().insert(&json!({"id": "g1"})).await.unwrap();
    f.todo().insert(&json!({"id": "t2"})).await.unwrap();
    let only_tags = f
        .client
        .push_with(PushOptions::new().tables([TAGS]))
        .await
        .unwrap();
    assert!(only_tags.is_success());
    assert_eq!(f.write_calls(), vec![(CallKind::Insert, "g1".into())]);
    f.server.clear_calls();
    f.tags().insert(&json!({"id": "g2"})).await.unwrap();
    assert!(f.client.push().await.unwrap().is_success());
    assert_eq!(
        f.write_calls(),
        vec![
            (CallKind::Insert, "t1".into()),
            (CallKind::Insert, "t2".into()),
            (CallKind::Insert, "g2".into())
        ]
    );
}

#[tokio::test]
async fn a_successful_update_stores_the_servers_version_and_updated_at() {
    let f = Fixture::new();
    let seeded = f.seed("x", "s").await;
    f.todo()
        .update(&json!({"id": "x", "text": "u"}))
        .await
        .unwrap();
    assert!(f.client.push().await.unwrap().is_success());
    let server = f.server.get(TODO, "x").unwrap();
    let local = f.local(TODO, "x").unwrap();
    assert_ne!(server["version"], seeded["version"]);
    assert_eq!(local["version"], server["version"]);
    assert_eq!(local["updatedAt"], server["updatedAt"]);
    assert_eq!(local["text"], "u");
}

#[tokio::test]
async fn an_update_sends_if_match_and_no_system_properties() {
    let f = Fixture::new();
    let seeded = f.seed("x", "s").await;
    f.todo()
        .update(&json!({"id": "x", "text": "u"}))
        .await
        .unwrap();
    f.client.push().await.unwrap();
    let call = &f.server.calls()[0];
    assert_eq!(call.kind, CallKind::Replace);
    assert_eq!(call.if_match.as_deref(), seeded["version"].as_str());
    let body = call.body.clone().unwrap();
    for system in ["version", "createdAt", "updatedAt", "deleted"] {
        assert!(!body.contains_key(system), "update body carries {system}");
    }
    assert_eq!(body["id"], "x");
}

#[tokio::test]
async fn deleting_what_the_server_no_longer_has_completes() {
    let f = Fixture::new();
    f.seed("x", "s").await;
    f.server.server_delete(TODO, "x");
    f.todo().delete(&json!({"id": "x"})).await.unwrap();
    let result = f.client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert!(f.queue().is_empty());
}

#[tokio::test]
async fn complete_with_errors_keeps_the_failed_op_and_sends_the_rest() {
    let f = Fixture::new();
    f.diverge("x", "theirs", "mine").await;
    f.todo()
        .insert(&json!({"id": "y", "text": "new"}))
        .await
        .unwrap();
    let result = f.client.push().await.unwrap();
    assert_eq!(result.status, PushStatus::Complete);
    assert!(!result.is_success());
    assert_eq!(result.errors.len(), 1);
    let error = &result.errors[0];
    assert_eq!(error.status, Some(412));
    assert!(error.is_conflict());
    assert_eq!(error.server_item.as_ref().unwrap()["text"], "theirs");
    assert_eq!(error.item.as_ref().unwrap()["text"], "mine");
    assert_eq!(f.queue(), vec![(OpKind::Update, OpState::Failed, 1, 1)]);
    assert!(f.server.get(TODO, "y").is_some());
    assert_eq!(f.client.operation_errors().unwrap(), result.errors);
}

#[tokio::test]
async fn a_network_failure_stops_the_push_and_loses_nothing() {
    let f = Fixture::new();
    f.todo().insert(&json!({"id": "a"})).await.unwrap();
    f.todo().insert(&json!({"id": "b"})).await.unwrap();
    f.server.fail_next(1, Fault::Network);
    let result = f.client.push().await.unwrap();
    assert_eq!(result.status, PushStatus::CancelledByNetworkError);
    assert_eq!(result.status.code(), 1);
    assert!(result.errors.is_empty());
    assert!(f.client.operation_errors().unwrap().is_empty());
    assert_eq!(f.write_calls().len(), 1, "b was never sent");
    assert_eq!(
        f.queue(),
        vec![
            (OpKind::Insert, OpState::Failed, 1, 1),
            (OpKind::Insert, OpState::Pending, 2, 1)
        ]
    );
    // Back online, the same push completes with no new local write.
    let result = f.client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert_eq!(f.server.items(TODO).len(), 2);
}

#[tokio::test]
async fn offline_push_is_cancelled_by_network_error_until_back_online() {
    let f = Fixture::new();
    f.todo().insert(&json!({"id": "a"})).await.unwrap();
    f.server.set_offline(true);
    for _ in 0..3 {
        let result = f.client.push().await.unwrap();
        assert_eq!(result.status, PushStatus::CancelledByNetworkError);
        assert!(Error::PushFailed(Box::new(result)).is_retryable());
    }
    f.server.set_offline(false);
    assert!(f.client.push().await.unwrap().is_success());
    assert_eq!(f.client.pending_operations().unwrap(), 0);
}

#[tokio::test]
async fn a_401_stops_the_push_with_authentication_error() {
    let f = Fixture::new();
    f.todo().insert(&json!({"id": "a"})).await.unwrap();
    f.todo().insert(&json!({"id": "b"})).await.unwrap();
    f.server.fail_next(1, Fault::Auth);
    let result = f.client.push().await.unwrap();
    assert_eq!(result.status, PushStatus::CancelledByAuthenticationError);
    assert_eq!(result.status.code(), 2);
    assert!(result.errors.is_empty());
    assert_eq!(f.write_calls().len(), 1);
    assert_eq!(f.client.pending_operations().unwrap(), 2);
}

#[tokio::test]
async fn a_handler_can_abort_the_push() {
    let f = Fixture::with_handler(FnHandler::sync(|_| Resolution::AbortPush));
    f.seed("b", "s").await;
    f.server
        .server_update(TODO, obj(json!({"id": "b", "text": "theirs"})));
    f.todo().insert(&json!({"id": "a"})).await.unwrap();
    f.todo()
        .update(&json!({"id": "b", "text": "mine"}))
        .await
        .unwrap();
    f.todo().insert(&json!({"id": "c"})).await.unwrap();
    let result = f.client.push().await.unwrap();
    assert_eq!(result.status, PushStatus::CancelledByOperation);
    assert_eq!(result.status.code(), 5);
    let queued: Vec<String> = f.ops().into_iter().map(|op| op.item_id).collect();
    assert_eq!(queued, vec!["b", "c"]);
}

/// Fails (or panics) a write when a push marks an op attempted.
#[derive(Debug)]
struct FailOnMark {
    fail: AtomicBool,
    panic: bool,
}

impl WriteHook for FailOnMark {
    fn before(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.marks_attempted() && self.fail.load(Ordering::SeqCst) {
            if self.panic {
                panic!("injected store panic");
            }
            return Err(StoreError::Busy("injected".into()));
        }
        Ok(())
    }
}

type FailingStore = HookedStore<FailOnMark>;

fn failing_client(panic: bool) -> (SyncContext, Arc<FailingStore>, MockServer) {
    let server = MockServer::new();
    server.add_table(TODO);
    let store = Arc::new(HookedStore::new(FailOnMark {
        fail: AtomicBool::new(false),
        panic,
    }));
    store.define_table(&todo_def()).unwrap();
    let client = SyncContext::builder()
        .store_arc(store.clone())
        .transport(server.transport())
        .build()
        .unwrap();
    (client, store, server)
}

#[tokio::test]
async fn a_store_failure_stops_the_push_with_sync_store_error() {
    let (client, store, server) = failing_client(false);
    client
        .table::<serde_json::Value>(TODO)
        .insert(&json!({"id": "a"}))
        .await
        .unwrap();
    store.hook.fail.store(true, Ordering::SeqCst);
    let result = client.push().await.unwrap();
    assert_eq!(result.status, PushStatus::CancelledBySyncStoreError);
    assert_eq!(result.status.code(), 3);
    assert!(result.other_error.unwrap().contains("injected"));
    assert!(server.calls().is_empty());
    store.hook.fail.store(false, Ordering::SeqCst);
    assert!(client.push().await.unwrap().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_the_push_is_an_internal_error_not_a_crash() {
    let (client, store, _server) = failing_client(true);
    client
        .table::<serde_json::Value>(TODO)
        .insert(&json!({"id": "a"}))
        .await
        .unwrap();
    store.hook.fail.store(true, Ordering::SeqCst);
    let result = client.push().await.unwrap();
    assert_eq!(result.status, PushStatus::InternalError);
    assert_eq!(result.status.code(), 2_147_483_647);
    // The engine is still usable and nothing was lost.
    store.hook.fail.store(false, Ordering::SeqCst);
    client
        .table::<serde_json::Value>(TODO)
        .insert(&json!({"id": "b"}))
        .await
        .unwrap();
    assert!(client.push().await.unwrap().is_success());
    assert_eq!(client.pending_operations().unwrap(), 0);
}

#[tokio::test]
async fn a_cancelled_token_stops_the_push_and_keeps_the_op() {
    let f = Fixture::new();
    f.todo().insert(&json!({"id": "a"})).await.unwrap();
    f.todo().insert(&json!({"id": "b"})).await.unwrap();
    let gate = f.server.block_next_write();
    let token = CancellationToken::new();
    let push = {
        let client = f.client.clone();
        let token = token.clone();
        tokio::spawn(async move { client.push_with(PushOptions::new().cancel(token)).await })
    };
    gate.reached().await;
    token.cancel();
    let result = push.await.unwrap().unwrap();
    assert_eq!(result.status, PushStatus::CancelledByToken);
    assert_eq!(result.status.code(), 4);
    assert_eq!(
        f.client.pending_operations().unwrap(),
        2,
        "a stays queued, b never went"
    );
    gate.release();
    // An already cancelled token sends nothing at all.
    f.server.clear_calls();
    let cancelled = CancellationToken::new();
    cancelled.cancel();
    let result = f
        .client
        .push_with(PushOptions::new().cancel(cancelled))
        .await
        .unwrap();
    assert_eq!(result.status, PushStatus::CancelledByToken);
    assert!(f.server.calls().is_empty());
}

#[tokio::test]
async fn a_queued_op_whose_row_vanished_is_reported_and_kept() {
    let f = Fixture::new();
    f.seed("x", "s").await;
    f.todo()
        .update(&json!({"id": "x", "text": "u"}))
        .await
        .unwrap();
    // The row disappears behind the queue's back.
    f.store
        .write(&WriteBatch {
            writes: vec![Write::DeleteItem {
                table: TODO.into(),
                id: "x".into(),
            }],
        })
        .unwrap();
    let result = f.client.push().await.unwrap();
    assert_eq!(result.status, PushStatus::Complete);
    assert_eq!(result.errors.len(), 1);
    assert_eq!(result.errors[0].status, None);
    assert_eq!(
        result.errors[0].item.as_ref().unwrap(),
        &obj(json!({"id": "x"}))
    );
    assert!(f.server.calls().is_empty());
    assert_eq!(f.client.pending_operations().unwrap(), 1);
}

#[tokio::test]
async fn an_empty_queue_pushes_nothing_and_completes() {
    let f = Fixture::new();
    let result = f.client.push().await.unwrap();
    assert_eq!(result.status, PushStatus::Complete);
    assert!(result.is_success());
    assert_eq!(result.pushed, 0);
    assert!(f.server.calls().is_empty());
}

#[tokio::test]
async fn a_server_error_is_collected_and_later_ops_of_the_same_item_wait() {
    let f = Fixture::new();
    f.todo()
        .insert(&json!({"id": "a", "text": "1"}))
        .await
        .unwrap();
    f.todo().insert(&json!({"id": "b"})).await.unwrap();
    f.server.fail_next(1, Fault::Status(503));
    let result = f.client.push().await.unwrap();
    assert_eq!(result.status, PushStatus::Complete);
    assert_eq!(result.errors.len(), 1);
    assert_eq!(result.errors[0].status, Some(503));
    assert!(
        f.server.get(TODO, "b").is_some(),
        "the push went on past the error"
    );
    // The next push retries the failed op with no new local write.
    let result = f.client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert!(f.client.operation_errors().unwrap().is_empty());
    assert_eq!(text_of(&f.server.get(TODO, "a").unwrap()), "1");
}

async fn conflicted() -> (Fixture, OperationError) {
    let f = Fixture::new();
    f.diverge("x", "theirs", "mine").await;
    let result = f.client.push().await.unwrap();
    let error = result.errors.into_iter().next().unwrap();
    (f, error)
}

#[tokio::test]
async fn cancel_and_update_drops_the_op_and_stores_the_item() {
    let (f, error) = conflicted().await;
    f.client
        .cancel_and_update(&error, error.server_item.clone().unwrap())
        .unwrap();
    assert!(f.queue().is_empty());
    assert!(f.client.operation_errors().unwrap().is_empty());
    let local = f.local(TODO, "x").unwrap();
    assert_eq!(local["text"], "theirs");
    assert_eq!(
        local["version"],
        f.server.get(TODO, "x").unwrap()["version"]
    );
}

#[tokio::test]
async fn cancel_and_discard_drops_the_op_and_the_row() {
    let (f, error) = conflicted().await;
    f.client.cancel_and_discard(&error).unwrap();
    assert!(f.queue().is_empty());
    assert!(f.client.operation_errors().unwrap().is_empty());
    assert!(f.local(TODO, "x").is_none());
}

#[tokio::test]
async fn update_and_retry_with_the_server_version_succeeds_next_push() {
    let (f, error) = conflicted().await;
    let mut item = error.item.clone().unwrap();
    item.insert(
        "version".into(),
        error.server_item.as_ref().unwrap()["version"].clone(),
    );
    f.client.update_and_retry(&error, item).unwrap();
    assert_eq!(f.queue(), vec![(OpKind::Update, OpState::Pending, 1, 2)]);
    assert!(f.client.operation_errors().unwrap().is_empty());
    f.server.clear_calls();
    let result = f.client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert_eq!(
        f.server.calls()[0].if_match,
        error.server_item.unwrap()["version"]
            .as_str()
            .map(String::from)
    );
    assert_eq!(text_of(&f.server.get(TODO, "x").unwrap()), "mine");
}

#[tokio::test]
async fn update_and_retry_on_a_delete_replaces_its_snapshot() {
    let f = Fixture::new();
    f.seed("x", "s").await;
    let theirs = f
        .server
        .server_update(TODO, obj(json!({"id": "x", "text": "theirs"})));
    f.todo().delete_id("x").await.unwrap();
    let error = f.client.push().await.unwrap().errors.remove(0);
    assert_eq!(error.kind, OpKind::Delete);
    f.client
        .update_and_retry(
            &error,
            obj(json!({"id": "x", "version": theirs["version"]})),
        )
        .unwrap();
    let op = f.ops().remove(0);
    assert_eq!(op.item.unwrap()["version"], theirs["version"]);
    assert!(f.local(TODO, "x").is_none(), "the local store is untouched");
    assert!(f.client.push().await.unwrap().is_success());
    assert_eq!(f.server.get(TODO, "x").unwrap()["deleted"], true);
}

#[tokio::test]
async fn resolving_with_a_stale_error_is_refused() {
    let (f, error) = conflicted().await;
    // A later local edit collapses into the failed op and drops its error.
    f.todo()
        .update(&json!({"id": "x", "text": "again"}))
        .await
        .unwrap();
    assert!(f.client.operation_errors().unwrap().is_empty());
    let err = f.client.cancel_and_discard(&error).unwrap_err();
    assert!(matches!(err, Error::OperationChanged { .. }), "{err}");
    assert!(f.local(TODO, "x").is_some());
}

/// The same writes and push with and without 300 ms on every call (on the paused clock the
/// mock's clock and ids are the same in both runs): the same rows on both sides.
#[tokio::test(start_paused = true)]
async fn latency_does_not_change_the_outcome() {
    async fn run(latency: Duration) -> (Vec<Item>, Option<Item>, Option<Item>, Duration) {
        let f = Fixture::new();
        f.server.set_latency(latency);
        f.todo()
            .insert(&json!({"id": "a", "text": "one"}))
            .await
            .unwrap();
        f.todo().insert(&json!({"id": "b"})).await.unwrap();
        f.todo()
            .update(&json!({"id": "a", "text": "two"}))
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        assert!(f.client.push().await.unwrap().is_success());
        let took = started.elapsed();
        assert!(f.queue().is_empty());
        (
            f.server.items(TODO),
            f.local(TODO, "a"),
            f.local(TODO, "b"),
            took,
        )
    }
    let (server, a, b, quick) = run(Duration::ZERO).await;
    let (slow_server, slow_a, slow_b, slow) = run(Duration::from_millis(300)).await;
    assert!(
        slow >= Duration::from_millis(600) && quick < slow,
        "{quick:?} vs {slow:?}"
    );
    assert_eq!(slow_server, server);
    assert_eq!((slow_a, slow_b), (a, b));
}

#[tokio::test]
async fn a_lost_acknowledgement_is_retried_without_a_duplicate_or_a_conflict() {
    let f = Fixture::new();
    f.seed("u", "s").await;
    f.seed("d", "s").await;
    f.todo()
        .insert(&json!({"id": "i", "text": "new"}))
        .await
        .unwrap();
    f.todo()
        .update(&json!({"id": "u", "text": "changed"}))
        .await
        .unwrap();
    f.todo().delete_id("d").await.unwrap();
    for _ in 0..3 {
        // Each op reaches the server, but its answer is lost on the way back.
        f.server.fail_next(1, Fault::CommitThenLoseResponse);
        let result = f.client.push().await.unwrap();
        assert_eq!(result.status, PushStatus::CancelledByNetworkError);
    }
    let result = f.client.push().await.unwrap();
    assert!(result.is_success(), "no spurious conflict: {result:?}");
    assert!(f.client.operation_errors().unwrap().is_empty());
    assert_eq!(f.client.pending_operations().unwrap(), 0);
    assert_eq!(text_of(&f.server.get(TODO, "i").unwrap()), "new");
    assert_eq!(text_of(&f.server.get(TODO, "u").unwrap()), "changed");
    assert_eq!(f.server.get(TODO, "d").unwrap()["deleted"], true);
    assert_eq!(f.server.items(TODO).len(), 3, "nothing applied twice");
    assert_eq!(
        f.local(TODO, "u").unwrap()["version"],
        f.server.get(TODO, "u").unwrap()["version"]
    );
}

#[tokio::test]
async fn a_real_conflict_is_not_mistaken_for_a_lost_acknowledgement() {
    let f = Fixture::new();
    f.server
        .server_insert(TODO, obj(json!({"id": "i", "text": "someone else's"})));
    f.todo()
        .insert(&json!({"id": "i", "text": "mine"}))
        .await
        .unwrap();
    let result = f.client.push().await.unwrap();
    assert_eq!(result.errors.len(), 1);
    assert_eq!(result.errors[0].status, Some(409));
    assert_eq!(
        text_of(&f.server.get(TODO, "i").unwrap()),
        "someone else's",
        "the server's row is untouched"
    );
    assert_eq!(
        f.queue(),
        vec![(OpKind::Insert, OpState::Failed, 1, 1)],
        "the op stays, failed, for the app to resolve"
    );
}

#[tokio::test]
async fn an_edit_folded_into_an_op_whose_answer_was_lost_is_sent_without_a_conflict() {
    let f = Fixture::new();
    f.seed("u", "v0").await;
    f.seed("d", "v0").await;
    f.todo()
        .insert(&json!({"id": "i", "text": "v1"}))
        .await
        .unwrap();
    f.todo()
        .update(&json!({"id": "u", "text": "v1"}))
        .await
        .unwrap();
    f.todo()
        .update(&json!({"id": "d", "text": "v1"}))
        .await
        .unwrap();
    for _ in 0..3 {
        f.server.fail_next(1, Fault::CommitThenLoseResponse);
        f.client.push().await.unwrap();
    }
    // All three were applied; the client only knows they failed.
    f.todo()
        .update(&json!({"id": "i", "text": "v2"}))
        .await
        .unwrap();
    f.todo()
        .update(&json!({"id": "u", "text": "v2"}))
        .await
        .unwrap();
    f.todo().delete_id("d").await.unwrap();
    let result = f.client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert!(f.client.operation_errors().unwrap().is_empty());
    assert_eq!(text_of(&f.server.get(TODO, "i").unwrap()), "v2");
    assert_eq!(text_of(&f.server.get(TODO, "u").unwrap()), "v2");
    assert_eq!(f.server.get(TODO, "d").unwrap()["deleted"], true);
}

/// A transport that answers inserts of item `bad` with a copy whose `text` is a
/// number, a row that does not fit the local table.
#[derive(Debug)]
struct MistypedAnswers {
    inner: tidesync_transport_mock::MockTransport,
    /// Offer batch pushes (the answers mistyped the same way).
    batch: bool,
}

#[async_trait::async_trait]
impl tidesync_core::Transport for MistypedAnswers {
    async fn read(
        &self,
        request: &tidesync_core::ReadRequest,
    ) -> Result<tidesync_core::Page, tidesync_core::TransportError> {
        self.inner.read(request).await
    }

    async fn insert(
        &self,
        table: &str,
        item: &Item,
    ) -> Result<Item, tidesync_core::TransportError> {
        let mut answer = self.inner.insert(table, item).await?;
        if answer.get("id") == Some(&json!("bad")) {
            answer.insert("text".into(), json!(5));
        }
        Ok(answer)
    }

    async fn replace(
        &self,
        table: &str,
        item: &Item,
        if_match: Option<&str>,
    ) -> Result<Item, tidesync_core::TransportError> {
        self.inner.replace(table, item, if_match).await
    }

    async fn delete(
        &self,
        table: &str,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), tidesync_core::TransportError> {
        self.inner.delete(table, id, if_match).await
    }

    fn supports_batch(&self) -> bool {
        self.batch
    }

    async fn batch(
        &self,
        operations: &[tidesync_core::BatchOperation],
    ) -> Result<Vec<tidesync_core::BatchOutcome>, tidesync_core::TransportError> {
        let mut outcomes = self.inner.batch(operations).await?;
        for outcome in &mut outcomes {
            if let tidesync_core::BatchOutcome::Ok(Some(answer)) = outcome {
                if answer.get("id") == Some(&json!("bad")) {
                    answer.insert("text".into(), json!(5));
                }
            }
        }
        Ok(outcomes)
    }
}

#[tokio::test]
async fn a_mistyped_server_row_fails_its_op_not_the_push() {
    mistyped_server_row_fails_its_op(false).await;
}

#[tokio::test]
async fn a_mistyped_server_row_in_a_batch_fails_its_op_not_the_push() {
    mistyped_server_row_fails_its_op(true).await;
}

async fn mistyped_server_row_fails_its_op(batch: bool) {
    let server = MockServer::new();
    server.add_table(TODO);
    server.set_batch_support(batch);
    let store = MemoryStore::new();
    store.define_table(&todo_def()).unwrap();
    let client = SyncContext::builder()
        .store(store)
        .transport(MistypedAnswers {
            inner: server.transport(),
            batch,
        })
        .build()
        .unwrap();
    let todo = client.table::<serde_json::Value>(TODO);
    for id in ["bad", "good"] {
        todo.insert(&json!({"id": id, "text": id})).await.unwrap();
    }
    let result = client.push().await.unwrap();
    assert_eq!(result.status, PushStatus::Complete, "{result:?}");
    assert_eq!(result.pushed, 1, "{result:?}");
    assert_eq!(result.errors.len(), 1);
    let error = &result.errors[0];
    assert_eq!(error.item_id, "bad");
    assert!(error.message.contains("does not fit"), "{}", error.message);
    assert_eq!(error.server_item.as_ref().unwrap()["text"], json!(5));
    // What was sent, as the op recorded it when it was marked.
    assert_eq!(error.item.as_ref().unwrap()["text"], "bad");
    // The bad op stays queued (failed) with its record; the good one is done.
    let queued = client.operations().unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].item_id, "bad");
    assert_eq!(queued[0].state, OpState::Failed);
    assert_eq!(client.operation_errors().unwrap(), result.errors);
    // The local row keeps what the app wrote.
    assert_eq!(todo.get("bad").await.unwrap().unwrap()["text"], "bad");
}

#[tokio::test]
async fn a_mistyped_pulled_row_is_a_typed_error_naming_the_row() {
    let f = Fixture::new();
    f.server
        .server_insert(TODO, obj(json!({"id": "x", "text": 5})));
    let err = f
        .todo()
        .pull("all", tidesync_core::Query::all())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::BadServerRow { table, id, .. } if table == TODO && id == "x"),
        "{err:?}"
    );
}
