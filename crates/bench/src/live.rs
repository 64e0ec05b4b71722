//! `visibility_p50`: how soon a write made through one client is in another client's local
//! store when that client watches the change feed, as a multiple of one loopback HTTP round
//! trip measured in the same run.
//!
//! Client A (SQLite store, HTTP transport) inserts a row and pushes it; the clock starts
//! when A's push returns (the write is committed on the server) and stops when client B
//! (its own SQLite store, `SyncContext::watch` on the feed, default settings) has the row in
//! its local store, seen through B's `Pulled` events. Samples are spaced past the server's
//! coalescing window so each one measures a first change, not a folded one. The baseline is
//! the median of plain `GET /health` round trips on a kept-alive connection to the same
//! server.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use tidesync_core::{ChangeEvent, LocalStore, SyncContext, WatchOptions};
use tidesync_server::Server;
use tidesync_store_sqlite::SqliteStore;
use tidesync_transport_http::HttpTransport;
use tokio::sync::broadcast::error::RecvError;

use crate::local::item_table;
use crate::output::{Baseline, Figure, Goal};
use crate::{Plan, progress};

/// Round trips timed for the baseline.
const ROUND_TRIPS: usize = 200;

fn client(url: &str, file: &std::path::Path) -> anyhow::Result<SyncContext> {
    let store = SqliteStore::open(file)?;
    store.define_table(&item_table())?;
    Ok(SyncContext::builder()
        .store(store)
        .transport(HttpTransport::builder(url).build()?)
        .build()?)
}

/// The `visibility_p50` figure (its own runtime, like the other remote figures).
pub(crate) fn visibility_p50(plan: Plan) -> anyhow::Result<Figure> {
    let runtime = crate::runtime()?;
    runtime.block_on(measure(if plan.quick { 30 } else { 100 }))
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn measure(samples: usize) -> anyhow::Result<Figure> {
    let dir = tempfile::tempdir()?;
    let server = Server::builder()
        .sqlite(dir.path().join("server.db"))
        .table("Item")
        .bind("127.0.0.1:0")
        .start()
        .await?;
    let url = server.url();

    // The baseline: one plain HTTP round trip on loopback.
    let http = reqwest::Client::new();
    let health = format!("{url}/health");
    let mut round_trips = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS + 20 {
        let start = Instant::now();
        http.get(&health).send().await?.bytes().await?;
        if i >= 20 {
            round_trips.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let round_trip = median(round_trips);

    let a = client(&url, &dir.path().join("a.db"))?;
    let b = client(&url, &dir.path().join("b.db"))?;
    let mut events = b.subscribe();
    let watcher = b.watch(WatchOptions::new(["Item"]))?;
    wait_for(&mut events, |e| {
        matches!(e, ChangeEvent::FeedConnected { .. })
    })
    .await?;
    let items = a.table::<serde_json::Value>("Item");
    progress(&format!(
        "visibility_p50: {samples} writes seen through the feed"
    ));
    let mut times = Vec::with_capacity(samples);
    for n in 0..samples + 3 {
        let id = format!("live-{n}");
        items
            .insert(&json!({"id": id, "text": "live", "n": n, "done": false}))
            .await?;
        let pushed = a.push().await?;
        anyhow::ensure!(pushed.is_success(), "push failed: {:?}", pushed.status);
        let start = Instant::now();
        while b.get("Item", &id)?.is_none() {
            wait_for(&mut events, |e| matches!(e, ChangeEvent::Pulled { .. })).await?;
        }
        // The first writes warm up connections and statement caches.
        if n >= 3 {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        // Past the server's 50 ms coalescing window: the next write is a first change.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    watcher.stop().await;
    server.shutdown().await?;
    Ok(Figure {
        name: "visibility_p50",
        value: median(times),
        baseline: round_trip,
        against: Baseline::Unit,
        unit: format!(
            "ms from A's push returning to the row in B's store (feed on, {samples} writes) vs one loopback HTTP round trip"
        ),
        goal: Goal::AtMost(10.0),
    })
}

/// Waits (up to 10 s) for an event `pick` accepts.
async fn wait_for(
    events: &mut tokio::sync::broadcast::Receiver<ChangeEvent>,
    pick: impl Fn(&ChangeEvent) -> bool,
) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(event) if pick(&event) => return Ok(()),
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => anyhow::bail!("the client's events closed"),
            }
        }
    })
    .await
    .context("visibility_p50: B did not get the row within 10 s")?
}
