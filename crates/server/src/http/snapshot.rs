//! `GET /tidesync/v1/tables/{table}/snapshot`: every live row of a table in one streamed
//! response, for bootstrapping an empty client faster than paging through `/tables`.
//!
//! Authenticated exactly like a v3 table read (API key when configured, a token for tables
//! that are not anonymous, only the caller's rows on owner tables), without the
//! `ZUMO-API-VERSION` rule. Errors before the stream starts are answered like v3: an unknown
//! table is a 404, missing or bad credentials a 401, a bad `$filter` (syntax, unknown column,
//! type mismatch) a 400.
//!
//! The query options are `$filter` (v3 dialect), `__includedeleted=true` (tombstones
//! too, as `/tables` has it: a client bootstrapping while rows are deleted needs the
//! deletes of rows it may already have received) and `$top` (at most that many rows: a
//! client reads a large table in segments, so that what a crash loses in flight is
//! bounded; a bad `$top` is a 400); others are ignored. The answer is
//! `200` with `content-type: application/x-ndjson`, one JSON object per line, each line
//! ending in `\n`:
//!
//! ```text
//! {"id":"a1","createdAt":"…","updatedAt":"…","version":"…","deleted":false,"text":"…"}
//! {"id":"a2",…}
//! {"end":true,"rows":2}
//! ```
//!
//! Rows are shaped as a v3 `GET /tables/{table}` returns them, live rows only unless
//! `__includedeleted=true`, in ascending `(updatedAt, id)` order. The last line `{"end":true,"rows":N}`
//! says how many rows were sent. When the store fails after the status was sent, the body
//! ends with `{"error":"…"}` and no end line: a body without the end line is cut off.
//!
//! A client that lists [`columns::CONTENT_TYPE`] in its `Accept` header gets the same rows in
//! the columnar framing of [`tidesync_protocol::columns`] instead (typed columns per chunk,
//! an end frame with the count, an error frame when the store fails part-way): the same
//! objects, without JSON to print or parse. A client resuming a bootstrap adds its keyset
//! cursor to `$filter` (as paging does); the filter is led by `updatedAt ge`, so the store
//! seeks its index and starts after the cursor.
//!
//! Memory is bounded: the server reads the table [`crate::config::Paging::snapshot`] rows at a
//! time with a keyset cursor on `(updatedAt, id)` and sends each page as soon as it is read.
//! The first page is read before the status is sent, so that a filter the store refuses is
//! still a 400. Rows committed during the snapshot may or may not be included; no row
//! committed before the request is missed, since every read stops below a horizon nothing
//! can commit under any more (see `store::horizon`).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::json;
use tidesync_protocol::columns::{self, RowRef};
use tidesync_protocol::odata::{Expr, OrderBy, ParseLimits, Query, after_keyset, and_maybe};
use tidesync_protocol::system::{ID, UPDATED_AT};
use tidesync_protocol::wire::ApiVersion;

use super::Shared;
use super::context::{include_deleted, query_pairs};
use crate::error::ServerError;
use crate::policy::Operation;
use crate::store::{ReadRequest, Row, ms_to_time};

/// The content type of the snapshot body.
pub const NDJSON: &str = "application/x-ndjson";

/// `GET /tidesync/v1/tables/{table}/snapshot`.
pub(crate) async fn snapshot(
    State(state): State<Shared>,
    Path(table): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    match start(state, &table, &uri, &headers).await {
        Ok(response) => response,
        Err(error) => error.into_response_for(Some(ApiVersion::V3)),
    }
}

/// Checks the request, reads the first page and starts the stream.
async fn start(
    state: Shared,
    table: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ServerError> {
    let pairs = query_pairs(uri)?;
    let caller = state.caller(headers).await?;
    let (table, guard) = state.resolve(table, &caller, Operation::Read)?;
    let table = table.clone();
    let query = Query::from_query_pairs(
        pairs
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("$filter"))
            .map(|(n, v)| (n.as_str(), v.as_str())),
        &ParseLimits::default(),
    )
    .map_err(|e| ServerError::bad_request(e.to_string()))?;
    let grant = guard.grant(&caller, Operation::Read)?;
    let include_deleted = include_deleted(&pairs);
    let top = match pairs
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("$top"))
    {
        Some((_, value)) => Some(
            value
                .parse::<u64>()
                .ok()
                .filter(|top| *top > 0)
                .ok_or_else(|| {
                    ServerError::bad_request(format!(
                        "$top must be a positive integer, not {value:?}"
                    ))
                })?,
        ),
        None => None,
    };
    let columnar = wants_columns(headers);
    let mut stream = Snapshot {
        columnar,
        include_deleted,
        page_size: state.paging.snapshot(),
        top,
        state,
        table: table.name,
        soft_delete: table.soft_delete,
        filter: grant.restrict(query.filter),
        after: None,
        sent: 0,
        first: None,
        done: false,
    };
    tracing::debug!(table = %stream.table, "snapshot started");
    stream.first = Some(stream.read_page().await?);
    let body = futures_util::stream::unfold(stream, |mut stream| async move {
        let chunk = stream.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), stream))
    });
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if columnar {
            columns::CONTENT_TYPE
        } else {
            NDJSON
        }),
    );
    headers.insert(header::VARY, HeaderValue::from_static("accept"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// True when the `Accept` header names the columnar framing.
fn wants_columns(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut params = part.split(';');
            let name = params.next().unwrap_or_default().trim();
            // `q=0` refuses the type.
            name.eq_ignore_ascii_case(columns::CONTENT_TYPE)
                && !params.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                })
        })
}

/// A columnar frame is split until it is at most this large.
const FRAME_TARGET: usize = columns::MAX_FRAME / 8;

/// Appends `rows` as columnar chunks of at most [`FRAME_TARGET`] bytes each (one row may be
/// more; the decoder takes up to [`columns::MAX_FRAME`]).
fn encode_rows(rows: &[RowRef<'_>], out: &mut Vec<u8>) -> Result<(), columns::ColumnsError> {
    let start = out.len();
    columns::encode_chunk(rows, out)?;
    if out.len() - start > FRAME_TARGET && rows.len() > 1 {
        out.truncate(start);
        let (left, right) = rows.split_at(rows.len() / 2);
        encode_rows(left, out)?;
        encode_rows(right, out)?;
    }
    Ok(())
}

/// The state of one snapshot stream.
struct Snapshot {
    /// The body is in the columnar framing, not NDJSON.
    columnar: bool,
    state: Shared,
    table: String,
    soft_delete: bool,
    page_size: u64,
    /// At most this many rows (`$top`).
    top: Option<u64>,
    /// The client's `$filter`, restricted to the rows the caller may see (their grant).
    filter: Option<Expr>,
    /// Tombstones too.
    include_deleted: bool,
    /// The `(updatedAt ms, id)` of the last row sent.
    after: Option<(i64, String)>,
    /// Rows sent so far.
    sent: u64,
    /// The first page, read before the response started.
    first: Option<Vec<Row>>,
    /// Whether the last line (end or error) went out.
    done: bool,
}

impl Snapshot {
    /// Rows the next page asks for: a page, or what `$top` leaves.
    fn limit(&self) -> u64 {
        self.top.map_or(self.page_size, |top| {
            top.saturating_sub(self.sent).min(self.page_size)
        })
    }

    /// Reads the page after the cursor.
    async fn read_page(&self) -> Result<Vec<Row>, ServerError> {
        let filter = match &self.after {
            Some((ms, id)) => Some(and_maybe(self.filter.clone(), after_cursor(*ms, id))),
            None => self.filter.clone(),
        };
        let request = ReadRequest {
            filter,
            order_by: vec![ascending(UPDATED_AT), ascending(ID)],
            skip: 0,
            limit: self.limit(),
            include_deleted: self.include_deleted,
            scope: None,
            count: false,
        };
        Ok(self.state.store.read(&self.table, &request).await?.rows)
    }

    /// The next piece of the body: a page of rows (with the end line after a short page),
    /// the end line, or the error line; `None` once the last line went out.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let page = match self.first.take() {
            Some(page) => Ok(page),
            None => self.read_page().await,
        };
        let rows = match page {
            Ok(rows) => rows,
            Err(error) => return Some(self.fail(&error)),
        };
        let asked = self.limit();
        let short = u64::try_from(rows.len()).unwrap_or(u64::MAX) < asked
            || self
                .top
                .is_some_and(|top| self.sent + rows.len() as u64 >= top);
        self.state.metrics.add_rows(rows.len());
        let mut out = Vec::new();
        if self.columnar {
            if let Some(last) = rows.last() {
                self.after = Some((last.updated_at_ms, last.id.clone()));
            }
            let refs: Vec<RowRef<'_>> = rows
                .iter()
                .map(|row| RowRef {
                    id: &row.id,
                    created_at_ms: row.created_at_ms,
                    updated_at_ms: row.updated_at_ms,
                    version: row.version,
                    deleted: self.soft_delete.then_some(row.deleted),
                    values: &row.values,
                })
                .collect();
            if let Err(error) = encode_rows(&refs, &mut out) {
                return Some(self.fail(&ServerError::Internal(error.to_string())));
            }
            self.sent += rows.len() as u64;
        } else {
            for row in rows {
                self.after = Some((row.updated_at_ms, row.id.clone()));
                if let Err(error) =
                    serde_json::to_writer(&mut out, &row.into_item(self.soft_delete))
                {
                    return Some(self.fail(&ServerError::Internal(error.to_string())));
                }
                out.push(b'\n');
                self.sent += 1;
            }
        }
        if short {
            self.done = true;
            if self.columnar {
                columns::encode_end(self.sent, &mut out);
            } else {
                out.extend_from_slice(
                    json!({"end": true, "rows": self.sent})
                        .to_string()
                        .as_bytes(),
                );
                out.push(b'\n');
            }
            tracing::info!(table = %self.table, rows = self.sent, "snapshot sent");
        }
        Some(Bytes::from(out))
    }

    /// The error line that ends a cut-off body.
    fn fail(&mut self, error: &ServerError) -> Bytes {
        self.done = true;
        tracing::warn!(table = %self.table, rows = self.sent, %error, "snapshot cut off");
        if self.columnar {
            let mut frame = Vec::new();
            columns::encode_error(&error.to_string(), &mut frame);
            return Bytes::from(frame);
        }
        let mut line = json!({"error": error.to_string()}).to_string().into_bytes();
        line.push(b'\n');
        Bytes::from(line)
    }
}

fn ascending(member: &str) -> OrderBy {
    OrderBy {
        member: member.to_owned(),
        descending: false,
    }
}

/// The rows after `(T, X)` ([`after_keyset`]: led by `updatedAt ge T`, so that the store can
/// seek its `(updatedAt, id)` index).
fn after_cursor(ms: i64, id: &str) -> Expr {
    after_keyset(ms_to_time(ms), id)
}
