//! Live queries and the sync status, through the facade.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::{FutureExt, StreamExt};
use tidesync::{Query, SyncErrorKind, SyncStatus, WatchOptions, col};

mod app;

use app::{Note, Todo, client, note, server, todo};

/// The stream's next result; a guard, not a wait: a missing result fails the test
/// instead of hanging it.
async fn next<S>(live: &mut S) -> Vec<Todo>
where
    S: futures_util::Stream<Item = tidesync::Result<Vec<Todo>>> + Unpin,
{
    tokio::time::timeout(std::time::Duration::from_secs(30), live.next())
        .await
        .expect("a fresh result within 30 s")
        .expect("the stream goes on")
        .expect("the query succeeds")
}

fn texts(rows: &[Todo]) -> Vec<&str> {
    let mut texts: Vec<&str> = rows.iter().map(|t| t.text.as_str()).collect();
    texts.sort_unstable();
    texts
}

#[tokio::test]
async fn a_live_query_follows_local_writes_and_pulls_and_coalesces_bursts() {
    let server = server();
    let client = client(&server);
    let todos = client.sync_table::<Todo>();
    let open = Query::new().filter(col("complete").eq(false));
    let mut live = todos.live_query(open.clone());

    // The current result comes at once.
    assert!(next(&mut live).await.is_empty());

    // A local write: a fresh result.
    let milk = todos.insert(&todo("milk", false)).await.expect("insert");
    assert_eq!(texts(&next(&mut live).await), ["milk"]);

    // A burst of writes made before the stream is polled: one result with all of them.
    for text in ["bread", "eggs", "tea"] {
        todos.insert(&todo(text, false)).await.expect("insert");
    }
    assert_eq!(
        texts(&next(&mut live).await),
        ["bread", "eggs", "milk", "tea"]
    );
    assert!(live.next().now_or_never().is_none(), "one result per burst");

    // Changes the query cannot see yield nothing: another table, a row it filters out.
    client
        .sync_table::<Note>()
        .insert(&note("x"))
        .await
        .expect("insert note");
    todos
        .insert(&todo("done already", true))
        .await
        .expect("insert");
    assert!(
        live.next().now_or_never().is_none(),
        "nothing it shows changed"
    );

    // A push's answers store the server's copies (new versions): a fresh result.
    assert!(client.push().await.expect("push").is_success());
    let pushed = next(&mut live).await;
    assert!(pushed.iter().all(|t| t.version.is_some()), "{pushed:?}");

    // A pull brings another device's row.
    let other = crate::client(&server);
    other
        .sync_table::<Todo>()
        .insert(&todo("from the other device", false))
        .await
        .expect("insert");
    assert!(other.push().await.expect("push").is_success());
    todos.pull("todos", Query::all()).await.expect("pull");
    assert_eq!(
        texts(&next(&mut live).await),
        ["bread", "eggs", "from the other device", "milk", "tea"]
    );

    // An update that moves a row out of the query.
    todos
        .update(&Todo {
            complete: true,
            ..todos
                .get(milk.id.as_deref().unwrap())
                .await
                .unwrap()
                .unwrap()
        })
        .await
        .expect("update");
    assert_eq!(
        texts(&next(&mut live).await),
        ["bread", "eggs", "from the other device", "tea"]
    );
}

#[tokio::test]
async fn the_status_counts_the_queue_and_reports_push_and_pull() {
    let server = server();
    let client = client(&server);
    let mut status = client.status();
    assert_eq!(*status.borrow_and_update(), SyncStatus::default());

    let todos = client.sync_table::<Todo>();
    todos.insert(&todo("a", false)).await.unwrap();
    todos.insert(&todo("b", false)).await.unwrap();
    client
        .sync_table::<Note>()
        .insert(&note("n"))
        .await
        .unwrap();
    {
        let now = status.borrow_and_update();
        assert_eq!(now.pending, 3);
        assert_eq!(now.pending_by_table.get("TodoItem"), Some(&2));
        assert_eq!(now.pending_by_table.get("Note"), Some(&1));
    }

    // Offline: the push fails as a network error, and the queue stays.
    server.set_offline(true);
    assert!(!client.push().await.unwrap().is_success());
    {
        let now = status.borrow_and_update();
        let error = now.last_error.as_ref().expect("the failure is reported");
        assert_eq!(error.kind, SyncErrorKind::Network);
        assert_eq!(now.pending, 3);
        assert!(!now.pushing);
        assert_eq!(now.last_pushed_at, None);
    }

    // While a push is held at the server, the status says it runs.
    server.set_offline(false);
    let gate = server.block_next_write();
    let pushing = tokio::spawn({
        let client = client.clone();
        async move { client.push().await }
    });
    gate.reached().await;
    assert!(status.borrow_and_update().pushing);
    gate.release();
    assert!(pushing.await.unwrap().unwrap().is_success());
    {
        let now = status.borrow_and_update();
        assert!(!now.pushing);
        assert_eq!(now.pending, 0);
        assert!(now.pending_by_table.is_empty());
        assert!(now.last_pushed_at.is_some());
        assert_eq!(now.last_error, None, "a success clears the last error");
    }

    // A pull that fails, then one that succeeds.
    server.set_offline(true);
    assert!(todos.pull("all", Query::all()).await.is_err());
    assert_eq!(
        status
            .borrow_and_update()
            .last_error
            .as_ref()
            .map(|e| e.kind),
        Some(SyncErrorKind::Network)
    );
    server.set_offline(false);
    todos.pull("all", Query::all()).await.unwrap();
    let now = status.borrow_and_update().clone();
    assert!(!now.pulling);
    assert!(now.last_pulled_at.is_some());
    assert_eq!(now.last_error, None);
}

#[tokio::test]
async fn a_background_watcher_reports_its_failures_in_the_status() {
    let server = server();
    server.set_feed_enabled(true);
    server.set_offline(true);
    let client = client(&server);
    let mut status = client.status();
    let watcher = client
        .watch(WatchOptions::new(["TodoItem"]))
        .expect("a watcher");
    let failed = status
        .wait_for(|s| s.last_error.is_some() && s.connected == Some(false))
        .await
        .expect("status")
        .clone();
    let error = failed.last_error.unwrap();
    assert_eq!(error.kind, SyncErrorKind::Network);
    assert_eq!(error.action, tidesync::SyncAction::Feed);

    // Back online: the feed opens, the watcher pulls, and the error clears.
    server.set_offline(false);
    status
        .wait_for(|s| {
            s.connected == Some(true) && s.last_error.is_none() && s.last_pulled_at.is_some()
        })
        .await
        .expect("status");
    watcher.stop().await;
}
