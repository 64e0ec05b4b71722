//! tidesync: offline-first data sync for Rust apps.
//!
//! Every read and write goes to a local database; changes queue up durably and
//! are pushed to a sync server when the network is back, and the server's
//! changes are pulled down incrementally. The wire protocol is the Azure Mobile
//! Apps / Datasync `/tables` protocol, so official servers work as well as
//! `tidesync-server`.
//!
//! This is the facade crate apps depend on: it re-exports the engine's app API
//! and, behind cargo features, the stores and transports, and offers
//! [`Client::builder`] to wire them up. It holds no sync logic of its own.
//!
//! **One builder, one calling convention.** An app builds a [`Client`] with
//! [`Client::builder`] (store, transport or [`ClientBuilder::url`], tables,
//! conflict handler), works on data through table handles
//! (`client.table::<T>(name)`: `insert`, `update`, `delete`, `get`, `query`,
//! `count`, `pull`, `push`, all `async`), and calls the client for what spans
//! tables (`push`, `pending_operations`, `operation_errors` and their
//! resolutions, `transaction`, `subscribe`, `watch`).
//!
//! **A first sync of big tables.** [`PullOptions::first_screen`] makes a first
//! sync read the rows the app shows first (its order, `rows` of them) before the
//! bulk of the table, so they are readable (and live queries fire) at once; the
//! end state is that of an ordinary pull. A running pull reports its progress
//! (rows applied, the server's total when known) as
//! [`ChangeEvent::PullProgress`] and in [`SyncStatus::pull_progress`].
//! `client.pull_tables([...])` ([`TablePull`]) pulls the app's tables
//! concurrently after one push, with one result per table.
//!
//! **Implementers** of a store or a transport (and code that wires the engine
//! by hand) find their API in [`backend`]: the `LocalStore` and `Transport`
//! traits with their request and batch types, and the engine's own builder.
//! It is not in the app's namespace.
//!
//! | feature  | default | what it adds |
//! |----------|---------|--------------|
//! | `sqlite` | yes     | `SqliteStore`, the default local store (one SQLite file) |
//! | `redb`   | no      | `RedbStore`, a pure-Rust local store |
//! | `http`   | yes     | `HttpTransport` and [`ClientBuilder::url`] |
//! | `mock`   | no      | `MockServer`, an in-process server with scriptable faults, for tests |
//!
//! The tutorial flow, on the in-memory store and the mock server:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use tidesync::{Client, MemoryStore, PushStatus, Query, SyncItem, col};
//! use tidesync_transport_mock::MockServer;
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, SyncItem)]
//! #[tidesync(table = "TodoItem")]
//! struct TodoItem {
//!     #[serde(default, skip_serializing_if = "Option::is_none")]
//!     id: Option<String>,
//!     text: String,
//!     complete: bool,
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let server = MockServer::new();
//! server.add_table("TodoItem");
//!
//! let client = Client::builder()
//!     .store(MemoryStore::new())
//!     .define::<TodoItem>()                       // the table, from the type
//!     .transport(server.transport())
//!     .build()?;
//! let todo = client.sync_table::<TodoItem>();
//!
//! // Local writes always succeed, online or not.
//! let milk = todo.insert(&TodoItem { id: None, text: "buy milk".into(), complete: false }).await?;
//! server.set_offline(true);
//! assert_eq!(client.push().await?.status, PushStatus::CancelledByNetworkError);
//! assert_eq!(client.status().borrow().pending, 1);
//!
//! // Back online: the queued insert goes out, and a pull brings the server's rows.
//! server.set_offline(false);
//! assert!(client.push().await?.is_success());
//! todo.update(&TodoItem { complete: true, ..milk }).await?;
//! todo.pull("allTodoItems", Query::all()).await?;  // pushes the update first
//! let done = todo.query(&Query::new().filter(col("complete").eq(true))).await?;
//! assert_eq!(done.len(), 1);
//! assert_eq!(client.pending_operations()?, 0);
//! # Ok::<(), tidesync::Error>(())
//! # }).unwrap();
//! ```

use std::ops::Deref;
use std::sync::Arc;

pub use tidesync_core::{
    Backoff, CancellationToken, ChangeEvent, ClientWins, ColumnDef, ColumnType, Conflict,
    ConflictHandler, Error, Expr, FailOnConflict, Fallback, FirstScreen, FnHandler, InvalidItem,
    Item, MemoryStore, MergeFields, NetworkError, NetworkKind, OpKind, OpState, Operation,
    OperationError, OrderBy, ProgressFn, PullOptions, PullProgress, PullResult, PushOptions,
    PushResult, PushStatus, Query, QueryResult, QueueRefusal, Resolution, Result, ServerWins,
    StoreError, SyncAction, SyncErrorInfo, SyncErrorKind, SyncItem, SyncStatus, SyncTable,
    TableDef, TableProgress, TablePull, Transaction, TransportError, WatchOptions, Watcher,
    derived_query_id,
};
/// Derives [`SyncItem`] (the trait): the table definition from the row's type.
/// See [`tidesync_derive`] for what it reads.
pub use tidesync_derive::SyncItem;
pub use tidesync_protocol::odata::{col, lit};

/// The API for implementers of a store or a transport, and for wiring the
/// engine by hand: the seams ([`backend::LocalStore`],
/// [`backend::Transport`]) with their request, batch and value
/// types, and the engine's own builder. Apps need none of it.
pub mod backend {
    pub use tidesync_core::{
        BatchOperation, BatchOutcome, BoxError, ChangeFeed, Cursor, FeedEvent, LocalStore, Page,
        ReadRequest, SYSTEM_COLUMNS, Snapshot, SnapshotRequest, SyncContext, SyncContextBuilder,
        Transport, UNMAPPED_COLUMN, Write, WriteBatch, check_value, cursor_key,
        format_stored_timestamp, normalize_value, protocol,
    };
}

use backend::{LocalStore, SyncContext, Transport};

#[cfg(feature = "redb")]
pub use tidesync_store_redb as store_redb;
#[cfg(feature = "redb")]
pub use tidesync_store_redb::RedbStore;
#[cfg(feature = "sqlite")]
pub use tidesync_store_sqlite as store_sqlite;
#[cfg(feature = "sqlite")]
pub use tidesync_store_sqlite::SqliteStore;
#[cfg(feature = "http")]
pub use tidesync_transport_http as transport_http;
#[cfg(feature = "http")]
pub use tidesync_transport_http::{
    ApiKey, AuthProvider, BearerToken, FnAuth, HttpTransport, Protocol, RetryPolicy,
};
#[cfg(feature = "mock")]
pub use tidesync_transport_mock::{MockServer, MockTransport};

/// The README's example, compiled as a doc test so it cannot rot.
#[cfg(all(doctest, feature = "sqlite", feature = "http"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// A sync client: the engine wired to a store, a transport and a conflict
/// handler. Dereferences to the engine ([`backend::SyncContext`]), which has
/// the whole API (tables, push, pull, purge, transactions, error resolution).
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    context: SyncContext,
}

impl Client {
    /// Starts building a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The engine.
    pub fn context(&self) -> &SyncContext {
        &self.context
    }

    /// The handle of `T`'s table ([`SyncItem::TABLE`]), typed as `T`; the table is
    /// defined by [`ClientBuilder::define`].
    pub fn sync_table<T: SyncItem>(&self) -> SyncTable<T> {
        self.context.table::<T>(T::TABLE)
    }
}

impl Deref for Client {
    type Target = SyncContext;

    fn deref(&self) -> &SyncContext {
        &self.context
    }
}

/// Builds a [`Client`]: a store and a transport are required; the conflict
/// handler defaults to [`FailOnConflict`].
///
/// Everything an app sets is here: the HTTP transport's settings
/// ([`url`](Self::url), then [`timeout`](Self::timeout), [`retry`](Self::retry),
/// [`auth`](Self::auth), [`header`](Self::header), …) and the engine's
/// ([`page_size`](Self::page_size), [`batch_size`](Self::batch_size),
/// [`max_conflict_rounds`](Self::max_conflict_rounds)).
#[derive(Debug, Default)]
pub struct ClientBuilder {
    store: Option<Arc<dyn LocalStore>>,
    transport: Option<Arc<dyn Transport>>,
    #[cfg(feature = "http")]
    http: Option<tidesync_transport_http::HttpTransportBuilder>,
    /// An HTTP setting given without `url` (reported by `build`).
    #[cfg(feature = "http")]
    http_without_url: Option<&'static str>,
    handler: Option<Arc<dyn ConflictHandler>>,
    tables: Vec<TableDef>,
    page_size: Option<u64>,
    batch_size: Option<usize>,
    max_conflict_rounds: Option<u32>,
}

impl ClientBuilder {
    /// The local store (e.g. `SqliteStore::open("todo.db")?`).
    #[must_use]
    pub fn store(mut self, store: impl LocalStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The transport (e.g. an HTTP transport, or a mock server's transport in tests).
    #[must_use]
    pub fn transport(mut self, transport: impl Transport + 'static) -> Self {
        self.transport = Some(Arc::new(transport));
        self
    }

    /// Talks to the sync server at `url` over HTTP, choosing the protocol from
    /// the server's capabilities document (v2 for servers without one) unless
    /// [`protocol`](Self::protocol) fixes it. The HTTP settings below apply to
    /// this transport.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the URL is not absolute `http(s)` with a host.
    #[cfg(feature = "http")]
    pub fn url(mut self, url: &str) -> Result<Self> {
        let http = HttpTransport::builder(url);
        http.check_url()
            .map_err(|e| Error::InvalidArgument(format!("server url {url:?}: {e}")))?;
        self.http = Some(http);
        Ok(self)
    }

    #[cfg(feature = "http")]
    fn with_http(
        mut self,
        setting: &'static str,
        apply: impl FnOnce(
            tidesync_transport_http::HttpTransportBuilder,
        ) -> tidesync_transport_http::HttpTransportBuilder,
    ) -> Self {
        match self.http.take() {
            Some(http) => self.http = Some(apply(http)),
            None => self.http_without_url = Some(setting),
        }
        self
    }

    /// The protocol (v2, v3, or `Auto`, the default: discovered).
    #[cfg(feature = "http")]
    #[must_use]
    pub fn protocol(self, protocol: Protocol) -> Self {
        self.with_http("protocol", |b| b.protocol(protocol))
    }

    /// How long one HTTP request may take in all (default 30 s).
    #[cfg(feature = "http")]
    #[must_use]
    pub fn timeout(self, timeout: std::time::Duration) -> Self {
        self.with_http("timeout", |b| b.timeout(timeout))
    }

    /// How long connecting may take (no separate limit unless set).
    #[cfg(feature = "http")]
    #[must_use]
    pub fn connect_timeout(self, timeout: std::time::Duration) -> Self {
        self.with_http("connect_timeout", |b| b.connect_timeout(timeout))
    }

    /// How failed requests are retried (default: 3 retries, 200 ms doubling up to 5 s).
    #[cfg(feature = "http")]
    #[must_use]
    pub fn retry(self, policy: RetryPolicy) -> Self {
        self.with_http("retry", |b| b.retry(policy))
    }

    /// Where requests get their credentials ([`BearerToken`], [`ApiKey`], or your own
    /// [`AuthProvider`], asked again after a 401).
    #[cfg(feature = "http")]
    #[must_use]
    pub fn auth(self, provider: impl AuthProvider + 'static) -> Self {
        self.with_http("auth", |b| b.auth(provider))
    }

    /// A header sent with every request.
    #[cfg(feature = "http")]
    #[must_use]
    pub fn header(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        self.with_http("header", |b| b.header(name, value))
    }

    /// The `User-Agent` header.
    #[cfg(feature = "http")]
    #[must_use]
    pub fn user_agent(self, user_agent: impl Into<String>) -> Self {
        let user_agent = user_agent.into();
        self.with_http("user_agent", |b| b.user_agent(user_agent))
    }

    /// The conflict handler ([`FailOnConflict`] when not set).
    #[must_use]
    pub fn conflict_handler(mut self, handler: impl ConflictHandler + 'static) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// A table to define (or grow) in the store when the client is built.
    #[must_use]
    pub fn table(mut self, def: TableDef) -> Self {
        self.tables.push(def);
        self
    }

    /// Defines (or grows) `T`'s table from its type when the client is built:
    /// `#[derive(SyncItem)]` gives the name and columns, so neither is repeated.
    #[must_use]
    pub fn define<T: SyncItem>(self) -> Self {
        self.table(T::table_def())
    }

    /// Rows per pull request.
    #[must_use]
    pub fn page_size(mut self, rows: u64) -> Self {
        self.page_size = Some(rows);
        self
    }

    /// Ops per request when the server offers batch push (default 500).
    #[must_use]
    pub fn batch_size(mut self, ops: usize) -> Self {
        self.batch_size = Some(ops);
        self
    }

    /// How often one push may ask the conflict handler about the same op before
    /// recording the conflict as an error (default 3).
    #[must_use]
    pub fn max_conflict_rounds(mut self, rounds: u32) -> Self {
        self.max_conflict_rounds = Some(rounds);
        self
    }

    /// Defines the tables and opens the client.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] without a store or transport; an invalid table
    /// definition; store failures.
    pub fn build(self) -> Result<Client> {
        #[cfg(feature = "http")]
        let transport = {
            if let Some(setting) = self.http_without_url {
                return Err(Error::InvalidArgument(format!(
                    "`{setting}` configures the HTTP transport: call url() before it"
                )));
            }
            match (self.transport, self.http) {
                (Some(_), Some(_)) => {
                    return Err(Error::InvalidArgument(
                        "give a client either a transport or a url, not both".to_owned(),
                    ));
                }
                (Some(transport), None) => Some(transport),
                (None, Some(http)) => Some(Arc::new(
                    http.build()
                        .map_err(|e| Error::InvalidArgument(format!("HTTP transport: {e}")))?,
                ) as Arc<dyn Transport>),
                (None, None) => None,
            }
        };
        #[cfg(not(feature = "http"))]
        let transport = self.transport;
        let store = self
            .store
            .ok_or_else(|| Error::InvalidArgument("a client needs a store".to_owned()))?;
        let transport = transport
            .ok_or_else(|| Error::InvalidArgument("a client needs a transport".to_owned()))?;
        for def in &self.tables {
            def.validate()?;
            store.define_table(def)?;
        }
        let mut builder = SyncContext::builder()
            .store_arc(store)
            .transport_arc(transport);
        if let Some(handler) = self.handler {
            builder = builder.conflict_handler_arc(handler);
        }
        if let Some(rows) = self.page_size {
            builder = builder.page_size(rows);
        }
        if let Some(ops) = self.batch_size {
            builder = builder.batch_size(ops);
        }
        if let Some(rounds) = self.max_conflict_rounds {
            builder = builder.max_conflict_rounds(rounds);
        }
        Ok(Client {
            context: builder.build()?,
        })
    }
}
