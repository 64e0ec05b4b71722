//! One open feed's state and how its events reach the client.
//!
//! A [`FeedSession`] is all an open feed holds: its subscriptions (each with at most one
//! pending event: a shared [`Published`] message, or "may have changed"), its hub
//! receiver and its timers. It produces HTTP/1.1 chunks; a change event's chunk is the
//! message's shared encoding, so 10,000 feeds told of one change write the same bytes.
//!
//! Two ways out:
//!
//! - **[`deliver`]**, used by the server's own accept loop (`listen.rs`) for feed requests:
//!   the session writes its chunks straight to the socket, with no HTTP connection machinery
//!   (and its buffers) kept for the life of the feed. A write the client does not take within
//!   `feed.write_timeout_ms` closes the feed; while a write waits, the broadcast runs on and a
//!   feed that fell more than the hub's buffer behind is told to resync (skipped ahead): a
//!   slow client never makes the server hold more for it.
//! - **[`FeedSession::into_body`]**, when the router is served some other way (in-process
//!   tests, `axum::serve`): the same chunks' payloads as a streaming body.
//!
//! **Who hears of what.** Each subscription carries the caller's read [`Grant`]; a change is
//! checked per row as the session takes it (live or replayed on resume), by
//! [`Subscription::wants`]: an unrestricted grant admits it with no further work (the
//! common case costs a table-name compare); a grant that is just the owner scope compares
//! the owner the change carries; any other grant (a tenant scope, an app policy's read
//! filter) reads the row as stored now and checks it. A row gone or unreadable is not told.
//! Only that last case awaits (a store read): the message being checked is kept in the
//! session until the check ends, so that [`FeedSession::next_chunk`] stays cancel-safe.
//!
//! The handler (`http::feed`) puts the session in a [`FeedTakeover`] response extension and
//! makes the body from it; whoever takes the session first serves the feed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::{Change, FeedHub, FeedMessage, FeedSlot, Published, Resume};
use crate::policy::Grant;
use crate::store::{OWNER_COLUMN, Store};

/// The first chunk: the client sees the stream start; `retry` tells a browser
/// `EventSource` how soon to reconnect.
const GREETING: &str = ":subscribed\nretry: 1000\n\n";
/// An idle feed's keep-alive comment.
const HEARTBEAT: &str = ":heartbeat\n\n";

/// `text` framed as one HTTP/1.1 chunk.
pub(crate) fn frame(text: &str) -> Bytes {
    Bytes::from(format!("{:x}\r\n{text}\r\n", text.len()))
}

/// The payload of a chunk made by [`frame`].
fn payload(chunk: &Bytes) -> Bytes {
    let start = chunk
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(0, |at| at + 2);
    let end = chunk.len().saturating_sub(2).max(start);
    chunk.slice(start..end)
}

/// What a subscription has to tell.
#[derive(Debug, Default)]
enum Pending {
    #[default]
    Nothing,
    /// The table may have changed (the server missed changes or the feed fell behind).
    Resync,
    /// The newest change not sent yet.
    At(Arc<Published>),
}

/// Whether a subscription is to hear of a change (see [`Subscription::wants`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wants {
    Yes,
    No,
    /// The change alone cannot tell: the row must be read and checked against the grant.
    ReadRow,
}

/// One subscribed table.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub(crate) table: String,
    /// The rows the caller may hear of (their read grant on this table).
    grant: Grant,
    /// The grant is just "the caller's own rows": this owner, compared with the change's.
    owner_only: Option<String>,
    pending: Pending,
    /// When this table's last event went out.
    last_sent: Option<Instant>,
}

impl Subscription {
    pub(crate) fn new(table: String, grant: Grant) -> Subscription {
        let owner_only = match (grant.scopes.as_slice(), &grant.filter) {
            ([scope], None) if scope.column == OWNER_COLUMN => Some(scope.value.clone()),
            _ => None,
        };
        Subscription {
            table,
            grant,
            owner_only,
            pending: Pending::Nothing,
            last_sent: None,
        }
    }

    /// Whether this subscription hears of `change`, as far as the change itself tells:
    /// another table's never; every row with an unrestricted grant; the caller's own rows by
    /// the owner the change carries; otherwise only after reading the row.
    fn wants(&self, change: &Change) -> Wants {
        if self.table != change.table {
            return Wants::No;
        }
        if self.grant.is_unrestricted() {
            return Wants::Yes;
        }
        if let Some(owner) = &self.owner_only {
            return if change.owner.as_ref() == Some(owner) {
                Wants::Yes
            } else {
                Wants::No
            };
        }
        Wants::ReadRow
    }

    /// Whether the row of `change`, as stored now, is in the grant (a row gone or unreadable
    /// is not told).
    async fn admits_row(&self, store: &dyn Store, change: &Change) -> bool {
        match store.get(&change.table, &change.id).await {
            Ok(Some(row)) => self.grant.admits(&row),
            Ok(None) => false,
            Err(error) => {
                tracing::debug!(%error, "feed: cannot check a changed row; not told");
                false
            }
        }
    }
}

/// The settings a session runs by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) coalesce: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) write_timeout: Duration,
    /// When the token the feed was opened with expires.
    pub(crate) expires: Option<Instant>,
}

/// The state of one open feed (see the module documentation).
#[derive(Debug)]
pub(crate) struct FeedSession {
    hub: FeedHub,
    /// Where a restricted subscription reads a changed row.
    store: Arc<dyn Store>,
    /// A message whose row check was under way when `next_chunk` was cancelled: checked
    /// again first thing on the next call.
    checking: Option<Arc<Published>>,
    receiver: tokio::sync::broadcast::Receiver<Arc<Published>>,
    closed: tokio::sync::watch::Receiver<bool>,
    subscriptions: Vec<Subscription>,
    timing: Timing,
    greeted: bool,
    /// When the last chunk went out (heartbeats fill silences).
    last_output: Instant,
    /// The heartbeat timer: one timer entry for the feed's life, re-armed only when it
    /// fires, so that sending an event touches no timer.
    heartbeat: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// Messages up to this number were replayed at the start; the live ones are skipped.
    replayed_to: u64,
    /// The feed's place under the caps, freed when the session is dropped.
    _slot: FeedSlot,
}

impl FeedSession {
    /// Subscribes to `hub`; with `last_event_id`, first takes what the client missed.
    pub(crate) async fn new(
        hub: &FeedHub,
        store: Arc<dyn Store>,
        subscriptions: Vec<Subscription>,
        timing: Timing,
        last_event_id: Option<&str>,
        slot: FeedSlot,
    ) -> FeedSession {
        let receiver = hub.subscribe();
        let mut session = FeedSession {
            hub: hub.clone(),
            store,
            checking: None,
            receiver,
            closed: hub.closed(),
            subscriptions,
            timing,
            greeted: false,
            last_output: Instant::now(),
            heartbeat: Box::pin(tokio::time::sleep(timing.heartbeat)),
            replayed_to: 0,
            _slot: slot,
        };
        if let Some(id) = last_event_id {
            match hub.resume(id) {
                Resume::Missed(missed) => {
                    for message in &missed {
                        session.take(message).await;
                        session.replayed_to = session.replayed_to.max(message.seq);
                    }
                }
                Resume::Unknown => session.resync(),
            }
        }
        session
    }

    /// The tables of this feed.
    pub(crate) fn tables(&self) -> impl Iterator<Item = &str> {
        self.subscriptions.iter().map(|s| s.table.as_str())
    }

    fn resync(&mut self) {
        for sub in &mut self.subscriptions {
            if matches!(sub.pending, Pending::Nothing) {
                sub.pending = Pending::Resync;
            }
        }
    }

    /// Folds a hub message into the pending events, if this feed may hear of it.
    /// Cancel-safe: a message whose row is being read is kept in `checking` until decided.
    async fn take(&mut self, published: &Arc<Published>) {
        match &published.message {
            FeedMessage::Change(change) => {
                let mut found = None;
                for (at, sub) in self.subscriptions.iter().enumerate() {
                    match sub.wants(change) {
                        Wants::No => continue,
                        Wants::Yes => {}
                        Wants::ReadRow => {
                            self.checking = Some(Arc::clone(published));
                            let admitted = sub.admits_row(self.store.as_ref(), change).await;
                            self.checking = None;
                            if !admitted {
                                return;
                            }
                        }
                    }
                    found = Some(at);
                    break;
                }
                let Some(sub) = found.and_then(|at| self.subscriptions.get_mut(at)) else {
                    return;
                };
                let newer = match &sub.pending {
                    Pending::At(held) => match &held.message {
                        FeedMessage::Change(old) => {
                            (change.updated_at_ms, &change.id) > (old.updated_at_ms, &old.id)
                        }
                        FeedMessage::Resync => true,
                    },
                    Pending::Nothing | Pending::Resync => true,
                };
                if newer {
                    sub.pending = Pending::At(Arc::clone(published));
                }
            }
            FeedMessage::Resync => self.resync(),
        }
    }

    /// The next chunk to send, or `None` when the feed ends (server shutdown, token expiry,
    /// the hub closed). Cancel-safe: a message received is folded in before any await.
    pub(crate) async fn next_chunk(&mut self) -> Option<Bytes> {
        if !self.greeted {
            self.greeted = true;
            self.last_output = Instant::now();
            return Some(frame(GREETING));
        }
        if let Some(held) = self.checking.clone() {
            self.take(&held).await;
        }
        loop {
            if *self.closed.borrow() {
                return None;
            }
            let now = Instant::now();
            let mut next_due: Option<Instant> = None;
            let coalesce = self.timing.coalesce;
            for sub in &mut self.subscriptions {
                if matches!(sub.pending, Pending::Nothing) {
                    continue;
                }
                let at = sub.last_sent.map_or(now, |sent| sent + coalesce);
                if at <= now {
                    sub.last_sent = Some(now);
                    self.last_output = now;
                    let chunk = match std::mem::take(&mut sub.pending) {
                        Pending::At(published) => published.chunk().cloned(),
                        Pending::Resync | Pending::Nothing => None,
                    };
                    let chunk = chunk.unwrap_or_else(|| {
                        let data = serde_json::json!({ "table": sub.table });
                        frame(&format!("event: change\ndata: {data}\n\n"))
                    });
                    self.hub.count(1, 0);
                    return Some(chunk);
                }
                next_due = Some(next_due.map_or(at, |n: Instant| n.min(at)));
            }
            tokio::select! {
                biased;
                _ = self.closed.changed() => {}
                () = sleep_until_opt(self.timing.expires) => {
                    tracing::debug!("feed token expired");
                    return None;
                }
                () = sleep_until_opt(next_due) => {}
                () = self.heartbeat.as_mut() => {
                    let due = self.last_output + self.timing.heartbeat;
                    let now = Instant::now();
                    if due <= now {
                        self.last_output = now;
                        self.heartbeat.as_mut().reset(now + self.timing.heartbeat);
                        return Some(frame(HEARTBEAT));
                    }
                    // Something was sent since the timer was armed: wait the rest.
                    self.heartbeat.as_mut().reset(due);
                }
                message = self.receiver.recv() => match message {
                    Ok(message) if message.seq <= self.replayed_to => {}
                    Ok(message) => self.take(&message).await,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "feed fell behind; resync");
                        self.hub.count(0, missed);
                        self.resync();
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }

    /// The feed as a streaming body (for a router served by something else than the
    /// server's accept loop).
    pub(crate) fn into_body(takeover: FeedTakeover) -> Body {
        let events = futures_util::stream::unfold(
            (takeover, None::<FeedSession>),
            |(takeover, mut session)| async move {
                if session.is_none() {
                    session = takeover.take();
                }
                let chunk = session.as_mut()?.next_chunk().await?;
                Some((
                    Ok::<_, std::convert::Infallible>(payload(&chunk)),
                    (takeover, session),
                ))
            },
        );
        Body::from_stream(events)
    }
}

/// The session of a feed response, for whoever serves it first (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct FeedTakeover(Arc<Mutex<Option<FeedSession>>>);

impl FeedTakeover {
    pub(crate) fn new(session: FeedSession) -> FeedTakeover {
        FeedTakeover(Arc::new(Mutex::new(Some(session))))
    }

    pub(crate) fn take(&self) -> Option<FeedSession> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Serves `session` on `socket` (whose response head has been written) until the feed ends,
/// the client leaves, or the client stops taking events.
pub(crate) async fn deliver(mut session: FeedSession, socket: &mut TcpStream) {
    let write_timeout = session.timing.write_timeout;
    loop {
        let chunk = tokio::select! {
            chunk = session.next_chunk() => chunk,
            // The client sends nothing more on a feed: readable means it left (or sent
            // something it should not have), so the feed ends either way.
            _ = socket.readable() => {
                let mut scratch = [0u8; 64];
                match socket.try_read(&mut scratch) {
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                    _ => return,
                }
            }
        };
        let Some(chunk) = chunk else {
            // The last chunk of a chunked body.
            let _ = tokio::time::timeout(write_timeout, socket.write_all(b"0\r\n\r\n")).await;
            return;
        };
        match tokio::time::timeout(write_timeout, socket.write_all(&chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::debug!("feed client too slow; closing");
                session.hub.count(0, 1);
                return;
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
