//! The operation queue and its one owner, [`Queue`]: every queued op with its
//! indexes (by op id, by item, in push order), built once from what the store
//! loads and kept in step with every batch the engine commits.
//!
//! Stores persist and load ops; they do not answer questions about the queue.
//! The engine asks [`Queue`], under the one lock that every local write and
//! every queue change of a push, pull or purge takes (never across an await).
//! The lock is held across the store write, and [`Queue::apply`] mirrors the
//! batch only after the store committed it, so the queue in memory is always
//! the queue on disk.
//!
//! **Architecture invariant:** ops have one sequence each, given here in
//! ascending order, and an op keeps its sequence for life (collapses and
//! retries change an op in place).

mod collapse;
mod shape;
mod transaction;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

pub(crate) use shape::{
    app_view, conform_in_place, conform_item, conform_owned, merge_into, op_view,
    overlay_server_copy, sent_form, server_view, split_attempts, strip_all_but_version,
    with_attempts, with_server_unmapped,
};
pub use transaction::Transaction;
pub(crate) use transaction::{Committed, id_only};

use std::collections::{BTreeMap, VecDeque};

use tokio::sync::watch;

use crate::model::Operation;
use crate::status::SyncStatus;
use crate::store::{LocalStore, StoreError, Write, WriteBatch};

/// The maps' hasher: their keys are op ids, table names and item ids, hashed
/// several times per local write (SipHash showed in the SQLite store's profiles).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// An op id, shared by the maps below (one allocation per op).
type Id = Arc<str>;

/// The ops of one item, oldest first: nearly always one, kept inline.
#[derive(Debug)]
enum ItemOps {
    One(Id),
    Many(Vec<Id>),
}

impl ItemOps {
    fn ids(&self) -> &[Id] {
        match self {
            ItemOps::One(id) => std::slice::from_ref(id),
            ItemOps::Many(ids) => ids,
        }
    }
}

/// The queue: every queued op in memory (it is the client's unpushed changes,
/// normally small next to its data), the ops on the wire right now, and the
/// next sequence number.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// Every op, by id.
    ops: HashMap<Id, Operation>,
    /// Push order: `(sequence, id)` (two ops never share a sequence in
    /// practice; if a store ever held two, both are kept).
    order: BTreeSet<(u64, Id)>,
    /// Table → item id → its ops, oldest first (nested, so that a lookup by
    /// `&str` allocates nothing).
    by_item: HashMap<String, HashMap<String, ItemOps>>,
    /// The sequence the next new op gets.
    next_sequence: u64,
    /// Ops whose request is on the wire right now.
    in_flight: std::collections::HashSet<String, foldhash::fast::RandomState>,
    /// Queued ops per table (tables with none are absent).
    per_table: BTreeMap<String, u64>,
    /// Where the counts are published after each commit (the sync status).
    status: Option<watch::Sender<SyncStatus>>,
    /// The versions this client's own acknowledged writes replaced.
    own: OwnVersions,
}

/// How many items [`OwnVersions`] remembers (the oldest are forgotten first;
/// forgetting only makes an update from a stale copy conflict, as without it).
const OWN_ITEMS_MAX: usize = 10_000;
/// How many replaced versions it keeps per item.
const OWN_VERSIONS_PER_ITEM: usize = 16;

/// Per item, the version this client's last acknowledged write produced and
/// the versions its own writes replaced since the server last changed the item
/// some other way. An update whose `version` is one of those is stale only
/// because of this client's own writes, so it is sent against the current
/// version instead of meeting a 412 against itself; any other stale version
/// keeps optimistic concurrency (it conflicts). Kept in memory: an app's copy
/// of a row does not outlive the process either.
#[derive(Debug, Default)]
struct OwnVersions {
    items: HashMap<(String, String), Own>,
    /// Items in the order they were first remembered, for the cap.
    order: VecDeque<(String, String)>,
}

#[derive(Debug)]
struct Own {
    current: Option<String>,
    replaced: Vec<Option<String>>,
}

impl Queue {
    /// Builds the queue from the store's ops.
    ///
    /// # Errors
    /// The store's.
    pub(crate) fn load(store: &dyn LocalStore) -> Result<Queue, StoreError> {
        let mut queue = Queue::default();
        for op in store.load_operations()? {
            queue.put(op);
        }
        queue.next_sequence = queue.order.last().map_or(0, |(s, _)| *s) + 1;
        Ok(queue)
    }

    /// The sequence the next new op gets.
    pub(crate) fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Moves the next sequence on (after a transaction took numbers).
    pub(crate) fn set_next_sequence(&mut self, next: u64) {
        self.next_sequence = self.next_sequence.max(next);
    }

    /// One op by id.
    pub(crate) fn get(&self, id: &str) -> Option<&Operation> {
        self.ops.get(id)
    }

    /// The ops of one item, oldest first.
    pub(crate) fn of_item(&self, table: &str, item_id: &str) -> Vec<Operation> {
        self.by_item
            .get(table)
            .and_then(|items| items.get(item_id))
            .map(|ids| {
                ids.ids()
                    .iter()
                    .filter_map(|id| self.ops.get(id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// True when the item has a queued op other than `op_id`.
    pub(crate) fn has_other_ops(&self, table: &str, item_id: &str, op_id: &str) -> bool {
        self.by_item
            .get(table)
            .and_then(|items| items.get(item_id))
            .is_some_and(|ids| ids.ids().iter().any(|id| &**id != op_id))
    }

    /// The first op of `op`'s item queued after it, if any.
    pub(crate) fn follow_up(&self, op: &Operation) -> Option<Operation> {
        self.by_item
            .get(op.table.as_str())
            .and_then(|items| items.get(op.item_id.as_str()))?
            .ids()
            .iter()
            .filter_map(|id| self.ops.get(id))
            .find(|o| o.id != op.id && o.sequence > op.sequence)
            .cloned()
    }

    /// True when the item has a queued op.
    pub(crate) fn has_ops(&self, table: &str, item_id: &str) -> bool {
        self.by_item
            .get(table)
            .is_some_and(|items| items.contains_key(item_id))
    }

    /// The ids of the items of `table` that have a queued op.
    pub(crate) fn item_ids(&self, table: &str) -> HashSet<String> {
        self.by_item
            .get(table)
            .map(|items| items.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The ops with a sequence above `after`, in push order.
    pub(crate) fn after(&self, after: u64) -> impl Iterator<Item = &Operation> {
        let from = after.checked_add(1);
        from.into_iter()
            .flat_map(move |from| self.order.range((from, Id::from(""))..))
            .filter_map(|(_, id)| self.ops.get(id))
    }

    /// Every op, in push order, as the app sees it.
    pub(crate) fn all(&self) -> Vec<Operation> {
        self.order
            .iter()
            .filter_map(|(_, id)| self.ops.get(id))
            .cloned()
            .map(op_view)
            .collect()
    }

    /// How many ops are queued, for one table or for all.
    pub(crate) fn count(&self, table: Option<&str>) -> u64 {
        match table {
            None => u64::try_from(self.ops.len()).unwrap_or(u64::MAX),
            Some(t) => self.per_table.get(t).copied().unwrap_or(0),
        }
    }

    /// Queued ops per table (tables with none are absent).
    pub(crate) fn per_table(&self) -> &BTreeMap<String, u64> {
        &self.per_table
    }

    /// Remembers that this client's write of an item was acknowledged: the row's
    /// version went from `before` to `after` by its own hand.
    pub(crate) fn record_own_write(
        &mut self,
        table: &str,
        id: &str,
        before: Option<String>,
        after: Option<String>,
    ) {
        let key = (table.to_owned(), id.to_owned());
        let own = &mut self.own;
        if !own.items.contains_key(&key) {
            if own.items.len() >= OWN_ITEMS_MAX {
                if let Some(oldest) = own.order.pop_front() {
                    own.items.remove(&oldest);
                }
            }
            own.order.push_back(key.clone());
        }
        let entry = own.items.entry(key).or_insert(Own {
            current: before.clone(),
            replaced: Vec::new(),
        });
        if entry.current != before {
            // Someone else changed the item in between: older versions are stale for real.
            entry.replaced.clear();
        }
        if !entry.replaced.contains(&before) {
            if entry.replaced.len() >= OWN_VERSIONS_PER_ITEM {
                entry.replaced.remove(0);
            }
            entry.replaced.push(before);
        }
        entry.current = after;
    }

    /// True when `given` is stale only because of this client's own writes:
    /// `current` (the row's version now) is what its last acknowledged write
    /// produced, and `given` one of the versions its writes replaced.
    pub(crate) fn replaced_by_own_writes(
        &self,
        table: &str,
        id: &str,
        given: Option<&str>,
        current: Option<&str>,
    ) -> bool {
        self.own
            .items
            .get(&(table.to_owned(), id.to_owned()))
            .is_some_and(|own| {
                own.current.as_deref() == current
                    && own.replaced.iter().any(|v| v.as_deref() == given)
            })
    }

    /// Publishes the counts to the sync status from now on, after every commit.
    pub(crate) fn publish_to(&mut self, status: watch::Sender<SyncStatus>) {
        self.status = Some(status);
    }

    /// Sends the counts to the sync status, if they changed and anyone watches
    /// (a local write pays nothing for a status nobody reads; `status()`
    /// publishes before it subscribes, under the queue lock, so a new watcher
    /// starts from the current counts).
    fn publish(&self) {
        if let Some(status) = self.status.as_ref().filter(|s| s.receiver_count() > 0) {
            self.send_counts(status);
        }
    }

    /// Sends the counts to a new watcher's channel (see [`Queue::publish`]).
    pub(crate) fn publish_now(&self) {
        if let Some(status) = &self.status {
            self.send_counts(status);
        }
    }

    fn send_counts(&self, status: &watch::Sender<SyncStatus>) {
        let pending = self.count(None);
        status.send_if_modified(|s| {
            let changed = s.pending != pending || s.pending_by_table != self.per_table;
            if changed {
                s.pending = pending;
                s.pending_by_table.clone_from(&self.per_table);
            }
            changed
        });
    }

    /// True when the op's request is on the wire.
    pub(crate) fn is_in_flight(&self, id: &str) -> bool {
        self.in_flight.contains(id)
    }

    /// Marks an op as on the wire.
    pub(crate) fn set_in_flight(&mut self, id: &str) {
        self.in_flight.insert(id.to_owned());
    }

    /// Marks an op as no longer on the wire.
    pub(crate) fn clear_in_flight(&mut self, id: &str) {
        self.in_flight.remove(id);
    }

    /// Forgets every op on the wire (a push ended).
    pub(crate) fn clear_all_in_flight(&mut self) {
        self.in_flight.clear();
    }

    /// Writes `batch` to the store and, once it committed, mirrors its queue
    /// changes here. The caller holds the queue lock.
    ///
    /// # Errors
    /// The store's; the queue is then unchanged, as the store is.
    pub(crate) fn commit(
        &mut self,
        store: &dyn LocalStore,
        batch: &WriteBatch,
    ) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        store.write(batch)?;
        self.apply(batch);
        Ok(())
    }

    /// [`commit`](Self::commit) for a batch the caller only reads rows from
    /// afterwards: the ops it queues are moved into the queue rather than
    /// copied. A row-and-op write becomes the plain [`Write::PutItem`] it also
    /// was; a [`Write::PutOperation`] becomes an empty placeholder.
    ///
    /// # Errors
    /// The store's; the queue and the batch are then unchanged.
    pub(crate) fn commit_owned(
        &mut self,
        store: &dyn LocalStore,
        batch: &mut WriteBatch,
    ) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        store.write(batch)?;
        for write in &mut batch.writes {
            if !matches!(
                write,
                Write::PutItemAndOperation { .. } | Write::PutOperation(_)
            ) {
                self.apply_one(write);
                continue;
            }
            // A placeholder that allocates nothing.
            let taken = std::mem::replace(
                write,
                Write::SetConfig {
                    key: String::new(),
                    value: None,
                },
            );
            match taken {
                Write::PutItemAndOperation { table, item, op } => {
                    *write = Write::PutItem { table, item };
                    self.put(op);
                }
                Write::PutOperation(op) => self.put(op),
                _ => {}
            }
        }
        self.publish();
        Ok(())
    }

    /// Mirrors the queue changes of a committed batch.
    pub(crate) fn apply(&mut self, batch: &WriteBatch) {
        for write in &batch.writes {
            self.apply_one(write);
        }
        self.publish();
    }

    fn apply_one(&mut self, write: &Write) {
        match write {
            Write::PutOperation(op) | Write::PutItemAndOperation { op, .. } => {
                self.put(op.clone());
            }
            Write::DeleteOperation { id } => self.remove(id),
            Write::MarkAttempted { ids } => {
                for id in ids {
                    if let Some(op) = self.ops.get_mut(id.as_str()) {
                        op.state = crate::model::OpState::Attempted;
                    }
                }
            }
            Write::Clear => {
                self.own = OwnVersions::default();
                self.ops.clear();
                self.order.clear();
                self.by_item.clear();
                self.per_table.clear();
            }
            Write::DeleteTableOperations { table } => {
                let ids: Vec<Id> = self
                    .by_item
                    .get(table)
                    .map(|items| {
                        items
                            .values()
                            .flat_map(|ops| ops.ids().iter().cloned())
                            .collect()
                    })
                    .unwrap_or_default();
                for id in ids {
                    self.remove(&id);
                }
            }
            _ => {}
        }
    }

    /// Adds an op or replaces the op with the same id.
    fn put(&mut self, op: Operation) {
        // An op rewritten in its place (marked attempted, failed, folded with a
        // follow-up) keeps its keys: only its value changes.
        if let Some(held) = self.ops.get_mut(op.id.as_str()) {
            if held.sequence == op.sequence && held.table == op.table && held.item_id == op.item_id
            {
                *held = op;
                return;
            }
        }
        // A new op (the usual case) costs one failed lookup here.
        self.remove(&op.id);
        self.next_sequence = self.next_sequence.max(op.sequence.saturating_add(1));
        let id: Id = Arc::from(op.id.as_str());
        let key = (op.sequence, id.clone());
        let ops = &self.ops;
        let items = match self.by_item.get_mut(op.table.as_str()) {
            Some(items) => items,
            None => self.by_item.entry(op.table.clone()).or_default(),
        };
        match items.get_mut(op.item_id.as_str()) {
            None => {
                items.insert(op.item_id.clone(), ItemOps::One(id.clone()));
            }
            Some(item_ops) => {
                let mut ids = match std::mem::replace(item_ops, ItemOps::Many(Vec::new())) {
                    ItemOps::One(one) => vec![one],
                    ItemOps::Many(ids) => ids,
                };
                let at = ids.partition_point(|other| {
                    ops.get(other)
                        .is_some_and(|o| (o.sequence, &*o.id) < (op.sequence, &*op.id))
                });
                ids.insert(at, id.clone());
                *item_ops = ItemOps::Many(ids);
            }
        }
        self.order.insert(key);
        // The table's name is copied only for its first op.
        match self.per_table.get_mut(op.table.as_str()) {
            Some(n) => *n += 1,
            None => {
                self.per_table.insert(op.table.clone(), 1);
            }
        }
        self.ops.insert(id, op);
    }

    fn remove(&mut self, id: &str) {
        let Some((id, op)) = self.ops.remove_entry(id) else {
            return;
        };
        self.order.remove(&(op.sequence, id.clone()));
        if let Some(n) = self.per_table.get_mut(op.table.as_str()) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_table.remove(op.table.as_str());
            }
        }
        if let Some(items) = self.by_item.get_mut(op.table.as_str()) {
            let emptied = match items.get_mut(op.item_id.as_str()) {
                Some(ItemOps::One(one)) => *one == id,
                Some(ItemOps::Many(ids)) => {
                    ids.retain(|other| *other != id);
                    ids.is_empty()
                }
                None => false,
            };
            if emptied {
                items.remove(op.item_id.as_str());
            }
            if items.is_empty() {
                self.by_item.remove(op.table.as_str());
            }
        }
    }
}
