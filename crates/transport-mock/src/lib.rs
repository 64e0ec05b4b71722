//! An in-process model of a tidesync server, reached through [`MockTransport`], with
//! scriptable, deterministic faults: the transport the engine's tests (and property tests)
//! run against.
//!
//! A [`MockServer`] holds tables of JSON items and answers the [`Transport`](tidesync_core::Transport) calls with the
//! semantics of the server protocol: server-assigned `createdAt` / `updatedAt` / `version`,
//! soft delete with include-deleted reads, 409 on a duplicate insert and 412 on a stale
//! `If-Match` (both with the stored item), OData filter / order / skip / top with an `id`
//! tiebreak, a page limit with exact `has_more`, and an idempotent batch extension. Its clock
//! is deterministic ([`Clock`]), and its faults ([`Fault`], [`Faults`], [`Gate`]) are
//! scripted or drawn from a seeded generator, so a test fails the same way every run. Every
//! call is logged ([`Call`]).
//!
//! [`Faulty`] brings the same faults (offline, scripted failures, lost answers, a seeded
//! partition, latency, a gate on the next write) to **any** [`Transport`](tidesync_core::Transport)
//! by wrapping it: the HTTP transport's tests use it against a real server.
//!
//! It is **not** a real HTTP server (no sockets, headers, status lines or JSON parsing: the
//! wire format is the business of the HTTP transport and the real server), and it has **no
//! persistence**: the data lives in memory for as long as a handle to the server does.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use serde_json::json;
//! use tidesync_core::{ReadRequest, Transport, TransportError};
//! use tidesync_protocol::{Item, Query};
//! use tidesync_transport_mock::{Fault, MockServer};
//!
//! let server = MockServer::new();
//! server.add_table("TodoItem");
//! let client = server.transport();
//!
//! let item: Item = serde_json::from_value(json!({"id": "a", "text": "buy milk"}))?;
//! let stored = client.insert("TodoItem", &item).await?;
//! assert_eq!(stored["updatedAt"], "2026-01-01T00:00:00.000Z");
//!
//! // A second insert of the same id is a conflict carrying the stored item.
//! let again = client.insert("TodoItem", &item).await;
//! assert!(matches!(again, Err(TransportError::Conflict { status: 409, server_item: Some(_), .. })));
//!
//! // The next call loses its response after the write was applied.
//! server.fail_next(1, Fault::CommitThenLoseResponse);
//! let other: Item = serde_json::from_value(json!({"id": "b", "text": "bread"}))?;
//! assert!(matches!(client.insert("TodoItem", &other).await, Err(TransportError::Network(_))));
//! assert!(server.get("TodoItem", "b").is_some());
//!
//! let request = ReadRequest { table: "TodoItem".into(), query: Query::all(), include_deleted: false };
//! let page = client.read(&request).await?;
//! assert_eq!(page.items.len(), 2);
//! assert_eq!(page.has_more, Some(false));
//! assert_eq!(server.calls().len(), 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod calls;
mod faults;
mod faulty;
mod feed;
mod gate;
mod model;
mod transport;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tidesync_protocol::Item;
use time::OffsetDateTime;

pub use calls::{Call, CallKind, CallOutcome};
pub use faults::{Fault, Faults};
pub use faulty::Faulty;
pub use feed::FEED_BUFFER;
pub use gate::Gate;
pub use transport::MockTransport;

use model::State;

/// The state all handles of one server share.
pub(crate) type Shared = Mutex<State>;

/// Locks the server state; a lock poisoned by a panicking test thread is taken over as is.
pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Options of a table, for [`MockServer::add_table_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions {
    /// Deletes keep the row with `deleted: true` (a tombstone for incremental pulls)
    /// instead of removing it. On by default.
    pub soft_delete: bool,
}

impl Default for TableOptions {
    fn default() -> TableOptions {
        TableOptions { soft_delete: true }
    }
}

/// How the server stamps `updatedAt` (and `createdAt` on insert).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Clock {
    /// A deterministic clock (not wall time): the first write is stamped
    /// `2026-01-01T00:00:00.000Z` and each later write exactly 1 ms after the latest stamp
    /// so far, so stamps are strictly increasing.
    #[default]
    Auto,
    /// Every write is stamped with this instant (truncated to milliseconds), for tests of
    /// many rows sharing one `updatedAt`.
    Fixed(OffsetDateTime),
}

/// An in-process tidesync server: tables, a clock, a version counter, a call log and a
/// fault script. Cheap to clone; clones are handles onto the same server.
///
/// Each call is stamped and applied under one lock, so writes become visible in stamp
/// order and a reader never sees a later `updatedAt` before an earlier one.
#[derive(Clone)]
pub struct MockServer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.shared);
        f.debug_struct("MockServer")
            .field("tables", &state.tables.keys().collect::<Vec<_>>())
            .field("clock", &state.clock)
            .field("page_limit", &state.page_limit)
            .field("batch_support", &state.batch_support)
            .finish_non_exhaustive()
    }
}

impl Default for MockServer {
    fn default() -> MockServer {
        MockServer::new()
    }
}

impl MockServer {
    /// A server with no tables, the [`Clock::Auto`] clock, a page limit of 50, no batch
    /// support and random faults seeded with 0.
    pub fn new() -> MockServer {
        MockServer::with_seed(0)
    }

    /// Like [`MockServer::new`], with `seed` for the random faults.
    pub fn with_seed(seed: u64) -> MockServer {
        MockServer {
            shared: Arc::new(Mutex::new(State::new(seed))),
        }
    }

    /// Adds a table with soft delete on. Adding an existing table keeps its rows.
    pub fn add_table(&self, name: &str) {
        self.add_table_with(name, TableOptions::default());
    }

    /// Adds a table with `options`; for an existing table, changes its options and keeps
    /// its rows.
    pub fn add_table_with(&self, name: &str, options: TableOptions) {
        lock(&self.shared).add_table(name, options);
    }

    /// A new client handle onto this server, with its own offline switch.
    pub fn transport(&self) -> MockTransport {
        MockTransport::new(self.shared.clone())
    }

    /// Every row of `table`, soft-deleted ones included, ordered by id (empty for an
    /// unknown table).
    pub fn items(&self, table: &str) -> Vec<Item> {
        lock(&self.shared)
            .tables
            .get(table)
            .map(|t| t.rows.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The row `id` of `table`, soft-deleted or not.
    pub fn get(&self, table: &str, id: &str) -> Option<Item> {
        lock(&self.shared)
            .tables
            .get(table)
            .and_then(|t| t.rows.get(id))
            .cloned()
    }

    /// Writes `item` as another client would, bypassing faults and the call log: a new id
    /// is generated when it has none, system properties in it are ignored and set by the
    /// server. An existing row with that id is overwritten (and undeleted). An unknown
    /// table is created with soft delete on. Returns the stored row.
    pub fn server_insert(&self, table: &str, item: Item) -> Item {
        lock(&self.shared).server_insert(table, item)
    }

    /// Merges the user properties of `item` into the stored row with its id and bumps
    /// `version` and `updatedAt`, as another client would; the deleted flag is kept. A
    /// missing row is inserted as by [`MockServer::server_insert`]. Returns the stored row.
    pub fn server_update(&self, table: &str, item: Item) -> Item {
        lock(&self.shared).server_update(table, item)
    }

    /// Deletes row `id` as another client would (soft or hard, per the table); a missing or
    /// already deleted row is left alone.
    pub fn server_delete(&self, table: &str, id: &str) {
        lock(&self.shared).server_delete(table, id);
    }

    /// The finished calls of all transports, in arrival order (a call held at a [`Gate`]
    /// shows up once it finishes, in its arrival position).
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.shared)
            .calls
            .iter()
            .filter(|slot| slot.finished)
            .map(|slot| slot.call.clone())
            .collect()
    }

    /// Empties the call log (calls in flight are still logged when they finish).
    pub fn clear_calls(&self) {
        lock(&self.shared).calls.retain(|slot| !slot.finished);
    }

    /// The most rows a read returns (`None`: no cap). 50 by default.
    pub fn set_page_limit(&self, limit: Option<usize>) {
        lock(&self.shared).page_limit = limit;
    }

    /// How later writes are stamped.
    pub fn set_clock(&self, clock: Clock) {
        lock(&self.shared).clock = clock;
    }

    /// Moves the [`Clock::Auto`] clock forward: the next write is stamped `by` + 1 ms after
    /// the latest stamp so far.
    pub fn advance_clock(&self, by: Duration) {
        lock(&self.shared).advance_clock(by);
    }

    /// Whether transports report (and the server accepts) the batch extension. Off by
    /// default; a batch sent while it is off fails with
    /// [`TransportError::Unsupported`](tidesync_core::TransportError::Unsupported).
    pub fn set_batch_support(&self, supported: bool) {
        lock(&self.shared).batch_support = supported;
    }

    /// Holds the next write call (insert, replace, delete or batch, from any transport)
    /// after it arrives and before it is applied, until the returned gate is released.
    /// Several gates hold successive writes, one each. A call that fails offline never
    /// reaches the server and passes no gate; other faults are decided on arrival, so a
    /// held call with a scripted fault waits at the gate, then fails.
    pub fn block_next_write(&self) -> Gate {
        let (gate, shared) = Gate::new();
        lock(&self.shared).gates.push_back(shared);
        gate
    }

    /// A handle on the fault script (the same methods are also on the server).
    pub fn faults(&self) -> Faults {
        Faults {
            shared: self.shared.clone(),
        }
    }

    /// Whether transports offer the change feed. Off by default: `change_feed` then
    /// answers [`TransportError::Unsupported`](tidesync_core::TransportError::Unsupported).
    /// Turning it off does not close feeds already open (see [`MockServer::drop_feeds`]).
    pub fn set_feed_enabled(&self, enabled: bool) {
        lock(&self.shared).feed.enabled = enabled;
    }

    /// Closes every open change feed, as a dropped connection would; returns how many
    /// were open. Clients may open new ones at once.
    pub fn drop_feeds(&self) -> usize {
        lock(&self.shared).feed.drop_all()
    }

    /// How many change feeds are open (closed receivers are not counted).
    pub fn open_feeds(&self) -> usize {
        lock(&self.shared).feed.open()
    }

    /// See [`Faults::set_offline`].
    pub fn set_offline(&self, offline: bool) {
        self.faults().set_offline(offline);
    }

    /// See [`Faults::fail_next`].
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.faults().fail_next(n, fault);
    }

    /// See [`Faults::set_latency`].
    pub fn set_latency(&self, latency: Duration) {
        self.faults().set_latency(latency);
    }

    /// See [`Faults::set_random_faults`].
    pub fn set_random_faults(&self, probability: f64, kinds: Vec<Fault>) {
        self.faults().set_random_faults(probability, kinds);
    }

    /// See [`Faults::clear_faults`].
    pub fn clear_faults(&self) {
        self.faults().clear_faults();
    }
}
