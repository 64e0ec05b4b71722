//! The change feed over HTTP against tidesync-server on loopback: the transport's
//! `change_feed`, and the engine's `watch` end to end — client B sees client A's insert
//! without calling pull, also after its feed connection is cut (the server stopped, and a
//! new one started on the same database behind the same address) and restored. Every wait is
//! bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tidesync_core::{
    Backoff, ChangeEvent, ColumnType, LocalStore as _, MemoryStore, SyncContext, TableDef,
    Transport, TransportError, WatchOptions,
};
use tidesync_server::{RunningServer, Server};
use tidesync_transport_http::{HttpTransport, Protocol};
use tokio::sync::broadcast::Receiver;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TODO: &str = "TodoItem";

async fn start(db: &Path, bind: &str) -> RunningServer {
    Server::builder()
        .sqlite(db)
        .table(TODO)
        .bind(bind)
        .start()
        .await
        .unwrap()
}

fn client(url: &str) -> SyncContext {
    let store = MemoryStore::new();
    store
        .define_table(&TableDef::new(TODO).column("text", ColumnType::String))
        .unwrap();
    SyncContext::builder()
        .store(store)
        .transport(HttpTransport::builder(url).build().unwrap())
        .build()
        .unwrap()
}

/// Polls B's local store (up to 10 s) until the row is there; returns how long it took.
async fn wait_until_local(ctx: &SyncContext, id: &str) -> Duration {
    let start = Instant::now();
    while ctx.get(TODO, id).unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{id} did not reach the other client"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

/// A loopback TCP proxy in front of a server that can be replaced: the test holds its port
/// for the whole run (a released port could be taken by another process before a restarted
/// server binds it again). Pointed at no server it accepts and closes at once; pointing it
/// elsewhere drops every connection it carries.
struct Proxy {
    addr: SocketAddr,
    upstream: Arc<Mutex<Option<SocketAddr>>>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Arc::new(Mutex::new(Some(upstream)));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let upstream = upstream.clone();
            let connections = connections.clone();
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let Some(server) = *upstream.lock().unwrap() else {
                        continue; // dropped: closed at once
                    };
                    let task = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(server).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    connections.lock().unwrap().push(task.abort_handle());
                }
            }
        });
        Proxy {
            addr,
            upstream,
            connections,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every connection and sends new ones to `upstream` (none: refuse them).
    fn point_to(&self, upstream: Option<SocketAddr>) {
        *self.upstream.lock().unwrap() = upstream;
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.point_to(None);
        self.accept.abort();
    }
}

async fn next_event(rx: &mut Receiver<ChangeEvent>, pick: impl Fn(&ChangeEvent) -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.recv().await {
                Ok(event) if pick(&event) => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events closed: {e}"),
            }
        }
    })
    .await
    .expect("the event did not come");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_feed_delivers_events_and_closes_when_the_server_stops() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("a.db"), "127.0.0.1:0").await;
    let transport = HttpTransport::builder(server.url()).build().unwrap();
    let mut feed = transport.change_feed(&[TODO.to_owned()]).await.unwrap();
    let stored = transport
        .insert(
            TODO,
            &serde_json::from_value(json!({"id": "a", "text": "x"})).unwrap(),
        )
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), feed.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.table, TODO);
    assert_eq!(event.id.as_deref(), Some("a"));
    assert_eq!(event.updated_at.as_deref(), stored["updatedAt"].as_str());

    let err = transport
        .change_feed(&["Nope".to_owned()])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::NotFound { .. } | TransportError::Http { status: 404, .. }
        ),
        "{err:?}"
    );

    server.shutdown().await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), feed.recv())
        .await
        .expect("the channel closes when the connection drops");
    assert!(end.is_none());
}

#[tokio::test]
async fn change_feed_is_unsupported_without_the_extension() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/tidesync/v1/capabilities"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"protocols": ["3.0.0"], "extensions": {"batch": {"path": "/tidesync/v1/batch"}}}),
        ))
        .mount(&mock)
        .await;
    let auto = HttpTransport::builder(mock.uri()).build().unwrap();
    let err = auto.change_feed(&[TODO.to_owned()]).await.unwrap_err();
    assert!(matches!(err, TransportError::Unsupported(_)), "{err:?}");
    // A fixed protocol reads no capabilities, so it has no feed either.
    let v3 = HttpTransport::builder(mock.uri())
        .protocol(Protocol::V3)
        .build()
        .unwrap();
    let err = v3.change_feed(&[TODO.to_owned()]).await.unwrap_err();
    assert!(matches!(err, TransportError::Unsupported(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_b_sees_client_a_insert_without_pulling_even_after_its_feed_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let server = start(&db, "127.0.0.1:0").await;
    let proxy = Proxy::start(server.addr()).await;
    let a = client(&proxy.url());
    let b = client(&proxy.url());
    let mut events = b.subscribe();
    let watcher = b
        .watch(WatchOptions::new([TODO]).backoff(Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(400),
        }))
        .unwrap();
    next_event(&mut events, |e| {
        matches!(e, ChangeEvent::FeedConnected { .. })
    })
    .await;

    let todo = a.table::<serde_json::Value>(TODO);
    todo.insert(&json!({"id": "first", "text": "one"}))
        .await
        .unwrap();
    assert!(a.push().await.unwrap().is_success());
    let took = wait_until_local(&b, "first").await;
    eprintln!("first insert visible to B after {took:?}");

    // Cut B's connection: stop the server, bring up another on the same database behind
    // the same address.
    server.shutdown().await.unwrap();
    proxy.point_to(None);
    next_event(&mut events, |e| {
        matches!(e, ChangeEvent::FeedDisconnected { .. })
    })
    .await;
    // Written while B's feed is down (A queues it; it goes out once the server is back).
    todo.insert(&json!({"id": "while-down", "text": "two"}))
        .await
        .unwrap();
    let server = start(&db, "127.0.0.1:0").await;
    proxy.point_to(Some(server.addr()));
    assert!(a.push().await.unwrap().is_success());
    next_event(&mut events, |e| {
        matches!(e, ChangeEvent::FeedConnected { .. })
    })
    .await;
    wait_until_local(&b, "while-down").await;

    // And the restored feed carries later writes too.
    todo.insert(&json!({"id": "after", "text": "three"}))
        .await
        .unwrap();
    assert!(a.push().await.unwrap().is_success());
    let took = wait_until_local(&b, "after").await;
    eprintln!("insert after the reconnect visible to B after {took:?}");

    watcher.stop().await;
    server.shutdown().await.unwrap();
}
