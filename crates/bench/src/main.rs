//! `tidesync-bench`: the tidesync benchmark suite, run by `cargo xtask bench`.
//!
//! Every figure is a ratio `value / baseline`, both measured in the same run on loopback, and
//! says what its baseline is (`baseline_kind`):
//!
//! - **plain code, same work** — what the best plain code a competent user would write takes
//!   for the same work with the same settings (same SQLite pragmas, one prepared statement,
//!   one transaction per batch): `local_write_sqlite`, `local_write_redb`, `push_10k_floor`
//!   (raw SQLite inserts), `push_10k_idem_floor` (raw inserts plus one remembered-op-id row
//!   each), `bootstrap_1m` (the same rows inserted from memory, `bootstrap.rs`), `pull_100k`, `serve_10k` (raw SQLite read + serde_json encoding);
//! - **our own other mode** — not plain code: `push_10k` divides the batched push by our
//!   own push with one request per op, so it is a speed-up, not a cost over plain code;
//! - **a plain unit of work** — `visibility_p50` divides by one plain loopback round trip,
//!   which is the floor of any notification, not code doing the same work;
//! - **constant** — `pull_noop_requests` (HTTP requests of a pull with nothing new),
//!   `pull_1m_rss_mb` (peak MB), `bootstrap_resume_waste` (rows downloaded twice ÷ rows
//!   applied before a kill), `first_screen_ms` and `apply_1_in_1m_ms`
//!   (`firstscreen.rs`: milliseconds to a first sync's first screen, and of a one-row
//!   incremental pull into a store of a million rows) and the many-clients figures (`fanout.rs`, `storm.rs`:
//!   `fanout_10k_p99_ms`, `fanout_10k_rss_mb`, `reconnect_500_s`, `fanout_pg_2x5k_p99_ms`,
//!   against a server child process and raw sockets) have the baseline 1: the ratio is the
//!   value itself.
//! - `ffi_pull_10k` (`ffi.rs`) divides a pull through the Python binding by the same pull
//!   from Rust (plain code, same work); it needs `cargo xtask bench` (the bindings).
//!
//! Each figure prints as one JSON line
//! `{"name","value","baseline","baseline_kind","ratio","unit","goal","met"}`, then a table
//! follows (unless `--json`). A missed goal is reported (`"met": false`), never an error
//! exit.
//!
//! Not a library, and not a microbenchmark harness: each figure is one bounded scenario.
//! `--quick` runs smaller counts (said in each figure's unit) to finish in well under three
//! minutes on two cores.

mod bootstrap;
mod fanout;
mod ffi;
mod firstscreen;
mod live;
mod local;
mod output;
mod remote;
mod storm;

use std::process::ExitCode;

use output::Figure;

/// The sizes of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Timed single writes per local-write figure (per side).
    pub(crate) local_writes: usize,
    /// Queued inserts pushed.
    pub(crate) push_ops: usize,
    /// Rows pulled for `pull_100k`.
    pub(crate) pull_rows: usize,
    /// Rows the memory figure pulls.
    pub(crate) rss_rows: usize,
    /// Rows of the bootstrap figures.
    pub(crate) bootstrap_rows: usize,
    pub(crate) quick: bool,
}

const USAGE: &str = "usage: tidesync-bench [--quick] [--json] [--only local|remote|bootstrap|firstscreen|live|ffi|fanout|storm] | --child-pull URL ROWS [PAGE] | --child-bootstrap URL FILE | --child-serve CONFIG | --child-serve-rows ROUNDS | --child-ingest OPS | --child-push OPS [--queue-only]";

/// The runtime every part of the bench runs on: two workers, as the machines have two cores.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Runs a child mode that takes one count, or prints the usage when `count` is not one.
fn with_count(count: &str, run: fn(usize) -> anyhow::Result<()>) -> ExitCode {
    match count.parse::<usize>() {
        Ok(count) => finish(run(count)),
        Err(_) => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let ["--child-serve", config] = args.as_slice() {
        return finish(fanout::child_serve(std::path::Path::new(config)));
    }
    if let ["--child-serve-rows", rounds] = args.as_slice() {
        // `serve_10k` alone, best of ROUNDS, for profiling.
        return with_count(rounds, remote::child_serve_rows);
    }
    if let ["--child-ingest", ops] = args.as_slice() {
        // The server's share of a push alone, for profiling (`valgrind --tool=callgrind`).
        return with_count(ops, remote::child_ingest);
    }
    if let ["--child-push", ops, rest @ ..] = args.as_slice() {
        // One client's batched push to an in-process server, for profiling.
        return match (ops.parse::<usize>(), rest) {
            (Ok(ops), []) => finish(remote::child_push(ops, true)),
            (Ok(ops), ["--queue-only"]) => finish(remote::child_push(ops, false)),
            _ => {
                eprintln!("{USAGE}");
                ExitCode::from(2)
            }
        };
    }
    if let ["--child-bootstrap", url, file] = args.as_slice() {
        return finish(bootstrap::child_bootstrap(url, std::path::Path::new(file)));
    }
    if let ["--child-pull", url, rows, page @ ..] = args.as_slice() {
        let page = match page {
            [] => Some(remote::PAGE),
            [page] => page.parse::<u64>().ok(),
            _ => None,
        };
        return match (rows.parse::<u64>(), page) {
            (Ok(rows), Some(page)) => finish(remote::child_pull(url, rows, page)),
            _ => {
                eprintln!("{USAGE}");
                ExitCode::from(2)
            }
        };
    }
    let mut quick = false;
    let mut json = false;
    let mut only = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match *arg {
            "--quick" => quick = true,
            "--json" => json = true,
            "--only" => only = rest.next().copied(),
            _ => {
                eprintln!("unknown argument {arg:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let plan = if quick {
        Plan {
            local_writes: 3_000,
            push_ops: 2_000,
            pull_rows: 100_000,
            rss_rows: 100_000,
            bootstrap_rows: 200_000,
            quick,
        }
    } else {
        Plan {
            local_writes: 20_000,
            push_ops: 10_000,
            pull_rows: 100_000,
            rss_rows: 1_000_000,
            bootstrap_rows: 1_000_000,
            quick,
        }
    };
    finish(run(plan, json, only))
}

/// Runs the figures (`only`: just the local or the remote ones, for profiling).
fn run(plan: Plan, json: bool, only: Option<&str>) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut figures: Vec<Figure> = Vec::new();
    let mut show = |figure: Figure| {
        println!("{}", figure.json_line());
        figures.push(figure);
    };
    let wants = |part: &str| only.is_none() || only == Some(part);
    if wants("local") {
        show(local::local_write_sqlite(plan)?);
        show(local::local_write_redb(plan)?);
    }
    if wants("remote") {
        for figure in remote::run(plan)? {
            show(figure);
        }
    }
    if wants("bootstrap") {
        for figure in bootstrap::run(plan)? {
            show(figure);
        }
    }
    if wants("firstscreen") {
        for figure in firstscreen::run(plan)? {
            show(figure);
        }
    }
    if wants("live") {
        show(live::visibility_p50(plan)?);
    }
    if wants("ffi") {
        if let Some(figure) = ffi::ffi_pull_10k(plan)? {
            show(figure);
        }
    }
    if wants("fanout") {
        for figure in fanout::sqlite(plan)? {
            show(figure);
        }
        show(storm::reconnect(plan)?);
        if let Some(figure) = fanout::postgres(plan)? {
            show(figure);
        }
    }
    if only == Some("storm") {
        show(storm::reconnect(plan)?);
    }
    if !json {
        println!();
        print!("{}", output::table(&figures));
        let met = figures.iter().filter(|f| f.met()).count();
        println!(
            "{met} of {} goals met; {:.0} s{}",
            figures.len(),
            started.elapsed().as_secs_f64(),
            if plan.quick { " (--quick)" } else { "" }
        );
    }
    Ok(())
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A progress line on stderr.
pub(crate) fn progress(message: &str) {
    eprintln!("bench: {message}");
}
