//! The SQLite store: one file in WAL mode, one writer connection behind a mutex (so stamping
//! and committing happen under one lock, in stamp order) and a small pool of reader
//! connections. Every call runs on tokio's blocking pool. A read learns whether a write is in
//! flight from a counter the writer holds up while it has the lock (see `store::horizon`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params_from_iter};

use super::horizon::{Horizon, monotonic_now_ms, read_until_open, with_horizon};
use super::limits::{Cancel, ReadGate, StoreLimits};
use super::schema::{ColumnType, SchemaCache, TableSchema, TableSpec};
use super::sql::{self, Flavor, Param, quote};
use super::{
    Decide, EncodedPage, Outcome, PageRequest, ReadRequest, ReadResult, Row, Store, StoreError,
};

mod batch;
mod page;
mod rows;
mod write;

use page::RowEncoder;
use rows::{column_list, decode_row, select_row};
use write::TableWriter;

const BOOKKEEPING: &str = "_tidesync_tables";
const MAX_IDLE_READERS: usize = 8;
/// SQLite virtual machine steps between two looks at a read's deadline and cancel flag.
const PROGRESS_STEPS: i32 = 100;

/// The embedded SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    schemas: SchemaCache,
    /// Writes in flight: up while a writer holds the writer connection.
    writing: AtomicUsize,
    limits: StoreLimits,
    /// The read slots (`limits.max_concurrent_reads`).
    gate: ReadGate,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` in WAL mode, with the default
    /// [`StoreLimits`].
    ///
    /// # Errors
    ///
    /// A store error when the file cannot be opened or configured.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, StoreLimits::default()).await
    }

    /// [`SqliteStore::open`] with `limits`: reads run at most `max_concurrent_reads` at once,
    /// are stopped at `query_timeout` (a progress handler) or when their caller drops them,
    /// and hold or build strings of at most `max_string_bytes`.
    ///
    /// # Errors
    ///
    /// A store error when the file cannot be opened or configured.
    pub async fn open_with(
        path: impl AsRef<Path>,
        limits: StoreLimits,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let opened = path.clone();
        let writer = blocking(move || {
            let conn = open_connection(&opened)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            // Room for the batch path's statements beside the per-table ones.
            conn.set_prepared_statement_cache_capacity(64);
            conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {BOOKKEEPING} (
                    name TEXT PRIMARY KEY NOT NULL,
                    clock_ms INTEGER NOT NULL,
                    version INTEGER NOT NULL,
                    purged_before_ms INTEGER
                );
                {}",
                batch::ops_table_ddl()
            ))?;
            Ok(conn)
        })
        .await?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                schemas: SchemaCache::default(),
                writing: AtomicUsize::new(0),
                gate: ReadGate::new(limits.max_concurrent_reads, limits.queue_timeout),
                limits,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn with_writer<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection, &Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || {
            let mut conn = inner
                .writer
                .lock()
                .map_err(|_| StoreError::Internal("sqlite writer lock poisoned".to_owned()))?;
            // Up before the first stamp, down after the commit (or the rollback).
            inner.writing.fetch_add(1, Ordering::SeqCst);
            let result = work(&mut conn, &inner);
            inner.writing.fetch_sub(1, Ordering::SeqCst);
            result
        })
        .await
    }

    /// Runs `work` on a reader connection: in a read slot, under the query deadline, and
    /// stopped when this future is dropped (the client went away).
    async fn with_reader<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection, &Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        // The slot travels with the work: it is free again only once SQLite stopped, so it
        // bounds the reads the database runs, not the requests waiting for them.
        let slot = self.inner.gate.enter().await?;
        let (cancel, cancelled) = Cancel::new();
        let inner = Arc::clone(&self.inner);
        let result = run_blocking(move || {
            let _slot = slot;
            let pooled = inner.readers.lock().ok().and_then(|mut idle| idle.pop());
            let mut conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&inner.path, &inner.limits).map_err(StoreError::backend)?,
            };
            let deadline = std::time::Instant::now() + inner.limits.query_timeout;
            let stop = Arc::clone(&cancelled);
            conn.progress_handler(
                PROGRESS_STEPS,
                Some(move || stop.load(Ordering::Relaxed) || std::time::Instant::now() >= deadline),
            )
            .map_err(StoreError::backend)?;
            let mut result = work(&mut conn, &inner);
            let _ = conn.progress_handler(0, None::<fn() -> bool>);
            if result.is_err() && std::time::Instant::now() >= deadline {
                result = Err(inner.limits.timed_out());
            }
            if let Ok(mut idle) = inner.readers.lock() {
                if idle.len() < MAX_IDLE_READERS {
                    idle.push(conn);
                }
            }
            result
        })
        .await;
        cancel.done();
        result
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn prepare_table(&self, spec: &TableSpec) -> Result<(), StoreError> {
        let spec = spec.clone();
        self.with_writer(move |conn, inner| {
            let table = quote(&spec.name);
            let tx = conn.transaction().map_err(StoreError::backend)?;
            tx.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                    \"id\" TEXT PRIMARY KEY NOT NULL,
                    \"createdAt\" INTEGER NOT NULL,
                    \"updatedAt\" INTEGER NOT NULL,
                    \"version\" INTEGER NOT NULL,
                    \"deleted\" INTEGER NOT NULL DEFAULT 0
                );
                CREATE INDEX IF NOT EXISTS {} ON {table} (\"updatedAt\", \"id\");",
                quote(&format!("{}_updatedAt_id", spec.name))
            ))
            .map_err(StoreError::backend)?;
            tx.execute(
                &format!(
                    "INSERT OR IGNORE INTO {BOOKKEEPING} (name, clock_ms, version) VALUES (?1, 0, 0)"
                ),
                [&spec.name],
            )
            .map_err(StoreError::backend)?;
            let mut schema = load_schema(&tx, spec.clone())?;
            let missing = schema.missing(&TableSchema::required_columns(&spec))?;
            if !missing.is_empty() {
                schema = add_columns(&tx, schema, &missing)?;
            }
            tx.commit().map_err(StoreError::backend)?;
            inner.schemas.put(schema)
        })
        .await
    }

    async fn schema(&self, table: &str) -> Result<TableSchema, StoreError> {
        self.inner.schemas.get(table)
    }

    async fn get(&self, table: &str, id: &str) -> Result<Option<Row>, StoreError> {
        let spec = self.inner.schemas.get(table)?.spec;
        let id = id.to_owned();
        self.with_reader(move |conn, _| {
            let tx = conn.transaction().map_err(StoreError::backend)?;
            let schema = snapshot_schema(&tx, spec)?;
            let row = select_row(&tx, &schema, &id)?;
            tx.commit().map_err(StoreError::backend)?;
            Ok(row)
        })
        .await
    }

    async fn write(&self, table: &str, id: &str, decide: Decide) -> Result<Outcome, StoreError> {
        let table = table.to_owned();
        let id = id.to_owned();
        self.with_writer(move |conn, inner| {
            let mut writer = TableWriter::new(inner.schemas.get(&table)?);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(StoreError::backend)?;
            let outcome = writer.apply(&tx, &id, &decide)?;
            if outcome.is_err() {
                return Ok(outcome);
            }
            writer.save_clock(&tx)?;
            tx.commit().map_err(StoreError::backend)?;
            if let Some(schema) = writer.learned() {
                inner.schemas.put(schema)?;
            }
            Ok(outcome)
        })
        .await
    }

    async fn read(&self, table: &str, request: &ReadRequest) -> Result<ReadResult, StoreError> {
        let schema = self.inner.schemas.get(table)?;
        let translated = Arc::new(sql::translate(
            Flavor::Sqlite,
            &schema,
            request,
            self.inner.limits.max_string_growth,
        )?);
        read_until_open(|| self.read_once(schema.spec.clone(), Arc::clone(&translated), request))
            .await
    }

    async fn read_page(
        &self,
        table: &str,
        page: &PageRequest,
    ) -> Result<Option<EncodedPage>, StoreError> {
        let schema = self.inner.schemas.get(table)?;
        let translated = Arc::new(sql::translate(
            Flavor::Sqlite,
            &schema,
            &page.read,
            self.inner.limits.max_string_growth,
        )?);
        read_until_open(|| self.page_once(schema.spec.clone(), Arc::clone(&translated), page))
            .await
            .map(Some)
    }

    async fn purge_deleted(&self, table: &str, before_ms: i64) -> Result<u64, StoreError> {
        let table = table.to_owned();
        self.with_writer(move |conn, _| {
            let tx = conn.transaction().map_err(StoreError::backend)?;
            let removed = tx
                .execute(
                    &format!(
                        "DELETE FROM {} WHERE \"deleted\" = 1 AND \"updatedAt\" < ?1",
                        quote(&table)
                    ),
                    [before_ms],
                )
                .map_err(StoreError::backend)?;
            if removed > 0 {
                tx.execute(
                    &format!(
                        "UPDATE {BOOKKEEPING} SET purged_before_ms = max(coalesce(purged_before_ms, ?2), ?2) WHERE name = ?1"
                    ),
                    rusqlite::params![table, before_ms],
                )
                .map_err(StoreError::backend)?;
            }
            tx.commit().map_err(StoreError::backend)?;
            Ok(u64::try_from(removed).unwrap_or(0))
        })
        .await
    }

    async fn purge_horizon(&self, table: &str) -> Result<Option<i64>, StoreError> {
        let table = table.to_owned();
        self.with_reader(move |conn, _| purge_horizon_of(conn, &table))
            .await
    }

    async fn write_batch(
        &self,
        writes: Vec<super::BatchWrite>,
        retention_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.apply_batch(writes, retention_ms).await
    }

    fn pool_stats(&self) -> super::PoolStats {
        self.inner.gate.stats()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with_reader(|conn, _| {
            conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(|_| ())
                .map_err(|e| StoreError::Unavailable(e.to_string()))
        })
        .await
    }
}

impl SqliteStore {
    /// One read in one snapshot, and the horizon it was read under.
    async fn read_once(
        &self,
        spec: TableSpec,
        translated: Arc<sql::Translated>,
        request: &ReadRequest,
    ) -> Result<(ReadResult, Horizon), StoreError> {
        let (rows, count, horizon) = self
            .snapshot_read(spec, translated, request, |_, schema, rows| {
                let mut out = Vec::new();
                while let Some(r) = rows.next().map_err(query_error)? {
                    out.push(decode_row(r, schema)?);
                }
                Ok(out)
            })
            .await?;
        Ok((ReadResult { rows, count }, horizon))
    }

    /// One page read and encoded in one snapshot (`page.rs`), with the purge horizon read
    /// on the same connection: one trip to the blocking pool per page.
    async fn page_once(
        &self,
        spec: TableSpec,
        translated: Arc<sql::Translated>,
        page: &PageRequest,
    ) -> Result<(EncodedPage, Horizon), StoreError> {
        let take = page.take;
        let soft_delete = page.soft_delete;
        let mut body = page.prefix.clone();
        let table = spec.name.clone();
        let ((body, rows, more, purged_before_ms), count, horizon) = self
            .snapshot_read(spec, translated, &page.read, move |conn, schema, result| {
                let encoder = RowEncoder::new(schema, soft_delete)?;
                let mut rows = 0_u64;
                let mut more = false;
                body.push(b'[');
                while let Some(r) = result.next().map_err(query_error)? {
                    if rows == take {
                        more = true;
                        break;
                    }
                    if rows > 0 {
                        body.push(b',');
                    }
                    encoder.write(&mut body, r)?;
                    rows += 1;
                }
                body.push(b']');
                let purged = purge_horizon_of(conn, &table)?;
                Ok((body, rows, more, purged))
            })
            .await?;
        let encoded = EncodedPage {
            body,
            rows,
            more,
            count,
            purged_before_ms,
        };
        Ok((encoded, horizon))
    }

    /// Runs `request` in one read transaction and hands its rows to `take`; then counts
    /// them when asked to (`take` may run its own statements on the connection too). Returns what `take` made, the count and the horizon.
    async fn snapshot_read<T: Send + 'static>(
        &self,
        spec: TableSpec,
        translated: Arc<sql::Translated>,
        request: &ReadRequest,
        take: impl FnOnce(&Connection, &TableSchema, &mut rusqlite::Rows<'_>) -> Result<T, StoreError>
        + Send
        + 'static,
    ) -> Result<(T, Option<u64>, Horizon), StoreError> {
        let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
        let skip = i64::try_from(request.skip).unwrap_or(i64::MAX);
        let want_count = request.count;
        self.with_reader(move |conn, inner| {
            // `now`, then whether a write is in flight, then the snapshot (see
            // `store::horizon` for why this order makes the horizon safe).
            let now = monotonic_now_ms();
            let idle = inner.writing.load(Ordering::SeqCst) == 0;
            let tx = conn.transaction().map_err(StoreError::backend)?;
            // The columns as this transaction's snapshot has them: the cached schema may
            // predate a column another request just added, and a row written with it
            // would be read without that column (and a cursor would move past it).
            let schema = snapshot_schema(&tx, spec)?;
            let (clock_ms, _) = read_clock(&tx, &schema.spec.name)?;
            let horizon = Horizon::of(now, idle, clock_ms);
            let where_sql = with_horizon(&translated.where_sql, horizon);
            let params: Vec<SqlValue> = translated.params.iter().map(param_value).collect();
            let query = format!(
                "SELECT {} FROM {} WHERE {where_sql} ORDER BY {} LIMIT {limit} OFFSET {skip}",
                column_list(&schema),
                quote(&schema.spec.name),
                translated.order_sql
            );
            let mut statement = tx.prepare(&query).map_err(query_error)?;
            let mut rows = statement
                .query(params_from_iter(params.iter()))
                .map_err(query_error)?;
            let taken = take(&tx, &schema, &mut rows)?;
            drop(rows);
            drop(statement);
            let count = if want_count {
                let count_sql = format!(
                    "SELECT COUNT(*) FROM {} WHERE {where_sql}",
                    quote(&schema.spec.name),
                );
                let n: i64 = tx
                    .query_row(&count_sql, params_from_iter(params.iter()), |r| r.get(0))
                    .map_err(query_error)?;
                Some(u64::try_from(n).unwrap_or(0))
            } else {
                None
            };
            tx.commit().map_err(StoreError::backend)?;
            Ok((taken, count, horizon))
        })
        .await
    }
}

/// The table's purge horizon ([`Store::purge_horizon`]).
fn purge_horizon_of(conn: &Connection, table: &str) -> Result<Option<i64>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT purged_before_ms FROM {BOOKKEEPING} WHERE name = ?1"
    ))
    .and_then(|mut s| {
        s.query_row([table], |r| r.get::<_, Option<i64>>(0))
            .optional()
    })
    .map(Option::flatten)
    .map_err(StoreError::backend)
}

/// A reader connection: strings and blobs it holds or builds are at most
/// `limits.max_string_bytes` long (`SQLITE_LIMIT_LENGTH`).
fn open_reader(path: &Path, limits: &StoreLimits) -> rusqlite::Result<Connection> {
    let conn = open_connection(path)?;
    let length = i32::try_from(limits.max_string_bytes).unwrap_or(i32::MAX);
    conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, length)?;
    Ok(conn)
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    run_blocking(move || work().map_err(StoreError::backend)).await
}

async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Internal(format!("sqlite task failed: {e}")))?
}

/// A database error while running a translated query: SQLite may still refuse an expression
/// the type checker let through (e.g. an integer overflow, `SQLITE_ERROR`); that is the
/// query's fault (400). A busy or locked database is 503; I/O errors, corruption, a full
/// disk and the rest are the server's (500), never blamed on the query.
fn query_error(error: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match &error {
        rusqlite::Error::SqliteFailure(failure, _) if failure.code == ErrorCode::TooBig => {
            StoreError::OverLimit {
                limit: "limits.max_string_bytes",
                message: "the query builds a string longer than the server allows".to_owned(),
            }
        }
        rusqlite::Error::SqliteFailure(failure, Some(message))
            if matches!(failure.code, ErrorCode::Unknown | ErrorCode::TypeMismatch) =>
        {
            StoreError::invalid_query(format!("the query cannot be evaluated: {message}"))
        }
        rusqlite::Error::SqliteFailure(failure, _)
            if matches!(
                failure.code,
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::backend(error),
    }
}

/// The declared SQL type of a user column: it gives the column its affinity (`NUMBER` and
/// `DATETIME` have NUMERIC affinity, which keeps integers as integers) and tells
/// [`load_schema`] the column's type.
fn declared_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::String => "TEXT",
        ColumnType::Boolean => "BOOLEAN",
        ColumnType::Integer => "INTEGER",
        ColumnType::Number => "NUMBER",
        ColumnType::DateTime => "DATETIME",
        ColumnType::Json => "JSONTEXT",
    }
}

fn add_column(
    conn: &Connection,
    table: &str,
    name: &str,
    ty: ColumnType,
) -> Result<(), StoreError> {
    conn.execute_batch(&format!(
        "ALTER TABLE {} ADD COLUMN {} {}",
        quote(table),
        quote(name),
        declared_type(ty)
    ))
    .map_err(|error| match &error {
        // SQLite's column limit (2,000 by default): the table is full, not broken.
        rusqlite::Error::SqliteFailure(_, Some(message))
            if message.contains("too many columns") =>
        {
            StoreError::Full {
                message: format!("table '{table}' cannot take more columns: {message}"),
            }
        }
        _ => StoreError::backend(error),
    })
}

/// Adds `columns` to the table of `schema` inside the caller's transaction and returns the
/// schema as the transaction now has it.
fn add_columns(
    tx: &Connection,
    schema: TableSchema,
    columns: &[(String, ColumnType)],
) -> Result<TableSchema, StoreError> {
    for (name, ty) in columns {
        add_column(tx, &schema.spec.name, name, *ty)?;
    }
    load_schema(tx, schema.spec)
}

/// Starts the read snapshot of `tx` (a read of the schema table) and loads the table's
/// columns as that snapshot has them, so that every row the transaction reads decodes with
/// every column it was written with.
fn snapshot_schema(tx: &Connection, spec: TableSpec) -> Result<TableSchema, StoreError> {
    tx.prepare_cached("SELECT 1 FROM sqlite_master LIMIT 1")
        .and_then(|mut statement| statement.query([])?.next().map(|_| ()))
        .map_err(StoreError::backend)?;
    load_schema(tx, spec)
}

fn load_schema(conn: &Connection, spec: TableSpec) -> Result<TableSchema, StoreError> {
    let mut statement = conn
        .prepare(&format!("PRAGMA table_info({})", quote(&spec.name)))
        .map_err(StoreError::backend)?;
    let columns = statement
        .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
        .map_err(StoreError::backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(StoreError::backend)?;
    let mut schema = TableSchema {
        spec,
        columns: Vec::new(),
    };
    for (name, declared) in columns {
        if ["id", "createdAt", "updatedAt", "version", "deleted"].contains(&name.as_str()) {
            continue;
        }
        let ty = match declared.to_ascii_uppercase().as_str() {
            "TEXT" => ColumnType::String,
            "BOOLEAN" => ColumnType::Boolean,
            "INTEGER" => ColumnType::Integer,
            // REAL: number columns of databases written before numbers were exact.
            "NUMBER" | "REAL" => ColumnType::Number,
            "DATETIME" => ColumnType::DateTime,
            "JSONTEXT" => ColumnType::Json,
            _ => continue,
        };
        schema.columns.push((name, ty));
    }
    Ok(schema)
}

/// The table's write clock: the last `updatedAt` stamped and the last version.
fn read_clock(conn: &Connection, table: &str) -> Result<(i64, i64), StoreError> {
    conn.prepare_cached(&format!(
        "SELECT clock_ms, version FROM {BOOKKEEPING} WHERE name = ?1"
    ))
    .and_then(|mut s| s.query_row([table], |r| Ok((r.get(0)?, r.get(1)?))))
    .map_err(StoreError::backend)
}

/// The stamp after `(clock_ms, version)` (see `store::horizon`).
fn next_stamp(clock_ms: i64, version: i64) -> (i64, i64) {
    super::horizon::next_stamp(monotonic_now_ms(), clock_ms, version)
}

fn write_clock(
    conn: &Connection,
    table: &str,
    clock_ms: i64,
    version: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "UPDATE {BOOKKEEPING} SET clock_ms = ?2, version = ?3 WHERE name = ?1"
    ))
    .and_then(|mut s| s.execute(rusqlite::params![table, clock_ms, version]))
    .map(|_| ())
    .map_err(StoreError::backend)
}

fn param_value(param: &Param) -> SqlValue {
    match param {
        Param::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Param::Int(i) => SqlValue::Integer(*i),
        Param::Float(f) => SqlValue::Real(*f),
        Param::Text(s) => SqlValue::Text(s.clone()),
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::ffi;

    use super::{StoreError, query_error};

    fn failure(code: i32, message: &str) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(message.to_owned()))
    }

    /// Which layer is at fault: the query (400), the load (503) or the server (500).
    #[derive(Debug, PartialEq)]
    enum Fault {
        Query,
        Limit,
        Load,
        Server,
    }

    #[test]
    fn a_table_at_sqlites_column_limit_is_full_not_broken() {
        use super::super::{ColumnType, TableSchema, TableSpec};
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let columns: Vec<String> = (0..2000).map(|n| format!("c{n} TEXT")).collect();
        conn.execute_batch(&format!("CREATE TABLE t ({})", columns.join(", ")))
            .unwrap();
        let schema = TableSchema {
            spec: TableSpec::new("t", true, false),
            columns: Vec::new(),
        };
        let added = super::add_columns(&conn, schema, &[("more".to_owned(), ColumnType::String)]);
        assert!(matches!(added, Err(StoreError::Full { .. })), "{added:?}");
    }

    #[test]
    fn only_errors_of_the_query_itself_are_bad_requests() {
        let cases = [
            (ffi::SQLITE_ERROR, "integer overflow", Fault::Query),
            (ffi::SQLITE_TOOBIG, "string or blob too big", Fault::Limit),
            (ffi::SQLITE_BUSY, "database is locked", Fault::Load),
            (ffi::SQLITE_IOERR, "disk I/O error", Fault::Server),
            (
                ffi::SQLITE_CORRUPT,
                "database disk image is malformed",
                Fault::Server,
            ),
            (ffi::SQLITE_FULL, "database or disk is full", Fault::Server),
        ];
        for (code, message, fault) in cases {
            let found = match query_error(failure(code, message)) {
                StoreError::InvalidQuery { .. } => Fault::Query,
                StoreError::OverLimit { .. } => Fault::Limit,
                StoreError::Unavailable(_) => Fault::Load,
                _ => Fault::Server,
            };
            assert_eq!(found, fault, "{message}");
        }
    }
}
