//! `SyncContext::watch` on the mock server: pulls when the feed says so (debounced),
//! reconnects and catches up after a cut, pushes after local writes, falls back to
//! polling without a feed, and stops cleanly.
//!
//! Every test runs on a paused tokio clock (`start_paused`): time moves only when every
//! task waits, straight to the next timer, so debounce windows, backoffs and poll intervals
//! are measured on the virtual clock and come out exactly the same under any load. Nothing
//! sleeps: a test waits for the engine's change events, or checks a condition after each
//! event.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tidesync_core::{Backoff, ChangeEvent, Query, SyncAction, WatchOptions};
use tidesync_transport_mock::CallKind;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

/// How long (virtual time) a wait may take before the test fails: a guard against a watcher
/// that never does what is awaited, not a speed limit (the clock only jumps when idle).
const GUARD: Duration = Duration::from_secs(60);

/// Waits for the next event matching `pick` and returns it.
async fn next_event(
    rx: &mut Receiver<ChangeEvent>,
    pick: impl Fn(&ChangeEvent) -> bool,
) -> ChangeEvent {
    tokio::time::timeout(GUARD, async {
        loop {
            match rx.recv().await {
                Ok(event) if pick(&event) => return event,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(e) => panic!("events closed: {e}"),
            }
        }
    })
    .await
    .expect("the event did not come")
}

/// Waits until `done` holds, checking it now and after each event.
async fn until(rx: &mut Receiver<ChangeEvent>, what: &str, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(GUARD, async {
        while !done() {
            match rx.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(e) => panic!("events closed: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

fn pull_started(event: &ChangeEvent) -> bool {
    matches!(
        event,
        ChangeEvent::SyncStarted {
            action: SyncAction::Pull,
            ..
        }
    )
}

fn pull_finished(event: &ChangeEvent) -> bool {
    matches!(
        event,
        ChangeEvent::SyncFinished {
            action: SyncAction::Pull,
            ..
        }
    )
}

/// True when `elapsed` is `expected`, give or take the timer's one-millisecond tick.
fn on_the_tick(elapsed: Duration, expected: Duration) -> bool {
    elapsed >= expected && elapsed <= expected + Duration::from_millis(1)
}

fn fast() -> WatchOptions {
    WatchOptions::new([TODO]).backoff(Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
    })
}

fn calls(f: &Fixture, kind: CallKind) -> usize {
    f.server.calls().iter().filter(|c| c.kind == kind).count()
}

#[tokio::test(start_paused = true)]
async fn a_feed_event_pulls_the_table_without_the_app_calling_pull() {
    let f = Fixture::new();
    f.server.set_feed_enabled(true);
    let mut rx = f.client.subscribe();
    let watcher = f.client.watch(fast()).unwrap();
    next_event(&mut rx, |e| matches!(e, ChangeEvent::FeedConnected { .. })).await;
    f.server
        .server_insert(TODO, obj(json!({"id": "x", "text": "from elsewhere"})));
    until(&mut rx, "the row to arrive", || {
        f.client.get(TODO, "x").unwrap().is_some()
    })
    .await;
    assert_eq!(f.server.open_feeds(), 1);
    watcher.stop().await;
    assert_eq!(f.server.open_feeds(), 0, "stop closes the feed");
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_changes_costs_one_pull_a_debounce_after_the_last() {
    let f = Fixture::new();
    f.server.set_feed_enabled(true);
    let mut rx = f.client.subscribe();
    let debounce = Duration::from_millis(50);
    let watcher = f.client.watch(fast().debounce(debounce)).unwrap();
    next_event(&mut rx, |e| matches!(e, ChangeEvent::FeedConnected { .. })).await;
    next_event(&mut rx, pull_finished).await;
    let caught_up = Instant::now();
    let reads_before = calls(&f, CallKind::Read);
    // 40 changes at once: each sends a feed event.
    for i in 0..40 {
        f.server
            .server_insert(TODO, obj(json!({"id": format!("r{i:02}")})));
    }
    next_event(&mut rx, pull_started).await;
    assert!(
        on_the_tick(caught_up.elapsed(), debounce),
        "the pull waits a debounce after the last one: {:?}",
        caught_up.elapsed()
    );
    next_event(&mut rx, pull_finished).await;
    assert_eq!(f.client.query(TODO, &Query::all()).unwrap().items.len(), 40);
    assert_eq!(
        calls(&f, CallKind::Read) - reads_before,
        1,
        "one pull, one page"
    );
    // And no second pull follows, however long the clock runs.
    let later = tokio::time::timeout(debounce * 20, next_event(&mut rx, pull_started)).await;
    assert!(later.is_err(), "a second pull: {later:?}");
    watcher.stop().await;
}

#[tokio::test(start_paused = true)]
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
    until(&mut rx, "the missed row", || {
        f.client.get(TODO, "missed").unwrap().is_some()
    })
    .await;

    // And it follows the feed again.
    b.todo().insert(&json!({"id": "later"})).await.unwrap();
    assert!(b.client.push().await.unwrap().is_success());
    until(&mut rx, "the later row", || {
        f.client.get(TODO, "later").unwrap().is_some()
    })
    .await;
    watcher.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reconnect_attempts_back_off_and_report_why() {
    let f = Fixture::new();
    f.server.set_feed_enabled(true);
    f.server.set_offline(true);
    let mut rx = f.client.subscribe();
    let watcher = f.client.watch(fast()).unwrap();
    let mut waits = Vec::new();
    let mut attempts = Vec::new();
    while waits.len() < 4 {
        let event = next_event(&mut rx, |e| {
            matches!(e, ChangeEvent::FeedDisconnected { .. })
        })
        .await;
        let ChangeEvent::FeedDisconnected { retry_in, reason } = event else {
            unreachable!()
        };
        assert!(reason.contains("network"), "{reason}");
        waits.push(retry_in);
        attempts.push(Instant::now());
    }
    assert!(waits.iter().all(|w| *w <= Duration::from_millis(100)));
    assert!(waits[2] > waits[0], "{waits:?}");
    // Each attempt came after the wait the one before announced.
    for (i, pair) in attempts.windows(2).enumerate() {
        assert!(
            on_the_tick(pair[1] - pair[0], waits[i]),
            "attempt {} came {:?} after the one before, which said {:?}",
            i + 1,
            pair[1] - pair[0],
            waits[i]
        );
    }
    f.server.set_offline(false);
    next_event(&mut rx, |e| matches!(e, ChangeEvent::FeedConnected { .. })).await;
    watcher.stop().await;
}

#[tokio::test(start_paused = true)]
async fn auto_push_sends_local_writes_shortly_after_and_peers_see_them() {
    let a = Fixture::new();
    a.server.set_feed_enabled(true);
    let b = a.second_client();
    let window = Duration::from_millis(20);
    let mut a_events = a.client.subscribe();
    let mut b_events = b.client.subscribe();
    let wa = a.client.watch(fast().auto_push(window)).unwrap();
    let wb = b.client.watch(fast()).unwrap();
    next_event(&mut a_events, |e| {
        matches!(e, ChangeEvent::FeedConnected { .. })
    })
    .await;
    let wrote = Instant::now();
    for i in 0..5 {
        a.todo()
            .insert(&json!({"id": format!("a{i}"), "text": "hi"}))
            .await
            .unwrap();
    }
    next_event(&mut a_events, |e| {
        matches!(
            e,
            ChangeEvent::SyncStarted {
                action: SyncAction::Push,
                ..
            }
        )
    })
    .await;
    assert!(
        on_the_tick(wrote.elapsed(), window),
        "the push starts one window after the writes: {:?}",
        wrote.elapsed()
    );
    until(&mut b_events, "B to hold A's rows", || {
        b.client.query(TODO, &Query::all()).unwrap().items.len() == 5
    })
    .await;
    assert_eq!(a.client.pending_operations().unwrap(), 0);
    assert_eq!(calls(&a, CallKind::Insert), 5, "one push sent the five");
    wa.stop().await;
    wb.stop().await;
}

#[tokio::test(start_paused = true)]
async fn auto_push_also_runs_on_reconnect() {
    let f = Fixture::new();
    f.server.set_feed_enabled(true);
    f.server.set_offline(true);
    let mut rx = f.client.subscribe();
    let window = Duration::from_millis(10);
    let watcher = f.client.watch(fast().auto_push(window)).unwrap();
    f.todo().insert(&json!({"id": "offline"})).await.unwrap();
    let wrote = Instant::now();
    // Reconnect attempts fail until the push window has long passed: nothing was pushed.
    while wrote.elapsed() < window * 5 {
        next_event(&mut rx, |e| {
            matches!(e, ChangeEvent::FeedDisconnected { .. })
        })
        .await;
    }
    assert_eq!(f.client.pending_operations().unwrap(), 1);
    assert_eq!(calls(&f, CallKind::Insert), 0);
    f.server.set_offline(false);
    until(&mut rx, "the queue to empty", || {
        f.client.pending_operations().unwrap() == 0
    })
    .await;
    assert!(f.server.get(TODO, "offline").is_some());
    watcher.stop().await;
}

#[tokio::test(start_paused = true)]
async fn without_a_feed_the_watcher_polls_every_interval() {
    let f = Fixture::new();
    let mut rx = f.client.subscribe();
    let interval = Duration::from_millis(50);
    let watcher = f.client.watch(fast().poll_interval(interval)).unwrap();
    next_event(
        &mut rx,
        |e| matches!(e, ChangeEvent::FeedPolling { interval: i } if *i == interval),
    )
    .await;
    f.server.server_insert(TODO, obj(json!({"id": "polled"})));
    until(&mut rx, "the polled row", || {
        f.client.get(TODO, "polled").unwrap().is_some()
    })
    .await;
    let mut polls = Vec::new();
    while polls.len() < 6 {
        next_event(&mut rx, pull_started).await;
        polls.push(Instant::now());
    }
    for pair in polls.windows(2) {
        assert!(
            on_the_tick(pair[1] - pair[0], interval),
            "polls {:?} apart",
            pair[1] - pair[0]
        );
    }
    watcher.stop().await;
}

#[tokio::test(start_paused = true)]
async fn dropping_the_watcher_stops_it_and_bad_options_are_refused() {
    let f = Fixture::new();
    f.server.set_feed_enabled(true);
    let mut rx = f.client.subscribe();
    let watcher = f.client.watch(fast()).unwrap();
    next_event(&mut rx, |e| matches!(e, ChangeEvent::FeedConnected { .. })).await;
    next_event(&mut rx, pull_finished).await;
    assert!(watcher.is_running());
    drop(watcher);
    // The task ends at its next turn, without any time passing or any event.
    for _ in 0..10 {
        if f.server.open_feeds() == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(f.server.open_feeds(), 0, "the feed is closed");
    let quiet = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
    assert!(quiet.is_err(), "a stopped watcher did something: {quiet:?}");

    assert!(
        f.client
            .watch(WatchOptions::new(Vec::<String>::new()))
            .is_err()
    );
    assert!(f.client.watch(WatchOptions::new(["Nope"])).is_err());
    assert!(f.client.watch(fast().query_id("a|b")).is_err());
    assert!(f.client.watch(fast().query_id("")).is_err());
}

#[tokio::test(start_paused = true)]
async fn a_stop_during_a_slow_pull_returns_before_the_pull_would_end() {
    let f = Fixture::new();
    f.server.set_feed_enabled(true);
    let latency = Duration::from_secs(5);
    f.server.set_latency(latency);
    let mut rx = f.client.subscribe();
    let watcher = f.client.watch(fast()).unwrap();
    next_event(&mut rx, pull_started).await;
    let stopping = Instant::now();
    watcher.stop().await;
    assert!(
        stopping.elapsed() < latency,
        "stop waited {:?} (virtual) for the pull",
        stopping.elapsed()
    );
    assert_eq!(
        calls(&f, CallKind::Read),
        0,
        "the read never reached the server"
    );
}
