//! The local side of a push: the queue and row changes that answers lead to
//! (an op completed, failed, folded with a follow-up, resolved for the server
//! or resent for the client), each one store batch committed through the
//! [`Queue`](crate::queue::Queue).

use serde_json::Value;
use tidesync_protocol::Item;
use tidesync_protocol::system::{CREATED_AT, ID, UPDATED_AT, VERSION, is_system_property};

use super::{Outgoing, PushRun};
use crate::events::ChangeEvent;
use crate::model::{InvalidItem, OpKind, OpState, Operation, OperationError, UNMAPPED_COLUMN};
use crate::queue::{
    Queue, conform_in_place, conform_item, id_only, overlay_server_copy, sent_form, split_attempts,
    with_server_unmapped,
};
use crate::store::{StoreError, Write, WriteBatch};

/// An acknowledged op: the server's copy, and the op's row when it was marked
/// attempted (`None`: not known, read it).
pub(super) struct Acked {
    pub(super) op: Operation,
    pub(super) server_item: Option<Item>,
    pub(super) row_when_marked: Option<Option<Item>>,
}

impl PushRun {
    /// Completes acknowledged ops of different items in one store write: drops
    /// each op and stores the server's copy, without overwriting a local edit
    /// queued behind it meanwhile. An op whose server copy does not fit the
    /// local table is not completed: it fails with an error record of its own,
    /// and the push goes on.
    pub(super) fn complete_ops(
        &mut self,
        done: Vec<(Operation, Option<Item>)>,
    ) -> Result<(), StoreError> {
        self.complete_acked(
            done.into_iter()
                .map(|(op, server_item)| Acked {
                    op,
                    server_item,
                    row_when_marked: None,
                })
                .collect(),
        )
    }

    /// [`complete_ops`](Self::complete_ops) for ops that may carry their row as
    /// it was when they were marked attempted: an item with no op queued behind
    /// its own has not changed since (local writes queue one; pulls skip items
    /// with ops; a push holds the sync lock), so that row is used rather than
    /// read again.
    pub(super) fn complete_acked(&mut self, mut done: Vec<Acked>) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let mut completed = Vec::with_capacity(done.len());
        let mut bad = Vec::new();
        {
            let mut queue = self.engine.lock_queue();
            let mut rows = Vec::with_capacity(done.len());
            let mut unknown: Vec<usize> = Vec::new();
            for (at, acked) in done.iter_mut().enumerate() {
                let op = &acked.op;
                match acked.row_when_marked.take() {
                    Some(row) if !queue.has_other_ops(&op.table, &op.item_id, &op.id) => {
                        rows.push(row);
                    }
                    _ => {
                        rows.push(None);
                        unknown.push(at);
                    }
                }
            }
            if !unknown.is_empty() {
                let keys: Vec<(&str, &str)> = unknown
                    .iter()
                    .map(|&at| (done[at].op.table.as_str(), done[at].op.item_id.as_str()))
                    .collect();
                let read = self.engine.store.get_many(&keys)?;
                for (&at, row) in unknown.iter().zip(read) {
                    rows[at] = row;
                }
            }
            let mut batch = WriteBatch::new();
            for (acked, row) in done.into_iter().zip(rows) {
                let Acked {
                    op, server_item, ..
                } = acked;
                let version = |item: Option<&Item>| {
                    item.and_then(|i| i.get(VERSION))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                let before = version(row.as_ref());
                let after = version(server_item.as_ref());
                let queued = queue.get(&op.id).is_some();
                let follow_up = queue.follow_up(&op);
                match self.completion(&op, server_item, row, queued, follow_up, &mut batch)? {
                    Ok(()) => {
                        if op.kind != OpKind::Delete && after.is_some() {
                            queue.record_own_write(&op.table, &op.item_id, before, after);
                        }
                        queue.clear_in_flight(&op.id);
                        completed.push(op);
                    }
                    Err((reason, server_item)) => {
                        // A pushed op comes without its item (the queue holds it).
                        let mut op = op;
                        if op.item.is_none() {
                            op.item = queue.get(&op.id).and_then(|queued| queued.item.clone());
                        }
                        bad.push((op, server_item, reason));
                    }
                }
            }
            queue.commit_owned(&*self.engine.store, &mut batch)?;
        }
        self.result.pushed += completed.len() as u64;
        for op in completed {
            self.engine.emit(ChangeEvent::Pushed {
                table: op.table,
                id: op.item_id,
                kind: op.kind,
            });
        }
        for (op, server_item, reason) in bad {
            tracing::warn!(table = %op.table, id = %op.item_id, %reason, "the server's copy does not fit the local table");
            // What was sent: the attempt the op keeps, or else its row (see
            // `PushRun::prepare`).
            let sent = match op.item.clone() {
                Some(item) => Some(split_attempts(item).0),
                None if op.kind != OpKind::Delete => self
                    .engine
                    .store
                    .get(&op.table, &op.item_id)?
                    .map(|row| sent_form(row).0),
                None => None,
            };
            let record = OperationError {
                operation_id: op.id.clone(),
                operation_version: op.version,
                kind: op.kind,
                table: op.table.clone(),
                item_id: op.item_id.clone(),
                status: None,
                item: sent,
                server_item,
                raw_result: None,
                message: format!(
                    "the server applied the change, but its copy does not fit the local table: {reason}"
                ),
            };
            self.fail_with_record(&op, record)?;
        }
        Ok(())
    }

    /// The writes that complete one acknowledged op, given its item's current
    /// row, whether the op is still queued and the op queued behind it; the
    /// caller holds the queue lock. The inner error: the server's copy does not
    /// fit the local table (nothing was added to `batch`), with that copy.
    fn completion(
        &self,
        op: &Operation,
        server_item: Option<Item>,
        row: Option<Item>,
        queued: bool,
        follow_up: Option<Operation>,
        batch: &mut WriteBatch,
    ) -> Result<Result<(), (InvalidItem, Option<Item>)>, StoreError> {
        let server = match server_item {
            Some(mut server) if server.get(ID).is_some() => {
                let def = self.engine.tables.get(&*self.engine.store, &op.table)?;
                if let Err(reason) = conform_in_place(&def, &mut server, true) {
                    return Ok(Err((reason, Some(server))));
                }
                Some(server)
            }
            _ => None,
        };
        if queued {
            batch.push(Write::DeleteOperation { id: op.id.clone() });
        }
        batch.push(Write::DeleteError {
            operation_id: op.id.clone(),
        });
        let Some(server) = server else {
            return Ok(Ok(()));
        };
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
        Ok(Ok(()))
    }

    /// Marks an op failed (if it is still queued) and records its error.
    pub(super) fn fail_op(
        &self,
        op: &Operation,
        error: Option<OperationError>,
    ) -> Result<(), StoreError> {
        let mut queue = self.engine.lock_queue();
        queue.clear_in_flight(&op.id);
        let mut batch = WriteBatch::new();
        if let Some(mut current) = queue.get(&op.id).cloned() {
            current.state = OpState::Failed;
            if error.is_some() {
                // The server answered the last attempt and refused it: the
                // attempts before it are no longer unanswered candidates.
                current.item = current.item.map(|item| split_attempts(item).0);
            }
            batch.push(Write::PutOperation(current));
            if let Some(error) = error {
                batch.push(Write::PutError(error));
            }
        }
        queue.commit(&*self.engine.store, &batch)
    }

    /// Fails an op with its error record: announced, counted in the result,
    /// and its item's later ops wait for the next push.
    pub(super) fn fail_with_record(
        &mut self,
        op: &Operation,
        record: OperationError,
    ) -> Result<(), StoreError> {
        self.fail_op(op, Some(record.clone()))?;
        self.engine.emit(ChangeEvent::PushFailed {
            table: op.table.clone(),
            id: op.item_id.clone(),
            status: record.status,
        });
        self.result.errors.push(record);
        self.blocked.insert((op.table.clone(), op.item_id.clone()));
        Ok(())
    }

    /// An insert or update whose local row is gone: recorded as an error, and
    /// its item's later ops wait for the next push.
    pub(super) fn missing_row(&mut self, op: Operation) -> Result<(), StoreError> {
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
        self.fail_with_record(&op, error)
    }

    /// An op that failed (or was cut off by a crash) while a later write of the
    /// same item was queued behind it: now that it is no longer on the wire, the
    /// two collapse as the matrix says. A follow-up update folds into the op; a
    /// follow-up delete replaces it (a delete of an item the server never got
    /// answers 404, which is success). Returns false when the op is gone.
    pub(super) fn fold_follow_up(
        &self,
        queue: &mut Queue,
        op: &mut Operation,
    ) -> Result<bool, StoreError> {
        let Some(next) = queue.follow_up(op) else {
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
        queue.commit(&*self.engine.store, &batch)?;
        Ok(keep)
    }

    /// Server wins: drop the op and keep the server's copy locally. The inner
    /// error: the server's copy does not fit the local table.
    pub(super) fn take_server(
        &self,
        op: &Operation,
        server: &Item,
    ) -> Result<Result<(), InvalidItem>, StoreError> {
        let mut queue = self.engine.lock_queue();
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
            let def = self.engine.tables.get(&*self.engine.store, &op.table)?;
            let row = match conform_item(&def, server, true) {
                Ok(row) => row,
                Err(reason) => return Ok(Err(reason)),
            };
            batch.push(Write::PutItem {
                table: op.table.clone(),
                item: row,
            });
        }
        queue.clear_in_flight(&op.id);
        queue.commit(&*self.engine.store, &batch)?;
        Ok(Ok(()))
    }

    /// Client wins or merge: store `item` locally with the server's version and
    /// resend it as an update (or the delete again) conditioned on that version.
    /// The inner error: `item` (with the server's properties the table does not
    /// define) does not fit the local table.
    pub(super) fn retry_with(
        &self,
        op: &Operation,
        item: Item,
        server: &Item,
    ) -> Result<Result<(Operation, Outgoing), InvalidItem>, StoreError> {
        let mut queue = self.engine.lock_queue();
        let server_version = server
            .get(VERSION)
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut op = queue.get(&op.id).cloned().unwrap_or_else(|| op.clone());
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
            let def = self.engine.tables.get(&*self.engine.store, &op.table)?;
            item = with_server_unmapped(&def, item, server);
            let mut local = match conform_item(&def, &item, true) {
                Ok(local) => local,
                Err(reason) => return Ok(Err(reason)),
            };
            if let Some(v) = &server_version {
                local.insert(VERSION.to_owned(), Value::String(v.clone()));
            }
            let row = self.engine.store.get(&op.table, &op.item_id)?;
            // The row is what the op last sent unless its `item` keeps that
            // (see `PushRun::prepare`): keep it before the row changes.
            if let Some(row) = row.as_ref().filter(|_| op.item.is_none()) {
                op.item = Some(sent_form(row.clone()).0);
            }
            let row = row.unwrap_or_default();
            batch.push(Write::PutItem {
                table: op.table.clone(),
                item: overlay_server_copy(row, local),
            });
            // The server has the item now: an insert becomes an update.
            op.kind = OpKind::Update;
        }
        op.base = Some(server.clone());
        batch.push(Write::PutOperation(op.clone()));
        queue.commit(&*self.engine.store, &batch)?;
        let send = Outgoing {
            kind: op.kind,
            item,
            if_match: server_version,
        };
        Ok(Ok((op, send)))
    }
}
