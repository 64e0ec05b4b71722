//! Settling one answer of a push: success, a lost acknowledgement recognised,
//! a conflict resolved (and the op resent), or a failure recorded.

use serde_json::Value;
use tidesync_protocol::Item;
use tidesync_protocol::system::{ID, VERSION};

use super::{Outgoing, PushRun, Step};
use crate::conflict::{Conflict, Resolution};
use crate::error::TransportError;
use crate::model::{OpKind, Operation, OperationError};
use crate::outcome::PushStatus;
use crate::queue::{op_view, server_view};
use crate::store::StoreError;

impl PushRun {
    /// Deals with the answer to an op: completes it, stops the push, records an
    /// error, or resolves a conflict (retrying with single calls).
    pub(super) async fn settle(
        &mut self,
        mut op: Operation,
        mut send: Outgoing,
        earlier: Vec<Item>,
        first: Result<Option<Item>, TransportError>,
    ) -> Result<Step, StoreError> {
        let mut rounds = 0;
        let mut outcome = first;
        let max_rounds = self.engine.options.max_conflict_rounds;
        loop {
            let error = match outcome {
                Ok(server_item) => {
                    self.complete_ops(vec![(op, server_item)])?;
                    return Ok(Step::Next);
                }
                Err(TransportError::NotFound { .. }) if send.kind == OpKind::Delete => {
                    self.complete_ops(vec![(op, None)])?;
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
                self.complete_ops(vec![(op, Some(server.clone()))])?;
                return Ok(Step::Next);
            }
            // Our earlier attempt was applied but its answer was lost, and a newer
            // local write joined the op since (or a delete replaced it): the
            // server holds our own earlier write, so send the newer content (or
            // the delete) against the server's version, without a conflict.
            if let Some(server) = server_item
                .as_ref()
                .filter(|s| rounds < max_rounds && earlier_write_applied(&send, &earlier, s))
            {
                rounds += 1;
                tracing::debug!(table = %op.table, id = %op.item_id, "conflict is our own earlier write: resending the newer one");
                match self.retry_with(&op, sent_copy(&send), server)? {
                    Ok(next) => (op, send) = next,
                    Err(reason) => return self.record_failure(&op, &send, &error, Some(reason)),
                }
                let Some(next) = self.send_unless_cancelled(&op, &send).await else {
                    return Ok(Step::Stop(PushStatus::CancelledByToken));
                };
                outcome = next;
                continue;
            }
            if matches!(error, TransportError::Conflict { .. }) && rounds < max_rounds {
                rounds += 1;
                let conflict = Conflict {
                    operation: op_view(op.clone()),
                    status: error.status().unwrap_or(409),
                    local_item: Some(sent_copy(&send)),
                    server_item: server_item.clone(),
                    base_item: op.base.clone().map(|mut base| {
                        server_view(&mut base);
                        base
                    }),
                };
                let resolution = self.engine.handler.resolve(&conflict).await;
                tracing::debug!(table = %op.table, id = %op.item_id, ?resolution, "conflict resolution");
                let retry = match (resolution, server_item) {
                    (Resolution::AbortPush, _) => {
                        self.fail_op(&op, None)?;
                        return Ok(Step::Stop(PushStatus::CancelledByOperation));
                    }
                    (Resolution::TakeServer, Some(server)) => {
                        match self.take_server(&op, &server)? {
                            Ok(()) => {
                                self.result.pushed += 1;
                                return Ok(Step::Next);
                            }
                            Err(reason) => {
                                return self.record_failure(&op, &send, &error, Some(reason));
                            }
                        }
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
                match retry {
                    Some(Ok(next)) => {
                        (op, send) = next;
                        let Some(next) = self.send_unless_cancelled(&op, &send).await else {
                            return Ok(Step::Stop(PushStatus::CancelledByToken));
                        };
                        outcome = next;
                        continue;
                    }
                    Some(Err(reason)) => {
                        return self.record_failure(&op, &send, &error, Some(reason));
                    }
                    None => {}
                }
            }
            return self.record_failure(&op, &send, &error, None);
        }
    }

    /// Records a failed op: its error record (the transport's error, or the
    /// item that did not fit the local table), its event, and its item blocked
    /// for the rest of the push.
    fn record_failure(
        &mut self,
        op: &Operation,
        send: &Outgoing,
        error: &TransportError,
        bad_item: Option<crate::model::InvalidItem>,
    ) -> Result<Step, StoreError> {
        let record = OperationError {
            operation_id: op.id.clone(),
            operation_version: op.version,
            kind: op.kind,
            table: op.table.clone(),
            item_id: op.item_id.clone(),
            status: error.status(),
            item: Some(sent_copy(send)),
            server_item: match error {
                TransportError::Conflict { server_item, .. } => server_item.clone(),
                _ => None,
            },
            raw_result: error.raw().map(str::to_owned),
            message: match bad_item {
                Some(reason) => format!("{error}; resolving it failed: {reason}"),
                None => error.to_string(),
            },
        };
        self.fail_with_record(op, record)?;
        Ok(Step::Next)
    }

    /// [`send`](Self::send) for `op`, or `None` when the push's token fires first.
    pub(super) async fn send_unless_cancelled(
        &self,
        op: &Operation,
        send: &Outgoing,
    ) -> Option<Result<Option<Item>, TransportError>> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => None,
            outcome = self.send(&op.table, &op.item_id, send) => Some(outcome),
        }
    }

    async fn send(
        &self,
        table: &str,
        id: &str,
        send: &Outgoing,
    ) -> Result<Option<Item>, TransportError> {
        let transport = &self.engine.transport;
        match send.kind {
            OpKind::Insert => transport.insert(table, &send.item).await.map(Some),
            OpKind::Update => transport
                .replace(table, &send.item, send.if_match.as_deref())
                .await
                .map(Some),
            OpKind::Delete => transport
                .delete(table, id, send.if_match.as_deref())
                .await
                .map(|()| None),
        }
    }
}

/// True when the server's copy already equals what an insert or update sends:
/// every property sent has the same value on the server (deletes never match,
/// since a server copy that still exists means the delete did not happen).
fn echoes(send: &Outgoing, server: &Item) -> bool {
    send.kind != OpKind::Delete && is_live(server) && holds(server, &send.item)
}

/// True when the server's copy is what one of this op's earlier attempts wrote
/// (each got no answer, so any may have been applied): for an insert or
/// update, everything that attempt sent; for a delete, the fields of its
/// snapshot (the row as the app saw it when deleting; a snapshot with nothing
/// but an id proves nothing) or of an attempt of the op it replaced.
fn earlier_write_applied(send: &Outgoing, earlier: &[Item], server: &Item) -> bool {
    is_live(server)
        && (earlier.iter().any(|e| holds(server, e))
            || (send.kind == OpKind::Delete
                && send.item.keys().any(|k| k != ID)
                && holds(server, &send.item)))
}

fn is_live(server: &Item) -> bool {
    server.get("deleted").and_then(Value::as_bool) != Some(true)
}

/// Every property of `sent` has the same value in `server`.
fn holds(server: &Item, sent: &Item) -> bool {
    sent.iter()
        .all(|(k, v)| server.get(k).unwrap_or(&Value::Null) == v)
}

/// The client's copy as sent, with the version it was conditioned on.
pub(super) fn sent_copy(send: &Outgoing) -> Item {
    let mut item = send.item.clone();
    if let Some(v) = &send.if_match {
        item.insert(VERSION.to_owned(), Value::String(v.clone()));
    }
    item
}
