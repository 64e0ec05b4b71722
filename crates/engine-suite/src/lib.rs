//! Test-only suites shared by tidesync's crates: the **transport conformance suite**
//! ([`transport`]), one set of cases every [`Transport`](tidesync_core::Transport) is held
//! to — the mock transport as much as the HTTP transport against tidesync-server and against
//! the official Azure Mobile Apps Node server — expanded into one `#[test]` per case by
//! [`transport_conformance!`]; and the engine's **model-based properties** ([`props`]),
//! run on any local store by [`engine_properties!`] (sync-core on `MemoryStore`,
//! store-sqlite on SQLite files).
//!
//! It is **not** part of tidesync: `publish = false`, used only as a dev-dependency (the
//! tidy test enforces that), and its cases panic (assert) on any deviation, so the
//! workspace's `unwrap_used` / `expect_used` lints are relaxed here. It starts no servers
//! itself: each crate's test file implements [`transport::Target`] for what it runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod props;
pub mod transport;

/// Re-exported for [`engine_properties!`]'s expansion.
pub use proptest;
