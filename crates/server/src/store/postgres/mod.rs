//! The PostgreSQL store (tokio-postgres + deadpool-postgres), safe for several server
//! processes on one database.
//!
//! Stamp order is commit order: every write takes the table's clock lock (a
//! transaction-scoped advisory lock) and then the clock row with an `UPDATE … RETURNING` as
//! its last step before the row write, and holds both until it commits, so a later stamp can
//! only be taken after every earlier stamp has committed. The clock lock also tells a reader,
//! without waiting, whether a write is in flight (`pg_try_advisory_xact_lock_shared`): that
//! and the snapshot's clock give the read's horizon (see `store::horizon`). Writes to one id
//! are serialised by a transaction-scoped advisory lock, so the protocol decision sees the
//! latest row. Schema creation runs under an advisory lock, so servers starting together do
//! not race.

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::{Config, GenericClient, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tidesync_protocol::Item;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use super::horizon::read_until_open;
use super::limits::{ReadGate, StoreLimits};
use super::schema::{ColumnType, SchemaCache, TableSchema, TableSpec};
use super::sql::{self, Flavor, Param, quote};
use super::{Decide, Outcome, ReadRequest, ReadResult, Row, Store, StoreError};

mod batch;
mod read;
mod rows;
mod write;

use read::ReadConnection;
use rows::{SYSTEM_COLUMNS, store_statement};

/// The advisory lock key that serialises schema creation ("tidesync" in ASCII).
const SCHEMA_LOCK: i64 = 0x7469_6465_7379_6e63;
/// How long opening or checking a pooled connection may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The hash seed of the batch ops' lock keys (items use 0).
const OP_LOCK_SEED: i64 = 1;
/// The hash seed of the tables' clock lock keys.
const CLOCK_LOCK_SEED: i64 = 2;
/// The database's wall clock in whole milliseconds (stamps and read horizons use this one
/// clock).
const NOW_MS: &str = "floor(extract(epoch from clock_timestamp()) * 1000)::bigint";
/// The domain (over `bigint` milliseconds) that marks a datetime column, in the store's
/// schema: it tells datetime columns from integer ones when the columns are loaded.
const DATETIME_DOMAIN: &str = "tidesync_datetime";

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    schema: String,
    schemas: Arc<SchemaCache>,
    limits: StoreLimits,
    /// The read slots: at most three quarters of the pool serve reads.
    gate: Arc<ReadGate>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `url`; tables live in `schema` (default `public`), created if missing. Uses
    /// the default [`StoreLimits`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    pub async fn open(url: &str, schema: Option<&str>) -> Result<PostgresStore, StoreError> {
        PostgresStore::open_with(url, schema, StoreLimits::default()).await
    }

    /// [`PostgresStore::open`] with `limits`: a pool of `pool_size` connections waited for at
    /// most `queue_timeout`, reads under `statement_timeout = query_timeout` (and cancelled
    /// when their caller drops them), a lock timeout for adding columns, and `write_retries`
    /// runs of a write that hit a deadlock or a serialization failure.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    pub async fn open_with(
        url: &str,
        schema: Option<&str>,
        limits: StoreLimits,
    ) -> Result<PostgresStore, StoreError> {
        let schema = schema.unwrap_or("public").to_owned();
        super::schema::check_table_name(&schema)
            .map_err(|message| StoreError::Config { message })?;
        let mut pool = deadpool_postgres::PoolConfig::new(limits.pool_size);
        pool.timeouts = deadpool_postgres::Timeouts {
            wait: Some(limits.queue_timeout),
            create: Some(CONNECT_TIMEOUT),
            recycle: Some(CONNECT_TIMEOUT),
        };
        let config = Config {
            url: Some(url.to_owned()),
            manager: Some(ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            }),
            pool: Some(pool),
            ..Config::default()
        };
        let pool = config
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let read_slots = limits
            .max_concurrent_reads
            .min((limits.pool_size * 3 / 4).max(1));
        let store = PostgresStore {
            pool,
            schema,
            schemas: Arc::new(SchemaCache::default()),
            gate: Arc::new(ReadGate::new(read_slots, limits.queue_timeout)),
            limits,
        };
        store.ping().await?;
        Ok(store)
    }

    fn table(&self, name: &str) -> String {
        format!("{}.{}", quote(&self.schema), quote(name))
    }

    fn bookkeeping(&self) -> String {
        format!("{}.\"_tidesync_tables\"", quote(&self.schema))
    }

    /// A pooled connection, waited for at most `limits.queue_timeout`.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|error| match error {
            deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
                StoreError::Busy {
                    limit: "limits.queue_timeout_ms",
                    message: format!(
                        "no database connection came free within {} ms (limits.pool_size: {}); try again shortly",
                        self.limits.queue_timeout.as_millis(),
                        self.limits.pool_size
                    ),
                }
            }
            other => StoreError::Unavailable(other.to_string()),
        })
    }

    async fn load_schema(&self, spec: TableSpec) -> Result<TableSchema, StoreError> {
        let client = self.client().await?;
        let schema = self.columns_in(&client, spec).await?;
        self.schemas.put(schema.clone())?;
        Ok(schema)
    }

    /// [`Self::load_schema`] in a read snapshot (`client` is a repeatable-read transaction):
    /// the columns as the snapshot has them, so that every row it reads decodes with every
    /// column it was written with. The snapshot holds committed columns only, so the cache
    /// takes them.
    async fn load_schema_in<C: GenericClient + Sync>(
        &self,
        client: &C,
        spec: TableSpec,
    ) -> Result<TableSchema, StoreError> {
        let schema = self.columns_in(client, spec).await?;
        self.schemas.put(schema.clone())?;
        Ok(schema)
    }

    /// The table's columns as `client` sees them (inside a write transaction: possibly
    /// columns it added and has not committed, so they are not cached).
    async fn columns_in<C: GenericClient + Sync>(
        &self,
        client: &C,
        spec: TableSpec,
    ) -> Result<TableSchema, StoreError> {
        let rows = client
            .query(
                "SELECT column_name::text, data_type::text, domain_name::text
                 FROM information_schema.columns
                 WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                &[&self.schema, &spec.name],
            )
            .await
            .map_err(pg_error)?;
        let mut schema = TableSchema {
            spec,
            columns: Vec::new(),
        };
        for row in rows {
            let name: String = row.get(0);
            let data_type: String = row.get(1);
            let domain: Option<String> = row.get(2);
            if SYSTEM_COLUMNS.contains(&name.as_str()) {
                continue;
            }
            let ty = match (data_type.as_str(), domain.as_deref()) {
                ("text", _) => ColumnType::String,
                ("boolean", _) => ColumnType::Boolean,
                ("bigint", Some(DATETIME_DOMAIN)) => ColumnType::DateTime,
                ("bigint", _) => ColumnType::Integer,
                // double precision: number columns of databases written before numbers
                // were exact.
                ("numeric" | "double precision", _) => ColumnType::Number,
                ("jsonb", _) => ColumnType::Json,
                _ => continue,
            };
            schema.columns.push((name, ty));
        }
        Ok(schema)
    }

    /// The cached spec, with the columns reloaded (other servers may have added some).
    async fn fresh_schema(&self, table: &str) -> Result<TableSchema, StoreError> {
        let spec = self.schemas.get(table)?.spec;
        self.load_schema(spec).await
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn prepare_table(&self, spec: &TableSpec) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await
            .map_err(pg_error)?;
        let table = self.table(&spec.name);
        let mut ddl = format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {book} (
                name TEXT PRIMARY KEY,
                clock_ms BIGINT NOT NULL,
                version BIGINT NOT NULL,
                purged_before_ms BIGINT
             );
             CREATE TABLE IF NOT EXISTS {table} (
                \"id\" TEXT COLLATE \"C\" PRIMARY KEY,
                \"createdAt\" BIGINT NOT NULL,
                \"updatedAt\" BIGINT NOT NULL,
                \"version\" BIGINT NOT NULL,
                \"deleted\" BOOLEAN NOT NULL DEFAULT false
             );
             CREATE INDEX IF NOT EXISTS {index} ON {table} (\"updatedAt\", \"id\");",
            schema = quote(&self.schema),
            book = self.bookkeeping(),
            index = quote(&format!("{}_updatedAt_id", spec.name)),
        );
        ddl.push_str(&batch::ops_table_ddl(&self.schema));
        ddl.push_str(&format!(
            "DO $$ BEGIN
               CREATE DOMAIN {}.{} AS bigint;
             EXCEPTION WHEN duplicate_object THEN NULL;
             END $$;",
            quote(&self.schema),
            quote(DATETIME_DOMAIN)
        ));
        tx.batch_execute(&ddl).await.map_err(pg_error)?;
        let schema = self.columns_in(&tx, spec.clone()).await?;
        let missing = schema.missing(&TableSchema::required_columns(spec))?;
        if !missing.is_empty() {
            self.add_columns(&tx, schema, &missing).await?;
        }
        tx.execute(
            &format!(
                "INSERT INTO {} (name, clock_ms, version) VALUES ($1, 0, 0) ON CONFLICT DO NOTHING",
                self.bookkeeping()
            ),
            &[&spec.name],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        self.load_schema(spec.clone()).await?;
        Ok(())
    }

    async fn schema(&self, table: &str) -> Result<TableSchema, StoreError> {
        self.fresh_schema(table).await
    }

    async fn get(&self, table: &str, id: &str) -> Result<Option<Row>, StoreError> {
        // Reloaded in the read's own snapshot: another server may have added columns.
        let spec = self.schemas.get(table)?.spec;
        let _slot = self.gate.enter().await?;
        let mut conn = ReadConnection::new(self.client().await?);
        let row = self.get_in(conn.client()?, spec, id).await;
        conn.done();
        row
    }

    async fn write(&self, table: &str, id: &str, decide: Decide) -> Result<Outcome, StoreError> {
        let spec = self.schemas.get(table)?.spec;
        self.retrying(|| self.write_once(&spec, id, &decide)).await
    }

    async fn read(&self, table: &str, request: &ReadRequest) -> Result<ReadResult, StoreError> {
        let schema = self.schemas.get(table)?;
        let translated = sql::translate(
            Flavor::Postgres,
            &schema,
            request,
            self.limits.max_string_growth,
        )?;
        read_until_open(|| self.read_once(&schema.spec, &translated, request)).await
    }

    async fn purge_deleted(&self, table: &str, before_ms: i64) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let removed = tx
            .execute(
                &format!(
                    "DELETE FROM {} WHERE \"deleted\" AND \"updatedAt\" < $1",
                    self.table(table)
                ),
                &[&before_ms],
            )
            .await
            .map_err(pg_error)?;
        if removed > 0 {
            tx.execute(
                &format!(
                    "UPDATE {} SET purged_before_ms = GREATEST(coalesce(purged_before_ms, $2), $2) WHERE name = $1",
                    self.bookkeeping()
                ),
                &[&table, &before_ms],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(removed)
    }

    async fn purge_horizon(&self, table: &str) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT purged_before_ms FROM {} WHERE name = $1",
                    self.bookkeeping()
                ),
                &[&table],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.and_then(|r| r.get::<_, Option<i64>>(0)))
    }

    async fn write_batch(
        &self,
        writes: Vec<super::BatchWrite>,
        retention_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.apply_batch(writes, retention_ms).await
    }

    fn pool_stats(&self) -> super::PoolStats {
        let status = self.pool.status();
        super::PoolStats {
            connections: status.size as u64,
            connections_idle: u64::try_from(status.available).unwrap_or(0),
            connections_waiting: status.waiting as u64,
            ..self.gate.stats()
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .query_one("SELECT 1", &[])
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }
}

impl PostgresStore {
    /// The key of a table's clock lock (schemas differ per server group, tables per schema).
    pub(super) fn clock_key(&self, table: &str) -> String {
        format!("clock/{}/{table}", self.schema)
    }

    /// The SQL type of a user column (see `store::values` for what each holds).
    fn declared_type(&self, ty: ColumnType) -> String {
        match ty {
            ColumnType::String => "TEXT COLLATE \"C\"".to_owned(),
            ColumnType::Boolean => "BOOLEAN".to_owned(),
            ColumnType::Integer => "BIGINT".to_owned(),
            ColumnType::Number => "NUMERIC".to_owned(),
            ColumnType::DateTime => format!("{}.{}", quote(&self.schema), quote(DATETIME_DOMAIN)),
            ColumnType::Json => "JSONB".to_owned(),
        }
    }

    /// Takes the table's lock in `mode` for the rest of the transaction. ACCESS EXCLUSIVE
    /// (before a column is added) waits at most `limits.ddl_lock_timeout`: while it waits,
    /// every later reader and writer of the table queues behind it, so a slow read must not
    /// hold them all.
    pub(super) async fn lock_table(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        table: &str,
        mode: &str,
    ) -> Result<(), StoreError> {
        let lock = format!("LOCK TABLE {} IN {mode} MODE", self.table(table));
        let statement = if mode == "ACCESS EXCLUSIVE" {
            format!(
                "SET LOCAL lock_timeout = {}; {lock}; SET LOCAL lock_timeout = 0",
                self.limits.ddl_lock_timeout.as_millis().max(1)
            )
        } else {
            lock
        };
        tx.batch_execute(&statement).await.map_err(pg_error)
    }

    /// Adds `columns` inside the caller's transaction (which holds the table lock) and
    /// returns the columns as the transaction now sees them.
    pub(super) async fn add_columns(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        schema: TableSchema,
        columns: &[(String, ColumnType)],
    ) -> Result<TableSchema, StoreError> {
        if columns.is_empty() {
            return Ok(schema);
        }
        // One statement for all of them: one catalogue update, one table lock round.
        let additions: Vec<String> = columns
            .iter()
            .map(|(name, ty)| format!("ADD COLUMN {} {}", quote(name), self.declared_type(*ty)))
            .collect();
        tx.batch_execute(&format!(
            "ALTER TABLE {} {}",
            self.table(&schema.spec.name),
            additions.join(", ")
        ))
        .await
        .map_err(pg_error)?;
        self.columns_in(tx, schema.spec).await
    }

    /// Stamps a write from the table's clock row and stores the row. The clock
    /// row's lock is taken last in the writing transaction and held until commit,
    /// so stamps commit in stamp order (an incremental reader never passes a row
    /// that commits later). Statements come from the connection's cache (a batch
    /// runs the same few for every op).
    pub(super) async fn stamp_and_store(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        schema: &TableSchema,
        id: &str,
        existing: Option<&Row>,
        values: &Item,
        deleted: bool,
    ) -> Result<Row, StoreError> {
        let clock = tx
            .prepare_cached(&self.clock_sql())
            .await
            .map_err(pg_error)?;
        let clock = tx
            .query_one(
                &clock,
                &[&schema.spec.name, &self.clock_key(&schema.spec.name)],
            )
            .await
            .map_err(pg_error)?;
        let version: i64 = clock.get(1);
        let row = schema.stamped_row(
            id,
            existing,
            clock.get(0),
            u64::try_from(version).unwrap_or(0),
            deleted,
            values,
        );
        let (query, params) = store_statement(
            &self.table(&schema.spec.name),
            schema,
            &row,
            existing.is_some(),
        );
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let store = tx.prepare_cached(&query).await.map_err(pg_error)?;
        tx.execute(&store, &refs).await.map_err(pg_error)?;
        Ok(row)
    }

    /// The statement that takes a table's clock lock (`$2`: [`Self::clock_key`]), moves its
    /// clock (`$1`: the table) to `max(now, clock)` and returns the stamp (see
    /// `store::horizon`): the lock is taken before the database's clock is read, so a reader
    /// that finds the lock free knows that a later stamp is at least its `now`.
    pub(super) fn clock_sql(&self) -> String {
        format!(
            "WITH clock_lock AS (SELECT pg_advisory_xact_lock(hashtextextended($2, {CLOCK_LOCK_SEED})))
             UPDATE {} SET clock_ms = GREATEST(clock_ms, {NOW_MS}), version = version + 1
             FROM clock_lock WHERE name = $1 RETURNING clock_ms, version",
            self.bookkeeping()
        )
    }
}

/// Takes the transaction-scoped lock of each `(table, id)`, in one fixed (sorted) order, so
/// that writes sharing items serialise and two batches cannot deadlock on them. Every write
/// takes its item locks before any table lock.
pub(super) async fn lock_items(
    tx: &deadpool_postgres::Transaction<'_>,
    items: &[(&str, &str)],
) -> Result<(), StoreError> {
    let keys: Vec<String> = items.iter().map(|(t, id)| format!("{t}/{id}")).collect();
    lock_keys(tx, &keys, 0).await
}

/// Takes the transaction-scoped advisory locks of `keys` (hashed with `seed`) in one
/// statement, in one fixed (sorted) order.
pub(super) async fn lock_keys(
    tx: &deadpool_postgres::Transaction<'_>,
    keys: &[String],
    seed: i64,
) -> Result<(), StoreError> {
    let lock = tx
        .prepare_cached(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT
               hashtextextended(k, $2) AS h FROM unnest($1::text[]) AS k ORDER BY h) AS l",
        )
        .await
        .map_err(pg_error)?;
    tx.execute(&lock, &[&keys, &seed]).await.map_err(pg_error)?;
    Ok(())
}

fn param_value(param: &Param) -> Box<dyn ToSql + Sync + Send> {
    match param {
        Param::Bool(b) => Box::new(*b),
        Param::Int(i) => Box::new(*i),
        Param::Float(f) => Box::new(*f),
        Param::Text(s) => Box::new(s.clone()),
    }
}

/// Data exceptions (SQLSTATE class 22: overflow, bad substring length…) come from the
/// client's query; program limits (class 54: too many columns, a row too big) are a full
/// table; a statement stopped at its deadline (57014) or a lock wait that ran out (55P03)
/// is a busy server; a lost connection is unavailability; the rest is a store error that
/// keeps the database's whole report for the log (tokio-postgres alone prints "db error").
fn pg_error(error: tokio_postgres::Error) -> StoreError {
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        if code.starts_with("22") {
            return StoreError::invalid_query(format!(
                "the query cannot be evaluated: {}",
                db.message()
            ));
        }
        if code.starts_with("54") {
            return StoreError::Full {
                message: format!("the table cannot take this write: {}", db.message()),
            };
        }
        if code == "57014" {
            return StoreError::Busy {
                limit: "limits.query_timeout_ms",
                message:
                    "the query ran past its deadline and was stopped; narrow it or try again later"
                        .to_owned(),
            };
        }
        if code == "55P03" {
            return StoreError::Busy {
                limit: "limits.ddl_lock_timeout_ms",
                message:
                    "the table is busy: adding a column waited too long for it; try again shortly"
                        .to_owned(),
            };
        }
    }
    if error.is_closed() {
        return StoreError::Unavailable(error.to_string());
    }
    StoreError::backend(PgFailure::new(error))
}

/// A PostgreSQL failure as the log needs it: the SQLSTATE, the message, the detail and the
/// hint the database sent.
#[derive(Debug)]
pub(super) struct PgFailure {
    code: Option<String>,
    text: String,
    source: tokio_postgres::Error,
}

impl PgFailure {
    fn new(source: tokio_postgres::Error) -> PgFailure {
        let (code, text) = match source.as_db_error() {
            Some(db) => {
                let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
                for (label, part) in [("detail", db.detail()), ("hint", db.hint())] {
                    if let Some(part) = part {
                        text.push_str(&format!("; {label}: {part}"));
                    }
                }
                (Some(db.code().code().to_owned()), text)
            }
            None => (None, source.to_string()),
        };
        PgFailure { code, text, source }
    }

    /// Whether running the transaction again may succeed: a deadlock (40P01) or a
    /// serialization failure (40001).
    pub(super) fn is_retryable(error: &StoreError) -> bool {
        match error {
            StoreError::Backend(backend) => backend
                .downcast_ref::<PgFailure>()
                .and_then(|failure| failure.code.as_deref())
                .is_some_and(|code| code == "40P01" || code == "40001"),
            _ => false,
        }
    }
}

impl std::fmt::Display for PgFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for PgFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
