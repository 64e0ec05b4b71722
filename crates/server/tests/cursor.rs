//! The incremental-pull invariant under concurrency: a reader that pages with
//! `updatedAt gt <cursor>` while writers insert and update never misses a row or a change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Client;
use common::cursor::writers_and_reader;
use tidesync_server::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incremental_reader_never_misses_a_row_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let app = Server::builder()
        .sqlite(dir.path().join("c.db"))
        .table("TodoItem")
        .build()
        .await
        .unwrap();
    writers_and_reader(Client {
        router: app.router(),
    })
    .await;
}
