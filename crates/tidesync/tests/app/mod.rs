//! The row types and client the facade's app-level tests share.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde::{Deserialize, Serialize};
use tidesync::{Client, MemoryStore, SyncItem};
use tidesync_transport_mock::MockServer;

/// The tutorial's item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SyncItem)]
#[tidesync(table = "TodoItem")]
pub struct Todo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub text: String,
    pub complete: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A second table, for changes a query of the first must not see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, SyncItem)]
pub struct Note {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub body: String,
}

pub fn todo(text: &str, complete: bool) -> Todo {
    Todo {
        id: None,
        text: text.to_owned(),
        complete,
        version: None,
    }
}

pub fn note(body: &str) -> Note {
    Note {
        id: None,
        body: body.to_owned(),
    }
}

/// A mock server with both tables.
pub fn server() -> MockServer {
    let server = MockServer::new();
    server.add_table("TodoItem");
    server.add_table("Note");
    server
}

/// A client on the in-memory store with both tables defined from their types.
pub fn client(server: &MockServer) -> Client {
    Client::builder()
        .store(MemoryStore::new())
        .define::<Todo>()
        .define::<Note>()
        .transport(server.transport())
        .build()
        .unwrap()
}
