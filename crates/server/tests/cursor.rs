//! The incremental-pull invariant under concurrency: a reader that pages with
//! `updatedAt gt <cursor>` while writers insert and update never misses a row or a change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Client;
use common::cursor::writers_and_reader;
use serde_json::json;
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

/// The case the concurrent test can only hope to hit, made certain on PostgreSQL: with the
/// table clock ahead of the wall (as a database stamped by an older server has it), every
/// write shares one stamp `T`. A write of `a` takes its stamp `T` and is held before its
/// commit (a raw transaction holds the same id); a reader then must not return `(T, b)`,
/// which `b` committed before: after the cursor passed it, `(T, a)` would never be read.
/// Once the wall clock passes `T`, both rows are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_does_not_pass_a_stamp_a_write_still_holds_on_postgres() {
    let Some(schema) = common::pg_schema("horizon").await else {
        return;
    };
    let app = Server::builder()
        .postgres(common::pg_url(), Some(schema.clone()))
        .table("TodoItem")
        .build()
        .await
        .unwrap();
    let c = Client {
        router: app.router(),
    };
    let (mut db, connection) = tokio_postgres::connect(&common::pg_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    db.execute(
        &format!(
            "UPDATE \"{schema}\"._tidesync_tables SET clock_ms =
               floor(extract(epoch from clock_timestamp()) * 1000)::bigint + 2000"
        ),
        &[],
    )
    .await
    .unwrap();
    let b = c
        .v3(
            "POST",
            "/tables/TodoItem",
            &[],
            Some(json!({"id": "b", "text": "b"})),
        )
        .await;
    assert_eq!(b.status, 201, "{}", b.text);
    let held = db.transaction().await.unwrap();
    held.execute(
        &format!(
            "INSERT INTO \"{schema}\".\"TodoItem\" (\"id\", \"createdAt\", \"updatedAt\", \"version\")
             VALUES ('a', 0, 0, 0)"
        ),
        &[],
    )
    .await
    .unwrap();
    let writer = {
        let c = c.clone();
        tokio::spawn(async move {
            c.v3(
                "POST",
                "/tables/TodoItem",
                &[],
                Some(json!({"id": "a", "text": "a"})),
            )
            .await
        })
    };
    // Wait until the server's insert of `a` waits on the held one (it has its stamp then).
    let (probe, probe_connection) =
        tokio_postgres::connect(&common::pg_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
    let probe_connection = tokio::spawn(probe_connection);
    loop {
        let waiting: i64 = probe
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO%TodoItem%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let read = c
        .v3("GET", "/tables/TodoItem?$orderby=updatedAt,id", &[], None)
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert!(
        read.ids().is_empty(),
        "a row sharing the stamp of a write in flight was returned: {}",
        read.text
    );
    held.rollback().await.unwrap();
    let a = writer.await.unwrap();
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.body["updatedAt"], b.body["updatedAt"], "one shared stamp");
    // Rows at `T` are held back until the wall clock passes `T` (no write can take `T` after
    // that): wait for the time itself, which is what is under test here.
    let stamp = tidesync_protocol::parse_timestamp(b.body["updatedAt"].as_str().unwrap()).unwrap();
    wait_until_wall_clock_passes(stamp).await;
    let read = c
        .v3("GET", "/tables/TodoItem?$orderby=updatedAt,id", &[], None)
        .await;
    assert_eq!(read.ids(), ["a", "b"], "{}", read.text);
    drop((db, probe));
    let _ = (connection.await, probe_connection.await);
    common::drop_pg_schema(&schema).await;
}

/// Waits until the wall clock is past `at` (the server's horizon is the wall clock, so time
/// itself is what the caller waits for).
async fn wait_until_wall_clock_passes(at: time::OffsetDateTime) {
    loop {
        let left = at - time::OffsetDateTime::now_utc() + time::Duration::milliseconds(2);
        if !left.is_positive() {
            return;
        }
        tokio::time::sleep(left.unsigned_abs()).await;
    }
}
