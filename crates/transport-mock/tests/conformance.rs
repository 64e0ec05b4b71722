//! The transport conformance suite (`tidesync-engine-suite`) against the mock: the same
//! cases `tidesync-transport-http`'s `tests/conformance.rs` runs against tidesync-server
//! and the official Node server, so the mock answers as the real servers do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use tidesync_engine_suite::transport::{Capabilities, Connection, Setup, TABLE, Target};
use tidesync_transport_mock::{Clock, MockServer};

/// A fresh `MockServer` per case.
struct MockTarget;

#[async_trait]
impl Target for MockTarget {
    fn name(&self) -> String {
        "the mock".to_owned()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            batch: true,
            fixed_clock: true,
        }
    }

    async fn start(&self, setup: &Setup) -> Option<Connection> {
        let server = MockServer::new();
        server.add_table(TABLE);
        server.set_batch_support(true);
        server.set_page_limit(Some(usize::try_from(setup.page_size).unwrap()));
        if setup.fixed_clock {
            server.set_clock(Clock::Fixed(time::macros::datetime!(2026-01-01 12:00 UTC)));
        }
        Some(Connection {
            transport: std::sync::Arc::new(server.transport()),
            keep: Box::new(server),
        })
    }
}

tidesync_engine_suite::transport_conformance!(MockTarget);
