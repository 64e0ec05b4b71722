//! A first sync through the facade: the first screen before the bulk (paged and
//! snapshot), its end state equal to an ordinary pull's, progress through change
//! events and the sync status, and several tables pulled concurrently.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tidesync::backend::{
    ChangeFeed, Page, ReadRequest, Snapshot, SnapshotRequest, Transport, cursor_key,
};
use tidesync::{
    ChangeEvent, Client, Error, Item, MemoryStore, OrderBy, PullOptions, Query, TableProgress,
    TablePull, TransportError,
};
use tidesync_transport_mock::{MockServer, MockTransport};
use tokio::sync::watch;

mod app;

use app::{Note, Todo, note, server, todo};

/// Rows on the server in the first-screen tests.
const ROWS: usize = 250;
/// Rows per bulk page.
const PAGE: u64 = 100;
/// Rows of the first screen.
const SCREEN: u64 = 20;

/// A guard, not a wait: a step that never comes fails the test instead of hanging it.
async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within 30 s"))
}

/// The mock server's transport, with a hold on one bulk read (a read with
/// tombstones, or the snapshot) and, optionally, a snapshot made of the mock's rows.
#[derive(Debug)]
struct Held {
    inner: MockTransport,
    snapshot: bool,
    bulk_reads: AtomicUsize,
    /// The bulk read (counted from 1) that waits for `released`.
    hold_at: usize,
    reached: watch::Sender<bool>,
    released: watch::Sender<bool>,
}

impl Held {
    fn new(server: &MockServer, snapshot: bool, hold_at: usize) -> Self {
        Self {
            inner: server.transport(),
            snapshot,
            bulk_reads: AtomicUsize::new(0),
            hold_at,
            reached: watch::channel(false).0,
            released: watch::channel(false).0,
        }
    }

    async fn bulk_read(&self) {
        if self.bulk_reads.fetch_add(1, Ordering::SeqCst) + 1 == self.hold_at {
            self.reached.send_replace(true);
            let mut released = self.released.subscribe();
            let _ = released.wait_for(|r| *r).await;
        }
    }
}

#[async_trait]
impl Transport for Held {
    async fn read(&self, request: &ReadRequest) -> Result<Page, TransportError> {
        if request.include_deleted {
            self.bulk_read().await;
        }
        self.inner.read(request).await
    }
    async fn insert(&self, table: &str, item: &Item) -> Result<Item, TransportError> {
        self.inner.insert(table, item).await
    }
    async fn replace(
        &self,
        table: &str,
        item: &Item,
        if_match: Option<&str>,
    ) -> Result<Item, TransportError> {
        self.inner.replace(table, item, if_match).await
    }
    async fn delete(
        &self,
        table: &str,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), TransportError> {
        self.inner.delete(table, id, if_match).await
    }
    async fn change_feed(&self, tables: &[String]) -> Result<ChangeFeed, TransportError> {
        self.inner.change_feed(tables).await
    }
    /// The whole filtered table in `(updatedAt, id)` order, tombstones included, in
    /// batches: what the snapshot extension streams.
    async fn snapshot(&self, request: &SnapshotRequest) -> Result<Snapshot, TransportError> {
        if !self.snapshot {
            return Err(TransportError::Unsupported("snapshot"));
        }
        self.bulk_read().await;
        let mut query = Query::all().order_by("updatedAt").order_by("id");
        query.filter.clone_from(&request.filter);
        let page = self
            .inner
            .read(&ReadRequest {
                table: request.table.clone(),
                query,
                include_deleted: true,
            })
            .await?;
        let (send, receive) = tokio::sync::mpsc::channel(page.items.len().max(1));
        for batch in page.items.chunks(request.batch_rows.max(1)) {
            send.try_send(Ok(batch.to_vec()))
                .map_err(|_| TransportError::Protocol("snapshot channel".to_owned()))?;
        }
        Ok(receive)
    }
}

/// A server whose rows were written in the reverse of their text order, so the
/// first screen (by text) is the last page in `(updatedAt, id)` order; one row is
/// a tombstone.
fn seeded() -> MockServer {
    let server = server();
    for n in (0..ROWS).rev() {
        let row = json!({"text": format!("item {n:03}"), "complete": n % 3 == 0});
        let stored = server.server_insert("TodoItem", row.as_object().unwrap().clone());
        if n == 7 {
            server.server_delete("TodoItem", stored["id"].as_str().unwrap());
        }
    }
    server
}

fn client_on(transport: impl Transport + 'static) -> Client {
    Client::builder()
        .store(MemoryStore::new())
        .define::<Todo>()
        .define::<Note>()
        .transport(transport)
        .page_size(PAGE)
        .build()
        .unwrap()
}

fn by_text() -> Vec<OrderBy> {
    vec![OrderBy {
        member: "text".to_owned(),
        descending: false,
    }]
}

/// What a pull leaves: every local row (sorted by id) and the query's cursor.
fn end_state(client: &Client, table: &str) -> (Vec<Item>, Option<String>) {
    let rows = client
        .query(table, &Query::all().order_by("id"))
        .unwrap()
        .items;
    let cursor = client.store().config(&cursor_key(table, "all")).unwrap();
    (rows, cursor)
}

/// The texts of the first `n` local rows by text.
async fn first_texts(client: &Client, n: u64) -> Vec<String> {
    client
        .sync_table::<Todo>()
        .query(&Query::all().order_by("text").top(n))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.text)
        .collect()
}

async fn first_screen_comes_before_the_bulk(snapshot: bool) {
    let server = seeded();
    // The ordinary pull, for comparison.
    let plain = client_on(server.transport());
    let ordinary = plain
        .sync_table::<Todo>()
        .pull("all", Query::all())
        .await
        .unwrap();

    let transport = Held::new(&server, snapshot, 1);
    let (reached, released) = (transport.reached.subscribe(), transport.released.clone());
    let held = client_on(transport);
    let mut events = held.subscribe();
    let options = PullOptions::default().first_screen(by_text(), SCREEN);
    let pulling = {
        let held = held.clone();
        tokio::spawn(async move {
            held.sync_table::<Todo>()
                .pull_with("all", Query::all(), options)
                .await
        })
    };
    within("the bulk read", reached_hold(reached)).await;
    // The bulk has not arrived, yet the first screen is readable.
    let expected: Vec<String> = (0..ROWS)
        .filter(|n| *n != 7)
        .take(SCREEN as usize)
        .map(|n| format!("item {n:03}"))
        .collect();
    assert_eq!(
        first_texts(&held, 100).await,
        expected,
        "snapshot: {snapshot}"
    );
    released.send_replace(true);
    let result = within("the pull", pulling).await.unwrap().unwrap();

    assert_eq!(result.first_screen, SCREEN);
    assert_eq!(result.snapshot, snapshot);
    assert_eq!(
        (result.upserted, result.deleted),
        (ordinary.upserted, ordinary.deleted)
    );
    assert_eq!(end_state(&held, "TodoItem"), end_state(&plain, "TodoItem"));
    assert!(end_state(&held, "TodoItem").1.is_some());

    // Progress: the last report has every row applied, of the server's count
    // (raised to the rows applied: the tombstone is not in the count of live rows).
    let mut last = None;
    while let Ok(event) = events.try_recv() {
        if let ChangeEvent::PullProgress {
            table,
            applied,
            total,
        } = event
        {
            assert_eq!(table, "TodoItem");
            if let Some((before, _)) = last {
                assert!(applied > before, "progress goes forward");
            }
            last = Some((applied, total));
        }
    }
    assert_eq!(last, Some((ROWS as u64, Some(ROWS as u64))));
    assert!(held.status().borrow().pull_progress.is_empty());
}

async fn reached_hold(mut reached: watch::Receiver<bool>) {
    let _ = reached.wait_for(|r| *r).await;
}

#[tokio::test]
async fn the_first_screen_is_readable_before_the_paged_bulk_and_ends_as_an_ordinary_pull() {
    first_screen_comes_before_the_bulk(false).await;
}

#[tokio::test]
async fn the_first_screen_is_readable_before_the_snapshot_and_ends_as_an_ordinary_pull() {
    first_screen_comes_before_the_bulk(true).await;
}

#[tokio::test]
async fn the_status_shows_a_running_pulls_progress() {
    let server = seeded();
    // Hold the third page: it is asked for once the first page is applied (and
    // reported) and the second has arrived (pages are read one ahead).
    let transport = Held::new(&server, false, 3);
    let (reached, released) = (transport.reached.subscribe(), transport.released.clone());
    let client = client_on(transport);
    let status = client.status();
    let options = PullOptions::default().first_screen(Vec::new(), SCREEN);
    let pulling = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .sync_table::<Todo>()
                .pull_with("all", Query::all(), options)
                .await
        })
    };
    within("the third page's read", reached_hold(reached)).await;
    let running = status.borrow().clone();
    assert!(running.pulling);
    let progress: Option<TableProgress> = running.pull_progress.get("TodoItem").copied();
    assert!(
        progress.is_some_and(|p| p.applied > 0
            && p.applied < ROWS as u64
            && p.total == Some(ROWS as u64 - 1)),
        "some pages applied, of the live rows the server counted: {progress:?}"
    );
    released.send_replace(true);
    within("the pull", pulling).await.unwrap().unwrap();
    let done = status.borrow().clone();
    assert!(!done.pulling && done.pull_progress.is_empty(), "{done:?}");
}

/// The mock server's transport where the first bulk read of each table waits
/// until the first bulk reads of all `tables` have arrived: pulls made one after
/// another never get past the first.
#[derive(Debug)]
struct Meet {
    inner: MockTransport,
    tables: usize,
    arrived: watch::Sender<BTreeSet<String>>,
}

#[async_trait]
impl Transport for Meet {
    async fn read(&self, request: &ReadRequest) -> Result<Page, TransportError> {
        if request.include_deleted {
            self.arrived.send_modify(|a| {
                a.insert(request.table.clone());
            });
            let mut arrived = self.arrived.subscribe();
            let _ = arrived.wait_for(|a| a.len() >= self.tables).await;
        }
        self.inner.read(request).await
    }
    async fn insert(&self, table: &str, item: &Item) -> Result<Item, TransportError> {
        self.inner.insert(table, item).await
    }
    async fn replace(
        &self,
        table: &str,
        item: &Item,
        if_match: Option<&str>,
    ) -> Result<Item, TransportError> {
        self.inner.replace(table, item, if_match).await
    }
    async fn delete(
        &self,
        table: &str,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), TransportError> {
        self.inner.delete(table, id, if_match).await
    }
}

fn ids(items: &[Item]) -> BTreeSet<String> {
    items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn pull_tables_pushes_once_then_pulls_the_tables_concurrently() {
    let server = server();
    for n in 0..5 {
        let row = json!({"text": format!("server todo {n}"), "complete": false});
        server.server_insert("TodoItem", row.as_object().unwrap().clone());
    }
    for n in 0..3 {
        let row = json!({"body": format!("server note {n}")});
        server.server_insert("Note", row.as_object().unwrap().clone());
    }
    let client = client_on(Meet {
        inner: server.transport(),
        tables: 2,
        arrived: watch::channel(BTreeSet::new()).0,
    });
    client
        .sync_table::<Todo>()
        .insert(&todo("local todo", false))
        .await
        .unwrap();
    client
        .sync_table::<Note>()
        .insert(&note("local note"))
        .await
        .unwrap();

    let results = within(
        "the concurrent pulls",
        client.pull_tables([
            TablePull::new("TodoItem", "all", Query::all()),
            TablePull::new("Note", "all", Query::all()),
            TablePull::new("NoSuchTable", "all", Query::all()),
        ]),
    )
    .await;
    assert_eq!(results.len(), 3);
    let todos = results[0].as_ref().unwrap();
    let notes = results[1].as_ref().unwrap();
    assert!(results[2].is_err(), "{:?}", results[2]);
    assert_eq!((todos.upserted, notes.upserted), (6, 4));
    // One push, before the pulls, sent both tables' ops.
    let push = todos.push.as_ref().expect("the implicit push");
    assert_eq!(push.pushed, 2);
    assert_eq!(notes.push, todos.push);
    assert_eq!(client.pending_operations().unwrap(), 0);
    for table in ["TodoItem", "Note"] {
        let (rows, cursor) = end_state(&client, table);
        assert_eq!(ids(&rows), ids(&server.items(table)), "{table}");
        assert!(cursor.is_some(), "{table}");
    }
    let status = client.status().borrow().clone();
    assert!(!status.pulling, "{status:?}");
}

#[tokio::test]
async fn pull_tables_refuses_a_table_given_twice_and_pulls_the_rest() {
    let server = server();
    let row = json!({"text": "on the server", "complete": false});
    server.server_insert("TodoItem", row.as_object().unwrap().clone());
    let client = client_on(server.transport());
    let results = client
        .pull_tables([
            TablePull::new("TodoItem", "all", Query::all()),
            TablePull::new("TodoItem", "other", Query::all()),
        ])
        .await;
    assert_eq!(results[0].as_ref().unwrap().upserted, 1);
    assert!(
        matches!(results[1], Err(Error::InvalidArgument(_))),
        "{:?}",
        results[1]
    );
}

#[tokio::test]
async fn a_first_sync_cut_after_its_first_screen_ends_as_an_ordinary_pull_next_time() {
    let server = seeded();
    let plain = client_on(server.transport());
    plain
        .sync_table::<Todo>()
        .pull("all", Query::all())
        .await
        .unwrap();

    let transport = Held::new(&server, false, 1);
    let (reached, released) = (transport.reached.subscribe(), transport.released.clone());
    let client = client_on(transport);
    let options = PullOptions::default().first_screen(by_text(), SCREEN);
    let pulling = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .sync_table::<Todo>()
                .pull_with("all", Query::all(), options)
                .await
        })
    };
    within("the bulk read", reached_hold(reached)).await;
    // The connection drops at the bulk's first page.
    server.fail_next(1, tidesync_transport_mock::Fault::Network);
    released.send_replace(true);
    let cut = within("the pull", pulling).await.unwrap();
    assert!(matches!(cut, Err(Error::Transport(_))), "{cut:?}");
    assert_eq!(first_texts(&client, SCREEN).await.len(), SCREEN as usize);
    // The first screen moved no cursor: the next pull reads the whole query.
    let again = client
        .sync_table::<Todo>()
        .pull("all", Query::all())
        .await
        .unwrap();
    assert_eq!(again.received(), ROWS as u64);
    assert_eq!(
        end_state(&client, "TodoItem"),
        end_state(&plain, "TodoItem")
    );
}
