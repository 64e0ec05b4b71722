#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `todo watch` as a user runs it: one terminal watches, another adds an item on another
//! device; the watcher prints the new item without anyone running `pull`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn watch_prints_another_devices_item_as_it_arrives() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = rt
        .block_on(
            tidesync_server::Server::builder()
                .sqlite(dir.path().join("server.db"))
                .table("TodoItem")
                .bind("127.0.0.1:0")
                .start(),
        )
        .unwrap();
    let url = server.url();
    let todo = |db: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_todo"));
        command
            .arg("--db")
            .arg(dir.path().join(db))
            .arg("--url")
            .arg(&url)
            .env("RUST_LOG", "warn");
        command
    };

    let mut watch = todo("laptop.db")
        .args(["watch", "--seconds", "12"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, seen) = mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    let stderr = watch.stderr.take().unwrap();
    let to_stdout = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = to_stdout.send(("out", line.unwrap()));
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let _ = lines.send(("err", line.unwrap()));
        }
    });
    let wait_for = |want: &dyn Fn(&str, &str) -> bool| loop {
        let (stream, line) = seen
            .recv_timeout(Duration::from_secs(10))
            .expect("todo watch printed nothing in time");
        eprintln!("watch {stream}: {line}");
        if want(stream, &line) {
            return line;
        }
    };
    wait_for(&|stream, line| stream == "err" && line.starts_with("todo: watching"));

    let add = todo("phone.db").args(["add", "buy milk"]).output().unwrap();
    assert!(add.status.success());
    let line = wait_for(&|stream, line| stream == "out" && line.starts_with("+ "));
    assert!(line.ends_with("[ ] buy milk"), "{line}");

    watch.kill().unwrap();
    let _ = watch.wait();
    rt.block_on(server.shutdown()).unwrap();
}
