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
//!
//! The request's `Accept` header prefers the columnar framing
//! ([`tidesync_protocol::columns`]); the body is decoded by its `Content-Type`, so a server
//! that only knows NDJSON is read as before. Columnar frames are decoded as they arrive into
//! the same rows, with the same checks (an error frame, a wrong count, a missing end frame).
//!
//! Each request asks for at most `snapshot_segment_rows` rows (`$top`, see the builder);
//! after a full segment the task asks again with the keyset condition of the segment's
//! last row added to the filter. Only the first request's failure is returned by
//! `open_snapshot`; a later one arrives on the channel like a cut-off body.

use futures_util::StreamExt as _;
use serde_json::Value;
use tidesync_core::{Item, NetworkError, NetworkKind, Snapshot, SnapshotRequest, TransportError};
use tidesync_protocol::columns::{self, Decoder, Frame};
use tidesync_protocol::odata::{Dialect, Expr, Query, after_keyset, and_maybe};
use tidesync_protocol::system::{ID, UPDATED_AT};
use tidesync_protocol::time_fmt::parse_timestamp;
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::HttpTransport;

/// The extension's name in the capabilities document.
pub(crate) const EXTENSION: &str = "snapshot";

/// Batches read ahead of the engine.
const READ_AHEAD: usize = 2;

/// What the request accepts: the columnar framing first, NDJSON from servers without it.
const ACCEPT: &str = "application/vnd.tidesync.columns, application/x-ndjson;q=0.5";

/// A line longer than this is refused (a row is far smaller; this bounds memory).
const MAX_LINE: usize = 16 * 1024 * 1024;

/// Where a response's rows stopped: the last row's `updatedAt` and `id`.
type Position = (String, String);

/// How one response ended.
enum Ended {
    /// Its end line or frame arrived after `rows` rows.
    Complete { rows: u64, last: Option<Position> },
    /// The engine dropped the receiver.
    Dropped,
    /// It failed (after the rows before were sent on).
    Failed(TransportError),
}

fn position(item: Option<&Item>) -> Option<Position> {
    let item = item?;
    let at = item.get(UPDATED_AT)?.as_str()?;
    let id = item.get(ID)?.as_str()?;
    Some((at.to_owned(), id.to_owned()))
}

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
        let span = tracing::info_span!("snapshot", table = %request.table);
        let response = self
            .request_segment(request, request.filter.clone())
            .instrument(span.clone())
            .await?;
        let (sender, receiver) = mpsc::channel(READ_AHEAD);
        let transport = self.clone();
        let request = request.clone();
        tokio::spawn(
            async move {
                let batch_rows = request.batch_rows.max(1);
                let mut response = response;
                loop {
                    let ended = if is_columnar(&response) {
                        pump_columns(response, &sender, batch_rows).await
                    } else {
                        pump(response, &sender, batch_rows).await
                    };
                    let last = match ended {
                        Ended::Dropped => return,
                        Ended::Failed(error) => {
                            tracing::info!(%error, "snapshot failed");
                            let _ = sender.send(Err(error)).await;
                            return;
                        }
                        // A full segment: more may follow. (A server that ignores `$top`
                        // sends more than a segment, and then it sent everything.)
                        Ended::Complete {
                            rows,
                            last: Some(last),
                        } if rows == transport.inner.settings.snapshot_segment_rows => last,
                        Ended::Complete { rows, .. } => {
                            tracing::debug!(rows, "snapshot read");
                            return;
                        }
                    };
                    let after = match parse_timestamp(&last.0) {
                        Ok(at) => after_keyset(at, &last.1),
                        Err(e) => {
                            let error = TransportError::Protocol(format!(
                                "snapshot: a row's updatedAt does not parse: {e}"
                            ));
                            let _ = sender.send(Err(error)).await;
                            return;
                        }
                    };
                    let filter = Some(and_maybe(request.filter.clone(), after));
                    response = tokio::select! {
                        () = sender.closed() => return,
                        next = transport.request_segment(&request, filter) => match next {
                            Ok(response) => response,
                            Err(error) => {
                                let _ = sender.send(Err(error)).await;
                                return;
                            }
                        },
                    };
                }
            }
            .instrument(span),
        );
        Ok(receiver)
    }

    /// Sends the request for one segment (at most the segment's rows matching `filter`).
    async fn request_segment(
        &self,
        request: &SnapshotRequest,
        filter: Option<Expr>,
    ) -> Result<reqwest::Response, TransportError> {
        let mut url = self.url_for(&self.extension_path("tables"), &[&request.table, EXTENSION]);
        let filter = Query {
            filter,
            ..Query::default()
        }
        .to_query_string(Dialect::V3);
        let top = self.inner.settings.snapshot_segment_rows;
        let mut query = format!("__includedeleted=true&$top={top}");
        if !filter.is_empty() {
            query = format!("{filter}&{query}");
        }
        url.set_query(Some(&query));
        self.open_stream(url, ACCEPT, "opening the snapshot failed")
            .await
    }
}

/// True when the body is in the columnar framing.
fn is_columnar(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(columns::CONTENT_TYPE))
        })
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

/// The sending side of a snapshot.
type Sender = mpsc::Sender<Result<Vec<Item>, TransportError>>;

/// Reads an NDJSON body into batches until the end line, an error or a dropped receiver.
async fn pump(response: reqwest::Response, sender: &Sender, batch_rows: usize) -> Ended {
    let mut body = response.bytes_stream();
    let mut line: Vec<u8> = Vec::new();
    let mut batch: Vec<Item> = Vec::with_capacity(batch_rows);
    let mut rows: u64 = 0;
    let mut last: Option<Position> = None;
    let outcome: Result<(), TransportError> = 'read: loop {
        let chunk = tokio::select! {
            () = sender.closed() => return Ended::Dropped,
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
                        last = position(full.last());
                        if sender.send(Ok(full)).await.is_err() {
                            return Ended::Dropped;
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
    finish(sender, batch, last, rows, outcome).await
}

/// Sends the last partial batch and says how the body ended.
async fn finish(
    sender: &Sender,
    batch: Vec<Item>,
    mut last: Option<Position>,
    rows: u64,
    outcome: Result<(), TransportError>,
) -> Ended {
    if !batch.is_empty() {
        last = position(batch.last());
        if sender.send(Ok(batch)).await.is_err() {
            return Ended::Dropped;
        }
    }
    match outcome {
        Ok(()) => Ended::Complete { rows, last },
        Err(error) => Ended::Failed(error),
    }
}

/// As [`pump`], for a columnar body.
async fn pump_columns(response: reqwest::Response, sender: &Sender, batch_rows: usize) -> Ended {
    let mut body = response.bytes_stream();
    let mut decoder = Decoder::new();
    let mut batch: Vec<Item> = Vec::with_capacity(batch_rows);
    let mut rows: u64 = 0;
    let mut last: Option<Position> = None;
    let bad = |e: columns::ColumnsError| TransportError::Protocol(format!("snapshot: {e}"));
    let outcome: Result<(), TransportError> = 'read: loop {
        let chunk = tokio::select! {
            () = sender.closed() => return Ended::Dropped,
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
                    format!("the snapshot ended after {rows} rows without its end frame"),
                )));
            }
        };
        decoder.push(&bytes);
        loop {
            match decoder.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Rows(items))) => {
                    rows += items.len() as u64;
                    if batch.is_empty() && items.len() == batch_rows {
                        last = position(items.last());
                        if sender.send(Ok(items)).await.is_err() {
                            return Ended::Dropped;
                        }
                        continue;
                    }
                    for item in items {
                        batch.push(item);
                        if batch.len() >= batch_rows {
                            let full =
                                std::mem::replace(&mut batch, Vec::with_capacity(batch_rows));
                            last = position(full.last());
                            if sender.send(Ok(full)).await.is_err() {
                                return Ended::Dropped;
                            }
                        }
                    }
                }
                Ok(Some(Frame::End(count))) => {
                    break 'read if count == rows {
                        Ok(())
                    } else {
                        Err(TransportError::Protocol(format!(
                            "snapshot: the server counted {count} rows, {rows} arrived"
                        )))
                    };
                }
                Ok(Some(Frame::Error(message))) => {
                    break 'read Err(TransportError::Network(
                        format!("the server failed part-way through the snapshot: {message}")
                            .into(),
                    ));
                }
                Err(error) => break 'read Err(bad(error)),
            }
        }
    };
    // As in `pump`: the rows before a failure are in order, so they are still sent.
    finish(sender, batch, last, rows, outcome).await
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
