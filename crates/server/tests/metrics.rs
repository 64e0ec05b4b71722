//! `GET /tidesync/v1/metrics` (Prometheus text) and the request log, over HTTP: protected
//! by the API key, counts requests by route template and status, times them, counts ops
//! applied, rows served and open feeds; each answered request is logged with its request id.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tidesync_server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "metrics-test-key";

/// The log lines written while the test runs (its own subscriber, this thread only).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn value(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
}

#[tokio::test]
async fn metrics_count_requests_ops_rows_and_feeds_and_requests_are_logged_with_their_id() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("tidesync::request=info")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .sqlite(dir.path().join("metrics.db"))
        .table("TodoItem")
        .api_key(KEY)
        .bind("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let url = server.url();
    let http = reqwest::Client::new();
    // Protected like the other extensions.
    let refused = http
        .get(format!("{url}/tidesync/v1/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let created = http
        .post(format!("{url}/tables/TodoItem"))
        .header("ZUMO-API-VERSION", "3.0.0")
        .header("x-api-key", KEY)
        .header("x-request-id", "req-metrics-1")
        .json(&json!({"id": "a", "text": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let listed = http
        .get(format!("{url}/tables/TodoItem"))
        .header("ZUMO-API-VERSION", "3.0.0")
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let unknown = http
        .get(format!("{url}/tables/Nope/x?secret=1"))
        .header("ZUMO-API-VERSION", "3.0.0")
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    // An open feed.
    let mut feed = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    feed.write_all(
        format!(
            "GET /tidesync/v1/feed?tables=TodoItem HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 512];
    let n = feed.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));

    let answer = http
        .get(format!("{url}/tidesync/v1/metrics"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = answer.text().await.unwrap();
    assert_eq!(
        value(
            &text,
            "tidesync_http_requests_total{route=\"/tables/{table}\",status=\"201\"} "
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "tidesync_http_requests_total{route=\"/tables/{table}/{id}\",status=\"404\"} "
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "tidesync_http_requests_total{route=\"/tidesync/v1/metrics\",status=\"401\"} "
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "tidesync_http_request_duration_seconds_count{route=\"/tables/{table}\"} "
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            "tidesync_http_request_duration_seconds_bucket{route=\"/tables/{table}\",le=\"+Inf\"} "
        ),
        2.0
    );
    assert_eq!(value(&text, "tidesync_ops_applied_total "), 1.0);
    assert_eq!(value(&text, "tidesync_rows_served_total "), 1.0);
    assert_eq!(value(&text, "tidesync_feeds_open "), 1.0);
    assert!(value(&text, "tidesync_store_read_slots ") >= 1.0);
    // Raw paths never become labels.
    assert!(!text.contains("Nope"), "{text}");
    drop(feed);
    server.shutdown().await.unwrap();

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("req-metrics-1"))
        .unwrap_or_else(|| panic!("no log line with the request id in\n{log}"));
    assert!(line.contains("status=201"), "{line}");
    assert!(
        line.contains("route=\"/tables/{table}\"") || line.contains("route=/tables/{table}"),
        "{line}"
    );
    assert!(!log.contains("secret=1"), "query strings are not logged");
}
