//! `POST /tidesync/v1/batch`: the batch extension. Many table writes in one request, applied
//! in one store transaction, each answered on its own; op ids make a resent batch apply once.
//!
//! ```json
//! {"operations": [{"id": "op id", "kind": "insert", "table": "TodoItem", "itemId": "a",
//!                  "item": {"id": "a", "text": "x"}, "ifMatch": null}]}
//! ```
//!
//! answers `200 {"results": [{"status": 201, "item": {...}, "error": null}, …]}`, one result per
//! op in order. Per-op statuses: 201 inserted, 200 updated, 204 deleted, 404 missing (or not
//! the user's), 410 deleted on the server, 409 insert of an existing id and 412 `ifMatch`
//! mismatch (both with the server's item), 400 a malformed op, 401 a table that needs a user.
//! An update merges the sent properties into the row (as a v2 `PATCH`), so columns a client
//! does not know are kept. The request itself answers 400 (not a JSON object with an
//! `operations` array), 401 (API key, bad token), 413 (more ops than `maxOperations`).
//! The wire format is described in `docs/protocol.md`.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tidesync_protocol::{ETag, Item, parse_etag, validate_id};

use super::Shared;
use super::context::{apply_owner, etag_matches, strip_system, visible};
use super::response::{ItemResponse, JSON_CONTENT_TYPE};
use crate::auth::User;
use crate::config::Access;
use crate::error::ServerError;
use crate::store::{BatchWrite, Decide, Fingerprint, Mutation, Rendered, Row, Written};

/// What an op asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Insert,
    Update,
    Delete,
}

/// One op of the request, checked.
#[derive(Debug)]
struct Op {
    op_id: String,
    kind: Kind,
    table: String,
    soft_delete: bool,
    item_id: String,
    item: Item,
    if_match: Option<ETag>,
    owner: Option<String>,
    fingerprint: String,
}

/// `POST /tidesync/v1/batch`.
pub(crate) async fn batch(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match run(&state, &headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response_for(None),
    }
}

async fn run(
    state: &Shared,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ServerError> {
    state.auth.check_api_key(headers)?;
    let user = state.auth.user(headers)?;
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServerError::PayloadTooLarge {
                limit: state.body_limit,
            }
        } else {
            ServerError::bad_request(format!("cannot read the request body: {rejection}"))
        }
    })?;
    let operations = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(mut body)) => match body.remove("operations") {
            Some(Value::Array(operations)) => operations,
            _ => {
                return Err(ServerError::bad_request(
                    "the body needs an \"operations\" array",
                ));
            }
        },
        Ok(_) => return Err(ServerError::bad_request("the body must be a JSON object")),
        Err(error) => return Err(ServerError::bad_request(format!("malformed JSON: {error}"))),
    };
    if operations.len() > state.batch.max_operations {
        return Ok(super::response::error_body(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "a batch carries at most {} operations, this one has {}",
                state.batch.max_operations,
                operations.len()
            ),
        ));
    }
    let user_id = user.as_ref().map(|u| u.id.as_str()).unwrap_or_default();
    let mut results: Vec<Option<String>> = vec![None; operations.len()];
    let mut writes = Vec::with_capacity(operations.len());
    let mut slots = Vec::with_capacity(operations.len());
    for (slot, raw) in operations.into_iter().enumerate() {
        let op = match check(state, user.as_ref(), user_id, raw) {
            Ok(op) => op,
            Err(error) => {
                results[slot] = Some(refusal(&error));
                continue;
            }
        };
        if op.kind != Kind::Delete {
            if let Err(error) = state.store.learn_columns(&op.table, &op.item).await {
                results[slot] = Some(refusal(&error));
                continue;
            }
        }
        slots.push(slot);
        writes.push(into_write(op));
    }
    let retention_ms =
        i64::try_from(state.batch.op_retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let applied = state.store.write_batch(writes, retention_ms).await?;
    for (slot, result) in slots.into_iter().zip(applied) {
        results[slot] = Some(result);
    }
    let mut body =
        String::with_capacity(results.iter().flatten().map(String::len).sum::<usize>() + 16);
    body.push_str("{\"results\":[");
    for (n, result) in results.iter().enumerate() {
        if n > 0 {
            body.push(',');
        }
        body.push_str(result.as_deref().unwrap_or("null"));
    }
    body.push_str("]}");
    let mut response = Response::new(axum::body::Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    Ok(response)
}

/// Reads and checks one op; the error is the op's result.
fn check(
    state: &Shared,
    user_of_request: Option<&User>,
    user_id: &str,
    raw: Value,
) -> Result<Op, ServerError> {
    let user = user_of_request.map(|u| u.id.as_str());
    let Value::Object(mut fields) = raw else {
        return Err(ServerError::bad_request(
            "an operation must be a JSON object",
        ));
    };
    // The hash of the user and the op's JSON text, streamed rather than rendered.
    let mut hash = Fingerprint::new();
    hash.bytes(user_id.as_bytes());
    hash.end_part();
    serde_json::to_writer(&mut hash, &fields).map_err(|e| ServerError::Internal(e.to_string()))?;
    hash.end_part();
    let text = |name: &str| -> Result<String, ServerError> {
        match fields.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(ServerError::bad_request(format!(
                "the operation needs a non-empty string \"{name}\""
            ))),
        }
    };
    let op_id = text("id")?;
    if op_id.len() > 255 {
        return Err(ServerError::bad_request("an op id has at most 255 bytes"));
    }
    let kind = match text("kind")?.as_str() {
        "insert" => Kind::Insert,
        "update" => Kind::Update,
        "delete" => Kind::Delete,
        other => {
            return Err(ServerError::bad_request(format!(
                "unknown kind '{other}': use insert, update or delete"
            )));
        }
    };
    let table = state.table_for(&text("table")?, user_of_request)?;
    let item_id = text("itemId")?;
    validate_id(&item_id).map_err(|e| ServerError::bad_request(format!("invalid id: {e}")))?;
    let mut item = match (kind, fields.remove("item")) {
        (_, Some(Value::Object(item))) => item,
        (Kind::Delete, None | Some(Value::Null)) => Item::new(),
        _ => {
            return Err(ServerError::bad_request(
                "an insert or update needs an \"item\" object",
            ));
        }
    };
    match strip_system(&mut item) {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) if id == item_id => {}
        Some(_) => {
            return Err(ServerError::bad_request(
                "the item's id differs from the operation's itemId",
            ));
        }
    }
    let owner = match table.access {
        Access::Owner => user.map(str::to_owned),
        _ => None,
    };
    apply_owner(&mut item, owner.as_deref());
    let if_match = match fields.get("ifMatch") {
        None | Some(Value::Null) => None,
        Some(Value::String(tag)) if tag.starts_with('"') || tag.starts_with("W/") || tag == "*" => {
            Some(parse_etag(tag))
        }
        Some(Value::String(version)) => Some(ETag::Strong(version.clone())),
        Some(_) => return Err(ServerError::bad_request("\"ifMatch\" must be a string")),
    };
    Ok(Op {
        fingerprint: hash.finish(),
        op_id,
        kind,
        table: table.name.clone(),
        soft_delete: table.soft_delete,
        item_id,
        item,
        if_match,
        owner,
    })
}

/// The store write of a checked op: its decision and the rendering of its outcome.
fn into_write(op: Op) -> BatchWrite {
    let Op {
        op_id,
        kind,
        table,
        soft_delete,
        item_id,
        item,
        if_match,
        owner,
        fingerprint,
    } = op;
    let precondition = move |row: &Row| match &if_match {
        Some(tag) if !etag_matches(tag, row) => Err(ServerError::PreconditionFailed {
            item: Box::new(ItemResponse::from_row(row, soft_delete)),
        }),
        _ => Ok(()),
    };
    let live = move |existing: Option<&Row>, owner: Option<&str>| -> Result<Row, ServerError> {
        let row = existing
            .filter(|row| visible(row, owner))
            .ok_or(ServerError::NotFound)?;
        if row.deleted {
            return Err(ServerError::Gone);
        }
        Ok(row.clone())
    };
    let decide: Decide = match kind {
        Kind::Insert => Box::new(move |existing| match existing {
            Some(row) if !visible(row, owner.as_deref()) => Err(ServerError::IdNotAvailable),
            Some(row) => Err(ServerError::Conflict {
                item: Box::new(ItemResponse::from_row(row, soft_delete)),
            }),
            None => Ok(Mutation::Put {
                values: item,
                deleted: false,
            }),
        }),
        Kind::Update => Box::new(move |existing| {
            let row = live(existing, owner.as_deref())?;
            precondition(&row)?;
            let mut values = row.values;
            values.extend(item);
            Ok(Mutation::Put {
                values,
                deleted: false,
            })
        }),
        Kind::Delete => Box::new(move |existing| {
            let row = live(existing, owner.as_deref())?;
            precondition(&row)?;
            Ok(if soft_delete {
                Mutation::Put {
                    values: row.values,
                    deleted: true,
                }
            } else {
                Mutation::Remove
            })
        }),
    };
    let render = Box::new(move |outcome: Result<Written, ServerError>| {
        let applied = outcome.and_then(|written| {
            let (status, item) = match (kind, written) {
                (Kind::Delete, _) => (StatusCode::NO_CONTENT, None),
                (Kind::Insert, Written::Stored(row) | Written::Removed(row)) => {
                    (StatusCode::CREATED, Some(row.into_item(soft_delete)))
                }
                (Kind::Update, Written::Stored(row) | Written::Removed(row)) => {
                    (StatusCode::OK, Some(row.into_item(soft_delete)))
                }
            };
            success(status, item.as_ref())
        });
        match applied {
            Ok(json) => Rendered {
                json,
                remember: true,
            },
            Err(error) => Rendered {
                json: refusal(&error),
                remember: false,
            },
        }
    });
    BatchWrite {
        op_id,
        fingerprint,
        table,
        id: item_id,
        decide,
        render,
    }
}

/// The result of an applied op: `{"error":null,"item":…,"status":…}`, the keys in the order
/// `serde_json` gives a map, written without building a `Value` first.
fn success(status: StatusCode, item: Option<&Item>) -> Result<String, ServerError> {
    let mut json = Vec::with_capacity(256);
    json.extend_from_slice(b"{\"error\":null,\"item\":");
    match item {
        Some(item) => serde_json::to_writer(&mut json, item)
            .map_err(|e| ServerError::Internal(e.to_string()))?,
        None => json.extend_from_slice(b"null"),
    }
    json.extend_from_slice(format!(",\"status\":{}}}", status.as_u16()).as_bytes());
    String::from_utf8(json).map_err(|e| ServerError::Internal(e.to_string()))
}

/// The result of an op that was refused.
fn refusal(error: &ServerError) -> String {
    let status = error.status();
    let item = match error {
        ServerError::Conflict { item } | ServerError::PreconditionFailed { item } => {
            Value::Object(item.item.clone())
        }
        _ => Value::Null,
    };
    let message = if status.is_server_error() {
        tracing::error!(%error, "batch operation failed");
        "internal server error".to_owned()
    } else {
        error.to_string()
    };
    json!({ "status": status.as_u16(), "item": item, "error": message }).to_string()
}
