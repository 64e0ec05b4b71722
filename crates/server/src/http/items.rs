//! Single-item handlers: create, read, update (v2 PATCH, v3 PUT), delete and undelete
//! (spec 4–6). The protocol decision of each write runs inside the store's transaction.

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use tidesync_protocol::wire::ApiVersion;
use tidesync_protocol::{new_server_id, system, validate_id};

use super::Shared;
use super::context::{
    Ctx, apply_owner, check_reserved, date_header, detect_version, etag_header, etag_matches,
    finish, json_body, strip_system, take_any_case, visible,
};
use super::response::{self, ItemResponse};
use crate::error::ServerError;
use crate::store::{Mutation, Row, Written};

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
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let version = detect_version(&state, &headers, &uri);
    let result = async {
        let ctx = Ctx::new(&state, &table, &headers, &uri)?;
        let mut item = json_body(&ctx, &headers, body, state.body_limit)?;
        if !ctx.v3() {
            check_reserved(&item)?;
        }
        let id = match strip_system(&mut item) {
            None | Some(Value::Null) => new_server_id(),
            Some(Value::String(id)) => {
                validate_id(&id)
                    .map_err(|e| ServerError::bad_request(format!("invalid id: {e}")))?;
                id
            }
            Some(_) => return Err(ServerError::bad_request("the id must be a string")),
        };
        let owner = ctx.owner();
        apply_owner(&mut item, owner.as_deref());
        state.store.learn_columns(&ctx.table.name, &item).await?;
        let soft_delete = ctx.table.soft_delete;
        let written = state
            .store
            .write(
                &ctx.table.name,
                &id,
                Box::new(move |existing| match existing {
                    Some(row) if !visible(row, owner.as_deref()) => {
                        Err(ServerError::IdNotAvailable)
                    }
                    Some(row) => Err(ServerError::Conflict {
                        item: Box::new(ItemResponse::from_row(row, soft_delete)),
                    }),
                    None => Ok(Mutation::Put {
                        values: item,
                        deleted: false,
                    }),
                }),
            )
            .await?;
        let row = stored_row(written);
        let mut response = response::item(
            StatusCode::CREATED,
            &ItemResponse::from_row(&row, soft_delete),
            ctx.v3(),
        );
        if ctx.v3() {
            let location = format!(
                "{}/{}",
                super::context::absolute_path(&headers, &uri).trim_end_matches('/'),
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
        let ctx = Ctx::new(&state, &table, &headers, &uri)?;
        check_url_id(&id)?;
        let owner = ctx.owner();
        let row = state
            .store
            .get(&ctx.table.name, &id)
            .await?
            .filter(|row| visible(row, owner.as_deref()))
            .ok_or(ServerError::NotFound)?;
        let item = ItemResponse::from_row(&row, ctx.table.soft_delete);
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
        let ctx = Ctx::new(&state, &table, &headers, &uri)?;
        if ctx.v3() {
            return Err(ServerError::MethodNotAllowed);
        }
        check_url_id(&id)?;
        let mut changes = json_body(&ctx, &headers, body, state.body_limit)?;
        check_reserved(&changes)?;
        if let Some(body_id) = take_any_case(&mut changes, system::ID) {
            if body_id != Value::String(id.clone()) {
                return Err(ServerError::bad_request(
                    "The item ID and querystring ID did not match",
                ));
            }
        }
        let body_version = take_any_case(&mut changes, system::VERSION)
            .and_then(|v| v.as_str().map(str::to_owned));
        let if_match = etag_header(&headers, header::IF_MATCH);
        let owner = ctx.owner();
        apply_owner(&mut changes, None);
        state.store.learn_columns(&ctx.table.name, &changes).await?;
        let soft_delete = ctx.table.soft_delete;
        let written = state
            .store
            .write(
                &ctx.table.name,
                &id,
                Box::new(move |existing| {
                    let row = live_row(existing, owner.as_deref(), ApiVersion::V2, false)?;
                    let conflict = || Box::new(ItemResponse::from_row(row, soft_delete));
                    if let Some(tag) = &if_match {
                        if !etag_matches(tag, row) {
                            return Err(ServerError::PreconditionFailed { item: conflict() });
                        }
                    } else if let Some(expected) = &body_version {
                        if *expected != row.version_text() {
                            return Err(ServerError::Conflict { item: conflict() });
                        }
                    }
                    let mut values = row.values.clone();
                    values.extend(changes);
                    Ok(Mutation::Put {
                        values,
                        deleted: false,
                    })
                }),
            )
            .await?;
        let row = stored_row(written);
        Ok(response::item(
            StatusCode::OK,
            &ItemResponse::from_row(&row, soft_delete),
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
        let ctx = Ctx::new(&state, &table, &headers, &uri)?;
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
            Some(Value::String(body_id)) if body_id == id => {}
            _ => {
                return Err(ServerError::bad_request(
                    "the body must contain the id of the URL",
                ));
            }
        }
        let owner = ctx.owner();
        apply_owner(&mut item, owner.as_deref());
        state.store.learn_columns(&ctx.table.name, &item).await?;
        let soft_delete = ctx.table.soft_delete;
        let include_deleted = ctx.include_deleted();
        let preconditions = Preconditions::read(&headers);
        let written = state
            .store
            .write(
                &ctx.table.name,
                &id,
                Box::new(move |existing| {
                    let row =
                        live_row(existing, owner.as_deref(), ApiVersion::V3, include_deleted)?;
                    preconditions.check(row, soft_delete)?;
                    Ok(Mutation::Put {
                        values: item,
                        deleted: deleted && soft_delete,
                    })
                }),
            )
            .await?;
        let row = stored_row(written);
        Ok(response::item(
            StatusCode::OK,
            &ItemResponse::from_row(&row, soft_delete),
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
        let ctx = Ctx::new(&state, &table, &headers, &uri)?;
        check_url_id(&id)?;
        let owner = ctx.owner();
        let soft_delete = ctx.table.soft_delete;
        let mut preconditions = Preconditions::read(&headers);
        if !ctx.v3() {
            // v2 honours only If-Match.
            preconditions.if_none_match = None;
            preconditions.if_unmodified_since = None;
        }
        let api = ctx.version;
        let written = state
            .store
            .write(
                &ctx.table.name,
                &id,
                Box::new(move |existing| {
                    let row = live_row(existing, owner.as_deref(), api, false)?;
                    preconditions.check(row, soft_delete)?;
                    Ok(if soft_delete {
                        Mutation::Put {
                            values: row.values.clone(),
                            deleted: true,
                        }
                    } else {
                        Mutation::Remove
                    })
                }),
            )
            .await?;
        if ctx.v3() {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            return Ok(response);
        }
        let row = match written {
            Written::Stored(row) | Written::Removed(row) => row,
        };
        Ok(response::item(
            StatusCode::OK,
            &ItemResponse::from_row(&row, soft_delete),
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
        let ctx = Ctx::new(&state, &table, &headers, &uri)?;
        if ctx.v3() {
            return Err(ServerError::MethodNotAllowed);
        }
        check_url_id(&id)?;
        if !ctx.table.soft_delete {
            return Err(ServerError::NotFound);
        }
        let owner = ctx.owner();
        let if_match = etag_header(&headers, header::IF_MATCH);
        let written = state
            .store
            .write(
                &ctx.table.name,
                &id,
                Box::new(move |existing| {
                    let row = existing
                        .filter(|row| visible(row, owner.as_deref()))
                        .ok_or(ServerError::NotFound)?;
                    if let Some(tag) = &if_match {
                        if !etag_matches(tag, row) {
                            return Err(ServerError::PreconditionFailed {
                                item: Box::new(ItemResponse::from_row(row, true)),
                            });
                        }
                    }
                    Ok(Mutation::Put {
                        values: row.values.clone(),
                        deleted: false,
                    })
                }),
            )
            .await?;
        let row = stored_row(written);
        Ok(response::item(
            StatusCode::CREATED,
            &ItemResponse::from_row(&row, true),
            false,
        ))
    }
    .await;
    finish(version, result)
}

/// The conditional headers of a v3 write (and of v2's `If-Match`).
#[derive(Debug, Clone)]
struct Preconditions {
    if_match: Option<tidesync_protocol::ETag>,
    if_none_match: Option<tidesync_protocol::ETag>,
    if_unmodified_since: Option<time::OffsetDateTime>,
}

impl Preconditions {
    fn read(headers: &HeaderMap) -> Preconditions {
        Preconditions {
            if_match: etag_header(headers, header::IF_MATCH),
            if_none_match: etag_header(headers, header::IF_NONE_MATCH),
            if_unmodified_since: date_header(headers, header::IF_UNMODIFIED_SINCE),
        }
    }

    /// 412 with the stored item when a precondition fails.
    fn check(&self, row: &Row, soft_delete: bool) -> Result<(), ServerError> {
        let failed = match (&self.if_match, &self.if_none_match) {
            (Some(tag), _) if !etag_matches(tag, row) => true,
            (_, Some(tag)) if etag_matches(tag, row) => true,
            (None, _) => self
                .if_unmodified_since
                .is_some_and(|since| row.updated_at_ms / 1000 > since.unix_timestamp()),
            _ => false,
        };
        if failed {
            Err(ServerError::PreconditionFailed {
                item: Box::new(ItemResponse::from_row(row, soft_delete)),
            })
        } else {
            Ok(())
        }
    }
}

/// The row a write may touch: present, owned, and not deleted (v2: deleted is 404; v3: 410
/// unless include-deleted).
fn live_row<'a>(
    existing: Option<&'a Row>,
    owner: Option<&str>,
    version: ApiVersion,
    include_deleted: bool,
) -> Result<&'a Row, ServerError> {
    let row = existing
        .filter(|row| visible(row, owner))
        .ok_or(ServerError::NotFound)?;
    if row.deleted && !include_deleted {
        return Err(match version {
            ApiVersion::V2 => ServerError::NotFound,
            ApiVersion::V3 => ServerError::Gone,
        });
    }
    Ok(row)
}

fn stored_row(written: Written) -> Row {
    match written {
        Written::Stored(row) | Written::Removed(row) => row,
    }
}

fn check_url_id(id: &str) -> Result<(), ServerError> {
    validate_id(id).map_err(|e| ServerError::bad_request(format!("invalid id: {e}")))
}
