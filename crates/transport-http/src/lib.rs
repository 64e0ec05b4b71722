//! The tidesync HTTP transport: [`HttpTransport`] implements `tidesync_core::Transport`
//! over `reqwest` (rustls, no OpenSSL) for the two table protocols a sync server speaks:
//!
//! * **v2**, Azure Mobile Apps (`ZUMO-API-VERSION: 2.0.0`): `POST` inserts, `PATCH` of the
//!   full row for updates, `DELETE`; query answers as a plain array or `{results,count}`;
//!   filters printed in the OData v3 dialect (`datetimeoffset'…'`).
//! * **v3**, Datasync (`3.0.0`): `PUT` replaces, `{items,count,nextLink}` pages, OData v4
//!   filters.
//! * [`Protocol::Auto`] (the default) reads a tidesync server's capabilities document
//!   (`GET /tidesync/v1/capabilities`, described in [`Capabilities`]) once and speaks v3
//!   when the server offers it; any other server is spoken to in v2.
//!
//! What the engine gets back is classified as push and pull expect: no answer at all
//! (connection refused, DNS, TLS, timeout, a body cut short) is `TransportError::Network`;
//! 401, after one [`AuthProvider::refresh`], is `Auth`; 409/412 is `Conflict` with the
//! server's item from the body (its `version` taken from the `ETag` header); 404/410 on a
//! replace is `NotFound`, and on a delete it is success; other statuses are `Http` with
//! the server's `error` message, 5xx and 429 after the [`RetryPolicy`]'s retries; a 2xx
//! insert or replace whose body is not a JSON object is `Protocol`. `If-Match` carries
//! the expected version (as `format_etag` writes it) on replaces and deletes.
//!
//! Pages report `has_more` only when the answer makes it certain: `Some(true)` for a
//! v3 `nextLink` or a v2 `Link: …; rel=next`; `Some(false)` for a short page with a null
//! v3 `nextLink`, or a short v2 page from a server that identified itself as tidesync;
//! otherwise `None`, and the engine reads on until an empty page.
//!
//! This crate is **not** a server, and it does not queue or replay anything: requests
//! that got no answer are not retried here (the engine keeps the op queued and a later
//! push sends it again), and nothing but 5xx and 429 is retried, inserts included (a
//! retried insert that had in fact been applied comes back as a 409 conflict with the
//! server's item). Bodies are read whole before parsing, so a page costs memory in
//! proportion to its size; the engine bounds pages with `$top`. With [`Protocol::Auto`] the
//! tidesync batch extension (`POST /tidesync/v1/batch`, `docs/protocol.md`) carries many ops
//! per request, each answered and classified as a single call would be; a server without it
//! gets the ops one by one. Also with `Auto`, the snapshot extension
//! (`GET /tidesync/v1/tables/{table}/snapshot`) streams a whole table for an empty
//! client's first pull, read as it arrives (never whole) in batches.
//!
//! ```
//! use std::time::Duration;
//! use tidesync_transport_http::{ApiKey, HttpTransport, Protocol, RetryPolicy};
//!
//! let transport = HttpTransport::builder("http://127.0.0.1:8080/")
//!     .protocol(Protocol::V2)
//!     .timeout(Duration::from_secs(20))
//!     .user_agent("todo-app/1.0")
//!     .header("X-ZUMO-INSTALLATION-ID", "4f0b5c2e")
//!     .auth(ApiKey::new("secret"))
//!     .retry(RetryPolicy { max_retries: 2, ..RetryPolicy::default() })
//!     .build()?;
//! assert_eq!(transport.base_url(), "http://127.0.0.1:8080/");
//! # Ok::<(), tidesync_transport_http::HttpError>(())
//! ```
//!
//! With the engine (this one needs a server, so it is only compiled):
//!
//! ```no_run
//! use serde_json::json;
//! use tidesync_core::{ColumnType, LocalStore, MemoryStore, Query, SyncContext, TableDef};
//! use tidesync_transport_http::{BearerToken, HttpTransport};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let transport = HttpTransport::builder("https://todo.example.com")
//!     .auth(BearerToken::new("session-token"))
//!     .build()?;
//! let store = MemoryStore::new();
//! store.define_table(&TableDef::new("TodoItem")
//!     .column("text", ColumnType::String)
//!     .column("complete", ColumnType::Bool))?;
//! let client = SyncContext::builder().store(store).transport(transport).build()?;
//! let todo = client.table::<serde_json::Value>("TodoItem");
//! todo.insert(&json!({"text": "buy milk", "complete": false})).await?;
//! let pushed = client.push().await?;
//! assert!(pushed.is_success());
//! todo.pull("allTodoItems", Query::all()).await?;
//! # Ok(()) }
//! ```

mod auth;
mod builder;
mod capabilities;
mod error;
mod response;
mod transport;

pub use auth::{
    ApiKey, AuthProvider, BearerToken, BoxFuture, DEFAULT_API_KEY_HEADER, FnAuth, Headers,
};
pub use builder::{
    DEFAULT_CAPABILITIES_PATH, DEFAULT_TABLES_PATH, DEFAULT_USER_AGENT, HttpTransportBuilder,
    Protocol, RetryPolicy,
};
pub use capabilities::Capabilities;
pub use error::HttpError;
pub use transport::HttpTransport;
