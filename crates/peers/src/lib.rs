//! Test-only harness that runs the **official Azure Mobile Apps peers** next to tidesync: the
//! official Node server (npm `azure-mobile-apps` 4.0.2, SQLite data provider) and the
//! official JavaScript client (npm `azure-mobile-apps-client` 2.0.1, made to run under
//! Node), so tests can hold tidesync to them.
//!
//! It installs its own pinned npm packages (`npm/package.json` + `npm/package-lock.json`,
//! with `npm ci`) once into `target/node-peers/` — a file lock makes test processes that
//! start at once share one install, and later runs reuse it — starts official servers on
//! free loopback ports ([`OfficialNodeServer`]), and runs Node scripts to completion
//! ([`NodeEnv::script`]). Where `node` or `npm` is missing, [`NodeEnv::get`] answers
//! `Ok(None)` and tests skip with a message — except under `CI=true`, where it is an error:
//! CI runs the official peers.
//!
//! It is **not** part of tidesync: `publish = false`, used only as a dev-dependency, and it
//! depends on no tidesync crate (so any crate's tests can use it). It is not a Node runtime
//! manager either: Node.js and npm come from the machine (or `TIDESYNC_NODE` /
//! `TIDESYNC_NPM`).
//!
//! Scripts get `NODE_PATH` set, so they can `require('azure-mobile-apps-client')` and the
//! harness's own modules: `require('tidesync-peers/js-client')` loads the official client
//! with the shims it needs under Node (documented in `js/tidesync-peers/js-client.js`).
//!
//! # The official server's own ways
//!
//! Seen on this version (they matter to a suite that holds a transport to it):
//!
//! - v2 only: every request needs `ZUMO-API-VERSION: 2.0.0` (anything else, or none, is
//!   400); there is no v3 and no tidesync extension.
//! - `409` on a duplicate insert echoes the *request* item (with a weak ETag of that body),
//!   not the stored one; `412` carries the stored item and its `ETag`.
//! - `DELETE` answers 200 with the tombstone (`deleted: true`); a soft-deleted item is 404
//!   to `GET /tables/T/{id}`.
//! - Its `Link: …; rel=next` header has no port and no path
//!   (`http://127.0.0.1/?$top=50&$skip=50`), so it cannot be followed as given.
//! - `$top=0` reads one page (50 rows by default), like no `$top`.
//! - Its SQLite provider has no `LEN`, `YEAR`, `MONTH`, `DAY`, swaps `INSTR`'s arguments
//!   (`indexof`), builds `LIKE` patterns with `+` (`startswith`, `endswith`,
//!   `substringof`), matches nothing with `mod`, and answers 500 to nested values.
//! - The store is SQLite in memory: each server starts empty.
//!
//! ```no_run
//! use tidesync_peers::{ColumnKind, NodeEnv, OfficialNodeServer, TableSpec};
//!
//! # async fn demo() -> Result<(), tidesync_peers::PeerError> {
//! // `None`: no Node.js here (a message was printed); under CI=true this is an error.
//! let Some(node) = NodeEnv::get().await? else { return Ok(()) };
//! let official = OfficialNodeServer::start(
//!     node,
//!     &[TableSpec::new("TodoItem")
//!         .column("text", ColumnKind::String)
//!         .column("complete", ColumnKind::Boolean)],
//! )
//! .await?;
//! let output = node
//!     .script("tests/js/cases.js")
//!     .arg(official.url())
//!     .run()
//!     .await?
//!     .ensure_success()?;
//! for result in output.json_lines() {
//!     println!("{result}");
//! }
//! # Ok(()) }
//! ```

mod error;
mod install;
mod node;
mod official;
mod script;

pub use error::PeerError;
pub use install::default_cache_dir;
pub use node::{Availability, NODE_VAR, NPM_VAR, NodeEnv, Toolchain, is_ci};
pub use official::{
    ColumnKind, DEFAULT_START_LIMIT, OfficialNodeServer, OfficialServerBuilder, TableSpec,
};
pub use script::{DEFAULT_SCRIPT_LIMIT, NodeScript, ScriptOutput};
