//! The model-based properties of sync-core (`crates/sync-core/tests/props.rs`, with its
//! reference model) run on `SqliteStore` files instead of `MemoryStore`: each case gets a
//! fresh file in a temporary directory (on `/dev/shm` when present), and a restart step
//! reopens that file. The
//! properties, their inputs and `PROPTEST_CASES` are exactly sync-core's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The store `props` runs on (it reaches this module as `crate::store_under_test`).
mod store_under_test {
    use std::path::Path;
    use std::sync::Arc;

    use tidesync_core::LocalStore;
    use tidesync_store_sqlite::SqliteStore;

    /// A directory for one case's store file: in `/dev/shm` when there is one. The
    /// properties check what the store answers, not what reaches the disk (the crash
    /// test does that); on a shared CI disk the fsyncs of thousands of fresh files
    /// would make 512 cases take minutes.
    pub fn scratch() -> tempfile::TempDir {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            if let Ok(dir) = tempfile::tempdir_in(shm) {
                return dir;
            }
        }
        tempfile::tempdir().unwrap()
    }

    /// A fresh store file under `dir`.
    pub fn open(dir: &Path) -> Arc<dyn LocalStore> {
        Arc::new(SqliteStore::open(dir.join("props.db")).unwrap())
    }

    /// The same file opened again, as a restarted app opens it.
    pub fn reopen(_store: &Arc<dyn LocalStore>, dir: &Path) -> Arc<dyn LocalStore> {
        open(dir)
    }
}

#[path = "../../sync-core/tests/props.rs"]
mod props;
