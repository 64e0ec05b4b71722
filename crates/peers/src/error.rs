//! The one error type of the harness.

use std::path::PathBuf;
use std::time::Duration;

/// Why a peer could not be prepared, started or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// Node.js or npm is missing and the run is CI (`CI=true`), where the official peers
    /// must run. Outside CI a missing tool is a skip, not an error.
    #[error("{reason} (CI=true: the official Node peers must run here; install Node.js and npm)")]
    Unavailable {
        /// What was missing, and how it was looked for.
        reason: String,
    },
    /// Node.js and npm are there but installing the pinned npm packages failed.
    #[error("installing the pinned npm packages into {dir} failed: {message}")]
    Install {
        /// The cache directory the packages go to.
        dir: PathBuf,
        /// What failed, with the tail of npm's output.
        message: String,
    },
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The official server exited, or did not report its address, before it was ready.
    #[error("the official Node server did not start: {reason}\n--- its output ---\n{logs}")]
    ServerStart {
        /// What went wrong.
        reason: String,
        /// The server's last lines of output.
        logs: String,
    },
    /// A Node script exited with a non-zero status ([`crate::ScriptOutput::ensure_success`]).
    #[error("node script {script} exited with {status}; its stderr ends with:\n{stderr}")]
    ScriptFailed {
        /// The script's path.
        script: PathBuf,
        /// How it exited.
        status: std::process::ExitStatus,
        /// The last lines of its stderr.
        stderr: String,
    },
    /// A Node script ran longer than its time limit and was killed.
    #[error("node script {script} did not finish within {limit:?} and was killed")]
    ScriptTimeout {
        /// The script's path.
        script: PathBuf,
        /// The limit it ran into.
        limit: Duration,
    },
}

impl PeerError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> PeerError {
        PeerError::Io {
            context: context.into(),
            source,
        }
    }
}
