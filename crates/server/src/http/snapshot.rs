//! `GET /tidesync/v1/tables/{table}/snapshot`: every live row of a table in one streamed
//! response, for bootstrapping an empty client faster than paging through `/tables`.
//!
//! Authenticated exactly like a v3 table read (API key when configured, a token for tables
//! that are not anonymous, only the caller's rows on owner tables), without the
//! `ZUMO-API-VERSION` rule. Errors before the stream starts are answered like v3: an unknown
//! table is a 404, missing or bad credentials a 401, a bad `$filter` (syntax, unknown column,
//! type mismatch) a 400.
//!
//! The query options are `$filter` (v3 dialect) and `__includedeleted=true` (tombstones
//! too, as `/tables` has it: a client bootstrapping while rows are deleted needs the
//! deletes of rows it may already have received); others are ignored. The answer is
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
    let mut stream = Snapshot {
        include_deleted,
        page_size: state.paging.snapshot(),
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
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The state of one snapshot stream.
struct Snapshot {
    state: Shared,
    table: String,
    soft_delete: bool,
    page_size: u64,
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
            limit: self.page_size,
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
        let short = u64::try_from(rows.len()).unwrap_or(u64::MAX) < self.page_size;
        self.state.metrics.add_rows(rows.len());
        let mut out = Vec::new();
        for row in rows {
            self.after = Some((row.updated_at_ms, row.id.clone()));
            if let Err(error) = serde_json::to_writer(&mut out, &row.into_item(self.soft_delete)) {
                return Some(self.fail(&ServerError::Internal(error.to_string())));
            }
            out.push(b'\n');
            self.sent += 1;
        }
        if short {
            self.done = true;
            out.extend_from_slice(
                json!({"end": true, "rows": self.sent})
                    .to_string()
                    .as_bytes(),
            );
            out.push(b'\n');
            tracing::info!(table = %self.table, rows = self.sent, "snapshot sent");
        }
        Some(Bytes::from(out))
    }

    /// The error line that ends a cut-off body.
    fn fail(&mut self, error: &ServerError) -> Bytes {
        self.done = true;
        tracing::warn!(table = %self.table, rows = self.sent, %error, "snapshot cut off");
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
