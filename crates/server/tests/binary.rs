//! The binary: prints `listening on http://ADDR` once ready, answers a v2 query, serves
//! `/health` and `/ready`, and exits cleanly on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nZUMO-API-VERSION: 2.0.0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Starts the binary with `args` in `dir` (logging at `warn`) and returns it once it
/// printed its first line, with that line.
fn start(dir: &std::path::Path, args: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidesync-server"))
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

#[test]
fn binary_serves_and_shuts_down_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, line) = start(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--database",
            "sqlite://x.db",
            "--table",
            "TodoItem",
        ],
    );
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .expect(&line)
        .to_owned();
    let response = http_get(&addr, "/tables/TodoItem");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("[]"), "{response}");
    assert!(http_get(&addr, "/health").starts_with("HTTP/1.1 200"));
    assert!(http_get(&addr, "/ready").starts_with("HTTP/1.1 200"));
    assert!(dir.path().join("x.db").is_file());
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}

/// Starts the binary with `args` in `dir`, waits until it listens, stops it and returns what
/// it logged.
fn start_log(dir: &std::path::Path, args: &[&str]) -> String {
    let (mut child, line) = start(dir, args);
    assert!(line.starts_with("listening on http://"), "{line}");
    // A SIGTERM right after the address appears stops the server cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}: {log}");
    log
}

#[test]
fn the_start_warns_of_tables_any_writer_can_extend() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("server.toml"),
        r#"
        [[tables]]
        name = "Fixed"
        columns = { text = "string", complete = "bool" }
        "#,
    )
    .unwrap();
    let base = ["--listen", "127.0.0.1:0", "--database", "sqlite://x.db"];
    let args: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--config", "server.toml", "--table", "Open"])
        .collect();
    let log = start_log(dir.path(), &args);
    let warning = log
        .lines()
        .find(|l| l.contains("no declared columns"))
        .unwrap_or_else(|| panic!("no warning in {log}"));
    assert!(warning.contains("Open"), "{warning}");
    assert!(!warning.contains("Fixed"), "{warning}");
    let args: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--config", "server.toml"])
        .collect();
    let log = start_log(dir.path(), &args);
    assert!(!log.contains("no declared columns"), "{log}");
}
