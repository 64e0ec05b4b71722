//! Running a Node script to completion and collecting what it printed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{NodeEnv, PeerError};

/// How long a script may run unless told otherwise: a bound against hangs, not a speed
/// goal (the test runner's own timeout usually comes first).
pub const DEFAULT_SCRIPT_LIMIT: Duration = Duration::from_secs(600);

/// A Node script to run: `node <script> <args…>` in a fresh temporary working directory
/// (deleted afterwards), with `NODE_PATH` as [`NodeEnv::command`] sets it.
#[derive(Debug)]
#[must_use = "a script does nothing until `run` is awaited"]
pub struct NodeScript<'a> {
    env: &'a NodeEnv,
    script: PathBuf,
    args: Vec<OsString>,
    vars: Vec<(OsString, OsString)>,
    limit: Duration,
}

/// What a finished script printed, and how it exited.
#[derive(Debug, Clone)]
pub struct ScriptOutput {
    /// The script that ran.
    pub script: PathBuf,
    /// The exit status.
    pub status: ExitStatus,
    /// Everything it wrote on stdout.
    pub stdout: String,
    /// Everything it wrote on stderr.
    pub stderr: String,
}

impl<'a> NodeScript<'a> {
    pub(crate) fn new(env: &'a NodeEnv, script: &Path) -> NodeScript<'a> {
        NodeScript {
            env,
            script: script.to_path_buf(),
            args: Vec::new(),
            vars: Vec::new(),
            limit: DEFAULT_SCRIPT_LIMIT,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> NodeScript<'a> {
        self.args.push(arg.into());
        self
    }

    /// Sets an environment variable for the script.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> NodeScript<'a> {
        self.vars.push((key.into(), value.into()));
        self
    }

    /// Kills the script if it runs longer than `limit` (default [`DEFAULT_SCRIPT_LIMIT`]).
    pub fn limit(mut self, limit: Duration) -> NodeScript<'a> {
        self.limit = limit;
        self
    }

    /// Runs the script to its end. A non-zero exit is not an error: look at
    /// [`ScriptOutput::status`] (or call [`ScriptOutput::ensure_success`]).
    ///
    /// # Errors
    ///
    /// [`PeerError::Io`] when it cannot start, [`PeerError::ScriptTimeout`] when it outlives
    /// its limit (it is killed).
    pub async fn run(self) -> Result<ScriptOutput, PeerError> {
        let workdir = tempfile::Builder::new()
            .prefix("tidesync-node-script-")
            .tempdir()
            .map_err(|e| PeerError::io("creating the script's working directory", e))?;
        let mut command = self.env.command();
        command
            .arg(&self.script)
            .args(&self.args)
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .current_dir(workdir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command
            .spawn()
            .map_err(|e| PeerError::io(format!("starting node {}", self.script.display()), e))?;
        // Dropping the child on timeout kills it (`kill_on_drop`).
        let output = tokio::time::timeout(self.limit, child.wait_with_output())
            .await
            .map_err(|_| PeerError::ScriptTimeout {
                script: self.script.clone(),
                limit: self.limit,
            })?
            .map_err(|e| PeerError::io(format!("running node {}", self.script.display()), e))?;
        Ok(ScriptOutput {
            script: self.script,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

impl ScriptOutput {
    /// Whether the script exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// `Ok(self)` when the script exited with status 0, else an error carrying its stderr.
    ///
    /// # Errors
    ///
    /// [`PeerError::ScriptFailed`] with the exit status and stderr's last lines.
    pub fn ensure_success(self) -> Result<ScriptOutput, PeerError> {
        if self.success() {
            return Ok(self);
        }
        Err(PeerError::ScriptFailed {
            stderr: crate::install::tail(&self.stderr, 60),
            script: self.script,
            status: self.status,
        })
    }

    /// Every stdout line that is a JSON object, in order (the convention for scripts that
    /// report results: one JSON object per line; other lines are ignored).
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|line| line.trim_start().starts_with('{'))
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(Value::is_object)
            .collect()
    }
}
