//! The server-side storage seam: the [`Store`] trait, the row and schema types every backend
//! shares, and the two backends ([`SqliteStore`], [`PostgresStore`]).
//!
//! A store knows tables, rows and columns; it does not know HTTP or protocol versions. The
//! protocol decisions of a write (schema check, conflict, precondition, merge) are made by a
//! [`Decide`] callback that the store runs inside its write transaction, after reading the
//! current row and the table's columns and before stamping the new row, so check and write
//! are atomic in every backend. A decision answers a [`Mutation`] (which may add columns,
//! in the same transaction) or a [`Refusal`]; the store's own failures are [`StoreError`]s.

mod batch;
mod cost;
mod error;
mod horizon;
mod limits;
mod postgres;
mod schema;
pub(crate) mod sql;
mod sqlite;
mod staged;
pub mod values;

use std::fmt::Debug;

use async_trait::async_trait;
use serde_json::Value;
use tidesync_protocol::odata::{Expr, OrderBy};
use tidesync_protocol::{Item, encode_version, format_etag, system};
use time::OffsetDateTime;

pub use batch::{
    BatchWrite, Fingerprint, LEGACY_OPS_TABLE, OPS_TABLE, OpKey, Render, Rendered, fingerprint,
};
pub use error::{Refusal, StoreError};
pub use limits::{PoolStats, StoreLimits};
pub use postgres::PostgresStore;
pub use schema::{ColumnType, TableSchema, TableSpec, check_table_name};
pub use sqlite::SqliteStore;

/// The name of the column that owner-mode tables fill from the token's `sub` claim.
pub const OWNER_COLUMN: &str = "userId";

/// One stored row: the system columns and the user columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The item id.
    pub id: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Last write time, milliseconds since the Unix epoch (never decreasing in commit order
    /// per table; several rows may share one).
    pub updated_at_ms: i64,
    /// The per-table write counter at the last write.
    pub version: u64,
    /// The soft-delete flag.
    pub deleted: bool,
    /// The user columns (including `userId` on owner tables); SQL NULL is JSON null.
    pub values: Item,
}

impl Row {
    /// The `version` text: base64 of the counter's 8 big-endian bytes.
    pub fn version_text(&self) -> String {
        encode_version(self.version)
    }

    /// The quoted `ETag` header value.
    pub fn etag(&self) -> String {
        format_etag(&self.version_text())
    }

    /// `updatedAt` as a timestamp.
    pub fn updated_at(&self) -> OffsetDateTime {
        ms_to_time(self.updated_at_ms)
    }

    /// The row as a wire item: user columns, then `id`, `createdAt`, `updatedAt`, `version`
    /// and, when the table has soft delete, `deleted`.
    pub fn to_item(&self, soft_delete: bool) -> Item {
        self.clone().into_item(soft_delete)
    }

    /// [`Row::to_item`] without copying the values.
    pub fn into_item(self, soft_delete: bool) -> Item {
        let mut item = self.values;
        item.insert(system::ID.to_owned(), Value::String(self.id));
        item.insert(
            system::CREATED_AT.to_owned(),
            Value::String(tidesync_protocol::format_timestamp(ms_to_time(
                self.created_at_ms,
            ))),
        );
        item.insert(
            system::UPDATED_AT.to_owned(),
            Value::String(tidesync_protocol::format_timestamp(ms_to_time(
                self.updated_at_ms,
            ))),
        );
        item.insert(
            system::VERSION.to_owned(),
            Value::String(encode_version(self.version)),
        );
        if soft_delete {
            item.insert(system::DELETED.to_owned(), Value::Bool(self.deleted));
        }
        item
    }
}

/// What a write should do, decided from the current row.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Store these user columns (a full replacement; absent columns become NULL) with this
    /// soft-delete flag, stamping a new `updatedAt` and `version`. The columns in
    /// `new_columns` are added to the table first, in the same transaction, so a write that
    /// does not commit adds none.
    Put {
        /// The user columns; every key is a column of the table or of `new_columns`.
        values: Item,
        /// The soft-delete flag to store.
        deleted: bool,
        /// Columns to add before the row is stored.
        new_columns: Vec<(String, ColumnType)>,
    },
    /// Remove the row for good (hard delete).
    Remove,
}

/// The protocol decision of a write: given the current row (if any) and the table's columns
/// as the write transaction sees them, what to do, or why not. Runs inside the store's write
/// transaction, possibly more than once (a store may start a write over, e.g. to take a
/// lock first, and then decides again on what it reads then): it must not block and must
/// depend on its arguments only.
pub type Decide =
    Box<dyn Fn(Option<&Row>, &TableSchema) -> Result<Mutation, Refusal> + Send + Sync>;

/// What a decided write came to: written, or refused by its decision (nothing stored).
pub type Outcome = Result<Written, Refusal>;

/// The result of a write.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// The row as stored.
    Stored(Row),
    /// The row was removed; this is how it was before.
    Removed(Row),
}

/// A table read: the parsed OData options plus what the server adds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadRequest {
    /// `$filter`.
    pub filter: Option<Expr>,
    /// `$orderby` as given; the store appends `id` as the final tiebreaker.
    pub order_by: Vec<OrderBy>,
    /// `$skip`.
    pub skip: u64,
    /// How many rows to return at most.
    pub limit: u64,
    /// Whether soft-deleted rows are included.
    pub include_deleted: bool,
    /// Restrict to the rows in this scope (the table policy's read scope, e.g. the caller's
    /// own rows on owner-mode tables).
    pub scope: Option<RowScope>,
    /// Whether to count all matching rows (ignoring skip and limit).
    pub count: bool,
}

/// The rows a caller may see and change: those whose `column` holds `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowScope {
    /// The user column that scopes rows (`userId` on owner-mode tables).
    pub column: String,
    /// The value a row must hold there.
    pub value: String,
}

impl RowScope {
    /// The owner-mode scope: the rows whose `userId` is `user`.
    pub fn owner(user: &str) -> RowScope {
        RowScope {
            column: OWNER_COLUMN.to_owned(),
            value: user.to_owned(),
        }
    }

    /// Whether `row` is in this scope.
    pub fn admits(&self, row: &Row) -> bool {
        row.values.get(&self.column).and_then(Value::as_str) == Some(self.value.as_str())
    }
}

/// The answer to a [`ReadRequest`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadResult {
    /// The rows in order.
    pub rows: Vec<Row>,
    /// The filtered total, when asked for.
    pub count: Option<u64>,
}

/// A list page the store encodes itself (the no-`$select` read of `GET /tables/{table}`):
/// the read, how many of its rows go on the page (it asks for one more, to learn whether
/// there is a next page) and the bytes the body starts with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageRequest {
    /// The read (its `limit` is at most `take + 1`).
    pub read: ReadRequest,
    /// The rows that go on the page; a row past them only says there is more.
    pub take: u64,
    /// Whether the table's items carry `deleted`.
    pub soft_delete: bool,
    /// The body so far (`{"results":`, `{"items":` or nothing); the rows follow it.
    pub prefix: Vec<u8>,
}

/// The answer to a [`PageRequest`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodedPage {
    /// The prefix, then the page's rows as a JSON array of wire items (the bytes
    /// `serde_json` writes for the items of [`Row::to_item`]).
    pub body: Vec<u8>,
    /// How many rows are on the page.
    pub rows: u64,
    /// Whether a row past the page was found.
    pub more: bool,
    /// The filtered total, when asked for.
    pub count: Option<u64>,
    /// The table's purge horizon ([`Store::purge_horizon`]), read on the same connection.
    pub purged_before_ms: Option<i64>,
}

/// Server-side storage of tables. Object-safe; both backends are used as `Arc<dyn Store>`.
///
/// **Invariant:** within a table, `updatedAt` never decreases in commit order and never runs
/// ahead of the wall clock (writes in one millisecond share it; `id` breaks the tie), and a
/// read returns only rows below its horizon, below which nothing can commit any more (see
/// `store::horizon`): a reader that has seen `(t, id)` will see every row later committed
/// after `(t, id)`, and none before it appears later (the incremental pull never misses a row).
#[async_trait]
pub trait Store: Send + Sync + Debug {
    /// Creates the table (and the store's bookkeeping) if missing, and loads its columns.
    ///
    /// # Errors
    ///
    /// A store error when the database refuses.
    async fn prepare_table(&self, spec: &TableSpec) -> Result<(), StoreError>;

    /// The table's current schema.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownTable`] for a table never prepared.
    async fn schema(&self, table: &str) -> Result<TableSchema, StoreError>;

    /// Reads one row, deleted or not.
    ///
    /// # Errors
    ///
    /// A store error when the database fails.
    async fn get(&self, table: &str, id: &str) -> Result<Option<Row>, StoreError>;

    /// Reads the row `id` and the table's columns, runs `decide` on them and applies the
    /// mutation (adding its new columns first), atomically. A refusal of `decide` is the
    /// `Ok` outcome `Err(refusal)`, and nothing is written.
    ///
    /// # Errors
    ///
    /// A store error when the database fails ([`StoreError::Full`] when the table cannot take
    /// the new columns); nothing is written then either.
    async fn write(&self, table: &str, id: &str, decide: Decide) -> Result<Outcome, StoreError>;

    /// Runs a query.
    ///
    /// # Errors
    ///
    /// [`StoreError::UnknownColumn`] / [`StoreError::InvalidQuery`] for a filter or order that
    /// does not fit the table, or a store error.
    async fn read(&self, table: &str, request: &ReadRequest) -> Result<ReadResult, StoreError>;

    /// Reads a list page and writes it as JSON in one go, without a [`Row`] per row; `None`
    /// when the store cannot (the caller then uses [`Store::read`]). The default cannot.
    ///
    /// # Errors
    ///
    /// As [`Store::read`].
    async fn read_page(
        &self,
        table: &str,
        page: &PageRequest,
    ) -> Result<Option<EncodedPage>, StoreError> {
        let _ = (table, page);
        Ok(None)
    }

    /// Removes soft-deleted rows last written before `before_ms` and records that horizon.
    /// Returns how many rows were removed.
    ///
    /// # Errors
    ///
    /// A store error.
    async fn purge_deleted(&self, table: &str, before_ms: i64) -> Result<u64, StoreError>;

    /// The latest purge horizon of the table (milliseconds), if any purge removed rows.
    ///
    /// # Errors
    ///
    /// A store error.
    async fn purge_horizon(&self, table: &str) -> Result<Option<i64>, StoreError>;

    /// Checks that the database answers.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when it does not.
    async fn ping(&self) -> Result<(), StoreError>;

    /// How busy the store's connections are, for the metrics (none known: all zero).
    fn pool_stats(&self) -> PoolStats {
        PoolStats::default()
    }

    /// Applies a batch (the batch extension, see [`BatchWrite`]) and returns each op's
    /// rendered result, in order. Both built-in stores do it in one transaction and remember
    /// applied op ids for `retention_ms`; this default applies the writes one by one and
    /// remembers nothing.
    ///
    /// # Errors
    ///
    /// A store error that aborts the whole batch (nothing is applied then).
    async fn write_batch(
        &self,
        writes: Vec<BatchWrite>,
        retention_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let _ = retention_ms;
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            let outcome = self.write(&write.table, &write.id, write.decide).await?;
            results.push((write.render)(outcome).json);
        }
        Ok(results)
    }
}

/// Milliseconds since the epoch as a UTC timestamp (clamped to the representable range).
pub fn ms_to_time(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A timestamp as milliseconds since the epoch (sub-millisecond digits are dropped).
pub fn time_to_ms(t: OffsetDateTime) -> i64 {
    let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
    i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX })
}

/// The wall clock in milliseconds.
pub fn now_ms() -> i64 {
    time_to_ms(OffsetDateTime::now_utc())
}
