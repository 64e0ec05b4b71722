//! Helpers shared by the wiremock tests: transports pointed at a mock server, and readers
//! for the requests it received.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use tidesync_protocol::Item;
use tidesync_transport_http::{HttpTransport, HttpTransportBuilder, Protocol, RetryPolicy};
use wiremock::{MockServer, Request};

/// A fast retry policy for tests: two retries, 10 ms doubling to 40 ms.
pub const FAST_RETRY: RetryPolicy = RetryPolicy {
    max_retries: 2,
    initial_backoff: Duration::from_millis(10),
    max_backoff: Duration::from_millis(40),
};

/// A builder for `server` with `protocol`, short timeouts and fast retries.
pub fn builder(server: &MockServer, protocol: Protocol) -> HttpTransportBuilder {
    HttpTransport::builder(server.uri())
        .protocol(protocol)
        .timeout(Duration::from_secs(5))
        .retry(FAST_RETRY)
}

/// A transport for `server` speaking `protocol`.
pub fn transport(server: &MockServer, protocol: Protocol) -> HttpTransport {
    builder(server, protocol).build().unwrap()
}

/// An item from JSON.
pub fn item(value: Value) -> Item {
    match value {
        Value::Object(item) => item,
        other => panic!("not an object: {other}"),
    }
}

/// Every request the server received, in order.
pub async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

/// The one request the server received.
pub async fn only_request(server: &MockServer) -> Request {
    let mut all = requests(server).await;
    assert_eq!(all.len(), 1, "expected one request, got {all:#?}");
    all.remove(0)
}

/// A header's value as text.
pub fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers.get(name).map(|v| v.to_str().unwrap())
}

/// The decoded query pairs of a request, in order.
pub fn query(request: &Request) -> Vec<(String, String)> {
    request
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The request body as JSON.
pub fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

/// A loopback address nothing listens on, for as long as the value lives: a socket is bound
/// to the port without listening, so connecting is refused and no other process can take the
/// port meanwhile (a port bound and released at once could be taken by anyone).
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

/// See [`ClosedPort`].
pub fn closed_port() -> ClosedPort {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}", socket.local_addr().unwrap());
    ClosedPort {
        _socket: socket,
        url,
    }
}
