//! [`MockTransport`]: the [`Transport`] a client uses to reach a [`MockServer`](crate::MockServer).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use serde_json::Value;
use tidesync_core::{
    BatchOperation, BatchOutcome, ChangeFeed, OpKind, Page, ReadRequest, Transport, TransportError,
};
use tidesync_protocol::{Item, ItemExt, system};
use tracing::debug;

use crate::calls::{Call, CallKind, CallOutcome, CallSlot};
use crate::faults::Fault;
use crate::model::State;
use crate::{Shared, lock};

/// One client's handle onto a [`MockServer`](crate::MockServer), from
/// [`MockServer::transport`](crate::MockServer::transport).
///
/// Clones share the handle's offline switch; each `transport()` call makes a new switch,
/// so one client can be offline while another reaches the same server.
#[derive(Clone)]
pub struct MockTransport {
    shared: Arc<Shared>,
    offline: Arc<AtomicBool>,
}

impl std::fmt::Debug for MockTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockTransport")
            .field("offline", &self.offline.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl MockTransport {
    pub(crate) fn new(shared: Arc<Shared>) -> MockTransport {
        MockTransport {
            shared,
            offline: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Cuts this client off the network (or reconnects it): its calls fail with
    /// [`TransportError::Network`] without reaching the server, while other transports of
    /// the same server carry on.
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::SeqCst);
    }

    /// True while this handle is switched offline.
    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::SeqCst)
    }

    /// Runs one call through the server: latency, arrival (logged, fault decided, gate
    /// taken), the wait at the gate, then `apply` under the lock unless a fault says
    /// otherwise. The lock is never held across an await.
    async fn call<T>(
        &self,
        mut call: Call,
        apply: impl FnOnce(&mut State) -> Result<T, TransportError> + Send,
    ) -> Result<T, TransportError> {
        let latency = lock(&self.shared).faults.latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let kind = call.kind;
        let (seq, fault, gate) = {
            let mut state = lock(&self.shared);
            let offline = self.is_offline() || state.faults.offline;
            let (fault, gate) = if offline {
                (Some(Fault::Network), None)
            } else {
                let fault = state.faults.next_fault();
                let gate = if kind.is_write() {
                    state.gates.pop_front()
                } else {
                    None
                };
                (fault, gate)
            };
            let seq = state.next_call_seq;
            state.next_call_seq += 1;
            call.outcome = CallOutcome::Network;
            state.calls.push(CallSlot {
                seq,
                call,
                finished: false,
            });
            (seq, fault, gate)
        };
        if let Some(gate) = gate {
            gate.pass().await;
        }
        let mut state = lock(&self.shared);
        let result = match fault {
            None => apply(&mut state),
            Some(Fault::CommitThenLoseResponse) => {
                if kind.is_write() {
                    let _ = apply(&mut state);
                }
                Err(Fault::CommitThenLoseResponse.error())
            }
            Some(fault) => Err(fault.error()),
        };
        let outcome = CallOutcome::of(&result);
        debug!(?kind, seq, ?fault, ?outcome, "mock server call");
        if let Some(slot) = state.calls.iter_mut().rev().find(|slot| slot.seq == seq) {
            slot.call.outcome = outcome;
            slot.finished = true;
        }
        result
    }
}

#[async_trait]
impl Transport for MockTransport {
    async fn read(&self, request: &ReadRequest) -> Result<Page, TransportError> {
        let call = Call {
            kind: CallKind::Read,
            table: request.table.clone(),
            item_id: None,
            if_match: None,
            query: Some(request.query.clone()),
            include_deleted: request.include_deleted,
            body: None,
            outcome: CallOutcome::Ok,
        };
        self.call(call, |state| state.read(request)).await
    }

    async fn insert(&self, table: &str, item: &Item) -> Result<Item, TransportError> {
        let call = write_call(CallKind::Insert, table, item.id(), None, Some(item));
        self.call(call, |state| state.insert(table, item)).await
    }

    async fn replace(
        &self,
        table: &str,
        item: &Item,
        if_match: Option<&str>,
    ) -> Result<Item, TransportError> {
        let call = write_call(CallKind::Replace, table, item.id(), if_match, Some(item));
        self.call(call, |state| state.replace(table, item, if_match))
            .await
    }

    async fn delete(
        &self,
        table: &str,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), TransportError> {
        let call = write_call(CallKind::Delete, table, Some(id), if_match, None);
        match self
            .call(call, |state| state.delete(table, id, if_match))
            .await
        {
            // A delete's 404 or 410 counts as success (the trait's contract).
            Err(TransportError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    /// Opens a feed when the server's feed is enabled
    /// ([`MockServer::set_feed_enabled`](crate::MockServer::set_feed_enabled)). It is not a
    /// logged call and takes no scripted fault, but fails with `Network` while this
    /// transport or the server is offline, and unknown tables answer 404.
    async fn change_feed(&self, tables: &[String]) -> Result<ChangeFeed, TransportError> {
        let mut state = lock(&self.shared);
        if !state.feed.enabled {
            return Err(TransportError::Unsupported("change feed"));
        }
        if self.is_offline() || state.faults.offline {
            return Err(Fault::Network.error());
        }
        if let Some(unknown) = tables.iter().find(|t| !state.tables.contains_key(*t)) {
            return Err(crate::model::unknown_table(unknown));
        }
        Ok(state.feed.subscribe(tables))
    }

    fn supports_batch(&self) -> bool {
        lock(&self.shared).batch_support
    }

    async fn batch(
        &self,
        operations: &[BatchOperation],
    ) -> Result<Vec<BatchOutcome>, TransportError> {
        let table = operations
            .first()
            .map(|op| op.table.as_str())
            .unwrap_or_default();
        let call = write_call(CallKind::Batch, table, None, None, None);
        self.call(call, |state| {
            if !state.batch_support {
                return Err(TransportError::Unsupported("batch push"));
            }
            Ok(operations
                .iter()
                .map(|op| apply_batch_op(state, op))
                .collect())
        })
        .await
    }
}

/// The log entry of a write call, before its outcome is known.
fn write_call(
    kind: CallKind,
    table: &str,
    item_id: Option<&str>,
    if_match: Option<&str>,
    body: Option<&Item>,
) -> Call {
    Call {
        kind,
        table: table.to_owned(),
        item_id: item_id.map(str::to_owned),
        if_match: if_match.map(str::to_owned),
        query: None,
        include_deleted: false,
        body: body.cloned(),
        outcome: CallOutcome::Ok,
    }
}

/// Applies one batch op like the single call of its kind, unless its op id was applied
/// before: then the remembered answer is returned and nothing changes. Only applied ops
/// are remembered, so a refused op (409, 412, ...) is evaluated afresh when retried.
fn apply_batch_op(state: &mut State, op: &BatchOperation) -> BatchOutcome {
    if let Some(remembered) = state.applied_ops.get(&op.operation_id) {
        return BatchOutcome::Ok(remembered.clone());
    }
    let mut body = op.item.clone().unwrap_or_default();
    body.insert(system::ID.to_owned(), Value::String(op.item_id.clone()));
    let result = match op.kind {
        OpKind::Insert => state.insert(&op.table, &body).map(Some),
        OpKind::Update => state
            .replace(&op.table, &body, op.if_match.as_deref())
            .map(Some),
        OpKind::Delete => state
            .delete(&op.table, &op.item_id, op.if_match.as_deref())
            .map(|()| None),
    };
    match result {
        Ok(item) => {
            state
                .applied_ops
                .insert(op.operation_id.clone(), item.clone());
            BatchOutcome::Ok(item)
        }
        Err(error) => BatchOutcome::Err(error),
    }
}
