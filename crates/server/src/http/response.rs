//! Response builders shared by the handlers and the error mapping.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use tidesync_protocol::Item;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::store::Row;

/// A single item with the headers that travel with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemResponse {
    /// The wire item.
    pub item: Item,
    /// The quoted ETag.
    pub etag: String,
    /// `updatedAt`, for `Last-Modified`.
    pub updated_at: OffsetDateTime,
}

impl ItemResponse {
    /// The response form of a stored row.
    pub fn from_row(row: &Row, soft_delete: bool) -> ItemResponse {
        ItemResponse {
            item: row.to_item(soft_delete),
            etag: row.etag(),
            updated_at: row.updated_at(),
        }
    }
}

/// `application/json; charset=utf-8`.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// A JSON response.
pub fn json(status: StatusCode, body: &impl Serialize) -> Response {
    json_bytes(
        status,
        serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec()),
    )
}

/// A JSON response of an encoded body.
pub fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    response
}

/// `{"error":"…"}` with `status`.
pub fn error_body(status: StatusCode, message: &str) -> Response {
    json(status, &serde_json::json!({ "error": message }))
}

/// `{"error":"…","limit":"…"}` with `status`: a refusal by a configured limit, naming its
/// setting (e.g. `limits.query_timeout_ms`).
pub fn limit_body(status: StatusCode, message: &str, limit: &str) -> Response {
    json(
        status,
        &serde_json::json!({ "error": message, "limit": limit }),
    )
}

/// An item body with its `ETag` (and, in v3, `Last-Modified`).
pub fn item(status: StatusCode, item: &ItemResponse, v3: bool) -> Response {
    let mut response = json(status, &item.item);
    add_item_headers(&mut response, item, v3);
    response
}

/// Adds `ETag` and, in v3, `Last-Modified` to `response`.
pub fn add_item_headers(response: &mut Response, item: &ItemResponse, v3: bool) {
    if let Ok(etag) = HeaderValue::from_str(&item.etag) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    if v3 {
        if let Some(value) = http_date(item.updated_at) {
            response.headers_mut().insert(header::LAST_MODIFIED, value);
        }
    }
}

/// An RFC 1123 date (`Fri, 27 Nov 2026 08:30:20 GMT`).
pub fn http_date(t: OffsetDateTime) -> Option<HeaderValue> {
    let text = t.to_offset(time::UtcOffset::UTC).format(&Rfc2822).ok()?;
    // RFC 2822 ends with "+0000"; HTTP dates say "GMT".
    let text = text
        .strip_suffix("+0000")
        .map_or(text.clone(), |s| format!("{s}GMT"));
    HeaderValue::from_str(&text).ok()
}

/// Reads an HTTP date header.
pub fn parse_http_date(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    let normalised = text
        .strip_suffix("GMT")
        .map_or_else(|| text.to_owned(), |s| format!("{s}+0000"));
    OffsetDateTime::parse(&normalised, &Rfc2822).ok()
}

/// The request id header.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
