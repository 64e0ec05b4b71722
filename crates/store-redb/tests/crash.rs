//! Crash safety: the shared SIGKILL harness of `tidesync_core::testkit::crash`
//! on a `RedbStore` file. A child process (this test binary, re-run with a
//! variable selecting the ignored `crash_writer` test) writes items and their
//! queue entries in a loop through `LocalStore::write`, and is killed with
//! SIGKILL (`Child::kill`) at random moments. After each kill the store must
//! reopen with every item matched by its queue entry and every entry by its item.
//!
//! `TIDESYNC_CRASH_ROUNDS` sets the number of kills (default 20) and
//! `TIDESYNC_CRASH_SEED` replays a run's delays (the seed is printed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use tidesync_core::testkit::crash;
use tidesync_core::testkit::{Capabilities, StoreFactory};
use tidesync_core::{LocalStore, StoreError};
use tidesync_store_redb::RedbStore;

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

/// The child: writes until it is killed; returns at once outside the harness.
#[test]
#[ignore = "the child process of sigkill_never_tears_a_batch"]
fn crash_writer() {
    crash::crash_writer(&RedbFactory);
}

#[test]
fn sigkill_never_tears_a_batch() {
    crash::sigkill_never_tears_a_batch(&RedbFactory, "crash_writer");
}
