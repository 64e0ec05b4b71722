//! Configuration through the facade alone (no transport built by hand), and
//! errors an app can act on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidesync::{
    BearerToken, Client, Error, MemoryStore, NetworkKind, Protocol, Query, RetryPolicy, SyncItem,
    TransportError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone, Serialize, Deserialize, SyncItem)]
#[tidesync(table = "TodoItem")]
struct Todo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    text: String,
}

/// A loopback server that answers one request with an empty v2 page and hands
/// back the request's head.
async fn one_answer() -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early");
            head.extend_from_slice(&buf[..n]);
        }
        socket
            .write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]",
            )
            .await
            .unwrap();
        String::from_utf8_lossy(&head).to_lowercase()
    });
    (url, task)
}

#[tokio::test]
async fn http_settings_reach_the_requests() {
    let (url, request) = one_answer().await;
    let client = Client::builder()
        .store(MemoryStore::new())
        .define::<Todo>()
        .url(&url)
        .unwrap()
        .protocol(Protocol::V2)
        .auth(BearerToken::new("secret-token"))
        .header("X-App-Build", "417")
        .user_agent("todo-tests/1")
        .timeout(Duration::from_secs(30))
        .retry(RetryPolicy::NONE)
        .page_size(7)
        .batch_size(3)
        .max_conflict_rounds(1)
        .build()
        .unwrap();
    let pulled = client
        .sync_table::<Todo>()
        .pull("", Query::all())
        .await
        .unwrap();
    assert_eq!(pulled.upserted, 0);
    let head = request.await.unwrap();
    assert!(head.contains("secret-token"), "{head}");
    assert!(head.contains("x-app-build: 417"), "{head}");
    assert!(head.contains("user-agent: todo-tests/1"), "{head}");
    assert!(
        head.contains("%24top=7") || head.contains("$top=7"),
        "{head}"
    );
}

#[tokio::test]
async fn a_request_that_gets_no_answer_times_out_as_a_network_error() {
    // Accepts, reads, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        std::future::pending::<()>().await;
        drop(socket);
    });
    let client = Client::builder()
        .store(MemoryStore::new())
        .define::<Todo>()
        .url(&url)
        .unwrap()
        .protocol(Protocol::V2)
        .timeout(Duration::from_millis(200))
        .retry(RetryPolicy::NONE)
        .build()
        .unwrap();
    let error = client
        .sync_table::<Todo>()
        .pull("", Query::all())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Transport(TransportError::Network(n)) if n.kind == NetworkKind::Timeout),
        "{error:?}"
    );
    hold.abort();
}

/// The kind of a failure with no answer, for a client pointed at `url`.
async fn failure_kind(url: &str) -> NetworkKind {
    let client = Client::builder()
        .store(MemoryStore::new())
        .define::<Todo>()
        .url(url)
        .unwrap()
        .protocol(Protocol::V2)
        .timeout(Duration::from_secs(20))
        .retry(RetryPolicy::NONE)
        .build()
        .unwrap();
    match client.sync_table::<Todo>().pull("", Query::all()).await {
        Err(Error::Transport(TransportError::Network(network))) => network.kind,
        other => panic!("expected a network error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_network_error_keeps_its_kind() {
    // Nothing listens: refused.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    assert_eq!(
        failure_kind(&format!("http://{address}")).await,
        NetworkKind::Refused
    );

    // A server that is not TLS, asked over https: the handshake fails.
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = plain.local_addr().unwrap();
    let answer = tokio::spawn(async move {
        let (mut socket, _) = plain.accept().await.unwrap();
        let mut buf = [0u8; 512];
        let _ = socket.read(&mut buf).await;
        let _ = socket
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
    });
    assert_eq!(
        failure_kind(&format!("https://{address}")).await,
        NetworkKind::Tls
    );
    answer.await.unwrap();

    // A server that hangs up mid-request: reset.
    let rude = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = rude.local_addr().unwrap();
    let hang_up = tokio::spawn(async move {
        let (mut socket, _) = rude.accept().await.unwrap();
        let mut buf = [0u8; 512];
        let _ = socket.read(&mut buf).await;
        drop(socket);
    });
    assert_eq!(
        failure_kind(&format!("http://{address}")).await,
        NetworkKind::Reset
    );
    hang_up.await.unwrap();
}

#[test]
fn misplaced_settings_are_errors_not_silently_dropped() {
    let before_url = Client::builder()
        .store(MemoryStore::new())
        .timeout(Duration::from_secs(1))
        .url("http://127.0.0.1:9")
        .unwrap()
        .build()
        .unwrap_err();
    assert!(
        matches!(&before_url, Error::InvalidArgument(m) if m.contains("timeout")),
        "{before_url:?}"
    );
    let server = tidesync_transport_mock::MockServer::new();
    let both = Client::builder()
        .store(MemoryStore::new())
        .transport(server.transport())
        .url("http://127.0.0.1:9")
        .unwrap()
        .build()
        .unwrap_err();
    assert!(matches!(both, Error::InvalidArgument(_)), "{both:?}");
    assert!(matches!(
        Client::builder().url("ftp://example"),
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn a_row_that_does_not_fit_the_type_names_its_table_and_id() {
    #[derive(Debug, Deserialize, Serialize)]
    struct Strict {
        id: String,
        text: String,
        priority: i64,
    }
    let server = tidesync_transport_mock::MockServer::new();
    server.add_table("TodoItem");
    let client = Client::builder()
        .store(MemoryStore::new())
        .define::<Todo>()
        .transport(server.transport())
        .build()
        .unwrap();
    let todo = client
        .sync_table::<Todo>()
        .insert(&Todo {
            id: Some("row-1".to_owned()),
            text: "no priority".to_owned(),
        })
        .await
        .unwrap();
    let strict = client.table::<Strict>("TodoItem");
    match strict.get(todo.id.as_deref().unwrap()).await {
        Err(Error::RowDoesNotFit { table, id, .. }) => {
            assert_eq!((table.as_str(), id.as_str()), ("TodoItem", "row-1"));
        }
        other => panic!("expected RowDoesNotFit, got {other:?}"),
    }
}
