//! Crash safety: the shared SIGKILL harness of `tidesync_core::testkit::crash`
//! on a `SqliteStore` file. A child process (this test binary, re-run with a
//! variable selecting the ignored `crash_writer` test) writes items and their
//! queue entries in a loop through `LocalStore::write`, one batch per group, and
//! is killed with SIGKILL at random moments (20 times; `TIDESYNC_CRASH_ROUNDS`
//! sets more). After each kill the file must reopen with every item matched by
//! its queue entry and every entry by its item.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use tidesync_core::testkit::crash;
use tidesync_core::testkit::{Capabilities, StoreFactory};
use tidesync_core::{LocalStore, StoreError};
use tidesync_store_sqlite::SqliteStore;

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

#[test]
#[ignore = "the child process of sigkill_never_tears_a_batch"]
fn crash_writer() {
    crash::crash_writer(&SqliteFactory);
}

#[test]
fn sigkill_never_tears_a_batch() {
    crash::sigkill_never_tears_a_batch(&SqliteFactory, "crash_writer");
}
