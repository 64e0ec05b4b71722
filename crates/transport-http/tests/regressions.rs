//! Bugs other sync engines shipped, reproduced against tidesync on the real server: the
//! engine over `HttpTransport` talking to a `tidesync-server` (SQLite) started in-process.
//! The mock-transport versions are `crates/sync-core/tests/regressions.rs`; each test here
//! follows the same report's scenario. Network faults come from `Faulty`, the fault
//! decorator of `tidesync-transport-mock` wrapped around `HttpTransport`: when told, it fails
//! the next calls before they leave (`Network`, an HTTP status, 401) or after the server
//! answered (`CommitThenLoseResponse`: the server applied the write, the client never hears);
//! it hides the snapshot and change feed, so pulls page as these reports had them. Every scenario runs on both push
//! paths: one request per op (`Protocol::V3`) and the batch extension (`Protocol::Auto`).
//!
//! The `edit_after_lost_ack_*` tests pin an engine bug the crash suite found (now fixed:
//! an op remembers what its last attempt sent).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tidesync_core::{
    ColumnType, Error, LocalStore, MemoryStore, OpState, PullOptions, PushStatus, Query,
    SyncContext, TableDef, TransportError,
};
use tidesync_server::{App, RunningServer, Server};
use tidesync_transport_http::{HttpTransport, Protocol, RetryPolicy};
use tidesync_transport_mock::{Fault, Faulty};

const TODO: &str = "TodoItem";
const TAGS: &str = "Tag";
const PROTOCOLS: [Protocol; 2] = [Protocol::V3, Protocol::Auto];

// ---------------------------------------------------------------------------------------
// Set-up

struct Env {
    _dir: tempfile::TempDir,
    app: App,
    server: RunningServer,
}

async fn env(page_size: Option<u64>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut builder = Server::builder()
        .sqlite(dir.path().join("server.db"))
        .table(TODO)
        .table(TAGS)
        .bind("127.0.0.1:0");
    if let Some(rows) = page_size {
        builder = builder.page_size(rows);
    }
    let app = builder.build().await.unwrap();
    let server = app.clone().serve().await.unwrap();
    Env {
        _dir: dir,
        app,
        server,
    }
}

fn http(url: &str, protocol: Protocol) -> HttpTransport {
    HttpTransport::builder(url)
        .protocol(protocol)
        .timeout(Duration::from_secs(10))
        .retry(RetryPolicy {
            max_retries: 0,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(5),
        })
        .build()
        .unwrap()
}

fn store() -> MemoryStore {
    let store = MemoryStore::new();
    store
        .define_table(
            &TableDef::new(TODO)
                .column("text", ColumnType::String)
                .column("complete", ColumnType::Bool),
        )
        .unwrap();
    store
        .define_table(&TableDef::new(TAGS).column("name", ColumnType::String))
        .unwrap();
    store
}

/// A client whose transport fails on request.
fn client(env: &Env, protocol: Protocol) -> (SyncContext, Arc<Faulty<HttpTransport>>) {
    let faulty = Arc::new(Faulty::new(http(&env.server.url(), protocol)).without_streams());
    let ctx = SyncContext::builder()
        .store(store())
        .transport_arc(faulty.clone())
        .build()
        .unwrap();
    (ctx, faulty)
}

/// A second client writing straight to the server.
fn other(env: &Env) -> SyncContext {
    SyncContext::builder()
        .store(store())
        .transport(http(&env.server.url(), Protocol::Auto))
        .build()
        .unwrap()
}

impl Env {
    /// The server's row (tombstones included).
    async fn row(&self, table: &str, id: &str) -> Option<tidesync_server::store::Row> {
        self.app.store().get(table, id).await.unwrap()
    }

    async fn text(&self, id: &str) -> Option<String> {
        let row = self.row(TODO, id).await?;
        (!row.deleted).then(|| row.values["text"].as_str().unwrap().to_owned())
    }

    /// The per-table write counter: every server write of the table takes the next value.
    async fn writes(&self, table: &str) -> u64 {
        let rows = self
            .app
            .store()
            .read(
                table,
                &tidesync_server::store::ReadRequest {
                    limit: 1_000_000,
                    include_deleted: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .rows;
        rows.iter().map(|r| r.version).max().unwrap_or(0)
    }

    /// Live `(id, version)` pairs, in id order.
    async fn live_versions(&self) -> Vec<(String, String)> {
        let rows = self
            .app
            .store()
            .read(
                TODO,
                &tidesync_server::store::ReadRequest {
                    limit: 1_000_000,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .rows;
        let mut live: Vec<(String, String)> = rows
            .iter()
            .map(|r| (r.id.clone(), r.version_text()))
            .collect();
        live.sort();
        live
    }
}

async fn seed(env: &Env, id: &str, text: &str) {
    let other = other(env);
    other
        .table::<Value>(TODO)
        .insert(&json!({"id": id, "text": text, "complete": false}))
        .await
        .unwrap();
    assert!(other.push().await.unwrap().is_success());
}

async fn insert(ctx: &SyncContext, id: &str, text: &str) {
    ctx.table::<Value>(TODO)
        .insert(&json!({"id": id, "text": text, "complete": false}))
        .await
        .unwrap();
}

async fn update(ctx: &SyncContext, id: &str, text: &str) {
    ctx.table::<Value>(TODO)
        .update(&json!({"id": id, "text": text}))
        .await
        .unwrap();
}

fn local_version(ctx: &SyncContext, id: &str) -> Option<String> {
    ctx.get(TODO, id)
        .unwrap()
        .map(|item| item["version"].as_str().unwrap().to_owned())
}

// ---------------------------------------------------------------------------------------
// The regressions

/// powersync-native#15 (and powersync-kotlin#340): one failed upload round left the
/// backlog waiting for the next local write. Here a push failed by a network error, a 503
/// or a 401 leaves the ops queued, and the next push -- with no new local write -- uploads
/// all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powersync_native_15_failed_upload_is_retried_without_a_new_write() {
    for protocol in PROTOCOLS {
        for fault in [Fault::Network, Fault::Status(503), Fault::Auth] {
            let env = env(None).await;
            let (ctx, faulty) = client(&env, protocol);
            for n in 0..3 {
                insert(&ctx, &format!("n{n}"), "offline note").await;
            }
            faulty.fail_writes(1, fault);
            let failed = ctx.push().await.unwrap();
            assert!(!failed.is_success(), "{protocol:?} {fault:?}");
            assert!(env.text("n0").await.is_none(), "{protocol:?} {fault:?}");
            assert!(ctx.pending_operations().unwrap() >= 1);

            let retried = ctx.push().await.unwrap();
            assert!(retried.is_success(), "{protocol:?} {fault:?}: {retried:?}");
            assert_eq!(ctx.pending_operations().unwrap(), 0);
            assert!(ctx.operation_errors().unwrap().is_empty());
            for n in 0..3 {
                let id = format!("n{n}");
                assert_eq!(env.text(&id).await.as_deref(), Some("offline note"));
            }
            assert_eq!(env.writes(TODO).await, 3, "{protocol:?} {fault:?}");
        }
    }
}

/// powersync-kotlin#340: an upload that threw was treated as completed. Here an op whose
/// upload got a 500 stays queued with its error until a push gets it to the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powersync_kotlin_340_failed_upload_is_not_marked_complete() {
    for protocol in PROTOCOLS {
        let env = env(None).await;
        let (ctx, faulty) = client(&env, protocol);
        insert(&ctx, "x", "v1").await;
        faulty.fail_writes(1, Fault::Status(500));
        let result = ctx.push().await.unwrap();
        assert!(!result.is_success(), "{protocol:?}: {result:?}");
        assert_eq!(result.pushed, 0, "{protocol:?}");
        assert!(env.row(TODO, "x").await.is_none());
        assert_eq!(ctx.pending_operations().unwrap(), 1, "the op was dropped");

        assert!(ctx.push().await.unwrap().is_success(), "{protocol:?}");
        assert_eq!(env.text("x").await.as_deref(), Some("v1"));
        assert!(ctx.operation_errors().unwrap().is_empty());
        assert_eq!(ctx.pending_operations().unwrap(), 0);
    }
}

/// powersync.dart#307: under a network partition that drops responses the upload queue
/// wedged and never cleared after the partition healed. Here 20 ops on two tables go
/// through a partition where half the write calls fail (half of those after the server
/// applied them); once it heals, one push clears the queue, every write is on the server
/// exactly once (20 new versions), and nothing is left in error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powersync_dart_307_partition_dropping_responses_never_stalls() {
    for protocol in PROTOCOLS {
        let env = env(None).await;
        for n in 0..5 {
            seed(&env, &format!("s{n}"), "seeded").await;
        }
        let (ctx, faulty) = client(&env, protocol);
        ctx.table::<Value>(TODO)
            .pull("all", Query::all())
            .await
            .unwrap();
        let before = env.writes(TODO).await + env.writes(TAGS).await;
        for n in 0..10 {
            insert(&ctx, &format!("n{n}"), &format!("new {n}")).await;
        }
        for n in 0..5 {
            ctx.table::<Value>(TAGS)
                .insert(&json!({"id": format!("t{n}"), "name": format!("tag {n}")}))
                .await
                .unwrap();
        }
        for n in 0..5 {
            update(&ctx, &format!("s{n}"), &format!("edited {n}")).await;
        }
        faulty.partition(307, 50);
        for _ in 0..10 {
            let _ = ctx.push().await.unwrap();
        }
        faulty.heal();
        let healed = ctx.push().await.unwrap();
        assert!(healed.is_success(), "{protocol:?}: {healed:?}");
        assert_eq!(ctx.pending_operations().unwrap(), 0);
        assert!(ctx.operation_errors().unwrap().is_empty(), "{protocol:?}");
        for n in 0..10 {
            let text = env.text(&format!("n{n}")).await;
            assert_eq!(text, Some(format!("new {n}")));
        }
        for n in 0..5 {
            let id = format!("s{n}");
            assert_eq!(env.text(&id).await, Some(format!("edited {n}")));
            let row = env.row(TODO, &id).await.unwrap();
            assert_eq!(local_version(&ctx, &id), Some(row.version_text()));
            let tag = env.row(TAGS, &format!("t{n}")).await.unwrap();
            assert_eq!(tag.values["name"], format!("tag {n}"));
        }
        let after = env.writes(TODO).await + env.writes(TAGS).await;
        assert_eq!(
            after - before,
            20,
            "{protocol:?}: a write was lost or applied twice"
        );
    }
}

/// replicache#42: a mutation made while a sync was running was not pushed. Here writes
/// made while a push is held on the wire -- to another item and to the item being sent --
/// are sent by that same push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicache_42_write_during_push_is_pushed() {
    for protocol in PROTOCOLS {
        let env = env(None).await;
        let (ctx, faulty) = client(&env, protocol);
        insert(&ctx, "a", "first").await;
        let gate = faulty.hold_next_write();
        let pusher = ctx.clone();
        let push = tokio::spawn(async move { pusher.push().await.unwrap() });
        gate.reached().await;
        insert(&ctx, "b", "during the push").await;
        update(&ctx, "a", "edited during the push").await;
        gate.release();
        let result = push.await.unwrap();
        assert!(result.is_success(), "{protocol:?}: {result:?}");
        assert_eq!(ctx.pending_operations().unwrap(), 0, "{protocol:?}");
        assert_eq!(env.text("b").await.as_deref(), Some("during the push"));
        assert_eq!(
            env.text("a").await.as_deref(),
            Some("edited during the push")
        );
        assert_eq!(
            local_version(&ctx, "a"),
            Some(env.row(TODO, "a").await.unwrap().version_text())
        );
    }
}

/// rocicorp/mono#4608: the server applied a push but answered with an error; the client
/// waited for a retry that never came. Here the answer to an applied insert, update and
/// delete is lost; the op stays visibly queued, and the next push settles it -- no
/// duplicate, no spurious conflict, no error record -- with the server's version locally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocicorp_mono_4608_applied_but_errored_op_leaves_no_limbo() {
    for protocol in PROTOCOLS {
        let env = env(None).await;
        seed(&env, "u", "old").await;
        seed(&env, "d", "doomed").await;
        let (ctx, faulty) = client(&env, protocol);
        ctx.table::<Value>(TODO)
            .pull("all", Query::all())
            .await
            .unwrap();
        for kind in ["insert", "update", "delete"] {
            let id = match kind {
                "insert" => {
                    insert(&ctx, "i", "new").await;
                    "i"
                }
                "update" => {
                    update(&ctx, "u", "changed").await;
                    "u"
                }
                _ => {
                    ctx.table::<Value>(TODO).delete_id("d").await.unwrap();
                    "d"
                }
            };
            let before = env.writes(TODO).await;
            faulty.fail_writes(1, Fault::CommitThenLoseResponse);
            let lost = ctx.push().await.unwrap();
            assert_eq!(
                lost.status,
                PushStatus::CancelledByNetworkError,
                "{protocol:?} {kind}"
            );
            let ops = ctx.operations().unwrap();
            assert_eq!(ops.len(), 1, "{protocol:?} {kind}");
            assert_eq!(ops[0].state, OpState::Failed, "{protocol:?} {kind}");
            assert_eq!(env.writes(TODO).await - before, 1, "{kind} was applied");

            let settled = ctx.push().await.unwrap();
            assert!(settled.is_success(), "{protocol:?} {kind}: {settled:?}");
            assert_eq!(settled.pushed, 1, "{protocol:?} {kind}");
            assert_eq!(ctx.pending_operations().unwrap(), 0);
            assert!(
                ctx.operation_errors().unwrap().is_empty(),
                "{protocol:?} {kind}"
            );
            assert_eq!(env.writes(TODO).await - before, 1, "{kind} applied once");
            let row = env.row(TODO, id).await.unwrap();
            match kind {
                "delete" => {
                    assert!(row.deleted);
                    assert!(ctx.get(TODO, id).unwrap().is_none());
                }
                _ => assert_eq!(local_version(&ctx, id), Some(row.version_text())),
            }
        }
        assert_eq!(env.text("i").await.as_deref(), Some("new"));
        assert_eq!(env.text("u").await.as_deref(), Some("changed"));
        // A pull finds nothing to push and agrees with the server.
        let before = env.writes(TODO).await;
        ctx.table::<Value>(TODO)
            .pull("all", Query::all())
            .await
            .unwrap();
        assert_eq!(env.writes(TODO).await, before);
        assert!(ctx.get(TODO, "d").unwrap().is_none());
    }
}

/// Azure/azure-mobile-apps#916: rows sharing one `updatedAt` across a page boundary made
/// the client pull the same page forever. tidesync-server stamps the writes of one
/// millisecond alike, so 25 rows written as fast as one push goes share few timestamps; read
/// with a server page of 10 through the `(updatedAt, id)` cursor they arrive each exactly
/// once, and the next pull costs one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_mobile_apps_916_rows_across_a_page_boundary() {
    for protocol in PROTOCOLS {
        let env = env(Some(10)).await;
        let writer = other(&env);
        for n in 0..25 {
            insert(&writer, &format!("r{n:02}"), "batch").await;
        }
        assert!(writer.push().await.unwrap().is_success());
        let (ctx, _) = client(&env, protocol);
        let first = ctx
            .table::<Value>(TODO)
            .pull("all", Query::all())
            .await
            .unwrap();
        assert_eq!(first.upserted, 25, "{protocol:?}: {first:?}");
        assert_eq!(first.requests, 3, "{protocol:?}: {first:?}");
        assert_eq!(ctx.query(TODO, &Query::all()).unwrap().items.len(), 25);
        let again = ctx
            .table::<Value>(TODO)
            .pull("all", Query::all())
            .await
            .unwrap();
        assert_eq!((again.received(), again.requests), (0, 1), "{protocol:?}");
    }
}

/// CommunityToolkit/Datasync#98 (and the #107 class): an initial pull broken part-way left
/// its delta-token bookkeeping unable to recover. Here the initial pull of 30 rows (server
/// page 10) is cut by a network error after its first page; meanwhile rows on both sides
/// of the cut change and one is deleted. The next pull resumes after the cut, reads every
/// remaining row and every change exactly once, and the local table equals the server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasync_98_interrupted_pull_resumes_without_skipping() {
    for protocol in PROTOCOLS {
        let env = env(Some(10)).await;
        let writer = other(&env);
        for n in 0..30 {
            insert(&writer, &format!("r{n:02}"), "v1").await;
        }
        assert!(writer.push().await.unwrap().is_success());
        let (ctx, faulty) = client(&env, protocol);
        let cut = Arc::new(AtomicBool::new(false));
        let (transport, flag) = (faulty.clone(), cut.clone());
        let options = PullOptions {
            progress: Some(Arc::new(move |_| {
                if !flag.swap(true, Ordering::SeqCst) {
                    transport.fail_reads(1, Fault::Network);
                }
            })),
            ..PullOptions::default()
        };
        let interrupted = ctx
            .table::<Value>(TODO)
            .pull_with("all", Query::all(), options)
            .await;
        assert!(
            matches!(
                interrupted,
                Err(Error::Transport(TransportError::Network(_)))
            ),
            "{protocol:?}: {interrupted:?}"
        );
        assert_eq!(
            ctx.query(TODO, &Query::all()).unwrap().items.len(),
            10,
            "the first page was kept"
        );

        update(&writer, "r00", "v2").await;
        update(&writer, "r25", "v2").await;
        writer.table::<Value>(TODO).delete_id("r15").await.unwrap();
        assert!(writer.push().await.unwrap().is_success());
        let resumed = ctx
            .table::<Value>(TODO)
            .pull("all", Query::all())
            .await
            .unwrap();
        // r10..r29 (r15 as a tombstone, r25 in its new version) and r00's change.
        assert_eq!(
            (resumed.upserted, resumed.deleted),
            (20, 1),
            "{protocol:?}: {resumed:?}"
        );
        let mut local: Vec<(String, String)> = ctx
            .query(TODO, &Query::all())
            .unwrap()
            .items
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_owned(),
                    r["version"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        local.sort();
        assert_eq!(local, env.live_versions().await, "{protocol:?}");
    }
}

// ---------------------------------------------------------------------------------------
// An engine bug found by the crash suite (`tests/crash/`), fixed

/// An op whose request the server applied but whose answer was lost stays queued
/// (`Failed`); a later local edit of the same row is folded into it. The resent op then
/// carries the edited row, and the server answers 409 (insert) or 412 (update) with the
/// copy it applied. That copy is what the op's earlier attempt sent, so the engine takes
/// it as its own write and sends the edit against the server's version; before the fix
/// the default handler recorded a conflict and the edit never reached the server.
/// Expected: the push completes, the server holds the edit, no error record.
async fn edit_after_lost_ack(
    protocol: Protocol,
    first: &str,
    edits: &[&str],
) -> Result<(), String> {
    let env = env(None).await;
    seed(&env, "u", "v0").await;
    let (ctx, faulty) = client(&env, protocol);
    ctx.table::<Value>(TODO)
        .pull("all", Query::all())
        .await
        .unwrap();
    let id = match first {
        "insert" => {
            insert(&ctx, "x", "v1").await;
            "x"
        }
        _ => {
            update(&ctx, "u", "v1").await;
            "u"
        }
    };
    faulty.fail_writes(1, Fault::CommitThenLoseResponse);
    let lost = ctx.push().await.unwrap();
    assert_eq!(lost.status, PushStatus::CancelledByNetworkError);
    assert_eq!(env.text(id).await.as_deref(), Some("v1"), "applied");
    for then in edits {
        match *then {
            "update" => update(&ctx, id, "v2").await,
            "delete" => ctx.table::<Value>(TODO).delete_id(id).await.unwrap(),
            // A push whose write fails before it leaves: one more attempt, not applied.
            _ => {
                faulty.fail_writes(1, Fault::Network);
                let cut = ctx.push().await.unwrap();
                assert_eq!(cut.status, PushStatus::CancelledByNetworkError);
            }
        }
    }
    let pushed = ctx.push().await.unwrap();
    let server = env.row(TODO, id).await.unwrap();
    let landed = if edits.contains(&"delete") {
        server.deleted
    } else {
        !server.deleted && server.values["text"] == "v2"
    };
    if pushed.is_success()
        && landed
        && ctx.operation_errors().unwrap().is_empty()
        && ctx.pending_operations().unwrap() == 0
    {
        Ok(())
    } else {
        Err(format!(
            "{protocol:?} {first} then {edits:?}: the server holds {:?} (deleted: {}); {pushed:?}",
            server.values["text"], server.deleted
        ))
    }
}

/// Runs the case on both push paths and reports every path that fails.
async fn edit_after_lost_ack_on_both_paths(first: &str, edits: &[&str]) {
    let mut failures = Vec::new();
    for protocol in PROTOCOLS {
        if let Err(failure) = edit_after_lost_ack(protocol, first, edits).await {
            failures.push(failure);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_after_lost_ack_insert_then_update() {
    edit_after_lost_ack_on_both_paths("insert", &["update"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_after_lost_ack_update_then_update() {
    edit_after_lost_ack_on_both_paths("update", &["update"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_after_lost_ack_update_then_delete() {
    edit_after_lost_ack_on_both_paths("update", &["delete"]).await;
}

/// Found by the crash suite's strict variant once kills were placed right after the server
/// applied a push (TIDESYNC_CRASH_SEED=1796433316511132697 and others): an edit folded into
/// the op whose answer was lost, then a delete. The delete replaces the op and keeps the
/// row as its snapshot (`v2`), but the server holds the earlier attempt (`v1`): push meets
/// 412, the server's copy matches neither the snapshot nor anything the delete remembers of
/// the replaced attempt, and the default handler records a conflict; the op stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_after_lost_ack_update_then_update_then_delete() {
    edit_after_lost_ack_on_both_paths("update", &["update", "delete"]).await;
}

/// Found by the crash suite's strict variant (TIDESYNC_CRASH_SEED=1796434493010582603): the
/// first attempt was applied and its answer lost; an edit was folded in; the next attempt,
/// carrying it, never reached the server. The op keeps only its last attempt (`v2`), so when
/// the server answers 409 with the first one (`v1`), nothing matches and a conflict is
/// recorded: the op stays and the edit never reaches the server. Fixed: an op keeps every
/// unanswered attempt (inside its `item`), and push takes a server copy equal to any of
/// them as its own write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_after_lost_ack_then_an_attempt_that_never_arrived() {
    edit_after_lost_ack_on_both_paths("insert", &["update", "cut"]).await;
}
