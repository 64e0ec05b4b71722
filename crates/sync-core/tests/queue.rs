//! The operation queue through the public API: the collapse matrix (spec
//! scenarios 1–13), local transactions, restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;
use tidesync_core::{Error, InvalidItem, OpKind, OpState, PushStatus, QueueRefusal, StoreError};
use tidesync_transport_mock::{CallKind, Fault};

#[tokio::test]
async fn insert_without_id_gets_a_32_hex_id_and_one_insert_op() {
    let f = Fixture::new();
    let item = f
        .todo()
        .insert(&json!({"text": "a", "complete": false}))
        .await
        .unwrap();
    let id = item["id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(
        id.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(f.queue(), vec![(OpKind::Insert, OpState::Pending, 1, 1)]);
    assert_eq!(f.client.pending_operations().unwrap(), 1);
}

#[tokio::test]
async fn insert_of_an_id_already_stored_locally_fails_and_queues_nothing() {
    let f = Fixture::new();
    f.seed("x", "from server").await;
    let err = f
        .todo()
        .insert(&json!({"id": "x", "text": "mine"}))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    assert!(f.queue().is_empty());
    assert_eq!(text_of(&f.local(TODO, "x").unwrap()), "from server");
}

#[tokio::test]
async fn insert_then_insert_is_refused_and_changes_nothing() {
    let f = Fixture::new();
    f.todo()
        .insert(&json!({"id": "x", "text": "one"}))
        .await
        .unwrap();
    let err = f
        .todo()
        .insert(&json!({"id": "x", "text": "two"}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::QueueRefused {
                reason: QueueRefusal::InsertAfterQueued(OpKind::Insert),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(text_of(&f.local(TODO, "x").unwrap()), "one");
    assert_eq!(f.queue(), vec![(OpKind::Insert, OpState::Pending, 1, 1)]);
}

#[tokio::test]
async fn insert_then_update_is_one_insert_carrying_the_latest_row() {
    let f = Fixture::new();
    f.todo()
        .insert(&json!({"id": "x", "text": "draft", "complete": false}))
        .await
        .unwrap();
    f.todo()
        .update(&json!({"id": "x", "text": "final"}))
        .await
        .unwrap();
    assert_eq!(f.queue(), vec![(OpKind::Insert, OpState::Pending, 1, 2)]);
    let result = f.client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    let calls = f.server.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].kind, CallKind::Insert);
    let body = calls[0].body.clone().unwrap();
    assert_eq!(body["text"], "final");
    assert_eq!(
        body["complete"], false,
        "an update keeps the columns it does not name"
    );
    for system in ["version", "createdAt", "updatedAt", "deleted"] {
        assert!(
            !body.contains_key(system),
            "insert body carries {system}: {body:?}"
        );
    }
}

#[tokio::test]
async fn insert_then_delete_cancels_out() {
    let f = Fixture::new();
    f.todo()
        .insert(&json!({"id": "x", "text": "gone"}))
        .await
        .unwrap();
    f.todo().delete_id("x").await.unwrap();
    assert!(f.queue().is_empty());
    assert!(f.local(TODO, "x").is_none());
    let result = f.client.push().await.unwrap();
    assert!(result.is_success());
    assert!(f.server.calls().is_empty(), "nothing to send");
}

#[tokio::test]
async fn delete_after_a_failed_insert_is_refused() {
    let f = Fixture::new();
    f.todo()
        .insert(&json!({"id": "x", "text": "a"}))
        .await
        .unwrap();
    f.server.fail_next(1, Fault::Status(500));
    let result = f.client.push().await.unwrap();
    assert_eq!(result.status, PushStatus::Complete);
    assert_eq!(result.errors.len(), 1);
    assert_eq!(f.queue(), vec![(OpKind::Insert, OpState::Failed, 1, 1)]);
    let err = f.todo().delete_id("x").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::QueueRefused {
                reason: QueueRefusal::InsertMayBeOnServer,
                ..
            }
        ),
        "{err}"
    );
    assert!(f.local(TODO, "x").is_some());
    assert_eq!(f.queue(), vec![(OpKind::Insert, OpState::Failed, 1, 1)]);
}

#[tokio::test]
async fn update_after_a_failed_insert_merges_and_the_next_push_sends_it() {
    let f = Fixture::new();
    f.todo()
        .insert(&json!({"id": "x", "text": "a"}))
        .await
        .unwrap();
    f.server.fail_next(1, Fault::Status(500));
    f.client.push().await.unwrap();
    f.todo()
        .update(&json!({"id": "x", "text": "b"}))
        .await
        .unwrap();
    assert_eq!(f.queue(), vec![(OpKind::Insert, OpState::Failed, 1, 2)]);
    assert!(
        f.client.operation_errors().unwrap().is_empty(),
        "the collapse drops the error"
    );
    let result = f.client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert_eq!(text_of(&f.server.get(TODO, "x").unwrap()), "b");
}

#[tokio::test]
async fn update_then_insert_is_refused() {
    let f = Fixture::new();
    f.seed("x", "s").await;
    f.todo()
        .update(&json!({"id": "x", "text": "u"}))
        .await
        .unwrap();
    let err = f
        .todo()
        .insert(&json!({"id": "x", "text": "i"}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::QueueRefused {
                reason: QueueRefusal::InsertAfterQueued(OpKind::Update),
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn update_then_update_is_one_update_with_the_latest_content() {
    let f = Fixture::new();
    f.seed("x", "s").await;
    f.todo()
        .update(&json!({"id": "x", "text": "u1"}))
        .await
        .unwrap();
    f.todo()
        .update(&json!({"id": "x", "text": "u2"}))
        .await
        .unwrap();
    assert_eq!(f.queue(), vec![(OpKind::Update, OpState::Pending, 1, 2)]);
    assert!(f.client.push().await.unwrap().is_success());
    let calls = f.server.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].kind, CallKind::Replace);
    assert_eq!(calls[0].body.as_ref().unwrap()["text"], "u2");
}

#[tokio::test]
async fn update_then_delete_moves_the_delete_to_the_end() {
    let f = Fixture::new();
    f.seed("x", "s").await;
    f.todo()
        .update(&json!({"id": "x", "text": "u"}))
        .await
        .unwrap();
    f.todo()
        .insert(&json!({"id": "y", "text": "other"}))
        .await
        .unwrap();
    f.todo().delete_id("x").await.unwrap();
    assert_eq!(
        f.queue(),
        vec![
            (OpKind::Insert, OpState::Pending, 2, 1),
            (OpKind::Delete, OpState::Pending, 3, 2)
        ]
    );
    assert!(f.client.push().await.unwrap().is_success());
    assert_eq!(
        f.write_calls(),
        vec![
            (CallKind::Insert, "y".into()),
            (CallKind::Delete, "x".into())
        ]
    );
    assert_eq!(f.server.get(TODO, "x").unwrap()["deleted"], true);
}

#[tokio::test]
async fn anything_after_a_queued_delete_is_refused() {
    let f = Fixture::new();
    f.seed("x", "s").await;
    f.todo().delete_id("x").await.unwrap();
    let insert = f
        .todo()
        .insert(&json!({"id": "x", "text": "i"}))
        .await
        .unwrap_err();
    let update = f
        .todo()
        .update(&json!({"id": "x", "text": "u"}))
        .await
        .unwrap_err();
    let delete = f.todo().delete_id("x").await.unwrap_err();
    for err in [insert, update, delete] {
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
    assert!(f.local(TODO, "x").is_none());
    assert_eq!(f.queue().len(), 1);
}

#[tokio::test]
async fn update_of_a_missing_row_creates_it_and_the_server_404_is_recorded() {
    let f = Fixture::new();
    f.todo()
        .update(&json!({"id": "ghost", "text": "boo"}))
        .await
        .unwrap();
    assert_eq!(text_of(&f.local(TODO, "ghost").unwrap()), "boo");
    assert_eq!(f.queue(), vec![(OpKind::Update, OpState::Pending, 1, 1)]);
    let result = f.client.push().await.unwrap();
    assert_eq!(result.status, PushStatus::Complete);
    assert_eq!(result.errors.len(), 1);
    assert_eq!(result.errors[0].status, Some(404));
    assert_eq!(
        f.client.operation_errors().unwrap().len(),
        1,
        "kept for the app to resolve"
    );
}

#[tokio::test]
async fn delete_of_an_object_without_version_sends_no_if_match() {
    let f = Fixture::new();
    f.seed("x", "s").await;
    assert!(f.local(TODO, "x").unwrap()["version"].is_string());
    f.todo().delete(&json!({"id": "x"})).await.unwrap();
    assert!(f.client.push().await.unwrap().is_success());
    let calls = f.server.calls();
    assert_eq!(calls[0].kind, CallKind::Delete);
    assert_eq!(calls[0].if_match, None);
}

#[tokio::test]
async fn delete_by_id_sends_the_stored_version_as_if_match() {
    let f = Fixture::new();
    let stored = f.seed("x", "s").await;
    f.todo().delete_id("x").await.unwrap();
    assert!(f.client.push().await.unwrap().is_success());
    assert_eq!(
        f.server.calls()[0].if_match.as_deref(),
        stored["version"].as_str()
    );
}

#[tokio::test]
async fn app_writes_with_unknown_columns_or_wrong_types_are_refused() {
    let f = Fixture::new();
    let unknown = f
        .todo()
        .insert(&json!({"text": "a", "colour": "red"}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            unknown,
            Error::InvalidItem(InvalidItem::UnknownColumn { .. })
        ),
        "{unknown}"
    );
    let wrong = f.todo().insert(&json!({"text": 5})).await.unwrap_err();
    assert!(
        matches!(wrong, Error::InvalidItem(InvalidItem::TypeMismatch { .. })),
        "{wrong}"
    );
    let table = f
        .client
        .table::<serde_json::Value>("Nope")
        .insert(&json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(table, Error::Store(StoreError::UnknownTable(_))),
        "{table}"
    );
    assert!(f.queue().is_empty());
}

#[tokio::test]
async fn bad_ids_are_refused() {
    let f = Fixture::new();
    for id in [
        json!("a/b"),
        json!("."),
        json!(".."),
        json!("x".repeat(256)),
        json!(7),
        json!("a\u{1}b"),
    ] {
        let err = f
            .todo()
            .insert(&json!({"id": id, "text": "t"}))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{id}: {err}");
    }
    let no_id = f.todo().update(&json!({"text": "t"})).await.unwrap_err();
    assert!(matches!(no_id, Error::InvalidArgument(_)), "{no_id}");
    let cased = f
        .todo()
        .insert(&json!({"Id": "x", "text": "t"}))
        .await
        .unwrap_err();
    assert!(matches!(cased, Error::InvalidArgument(_)), "{cased}");
    assert!(f.queue().is_empty());
}

#[tokio::test]
async fn system_properties_of_a_local_write_are_not_stored_except_version() {
    let f = Fixture::new();
    f.seed("x", "s").await;
    let before = f.local(TODO, "x").unwrap();
    f.todo()
        .update(
            &json!({"id": "x", "text": "u", "updatedAt": "2000-01-01T00:00:00Z", "deleted": true}),
        )
        .await
        .unwrap();
    let after = f.local(TODO, "x").unwrap();
    assert_eq!(after["updatedAt"], before["updatedAt"]);
    assert_eq!(after["version"], before["version"]);
    assert_eq!(after["text"], "u");
}

#[tokio::test]
async fn a_transaction_writes_parent_and_children_or_nothing() {
    let f = Fixture::new();
    // All good: three rows, three ops, consecutive sequences.
    f.client
        .transaction(|tx| {
            tx.insert(TODO, obj(json!({"id": "list", "text": "groceries"})))?;
            tx.insert(TAGS, obj(json!({"id": "t1", "name": "home"})))?;
            tx.insert(TAGS, obj(json!({"id": "t2", "name": "food"})))?;
            Ok(())
        })
        .unwrap();
    assert_eq!(
        f.queue().iter().map(|q| q.2).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );

    // The third write fails: nothing of the transaction stays.
    let err = f
        .client
        .transaction(|tx| {
            tx.insert(TODO, obj(json!({"id": "list2", "text": "work"})))?;
            tx.insert(TAGS, obj(json!({"id": "t3", "name": "office"})))?;
            tx.insert(TAGS, obj(json!({"id": "t1", "name": "duplicate"})))?;
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err, Error::QueueRefused { .. }), "{err}");
    assert!(f.local(TODO, "list2").is_none());
    assert!(f.local(TAGS, "t3").is_none());
    assert_eq!(f.queue().len(), 3);

    // The next write continues the sequence without a gap.
    f.todo().insert(&json!({"id": "later"})).await.unwrap();
    assert_eq!(f.queue().last().unwrap().2, 4);
}

#[tokio::test]
async fn a_transaction_sees_its_own_writes() {
    let f = Fixture::new();
    f.client
        .transaction(|tx| {
            tx.insert(TODO, obj(json!({"id": "x", "text": "one"})))?;
            assert_eq!(text_of(&tx.get(TODO, "x")?.unwrap()), "one");
            tx.update(TODO, obj(json!({"id": "x", "text": "two"})))?;
            Ok(())
        })
        .unwrap();
    assert_eq!(f.queue(), vec![(OpKind::Insert, OpState::Pending, 1, 2)]);
    assert_eq!(text_of(&f.local(TODO, "x").unwrap()), "two");
}

#[tokio::test]
async fn a_transaction_sees_its_own_inserts_under_generated_ids() {
    let f = Fixture::new();
    let (first, second) = f
        .client
        .transaction(|tx| {
            let first = tx.insert(TODO, obj(json!({"text": "one"})))?;
            let first = first["id"].as_str().unwrap().to_owned();
            let second = tx.insert(TODO, obj(json!({"text": "other"})))?;
            let second = second["id"].as_str().unwrap().to_owned();
            assert_eq!(text_of(&tx.get(TODO, &first)?.unwrap()), "one");
            tx.update(TODO, obj(json!({"id": first, "text": "two"})))?;
            // Inserting either id again is refused: both are queued already.
            let again = tx.insert(TODO, obj(json!({"id": second, "text": "x"})));
            assert!(
                matches!(again, Err(Error::QueueRefused { .. })),
                "{again:?}"
            );
            Ok((first, second))
        })
        .unwrap();
    // The update folded into the first insert; the second insert stands alone.
    assert_eq!(
        f.queue(),
        vec![
            (OpKind::Insert, OpState::Pending, 1, 2),
            (OpKind::Insert, OpState::Pending, 2, 1)
        ]
    );
    assert_eq!(text_of(&f.local(TODO, &first).unwrap()), "two");
    assert_eq!(text_of(&f.local(TODO, &second).unwrap()), "other");
}

#[tokio::test]
async fn the_queue_survives_a_restart_and_the_sequence_continues() {
    let mut f = Fixture::new();
    f.todo().insert(&json!({"id": "a"})).await.unwrap();
    f.tags().insert(&json!({"id": "b"})).await.unwrap();
    f.restart();
    assert_eq!(f.client.pending_operations().unwrap(), 2);
    f.todo().insert(&json!({"id": "c"})).await.unwrap();
    assert_eq!(f.queue().last().unwrap().2, 3);
}

#[tokio::test]
async fn an_op_left_attempted_by_a_crash_is_resent() {
    let mut f = Fixture::new();
    f.todo()
        .insert(&json!({"id": "a", "text": "t"}))
        .await
        .unwrap();
    // The request is lost together with the process.
    f.server.set_offline(true);
    let result = f.client.push().await.unwrap();
    assert_eq!(result.status, PushStatus::CancelledByNetworkError);
    f.restart();
    f.server.set_offline(false);
    let result = f.client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert_eq!(text_of(&f.server.get(TODO, "a").unwrap()), "t");
}

#[tokio::test]
async fn typed_tables_round_trip_through_serde() {
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Todo {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        text: String,
        complete: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    }
    let f = Fixture::new();
    let table = f.client.table::<Todo>(TODO);
    let stored = table
        .insert(&Todo {
            id: None,
            text: "typed".into(),
            complete: false,
            version: None,
        })
        .await
        .unwrap();
    let id = stored.id.clone().unwrap();
    assert_eq!(table.get(&id).await.unwrap().unwrap(), stored);
    assert!(f.client.push().await.unwrap().is_success());
    let after_push = table.get(&id).await.unwrap().unwrap();
    assert!(
        after_push.version.is_some(),
        "the server's version is stored"
    );
    let done = Todo {
        complete: true,
        ..after_push
    };
    table.update(&done).await.unwrap();
    let query = tidesync_core::Query::new()
        .filter(tidesync_core::protocol::odata::col("complete").eq(true));
    assert_eq!(table.query(&query).await.unwrap().len(), 1);
    assert_eq!(table.count(&tidesync_core::Query::all()).await.unwrap(), 1);
}
