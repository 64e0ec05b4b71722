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
//! mismatch (both with the server's item), 400 a malformed op (or an app policy's refusal of
//! the item), 401 a table that needs a user, 403 a user who lacks the right (a role, the
//! tenant claim, an app policy), 405 an operation the table disables.
//! An update merges the sent properties into the row (as a v2 `PATCH`), so columns a client
//! does not know are kept. Each op goes through the same decide-and-write path as a
//! single request (`write.rs`): the table policy, the schema check and the preconditions
//! are those of the tables. The request itself answers 400 (not a JSON object with an
//! `operations` array), 401 (API key, bad token), 413 (more ops than `maxOperations`).
//! The wire format is described in `docs/protocol.md`.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tidesync_protocol::{ETag, Item, parse_etag, validate_id};

use super::Shared;
use super::context::{same_id, strip_system};
use super::page::WireRow;
use super::response::JSON_CONTENT_TYPE;
use super::write::{self, Conditions, Tombstones, Verb, WriteOp};
use crate::error::ServerError;
use crate::policy::{Caller, Guard, Operation};
use crate::store::{BatchWrite, Fingerprint, Outcome, Rendered, Row, Written};

/// The rows a batch committed, with the guard, operation and soft-delete setting of each
/// (for the app's `after_commit` once the batch is committed).
type Committed = Arc<Mutex<Vec<(Arc<Guard>, Operation, Row, bool)>>>;

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
    let caller = state.caller(headers).await?;
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServerError::PayloadTooLarge {
                limit: state.body_limit,
            }
        } else {
            ServerError::bad_request(format!("cannot read the request body: {rejection}"))
        }
    })?;
    let operations = match super::json::parse(&bytes, state.limits.max_json_values)? {
        Value::Object(mut body) => match body.remove("operations") {
            Some(Value::Array(operations)) => operations,
            _ => {
                return Err(ServerError::bad_request(
                    "the body needs an \"operations\" array",
                ));
            }
        },
        _ => return Err(ServerError::bad_request("the body must be a JSON object")),
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
    let mut results: Vec<Option<String>> = vec![None; operations.len()];
    let mut writes = Vec::with_capacity(operations.len());
    let mut slots = Vec::with_capacity(operations.len());
    let committed: Committed = Arc::default();
    for (slot, raw) in operations.into_iter().enumerate() {
        match plan(state, &caller, raw, &committed) {
            Ok(write) => {
                slots.push(slot);
                writes.push(write);
            }
            Err(error) => results[slot] = Some(refusal(&error)),
        }
    }
    let retention_ms =
        i64::try_from(state.batch.op_retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let applied = state.store.write_batch(writes, retention_ms).await?;
    state.metrics.add_ops(applied.len());
    for (slot, result) in slots.into_iter().zip(applied) {
        results[slot] = Some(result);
    }
    let committed = std::mem::take(&mut *committed.lock().unwrap_or_else(|e| e.into_inner()));
    for (guard, operation, row, soft_delete) in committed {
        guard.after_commit(&caller, operation, &row, soft_delete);
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

/// Reads one op, authorizes it and prepares its store write; the error is the op's result.
fn plan(
    state: &Shared,
    caller: &Caller,
    raw: Value,
    committed: &Committed,
) -> Result<BatchWrite, ServerError> {
    let Value::Object(mut fields) = raw else {
        return Err(ServerError::bad_request(
            "an operation must be a JSON object",
        ));
    };
    // The hash of the user and the op's JSON text, streamed rather than rendered.
    let user_id = caller
        .user
        .as_ref()
        .map(|u| u.id.as_str())
        .unwrap_or_default();
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
    let verb = match text("kind")?.as_str() {
        "insert" => Verb::Insert,
        "update" => Verb::Merge,
        "delete" => Verb::Delete,
        other => {
            return Err(ServerError::bad_request(format!(
                "unknown kind '{other}': use insert, update or delete"
            )));
        }
    };
    let (table, guard) = state.resolve(&text("table")?, caller, verb.operation())?;
    let operation = verb.operation();
    let item_id = text("itemId")?;
    validate_id(&item_id).map_err(|e| ServerError::bad_request(format!("invalid id: {e}")))?;
    let mut item = match (verb, fields.remove("item")) {
        (Verb::Delete, None | Some(Value::Null)) => Item::new(),
        (_, Some(Value::Object(item))) => item,
        _ => {
            return Err(ServerError::bad_request(
                "an insert or update needs an \"item\" object",
            ));
        }
    };
    match strip_system(&mut item) {
        None | Some(Value::Null) => {}
        Some(id) if same_id(&id, &item_id) => {}
        Some(_) => {
            return Err(ServerError::bad_request(
                "the item's id differs from the operation's itemId",
            ));
        }
    }
    let if_match = match fields.get("ifMatch") {
        None | Some(Value::Null) => None,
        Some(Value::String(tag)) if tag.starts_with('"') || tag.starts_with("W/") || tag == "*" => {
            Some(parse_etag(tag))
        }
        Some(Value::String(version)) => Some(ETag::Strong(version.clone())),
        Some(_) => return Err(ServerError::bad_request("\"ifMatch\" must be a string")),
    };
    let mut op = WriteOp::new(verb, item_id.clone(), Tombstones::Gone);
    if verb != Verb::Delete {
        op.item = item;
    }
    if verb != Verb::Insert {
        op.conditions = Conditions {
            if_match,
            ..Conditions::default()
        };
    }
    let soft_delete = table.soft_delete;
    let decide = write::prepare(state, table, &guard, caller, op)?;
    let committed = Arc::clone(committed);
    let render = Box::new(move |outcome: Outcome| {
        render(verb, soft_delete, outcome, |row| {
            committed.lock().unwrap_or_else(|e| e.into_inner()).push((
                Arc::clone(&guard),
                operation,
                row,
                soft_delete,
            ));
        })
    });
    Ok(BatchWrite {
        user: user_id.to_owned(),
        op_id,
        fingerprint: hash.finish(),
        table: table.name.clone(),
        id: item_id,
        decide,
        render,
    })
}

/// The wire result of one op's outcome; `keep` receives the row an applied op wrote.
fn render(verb: Verb, soft_delete: bool, outcome: Outcome, keep: impl FnOnce(Row)) -> Rendered {
    let written = match outcome {
        Ok(written) => written,
        Err(refused) => {
            return Rendered {
                json: refusal(&write::refused(refused, soft_delete)),
                remember: false,
            };
        }
    };
    let row = match written {
        Written::Stored(row) | Written::Removed(row) => row,
    };
    let status = match verb {
        Verb::Delete => StatusCode::NO_CONTENT,
        Verb::Insert => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    let item = (verb != Verb::Delete).then_some(WireRow {
        row: &row,
        soft_delete,
    });
    let json = success(status, item.as_ref());
    keep(row);
    match json {
        Ok(json) => Rendered {
            json,
            remember: true,
        },
        Err(error) => Rendered {
            json: refusal(&error),
            remember: false,
        },
    }
}

/// The result of an applied op: `{"error":null,"item":…,"status":…}`, the keys in the order
/// `serde_json` gives a map, written without building a `Value` (or the row's item) first.
fn success(status: StatusCode, item: Option<&WireRow<'_>>) -> Result<String, ServerError> {
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
