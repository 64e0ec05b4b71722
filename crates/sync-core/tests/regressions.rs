//! Bugs other sync engines shipped, reproduced against tidesync on the mock
//! transport. Each test is named after the report it reproduces and follows
//! that report's scenario; the assertion is what should have happened there.
//! (The same scenarios against the real server belong with the server crate's
//! end-to-end tests.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use serde_json::json;
use tidesync_core::protocol::decode_version;
use tidesync_core::{Error, Item, PullOptions, PushStatus, Query, TransportError};
use tidesync_transport_mock::{CallKind, Clock, Fault, MockServer};

fn version_counter(item: &Item) -> u64 {
    decode_version(item["version"].as_str().unwrap()).unwrap()
}

async fn insert_todo(f: &Fixture, id: &str, text: &str) {
    f.todo()
        .insert(&json!({"id": id, "text": text, "complete": false}))
        .await
        .unwrap();
}

/// powersync-native#15 (and powersync-kotlin#340): one failed upload round
/// (transient network error, a 5xx, a credentials race at start-up) left the
/// backlog waiting for the next local write. Here a failed push leaves every op
/// queued, and the next push -- with no new local write -- uploads all of it.
#[tokio::test]
async fn powersync_native_15_failed_upload_is_retried_without_a_new_write() {
    for fault in [Fault::Network, Fault::Status(503), Fault::Auth] {
        let f = Fixture::new();
        for n in 0..3 {
            insert_todo(&f, &format!("n{n}"), "offline note").await;
        }
        f.server.fail_next(1, fault);
        let failed = f.client.push().await.unwrap();
        assert!(!failed.is_success(), "{fault:?}");
        // The first op failed (a 5xx lets the push go on with the others).
        assert!(f.server.get(TODO, "n0").is_none(), "{fault:?}");
        assert!(f.client.pending_operations().unwrap() >= 1, "{fault:?}");

        // No local write in between.
        let retried = f.client.push().await.unwrap();
        assert!(retried.is_success(), "{fault:?}: {retried:?}");
        assert_eq!(f.client.pending_operations().unwrap(), 0);
        for n in 0..3 {
            assert!(f.server.get(TODO, &format!("n{n}")).is_some(), "{fault:?}");
        }
    }
}

/// powersync-kotlin#340: an upload that threw was treated as completed. Here an
/// op whose upload failed is never dropped: it stays queued (Failed, with its
/// error) until a push actually gets it to the server.
#[tokio::test]
async fn powersync_kotlin_340_failed_upload_is_not_marked_complete() {
    let f = Fixture::new();
    insert_todo(&f, "x", "v1").await;
    f.server.fail_next(1, Fault::Status(500));
    let result = f.client.push().await.unwrap();
    assert_eq!(result.status, PushStatus::Complete);
    assert_eq!(result.pushed, 0);
    assert_eq!(result.errors.len(), 1);
    assert!(f.server.get(TODO, "x").is_none());
    assert_eq!(
        f.client.pending_operations().unwrap(),
        1,
        "the op was dropped"
    );
    assert!(f.client.push().await.unwrap().is_success());
    assert_eq!(text_of(&f.server.get(TODO, "x").unwrap()), "v1");
    assert!(f.client.operation_errors().unwrap().is_empty());
}

/// powersync.dart#307: under a network partition that drops responses, the
/// upload queue wedged and never cleared after the partition healed. Here 20
/// ops across two tables go through a partition where half the calls are lost
/// (some after the server applied them); once it heals, one push clears the
/// queue, every write is on the server exactly once, and nothing is left in
/// error.
#[tokio::test]
async fn powersync_dart_307_partition_dropping_responses_never_stalls() {
    let f = Fixture::build(MockServer::with_seed(307), None);
    for n in 0..5 {
        f.seed(&format!("s{n}"), "seeded").await;
    }
    let before = f
        .server
        .items(TODO)
        .iter()
        .map(version_counter)
        .max()
        .unwrap();
    for n in 0..10 {
        insert_todo(&f, &format!("n{n}"), &format!("new {n}")).await;
    }
    for n in 0..5 {
        f.tags()
            .insert(&json!({"id": format!("t{n}"), "name": format!("tag {n}")}))
            .await
            .unwrap();
    }
    for n in 0..5 {
        f.todo()
            .update(&json!({"id": format!("s{n}"), "text": format!("edited {n}")}))
            .await
            .unwrap();
    }
    f.server
        .set_random_faults(0.5, vec![Fault::CommitThenLoseResponse, Fault::Network]);
    for _ in 0..10 {
        let _ = f.client.push().await.unwrap();
    }
    f.server.clear_faults();
    let healed = f.client.push().await.unwrap();
    assert!(healed.is_success(), "{healed:?}");
    assert_eq!(f.client.pending_operations().unwrap(), 0);
    assert!(f.client.operation_errors().unwrap().is_empty());
    for n in 0..10 {
        assert_eq!(
            text_of(&f.server.get(TODO, &format!("n{n}")).unwrap()),
            format!("new {n}")
        );
    }
    for n in 0..5 {
        let row = f.server.get(TODO, &format!("s{n}")).unwrap();
        assert_eq!(text_of(&row), format!("edited {n}"));
        assert_eq!(
            f.local(TODO, &format!("s{n}")).unwrap()["version"],
            row["version"]
        );
        assert_eq!(
            f.server.get(TAGS, &format!("t{n}")).unwrap()["name"],
            format!("tag {n}")
        );
    }
    // 20 writes, each applied once: exactly 20 new versions on the server.
    let after = f
        .server
        .items(TODO)
        .iter()
        .chain(f.server.items(TAGS).iter())
        .map(version_counter)
        .max()
        .unwrap();
    assert_eq!(after - before, 20, "a write was lost or applied twice");
}

/// replicache#42: a mutation made while a sync was running was not pushed
/// (the running sync ignored it, and nothing synced again). Here writes made
/// while a push is on the wire -- to another item and to the item being sent --
/// are sent by that same push.
#[tokio::test]
async fn replicache_42_write_during_push_is_pushed() {
    let f = Fixture::new();
    insert_todo(&f, "a", "first").await;
    let gate = f.server.block_next_write();
    let client = f.client.clone();
    let push = tokio::spawn(async move { client.push().await.unwrap() });
    gate.reached().await;
    insert_todo(&f, "b", "during the push").await;
    f.todo()
        .update(&json!({"id": "a", "text": "edited during the push"}))
        .await
        .unwrap();
    gate.release();
    let result = push.await.unwrap();
    assert!(result.is_success(), "{result:?}");
    assert_eq!(
        result.pushed, 3,
        "the same push sends the writes made during it"
    );
    assert_eq!(f.client.pending_operations().unwrap(), 0);
    assert_eq!(
        text_of(&f.server.get(TODO, "b").unwrap()),
        "during the push"
    );
    assert_eq!(
        text_of(&f.server.get(TODO, "a").unwrap()),
        "edited during the push"
    );
}

/// rocicorp/mono#4608: the server applied a push but answered with an error;
/// the client assumed "not applied" and waited for a retry that never came, so
/// the mutation stayed in limbo. Here the answer to an applied insert, update
/// and delete is lost; the op stays visibly queued, and the next push settles
/// it as done -- no duplicate, no spurious conflict, no error record -- and the
/// local row carries the server's version.
#[tokio::test]
async fn rocicorp_mono_4608_applied_but_errored_op_leaves_no_limbo() {
    let f = Fixture::new();
    f.seed("u", "old").await;
    f.seed("d", "doomed").await;
    for (id, kind) in [("i", "insert"), ("u", "update"), ("d", "delete")] {
        match kind {
            "insert" => insert_todo(&f, id, "new").await,
            "update" => {
                f.todo()
                    .update(&json!({"id": id, "text": "changed"}))
                    .await
                    .unwrap();
            }
            _ => f.todo().delete_id(id).await.unwrap(),
        }
        let before = f
            .server
            .items(TODO)
            .iter()
            .map(version_counter)
            .max()
            .unwrap_or(0);
        f.server.fail_next(1, Fault::CommitThenLoseResponse);
        let lost = f.client.push().await.unwrap();
        assert_eq!(lost.status, PushStatus::CancelledByNetworkError, "{kind}");
        // Applied on the server, not acknowledged here: the op is still queued, visibly.
        let ops = f.ops();
        assert_eq!(ops.len(), 1, "{kind}");
        assert_eq!(ops[0].state, tidesync_core::OpState::Failed, "{kind}");
        let applied = f.server.get(TODO, id).unwrap();
        match kind {
            "insert" => assert_eq!(text_of(&applied), "new"),
            "update" => assert_eq!(text_of(&applied), "changed"),
            _ => assert_eq!(applied["deleted"], json!(true)),
        }

        let settled = f.client.push().await.unwrap();
        assert!(settled.is_success(), "{kind}: {settled:?}");
        assert_eq!(settled.pushed, 1, "{kind}");
        assert_eq!(f.client.pending_operations().unwrap(), 0, "{kind}");
        assert!(f.client.operation_errors().unwrap().is_empty(), "{kind}");
        let after = f
            .server
            .items(TODO)
            .iter()
            .map(version_counter)
            .max()
            .unwrap();
        assert_eq!(after - before, 1, "{kind} applied exactly once");
        match f.local(TODO, id) {
            Some(local) => assert_eq!(local["version"], f.server.get(TODO, id).unwrap()["version"]),
            None => assert_eq!(kind, "delete"),
        }
    }
    // A pull now finds nothing to push and agrees with the server.
    f.server.clear_calls();
    f.todo().pull("all", Query::all()).await.unwrap();
    assert!(f.write_calls().is_empty());
    assert!(f.local(TODO, "d").is_none());
    assert_eq!(text_of(&f.local(TODO, "u").unwrap()), "changed");
}

/// Azure/azure-mobile-apps#916: with the server's page size at 100 and more
/// than 100 rows sharing one millisecond, the Datasync client pulled the same
/// first page over and over. Here 25 rows share one `updatedAt` with a server
/// page of 10: the pull reads 10 + 10 + 5 rows in three requests, each row
/// once, and the next pull costs one request and finds nothing.
#[tokio::test]
async fn azure_mobile_apps_916_ties_across_a_page_boundary() {
    let f = Fixture::new();
    f.server.set_page_limit(Some(10));
    f.server
        .set_clock(Clock::Fixed(time::macros::datetime!(2024-04-05 10:00 UTC)));
    for n in 0..25 {
        f.server.server_insert(
            TODO,
            obj(json!({"id": format!("r{n:02}"), "text": "batch", "complete": false})),
        );
    }
    let first = f.todo().pull("all", Query::all()).await.unwrap();
    assert_eq!(first.upserted, 25);
    assert_eq!(first.requests, 3);
    assert_eq!(f.store_count(), 25);
    f.server.set_clock(Clock::Auto);
    let again = f.todo().pull("all", Query::all()).await.unwrap();
    assert_eq!((again.received(), again.requests), (0, 1));
}

/// CommunityToolkit/Datasync#98 (and the #107 class): an initial pull of
/// several records broke its delta-token bookkeeping part-way, and later pulls
/// could not recover. Here the initial pull of 30 rows is cut by a network
/// error after its first page; meanwhile rows on both sides of the cut change
/// and one is deleted. The next pull resumes after the cut: it reads every
/// remaining row and every change exactly once, skipping nothing, and the local
/// table equals the server's.
#[tokio::test]
async fn datasync_98_interrupted_pull_resumes_without_skipping() {
    let f = Fixture::new();
    f.server.set_page_limit(Some(10));
    for n in 0..30 {
        f.server.server_insert(
            TODO,
            obj(json!({"id": format!("r{n:02}"), "text": "v1", "complete": false})),
        );
    }
    let cut = Arc::new(AtomicBool::new(false));
    let (server, flag) = (f.server.clone(), cut.clone());
    let options = PullOptions {
        progress: Some(Arc::new(move |_| {
            if !flag.swap(true, Ordering::SeqCst) {
                server.fail_next(1, Fault::Network);
            }
        })),
        ..PullOptions::default()
    };
    let interrupted = f.todo().pull_with("all", Query::all(), options).await;
    assert!(matches!(
        interrupted,
        Err(Error::Transport(TransportError::Network(_)))
    ));
    assert_eq!(f.store_count(), 10, "the first page was kept");

    f.server
        .server_update(TODO, obj(json!({"id": "r00", "text": "v2"})));
    f.server
        .server_update(TODO, obj(json!({"id": "r25", "text": "v2"})));
    f.server.server_delete(TODO, "r15");
    f.server.clear_calls();
    let resumed = f.todo().pull("all", Query::all()).await.unwrap();
    // r10..r29 (r15 as a tombstone, r25 in its new version) and r00's change.
    assert_eq!((resumed.upserted, resumed.deleted), (20, 1));
    let live: Vec<(String, serde_json::Value)> = f
        .server
        .items(TODO)
        .into_iter()
        .filter(|r| r["deleted"] == json!(false))
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r["version"].clone()))
        .collect();
    let local: Vec<(String, serde_json::Value)> = f
        .client
        .query(TODO, &Query::all())
        .unwrap()
        .items
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r["version"].clone()))
        .collect();
    assert_eq!(local, live);
    assert!(f.server.calls().iter().all(|c| c.kind == CallKind::Read));
}

trait Count {
    fn store_count(&self) -> usize;
}

impl Count for Fixture {
    fn store_count(&self) -> usize {
        self.client.query(TODO, &Query::all()).unwrap().items.len()
    }
}
