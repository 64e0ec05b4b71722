//! `cargo xtask ci`: every check CI runs, in order, stopping at the first failure.
//!
//! Each step prints a `==> step` header and its elapsed time on stderr; the tools' own
//! output is passed through untouched. Under `CI=true` cargo runs with `--locked` (when
//! `Cargo.lock` exists), PostgreSQL must be reachable before the tests start, and so must
//! Node.js and npm (the `node-peers` step installs the official Azure Mobile Apps peers
//! the compatibility tests run against), and so must the Kotlin and Swift toolchains of the
//! bindings' tutorial tests (see [`bindings`]).

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::postgres;

mod bindings;

/// Command-line switches of `cargo xtask ci`.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Skip fmt, clippy and rustdoc (for local iteration).
    pub fast: bool,
}

/// Runs the pipeline, prints a timing summary, and returns the first failure.
///
/// # Errors
///
/// Returns an error naming the step that failed, or why the pipeline could not start.
pub fn run(options: Options) -> Result<()> {
    let mut ci = Ci::new()?;
    let started = Instant::now();
    let result = ci.steps(options);
    ci.print_summary(started.elapsed());
    result
}

/// Only the bindings steps (`cargo xtask bindings`): build, generate, the tutorial tests.
///
/// # Errors
///
/// As [`run`].
pub fn run_bindings() -> Result<()> {
    let mut ci = Ci::new()?;
    let started = Instant::now();
    let result = ci.bindings();
    ci.print_summary(started.elapsed());
    result
}

/// The environment every step shares, and a log of what each step did.
#[derive(Debug)]
struct Ci {
    root: PathBuf,
    cargo: OsString,
    /// `CI=true` (or `CI=1`) is set: missing PostgreSQL is an error, not a warning.
    strict: bool,
    /// Pass `--locked` to cargo commands that resolve dependencies.
    locked: bool,
    /// The value exported to every child as `TIDESYNC_TEST_PG`.
    postgres_url: String,
    log: Vec<(String, Duration, &'static str)>,
}

impl Ci {
    fn new() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask's manifest directory has no parent (the workspace root)")?
            .to_path_buf();
        let strict =
            env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true") || value == "1");
        let locked = strict && root.join("Cargo.lock").is_file();
        let postgres_url = env::var(postgres::URL_VAR)
            .ok()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| postgres::DEFAULT_URL.to_owned());
        Ok(Self {
            root,
            cargo: env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
            strict,
            locked,
            postgres_url,
            log: Vec::new(),
        })
    }

    fn steps(&mut self, options: Options) -> Result<()> {
        if options.fast {
            eprintln!("==> --fast: skipping fmt, clippy and doc");
        } else {
            let fmt = self.cargo(&["fmt"], false, &["--all", "--check"]);
            self.command("fmt", fmt)?;
            let clippy = self.cargo(
                &["clippy"],
                true,
                &[
                    "--workspace",
                    "--all-targets",
                    "--all-features",
                    "--",
                    "-D",
                    "warnings",
                ],
            );
            self.command("clippy", clippy)?;
        }

        self.step("postgres", |ci| ci.check_postgres())?;

        // The official Node peers (crates/peers): the one `npm ci` of a clean checkout runs
        // here, timed on its own, instead of inside the first test that needs it; the tests
        // reuse it from target/node-peers. Without Node.js it is a skip (an error under CI).
        let peers = self.cargo(&["run"], true, &["--quiet", "-p", "tidesync-peers"]);
        self.command("node-peers", peers)?;

        let nextest = self.has_nextest();
        if nextest {
            let tests = self.cargo(
                &["nextest", "run"],
                true,
                &[
                    "--workspace",
                    "--all-features",
                    "--no-fail-fast",
                    "--no-tests=warn",
                ],
            );
            self.command("test", tests)?;
            let doc_tests =
                self.cargo(&["test"], true, &["--workspace", "--all-features", "--doc"]);
            self.command("doctest", doc_tests)?;
        } else {
            eprintln!("==> cargo-nextest is not installed; falling back to cargo test");
            let tests = self.cargo(
                &["test"],
                true,
                &["--workspace", "--all-features", "--no-fail-fast"],
            );
            self.command("test", tests)?;
            self.skip("doctest", "cargo test already ran the doc tests");
        }

        if options.fast {
            self.skip("doc", "--fast");
        } else {
            let mut doc = self.cargo(
                &["doc"],
                true,
                &["--workspace", "--all-features", "--no-deps"],
            );
            doc.env("RUSTDOCFLAGS", "-Dwarnings");
            self.command("doc", doc)?;
        }

        // The benchmark harness is a binary (`tidesync-bench`, run by `cargo xtask bench`),
        // not a `[[bench]]` target, so `cargo bench --no-run` would build nothing. Build the
        // binary with the features and profile the tests used, so it reuses their build.
        let bench = self.cargo(
            &["build"],
            true,
            &["--workspace", "--all-features", "--bin", "tidesync-bench"],
        );
        self.command("bench", bench)?;

        // The Swift, Kotlin and Python bindings and their tutorial tests (see `bindings`).
        self.bindings()?;
        Ok(())
    }

    /// `cargo <subcommand> [--locked] <args>`, run from the workspace root with
    /// `TIDESYNC_TEST_PG` exported.
    fn cargo(&self, subcommand: &[&str], resolves: bool, args: &[&str]) -> Command {
        let mut command = Command::new(&self.cargo);
        command.current_dir(&self.root).args(subcommand);
        if resolves && self.locked {
            command.arg("--locked");
        }
        command
            .args(args)
            .env(postgres::URL_VAR, &self.postgres_url);
        command
    }

    /// Runs `body` as the step `name`: header, timing, log entry, and an error naming the step.
    /// `body` returns the outcome to report (`"ok"`, or `"warning"` for a tolerated problem).
    fn step(&mut self, name: &str, body: impl FnOnce(&Self) -> Result<&'static str>) -> Result<()> {
        let started = Instant::now();
        let result = body(self);
        let elapsed = started.elapsed();
        match result {
            Ok(outcome) => {
                eprintln!("==> {name}: {outcome} in {}", seconds(elapsed));
                self.log.push((name.to_owned(), elapsed, outcome));
                Ok(())
            }
            Err(error) => {
                eprintln!("==> {name}: FAILED after {}", seconds(elapsed));
                self.log.push((name.to_owned(), elapsed, "FAILED"));
                Err(error.context(format!("ci step `{name}` failed")))
            }
        }
    }

    fn command(&mut self, name: &str, mut command: Command) -> Result<()> {
        let shown = show(&command);
        eprintln!("==> {name}: {shown}");
        self.step(name, |_| {
            let status = command
                .status()
                .with_context(|| format!("could not start `{shown}`"))?;
            if !status.success() {
                bail!("`{shown}` exited with {status}");
            }
            Ok("ok")
        })
    }

    fn skip(&mut self, name: &str, why: &str) {
        eprintln!("==> {name}: skipped ({why})");
        self.log.push((name.to_owned(), Duration::ZERO, "skipped"));
    }

    fn print_summary(&self, total: Duration) {
        eprintln!("==> summary");
        for (name, elapsed, outcome) in &self.log {
            eprintln!("    {name:<10} {outcome:<8} {:>8}", seconds(*elapsed));
        }
        eprintln!("    {:<10} {:<8} {:>8}", "total", "", seconds(total));
    }

    /// Probes PostgreSQL before the tests; under `CI=true` also tries to start the local
    /// cluster and fails the run if it stays unreachable.
    fn check_postgres(&self) -> Result<&'static str> {
        let (host, port) = postgres::host_port(&self.postgres_url)
            .with_context(|| format!("cannot read host and port from {}", postgres::URL_VAR))?;
        let address = format!("{host}:{port}");
        eprintln!("==> postgres: probing {address} ({})", postgres::URL_VAR);
        if !self.strict {
            if !postgres::reachable(&host, port) {
                eprintln!(
                    "warning: no PostgreSQL answers at {address} ({}); tests that need it will \
                     fail or skip (with CI=true this fails the run)",
                    postgres::URL_VAR
                );
                return Ok("warning");
            }
            return Ok("ok");
        }
        if postgres::wait_reachable(&host, port, postgres::WAIT) {
            return Ok("ok");
        }
        eprintln!(
            "    not reachable; starting it with: sh -c '{}'",
            postgres::START_COMMAND
        );
        match Command::new("sh")
            .arg("-c")
            .arg(postgres::START_COMMAND)
            .status()
        {
            Ok(status) if !status.success() => {
                eprintln!("    the start command exited with {status}")
            }
            Ok(_) => {}
            Err(error) => eprintln!("    could not run sh: {error}"),
        }
        if postgres::wait_reachable(&host, port, postgres::WAIT) {
            return Ok("ok");
        }
        bail!(
            "PostgreSQL is not reachable at {address} (from {}, default {}) and starting the \
             local cluster did not help; CI=true requires it",
            postgres::URL_VAR,
            postgres::DEFAULT_URL
        )
    }

    fn has_nextest(&self) -> bool {
        Command::new(&self.cargo)
            .args(["nextest", "--version"])
            .current_dir(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
}

/// The command as a user would type it, with `cargo` for the cargo binary and without the
/// `TIDESYNC_TEST_PG` every step gets.
fn show(command: &Command) -> String {
    let mut words: Vec<String> = command
        .get_envs()
        .filter(|(key, _)| *key != postgres::URL_VAR)
        .map(|(key, value)| {
            let value = value
                .map(|value| value.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("{}={value}", key.to_string_lossy())
        })
        .collect();
    words.push("cargo".to_owned());
    words.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    words.join(" ")
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}
