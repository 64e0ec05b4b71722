//! The spec's golden exchanges (§11, 1–50) against the SQLite store, in-process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, golden, golden_builder};

#[tokio::test]
async fn golden_exchanges_on_sqlite() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let app = golden_builder()
        .sqlite(dir.path().join("golden.db"))
        .build()
        .await
        .unwrap();
    let client = Client {
        router: app.router(),
    };
    let done = golden::run(&client).await;
    assert_eq!(done, (1..=50).collect::<Vec<u32>>());
}
