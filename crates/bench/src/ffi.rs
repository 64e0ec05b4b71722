//! `ffi_pull_10k`: a pull of 10,000 rows through the Python binding (`tidesync-ffi`, the
//! generated `tidesync_ffi.py`), as a multiple of the same pull from Rust, same run.
//!
//! One server (loopback, SQLite) holds 10,000 rows. Each side opens a fresh client over its
//! own SQLite file, pulls the table (default page size) and reads every row back as the
//! host's own values: Rust as `serde_json::Value`s from `SyncTable::query`, Python as dicts
//! from `json.loads` of the binding's one-call JSON array. Python times its side itself
//! (interpreter start and import excluded); the figure is median Python / median Rust over
//! the repetitions, which alternate between the sides.
//!
//! The Python side needs the bindings generated from the release library this binary was
//! built with: `cargo xtask bench` generates them and names their directory in
//! `TIDESYNC_BENCH_PYTHON`; without it the figure is skipped with a note on stderr.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tidesync_core::{LocalStore, Query, SyncContext};
use tidesync_server::Server;
use tidesync_store_sqlite::SqliteStore;
use tidesync_transport_http::HttpTransport;

use crate::local::item_table;
use crate::output::{Baseline, Figure, Goal};
use crate::{Plan, progress};

/// The rows pulled.
const ROWS: usize = 10_000;
/// Where `cargo xtask bench` put the generated Python bindings and the release library.
pub(crate) const PYTHON_VAR: &str = "TIDESYNC_BENCH_PYTHON";

/// The figure, or None when the Python bindings were not generated for this run.
pub(crate) fn ffi_pull_10k(plan: Plan) -> anyhow::Result<Option<Figure>> {
    let Some(bindings) = std::env::var_os(PYTHON_VAR).map(PathBuf::from) else {
        progress(&format!(
            "ffi_pull_10k: skipped ({PYTHON_VAR} is not set; `cargo xtask bench` sets it)"
        ));
        return Ok(None);
    };
    let runtime = crate::runtime()?;
    runtime
        .block_on(measure(&bindings, if plan.quick { 3 } else { 5 }))
        .map(Some)
}

fn client(url: &str, file: &Path) -> anyhow::Result<SyncContext> {
    let store = SqliteStore::open(file)?;
    store.define_table(&item_table())?;
    Ok(SyncContext::builder()
        .store(store)
        .transport(HttpTransport::builder(url).build()?)
        .build()?)
}

async fn measure(bindings: &Path, repetitions: usize) -> anyhow::Result<Figure> {
    let dir = tempfile::tempdir()?;
    let server = Server::builder()
        .sqlite(dir.path().join("server.db"))
        .table("Item")
        .bind("127.0.0.1:0")
        .start()
        .await?;
    let url = server.url();
    progress(&format!("ffi_pull_10k: seeding {ROWS} rows"));
    let seed = client(&url, &dir.path().join("seed.db"))?;
    let items = seed.table::<Value>("Item");
    for n in 0..ROWS {
        items
            .insert(&json!({"text": format!("item number {n}"), "n": n, "done": n % 2 == 0}))
            .await?;
    }
    if !seed.push().await?.is_success() {
        bail!("seeding the server failed");
    }

    let mut rust = Vec::new();
    let mut python = Vec::new();
    for round in 0..repetitions {
        progress(&format!("ffi_pull_10k: round {}/{repetitions}", round + 1));
        let file = dir.path().join(format!("rust-{round}.db"));
        let context = client(&url, &file)?;
        let table = context.table::<Value>("Item");
        let started = Instant::now();
        table.pull("all", Query::all()).await?;
        let rows = table.query(&Query::all()).await?;
        rust.push(started.elapsed().as_secs_f64());
        if rows.len() != ROWS {
            bail!("the Rust pull read {} rows, not {ROWS}", rows.len());
        }
        python.push(python_pull(
            bindings,
            &url,
            &dir.path().join(format!("py-{round}.db")),
        )?);
    }
    server.shutdown().await?;
    let (value, baseline) = (median(python), median(rust));
    Ok(Figure {
        name: "ffi_pull_10k",
        value,
        baseline,
        against: Baseline::SameWork,
        unit: format!("s to pull {ROWS} rows and read them back, Python binding vs Rust"),
        goal: Goal::AtMost(1.3),
    })
}

/// One timed pull from Python (`crates/ffi/tutorial/python/bench_pull.py`), in seconds.
fn python_pull(bindings: &Path, url: &str, file: &Path) -> anyhow::Result<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ffi/tutorial/python/bench_pull.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(url)
        .arg(file)
        .arg(ROWS.to_string())
        .env("PYTHONPATH", bindings)
        .output()
        .context("cannot run python3")?;
    if !output.status.success() {
        bail!(
            "the Python pull failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("the Python pull printed {text:?}, not seconds"))
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}
