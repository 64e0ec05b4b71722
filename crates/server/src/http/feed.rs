//! `GET /tidesync/v1/feed?tables=A,B`: the change feed as server-sent events.
//!
//! Authenticated like the tables: an API key (`X-API-KEY` / `ZUMO-API-KEY`, or the query
//! parameter `api_key`) when one is configured, and a token (`X-ZUMO-AUTH`,
//! `Authorization: Bearer`, or the query parameter `access_token`, since a browser
//! `EventSource` cannot set headers) for tables that are not anonymous. Every named table
//! must exist and be readable by the caller, or the request is refused before the stream
//! starts. A feed opened with a token ends when the token expires. A server holds at most
//! `feed.max_feeds` feeds (one more answers 503) and a caller at most
//! `feed.max_feeds_per_user` (one more answers 429); both answers carry `Retry-After`.
//!
//! The stream carries one event per change burst and table:
//!
//! ```text
//! id: 1764966000000.42
//! event: change
//! data: {"table":"TodoItem","updatedAt":"2026-11-27T08:29:32.659Z","id":"a1"}
//! ```
//!
//! **Resuming.** A client that reopens the feed with the last `id` it saw (the
//! `Last-Event-ID` header, as a browser `EventSource` sends by itself, or the
//! `last_event_id` query parameter) is first sent what it missed: one event per table,
//! at the newest change it may see, from the server's last `feed.replay_events` changes.
//! When the server cannot know (an id from before a restart or from another server
//! process, too old, or unreadable) every table gets a "may have changed" event. More than
//! `feed.max_opens_per_sec` opens in one second answer 503 with `Retry-After: 1`.
//!
//! At most one event per table per `coalesce_ms` (50 ms by default): the first change is
//! sent at once, the ones that follow within the window are folded into one event sent when
//! the window ends, carrying the newest position. A caller is told only of changes to rows
//! they may read (the table's rules: owner rows, the tenant scope, an app policy's read
//! filter — checked per row as events are delivered, replayed ones included), and the
//! position is that of their newest such row. An event
//! without `updatedAt`/`id` means "this table may have changed" (the server may have missed
//! changes, e.g. its database listener reconnected). Idle streams get a comment line every
//! `heartbeat_ms` (15 s by default). Events are hints: a client pulls to learn the rows.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::time::Instant;

use super::Shared;
use super::context::query_pairs;
use crate::auth::{API_KEY_HEADERS, User};
use crate::error::ServerError;
use crate::feed::deliver::{FeedSession, Subscription, Timing};
use crate::feed::{FeedRefusal, FeedTakeover};
use crate::policy::Operation;

/// The query parameter that may carry the token.
pub const TOKEN_PARAM: &str = "access_token";
/// The query parameter that may carry the API key.
pub const API_KEY_PARAM: &str = "api_key";
/// The query parameter that may carry the last event id (for clients that cannot set the
/// `Last-Event-ID` header).
pub const LAST_EVENT_PARAM: &str = "last_event_id";
/// The longest last event id looked at (`EPOCH.SEQ` is at most 41 characters).
const LAST_EVENT_ID_MAX: usize = 64;

/// `GET /tidesync/v1/feed`.
pub(crate) async fn feed(
    State(state): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    let (subscriptions, user, last_event_id) = match subscriptions(&state, &uri, headers).await {
        Ok(found) => found,
        Err(error) => return error.into_response_for(None),
    };
    // Signed-in callers are counted by user, others by address.
    let caller = match (&user, extensions.get::<ConnectInfo<SocketAddr>>()) {
        (Some(user), _) => format!("user:{}", user.id),
        (None, Some(ConnectInfo(peer))) => format!("addr:{}", peer.ip()),
        (None, None) => "anonymous".to_owned(),
    };
    let slot = match state.feed.admit(&caller, &state.feed_config) {
        Ok(slot) => slot,
        Err(refusal) => return refused(refusal, &state.feed_config),
    };
    // A feed opened with a token ends when the token expires: the client reconnects with a
    // fresh one (or is refused), so a revoked user stops hearing of changes.
    let expires = user.map(|user| {
        let left = user
            .expires_at
            .saturating_sub(time::OffsetDateTime::now_utc().unix_timestamp());
        let left = std::time::Duration::from_secs(u64::try_from(left).unwrap_or(0));
        // A user without expiry (a custom authenticator's) gets a far instant, not an overflow.
        Instant::now()
            .checked_add(left)
            .unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(10 * 365 * 86_400))
    });
    let timing = Timing {
        coalesce: state.feed_config.coalesce(),
        heartbeat: state.feed_config.heartbeat(),
        write_timeout: state.feed_config.write_timeout(),
        expires,
    };
    let session = FeedSession::new(
        &state.feed,
        Arc::clone(&state.store),
        subscriptions,
        timing,
        last_event_id.as_deref(),
        slot,
    )
    .await;
    tracing::debug!(tables = ?session.tables().collect::<Vec<_>>(), resumed = last_event_id.is_some(), "feed opened");
    let takeover = FeedTakeover::new(session);
    let mut response = FeedSession::into_body(takeover.clone()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    // Proxies that buffer would hold events back.
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response.extensions_mut().insert(takeover);
    response
}

/// The answer to a feed over a cap: 503 when the server is full, 429 when the caller is;
/// both with `Retry-After`, and the error names the setting.
fn refused(refusal: FeedRefusal, config: &crate::feed::FeedConfig) -> Response {
    let (status, message, limit) = match refusal {
        FeedRefusal::Full => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the server holds its most change feeds ({})",
                config.max_feeds
            ),
            "feed.max_feeds",
        ),
        FeedRefusal::Storm => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many change feeds are opening; retry after a short, random wait (at most {} a second)",
                config.max_opens_per_sec
            ),
            "feed.max_opens_per_sec",
        ),
        FeedRefusal::CallerFull => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "you hold the most change feeds one caller may open ({})",
                config.max_feeds_per_user
            ),
            "feed.max_feeds_per_user",
        ),
    };
    tracing::info!(limit, "change feed refused");
    let mut response = super::response::json(status, &json!({ "error": message, "limit": limit }));
    // A storm passes within a second or two; a full server or caller takes longer.
    let retry = if refusal == FeedRefusal::Storm {
        "1"
    } else {
        "5"
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(retry));
    response
}

/// The subscriptions, the user and the last event id of a feed request.
type Opened = (Vec<Subscription>, Option<User>, Option<String>);

/// Checks credentials and tables; returns the subscriptions, the user and the last event id
/// (the `Last-Event-ID` header, else the `last_event_id` parameter).
async fn subscriptions(
    state: &Shared,
    uri: &Uri,
    mut headers: HeaderMap,
) -> Result<Opened, ServerError> {
    let pairs = query_pairs(uri)?;
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    // Query credentials count only where no header gave one.
    if let Some(key) = param(API_KEY_PARAM) {
        if !API_KEY_HEADERS.iter().any(|h| headers.contains_key(*h)) {
            let value = HeaderValue::from_str(key)
                .map_err(|_| ServerError::bad_request("the api_key parameter is not valid"))?;
            headers.insert(HeaderName::from_static(API_KEY_HEADERS[0]), value);
        }
    }
    if let Some(token) = param(TOKEN_PARAM) {
        let has_header = headers.contains_key(tidesync_protocol::wire::X_ZUMO_AUTH)
            || headers.contains_key(header::AUTHORIZATION);
        if !has_header {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ServerError::bad_request("the access_token parameter is not valid"))?;
            headers.insert(header::AUTHORIZATION, value);
        }
    }
    let caller = state.caller(&headers).await?;
    let names = param("tables").unwrap_or_default();
    let mut subscriptions: Vec<Subscription> = Vec::new();
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let (table, guard) = state.resolve(name, &caller, Operation::Read)?;
        if subscriptions.iter().any(|s| s.table == table.name) {
            continue;
        }
        subscriptions.push(Subscription::new(
            table.name.clone(),
            guard.grant(&caller, Operation::Read)?,
        ));
    }
    if subscriptions.is_empty() {
        return Err(ServerError::bad_request(
            "name the tables to watch: /tidesync/v1/feed?tables=A,B",
        ));
    }
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or_else(|| param(LAST_EVENT_PARAM))
        .filter(|id| !id.is_empty())
        .map(|id| id.chars().take(LAST_EVENT_ID_MAX).collect::<String>());
    Ok((subscriptions, caller.user, last_event_id))
}
