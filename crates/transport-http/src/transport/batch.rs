//! The tidesync batch extension on the client side: `POST {extensions}/batch` with many ops,
//! one result per op (wire format in `docs/protocol.md`).
//!
//! Each per-op result is classified exactly as the answer to a single call would be (409/412
//! `Conflict` with the server's item, 404/410 `NotFound`, 401 `Auth`, others `Http`). A batch
//! is resent as it stands after a lost answer: the server remembers applied op ids, so the
//! resend is applied once. A `413` (more ops than the server takes) splits the batch in halves;
//! a server without the extension (discovery said so, or the route answers 404/405) gets the
//! ops one by one, so [`Transport::supports_batch`](tidesync_core::Transport::supports_batch)
//! may say yes before discovery has run.

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use tidesync_core::{BatchAnswer, BatchOperation, BatchOutcome, OpKind, Transport, TransportError};
use tidesync_protocol::system::is_system_property;

use super::{HttpTransport, Outgoing};
use crate::builder::Protocol;
use crate::response::{Reply, error_for};

/// The extension's name in the capabilities document.
pub(crate) const EXTENSION: &str = "batch";

impl HttpTransport {
    /// True unless the server is known not to offer the extension (see the module doc).
    pub(crate) fn batch_available(&self) -> bool {
        match self.inner.settings.protocol {
            Protocol::Auto => self
                .inner
                .discovered
                .get()
                .is_none_or(|c| c.has_extension(EXTENSION)),
            Protocol::V2 | Protocol::V3 => false,
        }
    }

    pub(crate) async fn send_batch(
        &self,
        operations: &[BatchOperation],
    ) -> Result<Vec<BatchOutcome>, TransportError> {
        if operations.is_empty() {
            return Ok(Vec::new());
        }
        let capabilities = self.capabilities().await?;
        if !(capabilities.tidesync && capabilities.has_extension(EXTENSION)) {
            return Ok(self.one_by_one(operations).await);
        }
        self.post_in_slices(vec![operations]).await
    }

    /// [`send_batch`](Self::send_batch) with the answer left undecoded when the
    /// server took the whole batch in one request (the usual case); otherwise
    /// (413 halving, no route) decoded as it arrived.
    pub(crate) async fn send_batch_answer(
        &self,
        operations: &[BatchOperation],
    ) -> Result<BatchAnswer, TransportError> {
        if operations.is_empty() {
            return Ok(BatchAnswer::decoded(Vec::new()));
        }
        let capabilities = self.capabilities().await?;
        if !(capabilities.tidesync && capabilities.has_extension(EXTENSION)) {
            return Ok(BatchAnswer::decoded(self.one_by_one(operations).await));
        }
        let outcomes = match self.post_batch(operations).await? {
            Posted::Done(body) => {
                let expected = operations.len();
                return Ok(BatchAnswer::deferred(move || decode(&body, expected)));
            }
            Posted::TooLarge if operations.len() > 1 => {
                let (first, second) = operations.split_at(operations.len() / 2);
                self.post_in_slices(vec![second, first]).await?
            }
            Posted::TooLarge => return Err(refused_even_one()),
            Posted::NoRoute => self.one_by_one(operations).await,
        };
        Ok(BatchAnswer::decoded(outcomes))
    }

    /// Posts `pending` (a stack: the last slice first), halving a slice the
    /// server answers 413, and decodes each answer.
    async fn post_in_slices(
        &self,
        mut pending: Vec<&[BatchOperation]>,
    ) -> Result<Vec<BatchOutcome>, TransportError> {
        // Halving on 413 is a loop over pending slices, not recursion (no boxed futures).
        let mut outcomes = Vec::new();
        while let Some(slice) = pending.pop() {
            match self.post_batch(slice).await? {
                Posted::Done(body) => outcomes.append(&mut decode(&body, slice.len())?),
                Posted::TooLarge if slice.len() > 1 => {
                    let (first, second) = slice.split_at(slice.len() / 2);
                    pending.push(second);
                    pending.push(first);
                }
                Posted::TooLarge => return Err(refused_even_one()),
                Posted::NoRoute => {
                    let mut rest = self.one_by_one(slice).await;
                    outcomes.append(&mut rest);
                    for later in pending.drain(..).rev() {
                        let mut rest = self.one_by_one(later).await;
                        outcomes.append(&mut rest);
                    }
                }
            }
        }
        Ok(outcomes)
    }

    async fn post_batch(&self, operations: &[BatchOperation]) -> Result<Posted, TransportError> {
        let body = WireBatch {
            operations: operations.iter().map(WireOp::of).collect(),
        };
        let body = serde_json::to_vec(&body)
            .map_err(|e| TransportError::Protocol(format!("the batch cannot be sent: {e}")))?;
        let path = self.batch_path();
        let reply = self
            .execute(&Outgoing {
                method: Method::POST,
                url: self.url_for(&path, &[]),
                body: Some(body),
                if_match: None,
                version: None,
            })
            .await?;
        match reply.status {
            StatusCode::PAYLOAD_TOO_LARGE => Ok(Posted::TooLarge),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => Ok(Posted::NoRoute),
            status if !status.is_success() => Err(error_for(&reply)),
            _ => Ok(Posted::Done(reply.body)),
        }
    }

    /// The batch route: the capabilities path with its last segment replaced by `batch`.
    fn batch_path(&self) -> String {
        let capabilities = &self.inner.settings.capabilities_path;
        match capabilities.rsplit_once('/') {
            Some((parent, _)) => format!("{parent}/{EXTENSION}"),
            None => format!("/{EXTENSION}"),
        }
    }

    /// The ops as single calls, for a server without the extension. After a failure that
    /// stops a push (network, auth) the remaining ops are not sent and answer the same.
    async fn one_by_one(&self, operations: &[BatchOperation]) -> Vec<BatchOutcome> {
        let mut outcomes = Vec::with_capacity(operations.len());
        let mut stopped: Option<TransportError> = None;
        for op in operations {
            if let Some(error) = &stopped {
                outcomes.push(BatchOutcome::Err(same(error)));
                continue;
            }
            let item = op.item.clone().unwrap_or_default();
            let result = match op.kind {
                OpKind::Insert => self.insert(&op.table, &item).await.map(Some),
                OpKind::Update => self
                    .replace(&op.table, &item, op.if_match.as_deref())
                    .await
                    .map(Some),
                OpKind::Delete => self
                    .delete(&op.table, &op.item_id, op.if_match.as_deref())
                    .await
                    .map(|()| None),
            };
            match result {
                Ok(item) => outcomes.push(BatchOutcome::Ok(item)),
                Err(error) => {
                    if matches!(
                        error,
                        TransportError::Network(_) | TransportError::Auth { .. }
                    ) {
                        stopped = Some(same(&error));
                    }
                    outcomes.push(BatchOutcome::Err(error));
                }
            }
        }
        outcomes
    }
}

/// What one `POST` of the batch route gave.
enum Posted {
    /// Answered: the body, not decoded yet.
    Done(Vec<u8>),
    TooLarge,
    NoRoute,
}

/// The error of a batch of one op that the server still answers 413.
fn refused_even_one() -> TransportError {
    TransportError::Http {
        status: 413,
        message: "the server refuses even a batch of one op".to_owned(),
        raw: None,
    }
}

/// The outcomes in a batch answer's body. The engine checks that there is one
/// per op sent (`expected`, named in the error only).
fn decode(body: &[u8], expected: usize) -> Result<Vec<BatchOutcome>, TransportError> {
    let results = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut body)) => match body.remove("results") {
            Some(Value::Array(results)) => results,
            _ => {
                return Err(TransportError::Protocol(format!(
                    "the batch answer has no results array (for {expected} ops)"
                )));
            }
        },
        _ => {
            return Err(TransportError::Protocol(format!(
                "the batch answer is not a JSON object (for {expected} ops)"
            )));
        }
    };
    Ok(results.into_iter().map(outcome).collect())
}

/// A batch request body, serialized straight from the ops (no JSON tree in between).
#[derive(serde::Serialize)]
struct WireBatch<'a> {
    operations: Vec<WireOp<'a>>,
}

/// One op on the wire: its id, kind, table, item id, item (system properties left out) and
/// the version it is conditioned on.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct WireOp<'a> {
    id: &'a str,
    kind: &'static str,
    table: &'a str,
    item_id: &'a str,
    item: Option<WireItem<'a>>,
    if_match: Option<&'a str>,
}

impl<'a> WireOp<'a> {
    fn of(op: &'a BatchOperation) -> WireOp<'a> {
        WireOp {
            id: &op.operation_id,
            kind: match op.kind {
                OpKind::Insert => "insert",
                OpKind::Update => "update",
                OpKind::Delete => "delete",
            },
            table: &op.table,
            item_id: &op.item_id,
            item: op.item.as_ref().map(WireItem),
            if_match: op.if_match.as_deref(),
        }
    }
}

/// An item without its system properties.
struct WireItem<'a>(&'a Map<String, Value>);

impl serde::Serialize for WireItem<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().filter(|(name, _)| !is_system_property(name)))
    }
}

/// One per-op result, classified as the answer to a single call.
fn outcome(result: Value) -> BatchOutcome {
    let Value::Object(mut result) = result else {
        return BatchOutcome::Err(TransportError::Protocol(
            "a batch result is not a JSON object".to_owned(),
        ));
    };
    let status = result
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok());
    let Some(status) = status else {
        return BatchOutcome::Err(TransportError::Protocol(
            "a batch result has no valid status".to_owned(),
        ));
    };
    let item = match result.remove("item") {
        Some(Value::Object(item)) => Some(item),
        _ => None,
    };
    if status.is_success() {
        return BatchOutcome::Ok(item);
    }
    // The body a single call would have had: the server's item for 409/412, else the error.
    let body = match item {
        Some(item) => Value::Object(item),
        None => json!({ "error": result.remove("error").unwrap_or(Value::Null) }),
    };
    let reply = Reply {
        status,
        headers: reqwest::header::HeaderMap::new(),
        body: body.to_string().into_bytes(),
    };
    BatchOutcome::Err(error_for(&reply))
}

/// A copy of a push-stopping error for the ops after it.
fn same(error: &TransportError) -> TransportError {
    match error {
        TransportError::Auth { message } => TransportError::Auth {
            message: message.clone(),
        },
        TransportError::Network(network) => TransportError::Network(network.clone()),
        other => TransportError::Network(other.to_string().into()),
    }
}
