//! [`HttpTransport`]: the [`Transport`] over HTTP, with retries, token refresh and
//! protocol discovery.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, IF_MATCH};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use tidesync_core::{
    BatchAnswer, BatchOperation, BatchOutcome, ChangeFeed, NetworkError, NetworkKind, Page,
    ReadRequest, Snapshot, SnapshotRequest, Transport, TransportError,
};
use tidesync_protocol::odata::Dialect;
use tidesync_protocol::system::{ID, is_system_property};
use tidesync_protocol::wire::ApiVersion;
use tidesync_protocol::{Item, format_etag};
use tracing::Instrument as _;

use crate::auth::AuthProvider;
use crate::builder::{HttpTransportBuilder, Protocol, RetryPolicy};
use crate::capabilities::Capabilities;
use crate::response::{Call, PageContext, Reply, error_for, item_from, page_from, retry_after};

mod batch;
mod feed;
mod snapshot;

/// Characters escaped in a table name or id put in a path: all but ASCII letters, digits
/// and `- _ . ! ~ * ' ( )` (what JavaScript's `encodeURIComponent` keeps).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// `tidesync_protocol::wire::ZUMO_API_VERSION` as `http` wants a static header name: lower case.
const ZUMO_API_VERSION_LOWER: &str = "zumo-api-version";

/// Everything [`HttpTransportBuilder::build`] checked.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) client: reqwest::Client,
    pub(crate) base: Url,
    pub(crate) tables_path: String,
    pub(crate) capabilities_path: String,
    pub(crate) protocol: Protocol,
    pub(crate) headers: HeaderMap,
    pub(crate) auth: Option<Arc<dyn AuthProvider>>,
    pub(crate) retry: RetryPolicy,
    /// Rows per snapshot request.
    pub(crate) snapshot_segment_rows: u64,
}

/// A [`Transport`] speaking the Azure Mobile Apps (v2) or Datasync (v3) table protocol
/// over HTTP(S). Cheap to clone: clones share the connection pool and the discovered
/// protocol.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: Settings,
    /// What [`Protocol::Auto`] found out, once it found out for good.
    discovered: OnceLock<Capabilities>,
}

/// One request to send, possibly several times.
struct Outgoing<'a> {
    method: Method,
    url: Url,
    body: Option<Vec<u8>>,
    if_match: Option<&'a str>,
    /// The `ZUMO-API-VERSION` to send; none for the capabilities document.
    version: Option<ApiVersion>,
}

impl HttpTransport {
    /// Starts building a transport for the server at `base_url` (e.g.
    /// `https://example.azurewebsites.net`; tables are then under `/tables`).
    pub fn builder(base_url: impl Into<String>) -> HttpTransportBuilder {
        HttpTransportBuilder::new(base_url)
    }

    pub(crate) fn from_settings(settings: Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                discovered: OnceLock::new(),
            }),
        }
    }

    /// The protocol setting this transport was built with.
    pub fn protocol(&self) -> Protocol {
        self.inner.settings.protocol
    }

    /// The base URL, normalized (no trailing slash, query or fragment).
    pub fn base_url(&self) -> &str {
        self.inner.settings.base.as_str()
    }

    /// What the transport speaks to the server. With [`Protocol::Auto`] the first call
    /// reads the server's capabilities document: a document makes the answer final and
    /// cached; a 4xx or an answer that is not a document means "not a tidesync server",
    /// v2, also cached; a 401, 429 or 5xx means v2 for now, asked again next time.
    ///
    /// # Errors
    /// `TransportError::Network` when the server cannot be reached (nothing is cached).
    pub async fn capabilities(&self) -> Result<Capabilities, TransportError> {
        match self.inner.settings.protocol {
            Protocol::V2 => return Ok(Capabilities::assumed(ApiVersion::V2)),
            Protocol::V3 => return Ok(Capabilities::assumed(ApiVersion::V3)),
            Protocol::Auto => {}
        }
        if let Some(known) = self.inner.discovered.get() {
            return Ok(known.clone());
        }
        let url = self.url_for(&self.inner.settings.capabilities_path, &[]);
        let request = Outgoing {
            method: Method::GET,
            url,
            body: None,
            if_match: None,
            version: None,
        };
        let reply = self.attempt(&request).await?;
        let status = reply.status;
        let found = if status.is_success() {
            Capabilities::from_document(&reply.body)
        } else {
            None
        };
        let transient = status == StatusCode::UNAUTHORIZED
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error();
        let capabilities = found
            .clone()
            .unwrap_or_else(|| Capabilities::assumed(ApiVersion::V2));
        tracing::info!(
            status = status.as_u16(),
            tidesync = capabilities.tidesync,
            version = capabilities.version.as_header_value(),
            extensions = ?capabilities.extensions,
            "protocol discovery"
        );
        if found.is_some() || !transient {
            let _ = self.inner.discovered.set(capabilities.clone());
        }
        Ok(capabilities)
    }

    /// `{base}{path}/{segments…}`, each segment percent-encoded.
    fn url_for(&self, path: &str, segments: &[&str]) -> Url {
        let mut url = self.inner.settings.base.clone();
        let mut full = url.path().trim_end_matches('/').to_owned();
        full.push_str(path);
        for segment in segments {
            full.push('/');
            full.extend(utf8_percent_encode(segment, PATH_SEGMENT));
        }
        url.set_path(&full);
        url
    }

    fn table_url(&self, table: &str, id: Option<&str>) -> Url {
        let path = &self.inner.settings.tables_path;
        match id {
            Some(id) => self.url_for(path, &[table, id]),
            None => self.url_for(path, &[table]),
        }
    }

    /// Sends `request`, refreshing credentials once after a 401 and retrying 5xx and
    /// 429 as the [`RetryPolicy`] says. Returns the last answer, whatever its status.
    async fn execute(&self, request: &Outgoing<'_>) -> Result<Reply, TransportError> {
        let policy = self.inner.settings.retry;
        let mut retries = 0u32;
        let mut refreshed = false;
        loop {
            let reply = self.attempt(request).await?;
            let status = reply.status;
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                if let Some(auth) = &self.inner.settings.auth {
                    refreshed = true;
                    match auth.refresh().await {
                        Ok(true) => {
                            tracing::debug!("credentials refreshed after 401, sending again");
                            continue;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            return Err(TransportError::Auth {
                                message: format!("token refresh failed: {e}"),
                            });
                        }
                    }
                }
            }
            let retryable = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
            if !retryable || retries >= policy.max_retries {
                return Ok(reply);
            }
            let delay = match retry_after(&reply.headers) {
                Some(wait) if wait <= policy.max_backoff => after_at_least(wait),
                Some(wait) => {
                    tracing::debug!(?wait, "Retry-After is too long, not retrying");
                    return Ok(reply);
                }
                None => backoff(&policy, retries),
            };
            tracing::debug!(
                status = status.as_u16(),
                ?delay,
                retry = retries + 1,
                "retrying"
            );
            tokio::time::sleep(delay).await;
            retries += 1;
        }
    }

    /// Adds the auth provider's credential headers, if there is a provider.
    pub(crate) async fn add_credentials(
        &self,
        headers: &mut HeaderMap,
    ) -> Result<(), TransportError> {
        let Some(auth) = &self.inner.settings.auth else {
            return Ok(());
        };
        let credentials = auth.headers().await.map_err(|e| TransportError::Auth {
            message: format!("no credentials: {e}"),
        })?;
        for (name, value) in credentials {
            let bad = |e: &dyn std::fmt::Display| TransportError::Auth {
                message: format!("credential header {name:?} is not valid: {e}"),
            };
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(&e))?;
            let value = HeaderValue::from_str(&value).map_err(|e| bad(&e))?;
            headers.insert(header, value);
        }
        Ok(())
    }

    /// One round trip. Failures without an answer are `Network`.
    async fn attempt(&self, request: &Outgoing<'_>) -> Result<Reply, TransportError> {
        let settings = &self.inner.settings;
        let mut headers = settings.headers.clone();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(version) = request.version {
            headers.insert(
                HeaderName::from_static(ZUMO_API_VERSION_LOWER),
                HeaderValue::from_static(version.as_header_value()),
            );
        }
        self.add_credentials(&mut headers).await?;
        if let Some(version) = request.if_match {
            let etag = HeaderValue::from_str(&format_etag(version)).map_err(|_| {
                TransportError::Protocol(format!("version {version:?} cannot be sent as an ETag"))
            })?;
            headers.insert(IF_MATCH, etag);
        }
        let mut builder = settings
            .client
            .request(request.method.clone(), request.url.clone());
        if let Some(body) = &request.body {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            builder = builder.body(body.clone());
        }
        let span = tracing::debug_span!(
            "http",
            method = %request.method,
            url = %request.url,
            status = tracing::field::Empty,
        );
        async {
            let response = builder
                .headers(headers)
                .send()
                .await
                .map_err(|e| network("request failed", &e))?;
            let status = response.status();
            tracing::Span::current().record("status", status.as_u16());
            let headers = response.headers().clone();
            let body = response
                .bytes()
                .await
                .map_err(|e| network("reading the answer failed", &e))?;
            tracing::debug!(bytes = body.len(), "answer");
            Ok(Reply {
                status,
                headers,
                body: body.to_vec(),
            })
        }
        .instrument(span)
        .await
    }

    async fn write_item(
        &self,
        call: Call,
        table: &str,
        item: &Item,
        if_match: Option<&str>,
    ) -> Result<Item, TransportError> {
        let capabilities = self.capabilities().await?;
        let (method, url) = match call {
            Call::Insert => (Method::POST, self.table_url(table, None)),
            _ => {
                let id = item.get(ID).and_then(Value::as_str).ok_or_else(|| {
                    TransportError::Protocol("the item to replace has no string id".to_owned())
                })?;
                let method = match capabilities.version {
                    ApiVersion::V2 => Method::PATCH,
                    ApiVersion::V3 => Method::PUT,
                };
                (method, self.table_url(table, Some(id)))
            }
        };
        let body: Item = item
            .iter()
            .filter(|(name, _)| !is_system_property(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let body = serde_json::to_vec(&body)
            .map_err(|e| TransportError::Protocol(format!("the item cannot be sent: {e}")))?;
        let reply = self
            .execute(&Outgoing {
                method,
                url,
                body: Some(body),
                if_match,
                version: Some(capabilities.version),
            })
            .await?;
        if reply.status.is_success() {
            item_from(&reply, call)
        } else {
            Err(error_for(&reply))
        }
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn read(&self, request: &ReadRequest) -> Result<Page, TransportError> {
        let capabilities = self.capabilities().await?;
        let (dialect, include_deleted) = match capabilities.version {
            ApiVersion::V2 => (Dialect::V2, "__includeDeleted=true"),
            ApiVersion::V3 => (Dialect::V3, "__includedeleted=true"),
        };
        let mut query = request.query.to_query_string(dialect);
        if request.include_deleted {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(include_deleted);
        }
        let mut url = self.table_url(&request.table, None);
        url.set_query((!query.is_empty()).then_some(query.as_str()));
        let reply = self
            .execute(&Outgoing {
                method: Method::GET,
                url,
                body: None,
                if_match: None,
                version: Some(capabilities.version),
            })
            .await?;
        if !reply.status.is_success() {
            return Err(error_for(&reply));
        }
        page_from(
            &reply,
            PageContext {
                version: capabilities.version,
                top: request.query.top,
                ours: capabilities.tidesync,
            },
        )
    }

    async fn insert(&self, table: &str, item: &Item) -> Result<Item, TransportError> {
        self.write_item(Call::Insert, table, item, None).await
    }

    async fn replace(
        &self,
        table: &str,
        item: &Item,
        if_match: Option<&str>,
    ) -> Result<Item, TransportError> {
        self.write_item(Call::Replace, table, item, if_match).await
    }

    async fn delete(
        &self,
        table: &str,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), TransportError> {
        let capabilities = self.capabilities().await?;
        let reply = self
            .execute(&Outgoing {
                method: Method::DELETE,
                url: self.table_url(table, Some(id)),
                body: None,
                if_match,
                version: Some(capabilities.version),
            })
            .await?;
        match reply.status.as_u16() {
            200..=299 | 404 | 410 => Ok(()),
            _ => Err(error_for(&reply)),
        }
    }

    /// True with [`Protocol::Auto`] unless discovery found a server without the batch
    /// extension (see `batch.rs`: before discovery, `batch` falls back to single calls).
    fn supports_batch(&self) -> bool {
        self.batch_available()
    }

    async fn batch(
        &self,
        operations: &[BatchOperation],
    ) -> Result<Vec<BatchOutcome>, TransportError> {
        self.send_batch(operations).await
    }

    async fn batch_answer(
        &self,
        operations: &[BatchOperation],
    ) -> Result<BatchAnswer, TransportError> {
        self.send_batch_answer(operations).await
    }

    /// The server's change feed, when its capabilities list `feed` (see `feed.rs`).
    async fn change_feed(&self, tables: &[String]) -> Result<ChangeFeed, TransportError> {
        self.open_feed(tables).await
    }

    async fn snapshot(&self, request: &SnapshotRequest) -> Result<Snapshot, TransportError> {
        self.open_snapshot(request).await
    }
}

/// `min(max, initial * 2^retry)`, less a random part of up to a half.
/// A wait of `retry_after` plus up to half of it again, at random: clients a server turned
/// away together (a reconnect storm answered 503 with the same `Retry-After`) do not all
/// come back in the same instant. Never less than the server asked for.
fn after_at_least(retry_after: Duration) -> Duration {
    retry_after.mul_f64(1.0 + rand::random_range(0.0..0.5))
}

fn backoff(policy: &RetryPolicy, retry: u32) -> Duration {
    let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
    let full = policy
        .initial_backoff
        .saturating_mul(factor)
        .min(policy.max_backoff);
    full.mul_f64(1.0 - rand::random_range(0.0..0.5))
}

/// A failure without an answer, with the chain of causes (reqwest's own message is
/// terse) and its kind.
fn network(what: &str, error: &reqwest::Error) -> TransportError {
    let mut message = format!("{what}: {error}");
    if error.is_timeout() {
        message.push_str(" (timed out)");
    }
    let mut source = std::error::Error::source(error);
    let mut io_kind = None;
    let mut dns = false;
    while let Some(cause) = source {
        let text = cause.to_string();
        dns |= text.starts_with("dns error");
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        message.push_str(": ");
        message.push_str(&text);
        source = cause.source();
    }
    TransportError::Network(NetworkError::new(
        network_kind(error, io_kind, dns),
        message,
    ))
}

/// Which kind of "no answer": from reqwest's own flags, the first I/O error in the
/// chain of causes, and hyper's connector naming a name-resolution failure.
fn network_kind(
    error: &reqwest::Error,
    io_kind: Option<std::io::ErrorKind>,
    dns: bool,
) -> NetworkKind {
    use std::io::ErrorKind;
    if error.is_timeout() {
        return NetworkKind::Timeout;
    }
    if dns {
        return NetworkKind::Dns;
    }
    match io_kind {
        Some(ErrorKind::ConnectionRefused) => NetworkKind::Refused,
        Some(ErrorKind::TimedOut) => NetworkKind::Timeout,
        Some(
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof,
        ) => NetworkKind::Reset,
        // Connected over TCP but the https connection still failed: the handshake
        // (the TLS library's own error types are not reqwest's API to inspect).
        _ if error.is_connect() && error.url().is_some_and(|u| u.scheme() == "https") => {
            NetworkKind::Tls
        }
        _ if error.is_connect() => NetworkKind::Other,
        _ if error.is_body() || error.is_request() => NetworkKind::Reset,
        _ => NetworkKind::Other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use tidesync_protocol::wire::ZUMO_API_VERSION;

    use super::*;

    #[test]
    fn the_version_header_is_the_protocol_crate_one() {
        assert!(ZUMO_API_VERSION.eq_ignore_ascii_case(ZUMO_API_VERSION_LOWER));
    }

    #[test]
    fn retry_after_waits_are_spread_above_what_the_server_asked() {
        let asked = Duration::from_secs(1);
        let waits: Vec<Duration> = (0..200).map(|_| after_at_least(asked)).collect();
        assert!(
            waits
                .iter()
                .all(|w| *w >= asked && *w <= asked.mul_f64(1.5))
        );
        let first = waits[0];
        assert!(
            waits.iter().any(|w| *w != first),
            "the waits are spread, not one instant"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let policy = RetryPolicy {
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        for (retry, full) in [
            (0, 100),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1000),
            (40, 1000),
        ] {
            let wait = backoff(&policy, retry);
            let full = Duration::from_millis(full);
            assert!(wait <= full && wait >= full / 2, "{retry}: {wait:?}");
        }
    }

    #[test]
    fn ids_and_tables_are_percent_encoded_in_paths() {
        let transport = HttpTransport::builder("http://h:1/app/").build().unwrap();
        assert_eq!(
            transport
                .table_url("Todo Item", Some("a/b?c#d %e+f'g"))
                .as_str(),
            "http://h:1/app/tables/Todo%20Item/a%2Fb%3Fc%23d%20%25e%2Bf'g"
        );
        assert_eq!(
            transport.url_for("/tidesync/v1/capabilities", &[]).as_str(),
            "http://h:1/app/tidesync/v1/capabilities"
        );
    }
}
