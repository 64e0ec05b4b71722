//! The default tidesync local store: [`SqliteStore`], a
//! [`LocalStore`](tidesync_core::LocalStore) kept in
//! one SQLite file.
//!
//! What it is:
//! * **One file** in WAL mode, `synchronous=NORMAL` by default (`FULL` through
//!   [`SqliteOptions`]), with a busy timeout. Writes go through one writer
//!   connection; reads use a small pool of reader connections, so a reader is
//!   never blocked by a write in progress and always sees whole batches.
//!   A second handle or process on the same file is safe: SQLite's locks order
//!   the writers, and a writer that cannot get the lock within the busy timeout
//!   gets `StoreError::Busy`.
//! * **Real SQL tables**: each defined table has typed columns (`TEXT` for
//!   strings, date-times as normalised UTC text and JSON; `INTEGER` for integers
//!   and booleans as 0/1; reals without affinity, since `REAL` affinity would
//!   turn -0.0 into 0) and the system columns, keyed by `id`, with no other
//!   index (each index is one more page written per local write). A
//!   definition that grows adds columns with `ALTER TABLE`; definitions are
//!   kept in `__tables`.
//! * **The queue and metadata** written in the same transaction as the items
//!   (`LocalStore::write` is one `BEGIN IMMEDIATE` transaction with cached
//!   prepared statements; a batch of one local write, a row with its op, is
//!   one statement, which SQLite commits as a transaction of its own). An op
//!   whose item has a row is kept in that row (a hidden column, written by
//!   the row's own statement), so a local write costs a plain insert's two
//!   B-tree pages; other ops are rows of `__operations`, a table with no
//!   index. The store keeps an address map in memory (where each op's record
//!   is; an op a local write put in its row is entered lazily, before the map
//!   is next read), reads it again when another connection has committed
//!   (`PRAGMA data_version`, run by a write only when the pager's data
//!   version moved since its own last commit) — a scan of each table some of
//!   whose rows hold ops — and works on the writer connection. The queue's
//!   order and lookups are the engine's (`LocalStore::load_operations`).
//!   Errors and sync metadata are in `__errors` and `__config`.
//! * **A format version** in `PRAGMA user_version`, upgraded by one migration
//!   function per version step when a file is opened.
//!
//! What it is not: a general SQL database for the app (only the tables and
//! queries of `LocalStore`), nor asynchronous (the engine decides where calls
//! run), nor a place for `NUL` characters in text.
//!
//! Queries: the filter is translated to **parameterised** SQL (values are always
//! bound, identifiers are checked against the table's columns and quoted) where
//! SQLite gives exactly the answer of
//! [`eval::run_query`](tidesync_protocol::odata::eval::run_query): comparisons of
//! a column with a literal of its own kind, `in` lists, `and`/`or`/`not` over
//! those, and ordering by non-JSON columns. The rest — string, date and math
//! functions (SQLite's `lower` is not Unicode-aware and its date functions do
//! not read our text), arithmetic (SQLite does not report overflow or division
//! by zero), comparisons across kinds and ordering by JSON columns — is
//! evaluated in Rust: the leading translatable conjuncts of the filter still
//! narrow the rows in SQL, the candidates are read and the whole query is
//! finished with `eval::run_query`. Such a query costs a read and a decode of
//! every candidate row and an in-memory sort, so skip/top no longer limit the
//! rows read.
//!
//! Rows read back omit null columns: a null and a missing property mean the
//! same to the query language and to the engine.
//!
//! ```
//! use tidesync_core::{ColumnType, LocalStore, Query, TableDef, Write, WriteBatch};
//! use tidesync_store_sqlite::SqliteStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path().join("app.db"))?;
//! store.define_table(&TableDef::new("TodoItem").column("text", ColumnType::String))?;
//! let mut batch = WriteBatch::new();
//! let item = serde_json::json!({"id": "1", "text": "buy milk"});
//! batch.push(Write::PutItem {
//!     table: "TodoItem".into(),
//!     item: item.as_object().cloned().unwrap_or_default(),
//! });
//! store.write(&batch)?;
//! let found = store.query("TodoItem", &Query::all().with_count())?;
//! assert_eq!(found.count, Some(1));
//! # Ok(())
//! # }
//! ```

mod error;
mod query;
mod queue;
mod rows;
mod schema;
mod store;
mod write;

pub use store::{SqliteOptions, SqliteStore, Synchronous};
