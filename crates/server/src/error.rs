//! The API layer's error and the one place where errors become HTTP responses.
//!
//! Handlers return [`ServerError`]; [`ServerError::into_response_for`] turns it into the
//! status, headers and body the protocol version of the request expects (spec 8). The
//! storage layer has its own error ([`StoreError`]), which knows nothing of HTTP; it becomes
//! a [`ServerError`] here, at the boundary, by `From` (refusals of a write's decision are
//! mapped by the write path, which knows the table's shape of an item).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tidesync_protocol::wire::{ApiVersion, INVALID_API_VERSION_MESSAGE};

use crate::http::response::{self, ItemResponse};
use crate::store::StoreError;

/// Everything that can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The table is not served here.
    #[error("the table '{table}' does not exist")]
    UnknownTable {
        /// The name from the URL.
        table: String,
    },
    /// `ZUMO-API-VERSION` is missing or not 2.0.x / 3.0.x.
    #[error("{}", INVALID_API_VERSION_MESSAGE)]
    InvalidApiVersion,
    /// The request is malformed: bad JSON, a reserved property, a bad id, a bad query option.
    #[error("{message}")]
    BadRequest {
        /// What is wrong, for the client.
        message: String,
    },
    /// `$top` is above the limit of the protocol version.
    #[error("You cannot request more than {max} records")]
    TopTooLarge {
        /// The largest `$top` accepted.
        max: u64,
    },
    /// A filter, order or selection names a column the table does not have.
    #[error("the table '{table}' has no column '{column}'")]
    UnknownColumn {
        /// The table.
        table: String,
        /// The missing column.
        column: String,
    },
    /// A value does not fit the type of its column, or a filter compares incompatible types.
    #[error("{message}")]
    Type {
        /// What does not fit.
        message: String,
    },
    /// No such item (or it belongs to another user).
    #[error("The item does not exist")]
    NotFound,
    /// The item is soft-deleted (v3 answers 410).
    #[error("the item has been deleted")]
    Gone,
    /// An insert hit an existing id: 409 with the stored item.
    #[error("an item with this id already exists")]
    Conflict {
        /// The stored item.
        item: Box<ItemResponse>,
    },
    /// A conditional write lost: 412 with the stored item.
    #[error("the item has been changed on the server")]
    PreconditionFailed {
        /// The stored item.
        item: Box<ItemResponse>,
    },
    /// An insert collided with an item another user owns.
    #[error("the id is not available")]
    IdNotAvailable,
    /// The request needs a signed-in user and has none.
    #[error("You must be logged in to use this application")]
    Unauthenticated,
    /// The caller is known but lacks the right (a role, a tenant claim, an app policy's
    /// refusal): 403 with the reason.
    #[error("{message}")]
    Forbidden {
        /// Why, for the client.
        message: String,
    },
    /// The operation is switched off for this table (`disabled` in `[tables.operations]`).
    #[error("the {operation} operation is disabled on this table")]
    OperationDisabled {
        /// `read`, `insert`, `update` or `delete`.
        operation: &'static str,
    },
    /// The request carried a token that does not verify.
    #[error("invalid token: {message}")]
    InvalidToken {
        /// Why the token was refused.
        message: String,
    },
    /// The API key header is missing or wrong.
    #[error("a valid API key is required")]
    InvalidApiKey,
    /// The body is larger than the configured limit.
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not JSON.
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    /// The verb is not served on this route for this protocol version.
    #[error("the method is not allowed here")]
    MethodNotAllowed,
    /// The database cannot be reached.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The request costs more than a limit allows (a filter building too long strings, a
    /// query past `limits.max_string_bytes`): 400 naming the limit's setting.
    #[error("{message}")]
    TooCostly {
        /// The setting of the limit.
        limit: &'static str,
        /// What was too much.
        message: String,
    },
    /// The server is too busy for the request now (a queue wait ran out, a read ran past its
    /// deadline, a write kept losing to others): 503 with `Retry-After`, naming the limit.
    #[error("{message}")]
    Busy {
        /// The setting of the limit.
        limit: &'static str,
        /// What happened.
        message: String,
    },
    /// The body holds more JSON values than `limits.max_json_values`: 413.
    #[error("the request body holds more than {limit} JSON values")]
    TooManyJsonValues {
        /// The limit.
        limit: usize,
    },
    /// A store failure that is not the client's fault.
    #[error("store error: {0}")]
    Store(#[source] StoreError),
    /// Anything else that is a bug or an environment problem.
    #[error("{0}")]
    Internal(String),
}

impl ServerError {
    /// A [`ServerError::BadRequest`] with `message`.
    pub fn bad_request(message: impl Into<String>) -> ServerError {
        ServerError::BadRequest {
            message: message.into(),
        }
    }

    /// A [`ServerError::Forbidden`] with `message`.
    pub fn forbidden(message: impl Into<String>) -> ServerError {
        ServerError::Forbidden {
            message: message.into(),
        }
    }

    /// An [`ServerError::Internal`] with `message`.
    pub fn internal(message: impl Into<String>) -> ServerError {
        ServerError::Internal(message.into())
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ServerError::UnknownTable { .. } | ServerError::NotFound => StatusCode::NOT_FOUND,
            ServerError::InvalidApiVersion
            | ServerError::BadRequest { .. }
            | ServerError::TopTooLarge { .. }
            | ServerError::UnknownColumn { .. }
            | ServerError::Type { .. }
            | ServerError::TooCostly { .. }
            | ServerError::IdNotAvailable => StatusCode::BAD_REQUEST,
            ServerError::Gone => StatusCode::GONE,
            ServerError::Conflict { .. } => StatusCode::CONFLICT,
            ServerError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ServerError::Unauthenticated
            | ServerError::InvalidToken { .. }
            | ServerError::InvalidApiKey => StatusCode::UNAUTHORIZED,
            ServerError::PayloadTooLarge { .. } | ServerError::TooManyJsonValues { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ServerError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServerError::MethodNotAllowed | ServerError::OperationDisabled { .. } => {
                StatusCode::METHOD_NOT_ALLOWED
            }
            ServerError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ServerError::Unavailable(_) | ServerError::Busy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ServerError::Store(_) | ServerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response for a request that speaks `version` (`None` when the version is unknown,
    /// e.g. outside `/tables`: answered like v2).
    ///
    /// v2 answers every error without an item as `{"error":"…"}`. v3 follows the Datasync
    /// server: 404, 410 and 401 have an empty body; other client errors carry `{"error":"…"}`.
    /// 409 and 412 carry the stored item and its `ETag` in both versions.
    pub fn into_response_for(self, version: Option<ApiVersion>) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let v3 = version == Some(ApiVersion::V3);
        let mut response = match self {
            ServerError::Conflict { item } | ServerError::PreconditionFailed { item } => {
                response::item(status, &item, v3)
            }
            ServerError::NotFound
            | ServerError::Gone
            | ServerError::Unauthenticated
            | ServerError::InvalidToken { .. }
                if v3 =>
            {
                let mut empty = Response::new(Body::empty());
                *empty.status_mut() = status;
                empty
            }
            ServerError::Store(_) | ServerError::Internal(_) => {
                response::error_body(status, "internal server error")
            }
            ServerError::TooCostly { limit, message } | ServerError::Busy { limit, message } => {
                response::limit_body(status, &message, limit)
            }
            ServerError::TooManyJsonValues { limit } => response::limit_body(
                status,
                &format!("the request body holds more than {limit} JSON values"),
                "limits.max_json_values",
            ),
            other => response::error_body(status, &other.to_string()),
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Busy and unavailable are for now: tell clients when to come back.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, POST, PATCH, PUT, DELETE"),
            );
        }
        response
    }
}

/// The storage layer's errors as the API answers them: what the caller got wrong is a 4xx,
/// a busy or unreachable database 503, and the rest 500 (logged, never shown).
impl From<StoreError> for ServerError {
    fn from(error: StoreError) -> ServerError {
        match error {
            StoreError::UnknownTable { table } => ServerError::UnknownTable { table },
            StoreError::UnknownColumn { table, column } => {
                ServerError::UnknownColumn { table, column }
            }
            StoreError::InvalidQuery { message } => ServerError::Type { message },
            StoreError::Full { message } => ServerError::BadRequest { message },
            StoreError::Unavailable(message) => ServerError::Unavailable(message),
            StoreError::OverLimit { limit, message } => ServerError::TooCostly { limit, message },
            StoreError::Busy { limit, message } => ServerError::Busy { limit, message },
            other => ServerError::Store(other),
        }
    }
}
