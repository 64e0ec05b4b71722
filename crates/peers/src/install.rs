//! Installing the pinned npm packages once into a cache directory under `target/`.
//!
//! The committed `npm/package.json` and `npm/package-lock.json` are installed with `npm ci`
//! into `target/node-peers/` (or `$CARGO_TARGET_DIR/node-peers/`). A stamp file records what
//! was installed (the Node.js version and both manifests, verbatim); a later run with the same
//! stamp reuses the install. An exclusive file lock (`.lock`) is held while checking and
//! installing, so test processes that start at once wait for one install instead of racing
//! `npm ci` (which deletes `node_modules` first); the operating system releases the lock if
//! the holder dies, and a half-done install has no stamp, so it is redone.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::PeerError;

/// The manifest the packages are installed from.
const PACKAGE_JSON: &str = "package.json";
/// The lock file pinning every package version and checksum.
const PACKAGE_LOCK: &str = "package-lock.json";
/// Written after a successful install; its text says what was installed.
const STAMP: &str = ".installed";
/// Held while checking or installing.
const LOCK: &str = ".lock";
/// npm's output of the last install.
const LOG: &str = "install.log";

/// The directory of the committed `package.json` and `package-lock.json`.
pub(crate) fn manifest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("npm")
}

/// The directory of the harness's own JavaScript modules (put on `NODE_PATH`, so scripts
/// `require('tidesync-peers/js-client')`).
pub(crate) fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// `target/node-peers` of this workspace, or `$CARGO_TARGET_DIR/node-peers`.
pub fn default_cache_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target.join("node-peers")
}

/// Makes sure the pinned packages are installed in `cache` for `node_version`; returns the
/// `node_modules` directory. Blocks while another process installs.
pub(crate) fn ensure_installed(
    npm: &Path,
    node: &Path,
    node_version: &str,
    cache: &Path,
) -> Result<PathBuf, PeerError> {
    fs::create_dir_all(cache)
        .map_err(|e| PeerError::io(format!("creating {}", cache.display()), e))?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cache.join(LOCK))
        .map_err(|e| PeerError::io(format!("opening {}", cache.join(LOCK).display()), e))?;
    // Fully qualified: std's `File::lock` (Rust 1.89) is newer than the workspace's MSRV.
    fs4::FileExt::lock(&lock)
        .map_err(|e| PeerError::io(format!("locking {}", cache.join(LOCK).display()), e))?;
    let result = install_locked(npm, node, node_version, cache);
    drop(lock);
    result
}

fn install_locked(
    npm: &Path,
    node: &Path,
    node_version: &str,
    cache: &Path,
) -> Result<PathBuf, PeerError> {
    let source = manifest_dir();
    let package = read(&source.join(PACKAGE_JSON))?;
    let package_lock = read(&source.join(PACKAGE_LOCK))?;
    let stamp = format!("node {node_version}\n{package}\n{package_lock}");
    let modules = cache.join("node_modules");
    if modules.is_dir() && fs::read_to_string(cache.join(STAMP)).is_ok_and(|old| old == stamp) {
        return Ok(modules);
    }

    let _ = fs::remove_file(cache.join(STAMP));
    write(&cache.join(PACKAGE_JSON), &package)?;
    write(&cache.join(PACKAGE_LOCK), &package_lock)?;
    let log_path = cache.join(LOG);
    let log = File::create(&log_path)
        .map_err(|e| PeerError::io(format!("creating {}", log_path.display()), e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| PeerError::io("duplicating the install log handle", e))?;

    let mut command = Command::new(npm);
    command
        .args(["ci", "--no-audit", "--no-fund", "--no-progress"])
        .current_dir(cache)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // node-sqlite3 compiles from source here (its prebuilt download is unreachable); point
    // node-gyp at the headers next to this node so it does not try to download them either.
    if std::env::var_os("npm_config_nodedir").is_none() {
        if let Some(headers) = node_headers(node) {
            command.env("npm_config_nodedir", headers);
        }
    }
    eprintln!(
        "tidesync-peers: installing the pinned npm packages into {} (npm ci; once per cache)",
        cache.display()
    );
    let started = Instant::now();
    let status = command
        .status()
        .map_err(|e| PeerError::io(format!("running {} ci", npm.display()), e))?;
    if !status.success() {
        return Err(PeerError::Install {
            dir: cache.to_path_buf(),
            message: format!(
                "`npm ci` exited with {status}; last lines of {}:\n{}",
                log_path.display(),
                tail(&fs::read_to_string(&log_path).unwrap_or_default(), 40)
            ),
        });
    }
    write(&cache.join(STAMP), &stamp)?;
    eprintln!(
        "tidesync-peers: npm ci took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(modules)
}

/// The installation prefix of `node` when it has its C headers (`<prefix>/include/node`).
fn node_headers(node: &Path) -> Option<PathBuf> {
    let resolved = which(node)?;
    let resolved = fs::canonicalize(&resolved).unwrap_or(resolved);
    let prefix = resolved.parent()?.parent()?;
    prefix
        .join("include/node/node.h")
        .is_file()
        .then(|| prefix.to_path_buf())
}

/// `program` as a path: itself when it has a directory part, else its first match on `PATH`.
pub(crate) fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return Some(program.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn read(path: &Path) -> Result<String, PeerError> {
    fs::read_to_string(path).map_err(|e| PeerError::io(format!("reading {}", path.display()), e))
}

fn write(path: &Path, text: &str) -> Result<(), PeerError> {
    fs::write(path, text).map_err(|e| PeerError::io(format!("writing {}", path.display()), e))
}
