//! `App::router()` inside a host axum app: merged next to the host's routes and fallback
//! (which used to panic), nested under a prefix (links and `Location` keep the prefix),
//! tombstones purged without `serve()`, and a host's graceful shutdown that finishes while
//! a change feed is open.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serde_json::json;
use tidesync_server::{App, Server};

use common::Client;

async fn app(dir: &tempfile::TempDir) -> App {
    Server::builder()
        .sqlite(dir.path().join("embed.db"))
        .table("TodoItem")
        .page_size(2)
        .tombstone_retention(Duration::from_secs(1))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn merged_next_to_host_routes_and_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    let host = Router::new()
        .route("/hello", get(|| async { "hello from the host" }))
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "host fallback") })
        .merge(app.router());
    let c = Client { router: host };
    assert_eq!(
        c.send("GET", "/hello", &[], None).await.text,
        "hello from the host"
    );
    let r = c.send("GET", "/elsewhere", &[], None).await;
    assert_eq!((r.status, r.text.as_str()), (404, "host fallback"));
    let r = c
        .v3(
            "POST",
            "/tables/TodoItem",
            &[],
            Some(json!({"id": "a", "text": "a"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = c.send("GET", "/tidesync/v1/nope", &[], None).await;
    assert_eq!(r.status, 404);
    assert!(
        r.body["error"].is_string(),
        "the server's own JSON 404: {}",
        r.text
    );
    assert_eq!(c.send("GET", "/health", &[], None).await.status, 200);
}

#[tokio::test]
async fn nested_under_a_prefix_links_keep_it() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    let c = Client {
        router: Router::new().nest("/sync", app.router()),
    };
    for id in ["a", "b", "c"] {
        let r = c
            .v3(
                "POST",
                "/sync/tables/TodoItem",
                &[],
                Some(json!({"id": id})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(
            r.header("location").unwrap(),
            format!("http://127.0.0.1:8080/sync/tables/TodoItem/{id}")
        );
    }
    let r = c.v2("GET", "/sync/tables/TodoItem", &[], None).await;
    let link = r.header("link").expect("a next link");
    assert!(
        link.starts_with("http://127.0.0.1:8080/sync/tables/TodoItem?"),
        "{link}"
    );
}

/// Reads with tombstones until `id` is gone (the purge runs on the wall clock); 15 s bound.
async fn wait_until_purged(c: &Client, id: &str) {
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let page = c
            .v3("GET", "/tables/TodoItem?__includedeleted=true", &[], None)
            .await;
        if !page.ids().contains(&id.to_owned()) {
            return;
        }
        assert!(tokio::time::Instant::now() < until, "{id} was not purged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// Multi-threaded: the purge task may first run on another worker at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_are_purged_without_serve() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    let c = Client {
        router: Router::new().merge(app.router()),
    };
    let r = c
        .v3("POST", "/tables/TodoItem", &[], Some(json!({"id": "gone"})))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        c.v3("DELETE", "/tables/TodoItem/gone", &[], None)
            .await
            .status,
        204
    );
    wait_until_purged(&c, "gone").await;
    let h = c
        .send("GET", "/tidesync/v1/tables/TodoItem/horizon", &[], None)
        .await;
    assert!(h.body["purgedBefore"].is_string(), "{}", h.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_graceful_shutdown_ends_open_feeds() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    let host = Router::new()
        .route("/hello", get(|| async { "hi" }))
        .merge(app.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = app.graceful_shutdown(async move {
        let _ = stopped.await;
    });
    let server = tokio::spawn(async move {
        axum::serve(listener, host)
            .with_graceful_shutdown(signal)
            .await
    });
    let client = reqwest::Client::new();
    let mut feed = client
        .get(format!("http://{addr}/tidesync/v1/feed?tables=TodoItem"))
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    // The greeting arrives: the feed is open.
    let first = tokio::time::timeout(Duration::from_secs(10), feed.chunk())
        .await
        .unwrap()
        .unwrap();
    assert!(first.is_some());
    stop.send(()).unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(10), server).await;
    assert!(
        matches!(finished, Ok(Ok(Ok(())))),
        "the host's graceful shutdown finished with a feed open: {finished:?}"
    );
    // The feed's body ended rather than hanging.
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = feed.chunk().await.ok().flatten() {
            drop(chunk);
        }
    })
    .await;
    assert!(rest.is_ok());
}
