//! The store conformance suite of `tidesync_core::testkit`, run on `SqliteStore`
//! files, and on an in-memory `SqliteStore` for the cases that do not reopen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use tidesync_core::testkit::{Capabilities, StoreFactory};
use tidesync_core::{LocalStore, StoreError};
use tidesync_store_sqlite::SqliteStore;

/// Opens a `SqliteStore` file at the path the suite gives.
struct SqliteFactory;

impl StoreFactory for SqliteFactory {
    fn open(&self, path: &Path) -> Result<Arc<dyn LocalStore>, StoreError> {
        Ok(Arc::new(SqliteStore::open(path)?))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            durable: true,
            file_backed: true,
        }
    }
}

tidesync_core::store_conformance!(SqliteFactory);
