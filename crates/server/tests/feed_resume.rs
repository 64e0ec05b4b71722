//! The change feed over real sockets (the accept loop serves feeds itself): resuming with
//! `Last-Event-ID` (or `last_event_id`) sends only what was missed, a foreign or stale id
//! gets a resync, the replay is filtered by the caller's grant (a tenant scope, checked
//! per row), a reconnect storm is answered 503 + `Retry-After`, a client that stops
//! reading is dropped without the server holding more for it, and bad feed request heads get
//! a 4xx. Every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tidesync_server::{Access, ColumnType, FeedConfig, RunningServer, Server, TableConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

async fn start(dir: &tempfile::TempDir, feed: FeedConfig) -> RunningServer {
    Server::builder()
        .sqlite(dir.path().join("resume.db"))
        .table("TodoItem")
        .table("Other")
        .feed(feed)
        .bind("127.0.0.1:0")
        .start()
        .await
        .unwrap()
}

/// A raw feed socket and what it has read.
struct Feed {
    socket: TcpStream,
    text: String,
}

/// One SSE event block.
#[derive(Debug)]
struct Event {
    id: Option<String>,
    data: Value,
}

impl Feed {
    /// Opens `path` with extra header lines; returns the status line and the feed.
    async fn open(addr: SocketAddr, path: &str, extra: &str) -> (String, Feed) {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{extra}\r\n").as_bytes())
            .await
            .unwrap();
        let mut feed = Feed {
            socket,
            text: String::new(),
        };
        feed.read_until(|t| t.contains("\r\n\r\n")).await;
        let status = feed.text.lines().next().unwrap_or_default().to_owned();
        (status, feed)
    }

    async fn read_until(&mut self, done: impl Fn(&str) -> bool) {
        let until = tokio::time::Instant::now() + WAIT;
        while !done(&self.text) {
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout_at(until, self.socket.read(&mut buf))
                .await
                .expect("bounded wait")
                .unwrap();
            assert!(n > 0, "the feed closed: {:?}", self.text);
            self.text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    /// The next `change` event.
    async fn next_change(&mut self) -> Event {
        self.read_until(|t| t.contains("event: change") && t.contains("}\n\n"))
            .await;
        let start = self.text.find("event: change").unwrap();
        // The block starts at the `id:` line before `event:`, if any.
        let block_start = self.text[..start].rfind("\n\n").map_or(0, |at| at + 2);
        let end = start + self.text[start..].find("\n\n").unwrap() + 2;
        let block: String = self.text.drain(..end).collect();
        let block = &block[block_start.min(block.len())..];
        let id = block
            .lines()
            .find_map(|l| l.strip_prefix("id: "))
            .map(str::to_owned);
        let data = block
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap();
        Event {
            id,
            data: serde_json::from_str(data).unwrap(),
        }
    }
}

async fn insert(url: &str, table: &str, id: &str) {
    let answer = reqwest::Client::new()
        .post(format!("{url}/tables/{table}"))
        .header("ZUMO-API-VERSION", "3.0.0")
        .json(&json!({"id": id, "text": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
}

#[tokio::test]
async fn a_resumed_feed_is_sent_only_what_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, FeedConfig::default()).await;
    let url = server.url();
    let path = "/tidesync/v1/feed?tables=TodoItem,Other";
    let (status, mut feed) = Feed::open(server.addr(), path, "").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    insert(&url, "TodoItem", "a").await;
    let seen = feed.next_change().await;
    assert_eq!(seen.data["id"], "a");
    let last = seen.id.expect("change events carry an id");
    drop(feed);

    // Away: one change to each table, two to TodoItem.
    insert(&url, "TodoItem", "b").await;
    insert(&url, "Other", "o").await;
    insert(&url, "TodoItem", "c").await;
    let (status, mut feed) =
        Feed::open(server.addr(), path, &format!("last-event-id: {last}\r\n")).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut missed = [feed.next_change().await, feed.next_change().await];
    missed.sort_by_key(|e| e.data["table"].as_str().unwrap().to_owned());
    // One event per table, at its newest change; nothing from before `last`.
    assert_eq!(missed[0].data["table"], "Other");
    assert_eq!(missed[0].data["id"], "o");
    assert_eq!(missed[1].data["table"], "TodoItem");
    assert_eq!(missed[1].data["id"], "c");
    let newest = missed[1].id.clone().unwrap();
    drop(feed);

    // Resumed at the newest: the first event is the next write, not a replay.
    let query = format!("{path}&last_event_id={newest}");
    let (_, mut feed) = Feed::open(server.addr(), &query, "").await;
    insert(&url, "Other", "o2").await;
    let next = feed.next_change().await;
    assert_eq!(next.data["id"], "o2", "{next:?}");
    server.shutdown().await.unwrap();
}

/// The HS256 secret of the tenant test's server.
const SECRET: &str = "feed-resume-secret-of-at-least-32-bytes";

/// A token for `sub` in tenant `tid`.
fn tenant_token(sub: &str, tid: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({
        "sub": sub, "tid": tid, "iat": now, "exp": now + 3600,
        "aud": "urn:microsoft:windows-azure:zumo", "iss": "urn:microsoft:windows-azure:zumo",
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn insert_as(url: &str, token: &str, id: &str) {
    let answer = reqwest::Client::new()
        .post(format!("{url}/tables/Tasks"))
        .header("ZUMO-API-VERSION", "3.0.0")
        .header("x-zumo-auth", token)
        .json(&json!({"id": id, "text": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
}

/// A tenant-scoped feed resumed with `Last-Event-ID` is replayed only its tenant's rows:
/// the replay goes through the same per-row grant check as live delivery (a tenant scope
/// is not carried by the change, so the row is read).
#[tokio::test]
async fn a_resumed_feed_replays_only_rows_the_grant_admits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .sqlite(dir.path().join("tenants.db"))
        .table_config(
            TableConfig::new("Tasks")
                .access(Access::Authenticated)
                .column("text", ColumnType::String)
                .scope("tenantId", "tid"),
        )
        .jwt_secret(SECRET)
        .bind("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let url = server.url();
    let (t1, t2) = (tenant_token("alice", "t1"), tenant_token("bob", "t2"));
    let path = "/tidesync/v1/feed?tables=Tasks";
    let auth = format!("x-zumo-auth: {t1}\r\n");
    let (status, mut feed) = Feed::open(server.addr(), path, &auth).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    insert_as(&url, &t1, "a1").await;
    let seen = feed.next_change().await;
    assert_eq!(seen.data["id"], "a1");
    let last = seen.id.expect("change events carry an id");
    drop(feed);

    // Away: a row of t1, then a newer one of t2.
    insert_as(&url, &t1, "a2").await;
    insert_as(&url, &t2, "b1").await;
    let resume = format!("{auth}last-event-id: {last}\r\n");
    let (status, mut feed) = Feed::open(server.addr(), path, &resume).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // One event for the table, at t1's newest row, not at the newer row of t2.
    let missed = feed.next_change().await;
    assert_eq!(missed.data["id"], "a2", "{missed:?}");
    // Live, too: t2's write is not told; the next event is t1's next row.
    insert_as(&url, &t2, "b2").await;
    insert_as(&url, &t1, "a3").await;
    let next = feed.next_change().await;
    assert_eq!(next.data["id"], "a3", "{next:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_foreign_or_stale_id_gets_a_resync_of_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        &dir,
        FeedConfig {
            replay_events: 2,
            ..FeedConfig::default()
        },
    )
    .await;
    let url = server.url();
    let path = "/tidesync/v1/feed?tables=TodoItem,Other";
    // Another server's (or a restarted one's) id, and garbage.
    for id in ["1.1", "not-an-id"] {
        let (status, mut feed) =
            Feed::open(server.addr(), path, &format!("last-event-id: {id}\r\n")).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut tables = [feed.next_change().await, feed.next_change().await];
        tables.sort_by_key(|e| e.data["table"].as_str().unwrap().to_owned());
        assert_eq!(tables[0].data, json!({"table": "Other"}));
        assert_eq!(tables[1].data, json!({"table": "TodoItem"}));
    }
    // Away for more changes than the server keeps: a resync, not a partial replay.
    let (_, mut feed) = Feed::open(server.addr(), "/tidesync/v1/feed?tables=TodoItem", "").await;
    insert(&url, "TodoItem", "a").await;
    let last = feed.next_change().await.id.unwrap();
    drop(feed);
    for id in ["b", "c", "d"] {
        insert(&url, "TodoItem", id).await;
    }
    let (_, mut feed) = Feed::open(
        server.addr(),
        "/tidesync/v1/feed?tables=TodoItem",
        &format!("last-event-id: {last}\r\n"),
    )
    .await;
    assert_eq!(feed.next_change().await.data, json!({"table": "TodoItem"}));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_reconnect_storm_is_answered_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        &dir,
        FeedConfig {
            max_feeds_per_user: 100,
            max_opens_per_sec: 3,
            ..FeedConfig::default()
        },
    )
    .await;
    let mut open = Vec::new();
    let mut refused = None;
    // 3 a second: 30 opens in a row cannot all fit.
    for _ in 0..30 {
        let (status, feed) =
            Feed::open(server.addr(), "/tidesync/v1/feed?tables=TodoItem", "").await;
        if status.starts_with("HTTP/1.1 503") {
            refused = Some(feed);
            break;
        }
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        open.push(feed);
    }
    let mut refused = refused.expect("a storm is refused");
    refused.read_until(|t| t.contains("}")).await;
    let text = refused.text.to_lowercase();
    assert!(text.contains("retry-after: 1\r\n"), "{text}");
    assert!(text.contains("feed.max_opens_per_sec"), "{text}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_feed_request_heads_get_a_4xx_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, FeedConfig::default()).await;
    // No tables named.
    let (status, _) = Feed::open(server.addr(), "/tidesync/v1/feed", "").await;
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    // A head larger than the feed path reads.
    let big = format!("x-big: {}\r\n", "a".repeat(20_000));
    let (status, _) = Feed::open(server.addr(), "/tidesync/v1/feed?tables=TodoItem", &big).await;
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
    // Not HTTP at all after the prefix.
    let mut socket = TcpStream::connect(server.addr()).await.unwrap();
    socket
        .write_all(b"GET /tidesync/v1/feed \x00\x01\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, socket.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 400"), "{answer:?}");
    server.shutdown().await.unwrap();
}

/// Inserts `count` rows with long ids (large events) through one batch request.
async fn insert_many(url: &str, from: usize, count: usize) {
    let long = "x".repeat(240);
    let operations: Vec<Value> = (from..from + count)
        .map(|n| {
            json!({"id": format!("op-{n}"), "kind": "insert", "table": "TodoItem",
                   "itemId": format!("{long}{n}"), "item": {"text": "t"}})
        })
        .collect();
    let answer = reqwest::Client::new()
        .post(format!("{url}/tidesync/v1/batch"))
        .json(&json!({ "operations": operations }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}

async fn metric(url: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{url}/tidesync/v1/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        &dir,
        FeedConfig {
            coalesce_ms: 0,
            write_timeout_ms: 100,
            ..FeedConfig::default()
        },
    )
    .await;
    let url = server.url();
    // A client that never reads after the head.
    let (_, mut feed) = Feed::open(server.addr(), "/tidesync/v1/feed?tables=TodoItem", "").await;
    assert_eq!(metric(&url, "tidesync_feeds_open").await, 1.0);
    // Write until the server gives up on it: its socket buffers fill, a write waits past
    // write_timeout_ms, the feed is closed and counted as dropped. Bounded: a server that
    // kept the feed would fail the assertion below after 200 batches (some 60 MB of events).
    let mut batches = 0;
    while metric(&url, "tidesync_feeds_open").await > 0.0 {
        batches += 1;
        assert!(batches <= 200, "the server kept a client that never reads");
        insert_many(&url, batches * 1000, 1000).await;
    }
    assert!(metric(&url, "tidesync_feed_events_dropped_total").await >= 1.0);
    // The feed ended: reading drains what the kernel held, then the end.
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, feed.socket.read_to_end(&mut rest))
        .await
        .expect("the server closed the slow feed")
        .ok();
    server.shutdown().await.unwrap();
}
