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

use std::collections::{BTreeMap, HashSet};

pub(crate) use shape::{
    app_view, conform_item, conform_owned, merge_into, op_view, overlay_server_copy, server_view,
    split_attempts, strip_all_but_version, with_attempts, with_server_unmapped,
};
pub use transaction::Transaction;
pub(crate) use transaction::{Committed, id_only};

use crate::model::Operation;
use crate::store::{LocalStore, StoreError, Write, WriteBatch};

/// The maps' hasher: their keys are op ids, table names and item ids, hashed
/// several times per local write (SipHash showed in the SQLite store's profiles).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The queue: every queued op in memory (it is the client's unpushed changes,
/// normally small next to its data), the ops on the wire right now, and the
/// next sequence number.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// Every op, in push order: by `(sequence, id)` (two ops never share a
    /// sequence in practice; if a store ever held two, both are kept).
    order: BTreeMap<(u64, String), Operation>,
    /// Op id → sequence.
    by_id: HashMap<String, u64>,
    /// Table → item id → its ops' ids, oldest first.
    by_item: HashMap<String, HashMap<String, Vec<String>>>,
    /// The sequence the next new op gets.
    next_sequence: u64,
    /// Ops whose request is on the wire right now.
    in_flight: HashSet<String>,
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
        queue.next_sequence = queue.order.keys().next_back().map_or(0, |(s, _)| *s) + 1;
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
        let sequence = self.by_id.get(id)?;
        self.order.get(&(*sequence, id.to_owned()))
    }

    /// The ops of one item, oldest first.
    pub(crate) fn of_item(&self, table: &str, item_id: &str) -> Vec<Operation> {
        self.by_item
            .get(table)
            .and_then(|items| items.get(item_id))
            .map(|ids| ids.iter().filter_map(|id| self.get(id)).cloned().collect())
            .unwrap_or_default()
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
            .flat_map(move |from| self.order.range((from, String::new())..))
            .map(|(_, op)| op)
    }

    /// Every op, in push order, as the app sees it.
    pub(crate) fn all(&self) -> Vec<Operation> {
        self.order.values().cloned().map(op_view).collect()
    }

    /// How many ops are queued, for one table or for all.
    pub(crate) fn count(&self, table: Option<&str>) -> u64 {
        let n = match table {
            None => self.by_id.len(),
            Some(t) => self
                .by_item
                .get(t)
                .map_or(0, |items| items.values().map(Vec::len).sum()),
        };
        u64::try_from(n).unwrap_or(u64::MAX)
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
        Ok(())
    }

    /// Mirrors the queue changes of a committed batch.
    pub(crate) fn apply(&mut self, batch: &WriteBatch) {
        for write in &batch.writes {
            self.apply_one(write);
        }
    }

    fn apply_one(&mut self, write: &Write) {
        match write {
            Write::PutOperation(op) | Write::PutItemAndOperation { op, .. } => {
                self.put(op.clone());
            }
            Write::DeleteOperation { id } => self.remove(id),
            Write::DeleteTableOperations { table } => {
                let ids: Vec<String> = self
                    .by_item
                    .get(table)
                    .map(|items| items.values().flatten().cloned().collect())
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
        self.remove(&op.id);
        self.next_sequence = self.next_sequence.max(op.sequence.saturating_add(1));
        self.by_id.insert(op.id.clone(), op.sequence);
        // Nested maps, so that a lookup by `&str` needs no allocation.
        let items = match self.by_item.get_mut(op.table.as_str()) {
            Some(items) => items,
            None => self.by_item.entry(op.table.clone()).or_default(),
        };
        let ids = match items.get_mut(op.item_id.as_str()) {
            Some(ids) => ids,
            None => items.entry(op.item_id.clone()).or_default(),
        };
        let at = ids.partition_point(|id| {
            self.by_id
                .get(id)
                .is_some_and(|s| (*s, id.as_str()) < (op.sequence, op.id.as_str()))
        });
        ids.insert(at, op.id.clone());
        self.order.insert((op.sequence, op.id.clone()), op);
    }

    fn remove(&mut self, id: &str) {
        let Some(sequence) = self.by_id.remove(id) else {
            return;
        };
        let Some(op) = self.order.remove(&(sequence, id.to_owned())) else {
            return;
        };
        if let Some(items) = self.by_item.get_mut(&op.table) {
            if let Some(ids) = items.get_mut(&op.item_id) {
                ids.retain(|other| other != id);
                if ids.is_empty() {
                    items.remove(&op.item_id);
                }
            }
            if items.is_empty() {
                self.by_item.remove(&op.table);
            }
        }
    }
}
