//! Project chores for tidesync, run as `cargo xtask <command>` from anywhere in the workspace.
//!
//! - `cargo xtask ci [--fast]` is the one door to "is this change good": fmt, clippy, tests
//!   (nextest when installed), doc tests, rustdoc and benchmark builds, stopping at the first
//!   failure. See [`ci`] for the steps.
//! - `cargo xtask bindings` runs only the bindings steps of `ci` (the Python, Kotlin and Swift
//!   tutorial tests; see `ci::bindings`).
//! - `cargo xtask soak --kills N` runs the crash suite's long version (see [`soak`]).
//! - `cargo xtask bench [--quick] [--json] [--only PART]` builds and runs the benchmark suite
//!   (`crates/bench`, binary `tidesync-bench`) in release mode: one JSON line per figure,
//!   then a table. A missed goal is reported in the output, not as a failing exit.
//!
//! The repository rules (every crate root opens with `//!`, no `#[should_panic]`, sync-core
//! pulls in no I/O crates, ...) are not a command: they live in `xtask/tests/tidy.rs` as an
//! ordinary test, so plain `cargo test` and `cargo xtask ci` both enforce them.
//!
//! This crate is not a library and not published; arguments are parsed by hand to keep its
//! dependencies to `anyhow` and `serde_json`.

mod ci;
mod postgres;
mod soak;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci [--fast]   fmt check, clippy -D warnings, tests (nextest if installed), doc tests,
                rustdoc -D warnings, a build of the bench binary; stops at the first
                failing step.
                --fast skips fmt, clippy and rustdoc for local iteration.
                Under CI=true: passes --locked and requires PostgreSQL at
                TIDESYNC_TEST_PG (default postgres://postgres@127.0.0.1:5432/test)
                and Node.js with npm (the official peers, installed once into
                target/node-peers).
  bindings      the bindings steps of ci alone: build tidesync-ffi, generate the
                Python, Kotlin and Swift sources into target/bindings, run each
                language's tutorial test against tidesync-server (Kotlin and Swift
                toolchains are installed into ~/.cache/tidesync; missing ones are a
                skip, an error under CI=true).
  bench [--quick] [--json] [--only local|remote|bootstrap|firstscreen|live|ffi|fanout]
                release build, then every figure as a JSON line and a table (loopback
                only); --quick runs smaller counts (under 3 minutes on 2 cores), --json
                prints only the JSON lines on stdout. Progress goes to stderr.
  soak [--kills N] [--strict] [--store sqlite|redb|redb-eventual]
                the crash suite's long run: a client killed with SIGKILL N times
                (default 1000) against an in-process server; reports the kill
                points survived and anything lost or doubled.
  help          print this message";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["ci"] => finish(ci::run(ci::Options { fast: false })),
        ["ci", "--fast"] => finish(ci::run(ci::Options { fast: true })),
        ["bindings"] => finish(ci::run_bindings()),
        ["bench", rest @ ..] => bench(rest),
        ["soak", rest @ ..] => finish(soak::Options::parse(rest).and_then(|o| soak::run(&o))),
        _ => usage(&args),
    }
}

/// Runs `cargo run --release -p tidesync-bench -- ARGS`, passing its exit status on.
fn bench(args: &[&str]) -> ExitCode {
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match *arg {
            "--quick" | "--json" => {}
            // One part of the suite: local, remote, live, ffi or fanout.
            "--only" if rest.next().is_some() => {}
            bad => {
                eprintln!("error: unknown bench argument {bad:?}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(bad) = args.iter().find(|a| a.is_empty()) {
        eprintln!("error: unknown bench argument {bad:?}\n\n{USAGE}");
        return ExitCode::from(2);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut run = std::process::Command::new(&cargo);
    run.args(["run", "--quiet", "--release", "-p", "tidesync-bench", "--"])
        .args(args);
    match python_bindings_for_bench(&cargo) {
        Ok(dir) => {
            run.env("TIDESYNC_BENCH_PYTHON", dir);
        }
        Err(error) => eprintln!("warning: ffi_pull_10k will be skipped: {error:#}"),
    }
    let status = run.status();
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("error: tidesync-bench exited with {status}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: cannot run cargo: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the bench (release) and generates the Python bindings of the release
/// `libtidesync_ffi.so` it carries (with the debug generator `cargo xtask ci` builds), for
/// `ffi_pull_10k`; returns their directory.
fn python_bindings_for_bench(cargo: &str) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::{Context, bail};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?;
    for args in [
        &["build", "--quiet", "--release", "-p", "tidesync-bench"][..],
        &[
            "build",
            "--quiet",
            "--workspace",
            "--all-features",
            "--bin",
            "uniffi-bindgen",
        ][..],
    ] {
        let status = std::process::Command::new(cargo)
            .current_dir(root)
            .args(args)
            .status()?;
        if !status.success() {
            bail!("`cargo {}` exited with {status}", args.join(" "));
        }
    }
    let library = root.join("target/release/deps/libtidesync_ffi.so");
    let out = root.join("target/bindings/python-release");
    let status = std::process::Command::new(root.join("target/debug/uniffi-bindgen"))
        .args(["generate", "--no-format", "--library"])
        .arg(&library)
        .args(["--language", "python", "--out-dir"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        bail!("uniffi-bindgen exited with {status}");
    }
    std::fs::copy(&library, out.join("libtidesync_ffi.so"))
        .with_context(|| format!("cannot copy {}", library.display()))?;
    Ok(out)
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

fn usage(args: &[&str]) -> ExitCode {
    match args {
        [] | ["help" | "-h" | "--help"] => {}
        _ => eprintln!("error: unknown arguments: {}\n", args.join(" ")),
    }
    eprintln!("{USAGE}");
    ExitCode::from(2)
}
