//! Mapping SQLite errors to [`StoreError`] variants.

use rusqlite::ErrorCode;
use tidesync_core::StoreError;

/// `SQLITE_BUSY`/`SQLITE_LOCKED` → `Busy`, `SQLITE_NOTADB`/`SQLITE_CORRUPT` →
/// `Corrupt`, anything else → `Backend`.
pub(crate) fn map_err(err: rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Busy(err.to_string())
        }
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt(err.to_string())
        }
        _ => StoreError::backend(err),
    }
}

/// A `StoreError::Corrupt` for content this crate cannot read back.
pub(crate) fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::Corrupt(message.into())
}

/// Shorthand for results of this crate.
pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Converts rusqlite results.
pub(crate) trait SqlResultExt<T> {
    /// Maps the error with [`map_err`].
    fn store(self) -> Result<T>;
}

impl<T> SqlResultExt<T> for rusqlite::Result<T> {
    fn store(self) -> Result<T> {
        self.map_err(map_err)
    }
}
