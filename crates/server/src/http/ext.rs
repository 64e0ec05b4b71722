//! The tidesync extension routes under [`super::EXTENSION_PREFIX`]: outside `/tables`, so the
//! `ZUMO-API-VERSION` rule does not apply. The capabilities document tells clients which
//! protocols and extensions this server offers and its paging limits. The snapshot route
//! lives in `snapshot.rs`, the batch and feed routes in their own modules.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;
use tidesync_protocol::format_timestamp;

use super::response;
use super::{EXTENSION_PREFIX, Shared};
use crate::error::ServerError;
use crate::policy::Operation;
use crate::store::ms_to_time;

/// `GET /tidesync/v1/capabilities`.
pub(crate) async fn capabilities(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let caller = match state.caller(&headers).await {
        Ok(caller) => caller,
        Err(error) => return error.into_response_for(None),
    };
    // Only the tables the caller may read: strangers do not learn the names of the others.
    let tables: Vec<_> = state
        .tables
        .iter()
        .filter(|t| state.guard(t).authorize(&caller, Operation::Read).is_ok())
        .map(|t| {
            json!({
                "name": t.name,
                "access": t.access.as_str(),
                "operations": {
                    "read": t.rule(Operation::Read).to_string(),
                    "insert": t.rule(Operation::Insert).to_string(),
                    "update": t.rule(Operation::Update).to_string(),
                    "delete": t.rule(Operation::Delete).to_string(),
                },
                "scoped": t.scope.is_some(),
                "softDelete": t.soft_delete,
            })
        })
        .collect();
    response::json(
        StatusCode::OK,
        &json!({
            "server": "tidesync-server",
            "serverVersion": env!("CARGO_PKG_VERSION"),
            "protocols": ["2.0.0", "3.0.0"],
            "tablesPath": "/tables",
            "extensionsPath": EXTENSION_PREFIX,
            "extensions": {
                "capabilities": format!("{EXTENSION_PREFIX}/capabilities"),
                "tombstoneHorizon": format!("{EXTENSION_PREFIX}/tables/{{table}}/horizon"),
                "snapshot": {
                    "path": format!("{EXTENSION_PREFIX}/tables/{{table}}/snapshot"),
                    "format": "ndjson",
                    "formats": ["ndjson", "columns"],
                },
                "batch": {
                    "path": format!("{EXTENSION_PREFIX}/batch"),
                    "maxOperations": state.batch.max_operations,
                    "opRetentionSeconds": state.batch.op_retention_secs,
                },
                "feed": {
                    "path": format!("{EXTENSION_PREFIX}/feed"),
                    "heartbeatMilliseconds": state.feed_config.heartbeat_ms,
                    "coalesceMilliseconds": state.feed_config.coalesce_ms,
                    "tokenParameter": super::feed::TOKEN_PARAM,
                    "apiKeyParameter": super::feed::API_KEY_PARAM,
                },
            },
            "cursor": {
                "updatedAtPrecision": "millisecond",
                "updatedAtUniquePerTable": false,
                "tiebreaker": "id",
            },
            "paging": {
                "v2": { "pageSize": state.paging.v2(), "maxTop": state.paging.v2_max_top },
                "v3": { "pageSize": state.paging.v3(), "maxTop": state.paging.v3_max_top },
            },
            "tombstoneRetentionSeconds": state.tombstone_retention_secs,
            "auth": {
                "tokens": state.auth.verifies_tokens(),
                "apiKey": state.auth.requires_api_key(),
            },
            "tables": tables,
        }),
    )
}

/// `GET /tidesync/v1/tables/{table}/horizon`: the tombstone horizon. A client whose cursor
/// (`updatedAt`) is older than `purgedBefore` may have missed deletions and must resync the
/// table from scratch.
pub(crate) async fn horizon(
    State(state): State<Shared>,
    Path(table): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let caller = state.caller(&headers).await?;
        let (table, _policy) = state.resolve(&table, &caller, Operation::Read)?;
        let horizon = state.store.purge_horizon(&table.name).await?;
        Ok::<_, ServerError>(response::json(
            StatusCode::OK,
            &json!({
                "table": table.name,
                "purgedBefore": horizon.map(|ms| format_timestamp(ms_to_time(ms))),
                "retentionSeconds": state.tombstone_retention_secs,
            }),
        ))
    }
    .await;
    result.unwrap_or_else(|error| error.into_response_for(None))
}
