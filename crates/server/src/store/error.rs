//! The errors of the storage layer: [`StoreError`] (the store failed, or a request does not
//! fit the stored table) and [`Refusal`] (a write's decision said no, in the store's terms).
//!
//! Neither knows HTTP: the API layer (`crate::error`) maps both to statuses and bodies.

use super::Row;

/// A store call that failed. Conversions to HTTP live in the API layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The table was never prepared in this store.
    #[error("the table '{table}' does not exist")]
    UnknownTable {
        /// The name asked for.
        table: String,
    },
    /// A filter, order or selection names a column the table does not have.
    #[error("the table '{table}' has no column '{column}'")]
    UnknownColumn {
        /// The table.
        table: String,
        /// The missing column.
        column: String,
    },
    /// A query does not fit the table's columns (types) or cannot be evaluated by the
    /// database (e.g. an integer overflow): the caller's query is at fault.
    #[error("{message}")]
    InvalidQuery {
        /// What is wrong, for the client.
        message: String,
    },
    /// The table cannot take what a write needs (more columns, a wider row): a limit of the
    /// database, not a failure.
    #[error("{message}")]
    Full {
        /// Which limit, for the client.
        message: String,
    },
    /// A setting the store was opened with is not usable (e.g. a schema name).
    #[error("{message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// The database cannot be reached or is too busy right now.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The request asks for more than a limit allows (e.g. a query building a string longer
    /// than `limits.max_string_bytes`): the caller's fault, named by the limit's setting.
    #[error("{message}")]
    OverLimit {
        /// The setting of the limit (e.g. `limits.max_string_bytes`).
        limit: &'static str,
        /// What was too much, for the client.
        message: String,
    },
    /// The store is too busy for the request right now (no read slot or connection within
    /// the wait, a read past its deadline, a write that kept losing to others): try again.
    #[error("{message}")]
    Busy {
        /// The setting of the limit (e.g. `limits.query_timeout_ms`).
        limit: &'static str,
        /// What happened, for the client.
        message: String,
    },
    /// The database failed (I/O, corruption, a refused statement): the server's problem.
    #[error("database error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A broken invariant of the store itself (a poisoned lock, a failed task).
    #[error("{0}")]
    Internal(String),
}

impl StoreError {
    /// Wraps a database error as [`StoreError::Backend`].
    pub fn backend(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Backend(Box::new(error))
    }

    /// A [`StoreError::InvalidQuery`] with `message`.
    pub fn invalid_query(message: impl Into<String>) -> StoreError {
        StoreError::InvalidQuery {
            message: message.into(),
        }
    }
}

/// Why a write's decision (its [`super::Decide`]) did not write: the row state or the values
/// did not allow it. Nothing of the write was stored. The rows are the stored ones, for the
/// answers that carry the server's item.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Refusal {
    /// No such row (or not in the caller's scope).
    NotFound,
    /// The row is soft-deleted and the write may not touch tombstones.
    Gone,
    /// The write contradicts the stored row: an insert of an existing id, or an update that
    /// names another version in its body.
    Conflict(Box<Row>),
    /// A precondition (`If-Match` and friends) does not hold for the stored row.
    PreconditionFailed(Box<Row>),
    /// An insert hit an id that exists outside the caller's scope.
    IdNotAvailable,
    /// The values do not fit the table (unknown or reserved property, wrong type, a cap).
    Invalid {
        /// What is wrong, naming the property.
        message: String,
    },
    /// The table's rules refuse the caller this row (an app policy's `authorize`, or an
    /// update that would move a row out of the caller's tenant scope).
    Forbidden {
        /// Why, for the client.
        message: String,
    },
}

impl Refusal {
    /// A [`Refusal::Invalid`] with `message`.
    pub fn invalid(message: impl Into<String>) -> Refusal {
        Refusal::Invalid {
            message: message.into(),
        }
    }
}
