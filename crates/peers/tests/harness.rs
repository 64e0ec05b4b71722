//! The harness itself: the install is shared and locked, a missing Node.js is a skip outside
//! CI and an error under it, the official server serves the official client (online and
//! offline) and stops, and scripts report what they printed and how they exited.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tidesync_peers::{
    Availability, ColumnKind, NodeEnv, OfficialNodeServer, PeerError, TableSpec, Toolchain,
};

fn js(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/js")
        .join(name)
}

#[test]
fn a_missing_node_is_a_skip_outside_ci_and_an_error_under_ci() {
    let cache = tempfile::tempdir().unwrap();
    let missing = Toolchain {
        node: PathBuf::from("/nonexistent/tidesync/node"),
        npm: PathBuf::from("npm"),
    };
    let found = NodeEnv::prepare(&missing, cache.path()).unwrap();
    let Availability::Missing { reason } = &found else {
        panic!("a node that does not exist was found: {found:?}");
    };
    assert!(reason.contains("Node.js is not available"), "{reason}");
    assert!(reason.contains("/nonexistent/tidesync/node"), "{reason}");
    assert!(found.or_skip(false).unwrap().is_none());

    let found = NodeEnv::prepare(&missing, cache.path()).unwrap();
    match found.or_skip(true) {
        Err(PeerError::Unavailable { reason }) => assert!(reason.contains("Node.js"), "{reason}"),
        other => panic!("under CI a missing node must fail, got {other:?}"),
    }
    // Nothing was installed for a missing tool.
    assert!(!cache.path().join("node_modules").exists());
}

/// A fake `node` and `npm` (shell scripts) in a temporary directory, and an empty cache:
/// `npm ci` appends its arguments to `npm-runs` in the cache and creates `node_modules`.
#[cfg(unix)]
struct Fake {
    tools: tempfile::TempDir,
    cache: tempfile::TempDir,
    toolchain: Toolchain,
}

#[cfg(unix)]
impl Fake {
    fn new() -> Fake {
        let tools = tempfile::tempdir().unwrap();
        let toolchain = Fake::toolchain(tools.path(), "v20.0.0-fake");
        Fake {
            tools,
            cache: tempfile::tempdir().unwrap(),
            toolchain,
        }
    }

    fn toolchain(dir: &Path, node_version: &str) -> Toolchain {
        let node = dir.join(format!("node-{node_version}"));
        script(&node, &format!("#!/bin/sh\necho {node_version}\n"));
        let npm = dir.join("npm");
        script(
            &npm,
            "#!/bin/sh\n\
             if [ \"$1\" = --version ]; then echo 0.0.0-fake; exit 0; fi\n\
             echo \"$*\" >> npm-runs\n\
             mkdir -p node_modules\n",
        );
        Toolchain { node, npm }
    }
}

/// Writes an executable script.
#[cfg(unix)]
fn script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[cfg(unix)]
fn npm_runs(cache: &Path) -> Vec<String> {
    std::fs::read_to_string(cache.join("npm-runs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[cfg(unix)]
#[test]
fn processes_starting_at_once_share_one_install_and_later_runs_reuse_it() {
    let fake = Fake::new();
    let cache = fake.cache.path();

    let barrier = std::sync::Barrier::new(4);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    NodeEnv::prepare(&fake.toolchain, cache).unwrap()
                })
            })
            .collect();
        for handle in handles {
            let Availability::Ready(env) = handle.join().unwrap() else {
                panic!("the fake toolchain was not ready");
            };
            assert_eq!(env.version(), "v20.0.0-fake");
            assert_eq!(env.node_modules(), cache.join("node_modules"));
        }
    });
    assert_eq!(
        npm_runs(cache),
        ["ci --no-audit --no-fund --no-progress"],
        "four preparers at once must run npm ci exactly once"
    );
    for file in ["package.json", "package-lock.json", ".installed"] {
        assert!(cache.join(file).is_file(), "{file} is missing");
    }

    // A later run with the same Node.js and manifests reuses the install.
    NodeEnv::prepare(&fake.toolchain, cache).unwrap();
    assert_eq!(npm_runs(cache).len(), 1);

    // Another Node.js version installs again (native modules are built for it).
    let other = Fake::toolchain(fake.tools.path(), "v22.0.0-fake");
    NodeEnv::prepare(&other, cache).unwrap();
    assert_eq!(npm_runs(cache).len(), 2);
}

#[cfg(unix)]
#[test]
fn a_failed_install_is_an_error_that_shows_npm_output_and_is_retried() {
    let fake = Fake::new();
    let cache = fake.cache.path();
    let good_npm = std::fs::read_to_string(&fake.toolchain.npm).unwrap();
    script(
        &fake.toolchain.npm,
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 0; exit 0; fi\n\
         echo 'npm error 404 Not Found - azure-mobile-apps' >&2\nexit 1\n",
    );

    match NodeEnv::prepare(&fake.toolchain, cache) {
        Err(PeerError::Install { message, .. }) => {
            assert!(message.contains("npm error 404 Not Found"), "{message}");
        }
        other => panic!("a failing npm ci must be an install error, got {other:?}"),
    }
    assert!(!cache.join(".installed").exists());

    script(&fake.toolchain.npm, &good_npm);
    let Availability::Ready(_) = NodeEnv::prepare(&fake.toolchain, cache).unwrap() else {
        panic!("the repaired npm did not install");
    };
    assert_eq!(npm_runs(cache).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_server_serves_the_official_client_online_and_offline() {
    let Some(node) = NodeEnv::get().await.unwrap_or_else(|e| panic!("{e}")) else {
        return;
    };
    let server = OfficialNodeServer::start(
        node,
        &[TableSpec::new("TodoItem")
            .column("text", ColumnKind::String)
            .column("complete", ColumnKind::Boolean)],
    )
    .await
    .unwrap();
    assert!(
        server.url().starts_with("http://127.0.0.1:"),
        "{}",
        server.url()
    );

    let output = node
        .script(js("roundtrip.js"))
        .arg(server.url())
        .run()
        .await
        .unwrap();
    assert!(
        output.success(),
        "{}\n--- server ---\n{}",
        output.stderr,
        server.logs()
    );
    assert_eq!(
        output.json_lines(),
        [
            json!({"step": "insert", "value": {"id": "harness-1", "text": "from node", "hasVersion": true}}),
            json!({"step": "read", "value": {"texts": ["from node"]}}),
            json!({"step": "push", "value": {"conflicts": 0}}),
            json!({"step": "lookup", "value": {"text": "offline", "complete": true}}),
        ]
    );

    let port = server
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    server.stop().await.unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the stopped server still accepts connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_start_reports_why() {
    let Some(node) = NodeEnv::get().await.unwrap_or_else(|e| panic!("{e}")) else {
        return;
    };
    let result = OfficialNodeServer::builder()
        .table(TableSpec::new("TodoItem"))
        .option("data", json!({"provider": "no-such-provider"}))
        .start(node)
        .await;
    match result {
        Err(PeerError::ServerStart { reason, logs }) => {
            assert!(reason.contains("exited"), "{reason}");
            assert!(logs.contains("official server failed"), "{logs}");
        }
        other => panic!("expected a start error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_report_their_output_exit_status_and_time_limit() {
    let Some(node) = NodeEnv::get().await.unwrap_or_else(|e| panic!("{e}")) else {
        return;
    };
    let output = node.script(js("exit_status.js")).run().await.unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(output.json_lines(), [json!({"n": 1}), json!({"n": 2})]);
    assert_eq!(output.stderr, "something went wrong\n");
    match output.ensure_success() {
        Err(PeerError::ScriptFailed { stderr, .. }) => {
            assert_eq!(stderr, "something went wrong");
        }
        other => panic!("a failed script must be an error, got {other:?}"),
    }

    let limit = Duration::from_millis(300);
    match node.script(js("forever.js")).limit(limit).run().await {
        Err(PeerError::ScriptTimeout { limit: hit, .. }) => assert_eq!(hit, limit),
        other => panic!("a script that never ends must time out, got {other:?}"),
    }
}
