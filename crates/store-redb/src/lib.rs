//! A tidesync [`LocalStore`] on [redb](https://docs.rs/redb), the pure-Rust
//! embedded key-value store: one file holding the app's tables, the operation
//! queue, the error records and sync metadata.
//!
//! Each app table is a redb table keyed by item id, with rows in a compact
//! type-directed encoding, beside an `(updatedAt, id)` index table. The queue
//! is keyed by sequence number, with an op-id → sequence table and a
//! `(table, item_id, sequence)` table so that [`LocalStore::operations_for`]
//! is a range read, not a scan. Every [`LocalStore::write`] is one redb write
//! transaction: all of a batch commits or none of it does, so an item and the
//! queue entry describing it can never be torn apart by a crash.
//!
//! This crate is **not** a query engine: queries are evaluated in Rust by
//! `tidesync_protocol`'s evaluator over the decoded rows, which costs O(n) in
//! the table's size per query (see the `query` module; the `updatedAt`-ordered
//! pull shape walks the index and stops early). It is not the default store
//! either: `tidesync-store-sqlite` is. Choose redb for a pure-Rust build with
//! no C code. The file is for one process at a time: a second handle or
//! process gets [`StoreError::Busy`].
//!
//! ```
//! use serde_json::json;
//! use tidesync_core::{ColumnType, LocalStore, Query, TableDef, Write, WriteBatch};
//! use tidesync_store_redb::RedbStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = RedbStore::open(dir.path().join("app.redb"))?;
//! store.define_table(&TableDef::new("todo").column("text", ColumnType::String))?;
//! let mut batch = WriteBatch::new();
//! batch.push(Write::PutItem {
//!     table: "todo".into(),
//!     item: json!({"id": "a", "text": "buy milk"}).as_object().cloned().unwrap_or_default(),
//! });
//! store.write(&batch)?;
//! let found = store.query("todo", &Query::all())?;
//! assert_eq!(found.items[0]["text"], "buy milk");
//! # Ok(())
//! # }
//! ```

mod codec;
mod error;
mod query;
mod schema;
mod write;

use std::path::{Path, PathBuf};

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use tidesync_core::{
    Item, LocalStore, Operation, OperationError, QueryResult, StoreError, TableDef, WriteBatch,
};
use tidesync_protocol::odata::Query;

use crate::error::from_redb;
use crate::schema::{CONFIG, ERRORS, Names, OP_IDS, OP_ITEMS, OPS, StoredTable, TABLES};
use crate::write::{Batch, decode_error, decode_op};

/// The store format this build writes and the newest it reads, kept in the
/// file's metadata. Opening an older file migrates it in the open's write
/// transaction; a newer one is refused with [`StoreError::UnsupportedFormat`].
pub const FORMAT_VERSION: u64 = 1;

/// When a committed write reaches the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Every [`LocalStore::write`] is on disk (fsync) when it returns. The default.
    #[default]
    Immediate,
    /// Writes commit in memory and reach the disk at the next immediate commit
    /// or when the store is dropped (redb's `Durability::None`). A crash or
    /// power loss can lose the latest batches, never tear one: the file goes
    /// back to the last durable commit, items and queue together. Much faster
    /// for many small writes.
    Eventual,
}

/// How [`RedbStore::open_with`] opens a file. Build it with struct update
/// syntax: `RedbOptions { durability: Durability::Eventual, ..RedbOptions::default() }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedbOptions {
    /// When writes reach the disk.
    pub durability: Durability,
    /// redb's page cache, in bytes (redb's own default is 1 GiB; ours is 64 MiB).
    pub cache_size: usize,
    /// Verify every page checksum when opening (reads the whole file), so a file
    /// damaged outside redb is refused as `Corrupt` rather than trusted.
    pub check_integrity_on_open: bool,
}

impl Default for RedbOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Immediate,
            cache_size: 64 * 1024 * 1024,
            check_integrity_on_open: false,
        }
    }
}

/// A [`LocalStore`] in one redb file. Cheap to share behind an `Arc`: reads run
/// concurrently on MVCC snapshots, writes are serialised by redb.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    durability: redb::Durability,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens the store at `path`, creating the file if it does not exist, with
    /// the default [`RedbOptions`].
    ///
    /// # Errors
    /// [`StoreError::Busy`] when another handle or process has the file open,
    /// [`StoreError::Corrupt`] for a file that is not a tidesync redb store,
    /// [`StoreError::UnsupportedFormat`] for a newer format, `Backend` for I/O.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, RedbOptions::default())
    }

    /// Opens the store at `path` with the given options; see [`RedbStore::open`].
    ///
    /// # Errors
    /// As for [`RedbStore::open`].
    pub fn open_with(path: impl AsRef<Path>, options: RedbOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        let mut builder = Database::builder();
        builder
            .set_cache_size(options.cache_size)
            .set_check_integrity_on_open(options.check_integrity_on_open);
        // redb trusts a file it shut down cleanly and may panic (debug builds)
        // on one damaged outside it; such a panic becomes `Corrupt` here.
        let opened =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.create(&path)))
                .map_err(|_| {
                    StoreError::Corrupt(format!("redb failed to open {}", path.display()))
                })?;
        let db = opened.map_err(from_redb)?;
        let txn = db.begin_write().map_err(from_redb)?;
        schema::prepare(&txn)?;
        txn.commit().map_err(from_redb)?;
        tracing::debug!(path = %path.display(), "opened redb store");
        Ok(Self {
            db,
            path,
            durability: match options.durability {
                Durability::Immediate => redb::Durability::Immediate,
                Durability::Eventual => redb::Durability::None,
            },
        })
    }

    /// The path of the store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        self.db.begin_read().map_err(from_redb)
    }
}

/// The stored definition of a table, or `UnknownTable`.
fn stored_table(txn: &ReadTransaction, name: &str) -> Result<StoredTable, StoreError> {
    let tables = txn.open_table(TABLES).map_err(from_redb)?;
    schema::load_table(&tables, name)?.ok_or_else(|| StoreError::UnknownTable(name.to_owned()))
}

impl LocalStore for RedbStore {
    fn define_table(&self, def: &TableDef) -> Result<(), StoreError> {
        def.validate()?;
        let txn = self.db.begin_write().map_err(from_redb)?;
        match schema::define(&txn, def) {
            Ok(true) => txn.commit().map_err(from_redb),
            Ok(false) => txn.abort().map_err(from_redb),
            Err(e) => {
                let _ = txn.abort();
                Err(e)
            }
        }
    }

    fn table(&self, name: &str) -> Result<Option<TableDef>, StoreError> {
        let txn = self.read()?;
        let tables = txn.open_table(TABLES).map_err(from_redb)?;
        Ok(schema::load_table(&tables, name)?.map(|t| t.def))
    }

    fn get(&self, table: &str, id: &str) -> Result<Option<Item>, StoreError> {
        let txn = self.read()?;
        let stored = stored_table(&txn, table)?;
        let names = Names::of(table);
        let rows = txn.open_table(names.rows()).map_err(from_redb)?;
        match rows.get(id).map_err(from_redb)? {
            None => Ok(None),
            Some(bytes) => query::decode(table, &stored, id, bytes.value()).map(Some),
        }
    }

    fn query(&self, table: &str, query: &Query) -> Result<QueryResult, StoreError> {
        let txn = self.read()?;
        let stored = stored_table(&txn, table)?;
        let names = Names::of(table);
        let rows = txn.open_table(names.rows()).map_err(from_redb)?;
        let index = txn.open_table(names.index()).map_err(from_redb)?;
        query::run(table, &stored, &rows, &index, query)
    }

    fn operations(&self, after_sequence: u64, limit: usize) -> Result<Vec<Operation>, StoreError> {
        let Some(first) = after_sequence.checked_add(1) else {
            return Ok(Vec::new());
        };
        let txn = self.read()?;
        let ops = txn.open_table(OPS).map_err(from_redb)?;
        let mut found = Vec::new();
        for entry in ops.range((first, "")..).map_err(from_redb)?.take(limit) {
            let (_, bytes) = entry.map_err(from_redb)?;
            found.push(decode_op(bytes.value())?);
        }
        Ok(found)
    }

    fn operations_for(&self, table: &str, item_id: &str) -> Result<Vec<Operation>, StoreError> {
        let txn = self.read()?;
        let items = txn.open_table(OP_ITEMS).map_err(from_redb)?;
        let ops = txn.open_table(OPS).map_err(from_redb)?;
        let mut found = Vec::new();
        for entry in items
            .range((table, item_id, 0u64, "")..)
            .map_err(from_redb)?
        {
            let (key, _) = entry.map_err(from_redb)?;
            let (t, i, sequence, id) = key.value();
            if t != table || i != item_id {
                break;
            }
            let bytes = ops.get((sequence, id)).map_err(from_redb)?.ok_or_else(|| {
                StoreError::Corrupt(format!("queue index names a missing op {id}"))
            })?;
            found.push(decode_op(bytes.value())?);
        }
        Ok(found)
    }

    fn operation(&self, id: &str) -> Result<Option<Operation>, StoreError> {
        let txn = self.read()?;
        let op_ids = txn.open_table(OP_IDS).map_err(from_redb)?;
        let Some(sequence) = op_ids.get(id).map_err(from_redb)?.map(|s| s.value()) else {
            return Ok(None);
        };
        let ops = txn.open_table(OPS).map_err(from_redb)?;
        match ops.get((sequence, id)).map_err(from_redb)? {
            Some(bytes) => decode_op(bytes.value()).map(Some),
            None => Err(StoreError::Corrupt(format!(
                "op {id} points at a missing sequence {sequence}"
            ))),
        }
    }

    fn count_operations(&self, table: Option<&str>) -> Result<u64, StoreError> {
        let txn = self.read()?;
        let Some(table) = table else {
            return txn
                .open_table(OPS)
                .map_err(from_redb)?
                .len()
                .map_err(from_redb);
        };
        let items = txn.open_table(OP_ITEMS).map_err(from_redb)?;
        let mut count = 0;
        for entry in items.range((table, "", 0u64, "")..).map_err(from_redb)? {
            let (key, _) = entry.map_err(from_redb)?;
            if key.value().0 != table {
                break;
            }
            count += 1;
        }
        Ok(count)
    }

    fn max_sequence(&self) -> Result<u64, StoreError> {
        let txn = self.read()?;
        let ops = txn.open_table(OPS).map_err(from_redb)?;
        Ok(ops
            .last()
            .map_err(from_redb)?
            .map_or(0, |(k, _)| k.value().0))
    }

    fn errors(&self) -> Result<Vec<OperationError>, StoreError> {
        let txn = self.read()?;
        let errors = txn.open_table(ERRORS).map_err(from_redb)?;
        let op_ids = txn.open_table(OP_IDS).map_err(from_redb)?;
        let mut found = Vec::new();
        for entry in errors.iter().map_err(from_redb)? {
            let (id, bytes) = entry.map_err(from_redb)?;
            let sequence = op_ids
                .get(id.value())
                .map_err(from_redb)?
                .map_or(u64::MAX, |s| s.value());
            found.push((sequence, decode_error(bytes.value())?));
        }
        // Errors are keyed by op id, so ties on sequence are already in id order
        // (a stable sort keeps it), as in the queue itself.
        found.sort_by_key(|(sequence, _)| *sequence);
        Ok(found.into_iter().map(|(_, e)| e).collect())
    }

    fn config(&self, key: &str) -> Result<Option<String>, StoreError> {
        let txn = self.read()?;
        let config = txn.open_table(CONFIG).map_err(from_redb)?;
        Ok(config
            .get(key)
            .map_err(from_redb)?
            .map(|v| v.value().to_owned()))
    }

    fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write().map_err(from_redb)?;
        txn.set_durability(self.durability).map_err(from_redb)?;
        let applied = Batch::new(&txn).and_then(|mut tables| tables.apply_all(batch));
        match applied {
            Ok(()) => txn.commit().map_err(from_redb),
            Err(e) => {
                if let Err(abort) = txn.abort() {
                    tracing::warn!(error = %abort, "aborting a failed redb batch");
                }
                Err(e)
            }
        }
    }
}
