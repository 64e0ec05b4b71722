//! Settings: [`Protocol`], [`RetryPolicy`] and [`HttpTransportBuilder`].

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::auth::AuthProvider;
use crate::error::HttpError;
use crate::transport::{HttpTransport, Settings};

/// The path, below the base URL, of the tables.
pub const DEFAULT_TABLES_PATH: &str = "/tables";
/// The path, below the base URL, of a tidesync server's capabilities document.
pub const DEFAULT_CAPABILITIES_PATH: &str = "/tidesync/v1/capabilities";
/// The `User-Agent` sent unless told otherwise.
pub const DEFAULT_USER_AGENT: &str = concat!("tidesync/", env!("CARGO_PKG_VERSION"));

/// Which table protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// Azure Mobile Apps (`ZUMO-API-VERSION: 2.0.0`): `PATCH` updates, plain-array or
    /// `{results,count}` pages, OData v3 filters.
    V2,
    /// Datasync (`ZUMO-API-VERSION: 3.0.0`): `PUT` replaces, `{items,count,nextLink}`
    /// pages, OData v4 filters.
    V3,
    /// Read a tidesync server's capabilities document on first use and speak v3 when it
    /// lists `3.0.0`, else v2; any server that has no such document is spoken to in v2.
    #[default]
    Auto,
}

/// How requests answered 5xx or 429 are retried.
///
/// The wait before retry `n` (0-based) is `min(max_backoff, initial_backoff * 2^n)`, of
/// which a random part of up to a half is taken off (jitter). A `Retry-After` header in
/// seconds replaces that wait when it is at most `max_backoff`, spread by a random part of
/// up to a half *added* (never less than the server asked, and clients turned away together
/// do not return together); a longer one ends the retries at once. Requests that got no answer at all are not retried here: the engine
/// stops the push and the op stays queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retrying.
    pub max_retries: u32,
    /// The wait before the first retry.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// No retries.
    pub const NONE: RetryPolicy = RetryPolicy {
        max_retries: 0,
        initial_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
    };
}

impl Default for RetryPolicy {
    /// Three retries, 200 ms doubling up to 5 s.
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Rows asked per snapshot request unless [`HttpTransportBuilder::snapshot_segment_rows`]
/// says otherwise: a table larger than this is read in segments, each asked after the last
/// row of the one before, so that a client killed part-way has at most about one segment
/// in flight (received but not applied) to download again.
const DEFAULT_SNAPSHOT_SEGMENT_ROWS: u64 = 8_000;

/// Builds an [`HttpTransport`]; made by [`HttpTransport::builder`].
#[derive(Debug)]
pub struct HttpTransportBuilder {
    base_url: String,
    protocol: Protocol,
    timeout: Duration,
    connect_timeout: Option<Duration>,
    user_agent: String,
    headers: Vec<(String, String)>,
    auth: Option<Arc<dyn AuthProvider>>,
    retry: RetryPolicy,
    tables_path: String,
    capabilities_path: String,
    snapshot_segment_rows: u64,
}

impl HttpTransportBuilder {
    pub(crate) fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            protocol: Protocol::Auto,
            timeout: Duration::from_secs(30),
            connect_timeout: None,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            headers: Vec::new(),
            auth: None,
            retry: RetryPolicy::default(),
            tables_path: DEFAULT_TABLES_PATH.to_owned(),
            capabilities_path: DEFAULT_CAPABILITIES_PATH.to_owned(),
            snapshot_segment_rows: DEFAULT_SNAPSHOT_SEGMENT_ROWS,
        }
    }

    /// Checks the base URL now (absolute `http(s)` with a host), as
    /// [`build`](Self::build) will.
    ///
    /// # Errors
    /// [`HttpError::InvalidUrl`].
    pub fn check_url(&self) -> Result<(), HttpError> {
        parse_base(&self.base_url).map(drop)
    }

    /// The protocol ([`Protocol::Auto`] unless set).
    #[must_use]
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The limit on one attempt, from connecting to the end of the body (default 30 s).
    /// An attempt that runs out fails with `TransportError::Network`.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A separate, shorter limit on establishing the connection.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The `User-Agent` header (default `tidesync/<version>`).
    #[must_use]
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// A header sent with every request; may be called many times.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Credentials for every request (see [`AuthProvider`]).
    #[must_use]
    pub fn auth(self, provider: impl AuthProvider + 'static) -> Self {
        self.auth_arc(Arc::new(provider))
    }

    /// Credentials shared with other owners.
    #[must_use]
    pub fn auth_arc(mut self, provider: Arc<dyn AuthProvider>) -> Self {
        self.auth = Some(provider);
        self
    }

    /// How 5xx and 429 answers are retried ([`RetryPolicy::default`] unless set).
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Where the tables live below the base URL (default `/tables`).
    #[must_use]
    pub fn tables_path(mut self, path: impl Into<String>) -> Self {
        self.tables_path = path.into();
        self
    }

    /// Where [`Protocol::Auto`] looks for the capabilities document (default
    /// `/tidesync/v1/capabilities`).
    #[must_use]
    pub fn capabilities_path(mut self, path: impl Into<String>) -> Self {
        self.capabilities_path = path.into();
        self
    }

    /// Rows asked per snapshot request (default 8,000, at least 1): a bootstrap reads a
    /// larger table in segments of this many rows, each after the last row of the one
    /// before. A first sync killed part-way downloads again at most about one segment
    /// (what was in flight); smaller segments waste less and cost more requests.
    #[must_use]
    pub fn snapshot_segment_rows(mut self, rows: u64) -> Self {
        self.snapshot_segment_rows = rows.max(1);
        self
    }

    /// Checks the settings and creates the transport. No request is made.
    ///
    /// # Errors
    /// [`HttpError::InvalidUrl`] for a base URL that is not absolute `http(s)` with a host,
    /// [`HttpError::InvalidPath`], [`HttpError::InvalidHeader`],
    /// [`HttpError::InvalidRetryPolicy`], or [`HttpError::Client`] when the HTTP client
    /// cannot be set up.
    pub fn build(self) -> Result<HttpTransport, HttpError> {
        let base = parse_base(&self.base_url)?;
        let tables_path = clean_path(&self.tables_path)?;
        let capabilities_path = clean_path(&self.capabilities_path)?;
        if self.retry.initial_backoff > self.retry.max_backoff {
            return Err(HttpError::InvalidRetryPolicy(
                "initial_backoff is longer than max_backoff".to_owned(),
            ));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let invalid = |reason: String| HttpError::InvalidHeader {
                name: name.clone(),
                reason,
            };
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| invalid(format!("bad name: {e}")))?;
            let value =
                HeaderValue::from_str(value).map_err(|e| invalid(format!("bad value: {e}")))?;
            headers.append(header, value);
        }
        HeaderValue::from_str(&self.user_agent).map_err(|e| HttpError::InvalidHeader {
            name: "User-Agent".to_owned(),
            reason: e.to_string(),
        })?;
        let mut client = reqwest::Client::builder()
            .user_agent(self.user_agent)
            .timeout(self.timeout);
        if let Some(connect) = self.connect_timeout {
            client = client.connect_timeout(connect);
        }
        let client = client.build().map_err(|e| HttpError::Client(Box::new(e)))?;
        Ok(HttpTransport::from_settings(Settings {
            client,
            base,
            tables_path,
            capabilities_path,
            protocol: self.protocol,
            headers,
            auth: self.auth,
            snapshot_segment_rows: self.snapshot_segment_rows,
            retry: self.retry,
        }))
    }
}

/// Parses the base URL: absolute http(s) with a host; query and fragment dropped; the path
/// kept without its trailing slash (so `https://h/app/` serves `https://h/app/tables`).
fn parse_base(text: &str) -> Result<Url, HttpError> {
    let invalid = |reason: &str| HttpError::InvalidUrl {
        url: text.to_owned(),
        reason: reason.to_owned(),
    };
    let mut url = Url::parse(text.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("the url has no host"));
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

/// An absolute path without a trailing slash (`/tables`), or the empty string for `/`.
fn clean_path(path: &str) -> Result<String, HttpError> {
    let invalid = |reason: &str| HttpError::InvalidPath {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if !path.starts_with('/') {
        return Err(invalid("must start with '/'"));
    }
    if path.contains(['?', '#']) || path.chars().any(char::is_whitespace) {
        return Err(invalid("must not contain '?', '#' or whitespace"));
    }
    Ok(path.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn base_urls_are_checked_and_normalized() {
        assert_eq!(
            parse_base("http://h:8080/app/?x=1#f").unwrap().as_str(),
            "http://h:8080/app"
        );
        assert_eq!(parse_base("https://h").unwrap().path(), "/");
        assert!(matches!(
            parse_base("ftp://h"),
            Err(HttpError::InvalidUrl { .. })
        ));
        assert!(matches!(
            parse_base("not a url"),
            Err(HttpError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn paths_are_checked() {
        assert_eq!(clean_path("/tables/").unwrap(), "/tables");
        assert_eq!(clean_path("/").unwrap(), "");
        assert!(matches!(
            clean_path("tables"),
            Err(HttpError::InvalidPath { .. })
        ));
        assert!(matches!(
            clean_path("/t?x"),
            Err(HttpError::InvalidPath { .. })
        ));
    }
}
