//! tidesync for Swift, Kotlin and Python apps: the facade's app API as a UniFFI
//! library (proc-macros, no UDL), from which `uniffi-bindgen generate --library`
//! makes each language's bindings.
//!
//! A [`Client`] opens a SQLite store and talks to a sync server over HTTP; a
//! [`Table`] reads and writes items as JSON text; `push`, `pull`, `purge` and
//! `clear_all` are async in every host language (the binding runs them on its
//! own tokio runtime, so no host runtime is needed); the sync status and live
//! queries reach host listeners ([`StatusListener`], [`LiveQueryListener`]);
//! conflicts are decided by a host [`ConflictResolver`]; every failure is one
//! [`TidesyncError`], whose `PushFailed` carries the push status and the failed
//! operations with both copies of a conflicting item.
//!
//! It is **not** a second engine: it holds no sync logic, only conversions
//! between the facade's types and values that cross the boundary. Query results
//! cross as one JSON array per call, never one call per row. The generator
//! binary (`uniffi-bindgen`) exists only with the `bindgen` feature.
//!
//! ```
//! # use tidesync_ffi::*;
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! // A loopback port nothing listens on: the client is offline.
//! let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! let url = format!("http://{}", socket.local_addr().unwrap());
//! drop(socket);
//! let client = Client::open(
//!     ClientConfig {
//!         database_path: dir.path().join("app.db").display().to_string(),
//!         server_url: url,
//!         tables: vec![TableSpec {
//!             name: "TodoItem".into(),
//!             columns: vec![ColumnSpec { name: "text".into(), column_type: ColumnType::String }],
//!         }],
//!         api_key: None, bearer_token: None, headers: Default::default(),
//!         timeout_ms: None, connect_timeout_ms: None, max_retries: Some(0),
//!         page_size: None, batch_size: None, max_conflict_rounds: None,
//!     },
//!     None,
//! )?;
//! let todo = client.table("TodoItem".into());
//! let milk = todo.insert(r#"{"text": "buy milk"}"#.into()).await?;
//! assert!(milk.contains("buy milk"));
//! assert_eq!(client.push().await?.status, PushStatus::CancelledByNetworkError);
//! assert_eq!(client.status().pending, 1);
//! # Ok::<(), TidesyncError>(())
//! # }).unwrap();
//! ```

uniffi::setup_scaffolding!();

mod client;
mod error;
mod listen;
mod records;
mod runtime;
mod table;

pub use client::Client;
pub use error::{NetworkErrorKind, TidesyncError};
pub use listen::{ConflictResolver, LiveQueryListener, StatusListener, Subscription};
pub use records::{
    ClientConfig, ColumnSpec, ColumnType, ConflictInfo, ConflictResolution, OpKind,
    OperationFailure, PullOutcome, PushOutcome, PushStatus, QuerySpec, SyncAction, SyncErrorInfo,
    SyncErrorKind, SyncStatus, TableSpec,
};
pub use table::Table;
