//! The adapter through its public API, as a host would call it: against a
//! tidesync-server on loopback, and against a loopback port that refuses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tidesync_ffi::{
    Client, ClientConfig, ColumnSpec, ColumnType, ConflictInfo, ConflictResolution,
    ConflictResolver, LiveQueryListener, OpKind, PushStatus, QuerySpec, StatusListener, SyncStatus,
    TableSpec, TidesyncError,
};
use tidesync_server::{RunningServer, Server};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

fn config(db: &std::path::Path, url: &str) -> ClientConfig {
    ClientConfig {
        database_path: db.display().to_string(),
        server_url: url.to_owned(),
        tables: vec![TableSpec {
            name: "TodoItem".into(),
            columns: vec![
                ColumnSpec {
                    name: "text".into(),
                    column_type: ColumnType::String,
                },
                ColumnSpec {
                    name: "complete".into(),
                    column_type: ColumnType::Bool,
                },
            ],
        }],
        api_key: None,
        bearer_token: None,
        headers: Default::default(),
        timeout_ms: None,
        connect_timeout_ms: None,
        max_retries: Some(0),
        page_size: None,
        batch_size: None,
        max_conflict_rounds: None,
    }
}

async fn server(dir: &std::path::Path) -> RunningServer {
    Server::builder()
        .sqlite(dir.join("server.db"))
        .table("TodoItem")
        .bind("127.0.0.1:0")
        .start()
        .await
        .unwrap()
}

/// A loopback URL that refuses connections: its port is bound by a socket that does not
/// listen, for as long as the socket lives.
fn refusing_url() -> (tokio::net::TcpSocket, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}", socket.local_addr().unwrap());
    (socket, url)
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn texts(rows: &Value) -> Vec<&str> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect()
}

/// The next value from a listener that satisfies `ok`; a guard fails the test after 30 s.
async fn next_matching<T>(inbox: &mut UnboundedReceiver<T>, ok: impl Fn(&T) -> bool) -> T {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let value = inbox.recv().await.expect("the listener is kept");
            if ok(&value) {
                return value;
            }
        }
    })
    .await
    .expect("the listener is told within 30 s")
}

struct Inbox<T>(UnboundedSender<T>);

impl StatusListener for Inbox<SyncStatus> {
    fn on_status(&self, status: SyncStatus) {
        let _ = self.0.send(status);
    }
}

impl LiveQueryListener for Inbox<Result<Value, String>> {
    fn on_rows(&self, rows_json: String) {
        let _ = self.0.send(Ok(parse(&rows_json)));
    }
    fn on_error(&self, error: String) {
        let _ = self.0.send(Err(error));
    }
}

type Answer = fn(&ConflictInfo) -> ConflictResolution;

/// Answers every conflict with the resolution `answer` makes, and records what it was asked.
struct Resolver {
    answer: Mutex<Answer>,
    asked: Mutex<Vec<ConflictInfo>>,
}

impl ConflictResolver for Resolver {
    fn resolve(&self, conflict: ConflictInfo) -> ConflictResolution {
        let answer = (self.answer.lock().unwrap())(&conflict);
        self.asked.lock().unwrap().push(conflict);
        answer
    }
}

/// The server's text, the client's `complete`.
fn merge_fields(conflict: &ConflictInfo) -> ConflictResolution {
    let server = parse(conflict.server_item.as_deref().unwrap());
    let local = parse(conflict.local_item.as_deref().unwrap());
    ConflictResolution::Merge {
        item:
            json!({"id": conflict.item_id, "text": server["text"], "complete": local["complete"]})
                .to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_push_is_a_status_and_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let (_socket, url) = refusing_url();
    let client = Client::open(config(&dir.path().join("c.db"), &url), None).unwrap();
    let todo = client.table("TodoItem".into());
    let item = parse(
        &todo
            .insert(json!({"text": "milk", "complete": false}).to_string())
            .await
            .unwrap(),
    );
    assert!(item["id"].is_string(), "{item}");

    let pushed = client.push().await.unwrap();
    assert_eq!(pushed.status, PushStatus::CancelledByNetworkError);
    assert!(!pushed.succeeded);
    assert_eq!(client.pending_operations().unwrap(), 1);
    assert_eq!(client.status().pending, 1);

    match todo.pull("all".into(), QuerySpec::default()).await {
        Err(TidesyncError::PushFailed { status, .. }) => {
            assert_eq!(status, PushStatus::CancelledByNetworkError)
        }
        other => panic!("expected PushFailed, got {other:?}"),
    }
    assert!(matches!(
        todo.insert("[1]".into()).await,
        Err(TidesyncError::InvalidItem { .. })
    ));
    assert!(matches!(
        todo.insert(json!({"nope": 1}).to_string()).await,
        Err(TidesyncError::InvalidItem { .. })
    ));
    let bad_filter = QuerySpec {
        filter: Some("text eq".into()),
        ..QuerySpec::default()
    };
    assert!(matches!(
        todo.query(bad_filter).await,
        Err(TidesyncError::InvalidArgument { .. })
    ));
    let again = todo
        .insert(json!({"id": item["id"], "text": "x"}).to_string())
        .await;
    assert!(
        matches!(again, Err(TidesyncError::QueueRefused { .. })),
        "{again:?}"
    );
    assert!(matches!(
        client.cancel_and_discard("no-such-op".into()),
        Err(TidesyncError::InvalidArgument { .. })
    ));
}

#[test]
fn bad_settings_are_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let mut both = config(&db, "http://127.0.0.1:1");
    both.api_key = Some("k".into());
    both.bearer_token = Some("t".into());
    assert!(matches!(
        Client::open(both, None),
        Err(TidesyncError::InvalidArgument { .. })
    ));
    assert!(matches!(
        Client::open(config(&db, "not a url"), None),
        Err(TidesyncError::InvalidArgument { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_results_cross_in_one_json_array_and_listeners_follow() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let client = Client::open(config(&dir.path().join("c.db"), &server.url()), None).unwrap();
    let todo = client.table("TodoItem".into());

    let (status_tx, mut statuses) = unbounded_channel();
    let status_subscription = client.watch_status(Arc::new(Inbox(status_tx))).unwrap();
    let (rows_tx, mut rows) = unbounded_channel();
    let open = QuerySpec {
        filter: Some("complete eq false".into()),
        order_by: Some("text".into()),
        ..QuerySpec::default()
    };
    let live = todo
        .live_query(open.clone(), Arc::new(Inbox(rows_tx)))
        .unwrap();
    assert_eq!(next_matching(&mut rows, |_| true).await.unwrap(), json!([]));

    for text in ["c", "a", "b"] {
        todo.insert(json!({"text": text, "complete": false}).to_string())
            .await
            .unwrap();
    }
    todo.insert(json!({"text": "done", "complete": true}).to_string())
        .await
        .unwrap();
    next_matching(&mut statuses, |s| s.pending == 4).await;
    let shown = next_matching(&mut rows, |r| {
        r.as_ref().is_ok_and(|r| r.as_array().unwrap().len() == 3)
    })
    .await
    .unwrap();
    assert_eq!(texts(&shown), ["a", "b", "c"]);
    assert_eq!(
        texts(&parse(&todo.query(open).await.unwrap())),
        ["a", "b", "c"]
    );
    assert_eq!(todo.count(QuerySpec::default()).await.unwrap(), 4);

    let pushed = client.push().await.unwrap();
    assert!(pushed.succeeded, "{pushed:?}");
    assert_eq!(pushed.pushed, 4);
    let drained = next_matching(&mut statuses, |s| {
        s.pending == 0 && s.last_pushed_at.is_some()
    })
    .await;
    assert!(!drained.pushing, "{drained:?}");

    live.cancel();
    status_subscription.cancel();
    client.clear_all().await.unwrap();
    assert_eq!(todo.count(QuerySpec::default()).await.unwrap(), 0);
    assert_eq!(client.status().pending, 0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_resolver_decides_conflicts_and_failures_carry_both_copies() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let resolver = Arc::new(Resolver {
        answer: Mutex::new(merge_fields),
        asked: Mutex::default(),
    });
    let alice = Client::open(
        config(&dir.path().join("a.db"), &server.url()),
        Some(resolver.clone()),
    )
    .unwrap();
    let bob = Client::open(config(&dir.path().join("b.db"), &server.url()), None).unwrap();
    let alice_todo = alice.table("TodoItem".into());
    let bob_todo = bob.table("TodoItem".into());
    let milk = parse(
        &alice_todo
            .insert(json!({"text": "milk", "complete": false}).to_string())
            .await
            .unwrap(),
    );
    let id = milk["id"].as_str().unwrap().to_owned();
    assert!(alice.push().await.unwrap().succeeded);
    bob_todo
        .pull("all".into(), QuerySpec::default())
        .await
        .unwrap();

    // Bob renames, Alice completes: Alice's push conflicts and the resolver merges.
    let edit = async |table: &tidesync_ffi::Table, field: &str, value: Value| {
        let mut item = parse(&table.get(id.clone()).await.unwrap().unwrap());
        item[field] = value;
        table.update(item.to_string()).await.unwrap();
    };
    edit(&bob_todo, "text", json!("oat milk")).await;
    assert!(bob.push().await.unwrap().succeeded);
    edit(&alice_todo, "complete", json!(true)).await;
    let pushed = alice.push().await.unwrap();
    assert!(pushed.succeeded, "{pushed:?}");
    {
        let asked = resolver.asked.lock().unwrap();
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].kind, OpKind::Update);
        assert!(matches!(asked[0].status, 409 | 412), "{:?}", asked[0]);
    }
    bob_todo
        .pull("all".into(), QuerySpec::default())
        .await
        .unwrap();
    let merged = parse(&bob_todo.get(id.clone()).await.unwrap().unwrap());
    assert_eq!(
        (&merged["text"], &merged["complete"]),
        (&json!("oat milk"), &json!(true))
    );

    // A merge to something that is not an item leaves the conflict as an operation
    // failure, with both copies of the item.
    *resolver.answer.lock().unwrap() = |_| ConflictResolution::Merge {
        item: "not json".into(),
    };
    edit(&bob_todo, "text", json!("soy milk")).await;
    assert!(bob.push().await.unwrap().succeeded);
    edit(&alice_todo, "text", json!("rice milk")).await;
    let pushed = alice.push().await.unwrap();
    assert_eq!(pushed.status, PushStatus::Complete);
    assert_eq!(pushed.failures.len(), 1, "{pushed:?}");
    let failure = &pushed.failures[0];
    assert!(failure.is_conflict, "{failure:?}");
    assert_eq!(
        parse(failure.server_item.as_deref().unwrap())["text"],
        json!("soy milk")
    );
    assert_eq!(
        parse(failure.item.as_deref().unwrap())["text"],
        json!("rice milk")
    );
    assert_eq!(alice.operation_failures().unwrap().len(), 1);
    alice
        .cancel_and_discard(failure.operation_id.clone())
        .unwrap();
    assert_eq!(alice.pending_operations().unwrap(), 0);
    server.shutdown().await.unwrap();
}
