//! `bootstrap_1m` and `bootstrap_resume_waste`: the first sync of a table of five typed
//! columns from `tidesync-server` (SQLite) on a loopback port, through the snapshot
//! extension in its columnar framing.
//!
//! - `bootstrap_1m`: the first pull into an empty SQLite store, timed, ÷ the plain code for
//!   the same rows: the rows the pull stored, already in memory, inserted into a fresh file
//!   with the same table layout (the store's own `CREATE TABLE` and indexes, same pragmas)
//!   with one prepared statement, one transaction per [`BATCH`] rows (the pull's batch).
//! - `bootstrap_resume_waste`: a child process (`--child-bootstrap URL FILE`) bootstraps into
//!   a file and is killed with SIGKILL once about half the rows are in it; a second pull
//!   resumes. The figure is the rows the server served beyond the table's size (what was
//!   downloaded twice, counted by the server's `tidesync_rows_served_total`, so rows lost in
//!   flight count too) ÷ the rows the killed child had applied. Baseline 1.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use tidesync_core::{ColumnType, LocalStore, Query, SyncContext, TableDef};
use tidesync_server::Server;
use tidesync_store_sqlite::SqliteStore;
use tidesync_transport_http::HttpTransport;

use crate::output::{Baseline, Figure, Goal};
use crate::{Plan, progress};

/// Rows per snapshot batch (one store transaction each), and per baseline transaction.
const BATCH: u64 = 5_000;
/// The table.
const TABLE: &str = "Boot";

/// The table: five typed columns besides the system ones.
fn table_def() -> TableDef {
    TableDef::new(TABLE)
        .column("title", ColumnType::String)
        .column("n", ColumnType::Integer)
        .column("score", ColumnType::Real)
        .column("done", ColumnType::Bool)
        .column("due", ColumnType::DateTime)
}

fn row(n: usize) -> Value {
    #[allow(clippy::cast_precision_loss)]
    let score = n as f64 / 7.0;
    json!({
        "title": format!("task number {n}"),
        "n": n,
        "score": score,
        "done": n % 3 == 0,
        "due": format!("2026-{:02}-{:02}T08:30:00.000Z", n % 12 + 1, n % 28 + 1),
    })
}

fn client(url: &str, file: &Path) -> anyhow::Result<SyncContext> {
    let store = SqliteStore::open(file)?;
    store.define_table(&table_def())?;
    let transport = HttpTransport::builder(url)
        .timeout(Duration::from_secs(300))
        .build()?;
    Ok(SyncContext::builder()
        .store(store)
        .transport(transport)
        .page_size(BATCH)
        .build()?)
}

pub(crate) fn run(plan: Plan) -> anyhow::Result<Vec<Figure>> {
    let runtime = crate::runtime()?;
    runtime.block_on(run_async(plan))
}

async fn run_async(plan: Plan) -> anyhow::Result<Vec<Figure>> {
    let rows = plan.bootstrap_rows;
    let dir = tempfile::tempdir()?;
    let server = Server::builder()
        .sqlite(dir.path().join("server.db"))
        .table(TABLE)
        .build()
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let router = server.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    seed(&url, rows).await?;
    let unit = |what: &str| {
        if rows == 1_000_000 {
            what.to_owned()
        } else {
            format!("{what} (--quick: {rows} rows)")
        }
    };

    // bootstrap_1m.
    progress(&format!("bootstrap_1m: first pull of {rows} rows"));
    let file = dir.path().join("client.db");
    let context = client(&url, &file)?;
    let start = Instant::now();
    let pulled = context
        .table::<Value>(TABLE)
        .pull("all", Query::all())
        .await?;
    let seconds = start.elapsed().as_secs_f64();
    drop(context);
    anyhow::ensure!(pulled.snapshot, "the first pull did not use the snapshot");
    anyhow::ensure!(
        pulled.upserted == rows as u64,
        "pulled {} of {rows}",
        pulled.upserted
    );
    progress("bootstrap_1m: baseline inserts");
    let floor = insert_floor(&file, &dir.path().join("floor.db"))?;
    let mut figures = vec![Figure {
        name: "bootstrap_1m",
        value: seconds,
        baseline: floor,
        against: Baseline::SameWork,
        unit: unit(
            "s first sync of 1,000,000 rows (5 typed columns) ÷ s inserting them from memory, one prepared statement",
        ),
        goal: Goal::AtMost(1.5),
    }];

    // bootstrap_resume_waste.
    progress("bootstrap_resume_waste: a child bootstraps and is killed at ~50%");
    let served_before = rows_served(&url).await?;
    let file = dir.path().join("resumed.db");
    let applied = kill_at_half(&url, &file, rows)?;
    let context = client(&url, &file)?;
    let resumed = context
        .table::<Value>(TABLE)
        .pull("all", Query::all())
        .await?;
    let total = count_rows(&file)?;
    drop(context);
    anyhow::ensure!(
        resumed.snapshot,
        "the resumed pull did not use the snapshot"
    );
    anyhow::ensure!(total == rows as u64, "resumed to {total} rows of {rows}");
    let served = rows_served(&url).await? - served_before;
    let again = served.saturating_sub(rows as u64);
    progress(&format!(
        "bootstrap_resume_waste: {applied} rows applied before the kill, {served} served in all, {again} twice"
    ));
    #[allow(clippy::cast_precision_loss)]
    figures.push(Figure {
        name: "bootstrap_resume_waste",
        value: again as f64 / applied.max(1) as f64,
        baseline: 1.0,
        against: Baseline::Constant,
        unit: unit(
            "rows downloaded again after a SIGKILL at ~50% of a 1,000,000-row bootstrap ÷ rows applied before it",
        ),
        goal: Goal::AtMost(0.05),
    });
    Ok(figures)
}

/// Inserts rows `0..rows` on the server through the batch route.
async fn seed(url: &str, rows: usize) -> anyhow::Result<()> {
    progress(&format!("seeding the server with {rows} rows"));
    crate::remote::seed_rows(url, TABLE, 0..rows, row).await
}

/// The server's `tidesync_rows_served_total`.
async fn rows_served(url: &str) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("{url}/tidesync/v1/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix("tidesync_rows_served_total "))
        .context("no tidesync_rows_served_total in the metrics")?
        .trim()
        .parse()
        .context("tidesync_rows_served_total is not a number")
}

/// The plain code: the rows of `pulled` (read into memory first, not timed) inserted into
/// a fresh file with the same table and indexes, one prepared statement, one transaction per
/// [`BATCH`] rows, the store's pragmas (WAL, `synchronous=NORMAL`).
fn insert_floor(pulled: &Path, fresh: &Path) -> anyhow::Result<f64> {
    let source = rusqlite::Connection::open(pulled)?;
    let schema: Vec<String> = source
        .prepare("SELECT sql FROM sqlite_master WHERE tbl_name = ?1 AND sql IS NOT NULL")?
        .query_map([TABLE], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut select = source.prepare(&format!("SELECT * FROM \"{TABLE}\""))?;
    let width = select.column_count();
    let rows: Vec<Vec<rusqlite::types::Value>> = select
        .query_map([], |r| {
            (0..width)
                .map(|i| r.get::<_, rusqlite::types::Value>(i))
                .collect()
        })?
        .collect::<Result<_, _>>()?;
    drop(select);
    let mut conn = rusqlite::Connection::open(fresh)?;
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    for sql in &schema {
        conn.execute_batch(sql)?;
    }
    let marks = vec!["?"; width].join(", ");
    let sql = format!("INSERT INTO \"{TABLE}\" VALUES ({marks})");
    let start = Instant::now();
    for batch in rows.chunks(usize::try_from(BATCH)?) {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(&sql)?;
            for row in batch {
                insert.execute(rusqlite::params_from_iter(row))?;
            }
        }
        tx.commit()?;
    }
    Ok(start.elapsed().as_secs_f64())
}

fn count_rows(file: &Path) -> anyhow::Result<u64> {
    let conn = rusqlite::Connection::open(file)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let n: i64 = conn
        .query_row(&format!("SELECT count(*) FROM \"{TABLE}\""), [], |r| {
            r.get(0)
        })
        .unwrap_or(0);
    Ok(u64::try_from(n)?)
}

/// Runs `--child-bootstrap` into `file`, SIGKILLs it once half the rows are in the file and
/// returns the rows it had applied.
fn kill_at_half(url: &str, file: &Path, rows: usize) -> anyhow::Result<u64> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("--child-bootstrap")
        .arg(url)
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let half = rows as u64 / 2;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the bootstrapping child ended before the kill: {status}");
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the child did not reach half way"
        );
        if file.exists() && count_rows(file)? >= half {
            break;
        }
        // A bench, not a test: polling the file is how the parent sees the child's progress.
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill()?;
    child.wait()?;
    count_rows(file)
}

/// The child: bootstrap `url`'s table into `file` (killed part-way by the parent).
pub(crate) fn child_bootstrap(url: &str, file: &Path) -> anyhow::Result<()> {
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let context = client(url, file)?;
        context
            .table::<Value>(TABLE)
            .pull("all", Query::all())
            .await?;
        anyhow::Ok(())
    })
}
