//! The figures against `tidesync-server` (SQLite) on a loopback port: `push_10k`,
//! `push_10k_floor`, `pull_100k`, `pull_1m_rss_mb` (a child process) and `pull_noop_requests`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use tidesync_core::{LocalStore, PushStatus, Query, SyncContext};
use tidesync_protocol::new_client_id;
use tidesync_server::Server;
use tidesync_store_sqlite::SqliteStore;
use tidesync_transport_http::{HttpTransport, Protocol};

use crate::local::item_table;
use crate::output::{Baseline, Figure, Goal};
use crate::{Plan, progress};

/// Rows per page, asked by the client and allowed by the server.
pub(crate) const PAGE: u64 = 1000;
/// Ops per seeding request.
const SEED_BATCH: usize = 1000;
/// Rows per transaction in the push floor (the engine's default batch size).
const FLOOR_BATCH: usize = 500;

/// A server on a loopback port that counts the requests it gets.
struct Served {
    url: String,
    requests: Arc<AtomicUsize>,
    dir: tempfile::TempDir,
}

async fn serve() -> anyhow::Result<Served> {
    let dir = tempfile::tempdir()?;
    let app = Server::builder()
        .sqlite(dir.path().join("server.db"))
        .table("Item")
        .page_size(PAGE)
        .build()
        .await?;
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let router = app.router().layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            counter.fetch_add(1, Ordering::SeqCst);
            next.run(request)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(Served { url, requests, dir })
}

fn client(url: &str, protocol: Protocol, file: &Path) -> anyhow::Result<SyncContext> {
    client_with_pages(url, protocol, file, PAGE)
}

fn client_with_pages(
    url: &str,
    protocol: Protocol,
    file: &Path,
    page: u64,
) -> anyhow::Result<SyncContext> {
    let store = SqliteStore::open(file)?;
    store.define_table(&item_table())?;
    let transport = HttpTransport::builder(url)
        .protocol(protocol)
        .timeout(Duration::from_secs(120))
        .build()?;
    Ok(SyncContext::builder()
        .store(store)
        .transport(transport)
        .page_size(page)
        .build()?)
}

fn item(n: usize) -> Value {
    json!({"text": format!("item number {n}"), "n": n, "done": n % 2 == 0})
}

pub(crate) fn run(plan: Plan) -> anyhow::Result<Vec<Figure>> {
    let runtime = crate::runtime()?;
    runtime.block_on(run_async(plan))
}

async fn run_async(plan: Plan) -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir()?;
    let mut figures = Vec::new();

    // push_10k and its floor.
    let served = serve().await?;
    let batched = timed_push(&served.url, Protocol::Auto, plan.push_ops, dir.path()).await?;
    let per_op = timed_push(&served.url, Protocol::V3, plan.push_ops, dir.path()).await?;
    let floor = push_floor(plan.push_ops, dir.path())?;
    let note = if plan.push_ops == 10_000 {
        String::new()
    } else {
        format!(", --quick: {} ops", plan.push_ops)
    };
    figures.push(Figure {
        name: "push_10k",
        value: batched,
        baseline: per_op,
        against: Baseline::OwnMode,
        unit: format!("s, batched push vs one request per op{note}"),
        goal: Goal::AtMost(0.2),
    });
    figures.push(Figure {
        name: "push_10k_floor",
        value: batched,
        baseline: floor,
        against: Baseline::SameWork,
        unit: format!("s, batched push vs raw SQLite inserts, {FLOOR_BATCH} per txn{note}"),
        goal: Goal::AtMost(2.0),
    });
    let idem_floor = push_idem_floor(plan.push_ops, dir.path())?;
    let server_share = server_batches(plan.push_ops).await?;
    progress(&format!(
        "push_10k_idem_floor: the server's share, {} ops as raw batch requests of {FLOOR_BATCH}: {server_share:.3} s ({:.1} µs per op, {:.2} x the floor)",
        plan.push_ops,
        server_share / plan.push_ops as f64 * 1e6,
        server_share / idem_floor
    ));
    figures.push(Figure {
        name: "push_10k_idem_floor",
        value: batched,
        baseline: idem_floor,
        against: Baseline::SameWork,
        unit: format!(
            "s, batched push vs raw SQLite inserts of the rows and one remembered-op-id row each, {FLOOR_BATCH} per txn{note}; the server alone (raw batch requests, no client engine): {server_share:.3} s, {:.2} x the floor",
            server_share / idem_floor
        ),
        goal: Goal::AtMost(4.0),
    });

    // serve_10k.
    let read = serve().await?;
    seed(&read.url, 0, SERVE_ROWS).await?;
    let (ours, theirs) = serve_10k(&read, 3).await?;
    figures.push(Figure {
        name: "serve_10k",
        value: ours,
        baseline: theirs,
        against: Baseline::SameWork,
        unit: format!(
            "s reading {SERVE_ROWS} rows as v2 pages of {PAGE} over one keep-alive connection vs raw SQLite read + serde_json encoding of the same rows"
        ),
        goal: Goal::AtMost(1.5),
    });

    // pull_100k, pull_noop_requests.
    let pulled = serve().await?;
    seed(&pulled.url, 0, plan.pull_rows).await?;
    progress(&format!("pull_100k: pulling {} rows", plan.pull_rows));
    let context = client(&pulled.url, Protocol::Auto, &dir.path().join("pull.db"))?;
    let table = context.table::<Value>("Item");
    let start = Instant::now();
    let result = table.pull("all", Query::all()).await?;
    let ours = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        result.upserted == plan.pull_rows as u64,
        "pulled {} of {} rows",
        result.upserted,
        plan.pull_rows
    );
    let theirs = pull_floor(&pulled.url, plan.pull_rows, dir.path()).await?;
    figures.push(Figure {
        name: "pull_100k",
        value: ours,
        baseline: theirs,
        against: Baseline::SameWork,
        unit: format!(
            "s for {} rows, engine pull vs serde_json + raw SQLite upsert of the same pages",
            plan.pull_rows
        ),
        goal: Goal::AtMost(1.5),
    });
    pulled.requests.store(0, Ordering::SeqCst);
    let again = table.pull("all", Query::all()).await?;
    anyhow::ensure!(again.received() == 0, "a no-op pull received rows");
    figures.push(Figure {
        name: "pull_noop_requests",
        value: pulled.requests.load(Ordering::SeqCst) as f64,
        baseline: 1.0,
        against: Baseline::Constant,
        unit: "HTTP requests of an incremental pull with nothing new".to_owned(),
        goal: Goal::AtMost(1.0),
    });

    // pull_1m_rss_mb, in a child process.
    if plan.rss_rows > plan.pull_rows {
        seed(&pulled.url, plan.pull_rows, plan.rss_rows).await?;
    }
    progress(&format!(
        "pull_1m_rss_mb: a child process pulls {} rows",
        plan.rss_rows
    ));
    let megabytes = child_rss(&pulled.url, plan.rss_rows)?;
    figures.push(Figure {
        name: "pull_1m_rss_mb",
        value: megabytes,
        baseline: 1.0,
        against: Baseline::Constant,
        unit: if plan.rss_rows == 1_000_000 {
            "MB peak RSS (VmHWM) of a client pulling 1,000,000 rows".to_owned()
        } else {
            format!(
                "MB peak RSS (VmHWM) of a client pulling {} rows (--quick)",
                plan.rss_rows
            )
        },
        goal: Goal::AtMost(64.0),
    });
    Ok(figures)
}

/// Queues `ops` inserts in a fresh client store, then times one push.
async fn timed_push(url: &str, protocol: Protocol, ops: usize, dir: &Path) -> anyhow::Result<f64> {
    let label = match protocol {
        Protocol::Auto => "batched",
        _ => "one request per op",
    };
    progress(&format!(
        "push_10k: queueing and pushing {ops} inserts, {label}"
    ));
    let context = client(url, protocol, &dir.join(format!("push-{label}.db")))?;
    let table = context.table::<Value>("Item");
    for n in 0..ops {
        table.insert(&item(n)).await?;
    }
    let start = Instant::now();
    let result = context.push().await?;
    let seconds = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        result.status == PushStatus::Complete && result.pushed == ops as u64,
        "push did not complete: {:?} ({} pushed)",
        result.status,
        result.pushed
    );
    Ok(seconds)
}

/// The server's work done directly: the rows in the server's table layout, inserted in
/// batches with one prepared statement per transaction.
fn push_floor(ops: usize, dir: &Path) -> anyhow::Result<f64> {
    progress(&format!("push_10k_floor: {ops} raw inserts"));
    let mut conn = rusqlite::Connection::open(dir.join("floor.db"))?;
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE Item (id TEXT PRIMARY KEY NOT NULL, createdAt INTEGER NOT NULL,
             updatedAt INTEGER NOT NULL, version INTEGER NOT NULL, deleted INTEGER NOT NULL,
             text TEXT, n REAL, done BOOLEAN);
         CREATE INDEX Item_updatedAt_id ON Item (updatedAt, id);",
    )?;
    let ids: Vec<String> = (0..ops).map(|_| new_client_id()).collect();
    let start = Instant::now();
    for (chunk_no, chunk) in ids.chunks(FLOOR_BATCH).enumerate() {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO Item (id, createdAt, updatedAt, version, deleted, text, n, done)
                 VALUES (?1, ?2, ?2, ?3, 0, ?4, ?5, ?6)",
            )?;
            for (k, id) in chunk.iter().enumerate() {
                let n = chunk_no * FLOOR_BATCH + k;
                insert.execute(rusqlite::params![
                    id,
                    n as i64,
                    n as i64,
                    format!("item number {n}"),
                    n as f64,
                    n % 2 == 0
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The floor of an exactly-once push: the rows (as in [`push_floor`]) and, in the same
/// transaction, one row each in a table laid out like the server's remembered ops (user,
/// op id, table, SHA-256 fingerprint, the rendered result, time; keyed and indexed alike).
/// Fingerprints and results are built before the clock starts.
fn push_idem_floor(ops: usize, dir: &Path) -> anyhow::Result<f64> {
    progress(&format!(
        "push_10k_idem_floor: {ops} raw inserts with remembered op ids"
    ));
    let mut conn = rusqlite::Connection::open(dir.join("idem-floor.db"))?;
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE Item (id TEXT PRIMARY KEY NOT NULL, createdAt INTEGER NOT NULL,
             updatedAt INTEGER NOT NULL, version INTEGER NOT NULL, deleted INTEGER NOT NULL,
             text TEXT, n REAL, done BOOLEAN);
         CREATE INDEX Item_updatedAt_id ON Item (updatedAt, id);
         CREATE TABLE ops (user_id TEXT NOT NULL, op_id TEXT NOT NULL, table_name TEXT NOT NULL,
             fingerprint TEXT NOT NULL, result TEXT NOT NULL, at INTEGER NOT NULL,
             PRIMARY KEY (user_id, op_id, table_name));
         CREATE INDEX ops_at ON ops (at);",
    )?;
    let rows: Vec<(String, String, String, String)> = (0..ops)
        .map(|n| {
            let id = new_client_id();
            let result = json!({"id": id, "text": format!("item number {n}"), "n": n,
                "done": n % 2 == 0, "version": "MQ==", "deleted": false,
                "createdAt": "2026-12-05T00:00:00.000Z", "updatedAt": "2026-12-05T00:00:00.000Z"})
            .to_string();
            let fingerprint = format!("{:064x}", n as u128 * 0x9e37_79b9_7f4a_7c15_u128);
            (id, new_client_id(), fingerprint, result)
        })
        .collect();
    let start = Instant::now();
    for (chunk_no, chunk) in rows.chunks(FLOOR_BATCH).enumerate() {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO Item (id, createdAt, updatedAt, version, deleted, text, n, done)
                 VALUES (?1, ?2, ?2, ?3, 0, ?4, ?5, ?6)",
            )?;
            let mut remember = tx.prepare_cached(
                "INSERT INTO ops (user_id, op_id, table_name, fingerprint, result, at)
                 VALUES ('', ?1, 'Item', ?2, ?3, ?4)",
            )?;
            for (k, (id, op_id, fingerprint, result)) in chunk.iter().enumerate() {
                let n = chunk_no * FLOOR_BATCH + k;
                insert.execute(rusqlite::params![
                    id,
                    n as i64,
                    n as i64,
                    format!("item number {n}"),
                    n as f64,
                    n % 2 == 0
                ])?;
                remember.execute(rusqlite::params![op_id, fingerprint, result, n as i64])?;
            }
        }
        tx.commit()?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The server's share of a push: the same number of insert ops sent as raw batch requests
/// of [`FLOOR_BATCH`] (bodies built before the clock) to a fresh server, one after another on
/// one connection.
async fn server_batches(ops: usize) -> anyhow::Result<f64> {
    let served = serve().await?;
    let http = reqwest::Client::new();
    let bodies: Vec<Vec<u8>> = (0..ops)
        .collect::<Vec<_>>()
        .chunks(FLOOR_BATCH)
        .map(|chunk| {
            let operations: Vec<Value> = chunk
                .iter()
                .map(|&n| {
                    json!({"id": new_client_id(), "kind": "insert", "table": "Item",
                           "itemId": new_client_id(), "item": item(n)})
                })
                .collect();
            serde_json::to_vec(&json!({ "operations": operations }))
        })
        .collect::<Result<_, _>>()?;
    // Warm the connection and the table's statements.
    http.get(format!("{}/tables/Item?$top=1", served.url))
        .header("ZUMO-API-VERSION", "3.0.0")
        .send()
        .await?
        .error_for_status()?;
    let start = Instant::now();
    for body in bodies {
        http.post(format!("{}/tidesync/v1/batch", served.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The server's share of a push ([`server_batches`]) on its own, printed in seconds: the
/// run `--child-ingest OPS` profiles (instructions per op = the difference of two sizes).
pub(crate) fn child_ingest(ops: usize) -> anyhow::Result<()> {
    let runtime = crate::runtime()?;
    let seconds = runtime.block_on(server_batches(ops))?;
    println!("{seconds:.3}");
    Ok(())
}

/// A client queues `ops` inserts and, when `push` is set, pushes them (batched) to a fresh
/// server in the same process, then times [`push_idem_floor`]; prints the push's seconds,
/// the floor's and their ratio. The run `--child-push OPS [--queue-only]` profiles (the
/// push's instructions = the run with the push minus the run without it).
pub(crate) fn child_push(ops: usize, push: bool) -> anyhow::Result<()> {
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let served = serve().await?;
        let dir = tempfile::tempdir()?;
        let context = client(&served.url, Protocol::Auto, &dir.path().join("push.db"))?;
        let table = context.table::<Value>("Item");
        for n in 0..ops {
            table.insert(&item(n)).await?;
        }
        if push {
            let start = Instant::now();
            let result = context.push().await?;
            anyhow::ensure!(
                result.status == PushStatus::Complete && result.pushed == ops as u64,
                "push did not complete: {:?} ({} pushed)",
                result.status,
                result.pushed
            );
            let seconds = start.elapsed().as_secs_f64();
            let floor = push_idem_floor(ops, dir.path())?;
            println!("{seconds:.3} {floor:.3} {:.2}", seconds / floor);
        }
        Ok(())
    })
}

/// `serve_10k` alone, best of `rounds`, for profiling: prints the server's seconds, the
/// plain side's and their ratio, then the best of `rounds` times ten one-row requests (the
/// fixed cost of a request on this machine, which the plain side does not pay).
pub(crate) fn child_serve_rows(rounds: usize) -> anyhow::Result<()> {
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let read = serve().await?;
        seed(&read.url, 0, SERVE_ROWS).await?;
        let (ours, theirs) = serve_10k(&read, rounds).await?;
        println!("{ours:.4} {theirs:.4} {:.2}", ours / theirs);
        let http = reqwest::Client::new();
        let mut small = f64::INFINITY;
        for _ in 0..rounds {
            let start = Instant::now();
            for skip in 0..10 {
                http.get(format!(
                    "{}/tables/Item?$orderby=updatedAt,id&$top=1&$skip={skip}",
                    read.url
                ))
                .header("ZUMO-API-VERSION", "2.0.0")
                .send()
                .await?
                .bytes()
                .await?;
            }
            small = small.min(start.elapsed().as_secs_f64());
        }
        println!("10 one-row requests: {small:.4}");
        Ok(())
    })
}

/// Rows read by `serve_10k`.
const SERVE_ROWS: usize = 10_000;

/// `serve_10k`: the server's v2 pages over one kept-alive connection, against reading the
/// same rows from the server's own database file and encoding them with serde_json. The
/// best of `rounds` runs of each side, alternating.
async fn serve_10k(served: &Served, rounds: usize) -> anyhow::Result<(f64, f64)> {
    progress(&format!("serve_10k: reading {SERVE_ROWS} rows, v2 pages"));
    let http = reqwest::Client::new();
    let db = served.dir.path().join("server.db");
    let mut ours = f64::INFINITY;
    let mut theirs = f64::INFINITY;
    for _ in 0..rounds {
        let start = Instant::now();
        let mut bodies = Vec::new();
        for skip in (0..SERVE_ROWS).step_by(PAGE as usize) {
            let body = http
                .get(format!(
                    "{}/tables/Item?$orderby=updatedAt,id&$top={PAGE}&$skip={skip}",
                    served.url
                ))
                .header("ZUMO-API-VERSION", "2.0.0")
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            bodies.push(body);
        }
        ours = ours.min(start.elapsed().as_secs_f64());
        let rows: usize = bodies
            .iter()
            .map(|b| {
                serde_json::from_slice::<Value>(b)
                    .ok()
                    .and_then(|v| v.as_array().map(Vec::len))
                    .unwrap_or(0)
            })
            .sum();
        anyhow::ensure!(rows == SERVE_ROWS, "serve_10k read {rows} rows");
        let db = db.clone();
        theirs = theirs.min(tokio::task::spawn_blocking(move || raw_read(&db)).await??);
    }
    Ok((ours, theirs))
}

/// The plain side of `serve_10k`: pages of the same rows in the same order, each row turned
/// into a JSON object (the system columns as the wire has them) and each page encoded.
fn raw_read(db: &Path) -> anyhow::Result<f64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let start = Instant::now();
    let mut total = 0;
    let mut statement = conn.prepare(
        "SELECT id, createdAt, updatedAt, version, deleted, text, n, done FROM Item
         ORDER BY updatedAt, id LIMIT ?1 OFFSET ?2",
    )?;
    for skip in (0..SERVE_ROWS).step_by(PAGE as usize) {
        let page: Vec<Value> = statement
            .query_map(rusqlite::params![PAGE as i64, skip as i64], |row| {
                Ok(json!({
                    "id": row.get::<_, String>(0)?,
                    "createdAt": row.get::<_, i64>(1)?,
                    "updatedAt": row.get::<_, i64>(2)?,
                    "version": row.get::<_, i64>(3)?,
                    "deleted": row.get::<_, bool>(4)?,
                    "text": row.get::<_, Option<String>>(5)?,
                    "n": row.get::<_, Option<f64>>(6)?,
                    "done": row.get::<_, Option<bool>>(7)?,
                }))
            })?
            .collect::<Result<_, _>>()?;
        total += serde_json::to_vec(&page)?.len();
    }
    anyhow::ensure!(total > 0, "the raw read found nothing");
    Ok(start.elapsed().as_secs_f64())
}

/// Inserts rows `from..to` on the server through the batch route.
async fn seed(url: &str, from: usize, to: usize) -> anyhow::Result<()> {
    progress(&format!("seeding the server with rows {from}..{to}"));
    seed_rows(url, "Item", from..to, item).await
}

/// Inserts `row(k)` for each `k` of `rows` into `table` on the server through the batch
/// route, [`SEED_BATCH`] ops a request (each op's item id is a fresh client id).
pub(crate) async fn seed_rows(
    url: &str,
    table: &str,
    rows: std::ops::Range<usize>,
    row: impl Fn(usize) -> Value,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut n = rows.start;
    while n < rows.end {
        let end = (n + SEED_BATCH).min(rows.end);
        let operations: Vec<Value> = (n..end)
            .map(|k| {
                let id = new_client_id();
                json!({"id": format!("seed-{id}"), "kind": "insert", "table": table,
                       "itemId": id, "item": row(k)})
            })
            .collect();
        let answer = http
            .post(format!("{url}/tidesync/v1/batch"))
            .json(&json!({ "operations": operations }))
            .send()
            .await?
            .error_for_status()?;
        answer.bytes().await?;
        n = end;
    }
    Ok(())
}

/// The plain code for a pull's work: the same pages (downloaded first, not timed) parsed
/// with serde_json and upserted with one prepared statement, one transaction per page.
async fn pull_floor(url: &str, rows: usize, dir: &Path) -> anyhow::Result<f64> {
    progress("pull_100k: downloading the same pages for the baseline");
    let http = reqwest::Client::new();
    let mut pages = Vec::new();
    let mut skip = 0;
    loop {
        let body = http
            .get(format!(
                "{url}/tables/Item?$orderby=updatedAt,id&$top={PAGE}&$skip={skip}&__includedeleted=true"
            ))
            .header("ZUMO-API-VERSION", "3.0.0")
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let count = serde_json::from_slice::<Value>(&body)?["items"]
            .as_array()
            .map_or(0, Vec::len);
        if count == 0 {
            break;
        }
        skip += count;
        pages.push(body);
    }
    anyhow::ensure!(skip == rows, "the baseline saw {skip} rows, not {rows}");
    progress("pull_100k: baseline upsert");
    let mut conn = rusqlite::Connection::open(dir.join("pull-floor.db"))?;
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE Item (id TEXT PRIMARY KEY NOT NULL, text TEXT, n INTEGER, done INTEGER,
             createdAt TEXT, updatedAt TEXT, version TEXT, deleted INTEGER)",
    )?;
    let start = Instant::now();
    for body in &pages {
        let page: Value = serde_json::from_slice(body)?;
        let items = page["items"].as_array().context("no items")?;
        let tx = conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT OR REPLACE INTO Item (id, text, n, done, createdAt, updatedAt, version, deleted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for row in items {
                upsert.execute(rusqlite::params![
                    row["id"].as_str(),
                    row["text"].as_str(),
                    row["n"].as_i64(),
                    row["done"].as_bool(),
                    row["createdAt"].as_str(),
                    row["updatedAt"].as_str(),
                    row["version"].as_str(),
                    row["deleted"].as_bool(),
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Runs this binary as `--child-pull URL ROWS` and reads its peak RSS in MB.
fn child_rss(url: &str, rows: usize) -> anyhow::Result<f64> {
    let exe = std::env::current_exe()?;
    let output = std::process::Command::new(exe)
        .args(["--child-pull", url, &rows.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(output.status.success(), "the pulling child failed");
    let text = String::from_utf8_lossy(&output.stdout);
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("vmhwm_kb="))
        .context("the child printed no vmhwm_kb")?
        .trim()
        .parse()?;
    Ok(kb / 1024.0)
}

/// The child: pull every row of `url` into an empty SQLite store asking for
/// pages of `page` rows, print `vmhwm_kb=N` and `seconds=S` (the pull alone; run
/// by hand with other page sizes to see what fewer requests would save).
pub(crate) fn child_pull(url: &str, rows: u64, page: u64) -> anyhow::Result<()> {
    let runtime = crate::runtime()?;
    let dir = tempfile::tempdir()?;
    let (result, seconds) = runtime.block_on(async {
        let context = client_with_pages(url, Protocol::Auto, &dir.path().join("child.db"), page)?;
        let start = Instant::now();
        let pulled = context
            .table::<Value>("Item")
            .pull("all", Query::all())
            .await?;
        anyhow::Ok((pulled, start.elapsed().as_secs_f64()))
    })?;
    anyhow::ensure!(
        result.upserted == rows,
        "pulled {} of {rows}",
        result.upserted
    );
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("no VmHWM in /proc/self/status")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .to_owned();
    println!("vmhwm_kb={kb}");
    println!("seconds={seconds:.3}");
    Ok(())
}
