//! The snapshot extension against wiremock: the transport's `snapshot` (request shape,
//! batching, the end line, cut-offs, server errors part-way, the capability check) and the
//! engine's first pull of an empty table through it, then paging on from its cursor.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{builder, header, query, requests};
use serde_json::{Value, json};
use tidesync_core::{
    ColumnType, LocalStore as _, MemoryStore, Query, Snapshot, SnapshotRequest, SyncContext,
    TableDef, Transport, TransportError, cursor_key,
};
use tidesync_protocol::odata::col;
use tidesync_transport_http::{HttpTransport, Protocol};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TODO: &str = "TodoItem";
const SNAPSHOT_PATH: &str = "/tidesync/v1/tables/TodoItem/snapshot";

fn row(n: u32) -> Value {
    json!({
        "id": format!("r{n}"),
        "text": format!("row {n}"),
        "updatedAt": format!("2026-01-01T00:00:00.{n:03}Z"),
        "createdAt": "2026-01-01T00:00:00.000Z",
        "version": format!("v{n}"),
        "deleted": false,
    })
}

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// A mock server advertising the snapshot extension and answering it with `body`, and
/// (for the engine's paging after it) an empty v3 page.
async fn server(body: String) -> MockServer {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/tidesync/v1/capabilities"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "protocols": ["2.0.0", "3.0.0"],
            "extensions": {"snapshot": {"path": "/tidesync/v1/tables/{table}/snapshot"}},
        })))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path(SNAPSHOT_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-ndjson")
                .set_body_string(body),
        )
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/tables/TodoItem"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"items": [], "count": null, "nextLink": null})),
        )
        .mount(&mock)
        .await;
    mock
}

fn request(batch_rows: usize) -> SnapshotRequest {
    SnapshotRequest {
        table: TODO.to_owned(),
        filter: None,
        batch_rows,
    }
}

/// Everything the channel delivers until it closes.
async fn drain(mut snapshot: Snapshot) -> Vec<Result<Vec<String>, TransportError>> {
    let mut out = Vec::new();
    while let Some(batch) = snapshot.recv().await {
        out.push(batch.map(|items| {
            items
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned())
                .collect()
        }));
    }
    out
}

#[tokio::test]
async fn rows_arrive_in_batches_and_the_channel_closes_after_the_end_line() {
    let mut lines: Vec<Value> = (1..=5).map(row).collect();
    lines.push(json!({"end": true, "rows": 5}));
    let mock = server(ndjson(&lines)).await;
    let transport = builder(&mock, Protocol::Auto).build().unwrap();
    let mut asked = request(2);
    asked.filter = Some(col("text").ne("x"));
    let batches = drain(transport.snapshot(&asked).await.unwrap()).await;
    let batches: Vec<Vec<String>> = batches.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        batches,
        vec![vec!["r1", "r2"], vec!["r3", "r4"], vec!["r5"]]
    );
    let sent = requests(&mock).await;
    let snapshot = sent.iter().find(|r| r.url.path() == SNAPSHOT_PATH).unwrap();
    // The columnar framing is preferred; this server answers NDJSON, which is read as such.
    assert_eq!(
        header(snapshot, "accept"),
        Some("application/vnd.tidesync.columns, application/x-ndjson;q=0.5")
    );
    assert_eq!(
        query(snapshot),
        vec![
            ("$filter".to_owned(), "text ne 'x'".to_owned()),
            ("__includedeleted".to_owned(), "true".to_owned()),
            ("$top".to_owned(), "8000".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_cut_off_body_an_error_line_and_a_wrong_count_are_errors_after_the_rows() {
    // Cut off: no end line.
    let mock = server(ndjson(&[row(1), row(2), row(3)])).await;
    let transport = builder(&mock, Protocol::Auto).build().unwrap();
    let got = drain(transport.snapshot(&request(2)).await.unwrap()).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].as_ref().unwrap(), &vec!["r1", "r2"]);
    assert_eq!(got[1].as_ref().unwrap(), &vec!["r3"]);
    assert!(matches!(&got[2], Err(TransportError::Network(m)) if m.message.contains("end line")));

    // The server failed part-way.
    let mock = server(ndjson(&[row(1), json!({"error": "disk I/O error"})])).await;
    let transport = builder(&mock, Protocol::Auto).build().unwrap();
    let got = drain(transport.snapshot(&request(10)).await.unwrap()).await;
    assert_eq!(got[0].as_ref().unwrap(), &vec!["r1"]);
    assert!(matches!(&got[1], Err(TransportError::Network(m)) if m.message.contains("disk I/O")));

    // A count that does not match what arrived.
    let mock = server(ndjson(&[row(1), json!({"end": true, "rows": 2})])).await;
    let transport = builder(&mock, Protocol::Auto).build().unwrap();
    let got = drain(transport.snapshot(&request(10)).await.unwrap()).await;
    assert!(
        matches!(got.last(), Some(Err(TransportError::Protocol(_)))),
        "{got:?}"
    );

    // Garbage.
    let mock = server("{\"id\":\"r1\"}\nnot json\n".to_owned()).await;
    let transport = builder(&mock, Protocol::Auto).build().unwrap();
    let got = drain(transport.snapshot(&request(10)).await.unwrap()).await;
    assert!(
        matches!(got.last(), Some(Err(TransportError::Protocol(_)))),
        "{got:?}"
    );
}

#[tokio::test]
async fn no_snapshot_without_the_extension_or_with_a_fixed_protocol() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/tidesync/v1/capabilities"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"protocols": ["3.0.0"], "extensions": {"batch": {"path": "/tidesync/v1/batch"}}}),
        ))
        .mount(&mock)
        .await;
    let auto = builder(&mock, Protocol::Auto).build().unwrap();
    let err = auto.snapshot(&request(10)).await.unwrap_err();
    assert!(matches!(err, TransportError::Unsupported(_)), "{err:?}");
    let fixed = builder(&server(String::new()).await, Protocol::V3)
        .build()
        .unwrap();
    let err = fixed.snapshot(&request(10)).await.unwrap_err();
    assert!(matches!(err, TransportError::Unsupported(_)), "{err:?}");
}

fn client(mock: &MockServer) -> (SyncContext, MemoryStore) {
    todo_context(builder(mock, Protocol::Auto).build().unwrap(), 2)
}

/// A context over a memory store with the todo table, pulling `page` rows a page.
fn todo_context(transport: HttpTransport, page: u64) -> (SyncContext, MemoryStore) {
    let store = MemoryStore::new();
    store
        .define_table(&TableDef::new(TODO).column("text", ColumnType::String))
        .unwrap();
    let context = SyncContext::builder()
        .store(store.clone())
        .transport(transport)
        .page_size(page)
        .build()
        .unwrap();
    (context, store)
}

#[tokio::test]
async fn the_first_pull_of_an_empty_table_reads_the_snapshot_then_pages_on_from_its_cursor() {
    let mut lines: Vec<Value> = (1..=5).map(row).collect();
    lines.push(json!({"end": true, "rows": 5}));
    let mock = server(ndjson(&lines)).await;
    let (context, store) = client(&mock);
    let pulled = context
        .table::<Value>(TODO)
        .pull("all", Query::all())
        .await
        .unwrap();
    assert!(pulled.snapshot);
    assert_eq!(pulled.upserted, 5);
    // The snapshot, then one page after its cursor (empty here).
    assert_eq!(pulled.requests, 2);
    let cursor: Value =
        serde_json::from_str(&store.config(&cursor_key(TODO, "all")).unwrap().unwrap()).unwrap();
    assert_eq!(cursor["id"], "r5");
    let sent = requests(&mock).await;
    let page = sent
        .iter()
        .find(|r| r.url.path() == "/tables/TodoItem")
        .unwrap();
    let filter = query(page)
        .into_iter()
        .find(|(name, _)| name == "$filter")
        .unwrap()
        .1;
    assert!(filter.contains("id gt 'r5'"), "{filter}");

    // The table is no longer empty: the next pull pages, no snapshot.
    let again = context
        .table::<Value>(TODO)
        .pull("all", Query::all())
        .await
        .unwrap();
    assert!(!again.snapshot);
    let snapshots = requests(&mock)
        .await
        .iter()
        .filter(|r| r.url.path() == SNAPSHOT_PATH)
        .count();
    assert_eq!(snapshots, 1);
}

#[tokio::test]
async fn a_snapshot_cut_off_keeps_the_rows_applied_and_the_next_pull_reads_on_after_them() {
    let mock = server(ndjson(&[row(1), row(2), row(3)])).await;
    let (context, store) = client(&mock);
    let err = context
        .table::<Value>(TODO)
        .pull("all", Query::all())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("end line"), "{err}");
    // All three rows came before the cut (batches of 2, then the rest) and are kept,
    // with the cursor after the last.
    assert_eq!(store.query(TODO, &Query::all()).unwrap().items.len(), 3);
    let cursor: Value =
        serde_json::from_str(&store.config(&cursor_key(TODO, "all")).unwrap().unwrap()).unwrap();
    assert_eq!(cursor["id"], "r3");
    // The next pull reads the rest of the snapshot after the cursor (the bootstrap was cut
    // off), not the whole table again, then pages on.
    Mock::given(method("GET"))
        .and(path(SNAPSHOT_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-ndjson")
                .set_body_string(ndjson(&[row(4), json!({"end": true, "rows": 1})])),
        )
        .with_priority(1)
        .mount(&mock)
        .await;
    let before = requests(&mock).await.len();
    let again = context
        .table::<Value>(TODO)
        .pull("all", Query::all())
        .await
        .unwrap();
    assert!(again.snapshot);
    assert_eq!(again.upserted, 1);
    let resumed = requests(&mock).await[before..]
        .iter()
        .find(|r| r.url.path() == SNAPSHOT_PATH)
        .cloned()
        .expect("a snapshot request");
    let filter = query(&resumed)
        .into_iter()
        .find(|(name, _)| name == "$filter")
        .map(|(_, value)| value)
        .expect("a $filter");
    assert!(
        filter.contains("updatedAt ge") && filter.contains("'r3'"),
        "{filter}"
    );
    assert_eq!(store.query(TODO, &Query::all()).unwrap().items.len(), 4);
    assert_eq!(
        store.config(&format!("bootstrap|{TODO}|all")).unwrap(),
        None
    );
}

/// Against tidesync-server on loopback: client A writes rows (some then deleted), client
/// B's first pull of its empty table reads them through the snapshot, and its later pulls
/// page on with A's new changes, deletes included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_client_bootstraps_from_the_server_snapshot_and_pages_on() {
    use tidesync_server::Server;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .sqlite(dir.path().join("server.db"))
        .table(TODO)
        .bind("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let connect =
        |page: u64| todo_context(HttpTransport::builder(server.url()).build().unwrap(), page);
    let (a, _) = connect(100);
    let table_a = a.table::<Value>(TODO);
    for n in 0..250 {
        table_a
            .insert(&json!({"id": format!("row-{n:03}"), "text": format!("text {n}")}))
            .await
            .unwrap();
    }
    a.push().await.unwrap();
    for n in (0..250).step_by(10) {
        table_a.delete_id(&format!("row-{n:03}")).await.unwrap();
    }
    a.push().await.unwrap();

    let (b, store_b) = connect(40);
    let table_b = b.table::<Value>(TODO);
    let first = table_b.pull("all", Query::all()).await.unwrap();
    assert!(first.snapshot, "{first:?}");
    let live = store_b.query(TODO, &Query::all()).unwrap().items;
    assert_eq!(live.len(), 225);
    assert!(live.iter().all(|i| i["id"].as_str().unwrap() != "row-000"));
    assert_eq!(
        store_b.get(TODO, "row-001").unwrap().unwrap()["text"],
        "text 1"
    );

    // A's later changes reach B by paging from the snapshot's cursor.
    table_a
        .update(&json!({"id": "row-001", "text": "changed"}))
        .await
        .unwrap();
    table_a.delete_id("row-002").await.unwrap();
    table_a
        .insert(&json!({"id": "row-new", "text": "new"}))
        .await
        .unwrap();
    a.push().await.unwrap();
    let next = table_b.pull("all", Query::all()).await.unwrap();
    assert!(!next.snapshot);
    assert_eq!(
        store_b.get(TODO, "row-001").unwrap().unwrap()["text"],
        "changed"
    );
    assert!(store_b.get(TODO, "row-002").unwrap().is_none());
    assert!(store_b.get(TODO, "row-new").unwrap().is_some());
    server.shutdown().await.unwrap();
}
