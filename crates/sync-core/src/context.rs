//! The sync context ([`SyncContext`]) that ties a store, a transport and a
//! conflict handler together, and the table handles ([`SyncTable`]) apps use.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tidesync_protocol::Item;
use tidesync_protocol::odata::Query;
use tidesync_protocol::system::{ID, VERSION};

use crate::conflict::{ConflictHandler, FailOnConflict};
use crate::error::{Error, Result, StoreError};
use crate::events::{ChangeEvent, EVENT_BUFFER, SyncAction};
use crate::model::{
    ColumnType, OpKind, OpState, Operation, OperationError, TableDef, UNMAPPED_COLUMN,
};
use crate::pull::{PullOptions, PullResult};
use crate::push::{PushOptions, PushResult, PushStatus};
use crate::queue::{
    Committed, QueueState, Transaction, app_view, conform_item, merge_into, overlay_server_copy,
    strip_all_but_version, with_server_unmapped,
};
use crate::store::{LocalStore, QueryResult, Write, WriteBatch};
use crate::transport::Transport;

/// Table definitions read from the store, cached.
#[derive(Debug, Default)]
pub(crate) struct TableCache {
    map: RwLock<HashMap<String, Arc<TableDef>>>,
}

impl TableCache {
    pub(crate) fn get(&self, store: &dyn LocalStore, name: &str) -> Result<Arc<TableDef>> {
        if let Some(def) = self.map.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(def.clone());
        }
        let mut def = store
            .table(name)?
            .ok_or_else(|| StoreError::UnknownTable(name.to_owned()))?;
        if def.column_type(UNMAPPED_COLUMN).is_none() {
            // Tables defined before the engine first used them lack the hidden
            // column; growing a table is idempotent, so two racing users agree.
            def = def.column(UNMAPPED_COLUMN, ColumnType::Json);
            store.define_table(&def)?;
        }
        let def = Arc::new(def);
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), def.clone());
        Ok(def)
    }

    fn forget(&self, name: &str) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

/// Engine settings.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub page_size: u64,
    pub max_conflict_rounds: u32,
    pub batch_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            page_size: 100,
            max_conflict_rounds: 3,
            batch_size: 500,
        }
    }
}

/// The shared state behind a [`SyncContext`].
#[derive(Debug)]
pub(crate) struct Inner {
    pub store: Arc<dyn LocalStore>,
    pub transport: Arc<dyn Transport>,
    pub handler: Arc<dyn ConflictHandler>,
    pub queue: Mutex<QueueState>,
    /// Push, pull and purge run one at a time.
    pub sync: tokio::sync::Mutex<()>,
    pub tables: TableCache,
    pub options: Options,
    pub events: tokio::sync::broadcast::Sender<ChangeEvent>,
}

impl Inner {
    /// Announces an event to subscribers (none listening is fine).
    pub(crate) fn emit(&self, event: ChangeEvent) {
        let _ = self.events.send(event);
    }

    /// The queue lock. A panic elsewhere cannot leave the queue state half-changed
    /// (it only holds counters and the in-flight set), so a poisoned lock is reused.
    pub(crate) fn lock_queue(&self) -> MutexGuard<'_, QueueState> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a push on its own task, so that a panic inside a store or transport
    /// surfaces as [`PushStatus::InternalError`] and a dropped caller does not
    /// abandon the push's bookkeeping halfway.
    pub(crate) async fn push(self: &Arc<Self>, options: PushOptions) -> Result<PushResult> {
        self.emit(ChangeEvent::SyncStarted {
            action: SyncAction::Push,
            table: None,
        });
        let inner = self.clone();
        let task = tokio::spawn(async move {
            let _sync = inner.sync.lock().await;
            inner.push_locked(options).await
        });
        let outcome = task.await;
        self.lock_queue().in_flight.clear();
        let result = match outcome {
            Ok(result) => result,
            Err(e) if e.is_panic() => PushResult {
                status: PushStatus::InternalError,
                other_error: Some(format!("push failed unexpectedly: {e}")),
                ..PushResult::default()
            },
            Err(e) => return Err(Error::Internal(e.to_string())),
        };
        self.emit(ChangeEvent::SyncFinished {
            action: SyncAction::Push,
            table: None,
            push_status: Some(result.status),
            ok: result.is_success(),
        });
        Ok(result)
    }

    /// Every queued op, in push order.
    pub(crate) fn queued_ops(&self) -> Result<Vec<Operation>, StoreError> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = self.store.operations(after, 512)?;
            match page.last() {
                Some(last) => after = last.sequence,
                None => return Ok(all),
            }
            all.extend(page);
        }
    }

    /// Checks that an error's op is still queued, unchanged and not being pushed.
    fn op_for_error(&self, state: &QueueState, error: &OperationError) -> Result<Operation> {
        match self.store.operation(&error.operation_id)? {
            Some(op)
                if op.version == error.operation_version && !state.in_flight.contains(&op.id) =>
            {
                Ok(op)
            }
            _ => Err(Error::OperationChanged {
                operation_id: error.operation_id.clone(),
            }),
        }
    }
}

/// Builds a [`SyncContext`].
#[derive(Debug, Default)]
pub struct SyncContextBuilder {
    store: Option<Arc<dyn LocalStore>>,
    transport: Option<Arc<dyn Transport>>,
    handler: Option<Arc<dyn ConflictHandler>>,
    options: Options,
}

impl SyncContextBuilder {
    /// The local store.
    #[must_use]
    pub fn store(self, store: impl LocalStore + 'static) -> Self {
        self.store_arc(Arc::new(store))
    }

    /// The local store, already shared.
    #[must_use]
    pub fn store_arc(mut self, store: Arc<dyn LocalStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The transport.
    #[must_use]
    pub fn transport(self, transport: impl Transport + 'static) -> Self {
        self.transport_arc(Arc::new(transport))
    }

    /// The transport, already shared.
    #[must_use]
    pub fn transport_arc(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// The conflict handler; [`FailOnConflict`] when not set.
    #[must_use]
    pub fn conflict_handler(self, handler: impl ConflictHandler + 'static) -> Self {
        self.conflict_handler_arc(Arc::new(handler))
    }

    /// The conflict handler, already shared.
    #[must_use]
    pub fn conflict_handler_arc(mut self, handler: Arc<dyn ConflictHandler>) -> Self {
        self.handler = Some(handler);
        self
    }

    /// Rows per pull request (default 100; servers may cap it).
    #[must_use]
    pub fn page_size(mut self, rows: u64) -> Self {
        self.options.page_size = rows.max(1);
        self
    }

    /// How many times one push may call the conflict handler for the same op
    /// before recording the conflict as an error (default 3).
    #[must_use]
    pub fn max_conflict_rounds(mut self, rounds: u32) -> Self {
        self.options.max_conflict_rounds = rounds;
        self
    }

    /// Ops per request when the transport offers batch push (default 500).
    #[must_use]
    pub fn batch_size(mut self, ops: usize) -> Self {
        self.options.batch_size = ops.max(1);
        self
    }

    /// Opens the context: reads the queue's last sequence number from the store.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] without a store or transport; store failures.
    pub fn build(self) -> Result<SyncContext> {
        let store = self
            .store
            .ok_or_else(|| Error::InvalidArgument("a sync context needs a store".to_owned()))?;
        let transport = self
            .transport
            .ok_or_else(|| Error::InvalidArgument("a sync context needs a transport".to_owned()))?;
        let next_sequence = store.max_sequence()? + 1;
        Ok(SyncContext {
            inner: Arc::new(Inner {
                store,
                transport,
                handler: self.handler.unwrap_or_else(|| Arc::new(FailOnConflict)),
                queue: Mutex::new(QueueState {
                    next_sequence,
                    ..QueueState::default()
                }),
                sync: tokio::sync::Mutex::new(()),
                tables: TableCache::default(),
                options: self.options,
                events: tokio::sync::broadcast::channel(EVENT_BUFFER).0,
            }),
        })
    }
}

/// The sync engine: local reads and writes with their queue, push, pull, purge
/// and conflict resolution. Cheap to clone (all clones share one engine).
#[derive(Debug, Clone)]
pub struct SyncContext {
    inner: Arc<Inner>,
}

impl SyncContext {
    /// A builder.
    pub fn builder() -> SyncContextBuilder {
        SyncContextBuilder::default()
    }

    /// Subscribes to change events: local writes, pushed and failed ops, pulled
    /// pages, purges and the sync lifecycle. A subscriber that falls more than
    /// 1,024 events behind is told how many it missed
    /// (`RecvError::Lagged`) and should re-query.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ChangeEvent> {
        self.inner.events.subscribe()
    }

    /// Announces an event to subscribers (used by the watcher in `watch.rs`).
    pub(crate) fn emit(&self, event: ChangeEvent) {
        self.inner.emit(event);
    }

    /// The local store.
    pub fn store(&self) -> &Arc<dyn LocalStore> {
        &self.inner.store
    }

    /// The transport.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.transport
    }

    /// Defines (or grows) a local table.
    ///
    /// # Errors
    /// [`StoreError::InvalidDefinition`] and store failures.
    pub fn define_table(&self, def: &TableDef) -> Result<()> {
        def.validate()?;
        self.inner.store.define_table(def)?;
        self.inner.tables.forget(def.name());
        Ok(())
    }

    /// A typed handle on a table (`SyncTable<serde_json::Value>` for untyped use).
    pub fn table<T>(&self, name: impl Into<String>) -> SyncTable<T> {
        SyncTable {
            ctx: self.clone(),
            name: name.into(),
            _item: PhantomData,
        }
    }

    /// Runs local writes across tables as one atomic unit: every item and queue
    /// entry, or none.
    ///
    /// # Errors
    /// The first error the closure returns (nothing is written), or a store failure.
    pub fn transaction<R>(&self, f: impl FnOnce(&mut Transaction<'_>) -> Result<R>) -> Result<R> {
        self.run_transaction(f).map(|(value, _)| value)
    }

    /// One local insert or update in its own transaction; returns the stored row,
    /// moved out of the committed batch rather than copied.
    fn write_one(&self, kind: OpKind, table: &str, item: Item) -> Result<Item> {
        let (at, committed) = self.run_transaction(|tx| tx.write(kind, table, item))?;
        committed.take_row(at)
    }

    /// Runs and commits a transaction, then announces its writes (events are
    /// built only when someone listens).
    fn run_transaction<R>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<R>,
    ) -> Result<(R, Committed)> {
        let mut state = self.inner.lock_queue();
        let mut tx = Transaction::new(&*self.inner.store, &self.inner.tables, &state);
        let value = f(&mut tx)?;
        let committed = tx.commit()?;
        state.next_sequence = committed.next_sequence;
        drop(state);
        if self.inner.events.receiver_count() > 0 {
            for event in committed.events() {
                self.inner.emit(event);
            }
        }
        Ok((value, committed))
    }

    /// One local row.
    ///
    /// # Errors
    /// Unknown table, store failures.
    pub fn get(&self, table: &str, id: &str) -> Result<Option<Item>> {
        Ok(self.inner.store.get(table, id)?.map(app_view))
    }

    /// A local query.
    ///
    /// # Errors
    /// Unknown table or column, store failures.
    pub fn query(&self, table: &str, query: &Query) -> Result<QueryResult> {
        let mut result = self.inner.store.query(table, query)?;
        result.items = result.items.into_iter().map(app_view).collect();
        Ok(result)
    }

    /// Pushes every table's queued ops in sequence order.
    ///
    /// # Errors
    /// Only failures outside the push itself; a push's own failures are in its
    /// [`PushResult::status`] and [`PushResult::errors`].
    pub async fn push(&self) -> Result<PushResult> {
        self.inner.push(PushOptions::new()).await
    }

    /// Pushes with options (some tables only, a cancellation token).
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub async fn push_with(&self, options: PushOptions) -> Result<PushResult> {
        self.inner.push(options).await
    }

    /// Pulls a table. With a query id the pull is incremental: it reads only rows
    /// changed since the last pull of that id. If the table has pending ops they
    /// are pushed first (all tables' by default).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad query id or query (`$select`; `$orderby`,
    /// `$skip` or `$top` with a query id); [`Error::PushFailed`] when the implicit
    /// push did not succeed (nothing is downloaded then); transport and store failures.
    pub async fn pull(
        &self,
        table: &str,
        query_id: Option<&str>,
        query: Query,
    ) -> Result<PullResult> {
        self.inner
            .pull(table, query_id, query, PullOptions::default())
            .await
    }

    /// [`pull`](Self::pull) with options.
    ///
    /// # Errors
    /// As [`pull`](Self::pull).
    pub async fn pull_with(
        &self,
        table: &str,
        query_id: Option<&str>,
        query: Query,
        options: PullOptions,
    ) -> Result<PullResult> {
        self.inner.pull(table, query_id, query, options).await
    }

    /// Deletes local rows (all, or those `query` selects) without contacting the
    /// server, and forgets the cursor of `query_id`. A table with pending ops is
    /// purged only with `force` and no filter, which also drops its ops.
    ///
    /// # Errors
    /// [`Error::PendingOperations`] as above; store failures.
    pub async fn purge(
        &self,
        table: &str,
        query_id: Option<&str>,
        query: Option<Query>,
        force: bool,
    ) -> Result<()> {
        self.inner.purge(table, query_id, query, force).await
    }

    /// How many ops are queued.
    ///
    /// # Errors
    /// Store failures.
    pub fn pending_operations(&self) -> Result<u64> {
        Ok(self.inner.store.count_operations(None)?)
    }

    /// Every queued op, in push order.
    ///
    /// # Errors
    /// Store failures.
    pub fn operations(&self) -> Result<Vec<Operation>> {
        Ok(self.inner.queued_ops()?)
    }

    /// The error records left by pushes, waiting to be resolved.
    ///
    /// # Errors
    /// Store failures.
    pub fn operation_errors(&self) -> Result<Vec<OperationError>> {
        Ok(self.inner.store.errors()?)
    }

    /// Resolves an error by dropping its op and storing `item` (typically the
    /// server's copy) as the local row.
    ///
    /// # Errors
    /// [`Error::OperationChanged`] when the op changed since the error was recorded.
    pub fn cancel_and_update(&self, error: &OperationError, item: Item) -> Result<()> {
        let state = self.inner.lock_queue();
        let op = self.inner.op_for_error(&state, error)?;
        let def = self.inner.tables.get(&*self.inner.store, &op.table)?;
        let mut row = conform_item(&def, &item, true)?;
        row.insert(ID.to_owned(), Value::String(op.item_id.clone()));
        let current = self
            .inner
            .store
            .get(&op.table, &op.item_id)?
            .unwrap_or_default();
        let mut batch = drop_op(&op);
        batch.push(Write::PutItem {
            table: op.table.clone(),
            item: merge_into(current, row),
        });
        Ok(self.inner.store.write(&batch)?)
    }

    /// Resolves an error by dropping its op and the local row.
    ///
    /// # Errors
    /// [`Error::OperationChanged`] when the op changed since the error was recorded.
    pub fn cancel_and_discard(&self, error: &OperationError) -> Result<()> {
        let state = self.inner.lock_queue();
        let op = self.inner.op_for_error(&state, error)?;
        let mut batch = drop_op(&op);
        batch.push(Write::DeleteItem {
            table: op.table.clone(),
            id: op.item_id.clone(),
        });
        Ok(self.inner.store.write(&batch)?)
    }

    /// Resolves an error by keeping the op with `item` as its new content (for
    /// "client wins", give it the server's `version`). The op goes back to pending
    /// and is sent by the next push; an insert the server already has (409) is
    /// sent as an update.
    ///
    /// # Errors
    /// [`Error::OperationChanged`] when the op changed since the error was recorded.
    pub fn update_and_retry(&self, error: &OperationError, item: Item) -> Result<()> {
        let state = self.inner.lock_queue();
        let mut op = self.inner.op_for_error(&state, error)?;
        let mut item = item;
        strip_all_but_version(&mut item);
        item.insert(ID.to_owned(), Value::String(op.item_id.clone()));
        let mut batch = WriteBatch::new();
        if op.kind == OpKind::Delete {
            op.item = Some(item);
        } else {
            let def = self.inner.tables.get(&*self.inner.store, &op.table)?;
            if let Some(server) = &error.server_item {
                item = with_server_unmapped(&def, item, server);
            }
            let row = conform_item(&def, &item, true)?;
            let current = self
                .inner
                .store
                .get(&op.table, &op.item_id)?
                .unwrap_or_default();
            batch.push(Write::PutItem {
                table: op.table.clone(),
                item: match &error.server_item {
                    Some(_) => overlay_server_copy(current, row),
                    None => merge_into(current, row),
                },
            });
            let has_version = item.get(VERSION).is_some_and(|v| !v.is_null());
            if op.kind == OpKind::Insert && error.status == Some(409) && has_version {
                op.kind = OpKind::Update;
            }
        }
        if error.server_item.is_some() {
            op.base = error.server_item.clone();
        }
        op.version += 1;
        op.state = OpState::Pending;
        batch.push(Write::PutOperation(op));
        batch.push(Write::DeleteError {
            operation_id: error.operation_id.clone(),
        });
        Ok(self.inner.store.write(&batch)?)
    }
}

fn drop_op(op: &Operation) -> WriteBatch {
    WriteBatch {
        writes: vec![
            Write::DeleteOperation { id: op.id.clone() },
            Write::DeleteError {
                operation_id: op.id.clone(),
            },
        ],
    }
}

/// A handle on one table, typed by the app's item type `T` (any serde type that
/// serialises to a JSON object with a string `id`), or untyped with the default
/// `T = serde_json::Value`.
#[derive(Debug)]
pub struct SyncTable<T = Value> {
    ctx: SyncContext,
    name: String,
    _item: PhantomData<fn() -> T>,
}

impl<T> Clone for SyncTable<T> {
    fn clone(&self) -> Self {
        Self {
            ctx: self.ctx.clone(),
            name: self.name.clone(),
            _item: PhantomData,
        }
    }
}

fn to_item<T: Serialize>(value: &T) -> Result<Item> {
    match serde_json::to_value(value)? {
        Value::Object(map) => Ok(map),
        other => Err(Error::InvalidArgument(format!(
            "an item must serialise to a JSON object, not {other}"
        ))),
    }
}

fn from_item<T: DeserializeOwned>(item: Item) -> Result<T> {
    Ok(serde_json::from_value(Value::Object(item))?)
}

impl<T: Serialize + DeserializeOwned> SyncTable<T> {
    /// The table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The context this table belongs to.
    pub fn context(&self) -> &SyncContext {
        &self.ctx
    }

    /// Inserts an item locally and queues its insert, in one atomic write. An item
    /// without an id gets one; the stored item is returned.
    ///
    /// # Errors
    /// See [`Transaction::insert`].
    pub async fn insert(&self, item: &T) -> Result<T> {
        let item = to_item(item)?;
        from_item(self.ctx.write_one(OpKind::Insert, &self.name, item)?)
    }

    /// Updates an item locally and queues its update.
    ///
    /// # Errors
    /// See [`Transaction::update`].
    pub async fn update(&self, item: &T) -> Result<T> {
        let item = to_item(item)?;
        from_item(self.ctx.write_one(OpKind::Update, &self.name, item)?)
    }

    /// Deletes an item locally and queues its delete (its `version`, if given,
    /// becomes the delete's `If-Match`).
    ///
    /// # Errors
    /// See [`Transaction::delete`].
    pub async fn delete(&self, item: &T) -> Result<()> {
        let item = to_item(item)?;
        self.ctx.transaction(|tx| tx.delete(&self.name, item))
    }

    /// Deletes an item by id, with the stored row as the delete's snapshot.
    ///
    /// # Errors
    /// See [`Transaction::delete`].
    pub async fn delete_id(&self, id: &str) -> Result<()> {
        self.ctx.transaction(|tx| tx.delete_id(&self.name, id))
    }

    /// One local item.
    ///
    /// # Errors
    /// Store failures, or a row that does not fit `T`.
    pub async fn get(&self, id: &str) -> Result<Option<T>> {
        self.ctx.get(&self.name, id)?.map(from_item).transpose()
    }

    /// A local query.
    ///
    /// # Errors
    /// Store failures, or rows that do not fit `T`.
    pub async fn query(&self, query: &Query) -> Result<Vec<T>> {
        self.ctx
            .query(&self.name, query)?
            .items
            .into_iter()
            .map(from_item)
            .collect()
    }

    /// Counts the local rows a query's filter selects.
    ///
    /// # Errors
    /// Store failures.
    pub async fn count(&self, query: &Query) -> Result<u64> {
        let query = Query {
            filter: query.filter.clone(),
            top: Some(0),
            count: true,
            ..Query::default()
        };
        Ok(self.ctx.query(&self.name, &query)?.count.unwrap_or(0))
    }

    /// Pulls this table. A non-empty `query_id` makes the pull incremental; an
    /// empty one reads the whole query. Pending ops on the table are pushed first.
    ///
    /// # Errors
    /// See [`SyncContext::pull`].
    pub async fn pull(&self, query_id: &str, query: Query) -> Result<PullResult> {
        let id = (!query_id.is_empty()).then_some(query_id);
        self.ctx.pull(&self.name, id, query).await
    }

    /// [`pull`](Self::pull) with options.
    ///
    /// # Errors
    /// See [`SyncContext::pull`].
    pub async fn pull_with(
        &self,
        query_id: &str,
        query: Query,
        options: PullOptions,
    ) -> Result<PullResult> {
        let id = (!query_id.is_empty()).then_some(query_id);
        self.ctx.pull_with(&self.name, id, query, options).await
    }

    /// Purges local rows of this table; see [`SyncContext::purge`].
    ///
    /// # Errors
    /// See [`SyncContext::purge`].
    pub async fn purge(
        &self,
        query_id: Option<&str>,
        query: Option<Query>,
        force: bool,
    ) -> Result<()> {
        self.ctx.purge(&self.name, query_id, query, force).await
    }

    /// Pushes only this table's ops.
    ///
    /// # Errors
    /// See [`SyncContext::push`].
    pub async fn push(&self) -> Result<PushResult> {
        self.ctx
            .push_with(PushOptions::new().tables([self.name.clone()]))
            .await
    }

    /// How many ops of this table are queued.
    ///
    /// # Errors
    /// Store failures.
    pub fn pending_operations(&self) -> Result<u64> {
        Ok(self.ctx.inner.store.count_operations(Some(&self.name))?)
    }
}
