//! Pull and purge through the public API: the implicit-push rule, the
//! `(updatedAt, id)` cursor, pending rows left alone, argument rules, purge
//! (spec scenarios 35–46).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use serde_json::json;
use tidesync_core::protocol::odata::col;
use tidesync_core::{Error, Item, PullOptions, Query, SyncContext, TransportError, cursor_key};
use tidesync_transport_mock::{CallKind, Clock, MockServer};
use time::macros::datetime;

fn ids(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

fn local_ids(f: &Fixture) -> Vec<String> {
    ids(&f
        .client
        .query(TODO, &Query::all().order_by("id"))
        .unwrap()
        .items)
}

#[tokio::test]
async fn pulling_a_clean_table_does_not_push_a_dirty_other_table() {
    let f = Fixture::new();
    f.tags().insert(&json!({"id": "g"})).await.unwrap();
    let result = f.todo().pull("all", Query::all()).await.unwrap();
    assert!(result.push.is_none());
    assert!(f.server.calls().iter().all(|c| c.kind == CallKind::Read));
    assert_eq!(f.client.pending_operations().unwrap(), 1);
}

#[tokio::test]
async fn pending_ops_on_the_pulled_table_push_every_table_first() {
    let f = Fixture::new();
    f.tags().insert(&json!({"id": "g"})).await.unwrap();
    f.todo().insert(&json!({"id": "t"})).await.unwrap();
    let result = f.todo().pull("all", Query::all()).await.unwrap();
    assert_eq!(result.push.unwrap().pushed, 2);
    let kinds: Vec<CallKind> = f.server.calls().iter().map(|c| c.kind).collect();
    assert_eq!(kinds[..2], [CallKind::Insert, CallKind::Insert]);
    assert!(kinds[2..].iter().all(|k| *k == CallKind::Read));
    assert_eq!(f.client.pending_operations().unwrap(), 0);
}

#[tokio::test]
async fn push_other_tables_false_pushes_only_the_pulled_table() {
    let f = Fixture::new();
    f.tags().insert(&json!({"id": "g"})).await.unwrap();
    f.todo().insert(&json!({"id": "t"})).await.unwrap();
    let options = PullOptions {
        push_other_tables: false,
        ..PullOptions::default()
    };
    f.todo()
        .pull_with("all", Query::all(), options)
        .await
        .unwrap();
    assert_eq!(f.write_calls(), vec![(CallKind::Insert, "t".into())]);
    assert_eq!(
        f.client.pending_operations().unwrap(),
        1,
        "the tag is still queued"
    );
}

#[tokio::test]
async fn a_failed_implicit_push_aborts_the_pull_before_any_read() {
    let f = Fixture::new();
    f.diverge("x", "theirs", "mine").await;
    let cursor_before = f.store_config(&cursor_key(TODO, "seed"));
    let err = f.todo().pull("seed", Query::all()).await.unwrap_err();
    let Error::PushFailed(result) = err else {
        panic!("expected PushFailed")
    };
    assert_eq!(result.errors[0].status, Some(412));
    assert_eq!(f.read_calls(), 0);
    assert_eq!(f.store_config(&cursor_key(TODO, "seed")), cursor_before);
    assert_eq!(text_of(&f.local(TODO, "x").unwrap()), "mine");
}

trait ConfigExt {
    fn store_config(&self, key: &str) -> Option<String>;
}

impl ConfigExt for Fixture {
    fn store_config(&self, key: &str) -> Option<String> {
        tidesync_core::LocalStore::config(&self.store, key).unwrap()
    }
}

#[tokio::test]
async fn the_first_incremental_pull_asks_for_everything_in_cursor_order() {
    let f = Fixture::new();
    f.todo().pull("all", Query::all()).await.unwrap();
    let calls = f.server.calls();
    assert_eq!(calls.len(), 1, "an empty table costs one request");
    let query = calls[0].query.clone().unwrap();
    assert_eq!(query.filter, None);
    let order: Vec<(String, bool)> = query
        .order_by
        .iter()
        .map(|o| (o.member.clone(), o.descending))
        .collect();
    assert_eq!(
        order,
        vec![("updatedAt".into(), false), ("id".into(), false)]
    );
    assert!(calls[0].include_deleted);
}

#[tokio::test]
async fn the_cursor_advances_and_an_unchanged_table_costs_one_request() {
    let f = Fixture::new();
    for i in 0..5 {
        f.server
            .server_insert(TODO, obj(json!({"id": format!("r{i}"), "text": "t"})));
    }
    let first = f.todo().pull("all", Query::all()).await.unwrap();
    assert_eq!(first.upserted, 5);
    let cursor: serde_json::Value =
        serde_json::from_str(&f.store_config(&cursor_key(TODO, "all")).unwrap()).unwrap();
    assert_eq!(cursor["id"], "r4");
    f.server.clear_calls();
    let again = f.todo().pull("all", Query::all()).await.unwrap();
    assert_eq!(again.received(), 0);
    assert_eq!(again.requests, 1);
    // The request filters strictly after the last row.
    // Led by `updatedAt ge`, so that a server can seek its (updatedAt, id) index.
    let filter = f.server.calls()[0].query.clone().unwrap().filter.unwrap();
    assert_eq!(
        filter.to_string(),
        "(updatedAt ge datetimeoffset'2026-01-01T00:00:00.004Z') and \
         ((updatedAt gt datetimeoffset'2026-01-01T00:00:00.004Z') or (id gt 'r4'))"
    );
    // A change shows up in the next pull, and only it.
    f.server
        .server_update(TODO, obj(json!({"id": "r2", "text": "changed"})));
    let third = f.todo().pull("all", Query::all()).await.unwrap();
    assert_eq!(third.upserted, 1);
    assert_eq!(text_of(&f.local(TODO, "r2").unwrap()), "changed");
}

#[tokio::test]
async fn a_thousand_rows_sharing_one_updated_at_are_each_read_exactly_once() {
    let f = Fixture::new();
    f.server
        .set_clock(Clock::Fixed(datetime!(2026-05-01 12:00:00 UTC)));
    for i in 0..1000 {
        f.server.server_insert(
            TODO,
            obj(json!({"id": format!("row-{i:04}"), "text": "tie"})),
        );
    }
    f.server.set_page_limit(Some(50));
    let result = f.todo().pull("all", Query::all()).await.unwrap();
    assert_eq!(result.upserted, 1000, "no row skipped or read twice");
    assert_eq!(result.requests, 20, "20 pages, no loop, no extra request");
    assert_eq!(
        f.client
            .query(TODO, &Query::all().with_count().top(0))
            .unwrap()
            .count,
        Some(1000)
    );
    // A later row with the very same timestamp still arrives (ties are broken by
    // id, so the server must make rows visible in (updatedAt, id) order; ours
    // answers reads only below a horizon nothing can commit under).
    f.server
        .server_insert(TODO, obj(json!({"id": "row-1000", "text": "late tie"})));
    let again = f.todo().pull("all", Query::all()).await.unwrap();
    assert_eq!(again.upserted, 1);
}

#[tokio::test]
async fn server_deletes_remove_local_rows() {
    let f = Fixture::new();
    f.seed("x", "s").await;
    f.seed("y", "s").await;
    f.server.server_delete(TODO, "x");
    let result = f.todo().pull("seed", Query::all()).await.unwrap();
    assert_eq!(result.deleted, 1);
    assert_eq!(local_ids(&f), vec!["y"]);
}

#[tokio::test]
async fn bad_pull_arguments_fail_before_any_request() {
    let f = Fixture::new();
    let bad = [
        ("all", Query::all().select(["id"])),
        ("all", Query::all().order_by("text")),
        ("all", Query::all().top(5)),
        ("all", Query::all().skip(5)),
        ("a|b", Query::all()),
        ("", Query::all().select(["text"])),
    ];
    for (query_id, query) in bad {
        let err = f.todo().pull(query_id, query.clone()).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(_)),
            "{query_id} {query:?}: {err}"
        );
    }
    let long = "q".repeat(256);
    assert!(matches!(
        f.todo().pull(&long, Query::all()).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(f.server.calls().is_empty());
}

#[tokio::test]
async fn a_non_incremental_pull_pages_by_skip_and_keeps_local_rows_the_server_lacks() {
    let f = Fixture::new();
    f.store_local_only("local-only");
    for i in 0..7 {
        f.server.server_insert(
            TODO,
            obj(json!({"id": format!("s{i}"), "text": "t", "complete": i % 2 == 0})),
        );
    }
    f.server.set_page_limit(Some(3));
    let query = Query::all().filter(col("complete").eq(true));
    let result = f.todo().pull("", query).await.unwrap();
    assert_eq!(result.upserted, 4);
    assert_eq!(local_ids(&f), vec!["local-only", "s0", "s2", "s4", "s6"]);
    let skips: Vec<Option<u64>> = f
        .server
        .calls()
        .iter()
        .map(|c| c.query.as_ref().unwrap().skip)
        .collect();
    assert_eq!(skips, vec![Some(0), Some(3)]);
}

trait LocalOnly {
    fn store_local_only(&self, id: &str);
}

impl LocalOnly for Fixture {
    fn store_local_only(&self, id: &str) {
        use tidesync_core::{LocalStore, Write, WriteBatch};
        self.store
            .write(&WriteBatch {
                writes: vec![Write::PutItem {
                    table: TODO.into(),
                    item: obj(json!({"id": id})),
                }],
            })
            .unwrap();
    }
}

#[tokio::test]
async fn server_columns_the_local_table_lacks_are_ignored() {
    let f = Fixture::new();
    f.server
        .server_insert(TODO, obj(json!({"id": "x", "text": "t", "priority": 3})));
    f.todo().pull("all", Query::all()).await.unwrap();
    let local = f.local(TODO, "x").unwrap();
    assert_eq!(local["text"], "t");
    assert!(!local.contains_key("priority"));
}

#[tokio::test]
async fn a_top_on_a_non_incremental_pull_limits_the_rows() {
    let f = Fixture::new();
    for i in 0..10 {
        f.server
            .server_insert(TODO, obj(json!({"id": format!("s{i}")})));
    }
    f.server.set_page_limit(Some(4));
    let result = f
        .todo()
        .pull("", Query::all().order_by("id").top(6))
        .await
        .unwrap();
    assert_eq!(result.upserted, 6);
    assert_eq!(local_ids(&f), vec!["s0", "s1", "s2", "s3", "s4", "s5"]);
}

#[tokio::test]
async fn a_pull_never_overwrites_a_row_with_a_pending_local_change() {
    let server = MockServer::new();
    server.add_table(TODO);
    let f = Fixture::build(server.clone(), None);
    f.seed("x", "s").await;
    server.server_update(TODO, obj(json!({"id": "x", "text": "theirs"})));
    let edit = Mutex::new(Some(obj(json!({"id": "x", "text": "mine"}))));
    let client_slot: Arc<OnceLock<SyncContext>> = Arc::default();
    let slot = client_slot.clone();
    let transport = OnRead::new(server.transport(), move |_| {
        let edit = edit.lock().unwrap().take();
        if let (Some(edit), Some(client)) = (edit, slot.get()) {
            client.transaction(|tx| tx.update(TODO, edit)).unwrap();
        }
        Ok(())
    });
    let client = SyncContext::builder()
        .store(f.store.clone())
        .transport(transport)
        .build()
        .unwrap();
    client_slot.set(client.clone()).unwrap();
    let result = client.pull(TODO, Some("seed"), Query::all()).await.unwrap();
    assert_eq!(result.skipped, 1);
    assert_eq!(text_of(&f.local(TODO, "x").unwrap()), "mine");
    assert_eq!(client.pending_operations().unwrap(), 1);
}

#[tokio::test]
async fn an_interrupted_pull_resumes_where_it_stopped() {
    let f = Fixture::new();
    for i in 0..10 {
        f.server
            .server_insert(TODO, obj(json!({"id": format!("s{i}")})));
    }
    f.server.set_page_limit(Some(4));
    let flaky = SyncContext::builder()
        .store(f.store.clone())
        .transport(OnRead::new(f.server.transport(), |n| {
            if n == 2 {
                Err(TransportError::Network("dropped".into()))
            } else {
                Ok(())
            }
        }))
        .build()
        .unwrap();
    // The second page is lost: the first is kept, with its cursor.
    let result = flaky.pull(TODO, Some("all"), Query::all()).await;
    assert!(
        matches!(result, Err(Error::Transport(TransportError::Network(_)))),
        "{result:?}"
    );
    assert_eq!(local_ids(&f).len(), 4);
    let resumed = f.todo().pull("all", Query::all()).await.unwrap();
    assert_eq!(resumed.upserted, 6, "nothing skipped, nothing read twice");
    assert_eq!(local_ids(&f).len(), 10);
}

#[tokio::test]
async fn purge_refuses_pending_ops_unless_forced_without_a_filter() {
    let f = Fixture::new();
    f.seed("x", "s").await;
    f.todo().insert(&json!({"id": "y"})).await.unwrap();
    let plain = f.todo().purge(None, None, false).await.unwrap_err();
    assert!(
        matches!(plain, Error::PendingOperations { pending: 1, .. }),
        "{plain}"
    );
    let filtered = Query::all().filter(col("text").eq("s"));
    let err = f
        .todo()
        .purge(None, Some(filtered), true)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PendingOperations { .. }), "{err}");
    assert_eq!(local_ids(&f), vec!["x", "y"]);
    f.todo().purge(None, None, true).await.unwrap();
    assert!(local_ids(&f).is_empty());
    assert_eq!(f.client.pending_operations().unwrap(), 0);
    assert!(f.server.calls().is_empty(), "purge is local only");
}

#[tokio::test]
async fn purge_with_a_filter_deletes_only_matching_rows() {
    let f = Fixture::new();
    f.seed("x", "keep").await;
    f.seed("y", "drop").await;
    f.todo()
        .purge(
            None,
            Some(Query::all().filter(col("text").eq("drop"))),
            false,
        )
        .await
        .unwrap();
    assert_eq!(local_ids(&f), vec!["x"]);
}

#[tokio::test]
async fn purge_with_a_query_id_resets_only_that_cursor() {
    let f = Fixture::new();
    f.seed("x", "s").await;
    f.todo().pull("other", Query::all()).await.unwrap();
    f.todo().purge(Some("seed"), None, false).await.unwrap();
    assert!(f.store_config(&cursor_key(TODO, "seed")).is_none());
    assert!(f.store_config(&cursor_key(TODO, "other")).is_some());
    // The reset query reads everything again.
    let again = f.todo().pull("seed", Query::all()).await.unwrap();
    assert_eq!(again.upserted, 1);
    // Without a query id every cursor stays, so nothing comes back.
    f.todo().purge(None, None, false).await.unwrap();
    let none = f.todo().pull("other", Query::all()).await.unwrap();
    assert_eq!(none.received(), 0);
    assert!(local_ids(&f).is_empty());
}

#[tokio::test]
async fn pull_reports_progress_per_page() {
    let f = Fixture::new();
    for i in 0..9 {
        f.server
            .server_insert(TODO, obj(json!({"id": format!("s{i}")})));
    }
    f.server.set_page_limit(Some(4));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let options = PullOptions {
        progress: Some(Arc::new(move |p| sink.lock().unwrap().push(p.received))),
        ..PullOptions::default()
    };
    f.todo()
        .pull_with("all", Query::all(), options)
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![4, 8, 9]);
}

#[tokio::test]
async fn a_second_client_sees_the_first_clients_changes() {
    let a = Fixture::new();
    let b = a.second_client();
    a.todo()
        .insert(&json!({"id": "n", "text": "from a"}))
        .await
        .unwrap();
    a.client.push().await.unwrap();
    b.todo().pull("all", Query::all()).await.unwrap();
    assert_eq!(text_of(&b.local(TODO, "n").unwrap()), "from a");
    a.todo().delete_id("n").await.unwrap();
    a.client.push().await.unwrap();
    b.todo().pull("all", Query::all()).await.unwrap();
    assert!(b.local(TODO, "n").is_none());
}

/// A transport that reports a tombstone horizon on every page, as
/// tidesync-server does once it has removed old tombstones.
#[derive(Debug)]
struct WithHorizon {
    inner: tidesync_transport_mock::MockTransport,
    purged_before: String,
}

#[async_trait::async_trait]
impl tidesync_core::Transport for WithHorizon {
    async fn read(
        &self,
        request: &tidesync_core::ReadRequest,
    ) -> Result<tidesync_core::Page, TransportError> {
        let mut page = self.inner.read(request).await?;
        page.purged_before = Some(self.purged_before.clone());
        Ok(page)
    }
    async fn insert(&self, table: &str, item: &Item) -> Result<Item, TransportError> {
        self.inner.insert(table, item).await
    }
    async fn replace(&self, t: &str, item: &Item, m: Option<&str>) -> Result<Item, TransportError> {
        self.inner.replace(t, item, m).await
    }
    async fn delete(&self, t: &str, id: &str, m: Option<&str>) -> Result<(), TransportError> {
        self.inner.delete(t, id, m).await
    }
}

#[tokio::test]
async fn a_cursor_older_than_the_tombstone_horizon_reads_the_query_again_and_drops_what_is_gone() {
    let server = MockServer::new();
    // Without soft delete a server delete leaves no tombstone: like one removed
    // after the retention.
    server.add_table_with(
        TODO,
        tidesync_transport_mock::TableOptions { soft_delete: false },
    );
    let f = Fixture::build(server.clone(), None);
    for id in ["a", "b", "c"] {
        server.server_insert(TODO, obj(json!({"id": id, "text": id})));
    }
    f.todo().pull("all", Query::all()).await.unwrap();
    server.server_delete(TODO, "b");
    f.todo()
        .insert(&json!({"id": "mine", "text": "local only"}))
        .await
        .unwrap();
    let horizon = SyncContext::builder()
        .store(f.store.clone())
        .transport(WithHorizon {
            inner: server.transport(),
            purged_before: "2999-01-01T00:00:00.000Z".into(),
        })
        .build()
        .unwrap();
    let result = horizon.pull(TODO, Some("all"), Query::all()).await.unwrap();
    assert!(result.resynced);
    assert_eq!(result.deleted, 1, "b is gone locally too");
    assert_eq!(local_ids(&f), vec!["a", "c", "mine"]);
    // A horizon older than the cursor changes nothing.
    let recent = SyncContext::builder()
        .store(f.store.clone())
        .transport(WithHorizon {
            inner: server.transport(),
            purged_before: "2000-01-01T00:00:00.000Z".into(),
        })
        .build()
        .unwrap();
    let again = recent.pull(TODO, Some("all"), Query::all()).await.unwrap();
    assert!(!again.resynced);
    assert_eq!(again.requests, 1);
}
