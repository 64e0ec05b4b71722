//! The change feed (`GET /tidesync/v1/feed`, see `http::feed`): how the server learns that a
//! row was written and tells the open feeds.
//!
//! A [`FeedHub`] is one in-process broadcast of [`FeedMessage`]s that every open feed
//! subscribes to. What feeds it depends on the database:
//!
//! - **SQLite** (and any store handed to the builder): [`FeedStore`] wraps the store and
//!   publishes each written row after its transaction committed, single writes and batches
//!   alike. Only writes through this process are seen, which is all there is with SQLite.
//! - **PostgreSQL** opened from a URL: a trigger on every served table calls `pg_notify`
//!   inside the writing transaction, so the notification is delivered when (and only if) the
//!   write commits, whichever server process made it; one listener connection per server
//!   process (`feed::postgres`) receives them and publishes into the hub. After the listener
//!   reconnects it publishes [`FeedMessage::Resync`], since notifications sent meanwhile
//!   were lost.
//!
//! Messages carry the row's owner so that the feed can tell a user of their own rows only;
//! they carry no other row data.

pub(crate) mod postgres;
mod store;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{broadcast, watch};
use tokio::task::AbortHandle;

pub use store::FeedStore;

/// How many messages an open feed may fall behind before it is told to resync.
const HUB_BUFFER: usize = 4096;

/// The change feed's settings (`[feed]` in the configuration file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    /// How often an idle feed sends a heartbeat comment, in milliseconds.
    pub heartbeat_ms: u64,
    /// At most one event per table per this many milliseconds on one feed; changes in
    /// between are folded into the next event, which carries the newest position.
    pub coalesce_ms: u64,
    /// Open feeds per server process; one more answers 503 with `Retry-After`. Each feed is
    /// also a connection: raise `limits.max_connections` with it (a fan-out node holding
    /// thousands of clients raises both).
    pub max_feeds: usize,
    /// Open feeds per signed-in user (per client address for callers without a token); one
    /// more answers 429 with `Retry-After`.
    pub max_feeds_per_user: usize,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            heartbeat_ms: 15_000,
            coalesce_ms: 50,
            max_feeds: 512,
            max_feeds_per_user: 8,
        }
    }
}

impl FeedConfig {
    pub(crate) fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.max(1))
    }

    pub(crate) fn coalesce(&self) -> Duration {
        Duration::from_millis(self.coalesce_ms)
    }
}

/// One committed row write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The table (its configured name).
    pub table: String,
    /// The row's new `updatedAt`, in milliseconds since the epoch.
    pub updated_at_ms: i64,
    /// The row id.
    pub id: String,
    /// The row's `userId` (owner-mode tables).
    pub owner: Option<String>,
}

/// What the hub broadcasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedMessage {
    /// A row was written.
    Change(Change),
    /// Changes may have been missed (the PostgreSQL listener reconnected): every feed should
    /// tell its subscriber that each of its tables may have changed.
    Resync,
}

/// The broadcast every open feed listens to. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FeedHub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    sender: broadcast::Sender<Arc<FeedMessage>>,
    closed: watch::Sender<bool>,
    listener: Mutex<Option<AbortHandle>>,
    /// Open feeds by who opened them (see [`FeedHub::admit`]).
    open: Mutex<OpenFeeds>,
}

#[derive(Debug, Default)]
struct OpenFeeds {
    total: usize,
    by_caller: std::collections::HashMap<String, usize>,
}

/// Why a feed was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FeedRefusal {
    /// The server holds `max_feeds` already.
    Full,
    /// This caller holds `max_feeds_per_user` already.
    CallerFull,
}

/// An admitted feed's place; dropping it (the stream ended or the client left) frees it.
#[derive(Debug)]
pub(crate) struct FeedSlot {
    hub: Arc<HubInner>,
    caller: String,
}

impl Drop for FeedSlot {
    fn drop(&mut self) {
        let mut open = self.hub.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_caller.get_mut(&self.caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_caller.remove(&self.caller);
            }
        }
    }
}

impl Drop for HubInner {
    fn drop(&mut self) {
        if let Some(listener) = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            listener.abort();
        }
    }
}

impl Default for FeedHub {
    fn default() -> Self {
        FeedHub::new()
    }
}

impl FeedHub {
    /// A hub nobody publishes to yet.
    pub fn new() -> FeedHub {
        FeedHub {
            inner: Arc::new(HubInner {
                sender: broadcast::channel(HUB_BUFFER).0,
                closed: watch::channel(false).0,
                listener: Mutex::new(None),
                open: Mutex::new(OpenFeeds::default()),
            }),
        }
    }

    /// Tells every open feed (none listening is fine).
    pub fn publish(&self, message: FeedMessage) {
        let _ = self.inner.sender.send(Arc::new(message));
    }

    /// A sender for a publisher that lives on its own (the PostgreSQL listener).
    pub(crate) fn sender(&self) -> broadcast::Sender<Arc<FeedMessage>> {
        self.inner.sender.clone()
    }

    /// Admits one more feed of `caller` (a user id, or the client address of a caller without
    /// a token) under the caps of `config`.
    pub(crate) fn admit(&self, caller: &str, config: &FeedConfig) -> Result<FeedSlot, FeedRefusal> {
        let mut open = self.inner.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= config.max_feeds {
            return Err(FeedRefusal::Full);
        }
        let mine = open.by_caller.get(caller).copied().unwrap_or(0);
        if mine >= config.max_feeds_per_user {
            return Err(FeedRefusal::CallerFull);
        }
        open.total += 1;
        open.by_caller.insert(caller.to_owned(), mine + 1);
        Ok(FeedSlot {
            hub: Arc::clone(&self.inner),
            caller: caller.to_owned(),
        })
    }

    /// Subscribes an open feed.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<FeedMessage>> {
        self.inner.sender.subscribe()
    }

    /// Resolves once the hub is closed (the server is shutting down).
    pub(crate) fn closed(&self) -> watch::Receiver<bool> {
        self.inner.closed.subscribe()
    }

    /// Ends every open feed (their streams finish, so a graceful shutdown is not held up
    /// by them) and stops the listener.
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
        if let Some(listener) = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            listener.abort();
        }
    }

    /// Remembers the listener task, to stop it with the hub.
    pub(crate) fn set_listener(&self, listener: AbortHandle) {
        *self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(listener);
    }
}
