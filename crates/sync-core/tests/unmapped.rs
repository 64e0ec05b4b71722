//! A local table may define fewer columns than the server has. The server's other
//! columns must survive every write this client makes: a v3 update is a full replace
//! (the mock server replaces too), so an update that sent only the local columns
//! would erase them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use tidesync_core::{
    ClientWins, ColumnType, Error, InvalidItem, MergeFields, Query, StoreError, TableDef,
    UNMAPPED_COLUMN,
};

/// A row another client wrote with a column (`priority`) this client does not
/// define, pulled here.
async fn seed_with_priority(f: &Fixture, id: &str, priority: i64) {
    f.server.server_insert(
        TODO,
        obj(json!({"id": id, "text": "buy milk", "complete": false, "priority": priority})),
    );
    f.todo().pull("all", Query::all()).await.unwrap();
    f.server.clear_calls();
}

fn server_priority(f: &Fixture, id: &str) -> Value {
    f.server.get(TODO, id).unwrap()["priority"].clone()
}

async fn update_complete_and_push(f: &Fixture, id: &str) {
    let mut item = f.todo().get(id).await.unwrap().unwrap();
    item["complete"] = json!(true);
    f.todo().update(&item).await.unwrap();
    let pushed = f.client.push().await.unwrap();
    assert!(pushed.is_success(), "{pushed:?}");
}

#[tokio::test]
async fn an_update_keeps_server_columns_the_app_does_not_define() {
    for batch in [false, true] {
        let f = Fixture::new();
        f.server.set_batch_support(batch);
        seed_with_priority(&f, "a", 5).await;

        update_complete_and_push(&f, "a").await;

        let server = f.server.get(TODO, "a").unwrap();
        assert_eq!(server["complete"], json!(true), "batch: {batch}");
        assert_eq!(server["priority"], json!(5), "batch: {batch}");
    }
}

#[tokio::test]
async fn the_app_never_sees_the_hidden_column() {
    let f = Fixture::new();
    seed_with_priority(&f, "a", 5).await;

    let row = f.todo().get("a").await.unwrap().unwrap();
    assert!(row.get(UNMAPPED_COLUMN).is_none(), "{row}");
    assert!(row.get("priority").is_none(), "{row}");
    let rows = f.todo().query(&Query::all()).await.unwrap();
    assert!(rows.iter().all(|r| r.get(UNMAPPED_COLUMN).is_none()));
    let updated = f
        .todo()
        .update(&json!({"id": "a", "text": "buy oat milk"}))
        .await
        .unwrap();
    assert!(updated.get(UNMAPPED_COLUMN).is_none(), "{updated}");
    let read_in_tx = f
        .client
        .transaction(|tx| tx.get(TODO, "a"))
        .unwrap()
        .unwrap();
    assert!(read_in_tx.get(UNMAPPED_COLUMN).is_none());
    // The store keeps the server's other columns with the row.
    let stored = f.local(TODO, "a").unwrap();
    assert_eq!(stored[UNMAPPED_COLUMN], json!({"priority": 5}));
}

#[tokio::test]
async fn apps_cannot_write_or_declare_the_hidden_column() {
    let f = Fixture::new();
    let err = f
        .todo()
        .insert(&json!({"text": "x", UNMAPPED_COLUMN: {"priority": 1}}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidItem(InvalidItem::UnknownColumn { ref column, .. }) if column == UNMAPPED_COLUMN),
        "{err:?}"
    );
    let err = f
        .client
        .define_table(&TableDef::new("Other").column("__tidesync_mine", ColumnType::String))
        .unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::InvalidDefinition(_))),
        "{err:?}"
    );
    assert_eq!(f.client.pending_operations().unwrap(), 0);
}

#[tokio::test]
async fn an_update_after_a_pushed_insert_keeps_columns_the_server_added() {
    // The server answers an insert with columns of its own (here another client
    // sets one before this client's update): the answer and later pulls fill the
    // hidden column, and the next update sends them back.
    let f = Fixture::new();
    f.todo()
        .insert(&json!({"id": "a", "text": "x", "complete": false}))
        .await
        .unwrap();
    assert!(f.client.push().await.unwrap().is_success());
    let mut server = f.server.get(TODO, "a").unwrap();
    server.insert("priority".into(), json!(3));
    f.server.server_update(TODO, server);
    f.todo().pull("all", Query::all()).await.unwrap();

    update_complete_and_push(&f, "a").await;
    assert_eq!(server_priority(&f, "a"), json!(3));
}

#[tokio::test]
async fn client_wins_takes_the_servers_value_of_columns_the_app_does_not_define() {
    // Another client raised `priority` after this one pulled; this client's
    // update conflicts and wins: its own columns go in, but the newer priority
    // must not be rolled back to the value this client last saw.
    let f = Fixture::with_handler(ClientWins);
    seed_with_priority(&f, "a", 5).await;
    let mut server = f.server.get(TODO, "a").unwrap();
    server.insert("priority".into(), json!(7));
    f.server.server_update(TODO, server);

    update_complete_and_push(&f, "a").await;

    let server = f.server.get(TODO, "a").unwrap();
    assert_eq!(server["complete"], json!(true));
    assert_eq!(server["priority"], json!(7));
    // And the local row now carries the server's value for the next update.
    assert_eq!(
        f.local(TODO, "a").unwrap()[UNMAPPED_COLUMN],
        json!({"priority": 7})
    );
}

#[tokio::test]
async fn a_merge_keeps_the_servers_newer_value_of_columns_the_app_does_not_define() {
    let f = Fixture::with_handler(MergeFields::new());
    seed_with_priority(&f, "a", 5).await;
    let mut server = f.server.get(TODO, "a").unwrap();
    server.insert("priority".into(), json!(7));
    server.insert("text".into(), json!("buy milk today"));
    f.server.server_update(TODO, server);

    update_complete_and_push(&f, "a").await;

    let server = f.server.get(TODO, "a").unwrap();
    assert_eq!(server["complete"], json!(true));
    assert_eq!(server["text"], json!("buy milk today"));
    assert_eq!(server["priority"], json!(7));
}

#[tokio::test]
async fn update_and_retry_takes_the_servers_value_of_columns_the_app_does_not_define() {
    let f = Fixture::new();
    seed_with_priority(&f, "a", 5).await;
    let mut server = f.server.get(TODO, "a").unwrap();
    server.insert("priority".into(), json!(7));
    f.server.server_update(TODO, server);
    let mut item = f.todo().get("a").await.unwrap().unwrap();
    item["complete"] = json!(true);
    f.todo().update(&item).await.unwrap();
    let pushed = f.client.push().await.unwrap();
    let error = pushed.errors.first().expect("a conflict").clone();

    // Client wins, the app's way: its own copy with the server's version.
    let mut retry = f.todo().get("a").await.unwrap().unwrap();
    retry["version"] = error.server_item.as_ref().unwrap()["version"].clone();
    f.client
        .update_and_retry(&error, retry.as_object().unwrap().clone())
        .unwrap();
    assert!(f.client.push().await.unwrap().is_success());

    let server = f.server.get(TODO, "a").unwrap();
    assert_eq!(server["complete"], json!(true));
    assert_eq!(server["priority"], json!(7));
}

#[tokio::test]
async fn a_follow_up_edit_sends_the_columns_the_servers_answer_carried() {
    // An update in flight, a second local edit queued behind it: the second
    // update is sent with the server's answer to the first as its copy of the
    // columns this app does not define.
    let f = Fixture::new();
    seed_with_priority(&f, "a", 5).await;
    let gate = f.server.block_next_write();
    let mut item = f.todo().get("a").await.unwrap().unwrap();
    item["complete"] = json!(true);
    f.todo().update(&item).await.unwrap();
    let client = f.client.clone();
    let push = tokio::spawn(async move { client.push().await.unwrap() });
    gate.reached().await;
    let mut second = f.todo().get("a").await.unwrap().unwrap();
    second["text"] = json!("buy oat milk");
    f.todo().update(&second).await.unwrap();
    gate.release();
    assert!(push.await.unwrap().is_success());
    assert!(f.client.push().await.unwrap().is_success());

    let server = f.server.get(TODO, "a").unwrap();
    assert_eq!(server["text"], json!("buy oat milk"));
    assert_eq!(server["complete"], json!(true));
    assert_eq!(server["priority"], json!(5));
}
