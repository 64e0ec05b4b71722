//! The store's in-memory address book of queued ops: op id → `(sequence, table,
//! item_id)`, and per table the keys of its ops. The file keys ops by
//! `(sequence, op id)`, so replacing or deleting an op by id needs its
//! sequence; this map is how the store finds a record again. The queue's
//! rules and the engine's lookups are not here: the engine's `Queue` owns them
//! and builds itself from `LocalStore::load_operations`.
//!
//! The file keeps the queue only in `tidesync/ops`, keyed by `(sequence, op
//! id)`; the lookups by op id and by item come from this index, built by one
//! pass over the queue when the store opens. That is sound because the file is
//! open in one handle at a time (a second gets `StoreError::Busy`), so only
//! this store's own writes change the queue, and every write updates the
//! index.
//!
//! **Consistency.** A write stages its queue changes ([`Staged`]) while it
//! builds its redb transaction, reading the index without changing it, and
//! applies them only after its commit succeeded, holding the index's write
//! lock across the commit. A reader resolves keys and begins its redb read
//! transaction under the read lock, so the keys it holds always name ops in
//! its snapshot. A failed batch is aborted and its staged changes dropped; a
//! failed commit marks the index stale ([`QueueIndex::valid`]), and the next
//! access rebuilds it from the file.
//!
//! **Memory:** each queued op costs its id, table name and item id in memory
//! (the queue is the client's unpushed changes, normally small).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use redb::ReadableTable;
use serde::Deserialize;
use tidesync_core::{Operation, StoreError};

use crate::error::{corrupt_json, from_redb};
use crate::schema::OpKey;

/// Where one queued op is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) sequence: u64,
    pub(crate) table: String,
    pub(crate) item_id: String,
}

impl Entry {
    pub(crate) fn of(op: &Operation) -> Self {
        Self {
            sequence: op.sequence,
            table: op.table.clone(),
            item_id: op.item_id.clone(),
        }
    }
}

/// The queued ops of one table.
#[derive(Debug, Default)]
struct TableOps {
    /// Item id → its ops as `(sequence, op id)`, in queue order.
    items: HashMap<String, BTreeSet<(u64, String)>>,
    count: u64,
}

/// The index of the queue as last committed.
#[derive(Debug, Default)]
pub(crate) struct QueueIndex {
    /// False after a commit whose outcome is unknown: rebuild before use.
    pub(crate) valid: bool,
    by_id: HashMap<String, Entry>,
    by_table: HashMap<String, TableOps>,
}

/// The fields of a stored op the index needs, decoded without the rest.
#[derive(Deserialize)]
struct OpRef<'a> {
    #[serde(borrow)]
    table: Cow<'a, str>,
    #[serde(borrow)]
    item_id: Cow<'a, str>,
}

impl QueueIndex {
    /// Builds the index from the queue table.
    pub(crate) fn load(ops: &impl ReadableTable<OpKey, &'static [u8]>) -> Result<Self, StoreError> {
        let mut index = Self {
            valid: true,
            ..Self::default()
        };
        for entry in ops.iter().map_err(from_redb)? {
            let (key, bytes) = entry.map_err(from_redb)?;
            let (sequence, id) = key.value();
            let op: OpRef<'_> =
                serde_json::from_slice(bytes.value()).map_err(|e| corrupt_json("stored op", e))?;
            index.insert(
                id.to_owned(),
                Entry {
                    sequence,
                    table: op.table.into_owned(),
                    item_id: op.item_id.into_owned(),
                },
            );
        }
        Ok(index)
    }

    /// The entry of an op.
    pub(crate) fn get(&self, id: &str) -> Option<&Entry> {
        self.by_id.get(id)
    }

    /// The ids of one table's ops, in no particular order.
    pub(crate) fn ids_in(&self, table: &str) -> impl Iterator<Item = &str> {
        self.by_table
            .get(table)
            .into_iter()
            .flat_map(|t| t.items.values())
            .flat_map(|keys| keys.iter().map(|(_, id)| id.as_str()))
    }

    /// How many ops are queued, for one table or for all.
    pub(crate) fn count(&self, table: Option<&str>) -> u64 {
        match table {
            None => self.by_id.len() as u64,
            Some(table) => self.by_table.get(table).map_or(0, |t| t.count),
        }
    }

    /// Applies a committed batch's queue changes.
    pub(crate) fn apply(&mut self, staged: Staged) {
        for (id, entry) in staged.changes {
            match entry {
                Some(entry) => self.insert(id, entry),
                None => self.remove(&id),
            }
        }
    }

    fn insert(&mut self, id: String, entry: Entry) {
        // An op put again (a new sequence, or a new state) replaces its entry;
        // an id stored under two sequences (only in a damaged file) keeps its last.
        self.remove(&id);
        let table = self.by_table.entry(entry.table.clone()).or_default();
        if table
            .items
            .entry(entry.item_id.clone())
            .or_default()
            .insert((entry.sequence, id.clone()))
        {
            table.count += 1;
        }
        self.by_id.insert(id, entry);
    }

    fn remove(&mut self, id: &str) {
        let Some(entry) = self.by_id.remove(id) else {
            return;
        };
        let Some(table) = self.by_table.get_mut(&entry.table) else {
            return;
        };
        if let Some(keys) = table.items.get_mut(&entry.item_id) {
            if keys.remove(&(entry.sequence, id.to_owned())) {
                table.count = table.count.saturating_sub(1);
            }
            if keys.is_empty() {
                table.items.remove(&entry.item_id);
            }
        }
        if table.items.is_empty() {
            self.by_table.remove(&entry.table);
        }
    }
}

/// The queue changes of a batch not yet committed: op id → its entry after the
/// batch (`None`: removed). Lookups see the batch's own changes over the index.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    changes: HashMap<String, Option<Entry>>,
}

impl Staged {
    pub(crate) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The entry of an op as the batch sees it.
    pub(crate) fn get<'a>(&'a self, base: &'a QueueIndex, id: &str) -> Option<&'a Entry> {
        match self.changes.get(id) {
            Some(staged) => staged.as_ref(),
            None => base.get(id),
        }
    }

    pub(crate) fn put(&mut self, id: &str, entry: Entry) {
        self.changes.insert(id.to_owned(), Some(entry));
    }

    pub(crate) fn remove(&mut self, id: &str) {
        self.changes.insert(id.to_owned(), None);
    }

    /// The ids of one table's ops as the batch sees them.
    pub(crate) fn ids_in(&self, base: &QueueIndex, table: &str) -> Vec<String> {
        let mut ids: Vec<String> = base
            .ids_in(table)
            .filter(|id| !self.changes.contains_key(*id))
            .map(str::to_owned)
            .collect();
        ids.extend(
            self.changes
                .iter()
                .filter(|(_, e)| e.as_ref().is_some_and(|e| e.table == table))
                .map(|(id, _)| id.clone()),
        );
        ids
    }
}
