//! The snapshot extension (`GET {extensions}/tables/{table}/snapshot`, newline-delimited
//! JSON): [`HttpTransport::open_snapshot`] behind `Transport::snapshot`.
//!
//! Used only when the server's capabilities document lists `snapshot` (so with
//! [`Protocol::Auto`](crate::Protocol::Auto)); otherwise `snapshot` answers
//! `TransportError::Unsupported` and the engine pages. The request carries the pull's
//! filter (printed in the v3 dialect) and `__includedeleted=true`; the answer is one JSON
//! object per line: the rows in `(updatedAt, id)` order, then `{"end":true,"rows":N}`. A task
//! reads the streaming body and sends the rows on the returned channel in batches of
//! `batch_rows`; the channel holds [`READ_AHEAD`] batches, which bounds memory. A line
//! `{"error":…}`, a line that is not a JSON object, a row count that does not match, or a
//! body that ends without the end line arrives as an `Err` before the channel closes.

use futures_util::StreamExt as _;
use serde_json::Value;
use tidesync_core::{Item, NetworkError, NetworkKind, Snapshot, SnapshotRequest, TransportError};
use tidesync_protocol::odata::{Dialect, Query};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::HttpTransport;

/// The extension's name in the capabilities document.
pub(crate) const EXTENSION: &str = "snapshot";

/// Batches read ahead of the engine.
const READ_AHEAD: usize = 2;

/// A line longer than this is refused (a row is far smaller; this bounds memory).
const MAX_LINE: usize = 16 * 1024 * 1024;

impl HttpTransport {
    /// Opens a snapshot of `request.table`.
    pub(crate) async fn open_snapshot(
        &self,
        request: &SnapshotRequest,
    ) -> Result<Snapshot, TransportError> {
        let capabilities = self.capabilities().await?;
        if !capabilities.has_extension(EXTENSION) {
            return Err(TransportError::Unsupported("snapshot"));
        }
        let mut url = self.url_for(&self.extension_path("tables"), &[&request.table, EXTENSION]);
        let filter = Query {
            filter: request.filter.clone(),
            ..Query::default()
        }
        .to_query_string(Dialect::V3);
        let query = if filter.is_empty() {
            "__includedeleted=true".to_owned()
        } else {
            format!("{filter}&__includedeleted=true")
        };
        url.set_query(Some(&query));
        let span = tracing::info_span!("snapshot", table = %request.table);
        let response = self
            .open_stream(url, "application/x-ndjson", "opening the snapshot failed")
            .instrument(span.clone())
            .await?;
        let (sender, receiver) = mpsc::channel(READ_AHEAD);
        tokio::spawn(pump(response, sender, request.batch_rows.max(1)).instrument(span));
        Ok(receiver)
    }
}

/// What one line of the body said.
enum Line {
    Row(Item),
    End(Option<u64>),
}

fn parse_line(line: &[u8]) -> Result<Line, TransportError> {
    let bad = |why: String| TransportError::Protocol(format!("snapshot: {why}"));
    let value: Value =
        serde_json::from_slice(line).map_err(|e| bad(format!("a line is not JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(bad("a line is not a JSON object".to_owned()));
    };
    if object.get("end").and_then(Value::as_bool) == Some(true) && !object.contains_key("id") {
        return Ok(Line::End(object.get("rows").and_then(Value::as_u64)));
    }
    if let Some(error) = object.get("error").filter(|_| !object.contains_key("id")) {
        let message = error
            .as_str()
            .map_or_else(|| error.to_string(), str::to_owned);
        return Err(TransportError::Network(
            format!("the server failed part-way through the snapshot: {message}").into(),
        ));
    }
    Ok(Line::Row(object))
}

/// Reads the body into batches until the end line, an error or a dropped receiver.
async fn pump(
    response: reqwest::Response,
    sender: mpsc::Sender<Result<Vec<Item>, TransportError>>,
    batch_rows: usize,
) {
    let mut body = response.bytes_stream();
    let mut line: Vec<u8> = Vec::new();
    let mut batch: Vec<Item> = Vec::with_capacity(batch_rows);
    let mut rows: u64 = 0;
    let outcome: Result<(), TransportError> = 'read: loop {
        let chunk = tokio::select! {
            () = sender.closed() => return,
            chunk = body.next() => chunk,
        };
        let bytes = match chunk {
            Some(Ok(bytes)) => bytes,
            Some(Err(error)) => {
                break 'read Err(super::network("the snapshot was cut off", &error));
            }
            None => {
                break 'read Err(TransportError::Network(NetworkError::new(
                    NetworkKind::Reset,
                    format!("the snapshot ended after {rows} rows without its end line"),
                )));
            }
        };
        let mut rest: &[u8] = &bytes;
        while let Some(at) = rest.iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&rest[..at]);
            rest = &rest[at + 1..];
            let text = std::mem::take(&mut line);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match parse_line(&text) {
                Ok(Line::Row(item)) => {
                    rows += 1;
                    batch.push(item);
                    if batch.len() >= batch_rows {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_rows));
                        if sender.send(Ok(full)).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(Line::End(count)) => {
                    break 'read match count {
                        Some(count) if count != rows => Err(TransportError::Protocol(format!(
                            "snapshot: the server counted {count} rows, {rows} arrived"
                        ))),
                        _ => Ok(()),
                    };
                }
                Err(error) => break 'read Err(error),
            }
        }
        line.extend_from_slice(rest);
        if line.len() > MAX_LINE {
            break 'read Err(TransportError::Protocol(format!(
                "snapshot: a line longer than {MAX_LINE} bytes"
            )));
        }
    };
    // Rows before a failure are still sent: they are in order, so the engine applies
    // them and its cursor stays exact.
    if !batch.is_empty() && sender.send(Ok(batch)).await.is_err() {
        return;
    }
    match outcome {
        Ok(()) => tracing::debug!(rows, "snapshot read"),
        Err(error) => {
            tracing::info!(%error, rows, "snapshot failed");
            let _ = sender.send(Err(error)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn lines_are_rows_an_end_or_an_error() {
        assert!(matches!(
            parse_line(br#"{"id":"a","end":true}"#).unwrap(),
            Line::Row(_)
        ));
        assert!(matches!(
            parse_line(br#"{"end":true,"rows":3}"#).unwrap(),
            Line::End(Some(3))
        ));
        assert!(matches!(
            parse_line(br#"{"error":"disk full"}"#),
            Err(TransportError::Network(m)) if m.message.contains("disk full")
        ));
        assert!(matches!(
            parse_line(b"[1]"),
            Err(TransportError::Protocol(_))
        ));
        assert!(matches!(
            parse_line(b"{nope"),
            Err(TransportError::Protocol(_))
        ));
    }
}
