//! The observable sync status: one [`SyncStatus`] value, kept current from the
//! engine's own change events, that apps watch instead of hand-rolling
//! subscribe-and-count.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use time::OffsetDateTime;
use tokio::sync::watch;

use crate::error::{Error, StoreError, TransportError};
use crate::events::{ChangeEvent, SyncAction};
use crate::outcome::{PushResult, PushStatus};

/// Where sync stands: what is queued, what is running, when it last worked and
/// how it last failed. Read it from [`SyncContext::status`](crate::SyncContext::status).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SyncStatus {
    /// Queued ops, all tables (failed ones included: they wait for a resolution).
    pub pending: u64,
    /// Queued ops per table (tables with none are absent).
    pub pending_by_table: BTreeMap<String, u64>,
    /// A push is running.
    pub pushing: bool,
    /// A pull is running.
    pub pulling: bool,
    /// The change feed's state: `Some(true)` open, `Some(false)` dropped or
    /// refused, `None` unknown (no watcher, or a transport without a feed).
    pub connected: Option<bool>,
    /// When a push last completed with every op accepted.
    pub last_pushed_at: Option<OffsetDateTime>,
    /// When a pull last completed.
    pub last_pulled_at: Option<OffsetDateTime>,
    /// How the last push or pull failed; cleared by the next one that succeeds.
    pub last_error: Option<SyncErrorInfo>,
    /// The progress of each table being pulled now (from
    /// [`ChangeEvent::PullProgress`]; a table leaves the map when its pull ends).
    pub pull_progress: BTreeMap<String, TableProgress>,
}

/// How far the running pull of one table is ([`SyncStatus::pull_progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableProgress {
    /// Rows applied so far.
    pub applied: u64,
    /// The rows the pull will apply, when known.
    pub total: Option<u64>,
}

/// A failed push or pull, as the status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncErrorInfo {
    /// Which action failed.
    pub action: SyncAction,
    /// The pulled table (pulls only).
    pub table: Option<String>,
    /// What kind of failure, to decide what to show or do.
    pub kind: SyncErrorKind,
    /// The failure, for people.
    pub message: String,
}

impl SyncErrorInfo {
    /// The report of a push, pull or feed that failed with `error`.
    pub fn of(action: SyncAction, table: Option<&str>, error: &Error) -> Self {
        Self {
            action,
            table: table.map(str::to_owned),
            kind: SyncErrorKind::of(error),
            message: error.to_string(),
        }
    }
}

/// What kind of failure stopped a push or pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SyncErrorKind {
    /// The server could not be reached, or the answer was lost: retry later.
    Network,
    /// The server refused the credentials (401/403): sign in again.
    Auth,
    /// The server failed or refused the request (an HTTP error other than auth).
    Server,
    /// Some ops were refused or conflicted: see the operation errors.
    Operations,
    /// The local store failed.
    Store,
    /// The action was cancelled.
    Cancelled,
    /// Anything else (bad input, an unexpected failure).
    Other,
}

impl SyncErrorKind {
    /// The kind of a failed pull (or any engine error).
    pub fn of(error: &Error) -> Self {
        match error {
            Error::Transport(TransportError::Network(_)) => Self::Network,
            Error::Transport(TransportError::Auth { .. }) => Self::Auth,
            Error::Transport(_) => Self::Server,
            Error::Store(StoreError::Busy(_) | StoreError::Backend(_) | StoreError::Corrupt(_)) => {
                Self::Store
            }
            Error::PushFailed(result) => Self::of_push(result).unwrap_or(Self::Operations),
            Error::Cancelled => Self::Cancelled,
            _ => Self::Other,
        }
    }

    /// The kind of a push that did not succeed (None when it did).
    pub fn of_push(result: &PushResult) -> Option<Self> {
        Some(match result.status {
            PushStatus::Complete if result.is_success() => return None,
            PushStatus::Complete => Self::Operations,
            PushStatus::CancelledByNetworkError => Self::Network,
            PushStatus::CancelledByAuthenticationError => Self::Auth,
            PushStatus::CancelledBySyncStoreError => Self::Store,
            PushStatus::CancelledByToken => Self::Cancelled,
            PushStatus::CancelledByOperation | PushStatus::InternalError => Self::Other,
        })
    }
}

/// Keeps the status current: every event the engine emits passes through
/// [`StatusCell::on_event`] first, and the queue publishes its counts through
/// [`StatusCell::sender`] after each commit (see `Queue::apply`).
#[derive(Debug)]
pub(crate) struct StatusCell {
    sender: watch::Sender<SyncStatus>,
    /// Pulls running (several tables may pull at once through several handles).
    pulls: AtomicU32,
}

impl StatusCell {
    /// A cell that starts with the queue's counts.
    pub(crate) fn new(pending: u64, pending_by_table: BTreeMap<String, u64>) -> Self {
        Self {
            sender: watch::Sender::new(SyncStatus {
                pending,
                pending_by_table,
                ..SyncStatus::default()
            }),
            pulls: AtomicU32::new(0),
        }
    }

    /// The sender, for the queue's counts.
    pub(crate) fn sender(&self) -> watch::Sender<SyncStatus> {
        self.sender.clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<SyncStatus> {
        self.sender.subscribe()
    }

    pub(crate) fn on_event(&self, event: &ChangeEvent) {
        match event {
            ChangeEvent::SyncStarted { action, .. } => {
                if *action == SyncAction::Pull {
                    self.pulls.fetch_add(1, Ordering::SeqCst);
                }
                self.sender.send_modify(|s| match action {
                    SyncAction::Push => s.pushing = true,
                    SyncAction::Pull => s.pulling = true,
                    SyncAction::Feed => {}
                });
            }
            ChangeEvent::PullProgress {
                table,
                applied,
                total,
            } => {
                let now = TableProgress {
                    applied: *applied,
                    total: *total,
                };
                self.sender
                    .send_if_modified(|s| s.pull_progress.insert(table.clone(), now) != Some(now));
            }
            ChangeEvent::SyncFinished {
                action, ok, table, ..
            } => {
                let pulls_left = match action {
                    SyncAction::Pull => self.pulls.fetch_sub(1, Ordering::SeqCst).saturating_sub(1),
                    SyncAction::Push | SyncAction::Feed => self.pulls.load(Ordering::SeqCst),
                };
                let now = OffsetDateTime::now_utc();
                self.sender.send_modify(|s| {
                    match action {
                        SyncAction::Push => {
                            s.pushing = false;
                            if *ok {
                                s.last_pushed_at = Some(now);
                            }
                        }
                        SyncAction::Pull => {
                            s.pulling = pulls_left > 0;
                            if let Some(table) = table {
                                s.pull_progress.remove(table);
                            }
                            if *ok {
                                s.last_pulled_at = Some(now);
                            }
                        }
                        SyncAction::Feed => {}
                    }
                    if *ok {
                        s.last_error = None;
                    }
                });
            }
            ChangeEvent::SyncFailed { error } => {
                self.sender
                    .send_modify(|s| s.last_error = Some(error.clone()));
            }
            ChangeEvent::FeedConnected { .. } => {
                self.sender
                    .send_if_modified(|s| set(&mut s.connected, Some(true)));
            }
            ChangeEvent::FeedDisconnected { .. } => {
                self.sender
                    .send_if_modified(|s| set(&mut s.connected, Some(false)));
            }
            ChangeEvent::FeedPolling { .. } => {
                self.sender
                    .send_if_modified(|s| set(&mut s.connected, None));
            }
            // A sign-out: what the last user's sync did no longer applies.
            ChangeEvent::Cleared => {
                self.sender.send_if_modified(|s| {
                    let before = (s.last_pushed_at, s.last_pulled_at, s.last_error.take());
                    s.last_pushed_at = None;
                    s.last_pulled_at = None;
                    before != (None, None, None)
                });
            }
            // Queue counts come from the queue itself.
            ChangeEvent::LocalWrite { .. }
            | ChangeEvent::Pushed { .. }
            | ChangeEvent::PushFailed { .. }
            | ChangeEvent::Pulled { .. }
            | ChangeEvent::Purged { .. }
            | ChangeEvent::Resolved { .. } => {}
        }
    }
}

fn set<T: PartialEq>(slot: &mut T, value: T) -> bool {
    if *slot == value {
        false
    } else {
        *slot = value;
        true
    }
}

/// A failed push, in one line: why it stopped, or how many ops failed.
pub(crate) fn push_message(result: &PushResult) -> String {
    match (&result.other_error, result.errors.len()) {
        (Some(error), _) => format!("push {:?}: {error}", result.status),
        (None, 0) => format!("push {:?}", result.status),
        (None, 1) => "push: 1 operation failed".to_owned(),
        (None, n) => format!("push: {n} operations failed"),
    }
}
