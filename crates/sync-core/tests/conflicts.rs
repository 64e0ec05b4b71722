//! Conflict handling through the public API: the default, the built-in
//! handlers, a closure handler, the base item and the three-way merge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;
use tidesync_core::{
    ClientWins, Conflict, Fallback, FnHandler, MergeFields, OpKind, OpState, PushStatus,
    Resolution, ServerWins,
};

/// A client whose row `x` was seeded at version v1, then changed on the server
/// (`server_change`) and locally (`local_change`), both unpushed.
async fn diverged(f: &Fixture, server_change: serde_json::Value, local_change: serde_json::Value) {
    f.server.server_insert(
        TODO,
        obj(json!({"id": "x", "text": "base", "complete": false})),
    );
    f.todo()
        .pull("all", tidesync_core::Query::all())
        .await
        .unwrap();
    let mut server = obj(server_change);
    server.insert("id".into(), json!("x"));
    f.server.server_update(TODO, server);
    let mut local = obj(local_change);
    local.insert("id".into(), json!("x"));
    f.todo()
        .update(&serde_json::Value::Object(local))
        .await
        .unwrap();
    f.server.clear_calls();
}

#[tokio::test]
async fn the_default_handler_reports_the_conflict_and_keeps_the_op() {
    let f = Fixture::new();
    diverged(&f, json!({"text": "theirs"}), json!({"text": "mine"})).await;
    let result = f.client.push().await.unwrap();
    assert_eq!(result.status, PushStatus::Complete);
    assert_eq!(result.errors.len(), 1);
    assert_eq!(f.queue(), vec![(OpKind::Update, OpState::Failed, 1, 1)]);
    assert_eq!(text_of(&f.server.get(TODO, "x").unwrap()), "theirs");
    assert_eq!(text_of(&f.local(TODO, "x").unwrap()), "mine");
    // It fails again on every push until resolved.
    assert_eq!(f.client.push().await.unwrap().errors.len(), 1);
}

#[tokio::test]
async fn client_wins_resends_with_the_servers_version() {
    let f = Fixture::with_handler(ClientWins);
    diverged(&f, json!({"text": "theirs"}), json!({"text": "mine"})).await;
    let result = f.client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    let server = f.server.get(TODO, "x").unwrap();
    assert_eq!(server["text"], "mine");
    assert_eq!(f.local(TODO, "x").unwrap()["version"], server["version"]);
    assert!(f.queue().is_empty());
    assert_eq!(
        f.server.calls().len(),
        2,
        "the 412, then the conditioned retry"
    );
}

#[tokio::test]
async fn server_wins_drops_the_op_and_keeps_the_servers_copy() {
    let f = Fixture::with_handler(ServerWins);
    diverged(&f, json!({"text": "theirs"}), json!({"text": "mine"})).await;
    let result = f.client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert_eq!(text_of(&f.local(TODO, "x").unwrap()), "theirs");
    assert!(f.queue().is_empty());
}

#[tokio::test]
async fn server_wins_on_a_deleted_server_item_removes_the_local_row() {
    let f = Fixture::with_handler(ServerWins);
    f.server
        .server_insert(TODO, obj(json!({"id": "x", "text": "base"})));
    f.todo()
        .pull("all", tidesync_core::Query::all())
        .await
        .unwrap();
    f.server
        .server_update(TODO, obj(json!({"id": "x", "text": "theirs"})));
    f.todo().delete_id("x").await.unwrap();
    // A stale delete meets the newer server row: the server's copy comes back.
    let result = f.client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert_eq!(text_of(&f.local(TODO, "x").unwrap()), "theirs");
}

#[tokio::test]
async fn merge_fields_merges_changes_to_different_fields_silently() {
    let f = Fixture::with_handler(MergeFields::new());
    diverged(&f, json!({"complete": true}), json!({"text": "mine"})).await;
    let result = f.client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    let server = f.server.get(TODO, "x").unwrap();
    assert_eq!(server["text"], "mine");
    assert_eq!(server["complete"], true);
    let local = f.local(TODO, "x").unwrap();
    assert_eq!(local["text"], "mine");
    assert_eq!(local["complete"], true);
    assert_eq!(local["version"], server["version"]);
}

#[tokio::test]
async fn merge_fields_reports_a_field_changed_on_both_sides() {
    let f = Fixture::with_handler(MergeFields::new());
    diverged(&f, json!({"text": "theirs"}), json!({"text": "mine"})).await;
    let result = f.client.push().await.unwrap();
    assert_eq!(result.errors.len(), 1);
    assert_eq!(text_of(&f.server.get(TODO, "x").unwrap()), "theirs");
}

#[tokio::test]
async fn merge_fields_with_a_fallback_decides_clashes() {
    let f = Fixture::with_handler(MergeFields::with_fallback(Fallback::PreferLocal));
    diverged(
        &f,
        json!({"text": "theirs", "complete": true}),
        json!({"text": "mine"}),
    )
    .await;
    assert!(f.client.push().await.unwrap().is_success());
    let server = f.server.get(TODO, "x").unwrap();
    assert_eq!(
        (server["text"].clone(), server["complete"].clone()),
        (json!("mine"), json!(true))
    );
}

#[test]
fn merge_fields_is_a_three_way_merge() {
    let merge = MergeFields::new();
    let base = obj(json!({"id": "x", "a": 1, "b": 1, "c": 1, "version": "v1"}));
    let local = obj(json!({"id": "x", "a": 2, "b": 1, "c": 5, "version": "v1"}));
    let server = obj(json!({"id": "x", "a": 1, "b": 3, "c": 5, "version": "v2"}));
    let merged = merge.merge(Some(&base), &local, &server).unwrap();
    assert_eq!(
        merged,
        obj(json!({"id": "x", "a": 2, "b": 3, "c": 5, "version": "v2"}))
    );
    let mine = obj(json!({"id": "x", "a": 9, "b": 1, "c": 1}));
    let theirs = obj(json!({"id": "x", "a": 7, "b": 1, "c": 1}));
    assert_eq!(
        merge.merge(Some(&base), &mine, &theirs),
        Err(vec!["a".to_owned()])
    );
    // Without a base every differing field is a clash.
    assert_eq!(
        merge.merge(None, &local, &server),
        Err(vec!["a".to_owned(), "b".to_owned()])
    );
}

#[tokio::test]
async fn the_handler_sees_local_server_and_base_items() {
    let seen: Arc<Mutex<Vec<Conflict>>> = Arc::default();
    let sink = seen.clone();
    let f = Fixture::with_handler(FnHandler::sync(move |c| {
        sink.lock().unwrap().push(c.clone());
        Resolution::Fail
    }));
    diverged(&f, json!({"text": "theirs"}), json!({"text": "mine"})).await;
    f.client.push().await.unwrap();
    let conflicts = seen.lock().unwrap();
    assert_eq!(conflicts.len(), 1);
    let c = &conflicts[0];
    assert_eq!(c.status, 412);
    assert_eq!(text_of(c.local_item.as_ref().unwrap()), "mine");
    assert_eq!(text_of(c.server_item.as_ref().unwrap()), "theirs");
    assert_eq!(text_of(c.base_item.as_ref().unwrap()), "base");
    assert_eq!(c.operation.kind, OpKind::Update);
}

#[tokio::test]
async fn an_async_closure_handler_can_merge() {
    let f = Fixture::with_handler(FnHandler::new(|c: Conflict| async move {
        let mut merged = c.server_item.clone().unwrap();
        let mine = text_of(c.local_item.as_ref().unwrap()).to_owned();
        let theirs = text_of(c.server_item.as_ref().unwrap()).to_owned();
        merged.insert("text".into(), json!(format!("{theirs}+{mine}")));
        Resolution::Merge(merged)
    }));
    diverged(&f, json!({"text": "theirs"}), json!({"text": "mine"})).await;
    assert!(f.client.push().await.unwrap().is_success());
    assert_eq!(text_of(&f.server.get(TODO, "x").unwrap()), "theirs+mine");
    assert_eq!(text_of(&f.local(TODO, "x").unwrap()), "theirs+mine");
}

#[tokio::test]
async fn an_insert_that_meets_an_existing_item_becomes_an_update_when_the_client_wins() {
    let f = Fixture::with_handler(ClientWins);
    f.server
        .server_insert(TODO, obj(json!({"id": "x", "text": "theirs"})));
    f.todo()
        .insert(&json!({"id": "x", "text": "mine"}))
        .await
        .unwrap();
    let result = f.client.push().await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert_eq!(text_of(&f.server.get(TODO, "x").unwrap()), "mine");
    assert!(f.queue().is_empty());
}

#[tokio::test]
async fn a_handler_that_keeps_conflicting_is_cut_off() {
    let rounds = Arc::new(Mutex::new(0));
    let counter = rounds.clone();
    let server = tidesync_transport_mock::MockServer::new();
    let moving = server.clone();
    let handler: Arc<dyn tidesync_core::ConflictHandler> = Arc::new(FnHandler::sync(move |_| {
        *counter.lock().unwrap() += 1;
        // Someone else changes the item before each resend, so every round conflicts again.
        moving.server_update(TODO, obj(json!({"id": "x", "text": "moving"})));
        // (A merge of the id alone would match the server's copy, which push takes for its
        // own earlier write: the merge changes a value.)
        Resolution::Merge(obj(json!({"id": "x", "text": "merged"})))
    }));
    let f = Fixture::build(server, Some(handler));
    diverged(&f, json!({"text": "theirs"}), json!({"text": "mine"})).await;
    let result = f.client.push().await.unwrap();
    assert_eq!(
        *rounds.lock().unwrap(),
        3,
        "asked max_conflict_rounds times, then cut off"
    );
    assert_eq!(result.errors.len(), 1, "{result:?}");
    assert_eq!(result.errors[0].status, Some(412));
    assert_eq!(f.queue().len(), 1, "the op stays for the app to resolve");
    assert_eq!(text_of(&f.server.get(TODO, "x").unwrap()), "moving");
}
