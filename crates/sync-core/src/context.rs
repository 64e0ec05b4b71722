//! The sync context ([`SyncContext`]): it ties a store, a transport and a
//! conflict handler together ([`Engine`]), runs local writes and reads, starts
//! push and pull runs (`PushRun`, `PullRun`), and resolves recorded errors.

use std::sync::Arc;

use serde_json::Value;
use tidesync_protocol::Item;
use tidesync_protocol::odata::Query;
use tidesync_protocol::system::{ID, VERSION};

use crate::conflict::{ConflictHandler, FailOnConflict};
use crate::engine::{Engine, Options};
use crate::error::{Error, Result};
use crate::events::{ChangeEvent, EVENT_BUFFER};
use crate::model::{OpKind, OpState, Operation, OperationError, TableDef};
use crate::outcome::{PullOptions, PullResult, PushOptions, PushResult, TablePull};
use crate::pull::{PullRun, pull_tables, purge};
use crate::push::PushRun;
use crate::queue::{
    Committed, Queue, Transaction, app_view, conform_item, merge_into, overlay_server_copy,
    sent_form, strip_all_but_version, with_server_unmapped,
};
use crate::status::{StatusCell, SyncStatus};
use crate::store::{LocalStore, QueryResult, Write, WriteBatch};
use crate::table::SyncTable;
use crate::transport::Transport;

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

    /// Opens the context: loads the queue from the store (once; the context
    /// owns it from then on, so one store serves one context at a time).
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
        let mut queue = Queue::load(&*store)?;
        let status = StatusCell::new(queue.count(None), queue.per_table().clone());
        queue.publish_to(status.sender());
        Ok(SyncContext {
            inner: Arc::new(Engine::new(
                store,
                transport,
                self.handler.unwrap_or_else(|| Arc::new(FailOnConflict)),
                queue,
                self.options,
                tokio::sync::broadcast::channel(EVENT_BUFFER).0,
                status,
            )),
        })
    }
}

/// The sync engine: local reads and writes with their queue, push, pull, purge
/// and conflict resolution. Cheap to clone (all clones share one engine).
#[derive(Debug, Clone)]
pub struct SyncContext {
    pub(crate) inner: Arc<Engine>,
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

    /// The sync status, current now and after every change: queued ops (in all
    /// and per table), whether a push or pull is running, the change feed's
    /// state, when push and pull last succeeded and how the last one failed.
    /// A background [`Watcher`](crate::Watcher) reports its failures here too.
    pub fn status(&self) -> tokio::sync::watch::Receiver<SyncStatus> {
        // Under the queue lock: counts published, then subscribed, so no commit
        // falls between the two (commits publish only while someone watches).
        let queue = self.inner.lock_queue();
        queue.publish_now();
        let receiver = self.inner.status.subscribe();
        drop(queue);
        receiver
    }

    /// How many ops of one table are queued.
    pub(crate) fn pending_in(&self, table: &str) -> u64 {
        self.inner.lock_queue().count(Some(table))
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
    /// [`StoreError::InvalidDefinition`](crate::StoreError::InvalidDefinition) and store failures.
    pub fn define_table(&self, def: &TableDef) -> Result<()> {
        def.validate()?;
        self.inner.store.define_table(def)?;
        self.inner.tables.forget(def.name());
        Ok(())
    }

    /// A typed handle on a table (`SyncTable<serde_json::Value>` for untyped use).
    pub fn table<T>(&self, name: impl Into<String>) -> SyncTable<T> {
        SyncTable::new(self.clone(), name.into())
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
    pub(crate) fn write_one(&self, kind: OpKind, table: &str, item: Item) -> Result<Item> {
        let (at, committed) = self.run_transaction(|tx| tx.write(kind, table, item))?;
        committed.take_row(at)
    }

    /// Runs and commits a transaction, then announces its writes (events are
    /// built only when someone listens).
    fn run_transaction<R>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<R>,
    ) -> Result<(R, Committed)> {
        let mut queue = self.inner.lock_queue();
        let mut tx = Transaction::new(&*self.inner.store, &self.inner.tables, &queue);
        let value = f(&mut tx)?;
        let mut committed = tx.finish()?;
        queue.commit_owned(&*self.inner.store, &mut committed.batch)?;
        queue.set_next_sequence(committed.next_sequence);
        drop(queue);
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
        PushRun::spawn(&self.inner, PushOptions::new()).await
    }

    /// Pushes with options (some tables only, a cancellation token).
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub async fn push_with(&self, options: PushOptions) -> Result<PushResult> {
        PushRun::spawn(&self.inner, options).await
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
        PullRun::start(&self.inner, table, query_id, query, PullOptions::default()).await
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
        PullRun::start(&self.inner, table, query_id, query, options).await
    }

    /// Pulls several tables in one call, concurrently: the app's set of tables.
    ///
    /// First one implicit push, when any of the tables has pending ops (every
    /// table's ops when any pull has `push_other_tables`, the default; else the
    /// pulled tables'). Then the pulls run at the same time, each as it would
    /// alone ([`pull_with`](Self::pull_with): cursor, snapshot, first screen,
    /// progress), while other pushes, pulls and purges wait: their requests and
    /// the decoding of the answers overlap, and their writes serialise in the
    /// store, one page per batch. Each table is announced like a single pull
    /// (`SyncStarted` / `SyncFinished` with its name).
    ///
    /// Returns one result per pull, in the order given. A table that fails does
    /// not stop the others. When the push fails, every pull fails with
    /// [`Error::PushFailed`] and nothing is downloaded.
    ///
    /// # Errors
    /// Per pull: as [`pull`](Self::pull); [`Error::InvalidArgument`] for a table
    /// given twice.
    pub async fn pull_tables(
        &self,
        pulls: impl IntoIterator<Item = TablePull>,
    ) -> Vec<Result<PullResult>> {
        pull_tables(&self.inner, pulls.into_iter().collect()).await
    }

    /// Signs out: removes every local row of every table, every queued op (they
    /// are never pushed, so no op of one user goes out under the next user's
    /// credentials), every error record and every pull cursor of every table and
    /// query id, so the next user's pulls start from nothing. Table definitions
    /// stay. Waits for a push or pull that is running to finish first; stop a
    /// [`Watcher`](crate::Watcher) and change the transport's credentials around it.
    /// Live queries see empty results; the status's queue counts, times and last
    /// error are reset.
    ///
    /// # Errors
    /// Store failures (then nothing was removed).
    pub async fn clear_all(&self) -> Result<()> {
        let _sync = self.inner.sync.lock().await;
        let engine = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let batch = WriteBatch {
                writes: vec![Write::Clear],
            };
            engine.lock_queue().commit(&*engine.store, &batch)
        })
        .await
        .map_err(|e| Error::Internal(format!("clear_all failed unexpectedly: {e}")))??;
        self.inner.emit(ChangeEvent::Cleared);
        tracing::info!("cleared every local row, op, error record and cursor");
        Ok(())
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
        purge(&self.inner, table, query_id, query, force).await
    }

    /// How many ops are queued.
    ///
    /// # Errors
    /// Store failures.
    pub fn pending_operations(&self) -> Result<u64> {
        Ok(self.inner.lock_queue().count(None))
    }

    /// Every queued op, in push order.
    ///
    /// # Errors
    /// Store failures.
    pub fn operations(&self) -> Result<Vec<Operation>> {
        Ok(self.inner.lock_queue().all())
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
        let mut queue = self.inner.lock_queue();
        let op = op_for_error(&queue, error)?;
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
        queue.commit(&*self.inner.store, &batch)?;
        drop(queue);
        self.inner.emit(resolved(&op));
        Ok(())
    }

    /// Resolves an error by dropping its op and the local row.
    ///
    /// # Errors
    /// [`Error::OperationChanged`] when the op changed since the error was recorded.
    pub fn cancel_and_discard(&self, error: &OperationError) -> Result<()> {
        let mut queue = self.inner.lock_queue();
        let op = op_for_error(&queue, error)?;
        let mut batch = drop_op(&op);
        batch.push(Write::DeleteItem {
            table: op.table.clone(),
            id: op.item_id.clone(),
        });
        queue.commit(&*self.inner.store, &batch)?;
        drop(queue);
        self.inner.emit(resolved(&op));
        Ok(())
    }

    /// Resolves an error by keeping the op with `item` as its new content (for
    /// "client wins", give it the server's `version`). The op goes back to pending
    /// and is sent by the next push; an insert the server already has (409) is
    /// sent as an update.
    ///
    /// # Errors
    /// [`Error::OperationChanged`] when the op changed since the error was recorded.
    pub fn update_and_retry(&self, error: &OperationError, item: Item) -> Result<()> {
        let mut queue = self.inner.lock_queue();
        let mut op = op_for_error(&queue, error)?;
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
            let current = self.inner.store.get(&op.table, &op.item_id)?;
            // The row is what the op last sent unless its `item` keeps that
            // (see `PushRun::prepare`): keep it before the row changes.
            if let Some(row) = current.as_ref().filter(|_| op.state != OpState::Pending) {
                if op.item.is_none() {
                    op.item = Some(sent_form(row.clone()).0);
                }
            }
            let current = current.unwrap_or_default();
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
        let event = resolved(&op);
        batch.push(Write::PutOperation(op));
        batch.push(Write::DeleteError {
            operation_id: error.operation_id.clone(),
        });
        queue.commit(&*self.inner.store, &batch)?;
        drop(queue);
        self.inner.emit(event);
        Ok(())
    }
}

/// The event a resolution announces.
fn resolved(op: &Operation) -> ChangeEvent {
    ChangeEvent::Resolved {
        table: op.table.clone(),
        id: op.item_id.clone(),
    }
}

/// Checks that an error's op is still queued, unchanged and not being pushed.
fn op_for_error(queue: &Queue, error: &OperationError) -> Result<Operation> {
    match queue.get(&error.operation_id) {
        Some(op) if op.version == error.operation_version && !queue.is_in_flight(&op.id) => {
            Ok(op.clone())
        }
        _ => Err(Error::OperationChanged {
            operation_id: error.operation_id.clone(),
        }),
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
