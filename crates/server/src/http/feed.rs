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
//! event: change
//! data: {"table":"TodoItem","updatedAt":"2026-11-27T08:29:32.659Z","id":"a1"}
//! ```
//!
//! At most one event per table per `coalesce_ms` (50 ms by default): the first change is
//! sent at once, the ones that follow within the window are folded into one event sent when
//! the window ends, carrying the newest position. A caller is told only of changes to rows
//! they may read (the table's rules: owner rows, the tenant scope, an app policy's read
//! filter — checked per row as events are delivered), and the position is that of their
//! newest such row. An event
//! without `updatedAt`/`id` means "this table may have changed" (the server may have missed
//! changes, e.g. its database listener reconnected). Idle streams get a comment line every
//! `heartbeat_ms` (15 s by default). Events are hints: a client pulls to learn the rows.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tidesync_protocol::format_timestamp;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::Shared;
use super::context::query_pairs;
use crate::auth::{API_KEY_HEADERS, User};
use crate::error::ServerError;
use crate::feed::{Change, FeedMessage, FeedRefusal, FeedSlot};
use crate::policy::{Grant, Operation};
use crate::store::{OWNER_COLUMN, Store, ms_to_time};

/// The query parameter that may carry the token.
pub const TOKEN_PARAM: &str = "access_token";
/// The query parameter that may carry the API key.
pub const API_KEY_PARAM: &str = "api_key";

/// One subscribed table.
#[derive(Debug, Clone)]
struct Subscription {
    table: String,
    /// The rows the caller may hear of.
    grant: Grant,
}

/// `GET /tidesync/v1/feed`.
pub(crate) async fn feed(
    State(state): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    let (subscriptions, user) = match subscriptions(&state, &uri, headers).await {
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
    tracing::debug!(tables = ?subscriptions.iter().map(|s| &s.table).collect::<Vec<_>>(), "feed opened");
    let stream = FeedStream {
        store: Arc::clone(&state.store),
        receiver: state.feed.subscribe(),
        closed: state.feed.closed(),
        coalesce: state.feed_config.coalesce(),
        subscriptions,
        pending: BTreeMap::new(),
        last_sent: BTreeMap::new(),
        greeted: false,
        expires,
        _slot: slot,
    };
    let events = futures_util::stream::unfold(stream, |mut stream| async move {
        let event = stream.next_event().await?;
        Some((Ok::<_, Infallible>(event), stream))
    });
    let mut response = Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(state.feed_config.heartbeat())
                .text("heartbeat"),
        )
        .into_response();
    // Proxies that buffer would hold events back.
    response.headers_mut().insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
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
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// Checks credentials and tables; returns the subscriptions and the user.
async fn subscriptions(
    state: &Shared,
    uri: &Uri,
    mut headers: HeaderMap,
) -> Result<(Vec<Subscription>, Option<User>), ServerError> {
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
        subscriptions.push(Subscription {
            table: table.name.clone(),
            grant: guard.grant(&caller, Operation::Read)?,
        });
    }
    if subscriptions.is_empty() {
        return Err(ServerError::bad_request(
            "name the tables to watch: /tidesync/v1/feed?tables=A,B",
        ));
    }
    Ok((subscriptions, caller.user))
}

/// A position: `(updatedAt ms, id)`; `None` when unknown.
type Position = Option<(i64, String)>;

/// The state of one open feed.
struct FeedStream {
    /// Where a restricted subscription looks up a changed row.
    store: Arc<dyn Store>,
    receiver: tokio::sync::broadcast::Receiver<Arc<FeedMessage>>,
    closed: tokio::sync::watch::Receiver<bool>,
    coalesce: std::time::Duration,
    subscriptions: Vec<Subscription>,
    /// Tables with a change not sent yet, and its newest position.
    pending: BTreeMap<String, Position>,
    /// When each table's last event went out.
    last_sent: BTreeMap<String, Instant>,
    greeted: bool,
    /// When the token the feed was opened with expires.
    expires: Option<Instant>,
    /// The feed's place under the caps, freed when the stream is dropped.
    _slot: FeedSlot,
}

impl FeedStream {
    /// The next event, or `None` when the server shuts down.
    async fn next_event(&mut self) -> Option<Event> {
        if !self.greeted {
            // Sent at once so that the client sees the response start; `retry` tells a
            // browser EventSource how soon to reconnect.
            self.greeted = true;
            return Some(
                Event::default()
                    .comment("subscribed")
                    .retry(std::time::Duration::from_secs(1)),
            );
        }
        loop {
            if *self.closed.borrow() {
                return None;
            }
            let now = Instant::now();
            let mut next_due: Option<Instant> = None;
            let mut due: Option<String> = None;
            for table in self.pending.keys() {
                let at = self
                    .last_sent
                    .get(table)
                    .map_or(now, |sent| *sent + self.coalesce);
                if at <= now {
                    due = Some(table.clone());
                    break;
                }
                next_due = Some(next_due.map_or(at, |n: Instant| n.min(at)));
            }
            if let Some(table) = due {
                let position = self.pending.remove(&table).flatten();
                self.last_sent.insert(table.clone(), now);
                return Some(change_event(&table, position));
            }
            tokio::select! {
                biased;
                _ = self.closed.changed() => {}
                () = sleep_until_opt(self.expires) => {
                    tracing::debug!("feed token expired");
                    return None;
                }
                () = sleep_until_opt(next_due) => {}
                message = self.receiver.recv() => match message {
                    Ok(message) => self.take(&message).await,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "feed fell behind; resync");
                        self.take(&FeedMessage::Resync).await;
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }

    /// Folds a hub message into the pending set, if this feed may hear of it.
    async fn take(&mut self, message: &FeedMessage) {
        match message {
            FeedMessage::Change(change) => {
                let Some(sub) = self.subscriptions.iter().find(|s| s.table == change.table) else {
                    return;
                };
                if !may_hear(self.store.as_ref(), sub, change).await {
                    return;
                }
                let position = Some((change.updated_at_ms, change.id.clone()));
                let slot = self.pending.entry(sub.table.clone()).or_insert(None);
                if position > *slot {
                    *slot = position;
                }
            }
            FeedMessage::Resync => {
                for sub in &self.subscriptions {
                    self.pending.entry(sub.table.clone()).or_insert(None);
                }
            }
        }
    }
}

/// Whether the subscriber may hear of `change`: every row when unrestricted; the owner's
/// rows by the message's owner alone; otherwise the row as stored now must be in the
/// subscriber's grant (a row gone or unreadable is not told).
async fn may_hear(store: &dyn Store, sub: &Subscription, change: &Change) -> bool {
    let grant = &sub.grant;
    if grant.is_unrestricted() {
        return true;
    }
    if let ([scope], None) = (grant.scopes.as_slice(), &grant.filter) {
        if scope.column == OWNER_COLUMN {
            return change.owner.as_deref() == Some(scope.value.as_str());
        }
    }
    match store.get(&change.table, &change.id).await {
        Ok(Some(row)) => grant.admits(&row),
        Ok(None) => false,
        Err(error) => {
            tracing::debug!(%error, "feed: cannot check a changed row; not told");
            false
        }
    }
}

fn change_event(table: &str, position: Position) -> Event {
    let data = match position {
        Some((ms, id)) => json!({
            "table": table,
            "updatedAt": format_timestamp(ms_to_time(ms)),
            "id": id,
        }),
        None => json!({ "table": table }),
    };
    Event::default().event("change").data(data.to_string())
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
