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
//!
//! **One encoding per change, shared by every feed.** Each published message gets a
//! sequence number and is kept as a `Published`; the first feed that sends it encodes its
//! event (`id`, `event`, `data`, already framed as an HTTP/1.1 chunk) once, and every other
//! feed writes the same bytes. The hub keeps the last `feed.replay_events` messages, so that
//! a feed reopened with `Last-Event-ID` is sent what it missed (see `http::feed`). Event ids
//! are `EPOCH.SEQ`: the epoch is this hub's start time, so an id from before a restart (or
//! from another server process) is known to be foreign and answered with a resync.

pub(crate) mod deliver;

pub(crate) mod postgres;
mod store;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use serde::Deserialize;
use tokio::sync::{broadcast, watch};
use tokio::task::AbortHandle;

pub(crate) use deliver::{FeedTakeover, deliver};
pub use store::FeedStore;

/// How many messages an open feed may fall behind before it is told to resync. Shared by
/// all feeds (one ring of `Arc`s), so it does not grow with their number.
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
    /// Recent changes kept for feeds that reconnect with `Last-Event-ID`: a client away for
    /// fewer changes than this is sent just the tables it missed; one away longer is told
    /// that each of its tables may have changed. Shared by all feeds (about 200 bytes each).
    pub replay_events: usize,
    /// Feeds opened per second at most (a reconnect storm): more answer 503 with
    /// `Retry-After: 1` (clients back off with jitter). 0: no limit.
    pub max_opens_per_sec: usize,
    /// A feed whose client does not take an event within this many milliseconds (its socket
    /// stays full) is closed: a slow subscriber never makes the server hold more for it.
    pub write_timeout_ms: u64,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            heartbeat_ms: 15_000,
            coalesce_ms: 50,
            max_feeds: 512,
            max_feeds_per_user: 8,
            replay_events: 1024,
            max_opens_per_sec: 2000,
            write_timeout_ms: 10_000,
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

    pub(crate) fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms.max(1))
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

/// A message as the hub broadcast it: numbered, and its event encoded at most once.
#[derive(Debug)]
pub(crate) struct Published {
    /// The hub's number for it (the `SEQ` of its event id).
    pub(crate) seq: u64,
    pub(crate) message: FeedMessage,
    epoch: u64,
    /// The change event, framed as one HTTP/1.1 chunk (see [`Published::chunk`]).
    chunk: OnceLock<Bytes>,
}

impl Published {
    /// The event of this change, `id: EPOCH.SEQ` / `event: change` / `data: …`, framed as
    /// one HTTP/1.1 chunk; encoded by the first feed that asks, shared by all the others.
    /// `None` for a resync.
    pub(crate) fn chunk(&self) -> Option<&Bytes> {
        let FeedMessage::Change(change) = &self.message else {
            return None;
        };
        Some(self.chunk.get_or_init(|| {
            let data = serde_json::json!({
                "table": change.table,
                "updatedAt": tidesync_protocol::format_timestamp(crate::store::ms_to_time(
                    change.updated_at_ms
                )),
                "id": change.id,
            });
            deliver::frame(&format!(
                "id: {}.{}\nevent: change\ndata: {data}\n\n",
                self.epoch, self.seq
            ))
        }))
    }
}

/// The broadcast every open feed listens to. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FeedHub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    sender: broadcast::Sender<Arc<Published>>,
    /// The newest messages, oldest first, for feeds that resume (`Last-Event-ID`); numbering
    /// and sending happen under its lock, so the ring and the broadcast agree on the order.
    recent: Mutex<Recent>,
    /// This hub's start (ms since the epoch), the first part of event ids.
    epoch: u64,
    closed: watch::Sender<bool>,
    listener: Mutex<Option<AbortHandle>>,
    /// Open feeds by who opened them (see [`FeedHub::admit`]).
    open: Mutex<OpenFeeds>,
    /// Feeds admitted in the current second (the reconnect-storm cap).
    opens: Mutex<(u64, usize)>,
    /// Change events written to feeds, and changes a feed skipped (it fell behind, or its
    /// client was too slow and the feed was closed).
    pub(crate) events_sent: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Recent {
    next_seq: u64,
    messages: VecDeque<Arc<Published>>,
    capacity: usize,
}

/// Where a resuming feed starts: what it missed, or that it cannot know.
#[derive(Debug)]
pub(crate) enum Resume {
    /// The messages after the client's last event (possibly none).
    Missed(Vec<Arc<Published>>),
    /// The id is foreign, too old or unreadable: every table may have changed.
    Unknown,
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
    /// More than `max_opens_per_sec` feeds were opened this second.
    Storm,
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
    /// A hub nobody publishes to yet, keeping the default number of recent changes.
    pub fn new() -> FeedHub {
        FeedHub::with_replay(FeedConfig::default().replay_events)
    }

    /// A hub that keeps the last `replay` changes for resuming feeds.
    pub fn with_replay(replay: usize) -> FeedHub {
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        FeedHub {
            inner: Arc::new(HubInner {
                sender: broadcast::channel(HUB_BUFFER).0,
                recent: Mutex::new(Recent {
                    next_seq: 1,
                    messages: VecDeque::new(),
                    capacity: replay,
                }),
                epoch,
                closed: watch::channel(false).0,
                listener: Mutex::new(None),
                open: Mutex::new(OpenFeeds::default()),
                opens: Mutex::new((0, 0)),
                events_sent: AtomicU64::new(0),
                events_dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Tells every open feed (none listening is fine).
    pub fn publish(&self, message: FeedMessage) {
        let mut recent = self.inner.recent.lock().unwrap_or_else(|e| e.into_inner());
        let published = Arc::new(Published {
            seq: recent.next_seq,
            message,
            epoch: self.inner.epoch,
            chunk: OnceLock::new(),
        });
        recent.next_seq += 1;
        if recent.capacity > 0 {
            if recent.messages.len() >= recent.capacity {
                recent.messages.pop_front();
            }
            recent.messages.push_back(Arc::clone(&published));
        }
        let _ = self.inner.sender.send(published);
    }

    /// What a feed that last saw event `last_event_id` missed. Call after
    /// [`FeedHub::subscribe`]: a message both in the answer and on the subscription is to
    /// be skipped by its number.
    pub(crate) fn resume(&self, last_event_id: &str) -> Resume {
        let Some((epoch, seq)) = last_event_id
            .trim()
            .split_once('.')
            .and_then(|(e, s)| Some((e.parse::<u64>().ok()?, s.parse::<u64>().ok()?)))
        else {
            return Resume::Unknown;
        };
        let recent = self.inner.recent.lock().unwrap_or_else(|e| e.into_inner());
        if epoch != self.inner.epoch || seq >= recent.next_seq {
            return Resume::Unknown;
        }
        // Every message after `seq` must still be kept.
        let oldest = recent.messages.front().map_or(recent.next_seq, |m| m.seq);
        if seq + 1 < oldest {
            return Resume::Unknown;
        }
        Resume::Missed(
            recent
                .messages
                .iter()
                .filter(|m| m.seq > seq)
                .cloned()
                .collect(),
        )
    }

    /// Counts change events written to feeds and changes skipped.
    pub(crate) fn count(&self, sent: u64, dropped: u64) {
        if sent > 0 {
            self.inner.events_sent.fetch_add(sent, Ordering::Relaxed);
        }
        if dropped > 0 {
            self.inner
                .events_dropped
                .fetch_add(dropped, Ordering::Relaxed);
        }
    }

    /// `(open feeds, events sent, events dropped)`.
    pub(crate) fn stats(&self) -> (usize, u64, u64) {
        let open = self
            .inner
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .total;
        (
            open,
            self.inner.events_sent.load(Ordering::Relaxed),
            self.inner.events_dropped.load(Ordering::Relaxed),
        )
    }

    /// Admits one more feed of `caller` (a user id, or the client address of a caller without
    /// a token) under the caps of `config`.
    pub(crate) fn admit(&self, caller: &str, config: &FeedConfig) -> Result<FeedSlot, FeedRefusal> {
        let mut open = self.inner.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= config.max_feeds {
            return Err(FeedRefusal::Full);
        }
        if config.max_opens_per_sec > 0 {
            let second = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut opens = self.inner.opens.lock().unwrap_or_else(|e| e.into_inner());
            if opens.0 != second {
                *opens = (second, 0);
            }
            if opens.1 >= config.max_opens_per_sec {
                return Err(FeedRefusal::Storm);
            }
            opens.1 += 1;
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
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
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
