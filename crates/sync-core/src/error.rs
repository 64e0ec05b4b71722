//! Errors: one enum for stores, one for transports, and the engine's own.

use tidesync_protocol::Item;

pub use crate::model::InvalidItem;
use crate::model::OpKind;
use crate::outcome::{PushResult, PushStatus};
pub use crate::store::{BoxError, StoreError};

/// Why a request got no answer, for an app to decide what to say or do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NetworkKind {
    /// The server's name could not be resolved.
    Dns,
    /// Nothing listens at the server's address (connection refused).
    Refused,
    /// The request or the connection took longer than allowed.
    Timeout,
    /// The TLS handshake failed (a certificate, or not TLS at all).
    Tls,
    /// The connection was closed or reset before the answer was complete.
    Reset,
    /// The client is offline (a test transport's offline switch).
    Offline,
    /// Anything else, or not known.
    Other,
}

/// A request that got no answer: what kind of failure, and the whole story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkError {
    /// What kind of failure.
    pub kind: NetworkKind,
    /// What happened, with the chain of causes.
    pub message: String,
}

impl NetworkError {
    /// A failure of a known kind.
    pub fn new(kind: NetworkKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for NetworkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A failure of no particular kind ([`NetworkKind::Other`]).
impl From<String> for NetworkError {
    fn from(message: String) -> Self {
        Self::new(NetworkKind::Other, message)
    }
}

/// A failure of no particular kind ([`NetworkKind::Other`]).
impl From<&str> for NetworkError {
    fn from(message: &str) -> Self {
        Self::new(NetworkKind::Other, message)
    }
}

/// What a [`Transport`](crate::Transport) call can fail with, classified the way
/// push and pull react to it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// No answer: connection refused, DNS, TLS, timeout, offline; its
    /// [`NetworkError::kind`] says which. Stops a push with
    /// `CancelledByNetworkError`; nothing is lost.
    #[error("network error: {0}")]
    Network(NetworkError),
    /// 401 (after any token refresh): stops a push with `CancelledByAuthenticationError`.
    #[error("not authenticated: {message}")]
    Auth {
        /// The server's message.
        message: String,
    },
    /// 409 or 412: the server has another version of the item.
    #[error("conflict (HTTP {status})")]
    Conflict {
        /// 409 or 412.
        status: u16,
        /// The server's copy of the item, if the body carried one.
        server_item: Option<Item>,
        /// The raw body.
        raw: Option<String>,
    },
    /// 404 on a read or update (a delete's 404 counts as success).
    #[error("item not found (HTTP {status})")]
    NotFound {
        /// 404 or 410.
        status: u16,
        /// The raw body.
        raw: Option<String>,
    },
    /// Any other HTTP error status, after retries.
    #[error("HTTP {status}: {message}")]
    Http {
        /// The status.
        status: u16,
        /// The server's message (the `error` property of the body, or the body).
        message: String,
        /// The raw body.
        raw: Option<String>,
    },
    /// The server answered something that does not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The transport does not offer this call (e.g. batch push on an official server).
    #[error("not supported by this transport: {0}")]
    Unsupported(&'static str),
}

impl TransportError {
    /// The HTTP status, when there was a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            TransportError::Conflict { status, .. }
            | TransportError::NotFound { status, .. }
            | TransportError::Http { status, .. } => Some(*status),
            TransportError::Auth { .. } => Some(401),
            _ => None,
        }
    }

    /// The raw response body, when there was one.
    pub fn raw(&self) -> Option<&str> {
        match self {
            TransportError::Conflict { raw, .. }
            | TransportError::NotFound { raw, .. }
            | TransportError::Http { raw, .. } => raw.as_deref(),
            _ => None,
        }
    }

    /// True when retrying later may succeed (network trouble, 5xx, 429).
    pub fn is_retryable(&self) -> bool {
        match self {
            TransportError::Network(_) => true,
            TransportError::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// Why the queue refused a local write (the reference client's validation matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueRefusal {
    /// An insert, update or delete of this item is already queued, so a new insert is refused.
    InsertAfterQueued(OpKind),
    /// A delete is already queued; the item can no longer be changed.
    DeleteQueued,
    /// An insert of this item was already sent and may exist on the server; push first.
    InsertMayBeOnServer,
}

impl std::fmt::Display for QueueRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueRefusal::InsertAfterQueued(kind) => {
                write!(f, "an {kind:?} of this item is already queued")
            }
            QueueRefusal::DeleteQueued => write!(f, "a delete of this item is already queued"),
            QueueRefusal::InsertMayBeOnServer => write!(
                f,
                "the queued insert was already sent and may exist on the server: push first"
            ),
        }
    }
}

/// The engine's errors, returned by [`SyncContext`](crate::SyncContext) and
/// [`SyncTable`](crate::SyncTable).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A network call failed (pull; a push reports through its status instead).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// An item the app gave does not fit its table (an unknown column, a value
    /// of the wrong type). Nothing was written.
    #[error(transparent)]
    InvalidItem(#[from] InvalidItem),
    /// A row the server sent (a pulled page) does not fit the local table.
    /// Nothing of its page was written.
    #[error("the server's row {id} of table {table} does not fit the local table: {reason}")]
    BadServerRow {
        /// The table.
        table: String,
        /// The row's id.
        id: String,
        /// What does not fit.
        reason: Box<InvalidItem>,
    },
    /// An argument is invalid (a bad id, query id or query).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The local table has no row with this id.
    #[error("no item {id} in table {table}")]
    NotFound {
        /// The table.
        table: String,
        /// The item id.
        id: String,
    },
    /// A local insert of an id that already exists locally.
    #[error("item {id} already exists in table {table}")]
    AlreadyExists {
        /// The table.
        table: String,
        /// The id.
        id: String,
    },
    /// The queue refused the write; nothing was changed.
    #[error("cannot {attempted:?} item {id} of table {table}: {reason}")]
    QueueRefused {
        /// The table.
        table: String,
        /// The id.
        id: String,
        /// The refused write.
        attempted: OpKind,
        /// Why.
        reason: QueueRefusal,
    },
    /// A resolution was asked for an op that changed (or left the queue) since its error was recorded.
    #[error("operation {operation_id} has changed since the error was recorded")]
    OperationChanged {
        /// The op id.
        operation_id: String,
    },
    /// A purge was refused because the table has pending operations.
    #[error(
        "table {table} has {pending} pending operations: push first, or purge with force and no filter"
    )]
    PendingOperations {
        /// The table.
        table: String,
        /// How many ops are queued for it.
        pending: u64,
    },
    /// A push (explicit or the implicit push before a pull) did not finish cleanly.
    #[error("push did not complete: {:?} with {} error(s)", .0.status, .0.errors.len())]
    PushFailed(Box<PushResult>),
    /// The call was cancelled through its token.
    #[error("cancelled")]
    Cancelled,
    /// An item could not be converted from or to the app's type.
    #[error("item conversion failed: {0}")]
    Serde(#[from] serde_json::Error),
    /// A stored row does not fit the app's type (a column the type lacks a
    /// field for is fine; a value of another type, or a missing required field,
    /// is not).
    #[error("row {id} of table {table} does not fit the app's type: {source}")]
    RowDoesNotFit {
        /// The table.
        table: String,
        /// The row's id.
        id: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A bug or a panic in a store or transport: the engine could not finish.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// True when the same call may succeed later without any change (network trouble).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport(e) => e.is_retryable(),
            Error::PushFailed(r) => r.status == PushStatus::CancelledByNetworkError,
            _ => false,
        }
    }
}

/// Shorthand for results of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;
