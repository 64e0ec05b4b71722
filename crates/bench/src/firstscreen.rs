//! The first-sync figures against `tidesync-server` (SQLite) on a loopback port:
//! `first_screen_ms` (how soon the rows an app shows first are readable during a
//! first sync) and `apply_1_in_1m_ms` (an incremental pull of one changed row into
//! a store that holds a million). Both are milliseconds against the constant 1.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use tidesync_core::{ChangeEvent, LocalStore, PullOptions, Query, SyncContext, Write, WriteBatch};
use tidesync_server::Server;
use tidesync_store_sqlite::SqliteStore;
use tidesync_transport_http::{HttpTransport, Protocol};

use crate::local::item_table;
use crate::output::{Baseline, Figure, Goal};
use crate::{Plan, progress};

/// Rows per page, asked by the client and allowed by the server.
const PAGE: u64 = 1000;
/// Rows of the first screen.
const SCREEN: u64 = 50;
/// Timed first syncs (the median is the figure).
const RUNS: usize = 5;
/// Timed one-row pulls (the median is the figure): cheap, and noisy on a shared machine.
const PULLS: usize = 9;

/// A server on a loopback port; its folder lives as long as the value.
struct Served {
    url: String,
    _dir: tempfile::TempDir,
}

async fn serve() -> anyhow::Result<Served> {
    let dir = tempfile::tempdir()?;
    let app = Server::builder()
        .sqlite(dir.path().join("server.db"))
        .table("Item")
        .page_size(PAGE)
        .build()
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let router = app.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(Served { url, _dir: dir })
}

fn client(url: &str, store: SqliteStore) -> anyhow::Result<SyncContext> {
    let transport = HttpTransport::builder(url)
        .protocol(Protocol::Auto)
        .timeout(Duration::from_secs(120))
        .build()?;
    Ok(SyncContext::builder()
        .store(store)
        .transport(transport)
        .page_size(PAGE)
        .build()?)
}

fn store(file: &Path) -> anyhow::Result<SqliteStore> {
    let store = SqliteStore::open(file)?;
    store.define_table(&item_table())?;
    Ok(store)
}

/// Inserts rows `from..to` on the server through the batch route.
async fn seed(url: &str, from: usize, to: usize) -> anyhow::Result<()> {
    crate::remote::seed_rows(
        url,
        "Item",
        from..to,
        |k| json!({"text": format!("item number {k}"), "n": k, "done": k % 2 == 0}),
    )
    .await
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub(crate) fn run(plan: Plan) -> anyhow::Result<Vec<Figure>> {
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        Ok(vec![
            first_screen(plan).await?,
            apply_one_in_many(plan).await?,
        ])
    })
}

/// `first_screen_ms`: from the start of a first sync of `rows` rows (a fresh SQLite
/// store, the server's snapshot path) to the first page of the pull's query (the
/// default order: by id) being readable in the store, the median of [`RUNS`].
async fn first_screen(plan: Plan) -> anyhow::Result<Figure> {
    let rows = if plan.quick { 20_000 } else { 100_000 };
    let served = serve().await?;
    progress(&format!(
        "first_screen_ms: seeding the server with {rows} rows"
    ));
    seed(&served.url, 0, rows).await?;
    let expected = first_ids(&served.url).await?;
    let dir = tempfile::tempdir()?;
    let mut screens = Vec::new();
    let mut wholes = Vec::new();
    for run in 0..RUNS {
        let file = dir.path().join(format!("fs-{run}.db"));
        let (screen, whole) = time_first_rows(&served.url, &file, &expected, true, rows).await?;
        screens.push(screen);
        wholes.push(whole);
    }
    // The same without a first screen: the rows come in (updatedAt, id) order.
    let file = dir.path().join("fs-none.db");
    let (without, _) = time_first_rows(&served.url, &file, &expected, false, rows).await?;
    let value = median(screens.clone());
    progress(&format!(
        "first_screen_ms: {screens:.1?} ms; whole first syncs {wholes:.2?} s; without a first screen {without:.1} ms"
    ));
    Ok(Figure {
        name: "first_screen_ms",
        value,
        baseline: 1.0,
        against: Baseline::Constant,
        unit: format!(
            "ms from the start of a first sync of {rows} rows to its first {SCREEN} rows (default order) readable locally; median of {RUNS}; the whole sync took {:.2} s (median), without a first screen those rows took {without:.0} ms{}",
            median(wholes),
            if plan.quick { " (--quick)" } else { "" }
        ),
        goal: Goal::AtMost(100.0),
    })
}

/// One first sync into a fresh store at `file`: milliseconds until the `expected`
/// rows (the first [`SCREEN`] by id) are readable, and seconds of the whole sync.
async fn time_first_rows(
    url: &str,
    file: &Path,
    expected: &[String],
    first_screen: bool,
    rows: usize,
) -> anyhow::Result<(f64, f64)> {
    let context = client(url, store(file)?)?;
    let mut events = context.subscribe();
    let mut options = PullOptions::default();
    if first_screen {
        options = options.first_screen(Vec::new(), SCREEN);
    }
    let start = Instant::now();
    let pull = {
        let context = context.clone();
        tokio::spawn(async move {
            context
                .table::<Value>("Item")
                .pull_with("all", Query::all(), options)
                .await
        })
    };
    // After each applied page: are the first rows of the query there?
    let screen = loop {
        match events.recv().await {
            Ok(ChangeEvent::Pulled { .. }) => {
                let local = context.query("Item", &Query::all().order_by("id").top(SCREEN))?;
                if ids(&local.items) == expected {
                    break start.elapsed();
                }
            }
            Ok(ChangeEvent::SyncFinished { .. }) => {
                anyhow::bail!("the pull ended before its first rows were readable")
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(e) => anyhow::bail!("events: {e}"),
        }
    };
    let result = pull.await??;
    let whole = start.elapsed();
    let screened = if first_screen { SCREEN } else { 0 };
    anyhow::ensure!(
        result.upserted == rows as u64 && result.first_screen == screened,
        "pulled {} rows (first screen {})",
        result.upserted,
        result.first_screen
    );
    Ok((screen.as_secs_f64() * 1000.0, whole.as_secs_f64()))
}

/// The ids of the server's first [`SCREEN`] rows by id.
async fn first_ids(url: &str) -> anyhow::Result<Vec<String>> {
    let body: Value = reqwest::Client::new()
        .get(format!("{url}/tables/Item?$orderby=id&$top={SCREEN}"))
        .header("ZUMO-API-VERSION", "3.0.0")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(ids(body["items"].as_array().context("no items")?))
}

fn ids(items: &[impl std::ops::Index<&'static str, Output = Value>]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_owned))
        .collect()
}

/// `apply_1_in_1m_ms`: an incremental pull that brings one changed row into a SQLite
/// store holding `rows` rows (written to the store directly, then the query's cursor
/// set by a first pull), the median of [`PULLS`] pulls, each after one insert on the
/// server.
async fn apply_one_in_many(plan: Plan) -> anyhow::Result<Figure> {
    let rows = if plan.quick { 100_000 } else { 1_000_000 };
    let served = serve().await?;
    seed(&served.url, 0, 10).await?;
    let dir = tempfile::tempdir()?;
    progress(&format!(
        "apply_1_in_1m_ms: writing {rows} rows into a SQLite store"
    ));
    let store = store(&dir.path().join("many.db"))?;
    fill(&store, rows)?;
    let context = client(&served.url, store)?;
    let table = context.table::<Value>("Item");
    let first = table.pull("all", Query::all()).await?;
    anyhow::ensure!(
        first.upserted == 10,
        "the first pull got {}",
        first.upserted
    );
    let mut times = Vec::new();
    for run in 0..PULLS {
        seed(&served.url, 10 + run, 11 + run).await?;
        let start = Instant::now();
        let pulled = table.pull("all", Query::all()).await?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(pulled.received() == 1, "pulled {}", pulled.received());
    }
    let count = context.query("Item", &{
        let mut q = Query::all().top(0);
        q.count = true;
        q
    })?;
    anyhow::ensure!(
        count.count == Some(rows as u64 + 10 + PULLS as u64),
        "the store holds {:?} rows",
        count.count
    );
    progress(&format!("apply_1_in_1m_ms: {times:.2?} ms"));
    Ok(Figure {
        name: "apply_1_in_1m_ms",
        value: median(times),
        baseline: 1.0,
        against: Baseline::Constant,
        unit: format!(
            "ms of an incremental pull bringing 1 new row into a SQLite store holding {rows} rows, loopback; median of {PULLS}{}",
            if plan.quick { " (--quick)" } else { "" }
        ),
        goal: Goal::AtMost(5.0),
    })
}

/// Writes `rows` server-shaped rows into the store, 10,000 per batch.
fn fill(store: &SqliteStore, rows: usize) -> anyhow::Result<()> {
    let mut n = 0;
    while n < rows {
        let end = (n + 10_000).min(rows);
        let mut batch = WriteBatch::new();
        for k in n..end {
            let item = json!({
                "id": format!("local-{k:07}"), "text": format!("item number {k}"), "n": k,
                "done": k % 2 == 0, "version": "MQ==",
                "createdAt": "2020-01-01T00:00:00.000Z", "updatedAt": "2020-01-01T00:00:00.000Z",
            });
            let Value::Object(item) = item else {
                anyhow::bail!("a row is an object");
            };
            batch.push(Write::PutItem {
                table: "Item".to_owned(),
                item,
            });
        }
        store.write(&batch)?;
        n = end;
    }
    Ok(())
}
