//! The batch extension end to end: the engine over `HttpTransport` (Auto) against
//! `tidesync-server` (SQLite) behind a loopback proxy that counts batch requests and can
//! cut the connection instead of passing on a batch's answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tidesync_core::{
    ColumnType, LocalStore, MemoryStore, PushStatus, Query, SyncContext, TableDef, Transport,
};
use tidesync_server::Server;
use tidesync_transport_http::{HttpTransport, Protocol, RetryPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

const BATCH_HEAD: &[u8] = b"POST /tidesync/v1/batch ";

/// What the proxy saw and what it should do.
#[derive(Debug, Default)]
struct Proxy {
    batches: AtomicUsize,
    /// Cut the connection instead of passing on the next batch answer.
    lose_next_answer: AtomicBool,
    /// The answers to batches, as passed on.
    answers: Mutex<Vec<u8>>,
}

/// Starts a proxy to `upstream`; returns its URL.
async fn proxy(upstream: std::net::SocketAddr, state: Arc<Proxy>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let server = TcpStream::connect(upstream).await.unwrap();
            tokio::spawn(pipe(client, server, Arc::clone(&state)));
        }
    });
    url
}

/// Copies one connection both ways. Requests are not pipelined, so after a batch request
/// the next bytes from the server are its answer.
async fn pipe(client: TcpStream, server: TcpStream, state: Arc<Proxy>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let in_batch = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&in_batch);
    let counter = Arc::clone(&state);
    let upstream = tokio::spawn(async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if buffer[..n].starts_with(BATCH_HEAD) {
                counter.batches.fetch_add(1, Ordering::SeqCst);
                seen.store(true, Ordering::SeqCst);
            }
            if server_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match server_read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if in_batch.load(Ordering::SeqCst) {
            if state.lose_next_answer.swap(false, Ordering::SeqCst) {
                break; // drop both halves: the client sees the connection close
            }
            state.answers.lock().await.extend_from_slice(&buffer[..n]);
        }
        if client_write.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    upstream.abort();
}

fn client(url: &str) -> (SyncContext, HttpTransport) {
    let store = MemoryStore::new();
    store
        .define_table(&TableDef::new("TodoItem").column("text", ColumnType::String))
        .unwrap();
    let transport = HttpTransport::builder(url)
        .protocol(Protocol::Auto)
        .timeout(Duration::from_secs(20))
        .retry(RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();
    let context = SyncContext::builder()
        .store(store)
        .transport(transport.clone())
        .build()
        .unwrap();
    (context, transport)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_hundred_ops_take_three_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .sqlite(dir.path().join("server.db"))
        .table("TodoItem")
        .bind("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let state = Arc::new(Proxy::default());
    let url = proxy(server.addr(), Arc::clone(&state)).await;
    let (context, transport) = client(&url);
    assert!(transport.supports_batch());
    let todo = context.table::<serde_json::Value>("TodoItem");
    for n in 0..1200 {
        todo.insert(&json!({"text": format!("t{n}")}))
            .await
            .unwrap();
    }
    let pushed = context.push().await.unwrap();
    assert_eq!(pushed.status, PushStatus::Complete, "{pushed:?}");
    assert_eq!(pushed.pushed, 1200);
    assert_eq!(state.batches.load(Ordering::SeqCst), 3);
    assert_eq!(context.pending_operations().unwrap(), 0);

    // The server has them all: a fresh client pulls 1200 rows.
    let (fresh, _) = client(&server.url());
    let pulled = fresh
        .table::<serde_json::Value>("TodoItem")
        .pull("all", Query::all())
        .await
        .unwrap();
    assert_eq!(pulled.upserted, 1200);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_batch_answer_is_resent_and_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .sqlite(dir.path().join("server.db"))
        .table("TodoItem")
        .bind("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let state = Arc::new(Proxy::default());
    let url = proxy(server.addr(), Arc::clone(&state)).await;
    let (context, _) = client(&url);
    let todo = context.table::<serde_json::Value>("TodoItem");
    // Rows the client then updates: a resent update applied twice would show in `version`.
    for n in 0..10 {
        todo.insert(&json!({"id": format!("row{n}"), "text": "first"}))
            .await
            .unwrap();
    }
    assert_eq!(context.push().await.unwrap().status, PushStatus::Complete);
    for n in 0..10 {
        todo.update(&json!({"id": format!("row{n}"), "text": "second"}))
            .await
            .unwrap();
    }
    state.answers.lock().await.clear();
    state.lose_next_answer.store(true, Ordering::SeqCst);
    let lost = context.push().await.unwrap();
    assert_eq!(lost.status, PushStatus::CancelledByNetworkError, "{lost:?}");
    assert_eq!(context.pending_operations().unwrap(), 10);

    let resent = context.push().await.unwrap();
    assert_eq!(resent.status, PushStatus::Complete, "{resent:?}");
    assert_eq!(resent.pushed, 10);
    assert!(resent.errors.is_empty());
    assert_eq!(state.batches.load(Ordering::SeqCst), 3);
    // The resend was answered from the remembered results (200), not decided again (412).
    let answers = String::from_utf8_lossy(&state.answers.lock().await).into_owned();
    assert_eq!(answers.matches("\"status\":200").count(), 10, "{answers}");
    assert!(!answers.contains("\"status\":412"));

    // Each row was written twice on the server (insert, update), and the client holds the
    // server's current version.
    let (fresh, _) = client(&server.url());
    fresh
        .table::<serde_json::Value>("TodoItem")
        .pull("all", Query::all())
        .await
        .unwrap();
    let rows = fresh.query("TodoItem", &Query::all()).unwrap().items;
    assert_eq!(rows.len(), 10);
    for row in rows {
        assert_eq!(row["text"], "second");
        let id = row["id"].as_str().unwrap();
        let local = context.get("TodoItem", id).unwrap().unwrap();
        assert_eq!(local["version"], row["version"], "{id}");
    }
    server.shutdown().await.unwrap();
}
