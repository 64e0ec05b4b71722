//! The change feed (`GET /tidesync/v1/feed`): events for writes (single and batch),
//! coalescing, heartbeats, auth and per-user filtering, shutdown with feeds open, and two
//! servers on one PostgreSQL notifying each other's subscribers. Every wait is bounded.
//!
//! The in-process tests run on a paused tokio clock (`start_paused`; the SQLite store's
//! blocking calls hold it still), so coalescing windows, heartbeats and "nothing more
//! arrives" waits are measured on the virtual clock, the same under any load.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tidesync_server::{Access, App, FeedConfig, Server, ServerBuilder, TableConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tower::ServiceExt;

use common::{Client, SECRET, drop_pg_schema, pg_schema, pg_url, token};

/// An open feed, read in-process from the router's streaming body.
struct Feed {
    body: Body,
    text: String,
}

impl Feed {
    /// Reads until a `change` event arrives (or `wait` passes: `None`).
    async fn next_change(&mut self, wait: Duration) -> Option<Value> {
        let until = Instant::now() + wait;
        loop {
            if let Some(event) = self.take_change() {
                return Some(event);
            }
            let frame = tokio::time::timeout_at(until, self.body.frame())
                .await
                .ok()?;
            let frame = frame?.unwrap();
            if let Ok(data) = frame.into_data() {
                self.text.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }

    /// Every change event within `wait`.
    async fn changes_within(&mut self, wait: Duration) -> Vec<Value> {
        let until = Instant::now() + wait;
        let mut all = Vec::new();
        while let Some(event) = self
            .next_change(until.saturating_duration_since(Instant::now()))
            .await
        {
            all.push(event);
        }
        all
    }

    /// Takes the first complete `change` event out of the buffer.
    fn take_change(&mut self) -> Option<Value> {
        loop {
            let end = self.text.find("\n\n")?;
            let block: String = self.text.drain(..end + 2).collect();
            if block.lines().any(|l| l == "event: change") {
                let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
                return Some(serde_json::from_str(data).unwrap());
            }
        }
    }
}

async fn open(router: &Router, path: &str, headers: &[(&str, &str)]) -> (u16, Feed) {
    let mut request = Request::builder().uri(path).header("host", "127.0.0.1");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    if status == 200 {
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
    }
    (
        status,
        Feed {
            body: response.into_body(),
            text: String::new(),
        },
    )
}

fn builder(dir: &tempfile::TempDir) -> ServerBuilder {
    Server::builder()
        .sqlite(dir.path().join("feed.db"))
        .table("TodoItem")
        .table("Other")
        .table_config(TableConfig::new("Mine").access(Access::Owner))
        .table_config(TableConfig::new("Private").access(Access::Authenticated))
        .jwt_secret(SECRET)
}

async fn insert(client: &Client, table: &str, id: &str, auth: &[(&str, &str)]) -> Value {
    let resp = client
        .v3(
            "POST",
            &format!("/tables/{table}"),
            auth,
            Some(json!({"id": id, "text": id})),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    resp.body
}

const QUIET: Duration = Duration::from_millis(300);
const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(start_paused = true)]
async fn the_feed_tells_of_each_write_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let app = builder(&dir).build().await.unwrap();
    let client = Client {
        router: app.router(),
    };
    let (status, mut feed) = open(&app.router(), "/tidesync/v1/feed?tables=TodoItem", &[]).await;
    assert_eq!(status, 200);
    let stored = insert(&client, "TodoItem", "a1", &[]).await;
    let event = feed.next_change(WAIT).await.expect("an event");
    assert_eq!(
        event,
        json!({"table": "TodoItem", "updatedAt": stored["updatedAt"], "id": "a1"})
    );
    // Other tables are not announced on this feed; deletes (tombstones) are.
    insert(&client, "Other", "o1", &[]).await;
    let resp = client.v3("DELETE", "/tables/TodoItem/a1", &[], None).await;
    assert_eq!(resp.status, 204);
    let event = feed.next_change(WAIT).await.expect("the delete");
    assert_eq!(event["table"], "TodoItem");
    assert_eq!(event["id"], "a1");
    // The same millisecond, or a later one: the clock never runs ahead of the wall.
    assert!(event["updatedAt"].as_str() >= stored["updatedAt"].as_str());
    assert!(feed.changes_within(QUIET).await.is_empty());
}

/// On a paused clock (the store's blocking calls hold it still), so the coalescing window
/// is measured exactly: the first change goes out at once, the rest of the burst one window
/// later, as one event with the newest position.
#[tokio::test(start_paused = true)]
async fn a_burst_is_coalesced_into_one_event_a_window_later_carrying_the_newest_position() {
    let dir = tempfile::tempdir().unwrap();
    let window = Duration::from_millis(300);
    let app = builder(&dir)
        .feed(FeedConfig {
            coalesce_ms: 300,
            ..FeedConfig::default()
        })
        .build()
        .await
        .unwrap();
    let client = Client {
        router: app.router(),
    };
    let (_, mut feed) = open(
        &app.router(),
        "/tidesync/v1/feed?tables=TodoItem,Other",
        &[],
    )
    .await;
    let mut last = Value::Null;
    for i in 0..20 {
        last = insert(&client, "TodoItem", &format!("r{i:02}"), &[]).await;
    }
    insert(&client, "Other", "o", &[]).await;
    let mut events = Vec::new();
    let start = Instant::now();
    while let Some(event) = feed.next_change(window * 4).await {
        events.push((start.elapsed(), event));
    }
    let todo: Vec<&(Duration, Value)> = events
        .iter()
        .filter(|(_, e)| e["table"] == "TodoItem")
        .collect();
    assert_eq!(todo.len(), 2, "20 writes: {events:?}");
    assert_eq!(todo[0].1["id"], "r00", "the first goes out at once");
    assert_eq!(todo[0].0, Duration::ZERO);
    assert_eq!(todo[1].1["id"], "r19", "then the newest, for the rest");
    assert_eq!(todo[1].1["updatedAt"], last["updatedAt"]);
    assert!(
        todo[1].0 >= window && todo[1].0 <= window + Duration::from_millis(1),
        "one window later: {:?}",
        todo[1].0
    );
    let other: Vec<_> = events
        .iter()
        .filter(|(_, e)| e["table"] == "Other")
        .collect();
    assert_eq!(other.len(), 1, "{events:?}");
    assert_eq!(other[0].0, Duration::ZERO, "another table is not held back");
}

#[tokio::test(start_paused = true)]
async fn owner_tables_tell_each_user_of_their_own_rows_only() {
    let dir = tempfile::tempdir().unwrap();
    let app = builder(&dir).build().await.unwrap();
    let client = Client {
        router: app.router(),
    };
    let alice = token("alice");
    let bob = token("bob");
    let (status, mut alice_feed) = open(
        &app.router(),
        "/tidesync/v1/feed?tables=Mine",
        &[("x-zumo-auth", &alice)],
    )
    .await;
    assert_eq!(status, 200);
    // Bob uses the query parameter, as a browser EventSource would.
    let (status, mut bob_feed) = open(
        &app.router(),
        &format!("/tidesync/v1/feed?tables=Mine&access_token={bob}"),
        &[],
    )
    .await;
    assert_eq!(status, 200);

    let bobs = insert(&client, "Mine", "b1", &[("x-zumo-auth", &bob)]).await;
    let event = bob_feed
        .next_change(WAIT)
        .await
        .expect("bob hears of his row");
    assert_eq!(event["id"], "b1");
    assert_eq!(event["updatedAt"], bobs["updatedAt"]);
    assert!(
        alice_feed.changes_within(QUIET).await.is_empty(),
        "alice is not told of bob's row"
    );

    insert(&client, "Mine", "a1", &[("x-zumo-auth", &alice)]).await;
    let event = alice_feed.next_change(WAIT).await.expect("alice hears");
    assert_eq!(event["id"], "a1");
    assert!(bob_feed.changes_within(QUIET).await.is_empty());
}

#[tokio::test]
async fn the_feed_is_authenticated_like_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let app = builder(&dir).api_key("k3y").build().await.unwrap();
    let router = app.router();
    let key = [("x-api-key", "k3y")];
    let alice = token("alice");
    let bearer = format!("Bearer {alice}");
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case<'_>> = vec![
        ("/tidesync/v1/feed?tables=TodoItem".into(), vec![], 401),
        (
            "/tidesync/v1/feed?tables=TodoItem&api_key=nope".into(),
            vec![],
            401,
        ),
        (
            "/tidesync/v1/feed?tables=TodoItem&api_key=k3y".into(),
            vec![],
            200,
        ),
        (
            "/tidesync/v1/feed?tables=TodoItem".into(),
            key.to_vec(),
            200,
        ),
        ("/tidesync/v1/feed".into(), key.to_vec(), 400),
        // Without a token an unknown table looks like one that needs a user.
        ("/tidesync/v1/feed?tables=Nope".into(), key.to_vec(), 401),
        (
            format!("/tidesync/v1/feed?tables=Nope&access_token={alice}"),
            key.to_vec(),
            404,
        ),
        (
            "/tidesync/v1/feed?tables=TodoItem,Private".into(),
            key.to_vec(),
            401,
        ),
        ("/tidesync/v1/feed?tables=Mine".into(), key.to_vec(), 401),
        (
            "/tidesync/v1/feed?tables=Mine&access_token=garbage".into(),
            key.to_vec(),
            401,
        ),
        (
            format!("/tidesync/v1/feed?tables=Private,Mine&access_token={alice}"),
            key.to_vec(),
            200,
        ),
        (
            "/tidesync/v1/feed?tables=private".into(),
            vec![("x-api-key", "k3y"), ("authorization", &bearer)],
            200,
        ),
    ];
    for (path, headers, expected) in cases {
        let (status, _) = open(&router, &path, &headers).await;
        assert_eq!(status, expected, "{path} {headers:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn batch_writes_are_announced_after_the_batch_commits() {
    let dir = tempfile::tempdir().unwrap();
    let app = builder(&dir).build().await.unwrap();
    let client = Client {
        router: app.router(),
    };
    let (_, mut feed) = open(&app.router(), "/tidesync/v1/feed?tables=TodoItem", &[]).await;
    let ops = json!({"operations": [
        {"id": "op1", "kind": "insert", "table": "TodoItem", "itemId": "x1", "item": {"id": "x1"}},
        {"id": "op2", "kind": "insert", "table": "TodoItem", "itemId": "x2", "item": {"id": "x2"}},
    ]});
    let resp = client
        .send(
            "POST",
            "/tidesync/v1/batch",
            &[("content-type", "application/json")],
            Some(&ops.to_string()),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    let events = feed.changes_within(Duration::from_millis(500)).await;
    assert_eq!(events.last().expect("an event")["id"], "x2", "{events:?}");
}

/// On a paused clock: the heartbeats come on the virtual clock, whatever the load.
#[tokio::test(start_paused = true)]
async fn idle_feeds_get_heartbeats_and_the_capabilities_advertise_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let app = builder(&dir)
        .feed(FeedConfig {
            heartbeat_ms: 50,
            ..FeedConfig::default()
        })
        .build()
        .await
        .unwrap();
    let (_, mut feed) = open(&app.router(), "/tidesync/v1/feed?tables=TodoItem", &[]).await;
    assert!(
        feed.changes_within(Duration::from_millis(200))
            .await
            .is_empty()
    );
    // Blocks without an event: the greeting and the heartbeats, all comments.
    let mut text = feed.text.clone();
    let until = Instant::now() + Duration::from_millis(200);
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(until, feed.body.frame()).await {
        text.push_str(&String::from_utf8_lossy(&frame.into_data().unwrap()));
    }
    assert!(
        text.contains(":heartbeat") || text.contains(": heartbeat"),
        "{text:?}"
    );

    let client = Client {
        router: app.router(),
    };
    let caps = client
        .send("GET", "/tidesync/v1/capabilities", &[], None)
        .await;
    assert_eq!(caps.body["extensions"]["feed"]["path"], "/tidesync/v1/feed");
    assert_eq!(caps.body["extensions"]["feed"]["heartbeatMilliseconds"], 50);
    assert_eq!(
        caps.body["extensions"]["feed"]["tokenParameter"],
        "access_token"
    );
}

#[tokio::test]
async fn shutdown_ends_open_feeds_instead_of_waiting_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = builder(&dir).bind("127.0.0.1:0").start().await.unwrap();
    let mut socket = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    socket
        .write_all(b"GET /tidesync/v1/feed?tables=TodoItem HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, socket.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::timeout(WAIT, server.shutdown())
        .await
        .expect("shutdown finishes with a feed open")
        .unwrap();
    // The stream ended: the socket reaches its end.
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, socket.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
}

async fn pg_app(schema: &str) -> App {
    Server::builder()
        .postgres(pg_url(), Some(schema.to_owned()))
        .table("TodoItem")
        .table_config(TableConfig::new("Mine").access(Access::Owner))
        .jwt_secret(SECRET)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_both_notify() {
    let Some(schema) = pg_schema("feed").await else {
        return;
    };
    let one = pg_app(&schema).await;
    let two = pg_app(&schema).await;
    let (c1, c2) = (
        Client {
            router: one.router(),
        },
        Client {
            router: two.router(),
        },
    );
    let path = "/tidesync/v1/feed?tables=TodoItem";
    let (_, mut f1) = open(&one.router(), path, &[]).await;
    let (_, mut f2) = open(&two.router(), path, &[]).await;

    let stored = insert(&c2, "TodoItem", "via-two", &[]).await;
    for feed in [&mut f1, &mut f2] {
        let event = feed.next_change(WAIT).await.expect("both servers tell");
        assert_eq!(event["id"], "via-two");
        assert_eq!(event["updatedAt"], stored["updatedAt"]);
    }
    insert(&c1, "TodoItem", "via-one", &[]).await;
    for feed in [&mut f1, &mut f2] {
        let event = feed.next_change(WAIT).await.expect("both servers tell");
        assert_eq!(event["id"], "via-one");
    }

    // Owner filtering holds across servers too.
    let alice = token("alice");
    let bob = token("bob");
    let (_, mut alice_feed) = open(
        &one.router(),
        &format!("/tidesync/v1/feed?tables=Mine&access_token={alice}"),
        &[],
    )
    .await;
    insert(&c2, "Mine", "b1", &[("x-zumo-auth", &bob)]).await;
    insert(&c2, "Mine", "a1", &[("x-zumo-auth", &alice)]).await;
    let events = alice_feed.changes_within(Duration::from_millis(800)).await;
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e["id"] == "a1"), "{events:?}");

    // A third server on the same schema installs nothing twice and starts fine.
    let three = pg_app(&schema).await;
    drop((one, two, three));
    drop_pg_schema(&schema).await;
}
