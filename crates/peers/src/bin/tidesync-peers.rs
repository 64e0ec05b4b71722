//! `cargo run -p tidesync-peers`: prepares the official Node peers the way the tests do
//! (finds node and npm, installs the pinned npm packages into `target/node-peers` unless an
//! install for this Node.js and these manifests is there) and prints where they are.
//!
//! `cargo xtask ci` runs it before the tests, so the one install of a clean checkout is its
//! own timed step rather than part of the first test that needs it. Exit status: 0 when
//! ready or skipped (no Node.js, outside CI), 1 otherwise (under `CI=true` a missing
//! Node.js is an error).

use std::process::ExitCode;
use std::time::Instant;

use tidesync_peers::NodeEnv;

fn main() -> ExitCode {
    let started = Instant::now();
    match NodeEnv::get_blocking() {
        Ok(Some(node)) => {
            println!(
                "node {} with {}",
                node.version(),
                node.node_modules().display()
            );
            eprintln!(
                "tidesync-peers: ready in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
