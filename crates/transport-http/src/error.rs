//! The crate's own error: what can go wrong while configuring a transport.
//!
//! Failures of requests are not here: they are classified into
//! [`TransportError`](tidesync_core::TransportError) variants, because push and pull
//! react to those.

use tidesync_core::BoxError;

/// Why [`HttpTransportBuilder::build`](crate::HttpTransportBuilder::build) refused a setting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The base URL does not parse, or is not an absolute `http`/`https` URL with a host.
    #[error("invalid base url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A path setting (`tables_path`, `capabilities_path`) is not a usable absolute path.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A custom header name or value is not valid HTTP.
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader {
        /// The header name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A retry policy that cannot work (`initial_backoff` above `max_backoff`).
    #[error("invalid retry policy: {0}")]
    InvalidRetryPolicy(String),
    /// The HTTP client could not be created (e.g. the TLS backend failed to load).
    #[error("http client could not be created: {0}")]
    Client(#[source] BoxError),
}
