//! The one error enum the bindings throw: the facade's [`tidesync::Error`] mapped
//! variant by variant, with the push status and the failed operations (conflict
//! details included) of a push that did not complete.

use tidesync::{NetworkKind, TransportError};

use crate::records::{OperationFailure, PushStatus, item_json};

/// Why a request got no answer ([`tidesync::NetworkKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum NetworkErrorKind {
    /// The server's name could not be resolved.
    Dns,
    /// Nothing listens at the server's address.
    Refused,
    /// The request or the connection took too long.
    Timeout,
    /// The TLS handshake failed.
    Tls,
    /// The connection closed before the answer was complete.
    Reset,
    /// The client is offline.
    Offline,
    /// Anything else.
    Other,
}

impl From<NetworkKind> for NetworkErrorKind {
    fn from(kind: NetworkKind) -> Self {
        match kind {
            NetworkKind::Dns => Self::Dns,
            NetworkKind::Refused => Self::Refused,
            NetworkKind::Timeout => Self::Timeout,
            NetworkKind::Tls => Self::Tls,
            NetworkKind::Reset => Self::Reset,
            NetworkKind::Offline => Self::Offline,
            _ => Self::Other,
        }
    }
}

/// Everything a binding call can fail with. Field names avoid `message` (Kotlin
/// exceptions already have one); the text is in `detail`.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum TidesyncError {
    /// No answer from the server (refused, DNS, TLS, timeout): retry later.
    #[error("network error ({kind:?}): {detail}")]
    Network {
        /// What kind of failure.
        kind: NetworkErrorKind,
        /// What happened.
        detail: String,
    },
    /// The server refused the credentials.
    #[error("not authenticated: {detail}")]
    Auth {
        /// The server's message.
        detail: String,
    },
    /// The server has another version of the item (409 or 412).
    #[error("conflict (HTTP {status})")]
    Conflict {
        /// 409 or 412.
        status: u16,
        /// The server's copy, JSON text, when the answer carried it.
        server_item: Option<String>,
    },
    /// Another HTTP error status (after retries), or an answer outside the protocol
    /// (`status` 0).
    #[error("server error (HTTP {status}): {detail}")]
    Server {
        /// The HTTP status; 0 when the answer broke the protocol.
        status: u16,
        /// The server's message.
        detail: String,
    },
    /// A push (explicit, or the one before a pull) did not complete: its status and
    /// the operations that failed, conflicts with both copies of the item.
    #[error("push did not complete: {status:?} with {} failed operation(s)", failures.len())]
    PushFailed {
        /// How the push ended.
        status: PushStatus,
        /// The failed operations.
        failures: Vec<OperationFailure>,
        /// A failure not about one item.
        other_error: Option<String>,
    },
    /// An item does not fit its table, or is not a JSON object.
    #[error("invalid item: {detail}")]
    InvalidItem {
        /// What does not fit.
        detail: String,
    },
    /// A row the server sent does not fit the local table.
    #[error("the server's row {id} of table {table} does not fit the local table: {detail}")]
    BadServerRow {
        /// The table.
        table: String,
        /// The row's id.
        id: String,
        /// What does not fit.
        detail: String,
    },
    /// An argument is invalid (a bad id, query, filter or setting).
    #[error("invalid argument: {detail}")]
    InvalidArgument {
        /// What is wrong.
        detail: String,
    },
    /// No local row with this id.
    #[error("no item {id} in table {table}")]
    NotFound {
        /// The table.
        table: String,
        /// The id.
        id: String,
    },
    /// A local insert of an id that exists.
    #[error("item {id} already exists in table {table}")]
    AlreadyExists {
        /// The table.
        table: String,
        /// The id.
        id: String,
    },
    /// The queue refused the write (e.g. an update after a queued delete).
    #[error("write to item {id} of table {table} refused: {detail}")]
    QueueRefused {
        /// The table.
        table: String,
        /// The id.
        id: String,
        /// Why.
        detail: String,
    },
    /// A resolution for an op that changed since its error was recorded.
    #[error("operation {operation_id} has changed since the error was recorded")]
    OperationChanged {
        /// The op id.
        operation_id: String,
    },
    /// A purge refused because the table has pending operations.
    #[error("table {table} has {pending} pending operations")]
    PendingOperations {
        /// The table.
        table: String,
        /// Queued ops.
        pending: u64,
    },
    /// The call was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The local store failed.
    #[error("store error: {detail}")]
    Store {
        /// What failed.
        detail: String,
    },
    /// A bug or an unexpected failure.
    #[error("internal error: {detail}")]
    Internal {
        /// What failed.
        detail: String,
    },
}

impl TidesyncError {
    pub(crate) fn invalid_argument(detail: impl Into<String>) -> Self {
        Self::InvalidArgument {
            detail: detail.into(),
        }
    }

    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        Self::Internal {
            detail: detail.into(),
        }
    }
}

impl From<TransportError> for TidesyncError {
    fn from(error: TransportError) -> Self {
        match error {
            TransportError::Network(network) => Self::Network {
                kind: network.kind.into(),
                detail: network.message,
            },
            TransportError::Auth { message } => Self::Auth { detail: message },
            TransportError::Conflict {
                status,
                server_item,
                ..
            } => Self::Conflict {
                status,
                server_item: server_item.as_ref().map(item_json),
            },
            TransportError::NotFound { status, .. } => Self::Server {
                status,
                detail: "not found".to_owned(),
            },
            TransportError::Http {
                status, message, ..
            } => Self::Server {
                status,
                detail: message,
            },
            other => Self::Server {
                status: 0,
                detail: other.to_string(),
            },
        }
    }
}

impl From<tidesync::Error> for TidesyncError {
    fn from(error: tidesync::Error) -> Self {
        use tidesync::Error as E;
        match error {
            E::Store(e) => Self::Store {
                detail: e.to_string(),
            },
            E::Transport(e) => e.into(),
            E::InvalidItem(e) => Self::InvalidItem {
                detail: e.to_string(),
            },
            E::Serde(e) => Self::InvalidItem {
                detail: e.to_string(),
            },
            e @ E::RowDoesNotFit { .. } => Self::InvalidItem {
                detail: e.to_string(),
            },
            E::BadServerRow { table, id, reason } => Self::BadServerRow {
                table,
                id,
                detail: reason.to_string(),
            },
            E::InvalidArgument(detail) => Self::InvalidArgument { detail },
            E::NotFound { table, id } => Self::NotFound { table, id },
            E::AlreadyExists { table, id } => Self::AlreadyExists { table, id },
            E::QueueRefused {
                table,
                id,
                attempted,
                reason,
            } => Self::QueueRefused {
                table,
                id,
                detail: format!("{attempted:?}: {reason}"),
            },
            E::OperationChanged { operation_id } => Self::OperationChanged { operation_id },
            E::PendingOperations { table, pending } => Self::PendingOperations { table, pending },
            E::PushFailed(result) => Self::PushFailed {
                status: result.status.into(),
                failures: result.errors.iter().map(OperationFailure::from).collect(),
                other_error: result.other_error,
            },
            E::Cancelled => Self::Cancelled,
            other => Self::Internal {
                detail: other.to_string(),
            },
        }
    }
}
