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

#[test]
fn binary_serves_and_shuts_down_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidesync-server"))
        .current_dir(dir.path())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--database",
            "sqlite://x.db",
            "--table",
            "TodoItem",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
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
