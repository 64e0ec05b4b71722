//! The batch extension over wiremock: the request, per-op results classified as single
//! calls, the 413 split, the fallback to single calls, and when `supports_batch` says yes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{body, builder, item, requests, transport};
use serde_json::{Value, json};
use tidesync_core::{BatchOperation, BatchOutcome, OpKind, ReadRequest, Transport, TransportError};
use tidesync_protocol::odata::Query;
use tidesync_transport_http::Protocol;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const CAPABILITIES: &str = "/tidesync/v1/capabilities";
const BATCH: &str = "/tidesync/v1/batch";

async fn server(extensions: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(CAPABILITIES))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"protocols": ["2.0.0", "3.0.0"], "extensions": extensions})),
        )
        .mount(&server)
        .await;
    server
}

fn op(n: usize, kind: OpKind) -> BatchOperation {
    BatchOperation {
        operation_id: format!("op{n}"),
        kind,
        table: "TodoItem".to_owned(),
        item_id: format!("id{n}"),
        item: (kind != OpKind::Delete)
            .then(|| item(json!({"id": format!("id{n}"), "text": "t", "updatedAt": "x"}))),
        if_match: (kind != OpKind::Insert).then(|| "AQ==".to_owned()),
    }
}

fn stored(id: &str) -> Value {
    json!({"id": id, "text": "server", "version": "Ag==", "updatedAt": "2026-11-27T08:29:32.659Z"})
}

#[tokio::test]
async fn per_op_results_are_classified_like_single_calls() {
    let server = server(json!({"batch": {"path": BATCH, "maxOperations": 1000}})).await;
    Mock::given(method("POST"))
        .and(path(BATCH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [
            {"status": 201, "item": stored("id0"), "error": null},
            {"status": 409, "item": stored("id1"), "error": "exists"},
            {"status": 412, "item": stored("id2"), "error": "changed"},
            {"status": 204, "item": null, "error": null},
            {"status": 410, "item": null, "error": "deleted"},
            {"status": 400, "item": null, "error": "bad op"},
            {"status": 401, "item": null, "error": "log in"},
        ]})))
        .mount(&server)
        .await;
    let transport = transport(&server, Protocol::Auto);
    assert!(transport.supports_batch(), "Auto says yes before discovery");
    let ops = vec![
        op(0, OpKind::Insert),
        op(1, OpKind::Insert),
        op(2, OpKind::Update),
        op(3, OpKind::Delete),
        op(4, OpKind::Update),
        op(5, OpKind::Insert),
        op(6, OpKind::Insert),
    ];
    let outcomes = transport.batch(&ops).await.unwrap();
    assert!(transport.supports_batch());
    assert_eq!(outcomes.len(), 7);
    let mut outcomes = outcomes.into_iter();
    let Some(BatchOutcome::Ok(Some(item))) = outcomes.next() else {
        panic!("insert")
    };
    assert_eq!(item["version"], "Ag==");
    for status in [409, 412] {
        match outcomes.next() {
            Some(BatchOutcome::Err(TransportError::Conflict {
                status: s,
                server_item: Some(server_item),
                ..
            })) => {
                assert_eq!(s, status);
                assert_eq!(server_item["text"], "server");
            }
            other => panic!("{status}: {other:?}"),
        }
    }
    assert!(matches!(outcomes.next(), Some(BatchOutcome::Ok(None))));
    assert!(matches!(
        outcomes.next(),
        Some(BatchOutcome::Err(TransportError::NotFound {
            status: 410,
            ..
        }))
    ));
    match outcomes.next() {
        Some(BatchOutcome::Err(TransportError::Http {
            status, message, ..
        })) => {
            assert_eq!((status, message.as_str()), (400, "bad op"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        outcomes.next(),
        Some(BatchOutcome::Err(TransportError::Auth { .. }))
    ));

    // The request: one POST with every op, system properties stripped, no version header.
    let all = requests(&server).await;
    let posts: Vec<&Request> = all.iter().filter(|r| r.url.path() == BATCH).collect();
    assert_eq!(posts.len(), 1);
    assert!(posts[0].headers.get("zumo-api-version").is_none());
    let sent = body(posts[0]);
    assert_eq!(
        sent["operations"][0],
        json!({"id": "op0", "kind": "insert", "table": "TodoItem", "itemId": "id0",
               "item": {"id": "id0", "text": "t"}, "ifMatch": null})
    );
    assert_eq!(
        sent["operations"][3],
        json!({"id": "op3", "kind": "delete", "table": "TodoItem", "itemId": "id3",
               "item": null, "ifMatch": "AQ=="})
    );
}

/// Answers 413 to more than two ops, else 201 for each.
fn at_most_two(request: &Request) -> ResponseTemplate {
    let sent: Value = serde_json::from_slice(&request.body).unwrap();
    let ops = sent["operations"].as_array().unwrap();
    if ops.len() > 2 {
        return ResponseTemplate::new(413).set_body_json(json!({"error": "too many"}));
    }
    let results: Vec<Value> = ops
        .iter()
        .map(|op| json!({"status": 201, "item": stored(op["itemId"].as_str().unwrap())}))
        .collect();
    ResponseTemplate::new(200).set_body_json(json!({ "results": results }))
}

#[tokio::test]
async fn a_batch_too_large_for_the_server_is_split() {
    let server = server_answering(at_most_two).await;
    let transport = transport(&server, Protocol::Auto);
    let ops: Vec<BatchOperation> = (0..5).map(|n| op(n, OpKind::Insert)).collect();
    let outcomes = transport.batch(&ops).await.unwrap();
    let ids: Vec<String> = outcomes
        .into_iter()
        .map(|o| match o {
            BatchOutcome::Ok(Some(item)) => item["id"].as_str().unwrap().to_owned(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, ["id0", "id1", "id2", "id3", "id4"]);
}

#[tokio::test]
async fn a_server_without_the_extension_gets_single_calls() {
    let server = server(json!({"capabilities": CAPABILITIES})).await;
    Mock::given(method("POST"))
        .and(path("/tables/TodoItem"))
        .respond_with(ResponseTemplate::new(201).set_body_json(stored("id0")))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let transport = transport(&server, Protocol::Auto);
    let outcomes = transport
        .batch(&[op(0, OpKind::Insert), op(1, OpKind::Delete)])
        .await
        .unwrap();
    assert!(matches!(outcomes[0], BatchOutcome::Ok(Some(_))));
    assert!(matches!(outcomes[1], BatchOutcome::Ok(None)));
    assert!(!transport.supports_batch(), "discovery said no");
    let all = requests(&server).await;
    assert!(all.iter().all(|r| r.url.path() != BATCH));

    // A protocol chosen by hand never batches.
    let fixed = builder(&server, Protocol::V3).build().unwrap();
    assert!(!fixed.supports_batch());
}

/// A batch request the server refuses is one error for the whole batch: the transport
/// neither falls back to single calls for its ops nor retries it, and it stays usable.
#[tokio::test]
async fn a_failed_batch_request_is_one_error_and_stops_single_calls() {
    let server =
        server_answering(ResponseTemplate::new(401).set_body_json(json!({"error": "no"}))).await;
    Mock::given(method("GET"))
        .and(path("/tables/TodoItem"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([stored("id9")])))
        .mount(&server)
        .await;
    let transport = transport(&server, Protocol::Auto);
    let error = transport
        .batch(&[op(0, OpKind::Insert), op(1, OpKind::Update)])
        .await
        .unwrap_err();
    assert!(matches!(error, TransportError::Auth { .. }), "{error:?}");
    let paths: Vec<String> = requests(&server)
        .await
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect();
    assert_eq!(
        paths,
        [format!("GET {CAPABILITIES}"), format!("POST {BATCH}")],
        "one batch request and no single call for its ops"
    );
    // A read still works (the batch route is separate from the tables).
    let page = transport
        .read(&ReadRequest {
            table: "TodoItem".to_owned(),
            query: Query::new().top(1),
            include_deleted: false,
        })
        .await
        .unwrap();
    assert_eq!(page.items, vec![item(stored("id9"))]);
}

/// `batch_answer` leaves the decoding to the caller: the request's own failures come at
/// once, the answer's per-op outcomes when asked for, the same as `batch` gives them (also
/// when the batch was split), and an answer that does not decode fails then.
#[tokio::test]
async fn a_batch_answer_is_decoded_when_asked_and_as_batch_decodes_it() {
    let server = server_answering(at_most_two).await;
    let http = transport(&server, Protocol::Auto);
    for n in [2, 5] {
        let ops: Vec<BatchOperation> = (0..n).map(|n| op(n, OpKind::Insert)).collect();
        let decoded = http.batch(&ops).await.unwrap();
        let answer = http.batch_answer(&ops).await.unwrap();
        let later = answer.outcomes().unwrap();
        assert_eq!(later.len(), n);
        assert_eq!(format!("{later:?}"), format!("{decoded:?}"));
    }

    let garbled =
        server_answering(ResponseTemplate::new(200).set_body_string("{\"results\": 7")).await;
    let http = transport(&garbled, Protocol::Auto);
    let ops = [op(0, OpKind::Insert)];
    let answer = http.batch_answer(&ops).await.unwrap();
    let error = answer.outcomes().unwrap_err();
    assert!(matches!(error, TransportError::Protocol(_)), "{error:?}");
    let error = http.batch(&ops).await.unwrap_err();
    assert!(matches!(error, TransportError::Protocol(_)), "{error:?}");

    let refused =
        server_answering(ResponseTemplate::new(401).set_body_json(json!({"error": "no"}))).await;
    let error = transport(&refused, Protocol::Auto)
        .batch_answer(&ops)
        .await
        .unwrap_err();
    assert!(matches!(error, TransportError::Auth { .. }), "{error:?}");
}

/// A server with the extension whose batch route answers `answer`.
async fn server_answering(answer: impl Respond + 'static) -> MockServer {
    let server = server(json!(["batch"])).await;
    Mock::given(method("POST"))
        .and(path(BATCH))
        .respond_with(answer)
        .mount(&server)
        .await;
    server
}
