//! Shared set-up for the engine's tests: a `TodoItem` table on a `MemoryStore`
//! and a `MockServer`, and a few helpers to read the queue.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::{Value, json};
use tidesync_core::{
    ColumnType, ConflictHandler, Item, LocalStore, MemoryStore, OpKind, OpState, Operation,
    OperationError, QueryResult, StoreError, SyncContext, SyncTable, TableDef, WriteBatch,
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

/// A transport that runs a hook before every read (told the read's 1-based
/// number) and fails the read when the hook returns an error; everything else
/// goes to the mock. For making things happen while a pull is on the wire.
pub struct OnRead<F> {
    inner: tidesync_transport_mock::MockTransport,
    reads: std::sync::atomic::AtomicU32,
    hook: F,
}

impl<F> OnRead<F>
where
    F: Fn(u32) -> Result<(), tidesync_core::TransportError> + Send + Sync,
{
    pub fn new(inner: tidesync_transport_mock::MockTransport, hook: F) -> Self {
        Self {
            inner,
            reads: Default::default(),
            hook,
        }
    }
}

impl<F> std::fmt::Debug for OnRead<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnRead")
    }
}

#[async_trait::async_trait]
impl<F> tidesync_core::Transport for OnRead<F>
where
    F: Fn(u32) -> Result<(), tidesync_core::TransportError> + Send + Sync,
{
    async fn read(
        &self,
        request: &tidesync_core::ReadRequest,
    ) -> Result<tidesync_core::Page, tidesync_core::TransportError> {
        let n = self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        (self.hook)(n)?;
        self.inner.read(request).await
    }
    async fn insert(
        &self,
        table: &str,
        item: &Item,
    ) -> Result<Item, tidesync_core::TransportError> {
        self.inner.insert(table, item).await
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
}

impl Fixture {
    /// Seeds `id` from the server, then changes it on the server (`theirs`) and
    /// locally (`mine`), so the next push of it conflicts (412).
    pub async fn diverge(&self, id: &str, theirs: &str, mine: &str) {
        self.seed(id, "base").await;
        self.server
            .server_update(TODO, obj(json!({"id": id, "text": theirs})));
        self.todo()
            .update(&json!({"id": id, "text": mine}))
            .await
            .unwrap();
    }
}

/// What a [`HookedStore`] does around each write of the `MemoryStore` under it.
pub trait WriteHook: std::fmt::Debug + Send + Sync {
    /// Before the write: an error refuses it, with nothing written.
    fn before(&self, _batch: &WriteBatch) -> Result<(), StoreError> {
        Ok(())
    }

    /// After the write went in.
    fn after(&self, _batch: &WriteBatch) {}
}

/// A `MemoryStore` whose writes pass through `hook` (a store that fails on cue, or tells
/// a test when something was written).
#[derive(Debug)]
pub struct HookedStore<H> {
    pub inner: MemoryStore,
    pub hook: H,
}

impl<H: WriteHook> HookedStore<H> {
    pub fn new(hook: H) -> Self {
        HookedStore {
            inner: MemoryStore::new(),
            hook,
        }
    }
}

impl<H: WriteHook> LocalStore for HookedStore<H> {
    fn define_table(&self, def: &TableDef) -> Result<(), StoreError> {
        self.inner.define_table(def)
    }
    fn table(&self, name: &str) -> Result<Option<TableDef>, StoreError> {
        self.inner.table(name)
    }
    fn get(&self, table: &str, id: &str) -> Result<Option<Item>, StoreError> {
        self.inner.get(table, id)
    }
    fn query(&self, table: &str, query: &tidesync_core::Query) -> Result<QueryResult, StoreError> {
        self.inner.query(table, query)
    }
    fn load_operations(&self) -> Result<Vec<Operation>, StoreError> {
        self.inner.load_operations()
    }
    fn errors(&self) -> Result<Vec<OperationError>, StoreError> {
        self.inner.errors()
    }
    fn config(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.config(key)
    }
    fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        self.hook.before(batch)?;
        self.inner.write(batch)?;
        self.hook.after(batch);
        Ok(())
    }
}
