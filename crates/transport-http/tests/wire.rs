//! The wire of both table protocols against wiremock: verbs, headers, bodies and page
//! shapes. Each case runs for v2 (Azure Mobile Apps: `PATCH`, `ZUMO-API-VERSION: 2.0.0`,
//! OData v3 filters, bare arrays or `{results, count}`, `Link` headers) and v3 (Datasync:
//! `PUT`, `3.0.0`, OData v4 filters, `{items, count, nextLink}`) through one [`Wire`]
//! describing what differs; the cases only one protocol has come last.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{body, header, item, only_request, query, transport};
use serde_json::{Value, json};
use tidesync_core::{ReadRequest, Transport, TransportError};
use tidesync_protocol::odata::{Query, parse_filter};
use tidesync_transport_http::Protocol;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const STAMP: &str = "2026-11-27T08:29:32.659Z";

/// What one protocol puts on the wire.
#[derive(Debug, Clone, Copy)]
struct Wire {
    protocol: Protocol,
    /// The `ZUMO-API-VERSION` header.
    api_version: &'static str,
    /// The verb of a replace.
    replace: &'static str,
    /// The include-deleted query flag.
    include_deleted: &'static str,
    /// The count query option.
    count: (&'static str, &'static str),
}

const V2: Wire = Wire {
    protocol: Protocol::V2,
    api_version: "2.0.0",
    replace: "PATCH",
    include_deleted: "__includeDeleted",
    count: ("$inlinecount", "allpages"),
};

const V3: Wire = Wire {
    protocol: Protocol::V3,
    api_version: "3.0.0",
    replace: "PUT",
    include_deleted: "__includedeleted",
    count: ("$count", "true"),
};

const WIRES: [Wire; 2] = [V2, V3];

impl Wire {
    /// A query answer holding `rows`, in this protocol's shape (no count, no next page).
    fn page(self, rows: Vec<Value>) -> Value {
        match self.protocol {
            Protocol::V2 => Value::Array(rows),
            _ => json!({"items": rows, "count": null, "nextLink": null}),
        }
    }

    /// The cursor filter after (STAMP, `id`), as this protocol prints it.
    fn cursor_filter(self, id: &str) -> String {
        match self.protocol {
            Protocol::V2 => format!(
                "(updatedAt gt datetimeoffset'{STAMP}') or ((updatedAt eq datetimeoffset'{STAMP}') and (id gt '{id}'))"
            ),
            _ => format!("(updatedAt gt {STAMP}) or ((updatedAt eq {STAMP}) and (id gt '{id}'))"),
        }
    }
}

fn stored(id: &str, version: &str) -> Value {
    json!({
        "id": id, "text": "buy milk", "complete": false,
        "createdAt": STAMP, "updatedAt": STAMP, "version": version, "deleted": false
    })
}

/// The request an incremental pull makes after its cursor reached (STAMP, `id`).
fn incremental_read(id: &str, top: u64) -> ReadRequest {
    let cursor = format!(
        "(updatedAt gt datetimeoffset'{STAMP}') or ((updatedAt eq datetimeoffset'{STAMP}') and (id gt '{id}'))"
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
async fn insert_posts_the_item_without_system_properties() {
    for wire in WIRES {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/tables/TodoItem"))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(stored("item-1", "MQ=="))
                    .insert_header("ETag", "\"MQ==\"")
                    .insert_header("Location", "http://h/tables/TodoItem/item-1"),
            )
            .mount(&server)
            .await;
        let sent = item(json!({
            "id": "item-1", "text": "buy milk", "complete": false,
            "version": "stale", "updatedAt": STAMP, "createdAt": STAMP, "deleted": false
        }));
        let back = transport(&server, wire.protocol)
            .insert("TodoItem", &sent)
            .await
            .unwrap();
        assert_eq!(back["version"], "MQ==", "{wire:?}");
        assert_eq!(back["updatedAt"], STAMP, "{wire:?}");

        let request = only_request(&server).await;
        assert_eq!(request.method.as_str(), "POST");
        assert_eq!(request.url.path(), "/tables/TodoItem");
        assert_eq!(request.url.query(), None);
        assert_eq!(header(&request, "ZUMO-API-VERSION"), Some(wire.api_version));
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
            json!({"id": "item-1", "text": "buy milk", "complete": false}),
            "{wire:?}"
        );
    }
}

#[tokio::test]
async fn replace_sends_the_full_row_with_if_match() {
    for wire in WIRES {
        let server = MockServer::start().await;
        Mock::given(method(wire.replace))
            .and(path("/tables/TodoItem/item-1"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(stored("item-1", "Mg=="))
                    .insert_header("ETag", "\"Mg==\""),
            )
            .mount(&server)
            .await;
        let row = item(json!({
            "id": "item-1", "text": "buy oat milk", "complete": false, "version": "MQ=="
        }));
        let back = transport(&server, wire.protocol)
            .replace("TodoItem", &row, Some("MQ=="))
            .await
            .unwrap();
        assert_eq!(back["version"], "Mg==", "{wire:?}");
        let request = only_request(&server).await;
        assert_eq!(request.method.as_str(), wire.replace);
        assert_eq!(header(&request, "if-match"), Some("\"MQ==\""));
        assert_eq!(header(&request, "ZUMO-API-VERSION"), Some(wire.api_version));
        assert_eq!(
            body(&request),
            json!({"id": "item-1", "text": "buy oat milk", "complete": false}),
            "{wire:?}"
        );
    }
}

#[tokio::test]
async fn replace_without_a_version_is_unconditional() {
    for wire in WIRES {
        let server = MockServer::start().await;
        Mock::given(method(wire.replace))
            .respond_with(ResponseTemplate::new(200).set_body_json(stored("item-1", "Mg==")))
            .mount(&server)
            .await;
        let row = item(json!({"id": "item-1", "text": "x"}));
        transport(&server, wire.protocol)
            .replace("TodoItem", &row, None)
            .await
            .unwrap();
        assert_eq!(
            header(&only_request(&server).await, "if-match"),
            None,
            "{wire:?}"
        );
    }
}

#[tokio::test]
async fn the_etag_header_overrides_the_body_version() {
    for wire in WIRES {
        let server = MockServer::start().await;
        Mock::given(method(wire.replace))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(stored("item-1", "body-version"))
                    .insert_header("ETag", "\"header\\\"version\""),
            )
            .mount(&server)
            .await;
        let row = item(json!({"id": "item-1"}));
        let back = transport(&server, wire.protocol)
            .replace("TodoItem", &row, None)
            .await
            .unwrap();
        assert_eq!(back["version"], "header\"version", "{wire:?}");
    }
}

#[tokio::test]
async fn a_weak_etag_does_not_override_the_version() {
    for wire in WIRES {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(stored("item-1", "MQ=="))
                    .insert_header("ETag", "W/\"3a-express\""),
            )
            .mount(&server)
            .await;
        let back = transport(&server, wire.protocol)
            .insert("TodoItem", &item(json!({"id": "item-1"})))
            .await
            .unwrap();
        assert_eq!(back["version"], "MQ==", "{wire:?}");
    }
}

/// A delete sends `If-Match` and no body, and takes both a 200 with the tombstone (v2,
/// the official Node server) and a bare 204 (v3).
#[tokio::test]
async fn delete_sends_if_match_and_accepts_200_with_the_item_or_204() {
    for wire in WIRES {
        for answer in [
            ResponseTemplate::new(200).set_body_json(stored("item-del", "Mw==")),
            ResponseTemplate::new(204),
        ] {
            let server = MockServer::start().await;
            Mock::given(method("DELETE"))
                .and(path("/tables/TodoItem/item-del"))
                .respond_with(answer)
                .mount(&server)
                .await;
            transport(&server, wire.protocol)
                .delete("TodoItem", "item-del", Some("Mg=="))
                .await
                .unwrap();
            let request = only_request(&server).await;
            assert_eq!(header(&request, "if-match"), Some("\"Mg==\""));
            assert_eq!(header(&request, "ZUMO-API-VERSION"), Some(wire.api_version));
            assert!(request.body.is_empty());
        }
    }
}

#[tokio::test]
async fn ids_are_percent_encoded_in_the_path() {
    for wire in WIRES {
        let server = MockServer::start().await;
        Mock::given(method("DELETE"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&server)
            .await;
        transport(&server, wire.protocol)
            .delete("TodoItem", "a/b c?d#e%f", None)
            .await
            .unwrap();
        assert_eq!(
            only_request(&server).await.url.path(),
            "/tables/TodoItem/a%2Fb%20c%3Fd%23e%25f"
        );
    }
}

#[tokio::test]
async fn replace_of_a_deleted_item_is_not_found_410() {
    for wire in WIRES {
        let server = MockServer::start().await;
        Mock::given(method(wire.replace))
            .respond_with(ResponseTemplate::new(410))
            .mount(&server)
            .await;
        let err = transport(&server, wire.protocol)
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
            "{wire:?}: {err:?}"
        );
    }
}

/// The cursor filter in the protocol's OData dialect, `$orderby`, `$top` and the
/// include-deleted flag as the protocol spells it. A short page: v3's null `nextLink` says
/// it is the last; v2 from a server that did not say it is tidesync promises nothing.
#[tokio::test]
async fn incremental_pull_sends_the_cursor_filter_order_top_and_include_deleted() {
    for wire in WIRES {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/tables/TodoItem"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(wire.page(vec![stored("item-2", "MQ==")])),
            )
            .mount(&server)
            .await;
        let page = transport(&server, wire.protocol)
            .read(&incremental_read("item-1", 50))
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0]["id"], "item-2");
        assert_eq!(page.count, None);
        let expected_more = match wire.protocol {
            Protocol::V2 => None,
            _ => Some(false),
        };
        assert_eq!(page.has_more, expected_more, "{wire:?}");

        let request = only_request(&server).await;
        assert_eq!(header(&request, "ZUMO-API-VERSION"), Some(wire.api_version));
        assert_eq!(
            query(&request),
            vec![
                ("$filter".to_owned(), wire.cursor_filter("item-1")),
                ("$orderby".to_owned(), "updatedAt,id".to_owned()),
                ("$top".to_owned(), "50".to_owned()),
                (wire.include_deleted.to_owned(), "true".to_owned()),
            ],
            "{wire:?}"
        );
        if wire.protocol == Protocol::V2 {
            // The raw form: spaces are %20 (never '+'), quotes %27 (the URL standard
            // escapes them in http query strings); both official servers percent-decode
            // before parsing.
            assert_eq!(
                request.url.query().unwrap(),
                "$filter=(updatedAt%20gt%20datetimeoffset%272026-11-27T08:29:32.659Z%27)%20or%20((updatedAt%20eq%20datetimeoffset%272026-11-27T08:29:32.659Z%27)%20and%20(id%20gt%20%27item-1%27))&$orderby=updatedAt,id&$top=50&__includeDeleted=true"
            );
        }
    }
}

/// The count is asked as the protocol asks it and read from its answer; `$skip` paging.
#[tokio::test]
async fn counted_pages_and_skip_paging_are_read() {
    for wire in WIRES {
        let server = MockServer::start().await;
        let rows = vec![
            stored("bulk-04", "MQ=="),
            stored("bulk-05", "MQ=="),
            stored("bulk-06", "MQ=="),
        ];
        let answer = match wire.protocol {
            Protocol::V2 => json!({"results": rows, "count": 58}),
            _ => json!({"items": rows, "count": 58, "nextLink": "$skip=6&$top=3"}),
        };
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(answer))
            .mount(&server)
            .await;
        let request = ReadRequest {
            table: "TodoItem".to_owned(),
            query: Query::new().order_by("id").skip(3).top(3).with_count(),
            include_deleted: false,
        };
        let page = transport(&server, wire.protocol)
            .read(&request)
            .await
            .unwrap();
        assert_eq!(page.items.len(), 3);
        assert_eq!(page.count, Some(58), "{wire:?}");
        let expected_more = match wire.protocol {
            Protocol::V2 => None,
            _ => Some(true),
        };
        assert_eq!(page.has_more, expected_more, "{wire:?}");
        let sent = only_request(&server).await;
        assert_eq!(
            query(&sent),
            vec![
                ("$orderby".to_owned(), "id".to_owned()),
                ("$skip".to_owned(), "3".to_owned()),
                ("$top".to_owned(), "3".to_owned()),
                (wire.count.0.to_owned(), wire.count.1.to_owned()),
            ],
            "{wire:?}"
        );
    }
}

/// A count alone (no other option) is the only query parameter; an empty answer with a
/// count of 0.
#[tokio::test]
async fn count_alone_is_the_only_parameter() {
    for wire in WIRES {
        let server = MockServer::start().await;
        let answer = match wire.protocol {
            Protocol::V2 => json!({"results": [], "count": 0}),
            _ => json!({"items": [], "count": 0, "nextLink": null}),
        };
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(answer))
            .mount(&server)
            .await;
        let request = ReadRequest {
            table: "TodoItem".to_owned(),
            query: Query::new().with_count(),
            include_deleted: false,
        };
        let page = transport(&server, wire.protocol)
            .read(&request)
            .await
            .unwrap();
        assert_eq!(page.count, Some(0), "{wire:?}");
        if wire.protocol == Protocol::V3 {
            assert_eq!(page.has_more, Some(false));
        }
        assert_eq!(
            query(&only_request(&server).await),
            vec![(wire.count.0.to_owned(), wire.count.1.to_owned())],
            "{wire:?}"
        );
    }
}

#[tokio::test]
async fn an_empty_answer_is_an_empty_page() {
    for wire in WIRES {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(wire.page(Vec::new())))
            .mount(&server)
            .await;
        let page = transport(&server, wire.protocol)
            .read(&incremental_read("item-1", 50))
            .await
            .unwrap();
        assert!(page.items.is_empty(), "{wire:?}");
    }
}

#[tokio::test]
async fn custom_headers_user_agent_and_base_path_are_used() {
    for wire in WIRES {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(wire.page(Vec::new())))
            .mount(&server)
            .await;
        let transport =
            tidesync_transport_http::HttpTransport::builder(format!("{}/app/", server.uri()))
                .protocol(wire.protocol)
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
}

// ---- what only one protocol has ----

/// v2: a `Link: …; rel=next` header says more pages follow.
#[tokio::test]
async fn v2_a_link_header_says_more_pages_follow() {
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
        .read(&incremental_read("item-1", 2))
        .await
        .unwrap();
    assert_eq!(page.has_more, Some(true));
}

/// v3: a `nextLink` says more pages follow; a null one after a full page promises nothing.
#[tokio::test]
async fn v3_next_link_decides_has_more() {
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
    let page = transport.read(&incremental_read("v3-1", 2)).await.unwrap();
    assert_eq!(page.has_more, Some(true));
    assert_eq!(page.count, Some(150));
    // A full page with a null nextLink may only mean the requested $top is used up.
    let page = transport.read(&incremental_read("v3-1", 3)).await.unwrap();
    assert_eq!(page.has_more, None);
}
