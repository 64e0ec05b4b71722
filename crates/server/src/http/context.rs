//! What every table request works out first: the table, the protocol version, the query
//! pairs, the user; and the shared request-reading helpers (body, ETags, flags).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use percent_encoding::percent_decode_str;
use serde_json::Value;
pub(crate) use tidesync_protocol::system::take_any_case;
use tidesync_protocol::wire::{ApiVersion, ZUMO_API_VERSION};
use tidesync_protocol::{ETag, Item, parse_etag, system};
use time::OffsetDateTime;

use super::Shared;
use crate::config::TableConfig;
use crate::error::ServerError;
use crate::policy::{Caller, Grant, Guard, Operation};
use crate::store::Row;

/// The resolved facts of a table request.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) state: Shared,
    pub(crate) table: TableConfig,
    /// The table's rules.
    pub(crate) guard: Arc<Guard>,
    /// The rows it may see or touch.
    pub(crate) grant: Grant,
    pub(crate) version: ApiVersion,
    /// Who is asking (authenticated).
    pub(crate) caller: Caller,
    pub(crate) pairs: Vec<(String, String)>,
}

impl Ctx {
    /// Resolves version, credentials (API key and user), then the table (see
    /// `AppState::resolve`: a stranger cannot tell a table that exists from one that does
    /// not), and asks the table policy whether the caller may do `operation` at all.
    pub(crate) async fn new(
        state: &Shared,
        table: &str,
        headers: &HeaderMap,
        uri: &Uri,
        operation: Operation,
    ) -> Result<Ctx, ServerError> {
        let pairs = query_pairs(uri)?;
        let version = api_version(state, headers, &pairs).ok_or(ServerError::InvalidApiVersion)?;
        let caller = state.caller(headers).await?;
        let (table, guard) = state.resolve(table, &caller, operation)?;
        let table = table.clone();
        let grant = guard.grant(&caller, operation)?;
        Ok(Ctx {
            state: Arc::clone(state),
            table,
            guard,
            grant,
            version,
            caller,
            pairs,
        })
    }

    pub(crate) fn v3(&self) -> bool {
        self.version == ApiVersion::V3
    }

    /// Whether the include-deleted flag is on (`__includedeleted`, any case, `true` or `1`).
    pub(crate) fn include_deleted(&self) -> bool {
        include_deleted(&self.pairs)
    }
}

/// Whether the query pairs ask for tombstones too (`__includeDeleted=true`, any case, or 1).
pub(crate) fn include_deleted(pairs: &[(String, String)]) -> bool {
    pairs.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("__includedeleted")
            && (value.eq_ignore_ascii_case("true") || value == "1")
    })
}

/// The version a request speaks, for shaping its errors even before the rest is checked.
pub(crate) fn detect_version(state: &Shared, headers: &HeaderMap, uri: &Uri) -> Option<ApiVersion> {
    let pairs = query_pairs(uri).unwrap_or_default();
    api_version(state, headers, &pairs)
}

fn api_version(
    state: &Shared,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Option<ApiVersion> {
    let from_header = headers.get(ZUMO_API_VERSION).and_then(|v| v.to_str().ok());
    let from_query = pairs
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(ZUMO_API_VERSION))
        .map(|(_, value)| value.as_str());
    match from_header.or(from_query) {
        Some(text) => ApiVersion::parse(text),
        None if state.lenient_version => Some(ApiVersion::V3),
        None => None,
    }
}

/// The percent-decoded query pairs (`+` is a space, as browsers and Express read it).
pub(crate) fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, ServerError> {
    let Some(query) = uri.query() else {
        return Ok(Vec::new());
    };
    let decode = |text: &str| {
        percent_decode_str(&text.replace('+', " "))
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| ServerError::bad_request("the query string is not valid UTF-8"))
    };
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// Reads a JSON object body, checking size and content type.
pub(crate) fn json_body(
    ctx: &Ctx,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Item, ServerError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServerError::PayloadTooLarge { limit }
        } else {
            ServerError::bad_request(format!("cannot read the request body: {rejection}"))
        }
    })?;
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let text = content_type
            .to_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let essence = text.split(';').next().unwrap_or_default().trim();
        let is_json = essence == "application/json" || essence.ends_with("+json");
        if !is_json {
            return Err(if ctx.v3() {
                ServerError::UnsupportedMediaType
            } else {
                ServerError::bad_request(format!(
                    "the request body must be application/json, not '{essence}'"
                ))
            });
        }
    }
    if bytes.is_empty() {
        return Err(ServerError::bad_request(
            "the request body is empty; expected a JSON object",
        ));
    }
    match super::json::parse(&bytes, ctx.state.limits.max_json_values)? {
        Value::Object(item) => Ok(item),
        _ => Err(ServerError::bad_request(
            "the request body must be a JSON object",
        )),
    }
}

/// v2: a body naming `createdAt`, `updatedAt` or `deleted` (any case) is refused.
pub(crate) fn check_reserved(item: &Item) -> Result<(), ServerError> {
    for name in item.keys() {
        let reserved = [system::CREATED_AT, system::UPDATED_AT, system::DELETED]
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name));
        if reserved {
            return Err(ServerError::bad_request(format!(
                "Cannot update item with property '{name}' as it is reserved"
            )));
        }
    }
    Ok(())
}

/// Removes every system property and `id` (any case); returns the `id` value, if any.
pub(crate) fn strip_system(item: &mut Item) -> Option<Value> {
    for name in [
        system::CREATED_AT,
        system::UPDATED_AT,
        system::VERSION,
        system::DELETED,
    ] {
        take_any_case(item, name);
    }
    take_any_case(item, system::ID)
}

/// Whether a body's `id` names the item of the URL: the same string, or a number whose text
/// is that id (the official clients may send a numeric id; the official server takes it).
pub(crate) fn same_id(body_id: &Value, url_id: &str) -> bool {
    match body_id {
        Value::String(id) => id == url_id,
        Value::Number(number) => number.to_string() == url_id,
        _ => false,
    }
}

/// A parsed conditional header.
pub(crate) fn etag_header(headers: &HeaderMap, name: header::HeaderName) -> Option<ETag> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(parse_etag)
}

/// Whether `tag` names the row's current version.
pub(crate) fn etag_matches(tag: &ETag, row: &Row) -> bool {
    match tag {
        ETag::Any => true,
        ETag::Weak(_) => false,
        ETag::Strong(version) => *version == row.version_text(),
    }
}

/// A parsed HTTP date header.
pub(crate) fn date_header(headers: &HeaderMap, name: header::HeaderName) -> Option<OffsetDateTime> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(super::response::parse_http_date)
}

/// The absolute URL of this request's path: `http://host/path`.
pub(crate) fn absolute_path(headers: &HeaderMap, uri: &Uri) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    format!("http://{host}{}", uri.path())
}

/// Finishes a handler: errors become responses shaped for `version`.
pub(crate) fn finish(
    version: Option<ApiVersion>,
    result: Result<Response, ServerError>,
) -> Response {
    result.unwrap_or_else(|error| error.into_response_for(version))
}
