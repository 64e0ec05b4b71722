//! The table clock and the read horizon: how `updatedAt` stays a tie-proof cursor without
//! running ahead of real time.
//!
//! **Stamps.** A write is stamped `max(now, clock)` where `clock` is the table's last stamp:
//! the clock never goes back and never runs ahead of the wall clock (several writes in one
//! millisecond share it; the `id` breaks the tie in every cursor). Stamps are taken and
//! committed in one order per table (SQLite: under the writer lock; PostgreSQL: under the
//! table's clock lock, held from the stamp to the commit), so stamps never decrease in
//! commit order.
//!
//! **The horizon of a read.** A row stamped `t` may still be uncommitted while rows stamped
//! `t` with a larger id are visible; a reader that passed `(t, id)` would then miss it. So a
//! read returns only rows stamped below its *horizon*, a time below which no row can commit
//! any more:
//!
//! - the newest stamp its snapshot holds (`clock`) is always one: a write in flight or to
//!   come is stamped at least `clock`, and every row below it committed before it;
//! - when no write was in flight at a moment after the read took `now` and before its
//!   snapshot began, `now` is one too: a later write is stamped at least `now`.
//!
//! The horizon is the larger of the two that hold. Rows at or above it are left out of the
//! answer until the next read (at most the current millisecond, or the writes committed while
//! another write is in flight); a read that would leave out rows of the current millisecond
//! waits for the millisecond to pass and reads again, so that a client reads its own writes.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};

use super::{StoreError, now_ms};

/// The wall clock in milliseconds, never going back within this process (a stamp and a
/// read horizon must not move back when the system clock is set back).
pub(crate) fn monotonic_now_ms() -> i64 {
    static HIGH_WATER: AtomicI64 = AtomicI64::new(i64::MIN);
    let now = now_ms();
    HIGH_WATER.fetch_max(now, Ordering::SeqCst).max(now)
}

/// The stamp after `(clock_ms, version)` at `now_ms`: the clock never goes back and never
/// runs ahead of `now_ms`; the version counts every write.
pub(crate) fn next_stamp(now_ms: i64, clock_ms: i64, version: i64) -> (i64, i64) {
    (now_ms.max(clock_ms), version.saturating_add(1))
}

/// What a read must leave out, given `now_ms` (taken before the snapshot), whether the
/// table was `idle` (no write in flight after `now_ms` was taken) and the newest stamp of the
/// snapshot (`clock_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Horizon {
    /// Every row of the snapshot can be returned.
    Open,
    /// Only rows stamped below `below` can be returned.
    Below {
        /// The horizon.
        below: i64,
        /// Whether waiting until the wall clock passes `below` (a millisecond or two) would
        /// open the horizon: the table was idle and only the current millisecond is held
        /// back.
        wait_opens: bool,
    },
}

/// The longest a read waits for its horizon to open, in milliseconds.
pub(crate) const MAX_HORIZON_WAIT_MS: i64 = 3;

impl Horizon {
    /// The horizon of a read (see the module documentation).
    pub(crate) fn of(now_ms: i64, idle: bool, clock_ms: i64) -> Horizon {
        if idle && now_ms > clock_ms {
            return Horizon::Open;
        }
        Horizon::Below {
            below: clock_ms,
            wait_opens: idle && clock_ms - now_ms < MAX_HORIZON_WAIT_MS,
        }
    }

    /// The SQL condition that keeps rows below the horizon (`None` when open).
    pub(crate) fn condition(self) -> Option<String> {
        match self {
            Horizon::Open => None,
            Horizon::Below { below, .. } => Some(format!("\"updatedAt\" < {below}")),
        }
    }

    /// How long to wait before reading again to see the rows held back, if that helps.
    pub(crate) fn wait(self) -> Option<std::time::Duration> {
        match self {
            Horizon::Below {
                below,
                wait_opens: true,
            } => {
                let left = below.saturating_sub(monotonic_now_ms()).saturating_add(1);
                Some(std::time::Duration::from_millis(
                    u64::try_from(left.clamp(0, MAX_HORIZON_WAIT_MS + 1)).unwrap_or(1),
                ))
            }
            _ => None,
        }
    }
}

/// Runs `read` (one read in one snapshot, and its horizon) until its horizon no longer
/// holds back rows of the current millisecond, at most three times.
///
/// # Errors
///
/// What `read` fails with.
pub(crate) async fn read_until_open<T, F, Fut>(mut read: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(T, Horizon), StoreError>>,
{
    let mut attempt = 0;
    loop {
        let (result, horizon) = read().await?;
        attempt += 1;
        match horizon.wait() {
            // Rows of this very millisecond were held back: read again once it passed.
            Some(wait) if attempt < 3 => tokio::time::sleep(wait).await,
            _ => return Ok(result),
        }
    }
}

/// Joins a `WHERE` condition with the horizon's.
pub(crate) fn with_horizon(where_sql: &str, horizon: Horizon) -> String {
    match horizon.condition() {
        Some(condition) => format!("({where_sql}) AND {condition}"),
        None => where_sql.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_share_a_millisecond_instead_of_running_ahead() {
        assert_eq!(next_stamp(100, 100, 7), (100, 8));
        assert_eq!(next_stamp(100, 99, 7), (100, 8));
        // A clock ahead of the wall (a database written by an older server) is not pushed on.
        assert_eq!(next_stamp(100, 5_000, 7), (5_000, 8));
    }

    #[test]
    fn the_horizon_holds_back_what_may_still_commit_below_it() {
        // Idle, the last write in an earlier millisecond: everything can be read.
        assert_eq!(Horizon::of(101, true, 100), Horizon::Open);
        // Idle, a write in this millisecond: hold it back, and a short wait opens it.
        assert_eq!(
            Horizon::of(100, true, 100),
            Horizon::Below {
                below: 100,
                wait_opens: true
            }
        );
        // A write in flight: only what is below the snapshot's clock.
        assert_eq!(
            Horizon::of(500, false, 100),
            Horizon::Below {
                below: 100,
                wait_opens: false
            }
        );
        // A clock far ahead of the wall: waiting would not help.
        assert_eq!(
            Horizon::of(100, true, 60_000),
            Horizon::Below {
                below: 60_000,
                wait_opens: false
            }
        );
        assert_eq!(
            with_horizon("1 = 1", Horizon::of(100, true, 100)),
            "(1 = 1) AND \"updatedAt\" < 100"
        );
    }

    #[test]
    fn the_monotonic_clock_never_goes_back() {
        let first = monotonic_now_ms();
        assert!(monotonic_now_ms() >= first);
    }
}
