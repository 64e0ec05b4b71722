//! The local store seam: [`LocalStore`] and its atomic [`WriteBatch`].

use tidesync_protocol::Item;
use tidesync_protocol::odata::Query;

use crate::error::StoreError;
use crate::model::{Operation, OperationError, TableDef};

/// The rows a query returned, and the total count when the query asked for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    /// The rows, in query order, projected by `$select` when given.
    pub items: Vec<Item>,
    /// The number of rows matching the filter, ignoring skip and top (only when `query.count`).
    pub count: Option<u64>,
}

/// A local row (if any) with its item's queued ops, oldest first.
pub type RowWithOps = (Option<Item>, Vec<Operation>);

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
    /// Inserts an op or replaces the op with the same id.
    PutOperation(Operation),
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
/// error records and sync metadata.
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

    /// Runs a query: filter, order (with `id` as the final tiebreaker), count,
    /// skip, top and select, in that order of meaning.
    ///
    /// # Errors
    /// [`StoreError::UnknownTable`], [`StoreError::InvalidQuery`] or a backend failure.
    fn query(&self, table: &str, query: &Query) -> Result<QueryResult, StoreError>;

    /// Up to `limit` queued ops with `sequence > after_sequence`, in ascending sequence.
    ///
    /// # Errors
    /// A backend failure.
    fn operations(&self, after_sequence: u64, limit: usize) -> Result<Vec<Operation>, StoreError>;

    /// The queued ops of one item, in ascending sequence (at most two).
    ///
    /// # Errors
    /// A backend failure.
    fn operations_for(&self, table: &str, item_id: &str) -> Result<Vec<Operation>, StoreError>;

    /// A row and its item's queued ops together, as one consistent read (what a
    /// local write needs). The default makes two calls; stores override it when
    /// one read is cheaper.
    ///
    /// # Errors
    /// As [`get`](LocalStore::get) and [`operations_for`](LocalStore::operations_for).
    fn get_with_operations(
        &self,
        table: &str,
        id: &str,
    ) -> Result<(Option<Item>, Vec<Operation>), StoreError> {
        Ok((self.get(table, id)?, self.operations_for(table, id)?))
    }

    /// [`get_with_operations`](LocalStore::get_with_operations) for many items,
    /// answered in the order asked (what a push batch needs before sending and
    /// after the answer). The default asks one item at a time; stores override
    /// it when one read for all is cheaper.
    ///
    /// # Errors
    /// As [`get_with_operations`](LocalStore::get_with_operations).
    fn get_many_with_operations(
        &self,
        keys: &[(&str, &str)],
    ) -> Result<Vec<RowWithOps>, StoreError> {
        keys.iter()
            .map(|(table, id)| self.get_with_operations(table, id))
            .collect()
    }

    /// The queued op with this id.
    ///
    /// # Errors
    /// A backend failure.
    fn operation(&self, id: &str) -> Result<Option<Operation>, StoreError>;

    /// How many ops are queued, for one table or for all.
    ///
    /// # Errors
    /// A backend failure.
    fn count_operations(&self, table: Option<&str>) -> Result<u64, StoreError>;

    /// The largest sequence number in the queue, 0 when empty.
    ///
    /// # Errors
    /// A backend failure.
    fn max_sequence(&self) -> Result<u64, StoreError>;

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
