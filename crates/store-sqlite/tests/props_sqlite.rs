//! The engine's model-based properties (`tidesync-engine-suite`'s `props`, also run by
//! sync-core on `MemoryStore`) on `SqliteStore` files instead: each case gets a fresh
//! file in a temporary directory (on `/dev/shm` when present), and a restart step reopens
//! that file. The properties, their inputs and `PROPTEST_CASES` are exactly sync-core's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use tidesync_core::LocalStore;
use tidesync_engine_suite::props::StoreUnderTest;
use tidesync_store_sqlite::SqliteStore;

/// One SQLite file per case.
struct Sqlite;

impl StoreUnderTest for Sqlite {
    /// A directory for one case's store file: in `/dev/shm` when there is one. The
    /// properties check what the store answers, not what reaches the disk (the crash
    /// test does that); on a shared CI disk the fsyncs of thousands of fresh files
    /// would make 512 cases take minutes.
    fn scratch(&self) -> tempfile::TempDir {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            if let Ok(dir) = tempfile::tempdir_in(shm) {
                return dir;
            }
        }
        tempfile::tempdir().unwrap()
    }

    fn open(&self, dir: &Path) -> Arc<dyn LocalStore> {
        Arc::new(SqliteStore::open(dir.join("props.db")).unwrap())
    }

    /// The same file opened again, as a restarted app opens it, after the old handle
    /// is dropped.
    fn reopen(&self, store: Arc<dyn LocalStore>, dir: &Path) -> Arc<dyn LocalStore> {
        drop(store);
        self.open(dir)
    }
}

tidesync_engine_suite::engine_properties!(Sqlite);
