//! The store conformance suite of `tidesync_core::testkit`, run on [`RedbStore`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use tidesync_core::testkit::{Capabilities, StoreFactory};
use tidesync_core::{LocalStore, StoreError};
use tidesync_store_redb::RedbStore;

/// Opens a [`RedbStore`] with the default options: durable and file-backed.
struct RedbFactory;

impl StoreFactory for RedbFactory {
    fn open(&self, path: &Path) -> Result<Arc<dyn LocalStore>, StoreError> {
        Ok(Arc::new(RedbStore::open(path)?))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            durable: true,
            file_backed: true,
        }
    }
}

tidesync_core::store_conformance!(RedbFactory);
