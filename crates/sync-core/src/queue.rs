//! The operation queue's rules: how a local write meets the op already queued
//! for the same item (the collapse matrix), and the transaction that applies a
//! group of local writes, their queue entries and error clean-up in one batch.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde_json::Value;
use tidesync_protocol::Item;
use tidesync_protocol::system::{ID, VERSION, is_system_property};

use crate::context::TableCache;
use crate::error::{Error, QueueRefusal, Result, StoreError};
use crate::events::ChangeEvent;
use crate::model::{OpKind, OpState, Operation, TableDef, UNMAPPED_COLUMN, check_value};
use crate::store::{LocalStore, Write, WriteBatch};

/// What a new local write does to the queue, given the newest op of its item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Collapse {
    /// Queue the new op at the end.
    Enqueue,
    /// Fold the new op into the existing one (its version goes up; sequence kept).
    Merge,
    /// The existing insert and the new delete cancel out: both vanish.
    Annihilate,
    /// Drop the existing update and queue the delete at the end, op version 2.
    ReplaceWithDelete,
}

/// The collapse matrix (reference client, spec §2.3), plus tidesync's rule for
/// ops being pushed right now: a write behind an in-flight op is queued after it.
pub(crate) fn collapse(
    existing: Option<(OpKind, OpState)>,
    in_flight: bool,
    new: OpKind,
) -> std::result::Result<Collapse, QueueRefusal> {
    use OpKind::{Delete, Insert, Update};
    let Some((kind, state)) = existing else {
        return Ok(Collapse::Enqueue);
    };
    if in_flight {
        return match (kind, new) {
            (Delete, _) => Err(QueueRefusal::DeleteQueued),
            (_, Insert) => Err(QueueRefusal::InsertAfterQueued(kind)),
            _ => Ok(Collapse::Enqueue),
        };
    }
    match (kind, new) {
        (Delete, _) => Err(QueueRefusal::DeleteQueued),
        (_, Insert) => Err(QueueRefusal::InsertAfterQueued(kind)),
        (Insert | Update, Update) => Ok(Collapse::Merge),
        (Insert, Delete) if state == OpState::Pending => Ok(Collapse::Annihilate),
        (Insert, Delete) => Err(QueueRefusal::InsertMayBeOnServer),
        (Update, Delete) => Ok(Collapse::ReplaceWithDelete),
    }
}

/// The engine's in-memory queue bookkeeping, guarded by one mutex that every
/// local write and every queue change of a push takes (never across an await).
#[derive(Debug, Default)]
pub(crate) struct QueueState {
    /// The sequence the next new op gets.
    pub next_sequence: u64,
    /// Ops whose request is on the wire right now.
    pub in_flight: HashSet<String>,
}

/// Keeps only the columns a table has, checking and normalising their values.
/// App data refuses unknown properties; server data keeps the ones that are not
/// system properties in [`UNMAPPED_COLUMN`], so that push can send them back.
pub(crate) fn conform_item(def: &TableDef, item: &Item, from_server: bool) -> Result<Item> {
    conform_owned(def, item.clone(), from_server)
}

/// [`conform_item`] in place: values already in normal form are kept, not copied.
pub(crate) fn conform_owned(def: &TableDef, mut item: Item, from_server: bool) -> Result<Item> {
    let mut unknown = false;
    for (name, value) in &mut item {
        match defined_type(def, name) {
            Some(ty) => {
                let normal = match check_value(def.name(), name, ty, value)? {
                    Cow::Borrowed(_) => None,
                    Cow::Owned(normal) => Some(normal),
                };
                if let Some(normal) = normal {
                    *value = normal;
                }
            }
            None if from_server || is_system_property(name) => unknown = true,
            None => {
                return Err(StoreError::UnknownColumn {
                    table: def.name().to_owned(),
                    column: name.clone(),
                }
                .into());
            }
        }
    }
    if !unknown {
        return Ok(item);
    }
    let mut unmapped = Item::new();
    item.retain(|name, value| {
        if defined_type(def, name).is_some() {
            return true;
        }
        if from_server && !is_system_property(name) && name != UNMAPPED_COLUMN {
            unmapped.insert(name.clone(), std::mem::take(value));
        }
        false
    });
    if !unmapped.is_empty() {
        item.insert(UNMAPPED_COLUMN.to_owned(), Value::Object(unmapped));
    }
    Ok(item)
}

/// The type of a column the app may write: every column of the table but the
/// engine's hidden [`UNMAPPED_COLUMN`].
fn defined_type(def: &TableDef, name: &str) -> Option<crate::model::ColumnType> {
    if name == UNMAPPED_COLUMN {
        return None;
    }
    def.column_type(name)
}

/// A stored row as the app sees it: without the engine's hidden column.
pub(crate) fn app_view(mut row: Item) -> Item {
    row.remove(UNMAPPED_COLUMN);
    row
}

/// A stored row as the server knows it: the properties kept in the hidden
/// column are put back beside the defined ones (which win on a clash).
pub(crate) fn server_view(row: &mut Item) {
    if let Some(Value::Object(unmapped)) = row.remove(UNMAPPED_COLUMN) {
        for (name, value) in unmapped {
            row.entry(name).or_insert(value);
        }
    }
}

/// `item` for a write resent against the server's copy (client wins, a merge,
/// a retry after an error): what the local table defines comes from `item`,
/// the properties it does not define from `server`. The app never edits those
/// (it cannot see them), so the server's values are the current ones; taking
/// them keeps a full replace from erasing or rolling back another client's
/// change to a column this app does not know.
pub(crate) fn with_server_unmapped(def: &TableDef, mut item: Item, server: &Item) -> Item {
    item.retain(|name, _| defined_type(def, name).is_some());
    for (name, value) in server {
        if !is_system_property(name) && defined_type(def, name).is_none() {
            item.insert(name.clone(), value.clone());
        }
    }
    item
}

/// Overlays a server copy (already conformed) on the stored row: the server's
/// values win, and the row's hidden column is the server copy's.
pub(crate) fn overlay_server_copy(mut row: Item, server: Item) -> Item {
    row.remove(UNMAPPED_COLUMN);
    merge_into(row, server)
}

/// Removes `createdAt`, `updatedAt` and `deleted` (any case), keeping `version`.
pub(crate) fn strip_all_but_version(item: &mut Item) {
    let strip = |k: &str| k != VERSION && is_system_property(k);
    // App items rarely carry any: looking costs less than `retain` walking the map.
    if item.keys().any(|k| strip(k)) {
        item.retain(|k, _| !strip(k));
    }
}

/// Overlays `changes` on `row` (the reference store's column merge).
pub(crate) fn merge_into(mut row: Item, changes: Item) -> Item {
    for (k, v) in changes {
        row.insert(k, v);
    }
    row
}

/// A group of local writes applied as one atomic store batch. Reads see the
/// writes made earlier in the same transaction.
#[derive(Debug)]
pub struct Transaction<'a> {
    store: &'a dyn LocalStore,
    tables: &'a TableCache,
    in_flight: &'a HashSet<String>,
    next_sequence: u64,
    /// The rows this transaction wrote (`None`: deleted), for its own reads.
    items: HashMap<(String, String), Option<Item>>,
    /// The queued ops of the items this transaction wrote, as they now stand.
    ops: HashMap<(String, String), Vec<Operation>>,
    /// Inserts under an id generated here that are not yet in `items` and `ops`:
    /// the batch positions of their row and op. Only the caller learns such an id,
    /// from the insert's answer, so they are indexed at the transaction's next
    /// read; a transaction that never reads (a lone insert) never builds the maps.
    unindexed: Vec<(usize, usize)>,
    batch: WriteBatch,
    /// Each write's kind and the batch position of its row change, for the
    /// change events (built only when someone listens).
    written: Vec<(OpKind, usize)>,
}

impl<'a> Transaction<'a> {
    pub(crate) fn new(
        store: &'a dyn LocalStore,
        tables: &'a TableCache,
        state: &'a QueueState,
    ) -> Self {
        Self {
            store,
            tables,
            in_flight: &state.in_flight,
            next_sequence: state.next_sequence,
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
    /// for a bad id, [`StoreError`] for an unknown table, column or a type mismatch.
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
    /// [`StoreError`] from the store.
    pub fn get(&mut self, table: &str, id: &str) -> Result<Option<Item>> {
        self.index_fresh();
        let key = (table.to_owned(), id.to_owned());
        let row = match self.items.get(&key) {
            Some(row) => row.clone(),
            None => self.store.get(table, id)?,
        };
        Ok(row.map(app_view))
    }

    /// The row and its ops as this transaction sees them: from the store in one
    /// read unless the transaction already changed either.
    fn row_and_ops(&mut self, table: &str, id: &str) -> Result<(Option<Item>, Vec<Operation>)> {
        self.index_fresh();
        let key = (table.to_owned(), id.to_owned());
        match (self.items.get(&key), self.ops.get(&key)) {
            (None, None) => Ok(self.store.get_with_operations(table, id)?),
            (row, ops) => {
                let row = match row {
                    Some(row) => row.clone(),
                    None => self.store.get(table, id)?,
                };
                let ops = match ops {
                    Some(ops) => ops.clone(),
                    None => self.store.operations_for(table, id)?,
                };
                Ok((row, ops))
            }
        }
    }

    /// Applies one local write to the batch and returns the batch position of its
    /// row change: a [`Write::PutItem`] holding the row as stored, or a
    /// [`Write::DeleteItem`]. The row is kept once, there; callers that hand it
    /// back copy it from there ([`stored_row`]) or take it after the commit.
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
        let newest = ops.last().cloned();
        let in_flight = newest
            .as_ref()
            .is_some_and(|op| self.in_flight.contains(&op.id));
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

        // The op's base: the row as it was, when it carries a server version.
        let base = row
            .as_ref()
            .filter(|r| r.get(VERSION).is_some_and(|v| !v.is_null()))
            .cloned();

        // The local row; a delete's item becomes its op's snapshot.
        let at = self.batch.len();
        let snapshot = match kind {
            OpKind::Insert => {
                self.put_item(table, &id, item);
                None
            }
            OpKind::Update => {
                self.put_item(table, &id, merge_into(row.unwrap_or_default(), item));
                None
            }
            OpKind::Delete => {
                self.items.insert((table.to_owned(), id.clone()), None);
                self.batch.push(Write::DeleteItem {
                    table: table.to_owned(),
                    id: id.clone(),
                });
                Some(item)
            }
        };

        // The queue.
        match (decision, newest) {
            (Collapse::Enqueue, _) | (_, None) => {
                let op = self.new_op(kind, table, id.clone(), snapshot, base, 1);
                self.batch.push(Write::PutOperation(op.clone()));
                ops.push(op);
            }
            (Collapse::Merge, Some(mut existing)) => {
                self.drop_error(&existing.id);
                existing.version += 1;
                self.batch.push(Write::PutOperation(existing.clone()));
                if let Some(last) = ops.last_mut() {
                    *last = existing;
                }
            }
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
        }
        self.written.push((kind, at));
        self.ops.insert((table.to_owned(), id), ops);
        Ok(at)
    }

    /// An insert under an id generated just now: it has no row and no ops yet, so
    /// nothing is read and the collapse matrix has nothing to say (a new op).
    fn insert_fresh(&mut self, table: &str, id: String, item: Item) -> usize {
        let at = self.batch.len();
        self.batch.push(Write::PutItem {
            table: table.to_owned(),
            item,
        });
        let op = self.new_op(OpKind::Insert, table, id, None, None, 1);
        self.unindexed.push((at, self.batch.len()));
        self.batch.push(Write::PutOperation(op));
        self.written.push((OpKind::Insert, at));
        at
    }

    /// Adds the inserts of [`insert_fresh`](Self::insert_fresh) to `items` and
    /// `ops`, copying their row and op from the batch.
    fn index_fresh(&mut self) {
        for (row_at, op_at) in std::mem::take(&mut self.unindexed) {
            let writes = &self.batch.writes;
            if let (Some(Write::PutItem { item, .. }), Some(Write::PutOperation(op))) =
                (writes.get(row_at), writes.get(op_at))
            {
                let key = (op.table.clone(), op.item_id.clone());
                self.items.insert(key.clone(), Some(item.clone()));
                self.ops.insert(key, vec![op.clone()]);
            }
        }
    }

    fn put_item(&mut self, table: &str, id: &str, item: Item) {
        self.items
            .insert((table.to_owned(), id.to_owned()), Some(item.clone()));
        self.batch.push(Write::PutItem {
            table: table.to_owned(),
            item,
        });
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

    /// Writes everything; returns the next free sequence number, the batch
    /// written and what the events will say.
    pub(crate) fn commit(self) -> Result<Committed> {
        if !self.batch.is_empty() {
            self.store.write(&self.batch)?;
        }
        Ok(Committed {
            next_sequence: self.next_sequence,
            batch: self.batch,
            written: self.written,
        })
    }
}

/// A committed [`Transaction`]: its batch, kept so that the stored rows can be
/// handed back without a copy and the change events built only when wanted.
#[derive(Debug)]
pub(crate) struct Committed {
    /// The sequence number the next new op gets.
    pub next_sequence: u64,
    batch: WriteBatch,
    written: Vec<(OpKind, usize)>,
}

impl Committed {
    /// The change events of the transaction's writes, in order.
    pub(crate) fn events(&self) -> impl Iterator<Item = ChangeEvent> + '_ {
        self.written.iter().filter_map(|&(kind, at)| {
            let (table, id) = match self.batch.writes.get(at)? {
                Write::PutItem { table, item } => (table, item.get(ID)?.as_str()?),
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
            Some(Write::PutItem { item, .. }) => Ok(app_view(std::mem::take(item))),
            _ => Err(not_a_stored_row(at)),
        }
    }
}

/// The row that the write at `at` stored (see [`Transaction::write`]).
fn stored_row(batch: &WriteBatch, at: usize) -> Result<&Item> {
    match batch.writes.get(at) {
        Some(Write::PutItem { item, .. }) => Ok(item),
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
    let mut kept = attempt.clone();
    if let Some(version) = row.get(VERSION) {
        kept.insert(VERSION.to_owned(), version.clone());
    }
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use OpKind::{Delete, Insert, Update};
    use OpState::{Attempted, Failed, Pending};

    /// One row of the matrix: existing op, in flight?, new op, expected outcome.
    fn check_collapse(
        existing: Option<(OpKind, OpState)>,
        in_flight: bool,
        new: OpKind,
        expect: std::result::Result<Collapse, QueueRefusal>,
    ) {
        assert_eq!(
            collapse(existing, in_flight, new),
            expect,
            "existing {existing:?} (in flight: {in_flight}) + new {new:?}"
        );
    }

    #[test]
    fn collapse_matrix_matches_the_reference() {
        use Collapse::*;
        let rows = [
            (None, Insert, Ok(Enqueue)),
            (None, Update, Ok(Enqueue)),
            (None, Delete, Ok(Enqueue)),
            (
                Some((Insert, Pending)),
                Insert,
                Err(QueueRefusal::InsertAfterQueued(Insert)),
            ),
            (Some((Insert, Pending)), Update, Ok(Merge)),
            (Some((Insert, Pending)), Delete, Ok(Annihilate)),
            (
                Some((Insert, Attempted)),
                Insert,
                Err(QueueRefusal::InsertAfterQueued(Insert)),
            ),
            (Some((Insert, Attempted)), Update, Ok(Merge)),
            (
                Some((Insert, Attempted)),
                Delete,
                Err(QueueRefusal::InsertMayBeOnServer),
            ),
            (Some((Insert, Failed)), Update, Ok(Merge)),
            (
                Some((Insert, Failed)),
                Delete,
                Err(QueueRefusal::InsertMayBeOnServer),
            ),
            (
                Some((Update, Pending)),
                Insert,
                Err(QueueRefusal::InsertAfterQueued(Update)),
            ),
            (Some((Update, Pending)), Update, Ok(Merge)),
            (Some((Update, Failed)), Update, Ok(Merge)),
            (Some((Update, Pending)), Delete, Ok(ReplaceWithDelete)),
            (Some((Update, Failed)), Delete, Ok(ReplaceWithDelete)),
            (
                Some((Delete, Pending)),
                Insert,
                Err(QueueRefusal::DeleteQueued),
            ),
            (
                Some((Delete, Pending)),
                Update,
                Err(QueueRefusal::DeleteQueued),
            ),
            (
                Some((Delete, Failed)),
                Delete,
                Err(QueueRefusal::DeleteQueued),
            ),
        ];
        for (existing, new, expect) in rows {
            check_collapse(existing, false, new, expect);
        }
    }

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

    #[test]
    fn writes_behind_an_in_flight_op_queue_after_it() {
        use Collapse::*;
        let rows = [
            (Insert, Update, Ok(Enqueue)),
            (Insert, Delete, Ok(Enqueue)),
            (Update, Update, Ok(Enqueue)),
            (Update, Delete, Ok(Enqueue)),
            (Insert, Insert, Err(QueueRefusal::InsertAfterQueued(Insert))),
            (Delete, Update, Err(QueueRefusal::DeleteQueued)),
            (Delete, Insert, Err(QueueRefusal::DeleteQueued)),
        ];
        for (existing, new, expect) in rows {
            check_collapse(Some((existing, Attempted)), true, new, expect);
        }
    }
}
