//! The transport conformance suite (`tidesync-engine-suite`) through `HttpTransport`:
//! against tidesync-server (in-process, SQLite) over v3, v2 and `Auto` (which adds the
//! batch extension), and against the official Azure Mobile Apps Node server (npm
//! `azure-mobile-apps`, run by `tidesync-peers`; skipped with a message without Node.js,
//! failing under `CI=true`). `tidesync-transport-mock`'s `tests/conformance.rs` runs the
//! same cases against the mock, so the mock is held to these servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tidesync_engine_suite::transport::{Capabilities, Connection, Setup, TABLE, Target};
use tidesync_peers::{ColumnKind, NodeEnv, OfficialNodeServer, TableSpec};
use tidesync_server::Server;
use tidesync_transport_http::{HttpTransport, Protocol, RetryPolicy};

fn http(url: &str, protocol: Protocol) -> Arc<HttpTransport> {
    let transport = HttpTransport::builder(url)
        .protocol(protocol)
        .timeout(Duration::from_secs(20))
        .retry(RetryPolicy {
            max_retries: 0,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(5),
        })
        .build()
        .unwrap();
    Arc::new(transport)
}

/// tidesync-server on a loopback port with a fresh SQLite file per case.
struct Tidesync(Protocol);

#[async_trait]
impl Target for Tidesync {
    fn name(&self) -> String {
        format!("tidesync-server over {:?}", self.0)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            batch: self.0 == Protocol::Auto,
            fixed_clock: false,
        }
    }

    async fn start(&self, setup: &Setup) -> Option<Connection> {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::builder()
            .sqlite(dir.path().join("server.db"))
            .table(TABLE)
            .page_size(setup.page_size)
            .bind("127.0.0.1:0")
            .start()
            .await
            .unwrap();
        let transport = http(&server.url(), self.0);
        Some(Connection {
            transport,
            keep: Box::new((server, dir)),
        })
    }
}

/// The official Node server (v2 only, no tidesync extensions), one process per case.
struct Official;

#[async_trait]
impl Target for Official {
    fn name(&self) -> String {
        "the official Node server over V2".to_owned()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    async fn start(&self, setup: &Setup) -> Option<Connection> {
        let node = NodeEnv::get().await.unwrap()?;
        let table = TableSpec::new(TABLE)
            .column("text", ColumnKind::String)
            .column("n", ColumnKind::Number)
            .column("done", ColumnKind::Boolean);
        let server = OfficialNodeServer::builder()
            .table(table)
            .page_size(setup.page_size)
            .start(node)
            .await
            .unwrap();
        let transport = http(server.url(), Protocol::V2);
        Some(Connection {
            transport,
            keep: Box::new(server),
        })
    }
}

mod tidesync_v3 {
    tidesync_engine_suite::transport_conformance!(super::Tidesync(super::Protocol::V3));
}

mod tidesync_v2 {
    tidesync_engine_suite::transport_conformance!(super::Tidesync(super::Protocol::V2));
}

mod tidesync_auto {
    tidesync_engine_suite::transport_conformance!(super::Tidesync(super::Protocol::Auto));
}

mod official {
    tidesync_engine_suite::transport_conformance!(super::Official);
}
