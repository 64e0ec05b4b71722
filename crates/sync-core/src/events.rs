//! Change events: what apps subscribe to so their UI can refresh when local data
//! changes, whoever changed it (the app, a pull, a purge, a push's answer), and
//! to follow the sync lifecycle.

use std::time::Duration;

use crate::model::OpKind;
use crate::outcome::PushStatus;

/// Which sync action a lifecycle event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncAction {
    /// A push.
    Push,
    /// A pull of one table.
    Pull,
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
    /// Local rows were purged.
    Purged {
        /// The table.
        table: String,
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
            | ChangeEvent::Purged { table } => Some(table),
            ChangeEvent::SyncStarted { table, .. } | ChangeEvent::SyncFinished { table, .. } => {
                table.as_deref()
            }
            ChangeEvent::FeedConnected { .. }
            | ChangeEvent::FeedDisconnected { .. }
            | ChangeEvent::FeedPolling { .. } => None,
        }
    }

    /// True when local rows of the table may have changed (a reason to re-query).
    pub fn changes_rows(&self) -> bool {
        matches!(
            self,
            ChangeEvent::LocalWrite { .. }
                | ChangeEvent::Pushed { .. }
                | ChangeEvent::Pulled { .. }
                | ChangeEvent::Purged { .. }
        )
    }
}

/// How many events a slow subscriber may fall behind before it misses some
/// (it is then told how many it missed).
pub(crate) const EVENT_BUFFER: usize = 1024;
