//! The engine's model-based properties (`tidesync-engine-suite`'s `props`: random
//! sequences of local writes, pushes, pulls, purges, restarts and server-side changes
//! under scripted and seeded mock faults, checked after every step against a reference
//! model; the cursor, the collapse matrix, restarts and push statuses) on `MemoryStore`.
//! store-sqlite's `tests/props_sqlite.rs` and store-redb's `tests/props_redb.rs` run the
//! same properties on files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use tidesync_core::{LocalStore, MemoryStore};
use tidesync_engine_suite::props::StoreUnderTest;

/// A fresh `MemoryStore` per case; a restart keeps the same store.
struct Memory;

impl StoreUnderTest for Memory {
    fn open(&self, _dir: &Path) -> Arc<dyn LocalStore> {
        Arc::new(MemoryStore::new())
    }

    fn reopen(&self, store: Arc<dyn LocalStore>, _dir: &Path) -> Arc<dyn LocalStore> {
        store
    }
}

tidesync_engine_suite::engine_properties!(Memory);
