//! Finding Node.js and npm, the skip-or-fail rule, and the process-wide prepared [`NodeEnv`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::PeerError;
use crate::install::{self, default_cache_dir};
use crate::script::NodeScript;

/// Overrides the `node` program (a path or a name looked up on `PATH`).
pub const NODE_VAR: &str = "TIDESYNC_NODE";
/// Overrides the `npm` program.
pub const NPM_VAR: &str = "TIDESYNC_NPM";

/// Node.js with the pinned npm packages installed: runs the official peers' scripts.
///
/// Get the process-wide one with [`NodeEnv::get`]; every Node process it starts has
/// `NODE_PATH` set to the installed `node_modules` and the harness's own modules, so a
/// script can `require('azure-mobile-apps-client')` or `require('tidesync-peers/js-client')`
/// from anywhere.
#[derive(Debug, Clone)]
pub struct NodeEnv {
    node: PathBuf,
    version: String,
    node_modules: PathBuf,
}

/// The programs to look for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    /// The `node` program.
    pub node: PathBuf,
    /// The `npm` program.
    pub npm: PathBuf,
}

impl Toolchain {
    /// `$TIDESYNC_NODE` / `$TIDESYNC_NPM`, else `node` and `npm` on `PATH`.
    pub fn from_env() -> Toolchain {
        let program = |var: &str, default: &str| {
            std::env::var_os(var)
                .filter(|value| !value.is_empty())
                .map_or_else(|| PathBuf::from(default), PathBuf::from)
        };
        Toolchain {
            node: program(NODE_VAR, "node"),
            npm: program(NPM_VAR, "npm"),
        }
    }
}

/// What [`NodeEnv::prepare`] found.
#[derive(Debug)]
pub enum Availability {
    /// Node.js and npm run and the pinned packages are installed.
    Ready(NodeEnv),
    /// Node.js or npm is not there (or does not run).
    Missing {
        /// What was missing, and how it was looked for.
        reason: String,
    },
}

impl Availability {
    /// The skip rule: ready is `Some`; missing is `None` after a "skipping" line on stderr,
    /// except under CI (`ci`), where it is [`PeerError::Unavailable`].
    ///
    /// # Errors
    ///
    /// [`PeerError::Unavailable`] when Node.js or npm is missing and `ci` is set.
    pub fn or_skip(self, ci: bool) -> Result<Option<NodeEnv>, PeerError> {
        match self {
            Availability::Ready(env) => Ok(Some(env)),
            Availability::Missing { reason } => skip_or_fail(reason, ci).map(|()| None),
        }
    }
}

/// Whether this run is CI (`CI=true` or `CI=1`), where the official peers must run.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
}

/// The outcome of preparing, kept for the whole test process.
#[derive(Debug)]
enum Prepared {
    Ready(NodeEnv),
    Missing(String),
    Failed(String),
}

static PREPARED: OnceLock<Prepared> = OnceLock::new();

impl NodeEnv {
    /// The process-wide Node environment: finds `node` and `npm` ([`Toolchain::from_env`])
    /// and installs the pinned packages into [`default_cache_dir`] the first time it is
    /// called (once per cache, not per process: later processes reuse the install).
    ///
    /// `Ok(None)` means "skip this test": Node.js or npm is missing and this is not CI; a
    /// line saying so is printed on stderr.
    ///
    /// # Errors
    ///
    /// [`PeerError::Unavailable`] when Node.js or npm is missing under `CI=true`;
    /// [`PeerError::Install`] (and others) when they are there but the install fails.
    pub async fn get() -> Result<Option<&'static NodeEnv>, PeerError> {
        tokio::task::spawn_blocking(NodeEnv::get_blocking)
            .await
            .map_err(|e| PeerError::io("preparing Node.js", std::io::Error::other(e)))?
    }

    /// [`NodeEnv::get`] for synchronous callers; blocks while the packages install.
    ///
    /// # Errors
    ///
    /// As [`NodeEnv::get`].
    pub fn get_blocking() -> Result<Option<&'static NodeEnv>, PeerError> {
        let prepared = PREPARED.get_or_init(|| {
            match NodeEnv::prepare(&Toolchain::from_env(), &default_cache_dir()) {
                Ok(Availability::Ready(env)) => Prepared::Ready(env),
                Ok(Availability::Missing { reason }) => Prepared::Missing(reason),
                Err(error) => Prepared::Failed(error.to_string()),
            }
        });
        match prepared {
            Prepared::Ready(env) => Ok(Some(env)),
            Prepared::Missing(reason) => skip_or_fail(reason.clone(), is_ci()).map(|()| None),
            Prepared::Failed(message) => Err(PeerError::Install {
                dir: default_cache_dir(),
                message: message.clone(),
            }),
        }
    }

    /// Looks for `toolchain`'s programs and, when both run, installs the pinned packages
    /// into `cache` (blocking; reuses an install made there before).
    ///
    /// # Errors
    ///
    /// [`PeerError::Install`] or [`PeerError::Io`] when the tools are there but the install
    /// fails; a missing tool is `Ok(Availability::Missing)`.
    pub fn prepare(toolchain: &Toolchain, cache: &Path) -> Result<Availability, PeerError> {
        let node_version = match version_of(&toolchain.node) {
            Ok(version) => version,
            Err(reason) => {
                return Ok(Availability::Missing {
                    reason: format!(
                        "Node.js is not available ({reason}; set {NODE_VAR} to use another)"
                    ),
                });
            }
        };
        if let Err(reason) = version_of(&toolchain.npm) {
            return Ok(Availability::Missing {
                reason: format!("npm is not available ({reason}; set {NPM_VAR} to use another)"),
            });
        }
        let node_modules =
            install::ensure_installed(&toolchain.npm, &toolchain.node, &node_version, cache)?;
        Ok(Availability::Ready(NodeEnv {
            node: toolchain.node.clone(),
            version: node_version,
            node_modules,
        }))
    }

    /// The `node --version` text (`v20.20.2`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The installed `node_modules` directory.
    pub fn node_modules(&self) -> &Path {
        &self.node_modules
    }

    /// A `node` command with `NODE_PATH` set (the installed packages, then the harness's own
    /// modules), standard input closed and the child killed when the handle is dropped.
    pub fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.node);
        command
            .env("NODE_PATH", self.node_path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs the Node script at `path` (see [`NodeScript`]).
    pub fn script(&self, path: impl AsRef<Path>) -> NodeScript<'_> {
        NodeScript::new(self, path.as_ref())
    }

    fn node_path(&self) -> OsString {
        std::env::join_paths([self.node_modules.clone(), install::js_dir()])
            .unwrap_or_else(|_| self.node_modules.clone().into_os_string())
    }
}

/// `program --version`, or why it could not be run.
fn version_of(program: &Path) -> Result<String, String> {
    let shown = program.display();
    let output = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{shown} --version` could not start: {e}"))?;
    if !output.status.success() {
        return Err(format!("`{shown} --version` exited with {}", output.status));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn skip_or_fail(reason: String, ci: bool) -> Result<(), PeerError> {
    if ci {
        return Err(PeerError::Unavailable { reason });
    }
    eprintln!("skipping: {reason}; the official Node peers did not run (under CI=true this fails)");
    Ok(())
}
