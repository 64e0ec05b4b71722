//! Where the operation queue is kept, and [`OpIndex`], the in-memory map of
//! where each op's record is (in its item's row or in `__operations`), which
//! the layout below needs to find a record again. The queue's rules and its
//! lookups for the engine are not here: the engine's `Queue` owns them and
//! builds itself from [`LocalStore::load_operations`](tidesync_core::LocalStore::load_operations).
//!
//! Where ops live: an op whose item has a row is kept **in that row**, in the
//! hidden column [`OP_COLUMN`] (one op per row); every other op (a delete's,
//! or a second op of an item whose row already holds one) is a row of
//! `__operations`, a plain rowid table with no index. A local write thus
//! writes the app row with its op in it: two B-tree pages per commit (the
//! row's and its primary-key entry's), as a plain insert, instead of three.
//! When a row holding an op is deleted, its op moves to `__operations` in the
//! same transaction.
//!
//! Why a map in memory: with no index on the queue, finding an op by id, by
//! item or in order needs one. Each index on disk would be one more page written
//! at every commit (three indexes made an engine insert cost 2.7 times a raw
//! row insert). The queue is small next to the app's data, so the store reads
//! it once and keeps the keys: `__operations` whole, and the rows holding an op
//! in each table listed in `__row_op_tables` — a scan of that table (about
//! 50 ms per million rows from the page cache here). A table is listed, in the
//! same transaction, before any of its rows gets an op, and unlisted when a
//! write leaves none of its rows holding one, so tables without local edits
//! (reference data, say) are never scanned.
//!
//! Marks: a push marks a batch of ops attempted before it sends them
//! (`Write::MarkAttempted`). Rewriting each op in its row would cost a row
//! write per op; instead one row of `__attempted` lists the batch's op ids
//! (JSON), and the map remembers which ops each such row still marks. An op
//! listed there reads back attempted whatever its own record says, until it is
//! written or deleted: it then leaves its row, which is rewritten without it at
//! the end of that write batch, or deleted when it marks none (a completed
//! batch: one `DELETE`).
//!
//! The map is only used on the writer connection, inside a transaction, and is
//! checked against `PRAGMA data_version` there: that number changes when another
//! connection (another handle or process on the same file) commits, and then
//! the map is read again. A write that fails leaves the map marked stale, so it
//! is rebuilt from what was really committed.
//!
//! A local write (a batch of one row with its op) asks the map two lookups by
//! op id and nothing else: its statement itself refuses to replace another op
//! held by the row, and the op it put into the row waits in `unrecorded`
//! until the map is next read ([`OpIndex::record`]), so the write does not
//! pay for four map updates. Such a write runs without a transaction around
//! it (`write_alone` in `write.rs`); the pager's data version after it
//! ([`OpIndex::wrote_alone`]) tells whether another connection committed
//! first, and then the map is read again.

use std::sync::Arc;

use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use tidesync_core::{OpState, Operation};

use crate::error::{Result, SqlResultExt, corrupt};
use crate::rows::{
    OP_COLUMN, operation_columns, operation_params, read_operation, read_row_op, row_op_key,
    row_op_text,
};
use crate::schema::quote;

mod attempts;
use attempts::Attempts;

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

/// Where an op's record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A row of `__operations`, by rowid.
    Queue(i64),
    /// The op column of its item's row.
    Row,
}

/// Where one op lives and how it is ordered.
#[derive(Debug, Clone)]
struct Entry {
    place: Place,
    sequence: u64,
    table: Arc<str>,
    item_id: String,
}

/// An op id, shared by the maps below (one allocation per op).
type Id = Arc<str>;

/// An op's place in the push order: its sequence, then its id (two ops never
/// share a sequence in practice; if they did, both are kept, ordered by id).
type Key = (u64, Id);

/// The ops of one item, oldest first: nearly always one, kept inline (no
/// `Vec` to allocate per local write).
#[derive(Debug)]
enum ItemKeys {
    One(Key),
    Many(Vec<Key>),
}

impl ItemKeys {
    fn keys(&self) -> &[Key] {
        match self {
            ItemKeys::One(key) => std::slice::from_ref(key),
            ItemKeys::Many(keys) => keys,
        }
    }
}

/// The maps' hasher: the keys are op ids, table names and item ids, hashed
/// several times per local write; SipHash showed in profiles.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The queue's keys, as of `PRAGMA data_version` = `version` of the writer.
#[derive(Debug, Default)]
pub(crate) struct OpIndex {
    /// `None`: stale, read the queue again before use.
    version: Option<i64>,
    /// The writer's `SQLITE_FCNTL_DATA_VERSION` when the map was last known
    /// current (see [`OpIndex::refresh_for_write`]).
    file_version: Option<u32>,
    by_id: HashMap<Id, Entry>,
    /// table → item id → its ops, oldest first (nested, so that lookups by
    /// `&str` need no allocation; the entries share the table's name with
    /// this map's key).
    by_item: HashMap<Arc<str>, HashMap<String, ItemKeys>>,
    /// The tables listed in `__row_op_tables`, with how many of their rows
    /// hold an op (as of the entries above; see `unrecorded`).
    row_tables: HashMap<Arc<str>, usize>,
    /// Ops written into their rows by [`OpIndex::row_written`] and not yet
    /// entered above, by op id. A local write only adds here; the maps take
    /// them in ([`OpIndex::record`]) before anything else reads them, so the
    /// write pays one map insert instead of four map updates.
    unrecorded: HashMap<String, RowOp>,
    /// table → its [`set_row_op_sql`], made once (a push marks hundreds of
    /// rows per batch).
    row_op_sql: HashMap<Arc<str>, Arc<str>>,
    /// Ops marked attempted by a [`Write::MarkAttempted`](tidesync_core::Write)
    /// entry and not written since: op id → the rowid of its `__attempted` row.
    marked: HashMap<Id, i64>,
    /// The rows of `__attempted`: rowid → the ops it still marks.
    attempts: HashMap<i64, Attempts>,
}

/// An op written into its item's row, not yet in the maps.
#[derive(Debug)]
struct RowOp {
    sequence: u64,
    table: Arc<str>,
    item_id: String,
}

/// The pager's data version of the main database (`SQLITE_FCNTL_DATA_VERSION`).
fn file_data_version(conn: &Connection) -> Result<u32> {
    let mut version: std::ffi::c_uint = 0;
    conn.file_control(
        None::<&std::ffi::CStr>,
        rusqlite::FileControl::DataVersion(&mut version),
    )
    .store()?;
    Ok(version)
}

/// `UPDATE` of a row's op column, by the row's id.
fn set_row_op_sql(table: &str) -> String {
    format!(
        "UPDATE {} SET {} = ?1 WHERE \"id\" = ?2",
        quote(table),
        quote(OP_COLUMN)
    )
}

impl OpIndex {
    /// Makes the map current for `conn`, which must be inside a transaction
    /// (the `data_version` read starts its snapshot, so the rebuild below and
    /// the caller's reads see the same state). `true` when it had to read the
    /// queue again: another connection committed (or a write failed) since.
    pub(crate) fn refresh(&mut self, conn: &Connection) -> Result<bool> {
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")
            .store()?
            .query_row([], |r| r.get(0))
            .store()?;
        if self.version == Some(version) {
            self.record();
            return Ok(false);
        }
        *self = OpIndex::default();
        self.read_queue_table(conn)?;
        let tables: Vec<String> = conn
            .prepare_cached("SELECT name FROM __row_op_tables")
            .store()?
            .query_map([], |r| r.get(0))
            .store()?
            .collect::<rusqlite::Result<_>>()
            .store()?;
        for table in tables {
            self.row_tables.insert(Arc::from(table.as_str()), 0);
            self.read_row_ops(conn, &table)?;
        }
        self.read_attempts(conn)?;
        self.version = Some(version);
        Ok(true)
    }

    /// [`refresh`](Self::refresh) for a write transaction (after `BEGIN
    /// IMMEDIATE`, which has read the WAL index): a file control call instead
    /// of a `PRAGMA data_version` statement when nothing changed, which is the
    /// usual case. The pager's data version (`SQLITE_FCNTL_DATA_VERSION`)
    /// changes whenever the file's content does, through this connection or
    /// another, and [`OpIndex::committed`] records it after each of this
    /// connection's own commits; if it moved for any other reason (another
    /// connection's commit, a `define_table`, a failed write), the `PRAGMA`
    /// check runs as before, so a change is never missed.
    pub(crate) fn refresh_for_write(&mut self, conn: &Connection) -> Result<bool> {
        let now = file_data_version(conn)?;
        if self.version.is_some() && self.file_version == Some(now) {
            return Ok(false);
        }
        let rebuilt = self.refresh(conn)?;
        self.file_version = Some(now);
        Ok(rebuilt)
    }

    /// Records the data version after this connection committed a write
    /// transaction that kept the map current.
    pub(crate) fn committed(&mut self, conn: &Connection) {
        self.file_version = file_data_version(conn).ok();
    }

    fn read_queue_table(&mut self, conn: &Connection) -> Result<()> {
        let mut stmt = conn
            .prepare_cached("SELECT rowid, id, sequence, tableName, itemId FROM __operations")
            .store()?;
        let mut rows = stmt.query([]).store()?;
        while let Some(row) = rows.next().store()? {
            let sequence: i64 = row.get(2).store()?;
            let sequence =
                u64::try_from(sequence).map_err(|_| corrupt(format!("sequence {sequence}")))?;
            let table: String = row.get(3).store()?;
            let entry = self.entry(
                Place::Queue(row.get(0).store()?),
                sequence,
                &table,
                row.get(4).store()?,
            );
            let id: String = row.get(1).store()?;
            self.add(&id, entry);
        }
        Ok(())
    }

    /// The ops held in the rows of `table`: a scan of the table.
    fn read_row_ops(&mut self, conn: &Connection, table: &str) -> Result<()> {
        let sql = format!(
            "SELECT \"id\", {op} FROM {} WHERE {op} IS NOT NULL",
            quote(table),
            op = quote(OP_COLUMN)
        );
        let mut stmt = conn.prepare(&sql).store()?;
        let mut rows = stmt.query([]).store()?;
        while let Some(row) = rows.next().store()? {
            let item_id: String = row.get(0).store()?;
            let text = row
                .get_ref(1)
                .store()?
                .as_str()
                .map_err(|e| corrupt(format!("queued op in row {item_id} of {table}: {e}")))?;
            let (id, sequence) = row_op_key(text, table, &item_id)?;
            let entry = self.entry(Place::Row, sequence, table, item_id);
            self.add(&id, entry);
        }
        Ok(())
    }

    /// Marks the map stale (after a failed write).
    pub(crate) fn invalidate(&mut self) {
        self.version = None;
        self.file_version = None;
        // What the failed write recorded may have been rolled back; the
        // rebuild reads what was committed.
        self.unrecorded.clear();
    }

    /// Enters the ops of [`OpIndex::row_written`] into the maps. Every
    /// method that reads the maps calls it first.
    fn record(&mut self) {
        if self.unrecorded.is_empty() {
            return;
        }
        for (id, op) in std::mem::take(&mut self.unrecorded) {
            // Rewritten in place, or new in its row: the map says so after.
            self.remove(&id);
            let entry = Entry {
                place: Place::Row,
                sequence: op.sequence,
                table: op.table,
                item_id: op.item_id,
            };
            self.add(&id, entry);
        }
    }

    /// Lists `table` in `__row_op_tables` unless it is: before one of its
    /// rows gets an op.
    fn mark(&mut self, conn: &Connection, table: &str) -> Result<()> {
        self.listed(conn, table).map(|_| ())
    }

    /// [`mark`](Self::mark), returning the table's shared name.
    fn listed(&mut self, conn: &Connection, table: &str) -> Result<Arc<str>> {
        if let Some((name, _)) = self.row_tables.get_key_value(table) {
            return Ok(name.clone());
        }
        conn.prepare_cached("INSERT OR IGNORE INTO __row_op_tables (name) VALUES (?1)")
            .store()?
            .execute([table])
            .store()?;
        let name: Arc<str> = Arc::from(table);
        self.row_tables.insert(name.clone(), 0);
        Ok(name)
    }

    /// Unlists the tables none of whose rows holds an op any more (at the
    /// end of a write batch).
    pub(crate) fn unmark_empty(&mut self, conn: &Connection) -> Result<()> {
        if self.row_tables.values().all(|n| *n > 0) {
            return Ok(());
        }
        // The counts are whole only with every op recorded.
        self.record();
        let empty: Vec<Arc<str>> = self
            .row_tables
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(t, _)| t.clone())
            .collect();
        for table in empty {
            conn.prepare_cached("DELETE FROM __row_op_tables WHERE name = ?1")
                .store()?
                .execute([&*table])
                .store()?;
            self.row_tables.remove(&table);
        }
        Ok(())
    }

    /// Counts a row op in or out of its table's number.
    fn count_row_op(&mut self, table: &str, added: bool) {
        if let Some(n) = self.row_tables.get_mut(table) {
            *n = if added { *n + 1 } else { n.saturating_sub(1) };
        }
    }

    /// An entry, its table name shared with the other entries of the table.
    fn entry(&mut self, place: Place, sequence: u64, table: &str, item_id: String) -> Entry {
        let table = match self.by_item.get_key_value(table) {
            Some((name, _)) => name.clone(),
            None => match self.row_tables.get_key_value(table) {
                Some((name, _)) => name.clone(),
                None => Arc::from(table),
            },
        };
        Entry {
            place,
            sequence,
            table,
            item_id,
        }
    }

    fn add(&mut self, id: &str, entry: Entry) {
        if entry.place == Place::Row {
            self.count_row_op(&entry.table, true);
        }
        let id: Id = Arc::from(id);
        let key = (entry.sequence, id.clone());
        let items = match self.by_item.get_mut(&*entry.table) {
            Some(items) => items,
            None => self.by_item.entry(entry.table.clone()).or_default(),
        };
        match items.get_mut(&entry.item_id) {
            None => {
                items.insert(entry.item_id.clone(), ItemKeys::One(key));
            }
            Some(keys) => {
                let mut many = match std::mem::replace(keys, ItemKeys::Many(Vec::new())) {
                    ItemKeys::One(one) => vec![one],
                    ItemKeys::Many(many) => many,
                };
                let at = many.partition_point(|k| *k < key);
                many.insert(at, key);
                *keys = ItemKeys::Many(many);
            }
        }
        self.by_id.insert(id, entry);
    }

    fn remove(&mut self, id: &str) -> Option<Entry> {
        let (id, entry) = self.by_id.remove_entry(id)?;
        self.unmark(&id);
        if entry.place == Place::Row {
            self.count_row_op(&entry.table, false);
        }
        let key = (entry.sequence, id);
        if let Some(items) = self.by_item.get_mut(&entry.table) {
            let emptied = match items.get_mut(&entry.item_id) {
                Some(ItemKeys::One(one)) => *one == key,
                Some(ItemKeys::Many(many)) => {
                    many.retain(|k| *k != key);
                    many.is_empty()
                }
                None => false,
            };
            if emptied {
                items.remove(&entry.item_id);
            }
            if items.is_empty() {
                self.by_item.remove(&entry.table);
            }
        }
        Some(entry)
    }

    /// The keys of the ops of one item, oldest first.
    fn keys_of(&self, table: &str, item_id: &str) -> &[Key] {
        self.by_item
            .get(table)
            .and_then(|items| items.get(item_id))
            .map_or(&[], ItemKeys::keys)
    }

    /// The id of the op kept in row `item_id` of `table`, if any.
    fn row_op(&self, table: &str, item_id: &str) -> Option<&str> {
        self.keys_of(table, item_id)
            .iter()
            .map(|(_, id)| &**id)
            .find(|id| self.by_id.get(*id).is_some_and(|e| e.place == Place::Row))
    }

    /// True when `op` may be written into its item's row together with the
    /// row by the row's guarded statement (`put_with_op_sql`, which sets the
    /// op column only when the row holds no op or this one, and otherwise
    /// changes nothing): the op is new, or already kept in this row. Two
    /// lookups by op id; on success the caller calls
    /// [`OpIndex::row_written`].
    pub(crate) fn may_hold_in_row(&self, op: &Operation) -> bool {
        let here = |table: &str, item_id: &str| table == op.table && item_id == op.item_id;
        if let Some(row_op) = self.unrecorded.get(op.id.as_str()) {
            return here(&row_op.table, &row_op.item_id);
        }
        match self.by_id.get(op.id.as_str()) {
            None => true,
            Some(entry) => entry.place == Place::Row && here(&entry.table, &entry.item_id),
        }
    }

    /// True when a local write to `table` may run as a statement of its own
    /// (see `write_alone` in `write.rs`): the map was current at this
    /// connection's last commit, and `table` is listed in `__row_op_tables`.
    pub(crate) fn ready_for_alone(&self, table: &str) -> bool {
        self.version.is_some() && self.file_version.is_some() && self.row_tables.contains_key(table)
    }

    /// Records `op`, which a statement of its own (its own transaction, now
    /// committed) put into its item's row. The pager's data version must have
    /// moved by exactly that commit since [`OpIndex::committed`] last recorded
    /// it; if it moved more, another connection committed in between and the
    /// map is read again at the next use.
    pub(crate) fn wrote_alone(&mut self, conn: &Connection, op: &Operation) {
        let now = file_data_version(conn).ok();
        let expected = self.file_version.map(|v| v.wrapping_add(1));
        let table = self
            .row_tables
            .get_key_value(op.table.as_str())
            .map(|(t, _)| t.clone());
        match table {
            Some(table) if now.is_some() && now == expected => {
                self.file_version = now;
                self.unrecorded_row_op(op, table);
            }
            _ => self.invalidate(),
        }
    }

    /// Records that the row statement put `op` into its item's row, listing
    /// its table in `__row_op_tables` (same transaction) when it is not.
    /// The maps take it in later ([`OpIndex::record`]).
    pub(crate) fn row_written(&mut self, conn: &Connection, op: &Operation) -> Result<()> {
        let table = self.listed(conn, &op.table)?;
        self.unrecorded_row_op(op, table);
        Ok(())
    }

    /// Holds `op`, just written into its row of `table`, until the maps take
    /// it in ([`OpIndex::record`]).
    fn unrecorded_row_op(&mut self, op: &Operation, table: Arc<str>) {
        self.unrecorded.insert(
            op.id.clone(),
            RowOp {
                sequence: op.sequence,
                table,
                item_id: op.item_id.clone(),
            },
        );
    }

    /// Adds or replaces an op (by id): in its item's row when the row exists
    /// and holds no other op, else in `__operations`.
    ///
    /// `table_exists`: whether `op.table` is a defined table (an op may name
    /// one that is not; it can only live in `__operations` then).
    pub(crate) fn put(
        &mut self,
        conn: &Connection,
        op: &Operation,
        table_exists: bool,
    ) -> Result<()> {
        self.record();
        let old = self.remove(&op.id);
        let moved = old
            .as_ref()
            .is_some_and(|e| *e.table != *op.table || e.item_id != op.item_id);
        if moved {
            // Not something the engine does; kept correct all the same.
            if let Some(old) = &old {
                self.erase(conn, &op.id, old)?;
            }
        }
        let place = match old {
            Some(Entry {
                place: Place::Queue(rowid),
                ..
            }) if !moved => {
                let params = operation_params(op)?;
                let values = params.into_iter().chain([SqlValue::Integer(rowid)]);
                conn.prepare_cached(UPDATE_SQL)
                    .store()?
                    .execute(rusqlite::params_from_iter(values))
                    .store()?;
                Place::Queue(rowid)
            }
            Some(Entry {
                place: Place::Row, ..
            }) if !moved => {
                let sql = self.row_op_sql(&op.table);
                let changed = conn
                    .prepare_cached(&sql)
                    .store()?
                    .execute((row_op_text(op)?, &op.item_id))
                    .store()?;
                if changed != 1 {
                    return Err(corrupt(format!(
                        "the row {} of {} holding op {} vanished",
                        op.item_id, op.table, op.id
                    )));
                }
                Place::Row
            }
            _ => self.insert(conn, op, table_exists)?,
        };
        let entry = self.entry(place, op.sequence, &op.table, op.item_id.clone());
        self.add(&op.id, entry);
        Ok(())
    }

    /// [`set_row_op_sql`] for `table`.
    fn row_op_sql(&mut self, table: &str) -> Arc<str> {
        if let Some(sql) = self.row_op_sql.get(table) {
            return Arc::clone(sql);
        }
        let sql: Arc<str> = set_row_op_sql(table).into();
        self.row_op_sql.insert(Arc::from(table), Arc::clone(&sql));
        sql
    }

    /// Writes a new op: into its item's row when there is one free, else
    /// into `__operations`.
    fn insert(&mut self, conn: &Connection, op: &Operation, table_exists: bool) -> Result<Place> {
        if table_exists && self.row_op(&op.table, &op.item_id).is_none() {
            let sql = format!(
                "UPDATE {} SET {op} = ?1 WHERE \"id\" = ?2 AND {op} IS NULL",
                quote(&op.table),
                op = quote(OP_COLUMN)
            );
            let changed = conn
                .prepare_cached(&sql)
                .store()?
                .execute((row_op_text(op)?, &op.item_id))
                .store()?;
            if changed == 1 {
                self.mark(conn, &op.table)?;
                return Ok(Place::Row);
            }
        }
        conn.prepare_cached(INSERT_SQL)
            .store()?
            .execute(operation_params(op)?)
            .store()?;
        Ok(Place::Queue(conn.last_insert_rowid()))
    }

    /// Removes an op's record where it is (the map is the caller's business).
    fn erase(&self, conn: &Connection, id: &str, entry: &Entry) -> Result<()> {
        match entry.place {
            Place::Queue(rowid) => {
                conn.prepare_cached("DELETE FROM __operations WHERE rowid = ?1")
                    .store()?
                    .execute([rowid])
                    .store()?;
            }
            Place::Row => {
                let changed = conn
                    .prepare_cached(&set_row_op_sql(&entry.table))
                    .store()?
                    .execute((SqlValue::Null, &entry.item_id))
                    .store()?;
                if changed != 1 {
                    return Err(corrupt(format!(
                        "the row {} of {} holding op {id} vanished",
                        entry.item_id, entry.table
                    )));
                }
            }
        }
        Ok(())
    }

    /// Forgets the op `id` when it is kept in row `item_id` of `table`, without
    /// touching the row: the caller's next statement rewrites that row with a
    /// null op column (`TableInfo::put_clearing_op`). False (nothing forgotten)
    /// when the op is anywhere else.
    pub(crate) fn forget_row_op(&mut self, id: &str, table: &str, item_id: &str) -> bool {
        self.record();
        let held = self
            .by_id
            .get(id)
            .is_some_and(|e| e.place == Place::Row && &*e.table == table && e.item_id == item_id);
        if held {
            self.remove(id);
        }
        held
    }

    /// Deletes an op by id; nothing if there is none.
    pub(crate) fn delete(&mut self, conn: &Connection, id: &str) -> Result<()> {
        self.record();
        if let Some(entry) = self.remove(id) {
            self.erase(conn, id, &entry)?;
        }
        Ok(())
    }

    /// Moves the op kept in row `item_id` of `table` (if any) to
    /// `__operations`: called before that row is deleted.
    pub(crate) fn evict(&mut self, conn: &Connection, table: &str, item_id: &str) -> Result<()> {
        self.record();
        let Some(id) = self.row_op(table, item_id).map(str::to_owned) else {
            return Ok(());
        };
        let op = Self::read_from_row(conn, table, item_id)?;
        conn.prepare_cached(INSERT_SQL)
            .store()?
            .execute(operation_params(&op)?)
            .store()?;
        let rowid = conn.last_insert_rowid();
        if let Some(entry) = self.by_id.get_mut(id.as_str()) {
            entry.place = Place::Queue(rowid);
            self.count_row_op(table, false);
        }
        Ok(())
    }

    /// Deletes every op (the caller has emptied the app tables, which held the
    /// ops kept in rows): the map is then empty and still current.
    pub(crate) fn clear(&mut self, conn: &Connection) -> Result<()> {
        conn.execute_batch(
            "DELETE FROM __operations; DELETE FROM __row_op_tables; DELETE FROM __attempted",
        )
        .store()?;
        let version = self.version;
        *self = OpIndex::default();
        self.version = version;
        Ok(())
    }

    /// Deletes every op of a table.
    pub(crate) fn delete_table(&mut self, conn: &Connection, table: &str) -> Result<()> {
        self.record();
        let ids: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, e)| &*e.table == table)
            .map(|(id, _)| id.to_string())
            .collect();
        for id in ids {
            if let Some(entry) = self.remove(&id) {
                if entry.place == Place::Row {
                    self.erase(conn, &id, &entry)?;
                }
            }
        }
        conn.prepare_cached("DELETE FROM __operations WHERE tableName = ?1")
            .store()?
            .execute([table])
            .store()?;
        Ok(())
    }

    fn read_from_row(conn: &Connection, table: &str, item_id: &str) -> Result<Operation> {
        let sql = format!(
            "SELECT {} FROM {} WHERE \"id\" = ?1",
            quote(OP_COLUMN),
            quote(table)
        );
        let mut stmt = conn.prepare_cached(&sql).store()?;
        let mut rows = stmt.query([item_id]).store()?;
        let text = match rows.next().store()? {
            Some(row) => row.get::<_, Option<String>>(0).store()?,
            None => None,
        };
        let text = text
            .ok_or_else(|| corrupt(format!("the op kept in row {item_id} of {table} vanished")))?;
        read_row_op(&text, table, item_id)
    }

    fn read(conn: &Connection, id: &str, entry: &Entry) -> Result<Operation> {
        let op = match entry.place {
            Place::Queue(rowid) => {
                let mut stmt = conn.prepare_cached(SELECT_SQL).store()?;
                let mut rows = stmt.query([rowid]).store()?;
                match rows.next().store()? {
                    Some(row) => read_operation(row)?,
                    None => return Err(corrupt(format!("queue row {rowid} vanished"))),
                }
            }
            Place::Row => Self::read_from_row(conn, &entry.table, &entry.item_id)?,
        };
        if op.id != id {
            return Err(corrupt(format!("op {id} is stored as op {}", op.id)));
        }
        Ok(op)
    }

    /// Every queued op, in ascending `(sequence, id)`: what the engine loads.
    pub(crate) fn all(&self, conn: &Connection) -> Result<Vec<Operation>> {
        let mut ops = self
            .by_id
            .iter()
            .map(|(id, entry)| Self::read(conn, id, entry))
            .collect::<Result<Vec<_>>>()?;
        if !self.marked.is_empty() {
            for op in &mut ops {
                if self.marked.contains_key(op.id.as_str()) {
                    op.state = OpState::Attempted;
                }
            }
        }
        ops.sort_by(|a, b| (a.sequence, &a.id).cmp(&(b.sequence, &b.id)));
        Ok(ops)
    }

    /// The sequence of op `id`, if it is queued.
    pub(crate) fn sequence_of(&self, id: &str) -> Option<u64> {
        self.by_id.get(id).map(|e| e.sequence)
    }
}
