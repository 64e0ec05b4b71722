//! What a store bounds for the requests it serves: how long a read runs, how long a string a
//! query may build, how many reads run at once and how long a request waits for a turn, and
//! (PostgreSQL) the pool, the DDL lock wait and the retries of a write that lost a race.
//!
//! The server fills [`StoreLimits`] from `[limits]` of its configuration
//! (`crate::config::Limits`); a store opened without them uses the same defaults.
//!
//! A read that is dropped before it finished (the client went away) is stopped: SQLite's
//! reads hold a [`Cancel`] guard whose flag the progress handler reads; PostgreSQL's reads
//! hold their connection in a guard that cancels the running statement and closes the
//! connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::StoreError;

/// The bounds of a store (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// The longest a read may run.
    pub query_timeout: Duration,
    /// The longest string a SQLite read may hold or build (`SQLITE_LIMIT_LENGTH`).
    pub max_string_bytes: usize,
    /// How many times the string functions of a `$filter` may multiply a value's length.
    pub max_string_growth: u64,
    /// Reads running at once (on PostgreSQL also at most three quarters of the pool, so that
    /// writes always find a connection).
    pub max_concurrent_reads: usize,
    /// The longest wait for a read slot or a pooled connection.
    pub queue_timeout: Duration,
    /// PostgreSQL connections.
    pub pool_size: usize,
    /// PostgreSQL: the longest wait for a table lock before adding a column.
    pub ddl_lock_timeout: Duration,
    /// PostgreSQL: how often a write that hit a deadlock or a serialization failure is run
    /// again.
    pub write_retries: u32,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits::from(&crate::config::Limits::default())
    }
}

impl From<&crate::config::Limits> for StoreLimits {
    fn from(limits: &crate::config::Limits) -> StoreLimits {
        StoreLimits {
            query_timeout: limits.query_timeout(),
            max_string_bytes: limits.max_string_bytes,
            max_string_growth: limits.max_string_growth,
            max_concurrent_reads: limits.max_concurrent_reads.max(1),
            queue_timeout: limits.queue_timeout(),
            pool_size: limits.pool_size.max(1),
            ddl_lock_timeout: Duration::from_millis(limits.ddl_lock_timeout_ms.max(1)),
            write_retries: limits.write_retries,
        }
    }
}

impl StoreLimits {
    /// [`StoreLimits::query_timeout`] in whole milliseconds (at least 1).
    pub(crate) fn query_timeout_ms(&self) -> u64 {
        u64::try_from(self.query_timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// The refusal of a read that ran past its deadline.
    pub(crate) fn timed_out(&self) -> StoreError {
        StoreError::Busy {
            limit: "limits.query_timeout_ms",
            message: format!(
                "the query ran longer than {} ms and was stopped; narrow it or try again later",
                self.query_timeout_ms()
            ),
        }
    }
}

/// The read slots of a store: a semaphore entered with a bounded wait.
#[derive(Debug)]
pub(crate) struct ReadGate {
    permits: Arc<Semaphore>,
    slots: usize,
    wait: Duration,
    /// Reads that found every slot taken and waited (for the metrics).
    waits: std::sync::atomic::AtomicU64,
    /// Reads that waited in vain (answered 503).
    timeouts: std::sync::atomic::AtomicU64,
}

/// How busy a store's connections are (`GET /tidesync/v1/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Read slots (SQLite: `limits.max_concurrent_reads`; PostgreSQL: the read share of the
    /// pool).
    pub read_slots: u64,
    /// Read slots in use now.
    pub reads_in_use: u64,
    /// Reads that had to wait for a slot, since the start.
    pub read_waits: u64,
    /// Reads that waited past `limits.queue_timeout_ms`, since the start.
    pub read_wait_timeouts: u64,
    /// PostgreSQL: connections open, idle, and callers waiting for one now.
    pub connections: u64,
    pub connections_idle: u64,
    pub connections_waiting: u64,
}

impl ReadGate {
    pub(crate) fn new(slots: usize, wait: Duration) -> ReadGate {
        let slots = slots.clamp(1, Semaphore::MAX_PERMITS);
        ReadGate {
            permits: Arc::new(Semaphore::new(slots)),
            slots,
            wait,
            waits: std::sync::atomic::AtomicU64::new(0),
            timeouts: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The gate's part of [`PoolStats`].
    pub(crate) fn stats(&self) -> PoolStats {
        let free = self.permits.available_permits();
        PoolStats {
            read_slots: self.slots as u64,
            reads_in_use: self.slots.saturating_sub(free) as u64,
            read_waits: self.waits.load(Ordering::Relaxed),
            read_wait_timeouts: self.timeouts.load(Ordering::Relaxed),
            ..PoolStats::default()
        }
    }

    /// A read slot, held until dropped.
    ///
    /// # Errors
    ///
    /// [`StoreError::Busy`] when no slot frees up within the wait.
    pub(crate) async fn enter(&self) -> Result<OwnedSemaphorePermit, StoreError> {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Ok(permit);
        }
        self.waits.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(StoreError::Busy {
                limit: "limits.max_concurrent_reads",
                message: {
                    self.timeouts.fetch_add(1, Ordering::Relaxed);
                    format!(
                        "the server is running its most reads at once ({}); try again shortly",
                        self.slots
                    )
                },
            }),
        }
    }
}

/// Marks a read cancelled when dropped before [`Cancel::done`]: the read's future was
/// dropped (its client went away), so the database work behind it is stopped.
#[derive(Debug)]
pub(crate) struct Cancel {
    flag: Arc<AtomicBool>,
}

impl Cancel {
    /// A guard and the flag it sets.
    pub(crate) fn new() -> (Cancel, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        (
            Cancel {
                flag: Arc::clone(&flag),
            },
            flag,
        )
    }

    /// The read finished: dropping the guard now does nothing.
    pub(crate) fn done(mut self) {
        self.flag = Arc::new(AtomicBool::new(false));
    }
}

impl Drop for Cancel {
    fn drop(&mut self) {
        self.flag.store(true, Ordering::SeqCst);
    }
}
