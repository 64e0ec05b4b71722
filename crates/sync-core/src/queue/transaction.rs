//! [`Transaction`]: a group of local writes, their queue entries and error
//! clean-up, applied as one store batch.

use std::collections::HashMap;

use serde_json::Value;
use tidesync_protocol::Item;
use tidesync_protocol::system::{ID, VERSION};

use super::Queue;
use super::collapse::{Collapse, collapse};
use super::shape::{
    app_view, conform_owned, merge_into, sent_form, split_attempts, strip_all_but_version,
    with_attempts,
};
use crate::error::{Error, Result};
use crate::events::ChangeEvent;
use crate::model::{OpKind, OpState, Operation};
use crate::store::{LocalStore, Write, WriteBatch};
use crate::tables::TableCache;

/// A group of local writes applied as one atomic store batch. Reads see the
/// writes made earlier in the same transaction.
#[derive(Debug)]
pub struct Transaction<'a> {
    store: &'a dyn LocalStore,
    tables: &'a TableCache,
    queue: &'a Queue,
    next_sequence: u64,
    /// The rows this transaction wrote (`None`: deleted), for its own reads.
    items: HashMap<(String, String), Option<Item>>,
    /// The queued ops of the items this transaction wrote, as they now stand.
    ops: HashMap<(String, String), Vec<Operation>>,
    /// Inserts under an id generated here that are not yet in `items` and `ops`:
    /// the batch positions of their row-and-op writes. Only the caller learns such an id,
    /// from the insert's answer, so they are indexed at the transaction's next
    /// read; a transaction that never reads (a lone insert) never builds the maps.
    unindexed: Vec<usize>,
    batch: WriteBatch,
    /// Each write's kind and the batch position of its row change, for the
    /// change events (built only when someone listens).
    written: Vec<(OpKind, usize)>,
}

impl<'a> Transaction<'a> {
    pub(crate) fn new(store: &'a dyn LocalStore, tables: &'a TableCache, queue: &'a Queue) -> Self {
        Self {
            store,
            tables,
            queue,
            next_sequence: queue.next_sequence(),
            items: HashMap::new(),
            ops: HashMap::new(),
            unindexed: Vec::new(),
            batch: WriteBatch::new(),
            written: Vec::new(),
        }
    }

    /// Inserts an item and queues its insert. An item without an id (or with a
    /// null or empty one) gets a new id: 32 lowercase hex digits.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when the id is already in the local table,
    /// [`Error::QueueRefused`] per the collapse matrix, [`Error::InvalidArgument`]
    /// for a bad id, [`Error::InvalidItem`] for an unknown column or a type mismatch,
    /// [`StoreError`](crate::StoreError) for an unknown table.
    pub fn insert(&mut self, table: &str, item: Item) -> Result<Item> {
        let at = self.write(OpKind::Insert, table, item)?;
        stored_row(&self.batch, at).cloned().map(app_view)
    }

    /// Updates an item (creating the local row if it is missing, as the reference
    /// does) and queues its update. Properties not given keep their stored values.
    ///
    /// # Errors
    /// As [`insert`](Self::insert), but never `AlreadyExists`.
    pub fn update(&mut self, table: &str, item: Item) -> Result<Item> {
        let at = self.write(OpKind::Update, table, item)?;
        stored_row(&self.batch, at).cloned().map(app_view)
    }

    /// Deletes an item locally and queues its delete. The given object is the
    /// delete's snapshot: its `version`, if any, becomes the delete's `If-Match`.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn delete(&mut self, table: &str, item: Item) -> Result<()> {
        self.write(OpKind::Delete, table, item).map(|_| ())
    }

    /// Deletes an item by id, with the stored row as the snapshot.
    ///
    /// # Errors
    /// As [`delete`](Self::delete).
    pub fn delete_id(&mut self, table: &str, id: &str) -> Result<()> {
        let snapshot = match self.get(table, id)? {
            Some(row) => row,
            None => Item::from_iter([(ID.to_owned(), Value::String(id.to_owned()))]),
        };
        self.delete(table, snapshot)
    }

    /// Reads a row as this transaction sees it.
    ///
    /// # Errors
    /// [`StoreError`](crate::StoreError) from the store.
    pub fn get(&mut self, table: &str, id: &str) -> Result<Option<Item>> {
        self.index_fresh();
        let key = (table.to_owned(), id.to_owned());
        let row = match self.items.get(&key) {
            Some(row) => row.clone(),
            None => self.store.get(table, id)?,
        };
        Ok(row.map(app_view))
    }

    /// An update or delete whose `version` is stale only because of this
    /// client's own acknowledged writes since its copy was read takes the row's
    /// current version; a version stale because of anyone else's change stays,
    /// and conflicts at push (see `Queue::record_own_write`).
    fn forgive_own_staleness(&self, table: &str, id: &str, row: &Item, item: &mut Item) {
        let Some(given) = item.get(VERSION) else {
            return;
        };
        let current = row.get(VERSION).unwrap_or(&Value::Null);
        if given == current {
            return;
        }
        if self
            .queue
            .replaced_by_own_writes(table, id, given.as_str(), current.as_str())
        {
            item.insert(VERSION.to_owned(), current.clone());
        }
    }

    /// The row and its ops as this transaction sees them.
    fn row_and_ops(&mut self, table: &str, id: &str) -> Result<(Option<Item>, Vec<Operation>)> {
        self.index_fresh();
        let key = (table.to_owned(), id.to_owned());
        let row = match self.items.get(&key) {
            Some(row) => row.clone(),
            None => self.store.get(table, id)?,
        };
        let ops = match self.ops.get(&key) {
            Some(ops) => ops.clone(),
            None => self.queue.of_item(table, id),
        };
        Ok((row, ops))
    }

    /// Applies one local write to the batch and returns the batch position of its
    /// row change: a [`Write::PutItemAndOperation`] or [`Write::PutItem`] holding
    /// the row as stored, or a [`Write::DeleteItem`]. The row is kept once, there;
    /// callers that hand it back copy it from there ([`stored_row`]) or take it
    /// after the commit.
    pub(crate) fn write(&mut self, kind: OpKind, table: &str, item: Item) -> Result<usize> {
        let def = self.tables.get(self.store, table)?;
        let mut item = item;
        let (id, fresh) = take_id(kind, &mut item)?;
        strip_all_but_version(&mut item);
        let mut item = conform_owned(&def, item, false)?;
        item.insert(ID.to_owned(), Value::String(id.clone()));

        if fresh {
            return Ok(self.insert_fresh(table, id, item));
        }
        let (row, mut ops) = self.row_and_ops(table, &id)?;
        if let Some(row) = &row {
            self.forgive_own_staleness(table, &id, row, &mut item);
        }
        let newest = ops.last().cloned();
        let in_flight = newest
            .as_ref()
            .is_some_and(|op| self.queue.is_in_flight(&op.id));
        let decision = collapse(
            newest.as_ref().map(|op| (op.kind, op.state)),
            in_flight,
            kind,
        )
        .map_err(|reason| Error::QueueRefused {
            table: table.to_owned(),
            id: id.clone(),
            attempted: kind,
            reason,
        })?;
        if kind == OpKind::Insert && row.is_some() {
            return Err(Error::AlreadyExists {
                table: table.to_owned(),
                id,
            });
        }
        // An insert or update that may be on the server (attempted, failed, or
        // on the wire) and keeps no attempt in its `item` was last sent as its
        // row is now (a push marks such an op without copying the row, see
        // `PushRun::prepare`): before this write changes the row, the op keeps
        // what that row sends as its attempt.
        let newest = match newest {
            Some(mut existing) if keeps_no_attempt(&existing, in_flight) => {
                if let Some(row) = &row {
                    existing.item = Some(sent_form(row.clone()).0);
                    if let Some(last) = ops.last_mut() {
                        *last = existing.clone();
                    }
                    if decision == Collapse::Enqueue {
                        self.batch.push(Write::PutOperation(existing.clone()));
                    }
                }
                Some(existing)
            }
            other => other,
        };

        // The op's base: the row as it was, when it carries a server version.
        let base = row
            .as_ref()
            .filter(|r| r.get(VERSION).is_some_and(|v| !v.is_null()))
            .cloned();
        let key = (table.to_owned(), id.clone());

        let at = match kind {
            // An insert or update writes its row and its op together.
            OpKind::Insert | OpKind::Update => {
                let stored = match kind {
                    OpKind::Update => merge_into(row.unwrap_or_default(), item),
                    _ => item,
                };
                let op = match (decision, newest) {
                    (Collapse::Merge, Some(mut existing)) => {
                        self.drop_error(&existing.id);
                        existing.version += 1;
                        ops.pop();
                        existing
                    }
                    _ => self.new_op(kind, table, id.clone(), None, base, 1),
                };
                ops.push(op.clone());
                self.items.insert(key.clone(), Some(stored.clone()));
                let at = self.batch.len();
                self.batch.push(Write::PutItemAndOperation {
                    table: table.to_owned(),
                    item: stored,
                    op,
                });
                at
            }
            // A delete removes the row; its item becomes its op's snapshot.
            OpKind::Delete => {
                self.items.insert(key.clone(), None);
                let at = self.batch.len();
                self.batch.push(Write::DeleteItem {
                    table: table.to_owned(),
                    id: id.clone(),
                });
                let snapshot = Some(item);
                match (decision, newest) {
                    (Collapse::Annihilate, Some(existing)) => {
                        self.drop_op(&existing.id);
                        ops.pop();
                    }
                    (Collapse::ReplaceWithDelete, Some(existing)) => {
                        self.drop_op(&existing.id);
                        ops.pop();
                        let base = existing.base.clone();
                        let snapshot = attempt_snapshot(&existing, snapshot);
                        let op = self.new_op(kind, table, id.clone(), snapshot, base, 2);
                        self.batch.push(Write::PutOperation(op.clone()));
                        ops.push(op);
                    }
                    _ => {
                        let op = self.new_op(kind, table, id.clone(), snapshot, base, 1);
                        self.batch.push(Write::PutOperation(op.clone()));
                        ops.push(op);
                    }
                }
                at
            }
        };
        self.written.push((kind, at));
        self.ops.insert(key, ops);
        Ok(at)
    }

    /// An insert under an id generated just now: it has no row and no ops yet, so
    /// nothing is read and the collapse matrix has nothing to say (a new op).
    fn insert_fresh(&mut self, table: &str, id: String, item: Item) -> usize {
        let at = self.batch.len();
        let op = self.new_op(OpKind::Insert, table, id, None, None, 1);
        self.batch.push(Write::PutItemAndOperation {
            table: table.to_owned(),
            item,
            op,
        });
        self.unindexed.push(at);
        self.written.push((OpKind::Insert, at));
        at
    }

    /// Adds the inserts of [`insert_fresh`](Self::insert_fresh) to `items` and
    /// `ops`, copying their row and op from the batch.
    fn index_fresh(&mut self) {
        for at in std::mem::take(&mut self.unindexed) {
            if let Some(Write::PutItemAndOperation { item, op, .. }) = self.batch.writes.get(at) {
                let key = (op.table.clone(), op.item_id.clone());
                self.items.insert(key.clone(), Some(item.clone()));
                self.ops.insert(key, vec![op.clone()]);
            }
        }
    }

    /// A new pending op taking the next sequence number; the caller queues it.
    fn new_op(
        &mut self,
        kind: OpKind,
        table: &str,
        item_id: String,
        snapshot: Option<Item>,
        base: Option<Item>,
        version: u32,
    ) -> Operation {
        let op = Operation {
            id: new_op_id(),
            kind,
            state: OpState::Pending,
            table: table.to_owned(),
            item_id,
            item: snapshot,
            base,
            sequence: self.next_sequence,
            version,
        };
        self.next_sequence += 1;
        op
    }

    fn drop_op(&mut self, op_id: &str) {
        self.batch.push(Write::DeleteOperation {
            id: op_id.to_owned(),
        });
        self.drop_error(op_id);
    }

    fn drop_error(&mut self, op_id: &str) {
        self.batch.push(Write::DeleteError {
            operation_id: op_id.to_owned(),
        });
    }

    /// Ends the transaction: the batch to commit, the next free sequence
    /// number and what the events will say (the caller commits through
    /// [`Queue::commit`], under the queue lock).
    pub(crate) fn finish(self) -> Result<Committed> {
        Ok(Committed {
            next_sequence: self.next_sequence,
            batch: self.batch,
            written: self.written,
        })
    }
}

/// A finished [`Transaction`]: its batch, kept so that the stored rows can be
/// handed back without a copy and the change events built only when wanted.
#[derive(Debug)]
pub(crate) struct Committed {
    /// The sequence number the next new op gets.
    pub next_sequence: u64,
    /// The writes.
    pub batch: WriteBatch,
    written: Vec<(OpKind, usize)>,
}

impl Committed {
    /// The change events of the transaction's writes, in order.
    pub(crate) fn events(&self) -> impl Iterator<Item = ChangeEvent> + '_ {
        self.written.iter().filter_map(|&(kind, at)| {
            let (table, id) = match self.batch.writes.get(at)? {
                Write::PutItem { table, item } | Write::PutItemAndOperation { table, item, .. } => {
                    (table, item.get(ID)?.as_str()?)
                }
                Write::DeleteItem { table, id } => (table, id.as_str()),
                _ => return None,
            };
            Some(ChangeEvent::LocalWrite {
                table: table.clone(),
                id: id.to_owned(),
                kind,
            })
        })
    }

    /// Moves out the row that the write at `at` stored (see [`Transaction::write`]),
    /// as the app sees it.
    pub(crate) fn take_row(mut self, at: usize) -> Result<Item> {
        match self.batch.writes.get_mut(at) {
            Some(Write::PutItem { item, .. } | Write::PutItemAndOperation { item, .. }) => {
                Ok(app_view(std::mem::take(item)))
            }
            _ => Err(not_a_stored_row(at)),
        }
    }
}

/// The row that the write at `at` stored (see [`Transaction::write`]).
fn stored_row(batch: &WriteBatch, at: usize) -> Result<&Item> {
    match batch.writes.get(at) {
        Some(Write::PutItem { item, .. } | Write::PutItemAndOperation { item, .. }) => Ok(item),
        _ => Err(not_a_stored_row(at)),
    }
}

fn not_a_stored_row(at: usize) -> Error {
    Error::Internal(format!("batch entry {at} is not a stored row"))
}

/// A new op id: a UUID v7 (ordered by time), hyphenated lowercase, encoded
/// straight into a buffer rather than through `Display`.
fn new_op_id() -> String {
    let mut buffer = uuid::Uuid::encode_buffer();
    uuid::Uuid::now_v7()
        .hyphenated()
        .encode_lower(&mut buffer)
        .to_owned()
}

/// Takes the item's id out of it, generating one for an insert without; `true`
/// with an id generated here.
fn take_id(kind: OpKind, item: &mut Item) -> Result<(String, bool)> {
    let (id, fresh) = match item.remove(ID) {
        Some(Value::String(s)) if !s.is_empty() => (s, false),
        None | Some(Value::Null) if kind == OpKind::Insert => {
            (tidesync_protocol::ids::new_client_id(), true)
        }
        Some(Value::String(_)) if kind == OpKind::Insert => {
            (tidesync_protocol::ids::new_client_id(), true)
        }
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(Error::InvalidArgument(format!(
                "an {kind:?} needs the item's id"
            )));
        }
        Some(other) => {
            return Err(Error::InvalidArgument(format!(
                "the id must be a string, found {other}"
            )));
        }
    };
    // A generated id is valid by construction (32 hex digits); only given ones are checked.
    if !fresh {
        tidesync_protocol::ids::validate_id(&id)
            .map_err(|e| Error::InvalidArgument(format!("invalid id {id:?}: {e}")))?;
    }
    // A property spelled `Id` or `ID` is ambiguous with the key: refuse it.
    if let Some(k) = item.keys().find(|k| k.eq_ignore_ascii_case(ID)) {
        return Err(Error::InvalidArgument(format!(
            "property {k:?} clashes with the id; use exactly \"id\""
        )));
    }
    Ok((id, fresh))
}

/// An item holding nothing but its id.
pub(crate) fn id_only(id: &str) -> Item {
    Item::from_iter([(ID.to_owned(), Value::String(id.to_owned()))])
}

/// True when `op` is an insert or update that may be on the server (attempted,
/// failed, or on the wire) and keeps no attempt in its `item`.
fn keeps_no_attempt(op: &Operation, in_flight: bool) -> bool {
    matches!(op.kind, OpKind::Insert | OpKind::Update)
        && op.item.is_none()
        && (op.state != OpState::Pending || in_flight)
}

/// The snapshot a delete keeps when it replaces `existing`. An insert or update that was
/// sent keeps what its last attempt sent (its `item`); if that attempt was applied and its
/// answer lost, the server holds exactly those values, and push recognises its own earlier
/// write by comparing the server's copy with the delete's snapshot. A later edit folded
/// into the op changed the row but not what the server may hold, so the snapshot takes the
/// attempt's values (with the row's `version` for `If-Match`) instead of the row's.
fn attempt_snapshot(existing: &Operation, snapshot: Option<Item>) -> Option<Item> {
    let (Some(attempt), Some(row)) = (existing.item.as_ref(), snapshot.as_ref()) else {
        return snapshot;
    };
    if existing.kind == OpKind::Delete || existing.state == OpState::Pending {
        return snapshot;
    }
    // Every attempt of the replaced op may be what the server holds: the last
    // becomes the snapshot, the earlier ones stay with it.
    let (mut kept, earlier) = split_attempts(attempt.clone());
    if let Some(version) = row.get(VERSION) {
        kept.insert(VERSION.to_owned(), version.clone());
    }
    Some(with_attempts(kept, earlier))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_need_no_check() {
        let id = tidesync_protocol::ids::new_client_id();
        assert_eq!(tidesync_protocol::ids::validate_id(&id), Ok(()));
        let op_id = new_op_id();
        assert_eq!(
            uuid::Uuid::parse_str(&op_id).map(|u| u.to_string()),
            Ok(op_id)
        );
    }
}
