//! The call log: one [`Call`] per transport call that reached the mock, faulted or not.

use tidesync_core::TransportError;
use tidesync_protocol::Item;
use tidesync_protocol::odata::Query;

/// One call a [`MockTransport`](crate::MockTransport) made, as the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Which call.
    pub kind: CallKind,
    /// The table (for a batch, the table of its first op; empty for an empty batch).
    pub table: String,
    /// The item id of a replace or delete, and of an insert whose body carries one.
    pub item_id: Option<String>,
    /// The `If-Match` version of a replace or delete, as given.
    pub if_match: Option<String>,
    /// The query of a read.
    pub query: Option<Query>,
    /// The include-deleted flag of a read (false for other calls).
    pub include_deleted: bool,
    /// The body of an insert or replace, as sent.
    pub body: Option<Item>,
    /// What the caller got back.
    pub outcome: CallOutcome,
}

/// Which transport call a [`Call`] was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// [`Transport::read`](tidesync_core::Transport::read).
    Read,
    /// [`Transport::insert`](tidesync_core::Transport::insert).
    Insert,
    /// [`Transport::replace`](tidesync_core::Transport::replace).
    Replace,
    /// [`Transport::delete`](tidesync_core::Transport::delete).
    Delete,
    /// [`Transport::batch`](tidesync_core::Transport::batch).
    Batch,
}

impl CallKind {
    /// True for the calls that change the server (everything but a read).
    pub fn is_write(self) -> bool {
        !matches!(self, CallKind::Read)
    }
}

/// What a [`Call`] returned to its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// Success (for a batch: the request as a whole; its ops may still have failed).
    Ok,
    /// An HTTP error status: 400, 401, 404, 409, 412, 5xx, ... (501 for a batch sent to a
    /// server without batch support).
    Status(u16),
    /// No response: offline, a network fault, or a response lost after the commit.
    Network,
}

impl CallOutcome {
    /// The outcome a caller sees for `result`.
    pub(crate) fn of<T>(result: &Result<T, TransportError>) -> CallOutcome {
        match result {
            Ok(_) => CallOutcome::Ok,
            Err(TransportError::Network(_)) => CallOutcome::Network,
            Err(TransportError::Unsupported(_)) => CallOutcome::Status(501),
            Err(error) => CallOutcome::Status(error.status().unwrap_or(500)),
        }
    }
}

/// A logged call; `finished` stays false while it is in flight (e.g. held at a gate).
pub(crate) struct CallSlot {
    pub(crate) seq: u64,
    pub(crate) call: Call,
    pub(crate) finished: bool,
}
