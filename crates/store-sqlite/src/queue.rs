//! The operation queue: `__operations` rows in a plain rowid table with no
//! secondary index, and [`OpIndex`], the in-memory map that answers "which rows
//! hold op `id`", "which rows hold the ops of item `(table, id)`" and "the ops
//! in sequence order".
//!
//! Why in memory: every local write adds or changes an op, and each index on
//! `__operations` costs one more B-tree page written at every commit (three
//! indexes made an engine insert cost 2.7 times a raw row insert; the plain
//! row, 1.1 times). The queue is small next to the app's data, so the store
//! reads the ids, sequences and items of all ops once and keeps them.
//!
//! The map is only used on the writer connection, inside a transaction, and is
//! checked against `PRAGMA data_version` there: that number changes when another
//! connection (another handle or process on the same file) commits, and then
//! the map is read again from the table. A write that fails leaves the map
//! marked stale, so it is rebuilt from what was really committed.

use std::collections::{BTreeSet, HashMap};

use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use tidesync_core::Operation;

use crate::error::{Result, SqlResultExt, corrupt};
use crate::rows::{operation_columns, operation_params, read_operation};

const INSERT_SQL: &str = concat!(
    "INSERT INTO __operations (",
    operation_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
);
const UPDATE_SQL: &str = concat!(
    "UPDATE __operations SET (",
    operation_columns!(),
    ") = (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) WHERE rowid = ?10"
);
const SELECT_SQL: &str = concat!(
    "SELECT ",
    operation_columns!(),
    " FROM __operations WHERE rowid = ?1"
);

/// Where one op lives and how it is ordered.
#[derive(Debug, Clone)]
struct Entry {
    rowid: i64,
    sequence: u64,
    table: String,
    item_id: String,
}

/// An op's place in the push order: its sequence, then its rowid (two ops
/// never share a sequence in practice; if they did, both are kept, the older
/// row first).
type Key = (u64, i64);

/// The queue's keys, as of `PRAGMA data_version` = `version` of the writer.
#[derive(Debug, Default)]
pub(crate) struct OpIndex {
    /// `None`: stale, read the table again before use.
    version: Option<i64>,
    by_id: HashMap<String, Entry>,
    /// Every op in push order.
    order: BTreeSet<Key>,
    /// `(table, item id)` → its ops, oldest first.
    by_item: HashMap<(String, String), Vec<Key>>,
}

impl OpIndex {
    /// Makes the map current for `conn`, which must be inside a transaction
    /// (the `data_version` read starts its snapshot, so the rebuild below and
    /// the caller's reads see the same state). `true` when it had to read the
    /// table again: another connection committed (or a write failed) since.
    pub(crate) fn refresh(&mut self, conn: &Connection) -> Result<bool> {
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")
            .store()?
            .query_row([], |r| r.get(0))
            .store()?;
        if self.version == Some(version) {
            return Ok(false);
        }
        *self = OpIndex::default();
        let mut stmt = conn
            .prepare_cached("SELECT rowid, id, sequence, tableName, itemId FROM __operations")
            .store()?;
        let mut rows = stmt.query([]).store()?;
        while let Some(row) = rows.next().store()? {
            let sequence: i64 = row.get(2).store()?;
            let entry = Entry {
                rowid: row.get(0).store()?,
                sequence: u64::try_from(sequence)
                    .map_err(|_| corrupt(format!("sequence {sequence}")))?,
                table: row.get(3).store()?,
                item_id: row.get(4).store()?,
            };
            self.add(row.get(1).store()?, entry);
        }
        self.version = Some(version);
        Ok(true)
    }

    /// Marks the map stale (after a failed write).
    pub(crate) fn invalidate(&mut self) {
        self.version = None;
    }

    fn add(&mut self, id: String, entry: Entry) {
        let key = (entry.sequence, entry.rowid);
        self.order.insert(key);
        let ops = self
            .by_item
            .entry((entry.table.clone(), entry.item_id.clone()))
            .or_default();
        let at = ops.partition_point(|k| *k < key);
        ops.insert(at, key);
        self.by_id.insert(id, entry);
    }

    fn remove(&mut self, id: &str) -> Option<Entry> {
        let entry = self.by_id.remove(id)?;
        let key = (entry.sequence, entry.rowid);
        self.order.remove(&key);
        let item = (entry.table.clone(), entry.item_id.clone());
        if let Some(ops) = self.by_item.get_mut(&item) {
            ops.retain(|k| *k != key);
            if ops.is_empty() {
                self.by_item.remove(&item);
            }
        }
        Some(entry)
    }

    /// Adds or replaces an op (by id).
    pub(crate) fn put(&mut self, conn: &Connection, op: &Operation) -> Result<()> {
        let params = operation_params(op)?;
        let rowid = match self.remove(&op.id) {
            Some(old) => {
                let values = params.into_iter().chain([SqlValue::Integer(old.rowid)]);
                conn.prepare_cached(UPDATE_SQL)
                    .store()?
                    .execute(rusqlite::params_from_iter(values))
                    .store()?;
                old.rowid
            }
            None => {
                conn.prepare_cached(INSERT_SQL)
                    .store()?
                    .execute(params)
                    .store()?;
                conn.last_insert_rowid()
            }
        };
        self.add(
            op.id.clone(),
            Entry {
                rowid,
                sequence: op.sequence,
                table: op.table.clone(),
                item_id: op.item_id.clone(),
            },
        );
        Ok(())
    }

    /// Deletes an op by id; nothing if there is none.
    pub(crate) fn delete(&mut self, conn: &Connection, id: &str) -> Result<()> {
        if let Some(entry) = self.remove(id) {
            conn.prepare_cached("DELETE FROM __operations WHERE rowid = ?1")
                .store()?
                .execute([entry.rowid])
                .store()?;
        }
        Ok(())
    }

    /// Deletes every op of a table.
    pub(crate) fn delete_table(&mut self, conn: &Connection, table: &str) -> Result<()> {
        conn.prepare_cached("DELETE FROM __operations WHERE tableName = ?1")
            .store()?
            .execute([table])
            .store()?;
        let ids: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, e)| e.table == table)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.remove(&id);
        }
        Ok(())
    }

    fn read(conn: &Connection, rowid: i64) -> Result<Operation> {
        let mut stmt = conn.prepare_cached(SELECT_SQL).store()?;
        let mut rows = stmt.query([rowid]).store()?;
        match rows.next().store()? {
            Some(row) => read_operation(row),
            None => Err(corrupt(format!("queue row {rowid} vanished"))),
        }
    }

    /// Up to `limit` ops with a sequence above `after`, in order.
    pub(crate) fn after(
        &self,
        conn: &Connection,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Operation>> {
        let Some(from) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.order
            .range((from, i64::MIN)..)
            .take(limit)
            .map(|(_, rowid)| Self::read(conn, *rowid))
            .collect()
    }

    /// The ops of one item, oldest first.
    pub(crate) fn of_item(
        &self,
        conn: &Connection,
        table: &str,
        item_id: &str,
    ) -> Result<Vec<Operation>> {
        let Some(keys) = self.by_item.get(&(table.to_owned(), item_id.to_owned())) else {
            return Ok(Vec::new());
        };
        keys.iter()
            .map(|(_, rowid)| Self::read(conn, *rowid))
            .collect()
    }

    /// One op by id.
    pub(crate) fn get(&self, conn: &Connection, id: &str) -> Result<Option<Operation>> {
        self.by_id
            .get(id)
            .map(|e| Self::read(conn, e.rowid))
            .transpose()
    }

    /// How many ops, of one table or of all.
    pub(crate) fn count(&self, table: Option<&str>) -> u64 {
        let n = match table {
            None => self.by_id.len(),
            Some(t) => self.by_id.values().filter(|e| e.table == t).count(),
        };
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    /// The highest sequence, 0 with an empty queue.
    pub(crate) fn max_sequence(&self) -> u64 {
        self.order.last().map_or(0, |(s, _)| *s)
    }
}
