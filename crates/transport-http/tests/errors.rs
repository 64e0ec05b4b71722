//! How answers and failures are classified into `TransportError`s, and what is retried.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{builder, closed_port, item, requests, transport};
use serde_json::json;
use tidesync_core::{ReadRequest, Transport, TransportError};
use tidesync_protocol::odata::Query;
use tidesync_transport_http::{HttpTransport, Protocol, RetryPolicy};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn row() -> tidesync_protocol::Item {
    item(json!({"id": "item-1", "text": "stale write"}))
}

fn read_all() -> ReadRequest {
    ReadRequest {
        table: "TodoItem".to_owned(),
        query: Query::new().top(50),
        include_deleted: true,
    }
}

async fn answering(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(template)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn precondition_failed_is_a_conflict_with_the_server_item() {
    let stored = json!({"id": "item-1", "text": "buy oat milk", "version": "MQ=="});
    let server = answering(
        ResponseTemplate::new(412)
            .set_body_json(&stored)
            .insert_header("ETag", "\"Mg==\""),
    )
    .await;
    let err = transport(&server, Protocol::V2)
        .replace("TodoItem", &row(), Some("MQ=="))
        .await
        .unwrap_err();
    let TransportError::Conflict {
        status,
        server_item,
        raw,
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(status, 412);
    let server_item = server_item.unwrap();
    assert_eq!(server_item["text"], "buy oat milk");
    assert_eq!(server_item["version"], "Mg==", "the ETag wins");
    assert!(raw.unwrap().contains("buy oat milk"));
}

#[tokio::test]
async fn duplicate_insert_is_a_conflict_409() {
    let server = answering(
        ResponseTemplate::new(409).set_body_json(json!({"id": "item-1", "text": "buy milk"})),
    )
    .await;
    let err = transport(&server, Protocol::V2)
        .insert("TodoItem", &row())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::Conflict { status: 409, server_item: Some(s), .. } if s["text"] == "buy milk"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_conflict_body_without_an_item_keeps_only_the_raw_text() {
    let server = answering(ResponseTemplate::new(409).set_body_string("conflict")).await;
    let err = transport(&server, Protocol::V2)
        .insert("TodoItem", &row())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::Conflict { status: 409, server_item: None, raw: Some(r) } if r == "conflict"),
        "{err:?}"
    );
}

#[tokio::test]
async fn missing_items_on_delete_count_as_deleted() {
    for status in [404, 410] {
        let server = answering(
            ResponseTemplate::new(status)
                .set_body_json(json!({"error": "The item does not exist"})),
        )
        .await;
        transport(&server, Protocol::V2)
            .delete("TodoItem", "item-del", Some("Mg=="))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_stale_delete_is_a_conflict() {
    let server = answering(
        ResponseTemplate::new(412).set_body_json(json!({"id": "item-del", "version": "ZDE="})),
    )
    .await;
    let err = transport(&server, Protocol::V2)
        .delete("TodoItem", "item-del", Some("MTIz"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Conflict {
                status: 412,
                server_item: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn update_of_a_missing_item_is_not_found() {
    let body = r#"{"error":"The item does not exist"}"#;
    let server = answering(ResponseTemplate::new(404).set_body_string(body)).await;
    let err = transport(&server, Protocol::V2)
        .replace("TodoItem", &row(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::NotFound { status: 404, raw: Some(r) } if r == body),
        "{err:?}"
    );
}

#[tokio::test]
async fn other_client_errors_carry_the_server_message() {
    let body = r#"{"error":"Cannot update item with property 'createdAt' as it is reserved"}"#;
    let server = answering(ResponseTemplate::new(400).set_body_string(body)).await;
    let err = transport(&server, Protocol::V2)
        .insert("TodoItem", &row())
        .await
        .unwrap_err();
    let TransportError::Http {
        status,
        message,
        raw,
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(status, 400);
    assert_eq!(
        message,
        "Cannot update item with property 'createdAt' as it is reserved"
    );
    assert_eq!(raw.as_deref(), Some(body));
    assert_eq!(requests(&server).await.len(), 1, "4xx is not retried");
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let server = answering(
        ResponseTemplate::new(500)
            .set_body_json(json!({"error": "SQLITE_BUSY: database is locked"})),
    )
    .await;
    let err = transport(&server, Protocol::V2)
        .insert("TodoItem", &row())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::Http { status: 500, message, .. } if message == "SQLITE_BUSY: database is locked"),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(
        requests(&server).await.len(),
        3,
        "one attempt and two retries"
    );
}

#[tokio::test]
async fn a_server_error_then_success_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": "item-1", "version": "MQ=="})),
        )
        .mount(&server)
        .await;
    let back = transport(&server, Protocol::V2)
        .insert("TodoItem", &row())
        .await
        .unwrap();
    assert_eq!(back["version"], "MQ==");
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn retries_can_be_switched_off() {
    let server = answering(ResponseTemplate::new(502)).await;
    let transport = builder(&server, Protocol::V2)
        .retry(RetryPolicy::NONE)
        .build()
        .unwrap();
    let err = transport.read(&read_all()).await.unwrap_err();
    assert!(
        matches!(&err, TransportError::Http { status: 502, message, .. } if message == "Bad Gateway"),
        "{err:?}"
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn too_many_requests_waits_for_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    let transport = builder(&server, Protocol::V2)
        .retry(RetryPolicy {
            max_retries: 1,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_secs(2),
        })
        .build()
        .unwrap();
    // A lower bound only: load can make the wait longer, never shorter.
    let started = Instant::now();
    transport.read(&read_all()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(requests(&server).await.len(), 2);
}

/// Neither waited for (the test would hang for an hour; nextest ends it after five minutes)
/// nor retried early: one request, and its 429 comes back.
#[tokio::test]
async fn a_long_retry_after_is_not_waited_for() {
    let server = answering(
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "3600")
            .set_body_json(json!({"error": "slow down"})),
    )
    .await;
    let err = transport(&server, Protocol::V2)
        .read(&read_all())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::Http { status: 429, message, .. } if message == "slow down"),
        "{err:?}"
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn connection_refused_is_a_network_error() {
    let closed = closed_port();
    let transport = HttpTransport::builder(&closed.url)
        .protocol(Protocol::V2)
        .build()
        .unwrap();
    for err in [
        transport.insert("TodoItem", &row()).await.unwrap_err(),
        transport.read(&read_all()).await.unwrap_err(),
        transport.delete("TodoItem", "x", None).await.unwrap_err(),
    ] {
        assert!(matches!(err, TransportError::Network(_)), "{err:?}");
    }
}

#[tokio::test]
async fn an_unknown_host_is_a_network_error() {
    let transport = HttpTransport::builder("http://no-such-host.invalid")
        .protocol(Protocol::V2)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let err = transport.read(&read_all()).await.unwrap_err();
    assert!(matches!(err, TransportError::Network(_)), "{err:?}");
}

#[tokio::test]
async fn a_timeout_is_a_network_error() {
    let server = answering(
        ResponseTemplate::new(200)
            .set_body_json(json!([]))
            .set_delay(Duration::from_secs(3)),
    )
    .await;
    let transport = builder(&server, Protocol::V2)
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    // The answer would come after 3 s (an `Ok`); the error says the 200 ms timeout fired.
    let err = transport.read(&read_all()).await.unwrap_err();
    let TransportError::Network(network) = &err else {
        panic!("{err:?}");
    };
    assert!(network.message.contains("timed out"), "{network}");
    assert_eq!(
        network.kind,
        tidesync_core::NetworkKind::Timeout,
        "{network}"
    );
}

#[tokio::test]
async fn malformed_json_is_a_protocol_error() {
    let server = answering(ResponseTemplate::new(201).set_body_string("{\"id\":")).await;
    let transport = transport(&server, Protocol::V2);
    let err = transport.insert("TodoItem", &row()).await.unwrap_err();
    assert!(matches!(err, TransportError::Protocol(_)), "{err:?}");
    let err = transport.read(&read_all()).await.unwrap_err();
    assert!(matches!(err, TransportError::Protocol(_)), "{err:?}");
}

#[tokio::test]
async fn an_empty_or_non_object_write_answer_is_a_protocol_error() {
    for template in [
        ResponseTemplate::new(200),
        ResponseTemplate::new(204),
        ResponseTemplate::new(200).set_body_json(json!([{"id": "item-1"}])),
    ] {
        let server = answering(template).await;
        let err = transport(&server, Protocol::V2)
            .replace("TodoItem", &row(), None)
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Protocol(_)), "{err:?}");
    }
}

#[tokio::test]
async fn a_replace_needs_an_id() {
    let server = answering(ResponseTemplate::new(200)).await;
    let err = transport(&server, Protocol::V2)
        .replace("TodoItem", &item(json!({"text": "x"})), None)
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Protocol(_)), "{err:?}");
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn bad_settings_are_refused_at_build() {
    use tidesync_transport_http::HttpError;
    assert!(matches!(
        HttpTransport::builder("localhost:8080").build(),
        Err(HttpError::InvalidUrl { .. })
    ));
    assert!(matches!(
        HttpTransport::builder("http://h")
            .header("bad header", "x")
            .build(),
        Err(HttpError::InvalidHeader { .. })
    ));
    assert!(matches!(
        HttpTransport::builder("http://h")
            .header("X-A", "line\nbreak")
            .build(),
        Err(HttpError::InvalidHeader { .. })
    ));
    assert!(matches!(
        HttpTransport::builder("http://h")
            .tables_path("tables")
            .build(),
        Err(HttpError::InvalidPath { .. })
    ));
    assert!(matches!(
        HttpTransport::builder("http://h")
            .retry(RetryPolicy {
                max_retries: 1,
                initial_backoff: Duration::from_secs(2),
                max_backoff: Duration::from_secs(1),
            })
            .build(),
        Err(HttpError::InvalidRetryPolicy(_))
    ));
}
