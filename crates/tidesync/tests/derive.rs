//! `#[derive(SyncItem)]` through the facade: the schema comes from the type, and
//! what the derive declares is exactly what serde writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::{Deserialize, Serialize};
use tidesync::{Client, ColumnType, MemoryStore, Query, SyncItem, TableDef, col};
use tidesync_transport_mock::MockServer;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SyncItem)]
#[tidesync(table = "TodoItem")]
#[serde(rename_all = "camelCase")]
struct Todo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    text: String,
    is_done: bool,
    priority: Option<i64>,
    weight: f64,
    #[serde(with = "time::serde::rfc3339::option")]
    due_at: Option<time::OffsetDateTime>,
    tags: Vec<String>,
    #[serde(rename = "Owner")]
    owner_name: Option<String>,
    #[serde(skip)]
    cached_len: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
}

fn todo(text: &str) -> Todo {
    Todo {
        id: None,
        text: text.to_owned(),
        is_done: false,
        priority: Some(3),
        weight: 1.5,
        due_at: Some(time::macros::datetime!(2026-12-24 18:00 UTC)),
        tags: vec!["home".to_owned()],
        owner_name: Some("ana".to_owned()),
        cached_len: 0,
        version: None,
    }
}

#[test]
fn the_definition_comes_from_the_type() {
    let expected = TableDef::new("TodoItem")
        .column("text", ColumnType::String)
        .column("isDone", ColumnType::Bool)
        .column("priority", ColumnType::Integer)
        .column("weight", ColumnType::Real)
        .column("dueAt", ColumnType::DateTime)
        .column("tags", ColumnType::Json)
        .column("Owner", ColumnType::String);
    assert_eq!(Todo::TABLE, "TodoItem");
    assert_eq!(Todo::table_def(), expected);
    Todo::table_def().validate().expect("a valid definition");
}

/// Every property serde writes is a declared column or a system property, and
/// every declared column is a property serde writes: the derive and serde agree.
#[test]
fn the_declared_columns_are_exactly_the_properties_serde_writes() {
    let written = serde_json::to_value(Todo {
        id: Some("a".to_owned()),
        version: Some("v".to_owned()),
        ..todo("x")
    })
    .expect("serializes");
    let mut written: Vec<String> = written
        .as_object()
        .expect("an object")
        .keys()
        .filter(|k| !matches!(k.as_str(), "id" | "version"))
        .cloned()
        .collect();
    let mut declared: Vec<String> = Todo::table_def()
        .columns()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    written.sort();
    declared.sort();
    assert_eq!(written, declared);
}

#[tokio::test]
async fn a_typed_table_round_trips_through_the_store_and_the_server() {
    let server = MockServer::new();
    server.add_table("TodoItem");
    let client = Client::builder()
        .store(MemoryStore::new())
        .define::<Todo>()
        .transport(server.transport())
        .build()
        .expect("client");
    let todos = client.sync_table::<Todo>();
    assert_eq!(todos.name(), "TodoItem");

    let stored = todos.insert(&todo("buy milk")).await.expect("insert");
    let id = stored.id.clone().expect("an id");
    assert_eq!(
        Todo {
            id: None,
            ..stored.clone()
        },
        todo("buy milk")
    );
    assert!(client.push().await.expect("push").is_success());

    // A second device defined from the same type pulls the row back typed.
    let other = Client::builder()
        .store(MemoryStore::new())
        .define::<Todo>()
        .transport(server.transport())
        .build()
        .expect("client");
    let theirs = other.sync_table::<Todo>();
    theirs.pull("all", Query::all()).await.expect("pull");
    let pulled = theirs.get(&id).await.expect("get").expect("pulled");
    assert_eq!(
        Todo {
            version: None,
            ..pulled.clone()
        },
        stored
    );
    let due = theirs
        .query(&Query::new().filter(col("priority").eq(3)))
        .await
        .expect("query by a typed column");
    assert_eq!(due.len(), 1);
}
