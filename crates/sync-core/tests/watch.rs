//! `SyncContext::watch` on the mock server: pulls when the feed says so (debounced),
//! reconnects and catches up after a cut, pushes after local writes, falls back to
//! polling without a feed, and stops cleanly. Every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tidesync_core::{Backoff, ChangeEvent, Query, WatchOptions};
use tidesync_transport_mock::CallKind;
use tokio::sync::broadcast::Receiver;

/// Waits (up to 10 s) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits (up to 10 s) for an event matching `pick`.
async fn next_event(rx: &mut Receiver<ChangeEvent>, pick: impl Fn(&ChangeEvent) -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.recv().await {
                Ok(event) if pick(&event) => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events closed: {e}"),
            }
        }
    })
    .await
    .expect("the event did not come");
}

fn fast() -> WatchOptions {
    WatchOptions::new([TODO]).backoff(Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
    })
}

fn reads(f: &Fixture) -> usize {
    f.server
        .calls()
        .iter()
        .filter(|c| c.kind == CallKind::Read)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_event_pulls_the_table_without_the_app_calling_pull() {
    let f = Fixture::new();
    f.server.set_feed_enabled(true);
    let mut rx = f.client.subscribe();
    let watcher = f.client.watch(fast()).unwrap();
    next_event(&mut rx, |e| matches!(e, ChangeEvent::FeedConnected { .. })).await;
    f.server
        .server_insert(TODO, obj(json!({"id": "x", "text": "from elsewhere"})));
    eventually("the row to arrive", || {
        f.client.get(TODO, "x").unwrap().is_some()
    })
    .await;
    assert_eq!(f.server.open_feeds(), 1);
    watcher.stop().await;
    assert_eq!(f.server.open_feeds(), 0, "stop closes the feed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_changes_costs_few_pulls() {
    let f = Fixture::new();
    f.server.set_feed_enabled(true);
    let mut rx = f.client.subscribe();
    let watcher = f
        .client
        .watch(fast().debounce(Duration::from_millis(50)))
        .unwrap();
    next_event(&mut rx, |e| matches!(e, ChangeEvent::FeedConnected { .. })).await;
    eventually("the catch-up pull", || reads(&f) >= 1).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let before = reads(&f);
    for i in 0..40 {
        f.server
            .server_insert(TODO, obj(json!({"id": format!("r{i:02}")})));
    }
    eventually("all rows", || {
        f.client.query(TODO, &Query::all()).unwrap().items.len() == 40
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pulls = reads(&f) - before;
    assert!(pulls <= 3, "40 events cost {pulls} reads");
    watcher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_cut_the_watcher_reconnects_and_catches_up() {
    let f = Fixture::new();
    f.server.set_feed_enabled(true);
    let b = f.second_client();
    let mut rx = f.client.subscribe();
    let watcher = f.client.watch(fast()).unwrap();
    next_event(&mut rx, |e| matches!(e, ChangeEvent::FeedConnected { .. })).await;

    // Cut the feed while the server is unreachable, write meanwhile: no event reaches
    // the watcher for that write.
    f.server.set_offline(true);
    assert_eq!(f.server.drop_feeds(), 1);
    next_event(&mut rx, |e| {
        matches!(e, ChangeEvent::FeedDisconnected { .. })
    })
    .await;
    f.server.set_offline(false);
    f.server.set_feed_enabled(false);
    f.server.server_insert(TODO, obj(json!({"id": "missed"})));
    f.server.set_feed_enabled(true);

    // Back: it reconnects and its catch-up pull brings the row.
    next_event(&mut rx, |e| matches!(e, ChangeEvent::FeedConnected { .. })).await;
    eventually("the missed row", || {
        f.client.get(TODO, "missed").unwrap().is_some()
    })
    .await;

    // And it follows the feed again.
    b.todo().insert(&json!({"id": "later"})).await.unwrap();
    assert!(b.client.push().await.unwrap().is_success());
    eventually("the later row", || {
        f.client.get(TODO, "later").unwrap().is_some()
    })
    .await;
    watcher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_attempts_back_off_and_report_why() {
    let f = Fixture::new();
    f.server.set_feed_enabled(true);
    f.server.set_offline(true);
    let mut rx = f.client.subscribe();
    let watcher = f.client.watch(fast()).unwrap();
    let mut waits = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while waits.len() < 4 {
            if let Ok(ChangeEvent::FeedDisconnected { retry_in, reason }) = rx.recv().await {
                assert!(reason.contains("network"), "{reason}");
                waits.push(retry_in);
            }
        }
    })
    .await
    .unwrap();
    assert!(waits.iter().all(|w| *w <= Duration::from_millis(100)));
    assert!(waits[2] > waits[0], "{waits:?}");
    f.server.set_offline(false);
    next_event(&mut rx, |e| matches!(e, ChangeEvent::FeedConnected { .. })).await;
    watcher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_push_sends_local_writes_shortly_after_and_peers_see_them() {
    let a = Fixture::new();
    a.server.set_feed_enabled(true);
    let b = a.second_client();
    let wa = a
        .client
        .watch(fast().auto_push(Duration::from_millis(20)))
        .unwrap();
    let wb = b.client.watch(fast()).unwrap();
    for i in 0..5 {
        a.todo()
            .insert(&json!({"id": format!("a{i}"), "text": "hi"}))
            .await
            .unwrap();
    }
    eventually("B to hold A's rows", || {
        b.client.query(TODO, &Query::all()).unwrap().items.len() == 5
    })
    .await;
    assert_eq!(a.client.pending_operations().unwrap(), 0);
    let writes = a
        .server
        .calls()
        .iter()
        .filter(|c| c.kind == CallKind::Insert)
        .count();
    assert_eq!(writes, 5);
    wa.stop().await;
    wb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_push_also_runs_on_reconnect() {
    let f = Fixture::new();
    f.server.set_feed_enabled(true);
    f.server.set_offline(true);
    let mut rx = f.client.subscribe();
    let watcher = f
        .client
        .watch(fast().auto_push(Duration::from_millis(10)))
        .unwrap();
    f.todo().insert(&json!({"id": "offline"})).await.unwrap();
    next_event(&mut rx, |e| {
        matches!(e, ChangeEvent::FeedDisconnected { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(f.client.pending_operations().unwrap(), 1);
    f.server.set_offline(false);
    eventually("the queued insert to reach the server", || {
        f.server.get(TODO, "offline").is_some()
    })
    .await;
    eventually("the queue to empty", || {
        f.client.pending_operations().unwrap() == 0
    })
    .await;
    watcher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_feed_the_watcher_polls() {
    let f = Fixture::new();
    let mut rx = f.client.subscribe();
    let watcher = f
        .client
        .watch(fast().poll_interval(Duration::from_millis(50)))
        .unwrap();
    next_event(&mut rx, |e| {
        matches!(e, ChangeEvent::FeedPolling { interval } if *interval == Duration::from_millis(50))
    })
    .await;
    f.server.server_insert(TODO, obj(json!({"id": "polled"})));
    eventually("the polled row", || {
        f.client.get(TODO, "polled").unwrap().is_some()
    })
    .await;
    let before = reads(&f);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let polls = reads(&f) - before;
    assert!((2..=10).contains(&polls), "{polls} polls in 300 ms");
    watcher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_watcher_stops_it_and_bad_options_are_refused() {
    let f = Fixture::new();
    f.server.set_feed_enabled(true);
    let mut rx = f.client.subscribe();
    let watcher = f.client.watch(fast()).unwrap();
    next_event(&mut rx, |e| matches!(e, ChangeEvent::FeedConnected { .. })).await;
    assert!(watcher.is_running());
    drop(watcher);
    eventually("the feed to close", || f.server.open_feeds() == 0).await;

    assert!(
        f.client
            .watch(WatchOptions::new(Vec::<String>::new()))
            .is_err()
    );
    assert!(f.client.watch(WatchOptions::new(["Nope"])).is_err());
    assert!(f.client.watch(fast().query_id("a|b")).is_err());
    assert!(f.client.watch(fast().query_id("")).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_a_slow_pull_returns_promptly() {
    let f = Fixture::new();
    f.server.set_feed_enabled(true);
    f.server.set_latency(Duration::from_secs(5));
    let watcher = f.client.watch(fast()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    watcher.stop().await;
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}
