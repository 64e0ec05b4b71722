//! The hostile-input suite, part two: connections held open, read slots exhausted, clients
//! that leave mid-query, change feeds opened by the dozen, and writers racing on
//! PostgreSQL — against the server binary over raw sockets and HTTP, on SQLite and on
//! PostgreSQL. No sleeps: every wait is for something the server does (an answer, a closed
//! socket, a state the database reports), under the harness's bound.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Resp;
use common::hostile::{Backend, Hostile, SECRET, token};
use serde_json::{Value, json};

const T: &str = "/tables/TodoItem";

fn assert_limit(r: &Resp, status: u16, limit: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text);
    assert_eq!(r.body["limit"], limit, "{what}: {}", r.text);
    if status == 503 || status == 429 {
        assert!(r.header("retry-after").is_some(), "{what}: no Retry-After");
    }
}

/// Item 7: a half-sent head, a silent connection, an idle keep-alive connection and a
/// stalled body are closed or answered by their timers; feeds are capped per user and per
/// server; a body of 10 MB of zeros is refused without growing the server.
async fn connections(backend: Backend) {
    let config = format!(
        "[limits]
header_read_timeout_ms = 300
keep_alive_timeout_ms = 300
body_read_timeout_ms = 300
[feed]
heartbeat_ms = 100
max_feeds = 2
max_feeds_per_user = 1
[auth]
jwt_secret = \"{SECRET}\"
[[tables]]
name = \"TodoItem\"
"
    );
    let Some(server) = Hostile::start(backend, "net", &config, &[]).await else {
        return;
    };
    let mut half = server.connect().await;
    Hostile::write_raw(&mut half, b"GET /health HTTP/1.1\r\nhost: x\r\n").await;
    let sent = server
        .attack("a half-sent head", Hostile::until_closed(&mut half))
        .await;
    assert!(sent.is_empty(), "{}", String::from_utf8_lossy(&sent));
    let mut silent = server.connect().await;
    let sent = server
        .attack("a silent connection", Hostile::until_closed(&mut silent))
        .await;
    assert!(sent.is_empty());
    let mut idle = server.connect().await;
    Hostile::write_raw(&mut idle, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let sent = server
        .attack(
            "an idle keep-alive connection",
            Hostile::until_closed(&mut idle),
        )
        .await;
    assert!(
        sent.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&sent)
    );
    let mut stalled = server.connect().await;
    Hostile::write_raw(
        &mut stalled,
        b"POST /tables/TodoItem HTTP/1.1\r\nhost: x\r\nzumo-api-version: 3.0.0\r\n\
          content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"id\":",
    )
    .await;
    let sent = server
        .attack("a stalled body", Hostile::until_closed(&mut stalled))
        .await;
    assert!(
        sent.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&sent)
    );

    // Feeds: one per user here, two per server.
    let feed = |who: &str| {
        format!(
            "/tidesync/v1/feed?tables=TodoItem&access_token={}",
            token(who, json!({}))
        )
    };
    let owned = server;
    let server = &owned;
    let open = |path: String| async move {
        let mut stream = server.connect().await;
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
        Hostile::write_raw(&mut stream, request.as_bytes()).await;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tokio::io::AsyncReadExt::read_exact(&mut stream, &mut byte)
                .await
                .unwrap();
            head.push(byte[0]);
        }
        (String::from_utf8_lossy(&head).into_owned(), stream)
    };
    let (head, alice) = open(feed("sid:alice")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let r = server
        .attack("alice's second feed", server.get(&feed("sid:alice"), &[]))
        .await;
    assert_limit(&r, 429, "feed.max_feeds_per_user", "per user");
    let (head, _bob) = open(feed("sid:bob")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let r = server
        .attack("a third feed", server.get(&feed("sid:carol"), &[]))
        .await;
    assert_limit(&r, 503, "feed.max_feeds", "per server");
    // A feed that goes away frees its place.
    drop(alice);
    loop {
        let (head, stream) = open(feed("sid:carol")).await;
        if head.starts_with("HTTP/1.1 200") {
            drop(stream);
            break;
        }
    }

    // 10 MB of zeros: refused while parsing, long before it becomes 100 million values.
    let zeros = format!(
        "{{\"id\":\"z\",\"list\":[{}0]}}",
        "0,".repeat(5 * 1024 * 1024 - 32)
    );
    let r = server
        .attack(
            "10 MB of zeros",
            server.send(
                "POST",
                T,
                &[("zumo-api-version", "3.0.0")],
                Some(zeros.into_bytes()),
            ),
        )
        .await;
    assert_limit(&r, 413, "limits.max_json_values", "zeros");
    server.assert_memory_bounded("connections");
    owned.finish().await;
}

/// Item 7: past `max_connections` a connection is answered 503 and closed at once.
async fn connection_cap(backend: Backend) {
    let config = "[limits]\nmax_connections = 4\n[[tables]]\nname = \"TodoItem\"\n";
    let Some(server) = Hostile::start(backend, "cap", config, &[]).await else {
        return;
    };
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(server.connect().await);
    }
    let mut extra = server.connect().await;
    let sent = Hostile::until_closed(&mut extra).await;
    let sent = String::from_utf8_lossy(&sent);
    assert!(sent.starts_with("HTTP/1.1 503"), "{sent}");
    assert!(
        sent.contains("retry-after: 1") && sent.contains("limits.max_connections"),
        "{sent}"
    );
    drop(held);
    // The held connections' places come back once the server saw them close.
    loop {
        let mut stream = server.connect().await;
        Hostile::write_raw(
            &mut stream,
            b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        if Hostile::until_closed(&mut stream)
            .await
            .starts_with(b"HTTP/1.1 200")
        {
            break;
        }
    }
    server.finish().await;
}

/// `length(replace(…)) eq 1` of `depth` replaces growing `text` 4 times each.
fn replaces(depth: usize) -> String {
    let mut expr = "text".to_owned();
    for _ in 0..depth {
        expr = format!("replace({expr},'a','aaaa')");
    }
    format!("length({expr})%20eq%201")
}

/// Item 1: reads beyond the read slots answer 503 fast; on PostgreSQL a write still finds a
/// connection and one past the pool waits its bounded time; a read whose client left stops.
async fn slots_and_cancel(backend: Backend) {
    let config = "[batch]
max_operations = 1000
[limits]
query_timeout_ms = 3600000
max_concurrent_reads = 1
queue_timeout_ms = 300
pool_size = 2
max_string_growth = 16384
[[tables]]
name = \"TodoItem\"
";
    let Some(server) = Hostile::start(backend, "slots", config, &[]).await else {
        return;
    };
    server.seed_text_rows(4000, 1024).await;
    // 4,000 rows of 16 MB strings: many minutes of work unless it is stopped (the bound of
    // the wait below is a small part of it).
    let mut heavy = server.connect().await;
    let request = format!(
        "GET {T}?$filter={} HTTP/1.1\r\nhost: x\r\nzumo-api-version: 3.0.0\r\n\r\n",
        replaces(7)
    );
    Hostile::write_raw(&mut heavy, request.as_bytes()).await;
    let probe = format!("{T}?$top=1");
    let busy = server
        .attack("reads past the slots", async {
            loop {
                let r = server.get(&probe, &[]).await;
                if r.status == 503 {
                    return r;
                }
            }
        })
        .await;
    assert_limit(&busy, 503, "limits.max_concurrent_reads", "slots");
    if backend == Backend::Postgres {
        pool_is_bounded(&server).await;
    }
    // The client leaves: its read is stopped and its slot comes back.
    drop(heavy);
    server
        .attack("the slot of a read whose client left", async {
            while server.get(&probe, &[]).await.status != 200 {}
        })
        .await;
    if let Some(schema) = server.schema() {
        let (db, connection) = tokio_postgres::connect(&common::pg_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(connection);
        let running = format!("%{schema}%replace%");
        server
            .attack("the cancelled statement", async {
                loop {
                    let n: i64 = db
                        .query_one(
                            "SELECT count(*) FROM pg_stat_activity
                             WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()",
                            &[&running],
                        )
                        .await
                        .unwrap()
                        .get(0);
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        drop(db);
        let _ = task.await;
    }
    server.assert_memory_bounded("slots");
    server.finish().await;
}

/// PostgreSQL, with the one read slot taken: a write still gets the pool's other connection;
/// with that one held too (a write waiting on a row a raw session locks), the next write
/// waits `queue_timeout_ms` and answers 503.
async fn pool_is_bounded(server: &Hostile) {
    let r = server
        .json("POST", T, &[], &json!({"id": "w1", "text": "x"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let (db, connection) = tokio_postgres::connect(&common::pg_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(connection);
    db.execute(
        "SELECT pg_advisory_lock(hashtextextended('TodoItem/held', 0))",
        &[],
    )
    .await
    .unwrap();
    let blocked = server.spawn_json("POST", T, &json!({"id": "held", "text": "x"}));
    wait_for_lock_waiter(&db, "pg_advisory_xact_lock").await;
    let waiting = server
        .attack(
            "a write past the pool",
            server.json("POST", T, &[], &json!({"id": "w2", "text": "x"})),
        )
        .await;
    assert_limit(&waiting, 503, "limits.queue_timeout_ms", "pool");
    db.execute("SELECT pg_advisory_unlock_all()", &[])
        .await
        .unwrap();
    assert_eq!(blocked.await.unwrap(), 201);
    drop(db);
    let _ = task.await;
}

/// Waits until a server session waits for a lock in a statement containing `statement`.
async fn wait_for_lock_waiter(db: &tokio_postgres::Client, statement: &str) {
    let pattern = format!("%{statement}%");
    loop {
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE $1 AND pid <> pg_backend_pid()",
                &[&pattern],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// Item 5: batches racing over the same rows and tables in opposite orders all answer 200
/// with no op failing; on PostgreSQL a write that a deadlock aborts is run again, and a write
/// that must add a column while a slow read holds the table gives up after its lock timeout
/// without holding up other writers.
async fn contention(backend: Backend) {
    let config = "[limits]
ddl_lock_timeout_ms = 200
[[tables]]
name = \"TodoItem\"
[[tables]]
name = \"Other\"
";
    let Some(server) = Hostile::start(backend, "race", config, &[("RUST_LOG", "info")]).await
    else {
        return;
    };
    for table in ["TodoItem", "Other"] {
        for id in ["k1", "k2"] {
            let r = server
                .json(
                    "POST",
                    &format!("/tables/{table}"),
                    &[],
                    &json!({"id": id, "text": "x"}),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.text);
        }
    }
    let batch = |ops: Vec<(&str, &str)>, tag: String| {
        let ops: Vec<Value> = ops
            .into_iter()
            .enumerate()
            .map(|(n, (table, id))| {
                json!({"id": format!("{tag}-{n}"), "kind": "update", "table": table,
                       "itemId": id, "item": {"text": tag}})
            })
            .collect();
        let server = &server;
        async move { server.batch(ops, &[]).await }
    };
    for round in 0..20 {
        let (a, b, c, d) = tokio::join!(
            batch(
                vec![("TodoItem", "k1"), ("TodoItem", "k2")],
                format!("a{round}")
            ),
            batch(
                vec![("TodoItem", "k2"), ("TodoItem", "k1")],
                format!("b{round}")
            ),
            // No row in common, only the tables, in opposite orders.
            batch(
                vec![("TodoItem", "k1"), ("Other", "k1")],
                format!("c{round}")
            ),
            batch(
                vec![("Other", "k2"), ("TodoItem", "k2")],
                format!("d{round}")
            ),
        );
        for r in [a, b, c, d] {
            assert_eq!(r.status, 200, "round {round}: {}", r.text);
            for result in r.body["results"].as_array().unwrap() {
                assert_eq!(result["status"], 200, "round {round}: {}", r.text);
            }
        }
    }
    if let Some(schema) = server.schema().map(str::to_owned) {
        deadlock_is_retried(&server, &schema).await;
        ddl_gives_up(&server, &schema).await;
    }
    server.finish().await;
}

async fn pg() -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let (client, connection) = tokio_postgres::connect(&common::pg_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, task)
}

/// A raw session holds the table's clock row, the server's write waits for it holding its
/// item lock, and the session then asks for that item lock: a deadlock, which PostgreSQL
/// breaks by aborting the server's write (the session waits longer before it checks). The
/// write runs again and succeeds, and the log names the database's error.
async fn deadlock_is_retried(server: &Hostile, schema: &str) {
    let (raw, raw_task) = pg().await;
    let (probe, probe_task) = pg().await;
    raw.batch_execute(&format!(
        "SET deadlock_timeout = '20s'; BEGIN;
         SELECT clock_ms FROM \"{schema}\"._tidesync_tables WHERE name = 'TodoItem' FOR UPDATE"
    ))
    .await
    .unwrap();
    let write = server.spawn_json("POST", T, &json!({"id": "dl", "text": "x"}));
    wait_for_lock_waiter(&probe, "clock_lock").await;
    raw.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('TodoItem/dl', 0))",
        &[],
    )
    .await
    .expect("the server's write is the deadlock's victim");
    raw.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(write.await.unwrap(), 201);
    let log = server.log();
    assert!(
        log.contains("write run again after contention") && log.contains("40P01"),
        "{log}"
    );
    drop((raw, probe));
    let _ = (raw_task.await, probe_task.await);
}

/// A slow read holds the table; a write that must add a column gives up after
/// `ddl_lock_timeout_ms` (503), and writes that add nothing go on meanwhile.
async fn ddl_gives_up(server: &Hostile, schema: &str) {
    let (raw, raw_task) = pg().await;
    raw.batch_execute(&format!(
        "BEGIN; SELECT count(*) FROM \"{schema}\".\"TodoItem\""
    ))
    .await
    .unwrap();
    let r = server
        .attack(
            "a new column while a read holds the table",
            server.json("POST", T, &[], &json!({"id": "ddl", "brand_new": 1})),
        )
        .await;
    assert_limit(&r, 503, "limits.ddl_lock_timeout_ms", "ddl");
    let r = server
        .json("POST", T, &[], &json!({"id": "plain", "text": "x"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    raw.batch_execute("ROLLBACK").await.unwrap();
    let r = server
        .json("POST", T, &[], &json!({"id": "ddl", "brand_new": 1}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    drop(raw);
    let _ = raw_task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_never_get_a_5xx_on_sqlite() {
    contention(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_never_get_a_5xx_on_postgres() {
    contention(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_bounded_on_sqlite() {
    connections(Backend::Sqlite).await;
    connection_cap(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_bounded_on_postgres() {
    connections(Backend::Postgres).await;
    connection_cap(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_bounded_and_cancelled_on_sqlite() {
    slots_and_cancel(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_bounded_and_cancelled_on_postgres() {
    slots_and_cancel(Backend::Postgres).await;
}
