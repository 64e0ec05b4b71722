//! The v2 (Azure Mobile Apps) wire: verbs, headers, bodies and page shapes, against wiremock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{body, header, item, only_request, query, transport};
use serde_json::json;
use tidesync_core::{ReadRequest, Transport};
use tidesync_protocol::odata::{Query, parse_filter};
use tidesync_transport_http::Protocol;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const STAMP: &str = "2026-11-27T08:29:32.659Z";

fn stored(id: &str, version: &str) -> serde_json::Value {
    json!({
        "id": id, "text": "buy milk", "complete": false,
        "createdAt": STAMP, "updatedAt": STAMP, "version": version, "deleted": false
    })
}

#[tokio::test]
async fn insert_posts_the_item_without_system_properties() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/tables/TodoItem"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(stored("item-1", "MQ=="))
                .insert_header("ETag", "\"MQ==\""),
        )
        .mount(&server)
        .await;
    let sent = item(json!({
        "id": "item-1", "text": "buy milk", "complete": false,
        "version": "stale", "updatedAt": STAMP, "createdAt": STAMP, "deleted": false
    }));
    let back = transport(&server, Protocol::V2)
        .insert("TodoItem", &sent)
        .await
        .unwrap();
    assert_eq!(back["version"], "MQ==");
    assert_eq!(back["updatedAt"], STAMP);

    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/tables/TodoItem");
    assert_eq!(request.url.query(), None);
    assert_eq!(header(&request, "ZUMO-API-VERSION"), Some("2.0.0"));
    assert_eq!(header(&request, "content-type"), Some("application/json"));
    assert_eq!(header(&request, "accept"), Some("application/json"));
    assert_eq!(header(&request, "if-match"), None);
    assert!(
        header(&request, "user-agent")
            .unwrap()
            .starts_with("tidesync/")
    );
    assert_eq!(
        body(&request),
        json!({"id": "item-1", "text": "buy milk", "complete": false})
    );
}

#[tokio::test]
async fn replace_patches_the_full_row_with_if_match() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/tables/TodoItem/item-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(stored("item-1", "Mg==")))
        .mount(&server)
        .await;
    let row = item(json!({"id": "item-1", "text": "buy oat milk", "complete": false}));
    transport(&server, Protocol::V2)
        .replace("TodoItem", &row, Some("MQ=="))
        .await
        .unwrap();
    let request = only_request(&server).await;
    assert_eq!(header(&request, "if-match"), Some("\"MQ==\""));
    assert_eq!(header(&request, "ZUMO-API-VERSION"), Some("2.0.0"));
    assert_eq!(
        body(&request),
        json!({"id": "item-1", "text": "buy oat milk", "complete": false})
    );
}

#[tokio::test]
async fn replace_without_a_version_is_unconditional() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(200).set_body_json(stored("item-1", "Mg==")))
        .mount(&server)
        .await;
    let row = item(json!({"id": "item-1", "text": "x"}));
    transport(&server, Protocol::V2)
        .replace("TodoItem", &row, None)
        .await
        .unwrap();
    assert_eq!(header(&only_request(&server).await, "if-match"), None);
}

#[tokio::test]
async fn the_etag_header_overrides_the_body_version() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(stored("item-1", "body-version"))
                .insert_header("ETag", "\"header\\\"version\""),
        )
        .mount(&server)
        .await;
    let row = item(json!({"id": "item-1"}));
    let back = transport(&server, Protocol::V2)
        .replace("TodoItem", &row, None)
        .await
        .unwrap();
    assert_eq!(back["version"], "header\"version");
}

#[tokio::test]
async fn a_weak_etag_does_not_override_the_version() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(stored("item-1", "MQ=="))
                .insert_header("ETag", "W/\"3a-express\""),
        )
        .mount(&server)
        .await;
    let back = transport(&server, Protocol::V2)
        .insert("TodoItem", &item(json!({"id": "item-1"})))
        .await
        .unwrap();
    assert_eq!(back["version"], "MQ==");
}

#[tokio::test]
async fn delete_sends_if_match_and_accepts_200_with_the_item() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/tables/TodoItem/item-del"))
        .respond_with(ResponseTemplate::new(200).set_body_json(stored("item-del", "Mw==")))
        .mount(&server)
        .await;
    transport(&server, Protocol::V2)
        .delete("TodoItem", "item-del", Some("Mg=="))
        .await
        .unwrap();
    let request = only_request(&server).await;
    assert_eq!(header(&request, "if-match"), Some("\"Mg==\""));
    assert_eq!(header(&request, "ZUMO-API-VERSION"), Some("2.0.0"));
    assert!(request.body.is_empty());
}

#[tokio::test]
async fn ids_are_percent_encoded_in_the_path() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    transport(&server, Protocol::V2)
        .delete("TodoItem", "a/b c?d#e%f", None)
        .await
        .unwrap();
    assert_eq!(
        only_request(&server).await.url.path(),
        "/tables/TodoItem/a%2Fb%20c%3Fd%23e%25f"
    );
}

/// The request an incremental pull makes after its cursor reached (STAMP, item-1).
fn incremental_read(top: u64) -> ReadRequest {
    let cursor = format!(
        "(updatedAt gt datetimeoffset'{STAMP}') or ((updatedAt eq datetimeoffset'{STAMP}') and (id gt 'item-1'))"
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
async fn incremental_pull_sends_the_cursor_filter_order_top_and_include_deleted() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/tables/TodoItem"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([stored("item-2", "MQ==")])))
        .mount(&server)
        .await;
    let page = transport(&server, Protocol::V2)
        .read(&incremental_read(50))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0]["id"], "item-2");
    assert_eq!(page.count, None);
    // A short page from a server that did not say it is tidesync: no promise.
    assert_eq!(page.has_more, None);

    let request = only_request(&server).await;
    assert_eq!(header(&request, "ZUMO-API-VERSION"), Some("2.0.0"));
    assert_eq!(
        query(&request),
        vec![
            (
                "$filter".to_owned(),
                format!(
                    "(updatedAt gt datetimeoffset'{STAMP}') or ((updatedAt eq datetimeoffset'{STAMP}') and (id gt 'item-1'))"
                )
            ),
            ("$orderby".to_owned(), "updatedAt,id".to_owned()),
            ("$top".to_owned(), "50".to_owned()),
            ("__includeDeleted".to_owned(), "true".to_owned()),
        ]
    );
    // The raw form: spaces are %20 (never '+'), quotes %27 (the URL standard escapes them
    // in http query strings); both official servers percent-decode before parsing.
    assert_eq!(
        request.url.query().unwrap(),
        "$filter=(updatedAt%20gt%20datetimeoffset%272026-11-27T08:29:32.659Z%27)%20or%20((updatedAt%20eq%20datetimeoffset%272026-11-27T08:29:32.659Z%27)%20and%20(id%20gt%20%27item-1%27))&$orderby=updatedAt,id&$top=50&__includeDeleted=true"
    );
}

#[tokio::test]
async fn counted_pages_and_skip_paging_are_read() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [stored("bulk-04", "MQ=="), stored("bulk-05", "MQ=="), stored("bulk-06", "MQ==")],
            "count": 58
        })))
        .mount(&server)
        .await;
    let request = ReadRequest {
        table: "TodoItem".to_owned(),
        query: Query::new().order_by("id").skip(3).top(3).with_count(),
        include_deleted: false,
    };
    let page = transport(&server, Protocol::V2)
        .read(&request)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.count, Some(58));
    assert_eq!(page.has_more, None);
    let sent = only_request(&server).await;
    assert_eq!(
        query(&sent),
        vec![
            ("$orderby".to_owned(), "id".to_owned()),
            ("$skip".to_owned(), "3".to_owned()),
            ("$top".to_owned(), "3".to_owned()),
            ("$inlinecount".to_owned(), "allpages".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_link_header_says_more_pages_follow() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([stored("a", "MQ=="), stored("b", "MQ==")]))
                // The Node server's (broken) form: no angle brackets, wrong path.
                .insert_header("Link", "http://127.0.0.1/?%24top=2&%24skip=2; rel=next"),
        )
        .mount(&server)
        .await;
    let page = transport(&server, Protocol::V2)
        .read(&incremental_read(2))
        .await
        .unwrap();
    assert_eq!(page.has_more, Some(true));
}

#[tokio::test]
async fn an_empty_array_is_an_empty_page() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    let page = transport(&server, Protocol::V2)
        .read(&incremental_read(50))
        .await
        .unwrap();
    assert!(page.items.is_empty());
}

#[tokio::test]
async fn custom_headers_user_agent_and_base_path_are_used() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    let transport =
        tidesync_transport_http::HttpTransport::builder(format!("{}/app/", server.uri()))
            .protocol(Protocol::V2)
            .user_agent("todo-app/1.0")
            .header("X-ZUMO-INSTALLATION-ID", "install-1")
            .tables_path("/api/tables/")
            .build()
            .unwrap();
    transport
        .read(&ReadRequest {
            table: "TodoItem".to_owned(),
            query: Query::new(),
            include_deleted: false,
        })
        .await
        .unwrap();
    let request = only_request(&server).await;
    assert_eq!(request.url.path(), "/app/api/tables/TodoItem");
    assert_eq!(request.url.query(), None);
    assert_eq!(header(&request, "user-agent"), Some("todo-app/1.0"));
    assert_eq!(
        header(&request, "x-zumo-installation-id"),
        Some("install-1")
    );
}
