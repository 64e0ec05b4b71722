//! A tidesync [`LocalStore`] on [redb](https://docs.rs/redb), the pure-Rust
//! embedded key-value store: one file holding the app's tables, the operation
//! queue, the error records and sync metadata.
//!
//! Each app table is one redb table keyed by item id, with rows in a compact
//! type-directed encoding and no secondary index. The queue is one redb table
//! keyed by `(sequence, op id)`, loaded whole by
//! [`LocalStore::load_operations`] (the engine's queue owns the lookups); to
//! replace or delete an op by id the store keeps an address map in memory
//! (each queued op's id, sequence, table and item id), built by one pass over
//! the queue when the file opens. So an insert and its queued op write two
//! B-trees. Every [`LocalStore::write`] is one redb write transaction: all of a
//! batch commits or none of it does, so an item and the queue entry describing
//! it can never be torn apart by a crash, and the in-memory index takes a
//! batch's changes only once it has committed. (Format 1 also wrote an
//! `(updatedAt, id)` index per table and two queue lookup tables; opening such
//! a file migrates it, see [`FORMAT_VERSION`].)
//!
//! This crate is **not** a query engine: queries are evaluated in Rust by
//! `tidesync_protocol`'s evaluator over the decoded rows, which costs O(n) in
//! the table's size per query, whatever its filter, order or `top` (see the
//! `query` module). It is not the default store either:
//! `tidesync-store-sqlite` is. Choose redb for a pure-Rust build with no C
//! code. The file is for one process at a time: a second handle or
//! process gets [`StoreError::Busy`] (which is also what makes the in-memory
//! queue index sound: nothing else can change the file under it).
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
mod queue;
mod schema;
mod write;

use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};
use tidesync_core::{
    Item, LocalStore, Operation, OperationError, QueryResult, StoreError, TableDef, WriteBatch,
};
use tidesync_protocol::odata::Query;

use crate::codec::{decode_error, decode_op};
use crate::error::from_redb;
use crate::queue::QueueIndex;
use crate::schema::{CONFIG, ERRORS, Names, OPS, StoredTable, TABLES};
use crate::write::Batch;

/// The store format this build writes and the newest it reads, kept in the
/// file's metadata. Opening an older file migrates it in the open's write
/// transaction; a newer one is refused with [`StoreError::UnsupportedFormat`].
///
/// Format 2 dropped the queue's `op_ids` and `op_items` tables of format 1
/// (their lookups are kept in memory) and the `updated/<table>` index tables.
/// The history of every layout, with its fixture, is in `docs/FORMATS.md`.
pub const FORMAT_VERSION: u64 = 2;

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
    /// for many small writes. A push commits immediately when it marks ops as
    /// sent, so whatever reached the server is also on disk.
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

/// Opens (or initialises an empty) redb file. redb trusts a file it shut down cleanly and
/// may panic (debug builds) on one damaged outside it; such a panic becomes `Corrupt` here.
fn open_database(builder: &redb::Builder, path: &Path) -> Result<Database, StoreError> {
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.create(path)))
        .map_err(|_| StoreError::Corrupt(format!("redb failed to open {}", path.display())))?;
    opened.map_err(from_redb)
}

/// Creates the store file at `path` (missing, or empty) so that a crash never leaves a
/// half-made one: redb writes a new file's header in several steps, and a file cut off
/// between them is no redb database at all, so every later open would fail. The file is
/// built under a temporary name beside `path` (`NAME.creating-PID`), its format committed
/// and the file closed, then put in place in one step: linked, so that a store another
/// process created meanwhile is kept, or renamed over an empty file. A crash before that
/// step leaves the temporary file, and no store.
fn create_file(builder: &redb::Builder, path: &Path) -> Result<(), StoreError> {
    let name = path
        .file_name()
        .ok_or_else(|| StoreError::Corrupt(format!("{} names no file", path.display())))?;
    let temporary = path.with_file_name(format!(
        "{}.creating-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    // A leftover of an earlier process with this id that was cut off.
    let _ = std::fs::remove_file(&temporary);
    {
        let db = open_database(builder, &temporary)?;
        let txn = db.begin_write().map_err(from_redb)?;
        schema::prepare(&txn)?;
        txn.commit().map_err(from_redb)?;
    }
    let placed = match std::fs::hard_link(&temporary, path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
                std::fs::rename(&temporary, path)
            } else {
                // Another handle created the store meanwhile: open that one.
                Ok(())
            }
        }
        other => other,
    };
    let _ = std::fs::remove_file(&temporary);
    placed.map_err(StoreError::backend)?;
    // The new directory entry survives a power loss too.
    let directory = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(directory) = std::fs::File::open(directory) {
        let _ = directory.sync_all();
    }
    Ok(())
}

/// A [`LocalStore`] in one redb file. Cheap to share behind an `Arc`: reads run
/// concurrently on MVCC snapshots, writes are serialised by redb.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    durability: redb::Durability,
    /// The queue's lookups by op id and by item, as last committed (see the
    /// `queue` module for how reads and writes keep it and the file in step).
    queue: RwLock<QueueIndex>,
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
        let existing = std::fs::metadata(&path).map(|m| m.len());
        match existing {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_file(&builder, &path)?,
            Ok(0) => create_file(&builder, &path)?,
            _ => {}
        }
        let db = open_database(&builder, &path)?;
        let txn = db.begin_write().map_err(from_redb)?;
        schema::prepare(&txn)?;
        let queue = QueueIndex::load(&txn.open_table(OPS).map_err(from_redb)?)?;
        txn.commit().map_err(from_redb)?;
        tracing::debug!(path = %path.display(), queued = queue.count(None), "opened redb store");
        Ok(Self {
            db,
            path,
            durability: match options.durability {
                Durability::Immediate => redb::Durability::Immediate,
                Durability::Eventual => redb::Durability::None,
            },
            queue: RwLock::new(queue),
        })
    }

    /// The path of the store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The durability `batch` commits with: the store's, except that a batch marking an op
    /// as sent (`Write::MarkAttempted`, or an op written `OpState::Attempted`, before push
    /// sends it) is always on disk before
    /// `write` returns. After a crash the engine tells its own earlier write, answered but
    /// lost, from a foreign one by that mark and the content the op keeps from the attempt;
    /// were the mark undone while the server kept the write, a later edit folded into the
    /// op would meet the server's copy as a conflict. One sync per push batch, not per
    /// local write.
    fn durability_of(&self, batch: &WriteBatch) -> redb::Durability {
        if batch.marks_attempted() {
            redb::Durability::Immediate
        } else {
            self.durability
        }
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        self.db.begin_read().map_err(from_redb)
    }

    /// The queue index, rebuilt from the file first if a failed commit left it
    /// stale. Begin a read transaction while holding the guard so that the
    /// snapshot and the index agree: writers commit under the write lock.
    fn queue(&self) -> Result<RwLockReadGuard<'_, QueueIndex>, StoreError> {
        loop {
            let index = self.queue.read().unwrap_or_else(PoisonError::into_inner);
            if index.valid {
                return Ok(index);
            }
            drop(index);
            let mut index = self.queue.write().unwrap_or_else(PoisonError::into_inner);
            if !index.valid {
                let txn = self.read()?;
                *index = QueueIndex::load(&txn.open_table(OPS).map_err(from_redb)?)?;
                tracing::debug!("rebuilt the redb queue index");
            }
        }
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
        query::run(table, &stored, &rows, query)
    }

    fn load_operations(&self) -> Result<Vec<Operation>, StoreError> {
        let txn = self.read()?;
        let ops = txn.open_table(OPS).map_err(from_redb)?;
        let mut found = Vec::new();
        for entry in ops.iter().map_err(from_redb)? {
            let (_, bytes) = entry.map_err(from_redb)?;
            found.push(decode_op(bytes.value())?);
        }
        Ok(found)
    }

    fn errors(&self) -> Result<Vec<OperationError>, StoreError> {
        let queue = self.queue()?;
        let txn = self.read()?;
        let errors = txn.open_table(ERRORS).map_err(from_redb)?;
        let mut found = Vec::new();
        for entry in errors.iter().map_err(from_redb)? {
            let (id, bytes) = entry.map_err(from_redb)?;
            let sequence = queue.get(id.value()).map_or(u64::MAX, |e| e.sequence);
            found.push((sequence, decode_error(bytes.value())?));
        }
        drop(queue);
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
        txn.set_durability(self.durability_of(batch))
            .map_err(from_redb)?;
        // Only the holder of redb's one write transaction changes the index,
        // so it stays as read here until this batch's own commit below.
        let applied = self
            .queue()
            .and_then(|queue| Batch::new(&txn, &queue).and_then(|tables| tables.apply_all(batch)));
        let staged = match applied {
            Ok(staged) => staged,
            Err(e) => {
                if let Err(abort) = txn.abort() {
                    tracing::warn!(error = %abort, "aborting a failed redb batch");
                }
                return Err(e);
            }
        };
        if staged.is_empty() {
            return txn.commit().map_err(from_redb);
        }
        // Readers pair the index with a snapshot under the read lock, so the
        // commit and the index update happen under the write lock together.
        let mut queue = self.queue.write().unwrap_or_else(PoisonError::into_inner);
        queue.valid = false;
        txn.commit().map_err(from_redb)?;
        queue.apply(staged);
        queue.valid = true;
        Ok(())
    }
}
