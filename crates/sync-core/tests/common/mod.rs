//! Shared set-up for the engine's tests: a `TodoItem` table on a `MemoryStore`
//! and a `MockServer`, and a few helpers to read the queue.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::{Value, json};
use tidesync_core::{
    ColumnType, ConflictHandler, Item, LocalStore, MemoryStore, OpKind, OpState, Operation,
    SyncContext, SyncTable, TableDef,
};
use tidesync_transport_mock::{CallKind, MockServer};

pub const TODO: &str = "TodoItem";
pub const TAGS: &str = "Tag";

pub fn todo_def() -> TableDef {
    TableDef::new(TODO)
        .column("text", ColumnType::String)
        .column("complete", ColumnType::Bool)
}

pub fn tag_def() -> TableDef {
    TableDef::new(TAGS).column("name", ColumnType::String)
}

/// A client on a fresh memory store, talking to `server`.
pub struct Fixture {
    pub server: MockServer,
    pub store: MemoryStore,
    pub client: SyncContext,
}

impl Fixture {
    pub fn new() -> Self {
        Self::build(MockServer::new(), None)
    }

    pub fn with_handler(handler: impl ConflictHandler + 'static) -> Self {
        Self::build(MockServer::new(), Some(Arc::new(handler)))
    }

    pub fn build(server: MockServer, handler: Option<Arc<dyn ConflictHandler>>) -> Self {
        server.add_table(TODO);
        server.add_table(TAGS);
        let store = MemoryStore::new();
        store.define_table(&todo_def()).unwrap();
        store.define_table(&tag_def()).unwrap();
        let client = Self::client_on(&server, &store, handler);
        Self {
            server,
            store,
            client,
        }
    }

    /// A second client (its own store) on the same server.
    pub fn second_client(&self) -> Fixture {
        let store = MemoryStore::new();
        store.define_table(&todo_def()).unwrap();
        store.define_table(&tag_def()).unwrap();
        let client = Self::client_on(&self.server, &store, None);
        Fixture {
            server: self.server.clone(),
            store,
            client,
        }
    }

    pub fn client_on(
        server: &MockServer,
        store: &MemoryStore,
        handler: Option<Arc<dyn ConflictHandler>>,
    ) -> SyncContext {
        let mut builder = SyncContext::builder()
            .store(store.clone())
            .transport(server.transport());
        if let Some(h) = handler {
            builder = builder.conflict_handler_arc(h);
        }
        builder.build().unwrap()
    }

    /// Reopens the client on the same store, as after an app restart.
    pub fn restart(&mut self) {
        self.client = Self::client_on(&self.server, &self.store, None);
    }

    pub fn todo(&self) -> SyncTable<Value> {
        self.client.table(TODO)
    }

    pub fn tags(&self) -> SyncTable<Value> {
        self.client.table(TAGS)
    }

    pub fn ops(&self) -> Vec<Operation> {
        self.client.operations().unwrap()
    }

    /// (kind, state, sequence, version) of every queued op.
    pub fn queue(&self) -> Vec<(OpKind, OpState, u64, u32)> {
        self.ops()
            .into_iter()
            .map(|op| (op.kind, op.state, op.sequence, op.version))
            .collect()
    }

    pub fn local(&self, table: &str, id: &str) -> Option<Item> {
        self.store.get(table, id).unwrap()
    }

    /// The kinds of the write calls the server saw, in order.
    pub fn write_calls(&self) -> Vec<(CallKind, String)> {
        self.server
            .calls()
            .into_iter()
            .filter(|c| c.kind != CallKind::Read)
            .map(|c| (c.kind, c.item_id.clone().unwrap_or_default()))
            .collect()
    }

    pub fn read_calls(&self) -> usize {
        self.server
            .calls()
            .iter()
            .filter(|c| c.kind == CallKind::Read)
            .count()
    }

    /// Inserts an item on the server (as another client would) and pulls it here,
    /// so the local row has a server version and no pending op.
    pub async fn seed(&self, id: &str, text: &str) -> Item {
        let stored = self.server.server_insert(
            TODO,
            obj(json!({"id": id, "text": text, "complete": false})),
        );
        self.todo()
            .pull("seed", tidesync_core::Query::all())
            .await
            .unwrap();
        self.server.clear_calls();
        stored
    }
}

pub fn obj(value: Value) -> Item {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

pub fn text_of(item: &Item) -> &str {
    item.get("text").and_then(Value::as_str).unwrap_or_default()
}
