//! The tidesync sync engine: offline-first reads and writes against a local
//! store, an operation queue that survives restarts, and push, pull and purge
//! against a sync server.
//!
//! This crate holds the data model, the [`LocalStore`], [`Transport`] and
//! [`ConflictHandler`] seams, the queue with its collapse rules, and the push,
//! pull and purge algorithms. It is **not** a store or a transport: it does no
//! I/O of its own and knows nothing of SQL, redb or HTTP (store and transport
//! crates implement the traits; the `tidesync` facade wires them up). The
//! in-memory [`MemoryStore`] is here as the reference store for tests.
//!
//! ```
//! # use tidesync_core::*;
//! # use tidesync_transport_mock::MockServer;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! store.define_table(&TableDef::new("TodoItem")
//!     .column("text", ColumnType::String)
//!     .column("complete", ColumnType::Bool))?;
//! # let server = MockServer::new();
//! # server.add_table("TodoItem");
//! let client = SyncContext::builder().store(store).transport(server.transport()).build()?;
//! let todo = client.table::<serde_json::Value>("TodoItem");
//! let item = todo.insert(&serde_json::json!({"text": "buy milk", "complete": false})).await?;
//! assert_eq!(client.pending_operations()?, 1);
//! let pushed = client.push().await?;
//! assert!(pushed.is_success());
//! assert_eq!(client.pending_operations()?, 0);
//! let pulled = todo.pull("allTodoItems", Query::all()).await?;
//! assert_eq!(pulled.upserted, 1);
//! # let _ = item;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod conflict;
mod context;
mod engine;
mod error;
mod events;
mod live;
mod memory;
mod model;
mod outcome;
mod pull;
mod push;
mod queue;
mod status;
mod store;
mod table;
mod tables;
mod transport;
mod typed;
mod watch;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use conflict::{
    ClientWins, Conflict, ConflictHandler, FailOnConflict, Fallback, FnHandler, MergeFields,
    Resolution, ServerWins,
};
pub use context::{SyncContext, SyncContextBuilder};
pub use error::{
    BoxError, Error, InvalidItem, NetworkError, NetworkKind, QueueRefusal, Result, StoreError,
    TransportError,
};
pub use events::{ChangeEvent, SyncAction};
pub use memory::MemoryStore;
pub use model::{
    ColumnDef, ColumnType, OpKind, OpState, Operation, OperationError, SYSTEM_COLUMNS, TableDef,
    UNMAPPED_COLUMN, check_value, format_stored_timestamp, normalize_value,
};
pub use outcome::{
    Cursor, FirstScreen, ProgressFn, PullOptions, PullProgress, PullResult, PushOptions,
    PushResult, PushStatus, TablePull, cursor_key, derived_query_id,
};
pub use queue::Transaction;
pub use status::{SyncErrorInfo, SyncErrorKind, SyncStatus, TableProgress};
pub use store::{LocalStore, QueryResult, Write, WriteBatch};
pub use table::SyncTable;
pub use transport::{
    BatchAnswer, BatchOperation, BatchOutcome, ChangeFeed, FeedEvent, Page, ReadRequest, Snapshot,
    SnapshotRequest, Transport,
};
pub use typed::SyncItem;
pub use watch::{Backoff, WatchOptions, Watcher};

pub use tidesync_protocol::odata::{Expr, OrderBy, Query};
pub use tidesync_protocol::{self as protocol, Item};
pub use tokio_util::sync::CancellationToken;
