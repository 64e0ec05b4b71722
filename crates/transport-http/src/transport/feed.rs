//! The change feed extension (`GET {extensions}/feed?tables=A,B`, server-sent events):
//! [`HttpTransport::open_feed`] behind `Transport::change_feed`.
//!
//! The feed is used only when the server's capabilities document lists `feed` (so with
//! [`Protocol::Auto`](crate::Protocol::Auto)); otherwise `change_feed` answers
//! `TransportError::Unsupported` and a watcher polls instead. The request carries the same
//! headers and credentials as table requests (refreshed once after a 401). Once the answer's
//! headers arrive, a task reads the streaming body, parses the events and sends each
//! `change` event on the returned channel. The channel closes when the connection ends, when
//! nothing (not even a heartbeat) arrived for [`IDLE_TIMEOUT`], or when the receiver is
//! dropped (which also closes the connection).

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use serde_json::Value;
use tidesync_core::{ChangeFeed, FeedEvent, TransportError};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::{HttpTransport, network};
use crate::response::{Reply, error_for};

/// The extension's name in the capabilities document.
pub(crate) const EXTENSION: &str = "feed";

/// A feed on which nothing arrived for this long is taken as dead (the server sends a
/// heartbeat every 15 s by default; keep its heartbeat below this).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Events a slow receiver may have waiting.
const CHANNEL: usize = 256;

impl HttpTransport {
    /// Opens the change feed for `tables`.
    pub(crate) async fn open_feed(&self, tables: &[String]) -> Result<ChangeFeed, TransportError> {
        let capabilities = self.capabilities().await?;
        if !capabilities.has_extension(EXTENSION) {
            if !capabilities.tidesync
                && self.inner.settings.protocol == crate::Protocol::Auto
                && self.inner.discovered.get().is_none()
            {
                // Discovery failed for now (401, 429, 5xx): not a final "no".
                return Err(TransportError::Network(
                    "the server's capabilities are not known yet".into(),
                ));
            }
            return Err(TransportError::Unsupported("change feed"));
        }
        let mut url = self.url_for(&self.extension_path(EXTENSION), &[]);
        url.query_pairs_mut()
            .append_pair("tables", &tables.join(","));
        let span = tracing::debug_span!("feed", url = %url);
        let response = self
            .open_stream(url, "text/event-stream", "opening the change feed failed")
            .instrument(span.clone())
            .await?;
        let (sender, receiver) = mpsc::channel(CHANNEL);
        tokio::spawn(pump(response, sender).instrument(span));
        Ok(receiver)
    }

    /// An extension route: the capabilities path with its last segment replaced by `tail`.
    pub(crate) fn extension_path(&self, tail: &str) -> String {
        let capabilities = &self.inner.settings.capabilities_path;
        match capabilities.rsplit_once('/') {
            Some((parent, _)) => format!("{parent}/{tail}"),
            None => format!("/{tail}"),
        }
    }

    /// Opens a long streamed `GET` (the feed, a snapshot) with the table requests'
    /// headers and credentials (refreshed once after a 401) and `Accept: accept`; the
    /// client's request timeout would cut the stream, so none applies.
    ///
    /// # Errors
    /// `Network` when no answer came (`what` says what was being opened), the
    /// classified error of a non-success answer.
    pub(crate) async fn open_stream(
        &self,
        url: reqwest::Url,
        accept: &'static str,
        what: &str,
    ) -> Result<reqwest::Response, TransportError> {
        let mut refreshed = false;
        loop {
            let headers = self.stream_headers(accept).await?;
            let response = self
                .inner
                .settings
                .client
                .get(url.clone())
                .headers(headers)
                .timeout(Duration::from_secs(365 * 24 * 3600))
                .send()
                .await
                .map_err(|e| network(what, &e))?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                if let Some(auth) = &self.inner.settings.auth {
                    refreshed = true;
                    if auth.refresh().await.unwrap_or(false) {
                        continue;
                    }
                }
            }
            if status.is_success() {
                return Ok(response);
            }
            let headers = response.headers().clone();
            let body = response
                .bytes()
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default();
            return Err(error_for(&Reply {
                status,
                headers,
                body,
            }));
        }
    }

    /// The configured headers, the credentials and `Accept: accept`.
    async fn stream_headers(&self, accept: &'static str) -> Result<HeaderMap, TransportError> {
        let mut headers = self.inner.settings.headers.clone();
        headers.insert(ACCEPT, HeaderValue::from_static(accept));
        self.add_credentials(&mut headers).await?;
        Ok(headers)
    }
}

/// Reads the stream into the channel until either side ends.
async fn pump(response: reqwest::Response, sender: mpsc::Sender<FeedEvent>) {
    let mut body = response.bytes_stream();
    let mut parser = SseParser::default();
    loop {
        let chunk = tokio::select! {
            () = sender.closed() => {
                tracing::debug!("feed receiver dropped; closing");
                return;
            }
            chunk = tokio::time::timeout(IDLE_TIMEOUT, body.next()) => chunk,
        };
        let bytes = match chunk {
            Ok(Some(Ok(bytes))) => bytes,
            Ok(Some(Err(error))) => {
                tracing::debug!(%error, "feed connection failed");
                return;
            }
            Ok(None) => {
                tracing::debug!("feed ended by the server");
                return;
            }
            Err(_) => {
                tracing::info!(timeout = ?IDLE_TIMEOUT, "feed silent for too long; closing");
                return;
            }
        };
        for (event, data) in parser.push(&bytes) {
            if event != "change" {
                continue;
            }
            match change_event(&data) {
                Some(event) => {
                    if sender.send(event).await.is_err() {
                        return;
                    }
                }
                None => tracing::warn!(%data, "unreadable change event"),
            }
        }
    }
}

/// A `change` event's data: `{"table": …, "updatedAt": …, "id": …}`.
fn change_event(data: &str) -> Option<FeedEvent> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(data) else {
        return None;
    };
    let text = |name: &str| map.get(name).and_then(Value::as_str).map(str::to_owned);
    Some(FeedEvent {
        table: text("table")?,
        updated_at: text("updatedAt"),
        id: text("id"),
    })
}

/// An incremental parser of the `text/event-stream` format: lines end with LF, CR LF or
/// CR; `event:` and `data:` fields (several data lines join with LF) make an event, which a
/// blank line dispatches; comments (`:`) and other fields are skipped.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    /// The last byte was a CR (an LF right after it ends nothing more).
    after_cr: bool,
    event: String,
    data: Option<String>,
}

impl SseParser {
    /// Feeds bytes; returns the events they completed, as `(type, data)`.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<(String, String)> {
        let mut events = Vec::new();
        for &byte in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
            match byte {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_done(&String::from_utf8_lossy(&line)) {
                        events.push(event);
                    }
                }
                _ => self.line.push(byte),
            }
        }
        events
    }

    fn line_done(&mut self, line: &str) -> Option<(String, String)> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = self.data.take()?;
            let kind = if event.is_empty() {
                "message".to_owned()
            } else {
                event
            };
            return Some((kind, data));
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = value.to_owned(),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn events_are_parsed_across_chunks_and_line_endings() {
        let mut parser = SseParser::default();
        let text = ":subscribed\nretry: 1000\n\nevent: change\ndata: {\"table\":\"T\",\r\ndata: \"id\":\"a\"}\r\n\r\n: heartbeat\r\revent: other\rdata: x\r\r";
        let mut events = Vec::new();
        for chunk in text.as_bytes().chunks(3) {
            events.extend(parser.push(chunk));
        }
        assert_eq!(
            events,
            vec![
                (
                    "change".to_owned(),
                    "{\"table\":\"T\",\n\"id\":\"a\"}".to_owned()
                ),
                ("other".to_owned(), "x".to_owned()),
            ]
        );
        let event =
            change_event(r#"{"table":"T","updatedAt":"2026-01-01T00:00:00.000Z","id":"a"}"#)
                .unwrap();
        assert_eq!(event.table, "T");
        assert_eq!(event.id.as_deref(), Some("a"));
        assert_eq!(change_event(r#"{"table":"T"}"#).unwrap().updated_at, None);
        assert!(change_event("[1]").is_none());
    }
}
