//! [`SqliteStore`]: connections, options, and the [`LocalStore`] implementation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tidesync_core::{
    Item, LocalStore, Operation, OperationError, Query, QueryResult, TableDef, Write, WriteBatch,
};

use crate::error::{Result, SqlResultExt};
use crate::query::run;
use crate::queue::OpIndex;
use crate::rows::{ERROR_COLUMNS, read_error};
use crate::schema;
use crate::write::{TableInfo, WriterTables, execute, write_alone, write_batch};

/// SQLite's `synchronous` setting in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// A commit is durable once the WAL is synced at a checkpoint: a power loss
    /// may lose the last commits but never corrupts the file. The default.
    #[default]
    Normal,
    /// Every commit syncs the WAL before it returns: durable at each commit, slower.
    Full,
}

/// How a [`SqliteStore`] opens its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// `PRAGMA synchronous`.
    pub synchronous: Synchronous,
    /// How long a write waits for another connection's lock before failing with
    /// `StoreError::Busy`.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Reader connections kept open for reuse; more are opened when all are busy.
const MAX_IDLE_READERS: usize = 4;

/// Prepared statements cached per connection.
const STATEMENT_CACHE: usize = 128;

/// A [`LocalStore`] in one SQLite file (see the crate documentation).
///
/// Writes run on one writer connection behind a mutex; reads on a pool of reader
/// connections (WAL snapshots), so readers wait neither for each other nor for a
/// write. An in-memory store ([`SqliteStore::open_in_memory`]) has only the one
/// connection, shared by reads and writes.
#[derive(Debug)]
pub struct SqliteStore {
    writer: Mutex<Writer>,
    /// `None` for an in-memory store.
    file: Option<PathBuf>,
    options: SqliteOptions,
    readers: Mutex<Vec<Connection>>,
    /// Table definitions and their statements, valid for one schema version.
    tables: TableCache,
}

/// Parsed table definitions with their SQL, keyed by SQLite's
/// `PRAGMA schema_version`: any DDL (a table created or grown, here or by another
/// process) changes the version and empties the cache, so a definition is read
/// from `__tables` and parsed once per schema change instead of once per call.
#[derive(Debug, Default)]
struct TableCache {
    inner: Mutex<(i64, HashMap<String, Arc<TableInfo>>)>,
}

impl TableCache {
    fn get(&self, conn: &Connection, table: &str) -> Result<Arc<TableInfo>> {
        let version: i64 = conn
            .prepare_cached("PRAGMA schema_version")
            .store()?
            .query_row([], |r| r.get(0))
            .store()?;
        {
            let mut cache = lock(&self.inner);
            if cache.0 != version {
                *cache = (version, HashMap::new());
            } else if let Some(info) = cache.1.get(table) {
                return Ok(info.clone());
            }
        }
        let info = Arc::new(TableInfo::load(conn, table)?);
        let mut cache = lock(&self.inner);
        if cache.0 == version {
            cache.1.insert(table.to_owned(), info.clone());
        }
        Ok(info)
    }
}

/// The writer connection and what only it uses: the queue map, and the table
/// definitions, valid as long as the queue map is (both are dropped when
/// another connection commits, and the tables when this one defines a table).
#[derive(Debug)]
struct Writer {
    conn: Connection,
    ops: OpIndex,
    tables: WriterTables,
    /// The op column's text of a local write (a buffer kept between writes).
    op_text: String,
}

impl Writer {
    fn new(conn: Connection) -> Writer {
        Writer {
            conn,
            ops: OpIndex::default(),
            tables: WriterTables::default(),
            op_text: String::new(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SqliteStore {
    /// Opens (or creates) the store file at `path` with the default options.
    ///
    /// # Errors
    /// `Corrupt` when the file is not a SQLite database or not a tidesync store,
    /// `UnsupportedFormat` when a newer build wrote it, `Busy` when another
    /// process holds it past the busy timeout, `Backend` for I/O failures.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens (or creates) the store file at `path`.
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<SqliteStore> {
        let path = path.as_ref().to_owned();
        let mut writer = Connection::open(&path).store()?;
        configure(&writer, &options)?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .store()?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, path = %path.display(), "SQLite did not switch to WAL mode");
        }
        let sync = match options.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        writer.pragma_update(None, "synchronous", sync).store()?;
        schema::migrate(&mut writer)?;
        Ok(SqliteStore {
            writer: Mutex::new(Writer::new(writer)),
            file: Some(path),
            options,
            readers: Mutex::new(Vec::new()),
            tables: TableCache::default(),
        })
    }

    /// A store in memory: nothing survives the handle. Reads share the writer
    /// connection.
    ///
    /// # Errors
    /// `Backend` when SQLite cannot allocate the database.
    pub fn open_in_memory() -> Result<SqliteStore> {
        let options = SqliteOptions::default();
        let mut writer = Connection::open_in_memory().store()?;
        configure(&writer, &options)?;
        schema::migrate(&mut writer)?;
        Ok(SqliteStore {
            writer: Mutex::new(Writer::new(writer)),
            file: None,
            options,
            readers: Mutex::new(Vec::new()),
            tables: TableCache::default(),
        })
    }

    /// The store's file, `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Runs `f` inside one read transaction (a consistent snapshot) on a reader
    /// connection, or on the writer for an in-memory store.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let Some(path) = &self.file else {
            let writer = lock(&self.writer);
            return in_read_transaction(&writer.conn, f);
        };
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = Connection::open_with_flags(path, flags).store()?;
                configure(&conn, &self.options)?;
                conn.pragma_update(None, "query_only", true).store()?;
                conn
            }
        };
        let result = in_read_transaction(&conn, f);
        if conn.is_autocommit() {
            let mut idle = lock(&self.readers);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        result
    }

    /// Runs `f` in one read transaction on the writer connection with the queue
    /// map made current: the queue is read there, where the map lives.
    fn read_queue<T>(
        &self,
        f: impl FnOnce(&Connection, &OpIndex, &mut WriterTables) -> Result<T>,
    ) -> Result<T> {
        let mut writer = lock(&self.writer);
        let Writer {
            conn, ops, tables, ..
        } = &mut *writer;
        in_read_transaction(conn, |conn| {
            if ops.refresh(conn)? {
                tables.clear();
            }
            f(conn, ops, tables)
        })
    }
}

fn configure(conn: &Connection, options: &SqliteOptions) -> Result<()> {
    conn.busy_timeout(options.busy_timeout).store()?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

fn in_read_transaction<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    execute(conn, "BEGIN DEFERRED", [])?;
    let result = f(conn);
    let end = execute(conn, if result.is_ok() { "COMMIT" } else { "ROLLBACK" }, []);
    if end.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let value = result?;
    end?;
    Ok(value)
}

impl LocalStore for SqliteStore {
    fn define_table(&self, def: &TableDef) -> Result<()> {
        def.validate()?;
        let mut writer = lock(&self.writer);
        writer.tables.clear();
        let tx = writer
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .store()?;
        schema::define(&tx, def)?;
        tx.commit().store()
    }

    fn table(&self, name: &str) -> Result<Option<TableDef>> {
        self.read(|conn| schema::load_definition(conn, name))
    }

    fn get(&self, table: &str, id: &str) -> Result<Option<Item>> {
        self.read(|conn| read_row(conn, &*self.tables.get(conn, table)?, id))
    }

    fn get_many(&self, keys: &[(&str, &str)]) -> Result<Vec<Option<Item>>> {
        self.read(|conn| {
            // One definition lookup and one statement per table of the call,
            // not per key (a push reads hundreds of rows of one table at once).
            let mut tables: Vec<(&str, Arc<TableInfo>, rusqlite::CachedStatement<'_>)> = Vec::new();
            keys.iter()
                .map(|(table, id)| {
                    let at = match tables.iter().position(|(name, ..)| name == table) {
                        Some(at) => at,
                        None => {
                            let info = self.tables.get(conn, table)?;
                            let stmt = conn.prepare_cached(&info.select_sql).store()?;
                            tables.push((table, info, stmt));
                            tables.len() - 1
                        }
                    };
                    let (_, info, stmt) = &mut tables[at];
                    read_with(stmt, info, id)
                })
                .collect()
        })
    }

    fn query(&self, table: &str, query: &Query) -> Result<QueryResult> {
        self.read(|conn| run(conn, &self.tables.get(conn, table)?.def, query))
    }

    fn load_operations(&self) -> Result<Vec<Operation>> {
        self.read_queue(|conn, queue, _| queue.all(conn))
    }

    fn errors(&self) -> Result<Vec<OperationError>> {
        // In the order of their ops (errors of ops no longer queued last, by id):
        // the ops' sequences are in the queue map.
        self.read_queue(|conn, queue, _| {
            let sql = format!("SELECT {ERROR_COLUMNS} FROM __errors");
            let mut stmt = conn.prepare_cached(&sql).store()?;
            let mut rows = stmt.query([]).store()?;
            let mut errors = Vec::new();
            while let Some(row) = rows.next().store()? {
                let error = read_error(row)?;
                let sequence = queue.sequence_of(&error.operation_id);
                errors.push((sequence.is_none(), sequence, error));
            }
            errors
                .sort_by(|a, b| (a.0, a.1, &a.2.operation_id).cmp(&(b.0, b.1, &b.2.operation_id)));
            Ok(errors.into_iter().map(|(_, _, e)| e).collect())
        })
    }

    fn config(&self, key: &str) -> Result<Option<String>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT value FROM __config WHERE id = ?1")
                .store()?
                .query_row([key], |r| r.get(0))
                .optional()
                .store()
        })
    }

    fn write(&self, batch: &WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut writer = lock(&self.writer);
        let Writer {
            conn,
            ops,
            tables,
            op_text,
        } = &mut *writer;
        let result = match batch.writes.as_slice() {
            [Write::PutItemAndOperation { table, item, op }] => {
                match write_alone(conn, tables, ops, op_text, table, item, op) {
                    Ok(true) => Ok(()),
                    Ok(false) => write_batch(conn, tables, ops, batch),
                    Err(e) => Err(e),
                }
            }
            _ => write_batch(conn, tables, ops, batch),
        };
        if result.is_err() {
            // The map may hold changes the rollback undid: read it again.
            ops.invalidate();
        }
        result
    }
}

/// One row by id.
fn read_row(conn: &Connection, info: &TableInfo, id: &str) -> Result<Option<Item>> {
    let mut stmt = conn.prepare_cached(&info.select_sql).store()?;
    read_with(&mut stmt, info, id)
}

/// [`read_row`] with the table's select statement at hand.
fn read_with(
    stmt: &mut rusqlite::Statement<'_>,
    info: &TableInfo,
    id: &str,
) -> Result<Option<Item>> {
    let mut rows = stmt.query([id]).store()?;
    match rows.next().store()? {
        Some(row) => Ok(Some(crate::rows::read_item(row, &info.columns)?)),
        None => Ok(None),
    }
}
