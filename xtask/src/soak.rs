//! `cargo xtask soak --kills N [--strict] [--store sqlite|redb|redb-eventual]`: the long run
//! of the crash suite (`crates/transport-http/tests/crash/`, ignored test `crash_soak`). A
//! client on a SQLite store (or redb, immediate or eventual durability) is killed with
//! SIGKILL N times against an in-process tidesync-server, then synced once more; the run ends
//! with the count of kill points survived and what was lost or doubled. `--strict` also
//! edits rows whose op was sent but not acknowledged.

use std::env;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// What `cargo xtask soak` was asked for.
#[derive(Debug)]
pub struct Options {
    /// Kill points.
    pub kills: u64,
    /// Edit rows behind unacknowledged ops too.
    pub strict: bool,
    /// The client's store (`sqlite`, `redb`, `redb-eventual`).
    pub store: String,
}

impl Options {
    /// Parses `--kills N` (default 1000), `--strict` and `--store NAME` (default `sqlite`).
    pub fn parse(args: &[&str]) -> Result<Options> {
        let mut options = Options {
            kills: 1000,
            strict: false,
            store: "sqlite".to_owned(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match *arg {
                "--kills" => {
                    let value = args.next().context("--kills needs a number")?;
                    options.kills = value
                        .parse()
                        .with_context(|| format!("--kills {value}: not a number"))?;
                }
                "--strict" => options.strict = true,
                "--store" => {
                    let value = args.next().context("--store needs a name")?;
                    if !["sqlite", "redb", "redb-eventual"].contains(value) {
                        bail!("--store {value}: one of sqlite, redb, redb-eventual");
                    }
                    (*value).clone_into(&mut options.store);
                }
                other => bail!("soak: unknown argument {other}"),
            }
        }
        if options.kills == 0 {
            bail!("--kills must be at least 1");
        }
        Ok(options)
    }
}

/// Runs the soak test and reports its summary line.
pub fn run(options: &Options) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask's manifest directory has no parent (the workspace root)")?;
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(["test", "-p", "tidesync-transport-http", "--test", "crash"])
        .args(["--", "crash_soak", "--exact", "--ignored", "--nocapture"])
        .env("TIDESYNC_SOAK_KILLS", options.kills.to_string())
        .env("TIDESYNC_SOAK_STORE", &options.store)
        .stdout(Stdio::piped());
    if options.strict {
        command.env("TIDESYNC_CRASH_STRICT", "1");
    } else {
        command.env_remove("TIDESYNC_CRASH_STRICT");
    }
    eprintln!(
        "soak: {} kill points, client on {}{}",
        options.kills,
        options.store,
        if options.strict { " (strict)" } else { "" }
    );
    let started = Instant::now();
    let mut child = command.spawn().context("starting cargo test")?;
    let stdout = child.stdout.take().context("cargo test's stdout")?;
    let mut summary = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("soak: ") {
            summary = Some(rest.to_owned());
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    let elapsed = started.elapsed().as_secs();
    match (summary, status.success()) {
        (Some(summary), true) => {
            println!("\nsoak passed in {elapsed} s: {summary}");
            Ok(())
        }
        (Some(summary), false) => bail!("soak failed after {elapsed} s: {summary}"),
        (None, _) => bail!("soak: the crash suite ended ({status}) without a summary"),
    }
}
