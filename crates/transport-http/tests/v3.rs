//! The v3 (Datasync) wire: PUT, 204 deletes, `{items,count,nextLink}` pages and v4 filters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{body, header, item, only_request, query, transport};
use serde_json::json;
use tidesync_core::{ReadRequest, Transport, TransportError};
use tidesync_protocol::odata::{Query, parse_filter};
use tidesync_transport_http::Protocol;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const STAMP: &str = "2026-11-27T08:29:32.659Z";

fn stored(id: &str, version: &str) -> serde_json::Value {
    json!({
        "id": id, "text": "a", "complete": false,
        "createdAt": STAMP, "updatedAt": STAMP, "version": version, "deleted": false
    })
}

#[tokio::test]
async fn insert_posts_with_version_3() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/tables/TodoItem"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(stored("v3-1", "AAAAAAAAAAE="))
                .insert_header("ETag", "\"AAAAAAAAAAE=\"")
                .insert_header("Location", "http://h/tables/TodoItem/v3-1"),
        )
        .mount(&server)
        .await;
    let back = transport(&server, Protocol::V3)
        .insert(
            "TodoItem",
            &item(json!({"id": "v3-1", "text": "a", "complete": false})),
        )
        .await
        .unwrap();
    assert_eq!(back["version"], "AAAAAAAAAAE=");
    let request = only_request(&server).await;
    assert_eq!(header(&request, "ZUMO-API-VERSION"), Some("3.0.0"));
    assert_eq!(
        body(&request),
        json!({"id": "v3-1", "text": "a", "complete": false})
    );
}

#[tokio::test]
async fn replace_puts_the_full_entity_with_if_match() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/tables/TodoItem/v3-1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(stored("v3-1", "AAAAAAAAAAI="))
                .insert_header("ETag", "\"AAAAAAAAAAI=\""),
        )
        .mount(&server)
        .await;
    let row = item(json!({"id": "v3-1", "text": "b", "complete": true, "version": "AAAAAAAAAAE="}));
    let back = transport(&server, Protocol::V3)
        .replace("TodoItem", &row, Some("AAAAAAAAAAE="))
        .await
        .unwrap();
    assert_eq!(back["version"], "AAAAAAAAAAI=");
    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "PUT");
    assert_eq!(header(&request, "if-match"), Some("\"AAAAAAAAAAE=\""));
    assert_eq!(header(&request, "ZUMO-API-VERSION"), Some("3.0.0"));
    assert_eq!(
        body(&request),
        json!({"id": "v3-1", "text": "b", "complete": true})
    );
}

#[tokio::test]
async fn delete_accepts_204() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/tables/TodoItem/v3-1"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    transport(&server, Protocol::V3)
        .delete("TodoItem", "v3-1", Some("AAAAAAAAAAI="))
        .await
        .unwrap();
    let request = only_request(&server).await;
    assert_eq!(header(&request, "if-match"), Some("\"AAAAAAAAAAI=\""));
}

#[tokio::test]
async fn replace_of_a_deleted_item_is_not_found_410() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(410))
        .mount(&server)
        .await;
    let err = transport(&server, Protocol::V3)
        .replace("TodoItem", &item(json!({"id": "gone"})), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::NotFound {
                status: 410,
                raw: None
            }
        ),
        "{err:?}"
    );
}

fn incremental_read(top: u64) -> ReadRequest {
    let cursor = format!(
        "(updatedAt gt datetimeoffset'{STAMP}') or ((updatedAt eq datetimeoffset'{STAMP}') and (id gt 'v3-1'))"
    );
    ReadRequest {
        table: "TodoItem".to_owned(),
        query: Query::new()
            .filter(parse_filter(&cursor).unwrap())
            .order_by("updatedAt")
            .order_by("id")
            .top(top),
        include_deleted: true,
    }
}

#[tokio::test]
async fn incremental_pull_prints_v4_filters_and_the_lowercase_flag() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/tables/TodoItem"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "items": [stored("v3-2", "AAAAAAAAAAM=")], "count": null, "nextLink": null
        })))
        .mount(&server)
        .await;
    let page = transport(&server, Protocol::V3)
        .read(&incremental_read(100))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.has_more, Some(false));
    assert_eq!(page.count, None);
    let request = only_request(&server).await;
    assert_eq!(header(&request, "ZUMO-API-VERSION"), Some("3.0.0"));
    assert_eq!(
        query(&request),
        vec![
            (
                "$filter".to_owned(),
                format!("(updatedAt gt {STAMP}) or ((updatedAt eq {STAMP}) and (id gt 'v3-1'))")
            ),
            ("$orderby".to_owned(), "updatedAt,id".to_owned()),
            ("$top".to_owned(), "100".to_owned()),
            ("__includedeleted".to_owned(), "true".to_owned()),
        ]
    );
}

#[tokio::test]
async fn next_link_decides_has_more() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::query_param("$top", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "items": [stored("a", "AQ=="), stored("b", "AQ==")],
            "count": 150,
            "nextLink": "$skip=2&$top=2&__includedeleted=true"
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::query_param("$top", "3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "items": [stored("a", "AQ=="), stored("b", "AQ=="), stored("c", "AQ==")],
            "count": null,
            "nextLink": null
        })))
        .mount(&server)
        .await;
    let transport = transport(&server, Protocol::V3);
    let page = transport.read(&incremental_read(2)).await.unwrap();
    assert_eq!(page.has_more, Some(true));
    assert_eq!(page.count, Some(150));
    // A full page with a null nextLink may only mean the requested $top is used up.
    let page = transport.read(&incremental_read(3)).await.unwrap();
    assert_eq!(page.has_more, None);
}

#[tokio::test]
async fn count_is_asked_with_dollar_count() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "items": [], "count": 0, "nextLink": null
        })))
        .mount(&server)
        .await;
    let request = ReadRequest {
        table: "TodoItem".to_owned(),
        query: Query::new().with_count(),
        include_deleted: false,
    };
    let page = transport(&server, Protocol::V3)
        .read(&request)
        .await
        .unwrap();
    assert_eq!(page.count, Some(0));
    assert_eq!(page.has_more, Some(false));
    assert_eq!(
        query(&only_request(&server).await),
        vec![("$count".to_owned(), "true".to_owned())]
    );
}
