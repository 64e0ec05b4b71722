//! `reconnect_500_s`: a reconnect storm. 500 engine clients (each its own SQLite store and
//! HTTP transport) have pulled the table once and gone away; 100 changes are made meanwhile;
//! then all of them start watching at once (`SyncContext::watch`: open the feed, pull
//! incrementally from their cursor, back off with jitter when refused). The clock runs from
//! the start until every client's store holds every change. The server is a child process
//! with the default feed caps raised to hold all clients.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use tidesync_core::{Backoff, ChangeEvent, LocalStore, Query, SyncContext, WatchOptions};
use tidesync_store_sqlite::SqliteStore;
use tidesync_transport_http::HttpTransport;

use crate::fanout::{ServerProcess, fanout_config, raise_fd_limit};
use crate::local::item_table;
use crate::output::{Baseline, Figure, Goal};
use crate::{Plan, progress};

/// Changes made while the clients were away.
const MISSED: usize = 100;

fn client(url: &str, file: &std::path::Path) -> anyhow::Result<SyncContext> {
    let store = SqliteStore::open(file)?;
    store.define_table(&item_table())?;
    Ok(SyncContext::builder()
        .store(store)
        .transport(HttpTransport::builder(url).build()?)
        .build()?)
}

/// The `reconnect_500_s` figure.
pub(crate) fn reconnect(plan: Plan) -> anyhow::Result<Figure> {
    raise_fd_limit();
    let clients = if plan.quick { 100 } else { 500 };
    let dir = tempfile::tempdir()?;
    let database = format!("sqlite://{}", dir.path().join("storm.db").display());
    // Dynamic table: the engine's Item rows carry text, n and done.
    // Each client holds its feed and a pooled connection or two for its pulls.
    let config = fanout_config(&database, None, clients * 4)
        .replace("columns = { text = \"string\", n = \"integer\" }\n", "")
        // The storm meets the default cap on opens per second.
        .replace("max_opens_per_sec = 0\n", "");
    let server = ServerProcess::start(dir.path(), "storm", &config)?;
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let insert = |n: usize| {
            let http = http.clone();
            let url = server.url.clone();
            async move {
                http.post(format!("{url}/tables/Item"))
                    .header("ZUMO-API-VERSION", "3.0.0")
                    .json(&json!({"id": format!("storm-{n}"), "text": "storm", "n": n, "done": false}))
                    .send()
                    .await?
                    .error_for_status()?;
                anyhow::Ok(())
            }
        };
        insert(0).await?;
        progress(&format!("reconnect_500_s: {clients} clients pull once"));
        let mut contexts = Vec::with_capacity(clients);
        for k in 0..clients {
            let context = client(&server.url, &dir.path().join(format!("c{k}.db")))?;
            context
                .table::<Value>("Item")
                .pull("watch", Query::all())
                .await?;
            contexts.push(context);
        }
        for n in 1..=MISSED {
            insert(n).await?;
        }
        let last = format!("storm-{MISSED}");
        progress(&format!(
            "reconnect_500_s: {MISSED} changes made; {clients} clients reconnect at once"
        ));
        let start = Instant::now();
        let tasks: Vec<_> = contexts
            .into_iter()
            .map(|context| {
                let last = last.clone();
                tokio::spawn(async move {
                    let mut events = context.subscribe();
                    let options = WatchOptions::new(["Item"]).backoff(Backoff {
                        initial: Duration::from_millis(100),
                        max: Duration::from_secs(5),
                    });
                    let watcher = context.watch(options)?;
                    while context.get("Item", &last)?.is_none() {
                        match events.recv().await {
                            Ok(ChangeEvent::Pulled { .. })
                            | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Ok(_) => continue,
                            Err(_) => anyhow::bail!("events closed"),
                        }
                    }
                    let at = start.elapsed();
                    anyhow::Ok((at, watcher, context))
                })
            })
            .collect();
        let mut slowest = Duration::ZERO;
        let mut done = Vec::with_capacity(tasks.len());
        for task in tasks {
            let (at, watcher, context) = tokio::time::timeout(Duration::from_secs(120), task)
                .await
                .context("a client did not converge within 120 s")???;
            slowest = slowest.max(at);
            done.push((watcher, context));
        }
        for (watcher, context) in &done {
            let _ = watcher;
            for n in 0..=MISSED {
                anyhow::ensure!(
                    context.get("Item", &format!("storm-{n}"))?.is_some(),
                    "a client misses storm-{n}"
                );
            }
        }
        for (watcher, _) in done {
            watcher.stop().await;
        }
        let note = if clients == 500 {
            String::new()
        } else {
            format!(" (--quick: {clients} clients)")
        };
        Ok(Figure {
            name: "reconnect_500_s",
            value: slowest.as_secs_f64(),
            baseline: 1.0,
            against: Baseline::Constant,
            unit: format!(
                "s until each of {clients} reconnecting clients holds the {MISSED} changes made while away{note}"
            ),
            goal: Goal::AtMost(1.0),
        })
    })
}
