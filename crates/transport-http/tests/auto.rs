//! `Protocol::Auto`: the capabilities document, the v2 fallback and what is cached.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{builder, closed_port, header, item, requests};
use serde_json::json;
use tidesync_core::{ReadRequest, Transport, TransportError};
use tidesync_protocol::odata::Query;
use tidesync_protocol::wire::ApiVersion;
use tidesync_transport_http::{HttpTransport, Protocol};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const CAPABILITIES: &str = "/tidesync/v1/capabilities";

fn stored(id: &str) -> serde_json::Value {
    json!({"id": id, "updatedAt": "2026-11-27T08:29:32.659Z", "version": "AQ=="})
}

async fn server_with_capabilities(answer: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(CAPABILITIES))
        .respond_with(answer)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(200).set_body_json(stored("item-1")))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200).set_body_json(stored("item-1")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/tables/TodoItem"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([stored("a")])))
        .mount(&server)
        .await;
    server
}

fn table_requests(all: &[Request]) -> Vec<&Request> {
    all.iter()
        .filter(|r| r.url.path().starts_with("/tables"))
        .collect()
}

fn capability_requests(all: &[Request]) -> usize {
    all.iter().filter(|r| r.url.path() == CAPABILITIES).count()
}

fn page_request() -> ReadRequest {
    ReadRequest {
        table: "TodoItem".to_owned(),
        query: Query::new().top(50),
        include_deleted: true,
    }
}

#[tokio::test]
async fn without_a_capabilities_document_auto_speaks_v2_and_remembers() {
    let server = server_with_capabilities(ResponseTemplate::new(404)).await;
    let transport = builder(&server, Protocol::Auto).build().unwrap();
    let row = item(json!({"id": "item-1", "text": "x"}));
    transport.replace("TodoItem", &row, None).await.unwrap();
    transport.replace("TodoItem", &row, None).await.unwrap();
    let page = transport.read(&page_request()).await.unwrap();
    assert_eq!(page.has_more, None, "not our server: no promise");

    let all = requests(&server).await;
    assert_eq!(capability_requests(&all), 1, "asked once, then cached");
    let capabilities_request = &all[0];
    assert_eq!(capabilities_request.url.path(), CAPABILITIES);
    assert_eq!(header(capabilities_request, "ZUMO-API-VERSION"), None);
    for request in table_requests(&all) {
        assert_eq!(header(request, "ZUMO-API-VERSION"), Some("2.0.0"));
    }
    assert_eq!(table_requests(&all)[0].method.as_str(), "PATCH");
    assert_eq!(
        table_requests(&all)[2].url.query(),
        Some("$top=50&__includeDeleted=true")
    );
    let caps = transport.capabilities().await.unwrap();
    assert_eq!(caps.version, ApiVersion::V2);
    assert!(!caps.tidesync);
}

#[tokio::test]
async fn a_document_offering_v3_makes_auto_speak_v3() {
    let doc = json!({
        "server": "tidesync",
        "protocols": ["2.0.0", "3.0.0"],
        "extensions": ["batch"],
        "pageSize": {"default": 100, "max": 1000}
    });
    let server = server_with_capabilities(ResponseTemplate::new(200).set_body_json(doc)).await;
    let transport = builder(&server, Protocol::Auto).build().unwrap();
    let row = item(json!({"id": "item-1", "text": "x"}));
    transport
        .replace("TodoItem", &row, Some("AQ=="))
        .await
        .unwrap();
    let all = requests(&server).await;
    let tables = table_requests(&all);
    assert_eq!(tables[0].method.as_str(), "PUT");
    assert_eq!(header(tables[0], "ZUMO-API-VERSION"), Some("3.0.0"));
    let caps = transport.capabilities().await.unwrap();
    assert!(caps.tidesync);
    assert!(caps.has_extension("batch"));
    assert!(transport.supports_batch(), "the document offers batch");
}

#[tokio::test]
async fn our_v2_only_server_ends_pulls_on_a_short_page() {
    let doc = json!({"server": "tidesync", "protocols": ["2.0.0"]});
    let server = server_with_capabilities(ResponseTemplate::new(200).set_body_json(doc)).await;
    let transport = builder(&server, Protocol::Auto).build().unwrap();
    let page = transport.read(&page_request()).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.has_more, Some(false));
    let all = requests(&server).await;
    assert_eq!(
        header(table_requests(&all)[0], "ZUMO-API-VERSION"),
        Some("2.0.0")
    );
}

#[tokio::test]
async fn a_page_that_is_not_a_document_means_v2() {
    let server =
        server_with_capabilities(ResponseTemplate::new(200).set_body_string("<html>hello</html>"))
            .await;
    let transport = builder(&server, Protocol::Auto).build().unwrap();
    transport.read(&page_request()).await.unwrap();
    transport.read(&page_request()).await.unwrap();
    let all = requests(&server).await;
    assert_eq!(capability_requests(&all), 1);
    assert_eq!(
        header(table_requests(&all)[0], "ZUMO-API-VERSION"),
        Some("2.0.0")
    );
}

#[tokio::test]
async fn a_server_error_on_discovery_means_v2_for_now_and_asking_again() {
    let server = server_with_capabilities(ResponseTemplate::new(503)).await;
    let transport = builder(&server, Protocol::Auto).build().unwrap();
    transport.read(&page_request()).await.unwrap();
    transport.read(&page_request()).await.unwrap();
    let all = requests(&server).await;
    assert_eq!(capability_requests(&all), 2, "not cached");
    for request in table_requests(&all) {
        assert_eq!(header(request, "ZUMO-API-VERSION"), Some("2.0.0"));
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_network_error_and_nothing_is_cached() {
    let closed = closed_port();
    let transport = HttpTransport::builder(&closed.url).build().unwrap();
    assert_eq!(transport.protocol(), Protocol::Auto);
    let err = transport.read(&page_request()).await.unwrap_err();
    assert!(matches!(err, TransportError::Network(_)), "{err:?}");
    let err = transport.capabilities().await.unwrap_err();
    assert!(matches!(err, TransportError::Network(_)), "{err:?}");
}

#[tokio::test]
async fn explicit_protocols_never_ask() {
    let server = server_with_capabilities(
        ResponseTemplate::new(200).set_body_json(json!({"protocols": ["3.0.0"]})),
    )
    .await;
    let transport = builder(&server, Protocol::V2).build().unwrap();
    transport.read(&page_request()).await.unwrap();
    assert_eq!(capability_requests(&requests(&server).await), 0);
}
