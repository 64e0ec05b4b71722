//! Crash safety: the shared SIGKILL harness of `tidesync_core::testkit::crash` on a
//! `SqliteStore` file, once per `synchronous` setting. A child process (this test binary,
//! re-run with variables selecting the ignored `crash_writer` test) writes items and their
//! queue entries in a loop through `LocalStore::write` and logs each acknowledged batch to an
//! fsynced file of its own; it is killed with SIGKILL after a random number of batches (20
//! times; `TIDESYNC_CRASH_ROUNDS` sets more). After each kill the store must hold every
//! acknowledged batch, the batch in flight whole or not at all, and nothing else.
//!
//! Both settings promise every acknowledged batch: with `synchronous = NORMAL` a commit is in
//! the WAL file (the kernel's page cache) when `write` returns, and a killed process loses
//! nothing the kernel has (only a power loss could). `the_check_catches_a_store_that_drops_
//! acknowledged_batches` runs the same check on a store that drops every other batch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use tidesync_core::testkit::crash::{self, CrashMode, Lossy, Promise};
use tidesync_core::testkit::{Capabilities, StoreFactory};
use tidesync_core::{LocalStore, StoreError};
use tidesync_store_sqlite::{SqliteOptions, SqliteStore, Synchronous};

struct SqliteFactory(Synchronous);

impl StoreFactory for SqliteFactory {
    fn open(&self, path: &Path) -> Result<Arc<dyn LocalStore>, StoreError> {
        let options = SqliteOptions {
            synchronous: self.0,
            ..SqliteOptions::default()
        };
        Ok(Arc::new(SqliteStore::open_with(path, options)?))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            durable: true,
            file_backed: true,
        }
    }
}

const NORMAL: CrashMode<'static> = CrashMode {
    name: "normal",
    factory: &SqliteFactory(Synchronous::Normal),
    promise: Promise::EveryAcknowledged,
};

const FULL: CrashMode<'static> = CrashMode {
    name: "full",
    factory: &SqliteFactory(Synchronous::Full),
    promise: Promise::EveryAcknowledged,
};

/// The planted fault: acknowledges every batch, applies every other one.
const LOSSY: CrashMode<'static> = CrashMode {
    name: "lossy",
    factory: &Lossy(&SqliteFactory(Synchronous::Full)),
    promise: Promise::EveryAcknowledged,
};

#[test]
#[ignore = "the child process of the crash tests"]
fn crash_writer() {
    crash::crash_writer(&[NORMAL, FULL, LOSSY]);
}

#[test]
fn sigkill_keeps_acknowledged_batches_synchronous_normal() {
    crash::sigkill_keeps_acknowledged_batches(&NORMAL, "crash_writer");
}

#[test]
fn sigkill_keeps_acknowledged_batches_synchronous_full() {
    crash::sigkill_keeps_acknowledged_batches(&FULL, "crash_writer");
}

#[test]
fn the_check_catches_a_store_that_drops_acknowledged_batches() {
    let failure = crash::crash_rounds(&LOSSY, "crash_writer", 3)
        .expect_err("a store that drops every other acknowledged batch must be caught");
    eprintln!("caught, as it must be: {failure}");
    assert_eq!(failure.round, 0, "the first kill finds it: {failure}");
    assert!(
        failure
            .message
            .contains("Missing, from acknowledged batch 2:"),
        "{failure}"
    );
}
