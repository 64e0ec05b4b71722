//! Updates from an app's copy of a row: no conflict against this client's own
//! writes, a conflict against anyone else's; `update_with` edits the stored row.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::{Deserialize, Serialize};
use serde_json::json;
use tidesync::{Client, Error, MemoryStore, Query, SyncItem};
use tidesync_transport_mock::MockServer;

/// `version` is always written (null before the first push), as many apps' types do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SyncItem)]
#[tidesync(table = "TodoItem")]
struct Todo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    text: String,
    complete: bool,
    #[serde(default)]
    version: Option<String>,
}

fn setup() -> (MockServer, Client) {
    let server = MockServer::new();
    server.add_table("TodoItem");
    let client = Client::builder()
        .store(MemoryStore::new())
        .define::<Todo>()
        .transport(server.transport())
        .build()
        .unwrap();
    (server, client)
}

fn new_todo(text: &str) -> Todo {
    Todo {
        id: None,
        text: text.to_owned(),
        complete: false,
        version: None,
    }
}

/// Another device's write, straight on the server.
fn foreign_edit(server: &MockServer, id: &str, text: &str) {
    let mut row = serde_json::Map::new();
    row.insert("id".to_owned(), json!(id));
    row.insert("text".to_owned(), json!(text));
    server.server_update("TodoItem", row);
}

/// Inserts "milk" and pushes it: the copy the insert returned (version null) and the id.
async fn pushed_milk(client: &Client) -> (Todo, String) {
    let inserted = client
        .sync_table::<Todo>()
        .insert(&new_todo("milk"))
        .await
        .unwrap();
    assert!(client.push().await.unwrap().is_success());
    let id = inserted.id.clone().unwrap();
    (inserted, id)
}

#[tokio::test]
async fn a_copy_stale_only_by_this_clients_own_pushes_does_not_conflict() {
    let (server, client) = setup();
    let todos = client.sync_table::<Todo>();
    // Read right after the insert: version null; the insert's push gives v1.
    let (inserted, id) = pushed_milk(&client).await;

    // Read at v1, edited and pushed (v2): the app still holds the v1 copy.
    let read = todos.get(&id).await.unwrap().unwrap();
    assert!(read.version.is_some());
    todos
        .update(&Todo {
            text: "oat milk".to_owned(),
            ..read.clone()
        })
        .await
        .unwrap();
    assert!(client.push().await.unwrap().is_success());

    // Both older copies are stale only by this client's own writes.
    // (Each edit differs from what the server holds, so a 412 could not pass for
    // an echo of this client's own earlier write.)
    for (n, stale) in [inserted, read].into_iter().enumerate() {
        todos
            .update(&Todo {
                text: format!("edit {n}"),
                complete: true,
                ..stale
            })
            .await
            .unwrap();
        let pushed = client.push().await.unwrap();
        assert!(pushed.is_success(), "{pushed:?}");
    }
    assert!(client.operation_errors().unwrap().is_empty());
    let row = server.get("TodoItem", &id).unwrap();
    assert_eq!(
        (row["text"].clone(), row["complete"].clone()),
        (json!("edit 1"), json!(true))
    );
}

#[tokio::test]
async fn a_copy_older_than_a_pulled_change_still_conflicts() {
    let (server, client) = setup();
    let todos = client.sync_table::<Todo>();
    let (_, id) = pushed_milk(&client).await;
    let read = todos.get(&id).await.unwrap().unwrap();
    // An own push (v2), then another device's change (v3), pulled.
    todos
        .update(&Todo {
            text: "oat milk".to_owned(),
            ..read.clone()
        })
        .await
        .unwrap();
    assert!(client.push().await.unwrap().is_success());
    foreign_edit(&server, &id, "soy milk");
    todos.pull("all", Query::all()).await.unwrap();
    assert_eq!(todos.get(&id).await.unwrap().unwrap().text, "soy milk");

    // A copy from before the pulled change: optimistic concurrency holds.
    todos
        .update(&Todo {
            complete: true,
            ..read
        })
        .await
        .unwrap();
    let pushed = client.push().await.unwrap();
    assert!(!pushed.is_success());
    let errors = client.operation_errors().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].is_conflict(), "{errors:?}");
    assert_eq!(server.get("TodoItem", &id).unwrap()["text"], "soy milk");
}

#[tokio::test]
async fn update_with_edits_the_stored_row() {
    let (server, client) = setup();
    let todos = client.sync_table::<Todo>();
    let (_, id) = pushed_milk(&client).await;
    foreign_edit(&server, &id, "soy milk");
    todos.pull("all", Query::all()).await.unwrap();

    let done = todos
        .update_with(&id, |todo| todo.complete = true)
        .await
        .unwrap();
    assert_eq!((done.text.as_str(), done.complete), ("soy milk", true));
    assert!(client.push().await.unwrap().is_success());
    let row = server.get("TodoItem", &id).unwrap();
    assert_eq!(
        (row["text"].clone(), row["complete"].clone()),
        (json!("soy milk"), json!(true))
    );

    assert!(matches!(
        todos.update_with("missing", |t| t.complete = false).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        todos
            .update_with(&id, |t| t.id = Some("other".to_owned()))
            .await,
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(
        client.pending_operations().unwrap(),
        0,
        "refused edits queue nothing"
    );
}
