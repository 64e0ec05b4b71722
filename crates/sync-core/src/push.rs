//! Push: sends queued ops to the server in ascending sequence, applies the
//! server's answers locally, and turns failures into a [`PushResult`].

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;
use tidesync_protocol::Item;
use tidesync_protocol::system::{CREATED_AT, ID, UPDATED_AT, VERSION, is_system_property};
use tokio_util::sync::CancellationToken;

use crate::conflict::{Conflict, Resolution};
use crate::context::Inner;
use crate::error::{StoreError, TransportError};
use crate::events::ChangeEvent;
use crate::model::UNMAPPED_COLUMN;
use crate::model::{OpKind, OpState, Operation, OperationError};
use crate::queue::{
    QueueState, conform_item, overlay_server_copy, server_view, with_server_unmapped,
};
use crate::store::{Write, WriteBatch};
use crate::transport::{BatchOperation, BatchOutcome};

/// How a push ended (the reference client's `MobileServicePushStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PushStatus {
    /// The queue was walked to the end; per-item errors may remain.
    #[default]
    Complete,
    /// A request got no answer; the op stays queued and nothing later was sent.
    CancelledByNetworkError,
    /// The server answered 401; the op stays queued and nothing later was sent.
    CancelledByAuthenticationError,
    /// The local store failed during the push.
    CancelledBySyncStoreError,
    /// The caller's cancellation token fired.
    CancelledByToken,
    /// A conflict handler asked to abort the push.
    CancelledByOperation,
    /// The push machinery itself failed unexpectedly (a panic in a store or transport).
    InternalError,
}

impl PushStatus {
    /// The reference client's numeric code.
    pub fn code(self) -> u32 {
        match self {
            PushStatus::Complete => 0,
            PushStatus::CancelledByNetworkError => 1,
            PushStatus::CancelledByAuthenticationError => 2,
            PushStatus::CancelledBySyncStoreError => 3,
            PushStatus::CancelledByToken => 4,
            PushStatus::CancelledByOperation => 5,
            PushStatus::InternalError => 2_147_483_647,
        }
    }
}

impl std::fmt::Display for PushStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// The outcome of a push.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushResult {
    /// How it ended.
    pub status: PushStatus,
    /// The ops that failed during this push and were not resolved by the conflict
    /// handler. Their records stay in the store until resolved or retried.
    pub errors: Vec<OperationError>,
    /// A failure that is not about one item (a store error, a panic).
    pub other_error: Option<String>,
    /// How many ops the server acknowledged (or that were resolved) in this push.
    pub pushed: u64,
}

impl PushResult {
    /// True when the push completed with no errors of any kind.
    pub fn is_success(&self) -> bool {
        self.status == PushStatus::Complete && self.errors.is_empty() && self.other_error.is_none()
    }
}

/// Options of one push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Only ops of these tables; all tables when `None`.
    pub tables: Option<Vec<String>>,
    /// Cancels the push between ops and while a request is outstanding.
    pub cancel: Option<CancellationToken>,
}

impl PushOptions {
    /// Every table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only these tables.
    #[must_use]
    pub fn tables<I, S>(mut self, tables: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tables = Some(tables.into_iter().map(Into::into).collect());
        self
    }

    /// With a cancellation token.
    #[must_use]
    pub fn cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }
}

/// What one op's push led to.
enum Step {
    /// Go on with the next op (this one succeeded, was resolved, or failed and
    /// stays queued with its item blocked for the rest of the push).
    Next,
    /// Stop the push.
    Stop(PushStatus),
}

/// Where a push is in the queue.
struct Walk {
    /// The sequence of the last op taken.
    after: u64,
    /// Only these tables, when set.
    scope: Option<HashSet<String>>,
    /// Items whose op failed in this push: their later ops wait for the next push.
    blocked: HashSet<(String, String)>,
}

/// A request to send for an op.
struct Outgoing {
    kind: OpKind,
    item: Item,
    if_match: Option<String>,
}

/// What [`Inner::prepare`] made of an op.
enum Prepare {
    /// Marked attempted: send it.
    Send(Prepared),
    /// Resolved or collapsed away meanwhile: nothing to send.
    Gone,
    /// An insert or update whose local row is missing.
    Missing(Operation),
}

/// An op marked attempted, with what to send for it.
struct Prepared {
    op: Operation,
    send: Outgoing,
    /// What an earlier attempt of this insert or update sent, if there was one.
    earlier: Option<Item>,
}

impl Inner {
    /// Runs a push; the caller holds the sync lock.
    pub(crate) async fn push_locked(self: &Arc<Self>, options: PushOptions) -> PushResult {
        let cancel = options.cancel.unwrap_or_default();
        let scope: Option<HashSet<String>> = options.tables.map(|t| t.into_iter().collect());
        let mut result = PushResult::default();
        let mut walk = Walk {
            after: 0,
            scope,
            blocked: HashSet::new(),
        };
        let batch_size = if self.transport.supports_batch() {
            self.options.batch_size.max(1)
        } else {
            1
        };
        let span = tracing::info_span!("push", tables = ?walk.scope, batch_size);
        let _enter = span.enter();
        loop {
            if cancel.is_cancelled() {
                result.status = PushStatus::CancelledByToken;
                break;
            }
            let step = match self
                .push_next(&mut walk, batch_size, &cancel, &mut result)
                .await
            {
                Ok(Some(step)) => step,
                Ok(None) => break,
                Err(e) => {
                    result.other_error = Some(e.to_string());
                    Step::Stop(PushStatus::CancelledBySyncStoreError)
                }
            };
            if let Step::Stop(status) = step {
                result.status = status;
                break;
            }
        }
        tracing::info!(status = %result.status, pushed = result.pushed, errors = result.errors.len(), "push finished");
        result
    }

    /// Pushes the next op (or the next batch of ops); `None` when the queue is done.
    async fn push_next(
        self: &Arc<Self>,
        walk: &mut Walk,
        batch_size: usize,
        cancel: &CancellationToken,
        result: &mut PushResult,
    ) -> Result<Option<Step>, StoreError> {
        let ops = self.next_ops(walk, batch_size)?;
        if ops.is_empty() {
            return Ok(None);
        }
        // Under the queue lock, one store read for every op's row and queued ops;
        // every op of the batch is then marked attempted in one store write,
        // before anything is sent.
        let mut prepared = Vec::with_capacity(ops.len());
        let mut missing = Vec::new();
        let mut marks = WriteBatch::new();
        {
            let mut state = self.lock_queue();
            let keys: Vec<(&str, &str)> = ops
                .iter()
                .map(|op| (op.table.as_str(), op.item_id.as_str()))
                .collect();
            let current = self.store.get_many_with_operations(&keys)?;
            for (op, (row, item_ops)) in ops.iter().zip(current) {
                match self.prepare(op, row, &item_ops, &mut state, &mut marks)? {
                    Prepare::Send(p) => prepared.push(p),
                    Prepare::Gone => {}
                    Prepare::Missing(op) => missing.push(op),
                }
            }
        }
        for op in missing {
            self.missing_row(op, walk, result)?;
        }
        self.store.write(&marks)?;
        if prepared.is_empty() {
            return Ok(Some(Step::Next));
        }
        if batch_size == 1 {
            let Some(Prepared { op, send, earlier }) = prepared.pop() else {
                return Ok(Some(Step::Next));
            };
            let Some(outcome) = self.send_unless_cancelled(&op, &send, cancel).await else {
                return Ok(Some(Step::Stop(PushStatus::CancelledByToken)));
            };
            return self
                .settle(op, send, earlier, outcome, cancel, walk, result)
                .await
                .map(Some);
        }
        let request: Vec<BatchOperation> = prepared
            .iter()
            .map(|p| BatchOperation {
                operation_id: p.op.id.clone(),
                kind: p.send.kind,
                table: p.op.table.clone(),
                item_id: p.op.item_id.clone(),
                item: (p.send.kind != OpKind::Delete).then(|| p.send.item.clone()),
                if_match: p.send.if_match.clone(),
            })
            .collect();
        let outcomes = tokio::select! {
            biased;
            () = cancel.cancelled() => return Ok(Some(Step::Stop(PushStatus::CancelledByToken))),
            outcomes = self.transport.batch(&request) => outcomes,
        };
        let outcomes = match outcomes {
            Ok(outcomes) if outcomes.len() == prepared.len() => outcomes,
            Ok(outcomes) => {
                let message = format!(
                    "batch answered {} outcomes for {} ops",
                    outcomes.len(),
                    prepared.len()
                );
                std::iter::repeat_with(|| {
                    BatchOutcome::Err(TransportError::Protocol(message.clone()))
                })
                .take(prepared.len())
                .collect()
            }
            Err(e @ (TransportError::Network(_) | TransportError::Auth { .. })) => {
                let status = if matches!(e, TransportError::Network(_)) {
                    PushStatus::CancelledByNetworkError
                } else {
                    PushStatus::CancelledByAuthenticationError
                };
                tracing::info!(error = %e, "push stopped");
                for p in &prepared {
                    self.fail_op(&p.op, None)?;
                }
                return Ok(Some(Step::Stop(status)));
            }
            Err(e) => {
                let message = e.to_string();
                std::iter::repeat_with(|| {
                    BatchOutcome::Err(TransportError::Protocol(message.clone()))
                })
                .take(prepared.len())
                .collect()
            }
        };
        // Settle every op of the batch: the server applied the successful ones
        // whatever happens to the others, and they are completed in one store
        // write; refusals go through `settle` one by one.
        let mut done = Vec::new();
        let mut stop = None;
        for (p, outcome) in prepared.into_iter().zip(outcomes) {
            match outcome {
                BatchOutcome::Ok(item) => done.push((p.op, item)),
                BatchOutcome::Err(_) if stop.is_some() => self.fail_op(&p.op, None)?,
                BatchOutcome::Err(e) => {
                    let step = self
                        .settle(p.op, p.send, p.earlier, Err(e), cancel, walk, result)
                        .await?;
                    if let Step::Stop(status) = step {
                        stop = Some(status);
                    }
                }
            }
        }
        result.pushed += done.len() as u64;
        self.complete_ops(done)?;
        Ok(Some(stop.map_or(Step::Next, Step::Stop)))
    }

    /// The next ops in scope, at most `limit`, skipping items blocked by an
    /// earlier failure and stopping before a second op of an item already taken.
    fn next_ops(&self, walk: &mut Walk, limit: usize) -> Result<Vec<Operation>, StoreError> {
        let mut taken: Vec<Operation> = Vec::new();
        let mut keys: HashSet<(String, String)> = HashSet::new();
        let mut after = walk.after;
        loop {
            let ops = self.store.operations(after, limit.max(64))?;
            let Some(last) = ops.last() else {
                break;
            };
            after = last.sequence;
            for op in ops {
                let key = (op.table.clone(), op.item_id.clone());
                if walk.scope.as_ref().is_some_and(|s| !s.contains(&op.table))
                    || walk.blocked.contains(&key)
                {
                    continue;
                }
                if keys.contains(&key) || taken.len() == limit {
                    walk.after = taken.last().map_or(walk.after, |o| o.sequence);
                    return Ok(taken);
                }
                keys.insert(key);
                taken.push(op);
            }
        }
        walk.after = taken.last().map_or(walk.after, |o| o.sequence);
        Ok(taken)
    }

    /// Works out what to send for an op from its current row and queued ops (read
    /// by the caller under the queue lock, which it still holds) and marks it
    /// attempted.
    fn prepare(
        &self,
        listed: &Operation,
        row: Option<Item>,
        ops: &[Operation],
        state: &mut QueueState,
        marks: &mut WriteBatch,
    ) -> Result<Prepare, StoreError> {
        let Some(mut op) = ops.iter().find(|o| o.id == listed.id).cloned() else {
            return Ok(Prepare::Gone); // resolved or collapsed away meanwhile
        };
        if !self.fold_follow_up(&mut op, ops)? {
            return Ok(Prepare::Gone);
        }
        let item = match op.kind {
            OpKind::Delete => Some(op.item.clone().unwrap_or_else(|| id_only(&op.item_id))),
            OpKind::Insert | OpKind::Update => row,
        };
        let Some(mut item) = item else {
            return Ok(Prepare::Missing(op));
        };
        item.retain(|k, _| k == ID || k == VERSION || !is_system_property(k));
        // The server's properties that the local table does not define go back
        // with the row: a v3 update replaces the whole item.
        server_view(&mut item);
        let if_match = item
            .remove(VERSION)
            .and_then(|v| v.as_str().map(str::to_owned))
            .filter(|v| !v.is_empty());
        // An insert or update keeps what it sends in its `item`, so that a later
        // attempt can tell its own earlier write (answered but lost) from a
        // foreign one (see `settle`). A delete's `item` is its snapshot.
        let earlier = match op.kind {
            OpKind::Delete => None,
            OpKind::Insert | OpKind::Update => op.item.replace(item.clone()),
        };
        op.state = OpState::Attempted;
        marks.push(Write::PutOperation(op.clone()));
        state.in_flight.insert(op.id.clone());
        let send = Outgoing {
            kind: op.kind,
            item,
            if_match,
        };
        Ok(Prepare::Send(Prepared { op, send, earlier }))
    }

    /// An insert or update whose local row is gone: recorded as an error, and
    /// its item's later ops wait for the next push.
    fn missing_row(
        &self,
        op: Operation,
        walk: &mut Walk,
        result: &mut PushResult,
    ) -> Result<(), StoreError> {
        let error = OperationError {
            operation_id: op.id.clone(),
            operation_version: op.version,
            kind: op.kind,
            table: op.table.clone(),
            item_id: op.item_id.clone(),
            status: None,
            item: Some(id_only(&op.item_id)),
            server_item: None,
            raw_result: None,
            message: "the local item is missing".to_owned(),
        };
        self.fail_op(&op, Some(error.clone()))?;
        self.emit(ChangeEvent::PushFailed {
            table: op.table.clone(),
            id: op.item_id.clone(),
            status: None,
        });
        result.errors.push(error);
        walk.blocked.insert((op.table, op.item_id));
        Ok(())
    }

    /// An op that failed (or was cut off by a crash) while a later write of the
    /// same item was queued behind it: now that it is no longer on the wire, the
    /// two collapse as the matrix says. A follow-up update folds into the op; a
    /// follow-up delete replaces it (a delete of an item the server never got
    /// answers 404, which is success). Returns false when the op is gone.
    fn fold_follow_up(&self, op: &mut Operation, ops: &[Operation]) -> Result<bool, StoreError> {
        let Some(next) = ops
            .iter()
            .find(|o| o.id != op.id && o.sequence > op.sequence)
            .cloned()
        else {
            return Ok(true);
        };
        let mut batch = WriteBatch::new();
        batch.push(Write::DeleteError {
            operation_id: op.id.clone(),
        });
        let keep = match (op.kind, next.kind) {
            (OpKind::Insert | OpKind::Update, OpKind::Update) => {
                op.version += 1;
                batch.push(Write::PutOperation(op.clone()));
                batch.push(Write::DeleteOperation {
                    id: next.id.clone(),
                });
                batch.push(Write::DeleteError {
                    operation_id: next.id,
                });
                true
            }
            (OpKind::Insert | OpKind::Update, OpKind::Delete) => {
                batch.push(Write::DeleteOperation { id: op.id.clone() });
                false
            }
            _ => return Ok(true),
        };
        tracing::debug!(table = %op.table, id = %op.item_id, kind = ?op.kind, follow_up = ?next.kind, "folded a follow-up op");
        self.store.write(&batch)?;
        Ok(keep)
    }

    /// Deals with the answer to an op: completes it, stops the push, records an
    /// error, or resolves a conflict (retrying with single calls).
    #[allow(clippy::too_many_arguments)]
    async fn settle(
        self: &Arc<Self>,
        mut op: Operation,
        mut send: Outgoing,
        earlier: Option<Item>,
        first: Result<Option<Item>, TransportError>,
        cancel: &CancellationToken,
        walk: &mut Walk,
        result: &mut PushResult,
    ) -> Result<Step, StoreError> {
        let mut rounds = 0;
        let mut outcome = first;
        loop {
            let error = match outcome {
                Ok(server_item) => {
                    self.complete_op(&op, server_item)?;
                    result.pushed += 1;
                    return Ok(Step::Next);
                }
                Err(TransportError::NotFound { .. }) if send.kind == OpKind::Delete => {
                    self.complete_op(&op, None)?;
                    result.pushed += 1;
                    return Ok(Step::Next);
                }
                Err(e @ TransportError::Network(_)) => {
                    tracing::info!(error = %e, "push stopped: network");
                    self.fail_op(&op, None)?;
                    return Ok(Step::Stop(PushStatus::CancelledByNetworkError));
                }
                Err(e @ TransportError::Auth { .. }) => {
                    tracing::info!(error = %e, "push stopped: authentication");
                    self.fail_op(&op, None)?;
                    return Ok(Step::Stop(PushStatus::CancelledByAuthenticationError));
                }
                Err(e) => e,
            };
            let server_item = match &error {
                TransportError::Conflict { server_item, .. } => server_item.clone(),
                _ => None,
            };
            // A lost acknowledgement: the server already holds exactly what we
            // sent (our earlier attempt was applied but its response was lost).
            if let Some(server) = server_item.as_ref().filter(|s| echoes(&send, s)) {
                tracing::debug!(table = %op.table, id = %op.item_id, "conflict is our own earlier write: done");
                self.complete_op(&op, Some(server.clone()))?;
                result.pushed += 1;
                return Ok(Step::Next);
            }
            // Our earlier attempt was applied but its answer was lost, and a newer
            // local write joined the op since (or a delete replaced it): the
            // server holds our own earlier write, so send the newer content (or
            // the delete) against the server's version, without a conflict.
            if let Some(server) = server_item.as_ref().filter(|s| {
                rounds < self.options.max_conflict_rounds
                    && earlier_write_applied(&send, earlier.as_ref(), s)
            }) {
                rounds += 1;
                tracing::debug!(table = %op.table, id = %op.item_id, "conflict is our own earlier write: resending the newer one");
                (op, send) = self.retry_with(&op, sent_copy(&send), server)?;
                let Some(next) = self.send_unless_cancelled(&op, &send, cancel).await else {
                    return Ok(Step::Stop(PushStatus::CancelledByToken));
                };
                outcome = next;
                continue;
            }
            if matches!(error, TransportError::Conflict { .. })
                && rounds < self.options.max_conflict_rounds
            {
                rounds += 1;
                let conflict = Conflict {
                    operation: op.clone(),
                    status: error.status().unwrap_or(409),
                    local_item: Some(sent_copy(&send)),
                    server_item: server_item.clone(),
                    base_item: op.base.clone().map(|mut base| {
                        server_view(&mut base);
                        base
                    }),
                };
                let resolution = self.handler.resolve(&conflict).await;
                tracing::debug!(table = %op.table, id = %op.item_id, ?resolution, "conflict resolution");
                let retry = match (resolution, server_item) {
                    (Resolution::AbortPush, _) => {
                        self.fail_op(&op, None)?;
                        return Ok(Step::Stop(PushStatus::CancelledByOperation));
                    }
                    (Resolution::TakeServer, Some(server)) => {
                        self.take_server(&op, &server)?;
                        result.pushed += 1;
                        return Ok(Step::Next);
                    }
                    (Resolution::KeepClient, Some(server)) => {
                        Some(self.retry_with(&op, sent_copy(&send), &server)?)
                    }
                    (Resolution::Merge(merged), Some(server)) => {
                        Some(self.retry_with(&op, merged, &server)?)
                    }
                    // Fail, or a resolution that needs the server's copy when there is none.
                    _ => None,
                };
                if let Some((next_op, next_send)) = retry {
                    (op, send) = (next_op, next_send);
                    let Some(next) = self.send_unless_cancelled(&op, &send, cancel).await else {
                        return Ok(Step::Stop(PushStatus::CancelledByToken));
                    };
                    outcome = next;
                    continue;
                }
            }
            let record = OperationError {
                operation_id: op.id.clone(),
                operation_version: op.version,
                kind: op.kind,
                table: op.table.clone(),
                item_id: op.item_id.clone(),
                status: error.status(),
                item: Some(sent_copy(&send)),
                server_item: match &error {
                    TransportError::Conflict { server_item, .. } => server_item.clone(),
                    _ => None,
                },
                raw_result: error.raw().map(str::to_owned),
                message: error.to_string(),
            };
            self.fail_op(&op, Some(record.clone()))?;
            self.emit(ChangeEvent::PushFailed {
                table: op.table.clone(),
                id: op.item_id.clone(),
                status: record.status,
            });
            result.errors.push(record);
            walk.blocked.insert((op.table.clone(), op.item_id.clone()));
            return Ok(Step::Next);
        }
    }

    /// [`send`](Self::send) for `op`, or `None` when `cancel` fires first.
    async fn send_unless_cancelled(
        &self,
        op: &Operation,
        send: &Outgoing,
        cancel: &CancellationToken,
    ) -> Option<Result<Option<Item>, TransportError>> {
        tokio::select! {
            biased;
            () = cancel.cancelled() => None,
            outcome = self.send(&op.table, &op.item_id, send) => Some(outcome),
        }
    }

    async fn send(
        &self,
        table: &str,
        id: &str,
        send: &Outgoing,
    ) -> Result<Option<Item>, TransportError> {
        match send.kind {
            OpKind::Insert => self.transport.insert(table, &send.item).await.map(Some),
            OpKind::Update => self
                .transport
                .replace(table, &send.item, send.if_match.as_deref())
                .await
                .map(Some),
            OpKind::Delete => self
                .transport
                .delete(table, id, send.if_match.as_deref())
                .await
                .map(|()| None),
        }
    }

    /// The server acknowledged `op`: drop it and store the server's copy, without
    /// overwriting a local edit queued behind it meanwhile.
    fn complete_op(&self, op: &Operation, server_item: Option<Item>) -> Result<(), StoreError> {
        self.complete_ops(vec![(op.clone(), server_item)])
    }

    /// Completes acknowledged ops of different items in one store write.
    fn complete_ops(&self, done: Vec<(Operation, Option<Item>)>) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let mut state = self.lock_queue();
        let keys: Vec<(&str, &str)> = done
            .iter()
            .map(|(op, _)| (op.table.as_str(), op.item_id.as_str()))
            .collect();
        let current = self.store.get_many_with_operations(&keys)?;
        let mut batch = WriteBatch::new();
        for ((op, server_item), (row, ops)) in done.iter().zip(current) {
            state.in_flight.remove(&op.id);
            self.completion(op, server_item.clone(), row, ops, &mut batch)?;
        }
        self.store.write(&batch)?;
        drop(state);
        for (op, _) in done {
            self.emit(ChangeEvent::Pushed {
                table: op.table,
                id: op.item_id,
                kind: op.kind,
            });
        }
        Ok(())
    }

    /// The writes that complete one acknowledged op, given its item's current row
    /// and ops; the caller holds the queue lock.
    fn completion(
        &self,
        op: &Operation,
        server_item: Option<Item>,
        row: Option<Item>,
        ops: Vec<Operation>,
        batch: &mut WriteBatch,
    ) -> Result<(), StoreError> {
        if ops.iter().any(|o| o.id == op.id) {
            batch.push(Write::DeleteOperation { id: op.id.clone() });
        }
        batch.push(Write::DeleteError {
            operation_id: op.id.clone(),
        });
        let follow_up = ops
            .into_iter()
            .find(|o| o.id != op.id && o.sequence > op.sequence);
        if let Some(server) = server_item.filter(|s| s.get(ID).is_some()) {
            let def = self
                .tables
                .get(&*self.store, &op.table)
                .map_err(into_store_error)?;
            let server = conform_item(&def, &server, true).map_err(into_store_error)?;
            match follow_up {
                None => {
                    batch.push(Write::PutItem {
                        table: op.table.clone(),
                        item: overlay_server_copy(row.unwrap_or_default(), server),
                    });
                }
                Some(mut next) => {
                    // Keep the newer local edit; take only the server's bookkeeping.
                    if next.kind == OpKind::Delete {
                        let snapshot = next.item.get_or_insert_with(|| id_only(&op.item_id));
                        if let Some(v) = server.get(VERSION) {
                            snapshot.insert(VERSION.to_owned(), v.clone());
                        }
                    } else if let Some(mut row) = row {
                        for key in [VERSION, UPDATED_AT, CREATED_AT] {
                            if let Some(v) = server.get(key) {
                                row.insert(key.to_owned(), v.clone());
                            }
                        }
                        // What the server holds of columns the app does not
                        // define is the server's to say (the follow-up sends it back).
                        match server.get(UNMAPPED_COLUMN) {
                            Some(v) => row.insert(UNMAPPED_COLUMN.to_owned(), v.clone()),
                            None => row.remove(UNMAPPED_COLUMN),
                        };
                        batch.push(Write::PutItem {
                            table: op.table.clone(),
                            item: row,
                        });
                    }
                    next.base = Some(server);
                    batch.push(Write::PutOperation(next));
                }
            }
        }
        Ok(())
    }

    /// Marks an op failed (if it is still queued) and records its error.
    fn fail_op(&self, op: &Operation, error: Option<OperationError>) -> Result<(), StoreError> {
        let mut state = self.lock_queue();
        state.in_flight.remove(&op.id);
        let mut batch = WriteBatch::new();
        if let Some(mut current) = self.store.operation(&op.id)? {
            current.state = OpState::Failed;
            batch.push(Write::PutOperation(current));
            if let Some(error) = error {
                batch.push(Write::PutError(error));
            }
        }
        self.store.write(&batch)
    }

    /// Server wins: drop the op and keep the server's copy locally.
    fn take_server(&self, op: &Operation, server: &Item) -> Result<(), StoreError> {
        let mut state = self.lock_queue();
        state.in_flight.remove(&op.id);
        let mut batch = WriteBatch::new();
        batch.push(Write::DeleteOperation { id: op.id.clone() });
        batch.push(Write::DeleteError {
            operation_id: op.id.clone(),
        });
        let deleted = server.get("deleted").and_then(Value::as_bool) == Some(true);
        if deleted {
            batch.push(Write::DeleteItem {
                table: op.table.clone(),
                id: op.item_id.clone(),
            });
        } else {
            let def = self
                .tables
                .get(&*self.store, &op.table)
                .map_err(into_store_error)?;
            let row = conform_item(&def, server, true).map_err(into_store_error)?;
            batch.push(Write::PutItem {
                table: op.table.clone(),
                item: row,
            });
        }
        self.store.write(&batch)
    }

    /// Client wins or merge: store `item` locally with the server's version and
    /// resend it as an update (or the delete again) conditioned on that version.
    fn retry_with(
        &self,
        op: &Operation,
        item: Item,
        server: &Item,
    ) -> Result<(Operation, Outgoing), StoreError> {
        let _state = self.lock_queue();
        let server_version = server
            .get(VERSION)
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut op = self.store.operation(&op.id)?.unwrap_or_else(|| op.clone());
        let mut batch = WriteBatch::new();
        let mut item = item;
        item.retain(|k, _| k == ID || !is_system_property(k));
        item.insert(ID.to_owned(), Value::String(op.item_id.clone()));
        if op.kind == OpKind::Delete {
            let snapshot = op.item.get_or_insert_with(|| id_only(&op.item_id));
            if let Some(v) = &server_version {
                snapshot.insert(VERSION.to_owned(), Value::String(v.clone()));
            }
        } else {
            let def = self
                .tables
                .get(&*self.store, &op.table)
                .map_err(into_store_error)?;
            item = with_server_unmapped(&def, item, server);
            let mut local = conform_item(&def, &item, true).map_err(into_store_error)?;
            if let Some(v) = &server_version {
                local.insert(VERSION.to_owned(), Value::String(v.clone()));
            }
            let row = self.store.get(&op.table, &op.item_id)?.unwrap_or_default();
            batch.push(Write::PutItem {
                table: op.table.clone(),
                item: overlay_server_copy(row, local),
            });
            // The server has the item now: an insert becomes an update.
            op.kind = OpKind::Update;
        }
        op.base = Some(server.clone());
        batch.push(Write::PutOperation(op.clone()));
        self.store.write(&batch)?;
        let send = Outgoing {
            kind: op.kind,
            item,
            if_match: server_version,
        };
        Ok((op, send))
    }
}

/// True when the server's copy already equals what an insert or update sends:
/// every property sent has the same value on the server (deletes never match,
/// since a server copy that still exists means the delete did not happen).
fn echoes(send: &Outgoing, server: &Item) -> bool {
    send.kind != OpKind::Delete && is_live(server) && holds(server, &send.item)
}

/// True when the server's copy is what this op's earlier attempt wrote: for an
/// insert or update, everything the earlier attempt sent; for a delete, the
/// fields of its snapshot (the row as the app saw it when deleting; a snapshot
/// with nothing but an id proves nothing).
fn earlier_write_applied(send: &Outgoing, earlier: Option<&Item>, server: &Item) -> bool {
    is_live(server)
        && match send.kind {
            OpKind::Insert | OpKind::Update => earlier.is_some_and(|e| holds(server, e)),
            OpKind::Delete => send.item.keys().any(|k| k != ID) && holds(server, &send.item),
        }
}

fn is_live(server: &Item) -> bool {
    server.get("deleted").and_then(Value::as_bool) != Some(true)
}

/// Every property of `sent` has the same value in `server`.
fn holds(server: &Item, sent: &Item) -> bool {
    sent.iter()
        .all(|(k, v)| server.get(k).unwrap_or(&Value::Null) == v)
}

fn id_only(id: &str) -> Item {
    Item::from_iter([(ID.to_owned(), Value::String(id.to_owned()))])
}

/// The client's copy as sent, with the version it was conditioned on.
fn sent_copy(send: &Outgoing) -> Item {
    let mut item = send.item.clone();
    if let Some(v) = &send.if_match {
        item.insert(VERSION.to_owned(), Value::String(v.clone()));
    }
    item
}

fn into_store_error(e: crate::error::Error) -> StoreError {
    match e {
        crate::error::Error::Store(s) => s,
        other => StoreError::Backend(Box::new(other)),
    }
}
