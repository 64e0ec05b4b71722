//! The local store seam: [`LocalStore`] and its atomic [`WriteBatch`].

use tidesync_protocol::Item;
use tidesync_protocol::odata::Query;

use crate::model::{ColumnType, InvalidItem, Operation, OperationError, TableDef};

/// A boxed error from a store or transport backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a [`LocalStore`](crate::LocalStore) can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The table was never defined.
    #[error("unknown table {0}")]
    UnknownTable(String),
    /// An item has a property that is not a column of the table.
    #[error("table {table} has no column {column}")]
    UnknownColumn {
        /// The table.
        table: String,
        /// The unknown property.
        column: String,
    },
    /// A value does not fit its column's type.
    #[error("column {column} of table {table} expects {expected:?}, found {found}")]
    TypeMismatch {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The declared type.
        expected: ColumnType,
        /// A short rendering of the offending value.
        found: String,
    },
    /// A table definition is malformed or contradicts what the store holds.
    #[error("invalid table definition: {0}")]
    InvalidDefinition(String),
    /// An item has no usable id.
    #[error("item in table {table} has no string id")]
    MissingId {
        /// The table.
        table: String,
    },
    /// A query the store cannot run (unknown column, type error in a filter).
    #[error("invalid query on table {table}: {message}")]
    InvalidQuery {
        /// The table.
        table: String,
        /// What is wrong.
        message: String,
    },
    /// The file is not a store of this kind, or its content is damaged.
    #[error("store file is not usable: {0}")]
    Corrupt(String),
    /// The file was written by a newer format than this build understands.
    #[error("store format version {found} is newer than the supported {supported}")]
    UnsupportedFormat {
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The store is locked by another process or connection.
    #[error("store is busy: {0}")]
    Busy(String),
    /// Any other backend failure (I/O, the database engine).
    #[error("store backend failed: {0}")]
    Backend(#[source] BoxError),
}

impl From<InvalidItem> for StoreError {
    fn from(e: InvalidItem) -> Self {
        match e {
            InvalidItem::UnknownColumn { table, column } => {
                StoreError::UnknownColumn { table, column }
            }
            InvalidItem::TypeMismatch {
                table,
                column,
                expected,
                found,
            } => StoreError::TypeMismatch {
                table,
                column,
                expected,
                found,
            },
        }
    }
}

impl StoreError {
    /// Wraps a backend error.
    pub fn backend(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(err))
    }
}

/// The rows a query returned, and the total count when the query asked for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    /// The rows, in query order, projected by `$select` when given.
    pub items: Vec<Item>,
    /// The number of rows matching the filter, ignoring skip and top (only when `query.count`).
    pub count: Option<u64>,
}

/// One change inside a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Write {
    /// Inserts the row or replaces it whole. The item holds only columns of the
    /// table (the engine drops or refuses the others) with values already passed
    /// through [`normalize_value`](crate::normalize_value); columns it lacks become
    /// null. A null column reads back as absent (a SQL row cannot tell the two apart).
    PutItem {
        /// The table.
        table: String,
        /// The row; its `id` is the key.
        item: Item,
    },
    /// Inserts or replaces several rows of one table, each exactly as [`Write::PutItem`]
    /// would, in order. A bulk entry for a bootstrap (a snapshot batch into an empty table):
    /// a store may write the rows in a cheaper way than one entry each (the SQLite store
    /// prepares its statement once for the whole entry); a store without one applies them
    /// one by one.
    PutItems {
        /// The table.
        table: String,
        /// The rows; each `id` is a key.
        items: Vec<Item>,
    },
    /// Deletes a row; deleting a missing row is not an error.
    DeleteItem {
        /// The table.
        table: String,
        /// The row's id.
        id: String,
    },
    /// Deletes the rows a query selects (filter, order, skip and top all apply).
    DeleteItems {
        /// The table.
        table: String,
        /// Which rows.
        query: Query,
    },
    /// A local write: inserts or replaces the row (as [`Write::PutItem`]) and
    /// queues its op (as [`Write::PutOperation`]), as one change. A store may
    /// keep the two together (the SQLite store writes the op into the row);
    /// `op.table` and `op.item_id` name the row.
    PutItemAndOperation {
        /// The table.
        table: String,
        /// The row; its `id` is the key.
        item: Item,
        /// The row's op.
        op: Operation,
    },
    /// Inserts an op or replaces the op with the same id. An op keeps its
    /// sequence for life.
    PutOperation(Operation),
    /// Marks queued ops attempted: from now on each op named here has the state
    /// [`OpState::Attempted`](crate::OpState::Attempted), with nothing else of it
    /// changed, until a later write replaces or removes it. An id that is not
    /// queued is skipped. A push marks a whole batch this way before sending it;
    /// a store may record the batch once instead of rewriting each op (the SQLite
    /// store keeps one row per entry), as long as what it reads back is the same.
    /// A store whose commits may be lost in a crash (relaxed durability) makes a
    /// batch holding this entry durable before `write` returns: what it marks may
    /// reach the server next.
    MarkAttempted {
        /// The op ids.
        ids: Vec<String>,
    },
    /// Removes an op (and nothing else); a missing op is not an error.
    DeleteOperation {
        /// The op id.
        id: String,
    },
    /// Removes every op and error record of a table (a forced purge).
    DeleteTableOperations {
        /// The table.
        table: String,
    },
    /// Inserts or replaces the error record of an op.
    PutError(OperationError),
    /// Removes an op's error record; a missing one is not an error.
    DeleteError {
        /// The op id.
        operation_id: String,
    },
    /// Removes every row of every table, every op, every error record and every
    /// sync metadata value (the pull cursors): a sign-out. Table definitions stay.
    Clear,
    /// Sets (`Some`) or removes (`None`) a sync metadata value (`__config`).
    SetConfig {
        /// The key, e.g. `deltaToken|TodoItem|allTodoItems`.
        key: String,
        /// The value.
        value: Option<String>,
    },
}

/// Changes to items, the queue, error records and metadata that a store applies
/// all together or not at all.
///
/// **Architecture invariant:** an item write and the queue entry describing it
/// travel in one batch, so a crash can never separate them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    /// The changes, applied in order.
    pub writes: Vec<Write>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a change.
    pub fn push(&mut self, write: Write) {
        self.writes.push(write);
    }

    /// True when the batch marks an op attempted (a [`Write::MarkAttempted`], or an op
    /// written [`OpState::Attempted`](crate::OpState::Attempted)): what a push writes
    /// before it sends, and what a store with relaxed durability must commit durably.
    pub fn marks_attempted(&self) -> bool {
        self.writes.iter().any(|write| match write {
            Write::MarkAttempted { .. } => true,
            Write::PutOperation(op) => op.state == crate::model::OpState::Attempted,
            _ => false,
        })
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The number of changes.
    pub fn len(&self) -> usize {
        self.writes.len()
    }
}

/// A durable local database holding the app's tables, the operation queue, the
/// error records and sync metadata: a storage engine, nothing more. It keeps
/// what it is given and answers reads; the queue's rules and indexes are the
/// engine's (`Queue` in `sync-core`), built from
/// [`load_operations`](LocalStore::load_operations).
///
/// Synchronous and object-safe: SQLite and redb are blocking libraries, and the
/// engine decides where each call runs (inline for a small local write, a
/// blocking thread for bulk work). Implementations are internally synchronised
/// (`&self` everywhere) and must make every [`write`](LocalStore::write) atomic
/// and durable before it returns (subject to the store's durability setting).
pub trait LocalStore: Send + Sync + std::fmt::Debug {
    /// Creates a table, or grows an existing one by the columns it lacks. Defining
    /// the same table twice is a no-op.
    ///
    /// # Errors
    /// [`StoreError::InvalidDefinition`] when the definition is malformed or
    /// retypes a column the store already has.
    fn define_table(&self, def: &TableDef) -> Result<(), StoreError>;

    /// The stored definition of a table (every column the store has), if defined.
    ///
    /// # Errors
    /// A backend failure.
    fn table(&self, name: &str) -> Result<Option<TableDef>, StoreError>;

    /// One row by id.
    ///
    /// # Errors
    /// [`StoreError::UnknownTable`] or a backend failure.
    fn get(&self, table: &str, id: &str) -> Result<Option<Item>, StoreError>;

    /// Rows by `(table, id)`, answered in the order asked, as one consistent
    /// read (what a push batch needs). The default asks one row at a time;
    /// stores override it when one read for all is cheaper.
    ///
    /// # Errors
    /// As [`get`](LocalStore::get).
    fn get_many(&self, keys: &[(&str, &str)]) -> Result<Vec<Option<Item>>, StoreError> {
        keys.iter().map(|(table, id)| self.get(table, id)).collect()
    }

    /// Runs a query: filter, order (with `id` as the final tiebreaker), count,
    /// skip, top and select, in that order of meaning.
    ///
    /// # Errors
    /// [`StoreError::UnknownTable`], [`StoreError::InvalidQuery`] or a backend failure.
    fn query(&self, table: &str, query: &Query) -> Result<QueryResult, StoreError>;

    /// Every queued op, in ascending sequence: what the engine builds its
    /// queue from when it opens. The engine keeps the queue itself from then
    /// on (it asks the store nothing else about ops).
    ///
    /// # Errors
    /// A backend failure.
    fn load_operations(&self) -> Result<Vec<Operation>, StoreError>;

    /// Every error record, in the order of their ops' sequence.
    ///
    /// # Errors
    /// A backend failure.
    fn errors(&self) -> Result<Vec<OperationError>, StoreError>;

    /// A sync metadata value.
    ///
    /// # Errors
    /// A backend failure.
    fn config(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Applies a batch atomically: every change or none.
    ///
    /// # Errors
    /// Any error leaves the store as it was before the call.
    fn write(&self, batch: &WriteBatch) -> Result<(), StoreError>;
}
