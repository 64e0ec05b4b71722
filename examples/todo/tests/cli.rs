#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Drives the built `todo` binary as a user would: against a tidesync-server
//! started in this test process (loopback, port 0), and against a loopback port
//! nothing listens on.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tidesync::{ColumnType, MemoryStore, Query, TableDef};
use tidesync_server::RunningServer;

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    fn has_line(&self, line: &str) -> bool {
        self.stdout.lines().any(|l| l == line)
    }
}

/// Runs `todo --db DB --url URL ARGS...`.
fn todo(db: &Path, url: &str, args: &[&str]) -> Run {
    todo_env(db, url, args, &[])
}

/// [`todo`] with more environment variables.
fn todo_env(db: &Path, url: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_todo"))
        .envs(env.iter().copied())
        .arg("--db")
        .arg(db)
        .arg("--url")
        .arg(url)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run todo");
    let run = Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    };
    eprintln!(
        "$ todo {}\n{}{}-> {}",
        args.join(" "),
        run.stdout,
        run.stderr,
        run.code
    );
    run
}

/// A loopback URL nothing listens on, for as long as the value lives: a socket is bound to
/// the port without listening, so connecting is refused and no other process can take the
/// port meanwhile. Dereferences to the URL.
struct Unreachable {
    _socket: tokio::net::TcpSocket,
    url: String,
}

impl std::ops::Deref for Unreachable {
    type Target = str;

    fn deref(&self) -> &str {
        &self.url
    }
}

fn unreachable_url() -> Unreachable {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}", socket.local_addr().unwrap());
    Unreachable {
        _socket: socket,
        url,
    }
}

/// The id printed by `add` (`added: ID`).
fn added_id(run: &Run) -> String {
    run.stdout
        .lines()
        .find_map(|l| l.strip_prefix("added: "))
        .expect("an `added:` line")
        .to_owned()
}

fn list_json(db: &Path, url: &str) -> Vec<Value> {
    let run = todo(db, url, &["list", "--json"]);
    assert_eq!(run.code, 0);
    let value: Value = serde_json::from_str(run.stdout.trim()).expect("stdout is only JSON");
    value.as_array().expect("a JSON array").clone()
}

fn pending(db: &Path, url: &str) -> String {
    let run = todo(db, url, &["pending"]);
    assert_eq!(run.code, 0);
    run.stdout
}

/// A tidesync-server on a free loopback port, with a temporary database, and a
/// temporary folder for the clients' store files.
struct TestServer {
    rt: tokio::runtime::Runtime,
    server: Option<RunningServer>,
    url: String,
    dir: tempfile::TempDir,
}

impl TestServer {
    fn start() -> Self {
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
        Self {
            rt,
            server: Some(server),
            url,
            dir,
        }
    }

    fn db(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Another app edits the item's text on the server (through the library).
    fn edit_on_server(&self, id: &str, text: &str) {
        self.rt.block_on(async {
            let client = other_client(&self.url);
            let table = client.table::<Value>("TodoItem");
            table.pull("", Query::all()).await.unwrap();
            let mut item = table
                .get(id)
                .await
                .unwrap()
                .expect("the item is on the server");
            item["text"] = Value::from(text);
            table.update(&item).await.unwrap();
            assert!(client.push().await.unwrap().is_success());
        });
    }

    /// The server's copy of an item.
    fn on_server(&self, id: &str) -> Value {
        self.rt.block_on(async {
            let client = other_client(&self.url);
            let table = client.table::<Value>("TodoItem");
            table.pull("", Query::all()).await.unwrap();
            table
                .get(id)
                .await
                .unwrap()
                .expect("the item is on the server")
        })
    }
}

fn other_client(url: &str) -> tidesync::Client {
    tidesync::Client::builder()
        .store(MemoryStore::new())
        .table(
            TableDef::new("TodoItem")
                .column("text", ColumnType::String)
                .column("complete", ColumnType::Bool),
        )
        .url(url)
        .unwrap()
        .build()
        .unwrap()
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = self.rt.block_on(server.shutdown());
        }
    }
}

#[test]
fn list_json_and_pending_work_without_a_network() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("todo.db");
    let url = unreachable_url();
    let milk = todo(&db, &url, &["add", "buy milk", "--no-sync"]);
    assert_eq!(milk.code, 0);
    assert!(milk.lines().len() == 1, "--no-sync prints only the id");
    let milk = added_id(&milk);
    assert_eq!(
        todo(&db, &url, &["add", "walk the dog", "--no-sync"]).code,
        0
    );
    assert_eq!(todo(&db, &url, &["complete", &milk, "--no-sync"]).code, 0);

    let items = list_json(&db, &url);
    assert_eq!(items.len(), 2);
    for item in &items {
        assert!(item["id"].is_string(), "{item}");
        assert!(item["text"].is_string(), "{item}");
        assert!(item["complete"].is_boolean(), "{item}");
    }
    let by_text = |t: &str| items.iter().find(|i| i["text"] == t).unwrap().clone();
    assert_eq!(by_text("buy milk")["id"], milk.as_str());
    assert_eq!(by_text("buy milk")["complete"], true);
    assert_eq!(by_text("walk the dog")["complete"], false);

    // Two inserts; the completion was merged into the queued insert.
    assert_eq!(pending(&db, &url), "2\n");

    let list = todo(&db, &url, &["list"]);
    assert_eq!(list.code, 0);
    assert!(list.has_line(&format!("{milk} [x] buy milk")));
    assert_eq!(todo(&db, &url, &["conflicts"]).stdout, "no conflicts\n");
}

#[test]
fn offline_add_and_complete_exit_zero_and_keep_the_changes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("todo.db");
    let url = unreachable_url();

    let add = todo(&db, &url, &["add", "buy milk"]);
    assert_eq!(add.code, 0);
    assert!(add.has_line("push: CancelledByNetworkError"), "{add:?}");
    let id = added_id(&add);
    assert_eq!(pending(&db, &url), "1\n");

    let complete = todo(&db, &url, &["complete", &id]);
    assert_eq!(complete.code, 0);
    assert!(complete.has_line("push: CancelledByNetworkError"));
    assert_eq!(pending(&db, &url), "1\n");
    let items = list_json(&db, &url);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["complete"], true);

    let sync = todo(&db, &url, &["sync"]);
    assert_eq!(sync.code, 2, "sync offline exits 2");
    assert!(sync.has_line("push: CancelledByNetworkError"));
    let pull = todo(&db, &url, &["pull"]);
    assert_eq!(pull.code, 2, "pull offline exits 2");
    assert_eq!(pending(&db, &url), "1\n");
}

#[test]
fn online_add_and_complete_reach_a_second_device() {
    let server = TestServer::start();
    let (phone, laptop) = (server.db("phone.db"), server.db("laptop.db"));
    let url = server.url.as_str();

    let add = todo(&phone, url, &["add", "buy milk"]);
    assert_eq!(add.code, 0);
    assert!(add.has_line("push: Complete"), "{add:?}");
    let id = added_id(&add);
    assert_eq!(pending(&phone, url), "0\n");
    let complete = todo(&phone, url, &["complete", &id[..8]]);
    assert_eq!(complete.code, 0);
    assert!(complete.has_line("push: Complete"));
    assert!(complete.has_line(&format!("completed: {id}")));
    assert_eq!(pending(&phone, url), "0\n");

    let pull = todo(&laptop, url, &["pull"]);
    assert_eq!(pull.code, 0);
    assert!(pull.has_line("pulled: 1"), "{pull:?}");
    let items = list_json(&laptop, url);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["complete"], true);
    assert_eq!(server.on_server(&id)["complete"], true);
}

#[test]
fn sync_after_reconnecting_sends_what_was_queued_offline() {
    let server = TestServer::start();
    let db = server.db("todo.db");
    let offline = unreachable_url();
    let a = added_id(&todo(&db, &offline, &["add", "buy milk"]));
    let b = added_id(&todo(&db, &offline, &["add", "walk the dog"]));
    assert_eq!(todo(&db, &offline, &["complete", &a]).code, 0);
    assert_eq!(pending(&db, &offline), "2\n");

    let sync = todo(&db, &server.url, &["sync"]);
    assert_eq!(sync.code, 0, "{sync:?}");
    assert!(sync.has_line("push: Complete"));
    assert!(sync.has_line("pulled: 2"));
    assert_eq!(pending(&db, &server.url), "0\n");
    assert_eq!(server.on_server(&a)["complete"], true);
    assert_eq!(server.on_server(&b)["text"], "walk the dog");

    // Nothing new: a second sync completes and pulls nothing.
    let again = todo(&db, &server.url, &["sync"]);
    assert_eq!(again.code, 0);
    assert!(again.has_line("pulled: 0"));
}

#[test]
fn pull_pushes_the_tables_pending_changes_first() {
    let server = TestServer::start();
    let db = server.db("todo.db");
    let id = added_id(&todo(&db, &server.url, &["add", "buy milk", "--no-sync"]));
    assert_eq!(pending(&db, &server.url), "1\n");
    let pull = todo(&db, &server.url, &["pull"]);
    assert_eq!(pull.code, 0);
    assert_eq!(pull.lines(), ["push: Complete", "pulled: 1"]);
    assert_eq!(pending(&db, &server.url), "0\n");
    assert_eq!(server.on_server(&id)["text"], "buy milk");
}

#[test]
fn a_first_pull_reports_progress_on_stderr_and_results_on_stdout() {
    let server = TestServer::start();
    server.rt.block_on(async {
        let client = other_client(&server.url);
        let table = client.table::<Value>("TodoItem");
        for n in 0..120 {
            table
                .insert(&serde_json::json!({"text": format!("item {n:03}"), "complete": false}))
                .await
                .unwrap();
        }
        assert!(client.push().await.unwrap().is_success());
    });
    let db = server.db("progress.db");
    // Not a terminal: plain lines (here every report, not one a second).
    let pull = todo_env(
        &db,
        &server.url,
        &["pull"],
        &[("TODO_PROGRESS_EVERY_MS", "0")],
    );
    assert_eq!(pull.code, 0);
    assert_eq!(pull.lines(), ["pulled: 120"]);
    assert!(
        pull.stderr
            .lines()
            .any(|l| l == "todo: pull TodoItem: 120 of 120 rows"),
        "{pull:?}"
    );
}

/// An item on the server, completed locally while another app renamed it.
fn conflicting(server: &TestServer, db: &Path) -> String {
    let url = server.url.as_str();
    let id = added_id(&todo(db, url, &["add", "walk the dog"]));
    server.edit_on_server(&id, "walk the cat");
    assert_eq!(todo(db, url, &["complete", &id, "--no-sync"]).code, 0);

    let sync = todo(db, url, &["sync"]);
    assert_eq!(sync.code, 3, "a conflict exits 3: {sync:?}");
    assert!(sync.has_line("push: Complete"));
    let conflict = format!(
        "conflict: {id} (Update, HTTP 412) local {{\"text\":\"walk the dog\",\"complete\":true}} \
         server {{\"text\":\"walk the cat\",\"complete\":false}}"
    );
    assert!(sync.has_line(&conflict), "{sync:?}");
    let conflicts = todo(db, url, &["conflicts"]);
    assert_eq!(conflicts.code, 0);
    assert_eq!(conflicts.lines(), [conflict.as_str()]);
    assert_eq!(pending(db, url), "1\n");
    // `pull` meets the same conflict in its implicit push.
    assert_eq!(todo(db, url, &["pull"]).code, 3);
    id
}

#[test]
fn a_conflict_resolved_keeping_the_local_values() {
    let server = TestServer::start();
    let db = server.db("todo.db");
    let id = conflicting(&server, &db);

    let resolve = todo(&db, &server.url, &["resolve", &id, "--keep-local"]);
    assert_eq!(resolve.code, 0, "{resolve:?}");
    assert!(resolve.has_line("push: Complete"));
    assert_eq!(pending(&db, &server.url), "0\n");
    assert_eq!(
        todo(&db, &server.url, &["conflicts"]).stdout,
        "no conflicts\n"
    );
    let on_server = server.on_server(&id);
    assert_eq!(on_server["text"], "walk the dog");
    assert_eq!(on_server["complete"], true);
    assert_eq!(todo(&db, &server.url, &["sync"]).code, 0);
}

#[test]
fn a_conflict_resolved_keeping_the_servers_values() {
    let server = TestServer::start();
    let db = server.db("todo.db");
    let id = conflicting(&server, &db);

    let resolve = todo(&db, &server.url, &["resolve", &id, "--keep-server"]);
    assert_eq!(resolve.code, 0, "{resolve:?}");
    assert_eq!(pending(&db, &server.url), "0\n");
    let items = list_json(&db, &server.url);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["text"], "walk the cat");
    assert_eq!(items[0]["complete"], false);
    assert_eq!(server.on_server(&id)["text"], "walk the cat");
    assert_eq!(
        todo(&db, &server.url, &["conflicts"]).stdout,
        "no conflicts\n"
    );
    assert_eq!(todo(&db, &server.url, &["sync"]).code, 0);
}

#[test]
fn resolving_works_offline_and_is_sent_later() {
    let server = TestServer::start();
    let db = server.db("todo.db");
    let id = conflicting(&server, &db);
    let offline = unreachable_url();

    let resolve = todo(&db, &offline, &["resolve", &id, "--keep-local"]);
    assert_eq!(resolve.code, 0);
    assert!(resolve.has_line("push: CancelledByNetworkError"));
    assert_eq!(pending(&db, &offline), "1\n");
    assert_eq!(todo(&db, &server.url, &["sync"]).code, 0);
    assert_eq!(server.on_server(&id)["complete"], true);
}

#[test]
fn redb_store_and_each_protocol() {
    let server = TestServer::start();
    for protocol in ["auto", "v2", "v3"] {
        let db = server.db(&format!("todo-{protocol}.redb"));
        // The global options work after the command as well.
        let opts = ["--store", "redb", "--protocol", protocol];
        let run = |cmd: &[&str]| todo(&db, &server.url, &[cmd, &opts[..]].concat());
        let add = run(&["add", "buy milk"]);
        assert_eq!(add.code, 0);
        assert!(add.has_line("push: Complete"), "{protocol}: {add:?}");
        let id = added_id(&add);
        assert_eq!(run(&["complete", &id]).code, 0);
        assert_eq!(run(&["sync"]).code, 0);
        assert_eq!(run(&["pending"]).stdout, "0\n");
        assert_eq!(server.on_server(&id)["complete"], true);
    }
}

#[test]
fn a_wrong_api_key_is_not_a_network_error() {
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
                .api_key("right")
                .bind("127.0.0.1:0")
                .start(),
        )
        .unwrap();
    let db = dir.path().join("todo.db");
    let url = server.url();

    let add = todo(&db, &url, &["--api-key", "wrong", "add", "buy milk"]);
    assert_eq!(add.code, 0, "add never fails because of the server");
    assert!(add.has_line("push: CancelledByAuthenticationError"));
    assert_eq!(todo(&db, &url, &["--api-key", "wrong", "sync"]).code, 1);
    let sync = todo(&db, &url, &["--api-key", "right", "sync"]);
    assert_eq!(sync.code, 0);
    assert_eq!(pending(&db, &url), "0\n");
    rt.block_on(server.shutdown()).unwrap();
}

#[test]
fn usage_errors_and_unknown_ids_exit_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("todo.db");
    let url = unreachable_url();
    assert_eq!(todo(&db, &url, &["resolve", "abc"]).code, 1);
    assert_eq!(
        todo(
            &db,
            &url,
            &["resolve", "abc", "--keep-local", "--keep-server"]
        )
        .code,
        1
    );
    assert_eq!(todo(&db, &url, &["--store", "mysql", "list"]).code, 1);
    let complete = todo(&db, &url, &["complete", "nope"]);
    assert_eq!(complete.code, 1);
    assert!(complete.stderr.contains("no item with id nope"));
    let resolve = todo(&db, &url, &["resolve", "nope", "--keep-server"]);
    assert_eq!(resolve.code, 1);
    assert_eq!(todo(&db, &url, &["--help"]).code, 0);
}

#[test]
fn demo_walks_the_tutorial_and_exits_zero() {
    let out = Command::new(env!("CARGO_BIN_EXE_todo"))
        .arg("demo")
        .output()
        .expect("run todo demo");
    let stdout = String::from_utf8(out.stdout).unwrap();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    for expected in [
        "push: CancelledByNetworkError",
        "ok: nothing was lost",
        "ok: the items survived the restart",
        "ok: B has both items",
        "conflict: ",
        "demo complete",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?}");
    }
}
