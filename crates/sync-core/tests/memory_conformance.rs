//! The store conformance suite run on [`tidesync_core::MemoryStore`], the reference store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tidesync_core::testkit::MemoryFactory;

tidesync_core::store_conformance!(MemoryFactory);
