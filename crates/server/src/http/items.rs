//! Single-item handlers: create, read, update (v2 PATCH, v3 PUT), delete and undelete
//! (spec 4–6). Each write handler reads its request into a [`WriteOp`] and hands it to the
//! one decide-and-write path (`write.rs`); what is left here is the protocol's request and
//! answer shapes.

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use tidesync_protocol::{new_server_id, system, validate_id};

use super::Shared;
use super::context::{
    Ctx, check_reserved, date_header, detect_version, etag_header, etag_matches, finish, json_body,
    same_id, strip_system, take_any_case,
};
use super::response::{self, ItemResponse};
use super::write::{self, Conditions, Tombstones, Verb, WriteOp, written_row};
use crate::error::ServerError;
use crate::policy::Operation;

/// Characters escaped in an id placed in a URL path.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `POST /tables/{table}`.
pub(crate) async fn insert(
    State(state): State<Shared>,
    Path(table): Path<String>,
    uri: Uri,
    OriginalUri(original): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let version = detect_version(&state, &headers, &uri);
    let result = async {
        let ctx = Ctx::new(&state, &table, &headers, &uri, Operation::Insert).await?;
        let mut item = json_body(&ctx, &headers, body, state.body_limit)?;
        if !ctx.v3() {
            check_reserved(&item)?;
        }
        let id = match strip_system(&mut item) {
            // The official server gives every falsy id (`item.id || uuid`) a new
            // one: null, "", 0 and false.
            None | Some(Value::Null | Value::Bool(false)) => new_server_id(),
            Some(Value::String(id)) if id.is_empty() => new_server_id(),
            Some(Value::Number(n)) if n.as_f64() == Some(0.0) => new_server_id(),
            Some(Value::String(id)) => {
                check_url_id(&id)?;
                id
            }
            Some(_) => return Err(ServerError::bad_request("the id must be a string")),
        };
        let mut op = WriteOp::new(Verb::Insert, id, Tombstones::NotFound);
        op.item = item;
        let written = write::apply(&ctx, op).await?;
        let row = written_row(&written);
        let mut response = response::item(
            StatusCode::CREATED,
            &ItemResponse::from_row(row, ctx.table.soft_delete),
            ctx.v3(),
        );
        if ctx.v3() {
            let location = format!(
                "{}/{}",
                // The path the client sent, also when the router is nested in a host app.
                super::context::absolute_path(&headers, &original).trim_end_matches('/'),
                utf8_percent_encode(&row.id, PATH_SEGMENT)
            );
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
        }
        Ok(response)
    }
    .await;
    finish(version, result)
}

/// `GET /tables/{table}/{id}`.
pub(crate) async fn read(
    State(state): State<Shared>,
    Path((table, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let version = detect_version(&state, &headers, &uri);
    let result = async {
        let ctx = Ctx::new(&state, &table, &headers, &uri, Operation::Read).await?;
        check_url_id(&id)?;
        let row = state
            .store
            .get(&ctx.table.name, &id)
            .await?
            .filter(|row| ctx.grant.admits(row))
            .ok_or(ServerError::NotFound)?;
        let item = ItemResponse::from_row(&row, ctx.table.soft_delete);
        ctx.guard
            .authorize_item(&ctx.caller, Operation::Read, &item.item)?;
        if row.deleted {
            if !ctx.v3() {
                return Err(ServerError::NotFound);
            }
            if !ctx.include_deleted() {
                return Err(ServerError::Gone);
            }
        }
        if ctx.v3() {
            let not_modified = match etag_header(&headers, header::IF_NONE_MATCH) {
                Some(tag) => etag_matches(&tag, &row),
                None => date_header(&headers, header::IF_MODIFIED_SINCE)
                    .is_some_and(|since| row.updated_at_ms / 1000 <= since.unix_timestamp()),
            };
            if not_modified {
                let mut response = Response::new(Body::empty());
                *response.status_mut() = StatusCode::NOT_MODIFIED;
                response::add_item_headers(&mut response, &item, true);
                return Ok(response);
            }
        }
        Ok(response::item(StatusCode::OK, &item, ctx.v3()))
    }
    .await;
    finish(version, result)
}

/// `PATCH /tables/{table}/{id}` (v2: merge the sent properties into the row).
pub(crate) async fn patch(
    State(state): State<Shared>,
    Path((table, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let version = detect_version(&state, &headers, &uri);
    let result = async {
        let ctx = Ctx::new(&state, &table, &headers, &uri, Operation::Update).await?;
        if ctx.v3() {
            return Err(ServerError::MethodNotAllowed);
        }
        check_url_id(&id)?;
        let mut changes = json_body(&ctx, &headers, body, state.body_limit)?;
        check_reserved(&changes)?;
        if let Some(body_id) = take_any_case(&mut changes, system::ID) {
            if !same_id(&body_id, &id) {
                return Err(ServerError::bad_request(
                    "The item ID and querystring ID did not match",
                ));
            }
        }
        let mut op = WriteOp::new(Verb::Merge, id, Tombstones::NotFound);
        op.conditions = Conditions::if_match(&headers);
        op.conditions.body_version = take_any_case(&mut changes, system::VERSION)
            .and_then(|v| v.as_str().map(str::to_owned));
        op.item = changes;
        let written = write::apply(&ctx, op).await?;
        Ok(response::item(
            StatusCode::OK,
            &ItemResponse::from_row(written_row(&written), ctx.table.soft_delete),
            false,
        ))
    }
    .await;
    finish(version, result)
}

/// `PUT /tables/{table}/{id}` (v3: replace the whole item).
pub(crate) async fn put(
    State(state): State<Shared>,
    Path((table, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let version = detect_version(&state, &headers, &uri);
    let result = async {
        let ctx = Ctx::new(&state, &table, &headers, &uri, Operation::Update).await?;
        if !ctx.v3() {
            // v2 has no PUT; the reference answers 404.
            return Err(ServerError::NotFound);
        }
        check_url_id(&id)?;
        let mut item = json_body(&ctx, &headers, body, state.body_limit)?;
        let deleted = item
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(system::DELETED))
            .and_then(|(_, v)| v.as_bool())
            .unwrap_or(false);
        match strip_system(&mut item) {
            Some(body_id) if same_id(&body_id, &id) => {}
            _ => {
                return Err(ServerError::bad_request(
                    "the body must contain the id of the URL",
                ));
            }
        }
        let tombstones = if ctx.include_deleted() {
            Tombstones::Writable
        } else {
            Tombstones::Gone
        };
        let mut op = WriteOp::new(Verb::Replace, id, tombstones);
        op.item = item;
        op.deleted = deleted;
        op.conditions = Conditions::from_headers(&headers);
        let written = write::apply(&ctx, op).await?;
        Ok(response::item(
            StatusCode::OK,
            &ItemResponse::from_row(written_row(&written), ctx.table.soft_delete),
            true,
        ))
    }
    .await;
    finish(version, result)
}

/// `DELETE /tables/{table}/{id}`: a tombstone with soft delete, else removal.
pub(crate) async fn delete(
    State(state): State<Shared>,
    Path((table, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let version = detect_version(&state, &headers, &uri);
    let result = async {
        let ctx = Ctx::new(&state, &table, &headers, &uri, Operation::Delete).await?;
        check_url_id(&id)?;
        let op = if ctx.v3() {
            let mut op = WriteOp::new(Verb::Delete, id, Tombstones::Gone);
            op.conditions = Conditions::from_headers(&headers);
            op
        } else {
            // v2 honours only If-Match.
            let mut op = WriteOp::new(Verb::Delete, id, Tombstones::NotFound);
            op.conditions = Conditions::if_match(&headers);
            op
        };
        let written = write::apply(&ctx, op).await?;
        if ctx.v3() {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            return Ok(response);
        }
        Ok(response::item(
            StatusCode::OK,
            &ItemResponse::from_row(written_row(&written), ctx.table.soft_delete),
            false,
        ))
    }
    .await;
    finish(version, result)
}

/// `POST /tables/{table}/{id}`: v2 undelete.
pub(crate) async fn undelete(
    State(state): State<Shared>,
    Path((table, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let version = detect_version(&state, &headers, &uri);
    let result = async {
        let ctx = Ctx::new(&state, &table, &headers, &uri, Operation::Update).await?;
        if ctx.v3() {
            return Err(ServerError::MethodNotAllowed);
        }
        check_url_id(&id)?;
        if !ctx.table.soft_delete {
            return Err(ServerError::NotFound);
        }
        let mut op = WriteOp::new(Verb::Undelete, id, Tombstones::Writable);
        op.conditions = Conditions::if_match(&headers);
        let written = write::apply(&ctx, op).await?;
        Ok(response::item(
            StatusCode::CREATED,
            &ItemResponse::from_row(written_row(&written), true),
            false,
        ))
    }
    .await;
    finish(version, result)
}

fn check_url_id(id: &str) -> Result<(), ServerError> {
    validate_id(id).map_err(|e| ServerError::bad_request(format!("invalid id: {e}")))
}
