//! The many-clients figures: `fanout_10k_p99_ms`, `fanout_10k_rss_mb` and
//! `fanout_pg_2x5k_p99_ms`.
//!
//! The server runs as a child process (this binary with `--child-serve CONFIG`), so that its
//! peak RSS (`VmHWM` of `/proc/PID/status`) is its own. The feeds are raw sockets of this
//! process, all on one tokio runtime: each sends `GET /tidesync/v1/feed?tables=Item` and reads
//! until the `subscribed` comment. Then one write goes through the server's table route; the
//! clock starts when its answer arrives and stops, per socket, when that socket has read
//! `event: change`. The figure is the p99 over all sockets (an event read before the write's
//! answer counts 0 ms). Three writes, spaced past the feed's coalescing window; the median of
//! their p99s is reported.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::output::{Baseline, Figure, Goal};
use crate::{Plan, progress};

/// Feeds opened at once while connecting (the accept backlog is finite).
const CONNECTING: usize = 256;
/// Writes timed per figure.
const ROUNDS: usize = 3;

/// Raises this process's open-file limit to its hard limit; returns the soft limit now.
pub(crate) fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            progress(&format!("cannot raise the open-file limit: {error}"));
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// `--child-serve CONFIG`: run a server from a configuration file, print `listening on URL`
/// and serve until stdin closes.
pub(crate) fn child_serve(config: &Path) -> anyhow::Result<()> {
    raise_fd_limit();
    let config = tidesync_server::ServerConfig::from_file(config)?;
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let server = tidesync_server::Server::builder()
            .config(config)
            .start()
            .await?;
        println!("listening on {}", server.url());
        // Served until the parent closes our stdin (or dies).
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        })
        .await?;
        server.shutdown().await?;
        anyhow::Ok(())
    })
}

/// A server child process; killed when dropped.
pub(crate) struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    pub(crate) addr: SocketAddr,
    pub(crate) url: String,
}

impl ServerProcess {
    /// Starts `--child-serve` with `config` (TOML) written to `dir`.
    pub(crate) fn start(dir: &Path, name: &str, config: &str) -> anyhow::Result<ServerProcess> {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config)?;
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--child-serve")
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("no child stdout")?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .with_context(|| format!("the server child said {line:?}"))?
            .to_owned();
        let addr = url
            .trim_start_matches("http://")
            .parse()
            .context("the server's address")?;
        Ok(ServerProcess {
            child,
            stdin,
            addr,
            url,
        })
    }

    /// `(VmRSS, VmHWM)` in kB.
    pub(crate) fn memory_kb(&self) -> anyhow::Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| -> anyhow::Result<f64> {
            let line = status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .with_context(|| format!("no {name} in the child's status"))?;
            Ok(line.trim().trim_end_matches("kB").trim().parse()?)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The configuration of a fan-out server holding `feeds` feeds (all from one address, opened
/// as fast as the bench can: no cap on opens per second).
pub(crate) fn fanout_config(database: &str, schema: Option<&str>, feeds: usize) -> String {
    let schema = schema.map_or(String::new(), |s| format!("postgres_schema = {s:?}\n"));
    format!(
        "listen = \"127.0.0.1:0\"\ndatabase = {database:?}\n{schema}\
         [feed]\nmax_feeds = {feeds}\nmax_feeds_per_user = {feeds}\nmax_opens_per_sec = 0\n\
         [limits]\nmax_connections = {conns}\n\
         [[tables]]\nname = \"Item\"\ncolumns = {{ text = \"string\", n = \"integer\" }}\n",
        conns = feeds + 64,
    )
}

/// One open feed socket.
struct Feed {
    stream: TcpStream,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Feed {
    async fn open(addr: SocketAddr) -> anyhow::Result<Feed> {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /tidesync/v1/feed?tables=Item HTTP/1.1\r\nhost: bench\r\n\r\n")
            .await?;
        let mut seen = Vec::with_capacity(256);
        let mut buf = [0u8; 512];
        loop {
            let n = stream.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "the feed closed before it was subscribed");
            seen.extend_from_slice(&buf[..n]);
            if find(&seen, b"subscribed").is_some() {
                anyhow::ensure!(
                    seen.starts_with(b"HTTP/1.1 200"),
                    "the feed answered {}",
                    String::from_utf8_lossy(&seen[..seen.len().min(200)])
                );
                return Ok(Feed { stream });
            }
            anyhow::ensure!(seen.len() < 8192, "no subscribed comment");
        }
    }

    /// Reads until `event: change`; when.
    async fn next_change(&mut self) -> anyhow::Result<Instant> {
        let mut tail: Vec<u8> = Vec::with_capacity(64);
        let mut buf = [0u8; 512];
        loop {
            let n = self.stream.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "the feed closed");
            tail.extend_from_slice(&buf[..n]);
            if find(&tail, b"event: change").is_some() {
                return Ok(Instant::now());
            }
            // Keep only what could start the marker.
            let keep = tail.len().min(16);
            tail.drain(..tail.len() - keep);
        }
    }
}

/// Opens `count` feeds on each of `servers`.
async fn open_feeds(servers: &[SocketAddr], count: usize) -> anyhow::Result<Vec<Feed>> {
    let targets: Vec<SocketAddr> = servers
        .iter()
        .flat_map(|addr| std::iter::repeat_n(*addr, count))
        .collect();
    let started = Instant::now();
    let feeds: Vec<anyhow::Result<Feed>> = futures_util::stream::iter(targets)
        .map(Feed::open)
        .buffer_unordered(CONNECTING)
        .collect()
        .await;
    let feeds: Vec<Feed> = feeds.into_iter().collect::<anyhow::Result<_>>()?;
    progress(&format!(
        "{} feeds open in {:.1} s",
        feeds.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(feeds)
}

/// One write through `url`; returns when its answer has arrived.
async fn write(http: &reqwest::Client, url: &str, n: usize) -> anyhow::Result<Instant> {
    http.post(format!("{url}/tables/Item"))
        .header("ZUMO-API-VERSION", "3.0.0")
        .json(&serde_json::json!({"text": format!("fan-out {n}"), "n": n}))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    Ok(Instant::now())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[at.clamp(1, sorted.len()) - 1]
}

/// Times `ROUNDS` writes through `writer` reaching every feed; the median p99 in ms.
async fn time_rounds(feeds: Vec<Feed>, writer: &str) -> anyhow::Result<(f64, Vec<Feed>)> {
    let http = reqwest::Client::new();
    // Warm the writer's connection and statements.
    write(&http, writer, 0).await?;
    let mut feeds = feeds;
    // Drain the warm-up event from every socket.
    feeds = collect(feeds).await?.1;
    let mut p99s = Vec::new();
    for round in 1..=ROUNDS {
        tokio::time::sleep(Duration::from_millis(120)).await;
        let waiting: Vec<_> = feeds
            .into_iter()
            .map(|mut feed| {
                tokio::spawn(async move {
                    let at = feed.next_change().await?;
                    anyhow::Ok((at, feed))
                })
            })
            .collect();
        let answered = write(&http, writer, round).await?;
        let mut times = Vec::with_capacity(waiting.len());
        let mut back = Vec::with_capacity(waiting.len());
        for task in waiting {
            let (at, feed) = tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .context("a feed got no event within 60 s")???;
            times.push(at.saturating_duration_since(answered).as_secs_f64() * 1e3);
            back.push(feed);
        }
        times.sort_by(f64::total_cmp);
        let p99 = percentile(&times, 0.99);
        progress(&format!(
            "round {round}: p50 {:.1} ms, p99 {p99:.1} ms, max {:.1} ms over {} feeds",
            percentile(&times, 0.5),
            times.last().copied().unwrap_or(f64::NAN),
            times.len()
        ));
        p99s.push(p99);
        feeds = back;
    }
    p99s.sort_by(f64::total_cmp);
    Ok((p99s[p99s.len() / 2], feeds))
}

/// Waits for one event on every feed (untimed).
async fn collect(feeds: Vec<Feed>) -> anyhow::Result<((), Vec<Feed>)> {
    let tasks: Vec<_> = feeds
        .into_iter()
        .map(|mut feed| {
            tokio::spawn(async move {
                feed.next_change().await?;
                anyhow::Ok(feed)
            })
        })
        .collect();
    let mut back = Vec::with_capacity(tasks.len());
    for task in tasks {
        back.push(
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .context("a feed got no warm-up event within 60 s")???,
        );
    }
    Ok(((), back))
}

/// Feeds per server for the SQLite figures.
fn feeds_for(plan: Plan) -> usize {
    if plan.quick { 2_000 } else { 10_000 }
}

/// `fanout_10k_p99_ms` and `fanout_10k_rss_mb`: one SQLite server.
pub(crate) fn sqlite(plan: Plan) -> anyhow::Result<Vec<Figure>> {
    let limit = raise_fd_limit();
    let feeds = feeds_for(plan);
    anyhow::ensure!(
        limit as usize > feeds + 256,
        "the open-file limit ({limit}) is too low for {feeds} feeds"
    );
    let dir = tempfile::tempdir()?;
    let database = format!("sqlite://{}", dir.path().join("fanout.db").display());
    let server =
        ServerProcess::start(dir.path(), "fanout", &fanout_config(&database, None, feeds))?;
    crate::runtime()?.block_on(async {
        let http = reqwest::Client::new();
        // Warm the server (tables, statements) before measuring its idle memory.
        write(&http, &server.url, 0).await?;
        let (idle_kb, _) = server.memory_kb()?;
        progress(&format!("fanout_10k: opening {feeds} feeds"));
        let opened = open_feeds(&[server.addr], feeds).await?;
        let (open_kb, _) = server.memory_kb()?;
        let per_feed_kb = (open_kb - idle_kb) / feeds as f64;
        progress(&format!(
            "server RSS idle {:.1} MB, with {feeds} feeds {:.1} MB: {per_feed_kb:.1} KB per idle feed",
            idle_kb / 1024.0,
            open_kb / 1024.0
        ));
        let (p99, feeds_back) = time_rounds(opened, &server.url).await?;
        let (_, peak_kb) = server.memory_kb()?;
        drop(feeds_back);
        let note = if feeds == 10_000 {
            String::new()
        } else {
            format!(" (--quick: {feeds} feeds)")
        };
        Ok(vec![
            Figure {
                name: "fanout_10k_p99_ms",
                value: p99,
                baseline: 1.0,
                against: Baseline::Constant,
                unit: format!(
                    "ms p99 from a write's answer to the event on each of {feeds} feed sockets (SQLite, median of {ROUNDS} writes){note}"
                ),
                goal: Goal::AtMost(100.0),
            },
            Figure {
                name: "fanout_10k_rss_mb",
                value: peak_kb / 1024.0,
                baseline: 1.0,
                against: Baseline::Constant,
                unit: format!(
                    "MB peak RSS of the server process holding {feeds} feeds ({per_feed_kb:.1} KB per idle feed over {:.1} MB idle){note}",
                    idle_kb / 1024.0
                ),
                goal: Goal::AtMost(128.0),
            },
        ])
    })
}

/// The PostgreSQL URL of the tests and benches.
pub(crate) fn pg_url() -> String {
    std::env::var("TIDESYNC_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Drops `schema` (the bench's own).
async fn drop_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await?;
    drop(client);
    let _ = task.await;
    Ok(())
}

/// `fanout_pg_2x5k_p99_ms`: two servers on one PostgreSQL, half the feeds on each, the
/// write through the first. `None` when PostgreSQL cannot be reached (reported, not fatal).
pub(crate) fn postgres(plan: Plan) -> anyhow::Result<Option<Figure>> {
    raise_fd_limit();
    let per_server = feeds_for(plan) / 2;
    let url = pg_url();
    let schema = format!("bench_fanout_{}", std::process::id());
    let rt = crate::runtime()?;
    if let Err(error) = rt.block_on(drop_schema(&url, &schema)) {
        progress(&format!(
            "fanout_pg_2x5k_p99_ms skipped: PostgreSQL at TIDESYNC_TEST_PG unreachable ({error})"
        ));
        return Ok(None);
    }
    let dir = tempfile::tempdir()?;
    let config = fanout_config(&url, Some(&schema), per_server);
    let result = (|| {
        let a = ServerProcess::start(dir.path(), "pg-a", &config)?;
        let b = ServerProcess::start(dir.path(), "pg-b", &config)?;
        rt.block_on(async {
            progress(&format!(
                "fanout_pg_2x5k: opening {per_server} feeds on each of two servers"
            ));
            let feeds = open_feeds(&[a.addr, b.addr], per_server).await?;
            let (p99, _feeds) = time_rounds(feeds, &a.url).await?;
            anyhow::Ok(p99)
        })
    })();
    rt.block_on(drop_schema(&url, &schema))?;
    let p99 = result?;
    let note = if per_server == 5_000 {
        String::new()
    } else {
        format!(" (--quick: {per_server} per server)")
    };
    Ok(Some(Figure {
        name: "fanout_pg_2x5k_p99_ms",
        value: p99,
        baseline: 1.0,
        against: Baseline::Constant,
        unit: format!(
            "ms p99 from a write's answer (server A) to the event on each of {} feeds, half on server B (PostgreSQL NOTIFY){note}",
            per_server * 2
        ),
        goal: Goal::AtMost(1000.0),
    }))
}
