//! Change events: what apps subscribe to so their UI can refresh when local data
//! changes, whoever changed it (the app, a pull, a purge, a push's answer), and
//! to follow the sync lifecycle.

use std::time::Duration;

use crate::model::OpKind;
use crate::outcome::PushStatus;
use crate::status::SyncErrorInfo;

/// Which sync action a lifecycle event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncAction {
    /// A push.
    Push,
    /// A pull of one table.
    Pull,
    /// A watcher's change feed (only in [`ChangeEvent::SyncFailed`]: it could not be opened).
    Feed,
}

/// Something that changed local data or the sync state.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ChangeEvent {
    /// The app wrote an item (and queued its op).
    LocalWrite {
        /// The table.
        table: String,
        /// The item id.
        id: String,
        /// What the write was.
        kind: OpKind,
    },
    /// The server acknowledged an op; its copy of the item is stored locally.
    Pushed {
        /// The table.
        table: String,
        /// The item id.
        id: String,
        /// What the op was.
        kind: OpKind,
    },
    /// A push left an op failed with an error record (a conflict, a refusal).
    PushFailed {
        /// The table.
        table: String,
        /// The item id.
        id: String,
        /// The HTTP status, when there was one.
        status: Option<u16>,
    },
    /// A pull applied a page of server rows.
    Pulled {
        /// The table.
        table: String,
        /// Rows stored.
        upserted: u64,
        /// Rows removed because the server deleted them.
        deleted: u64,
    },
    /// How far a running pull of a table is (throttled: at most about ten a second
    /// per pull, and one when its last row is applied). A first screen's rows are
    /// not counted (the bulk applies them again).
    PullProgress {
        /// The table.
        table: String,
        /// Rows the pull has applied so far (upserted, deleted or skipped).
        applied: u64,
        /// The rows the pull will apply, when known: the server's count (asked for
        /// by a first screen, or given by the server), raised to `applied` when
        /// tombstones make the pull apply more than the count of live rows.
        total: Option<u64>,
    },
    /// Local rows were purged.
    Purged {
        /// The table.
        table: String,
    },
    /// The app resolved an op's error ([`SyncContext::cancel_and_update`],
    /// [`cancel_and_discard`], [`update_and_retry`]); the row may have changed.
    ///
    /// [`SyncContext::cancel_and_update`]: crate::SyncContext::cancel_and_update
    /// [`cancel_and_discard`]: crate::SyncContext::cancel_and_discard
    /// [`update_and_retry`]: crate::SyncContext::update_and_retry
    Resolved {
        /// The table.
        table: String,
        /// The item id.
        id: String,
    },
    /// Every local row, op, error record and pull cursor was removed (a sign-out,
    /// [`SyncContext::clear_all`](crate::SyncContext::clear_all)).
    Cleared,
    /// A push or pull failed (sent just before its [`ChangeEvent::SyncFinished`]).
    SyncFailed {
        /// How.
        error: SyncErrorInfo,
    },
    /// A push or pull started.
    SyncStarted {
        /// Which.
        action: SyncAction,
        /// The pulled table (pulls only).
        table: Option<String>,
    },
    /// A push or pull finished.
    SyncFinished {
        /// Which.
        action: SyncAction,
        /// The pulled table (pulls only).
        table: Option<String>,
        /// How a push ended (pushes only).
        push_status: Option<PushStatus>,
        /// True when it succeeded.
        ok: bool,
    },
    /// A watcher opened the server's change feed (it pulls the tables once next).
    FeedConnected {
        /// The watched tables.
        tables: Vec<String>,
    },
    /// A watcher's change feed dropped or could not be opened; it tries again after
    /// `retry_in`.
    FeedDisconnected {
        /// Why.
        reason: String,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
    /// The transport has no change feed: a watcher pulls every `interval` instead.
    FeedPolling {
        /// The polling interval.
        interval: Duration,
    },
}

impl ChangeEvent {
    /// The table the event is about, if any.
    pub fn table(&self) -> Option<&str> {
        match self {
            ChangeEvent::LocalWrite { table, .. }
            | ChangeEvent::Pushed { table, .. }
            | ChangeEvent::PushFailed { table, .. }
            | ChangeEvent::Pulled { table, .. }
            | ChangeEvent::PullProgress { table, .. }
            | ChangeEvent::Purged { table }
            | ChangeEvent::Resolved { table, .. } => Some(table),
            ChangeEvent::SyncFailed { error } => error.table.as_deref(),
            ChangeEvent::SyncStarted { table, .. } | ChangeEvent::SyncFinished { table, .. } => {
                table.as_deref()
            }
            ChangeEvent::Cleared
            | ChangeEvent::FeedConnected { .. }
            | ChangeEvent::FeedDisconnected { .. }
            | ChangeEvent::FeedPolling { .. } => None,
        }
    }

    /// True when local rows of the table (of every table, for an event without
    /// one) may have changed: a reason to re-query.
    pub fn changes_rows(&self) -> bool {
        matches!(
            self,
            ChangeEvent::LocalWrite { .. }
                | ChangeEvent::Pushed { .. }
                | ChangeEvent::Pulled { .. }
                | ChangeEvent::Purged { .. }
                | ChangeEvent::Resolved { .. }
                | ChangeEvent::Cleared
        )
    }
}

/// How many events a slow subscriber may fall behind before it misses some
/// (it is then told how many it missed).
pub(crate) const EVENT_BUFFER: usize = 1024;
