//! The tidesync sync server: the `/tables` protocol of Azure Mobile Apps (v2,
//! `ZUMO-API-VERSION: 2.0.0`) and Datasync (v3, `3.0.0`) on axum, over an embedded SQLite file or PostgreSQL.
//!
//! What it is: the table endpoints with the status codes, headers and bodies of the wire
//! contract (`server-protocol.md`), OData queries translated from the shared AST of
//! `tidesync-protocol` into parameterised SQL, a server-side [`Store`] trait, tables with
//! declared columns or columns learned (within caps) from the writes that commit, one
//! decide-and-write path for every write (table policy, schema check, preconditions,
//! stamping), a per-table clock that never runs ahead of the wall clock and reads that stop
//! below a horizon nothing can commit under (so an incremental `(updatedAt, id)` reader never
//! misses a row), JWT / API-key auth (or an app's [`Authenticator`]) with per-operation
//! access rules (anonymous, authenticated, owner, `role:NAME`, disabled), tenant scopes and an
//! app's [`TablePolicy`] hooks, tombstone retention, CORS, `/health`, `/ready`, the extension
//! routes under `/tidesync/v1`, and a bound with a documented setting on everything a
//! client controls (`[limits]`: query cost, time and concurrency, body size, connections and
//! their timers).
//!
//! What it is not: a client (it depends on no client crate), a general OData server, or a
//! place for custom APIs, push or login flows.
//!
//! Start a server in-process on a free loopback port (this is what end-to-end tests and the
//! demo use), talk to it, stop it:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let server = tidesync_server::Server::builder()
//!     .sqlite(dir.path().join("data.db"))
//!     .table("TodoItem")
//!     .bind("127.0.0.1:0")
//!     .start()
//!     .await?;
//! println!("serving on {}", server.url()); // http://127.0.0.1:PORT
//! server.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! To drive the router without a socket, call [`ServerBuilder::build`] and use
//! [`App::router`] with `tower::ServiceExt::oneshot`; to embed the server in an axum app,
//! merge [`App::router`] into the app's router and pass its shutdown signal through
//! [`App::graceful_shutdown`] (`docs/SERVER.md`, `examples/embedded-server`).

pub mod auth;
pub mod config;
pub mod error;
pub mod feed;
pub mod http;
mod listen;
mod operation;
pub mod policy;
mod server;
pub mod store;

pub use auth::{Authenticator, JwtAuthenticator, User};
pub use config::{
    Access, BatchConfig, Limits, Operations, Rule, SchemaConfig, ScopeConfig, ServerConfig,
    TableConfig,
};
pub use error::ServerError;
pub use feed::FeedConfig;
pub use policy::{Caller, Operation, PolicyError, TablePolicy};
pub use server::{App, Database, RunningServer, Server, ServerBuilder, StartError};
pub use store::{ColumnType, PostgresStore, SqliteStore, Store};
