//! `local_write_sqlite` and `local_write_redb`: p50 of one `SyncTable::insert` (the row and
//! its queued op in one transaction) against p50 of a raw single-row insert transaction with
//! the same settings. Both sides alternate in rounds so that drift hits them alike, and both
//! time the same work: the app's input is built before the clock starts, generating the id,
//! encoding the row and committing are inside it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use redb::{ReadableDatabase as _, ReadableTableMetadata as _, TableDefinition};
use serde_json::{Value, json};
use tidesync_core::{ColumnType, LocalStore, SyncContext, TableDef};
use tidesync_protocol::new_client_id;
use tidesync_store_redb::RedbStore;
use tidesync_store_sqlite::SqliteStore;
use tidesync_transport_http::HttpTransport;

use crate::output::{Baseline, Figure, Goal};
use crate::{Plan, progress};

const ROUNDS: usize = 10;
const WARM_UP: usize = 300;

/// The app's table on both sides: three columns besides the id.
pub(crate) fn item_table() -> TableDef {
    TableDef::new("Item")
        .column("text", ColumnType::String)
        .column("n", ColumnType::Integer)
        .column("done", ColumnType::Bool)
}

fn item(n: usize) -> Value {
    json!({"text": format!("item number {n}"), "n": n, "done": n % 2 == 0})
}

/// A context over `store` whose transport is never called (local writes only).
fn context(store: Arc<dyn LocalStore>) -> anyhow::Result<SyncContext> {
    store.define_table(&item_table())?;
    let transport = HttpTransport::builder("http://127.0.0.1:9").build()?;
    Ok(SyncContext::builder()
        .store_arc(store)
        .transport(transport)
        .build()?)
}

/// Times `count` engine inserts, one at a time, on a current-thread runtime.
fn engine_writes(
    runtime: &tokio::runtime::Runtime,
    context: &SyncContext,
    first: usize,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let table = context.table::<Value>("Item");
    runtime.block_on(async {
        let mut times = Vec::with_capacity(count);
        for n in first..first + count {
            let body = item(n);
            let start = Instant::now();
            table.insert(&body).await?;
            times.push(start.elapsed());
        }
        Ok(times)
    })
}

fn p50_micros(times: &mut [Duration]) -> f64 {
    times.sort_unstable();
    times
        .get(times.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// Runs `engine` and `raw` alternately, `per_side` timed calls each after a warm-up.
fn alternate(
    per_side: usize,
    mut engine: impl FnMut(usize, usize) -> anyhow::Result<Vec<Duration>>,
    mut raw: impl FnMut(usize, usize) -> anyhow::Result<Vec<Duration>>,
) -> anyhow::Result<(f64, f64)> {
    engine(0, WARM_UP)?;
    raw(0, WARM_UP)?;
    let round = per_side.div_ceil(ROUNDS);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for r in 0..ROUNDS {
        let first = WARM_UP + r * round;
        ours.extend(engine(first, round)?);
        theirs.extend(raw(first, round)?);
    }
    Ok((p50_micros(&mut ours), p50_micros(&mut theirs)))
}

pub(crate) fn local_write_sqlite(plan: Plan) -> anyhow::Result<Figure> {
    progress(&format!(
        "local_write_sqlite: {} inserts each side",
        plan.local_writes
    ));
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = SqliteStore::open(dir.path().join("engine.db"))?;
    let context = context(Arc::new(store))?;

    // The plain code: the same pragmas as the store (WAL, synchronous=NORMAL), the row in a
    // table of the same columns, one cached prepared statement, one transaction per write.
    let mut conn = rusqlite::Connection::open(dir.path().join("raw.db"))?;
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE Item (id TEXT PRIMARY KEY NOT NULL, text TEXT, n INTEGER, done INTEGER)",
    )?;
    let raw = |first: usize, count: usize| -> anyhow::Result<Vec<Duration>> {
        let mut times = Vec::with_capacity(count);
        for n in first..first + count {
            let text = format!("item number {n}");
            let start = Instant::now();
            let id = new_client_id();
            let tx = conn.transaction()?;
            tx.prepare_cached("INSERT INTO Item (id, text, n, done) VALUES (?1, ?2, ?3, ?4)")?
                .execute(rusqlite::params![id, text, n as i64, n % 2 == 0])?;
            tx.commit()?;
            times.push(start.elapsed());
        }
        Ok(times)
    };
    let (ours, theirs) = alternate(
        plan.local_writes,
        |first, count| engine_writes(&runtime, &context, first, count),
        raw,
    )?;
    Ok(Figure {
        name: "local_write_sqlite",
        value: ours,
        baseline: theirs,
        against: Baseline::SameWork,
        unit: "µs p50 per insert (row + queued op) vs raw rusqlite insert txn".to_owned(),
        goal: Goal::AtMost(1.3),
    })
}

const RAW_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("Item");

pub(crate) fn local_write_redb(plan: Plan) -> anyhow::Result<Figure> {
    // redb commits with an fsync by default on both sides (~0.2 ms), so fewer writes are
    // affordable; but fsync times swing with whatever else uses the disk, and 300 a side
    // (--quick) gave ratios from 1.08 to 1.95 in one hour: at least 1,000 a side.
    let writes = (plan.local_writes / 10).max(1_000);
    progress(&format!("local_write_redb: {writes} inserts each side"));
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = RedbStore::open(dir.path().join("engine.redb"))?;
    let context = context(Arc::new(store))?;

    // The plain code: the row as JSON bytes under its id, one write transaction per insert,
    // redb's default (immediate) durability, as the store's default. As on the engine's
    // side, the app's value is built before the clock starts; turning it into bytes is part
    // of the write on both sides.
    let db = redb::Database::create(dir.path().join("raw.redb"))?;
    let raw = |first: usize, count: usize| -> anyhow::Result<Vec<Duration>> {
        let mut times = Vec::with_capacity(count);
        for n in first..first + count {
            let body = item(n);
            let start = Instant::now();
            let id = new_client_id();
            let bytes = serde_json::to_vec(&body)?;
            let tx = db.begin_write()?;
            {
                let mut table = tx.open_table(RAW_TABLE)?;
                table.insert(id.as_str(), bytes.as_slice())?;
            }
            tx.commit()?;
            times.push(start.elapsed());
        }
        Ok(times)
    };
    let (ours, theirs) = alternate(
        writes,
        |first, count| engine_writes(&runtime, &context, first, count),
        raw,
    )?;
    let rows = db
        .begin_read()?
        .open_table(RAW_TABLE)
        .context("raw redb table")?
        .len()?;
    anyhow::ensure!(rows as usize >= writes, "raw redb lost rows");
    Ok(Figure {
        name: "local_write_redb",
        value: ours,
        baseline: theirs,
        against: Baseline::SameWork,
        unit: "µs p50 per insert (row + queued op) vs raw redb insert txn".to_owned(),
        goal: Goal::AtMost(1.3),
    })
}
