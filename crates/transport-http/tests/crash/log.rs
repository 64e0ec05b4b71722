//! The child's write log: an append-only file apart from the store, each line synced before
//! the child goes on, and what the parent reads back from it.
//!
//! Lines: `life N` when a life starts; `B n kind id text` before write `n` and `A n` when it
//! returned `Ok` (acknowledged) or `E n` when it returned an error; `push`, `pull` and
//! `synced` around each sync; `D n` when the store was closed and reopened with every write
//! before `n` in it (eventual durability only).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;

/// How many recently inserted rows the child picks its updates and deletes from.
const WINDOW: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Insert,
    Update,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The call returned `Ok`, and the store promises to keep it.
    Acked,
    /// The call returned `Ok` on an eventually durable store, and the store was not closed
    /// after it in that life: the kill may have undone it (whole).
    Volatile,
    /// The call returned an error: it must have changed nothing.
    Refused,
    /// Killed between `B` and the answer: it may or may not have happened.
    CutOff,
}

#[derive(Debug, Clone)]
pub struct LoggedWrite {
    pub kind: Kind,
    pub id: String,
    pub status: Status,
}

/// What the log says: every write by number, the next number, and where the last life died.
#[derive(Debug, Default)]
pub struct LogState {
    pub writes: BTreeMap<u64, LoggedWrite>,
    pub next: u64,
    /// The last line of the last life (a write's `B`, a phase marker, ...).
    pub last_line: String,
}

impl LogState {
    /// Reads the log. `eventual`: the client's store was eventually durable, so an
    /// acknowledged write not followed by a `D` line in its life may have been undone.
    pub fn read(path: &Path, eventual: bool) -> LogState {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut state = LogState {
            next: 1,
            ..LogState::default()
        };
        // Acknowledged writes of the current life not yet covered by a `D` line.
        let mut unclosed: Vec<u64> = Vec::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields.as_slice() {
                ["B", n, kind, id, _text] => {
                    let Ok(n) = n.parse::<u64>() else { continue };
                    let kind = match *kind {
                        "insert" => Kind::Insert,
                        "update" => Kind::Update,
                        "delete" => Kind::Delete,
                        _ => continue,
                    };
                    state.writes.insert(
                        n,
                        LoggedWrite {
                            kind,
                            id: (*id).to_owned(),
                            status: Status::CutOff,
                        },
                    );
                    state.next = state.next.max(n + 1);
                }
                ["A" | "E", n] => {
                    let Ok(n) = n.parse::<u64>() else { continue };
                    if let Some(write) = state.writes.get_mut(&n) {
                        write.status = if fields[0] == "A" {
                            unclosed.push(n);
                            Status::Acked
                        } else {
                            Status::Refused
                        };
                    }
                }
                ["D", n] => {
                    let Ok(n) = n.parse::<u64>() else { continue };
                    unclosed.retain(|w| *w >= n);
                }
                ["life", _] => {
                    if eventual {
                        state.mark_volatile(&unclosed);
                    }
                    unclosed.clear();
                }
                _ => {}
            }
            state.last_line = line.to_owned();
        }
        if eventual {
            state.mark_volatile(&unclosed);
        }
        state
    }

    fn mark_volatile(&mut self, writes: &[u64]) {
        for n in writes {
            if let Some(write) = self.writes.get_mut(n) {
                write.status = Status::Volatile;
            }
        }
    }

    /// The most recently inserted rows that no write deleted (or may have deleted).
    pub fn window(&self) -> Vec<String> {
        let mut live: Vec<String> = Vec::new();
        for write in self.writes.values() {
            match (write.kind, write.status) {
                (_, Status::Refused) => {}
                (Kind::Insert, _) => live.push(write.id.clone()),
                (Kind::Delete, _) => live.retain(|id| *id != write.id),
                (Kind::Update, _) => {}
            }
        }
        let skip = live.len().saturating_sub(WINDOW);
        live.split_off(skip)
    }

    /// The phase the last life was killed in, from its last line.
    pub fn phase(&self) -> &'static str {
        match self.last_line.split(' ').next().unwrap_or("") {
            "B" => "write",
            "push" => "push",
            "pull" => "pull",
            "D" => "close",
            "A" | "E" | "synced" => "between",
            _ => "startup",
        }
    }
}

/// The append-only log of one life; every line is also reported on stdout (the parent
/// counts them to choose its kill point).
pub struct Log(File);

impl Log {
    pub fn open(path: &Path) -> Log {
        Log(OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap())
    }

    /// Appends a line in one `write` call and waits for it to reach the disk, then reports it.
    pub fn line(&mut self, line: &str) {
        self.0.write_all(format!("{line}\n").as_bytes()).unwrap();
        self.0.sync_data().unwrap();
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{line}").unwrap();
        stdout.flush().unwrap();
    }
}
