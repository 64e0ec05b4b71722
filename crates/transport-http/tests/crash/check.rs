//! The end state against the log and the server's record: nothing lost, nothing doubled.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::Value;
use tidesync_core::{Query, SyncContext};
use tidesync_server::store::{Mutation, Row};

use crate::log::{Kind, LogState, LoggedWrite, Status};

/// What one run found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub seed: u64,
    pub store: &'static str,
    pub kills: u64,
    /// The phase of each kill, from the last line the killed life logged.
    pub phases: BTreeMap<&'static str, u64>,
    /// Kills while the server held the answer to a write it had applied (a push).
    pub held_writes: u64,
    /// Kills while the server held a read (a pull).
    pub held_reads: u64,
    pub acked: usize,
    /// Acknowledged on an eventually durable store after its last close: may be undone.
    pub volatile: usize,
    /// Of those, how many the kill undid (not on the server at the end).
    pub undone: usize,
    pub cut_off: usize,
    pub refused: usize,
    /// The server's per-table write counter for `Note`.
    pub server_writes: u64,
    /// Writes the server applied to `Note`, by kind, from its record.
    pub applied_puts: u64,
    pub applied_deletes: u64,
    /// Client writes the applied puts carried, and how many of them rode in another write's
    /// request (an edit folded into the op before it was sent).
    pub carried: u64,
    pub folded: u64,
    pub lost: Vec<String>,
    pub doubled: Vec<String>,
    pub other: Vec<String>,
}

impl Outcome {
    pub fn summary(&self) -> String {
        let mut phases = String::new();
        for (phase, count) in &self.phases {
            let _ = write!(phases, "{phase} {count}, ");
        }
        format!(
            "client on {}: {} kill points survived ({}; {} while the server held a push's \
             answer, {} while it held a pull's read); {} acknowledged local writes ({} after \
             the store's last close, {} of them undone by the kill), {} cut off by a kill, {} \
             refused; the server applied {} writes to Note = {} puts carrying {} client writes \
             ({} folded into another's request) + {} deletes; lost {}, doubled {}, other \
             problems {}",
            self.store,
            self.kills,
            phases.trim_end_matches(", "),
            self.held_writes,
            self.held_reads,
            self.acked,
            self.volatile,
            self.undone,
            self.cut_off,
            self.refused,
            self.server_writes,
            self.applied_puts,
            self.carried,
            self.folded,
            self.applied_deletes,
            self.lost.len(),
            self.doubled.len(),
            self.other.len()
        )
    }

    pub fn assert_clean(&self) {
        let problems: Vec<&String> = self
            .lost
            .iter()
            .chain(&self.doubled)
            .chain(&self.other)
            .collect();
        assert!(
            problems.is_empty(),
            "{}\n{problems:#?}\n(replay with TIDESYNC_CRASH_SEED={})",
            self.summary(),
            self.seed
        );
    }
}

pub fn local_texts(ctx: &SyncContext, table: &str) -> BTreeMap<String, String> {
    ctx.query(table, &Query::all())
        .unwrap()
        .items
        .iter()
        .map(|item| {
            (
                item["id"].as_str().unwrap().to_owned(),
                item["text"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn text(row: &Row) -> &str {
    row.values.get("text").and_then(Value::as_str).unwrap_or("")
}

pub fn live_texts(rows: &[Row]) -> BTreeMap<String, String> {
    rows.iter()
        .filter(|row| !row.deleted)
        .map(|row| (row.id.clone(), text(row).to_owned()))
        .collect()
}

/// The entries of `a` that `b` lacks or holds differently.
pub fn diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<(String, String)> {
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn numbers(text: &str) -> Vec<u64> {
    text.split(',').filter_map(|n| n.parse().ok()).collect()
}

/// Checks the server's record of applied `Note` writes: each write of a row must carry at
/// least one client write the row had not received yet (a put extends the row's list of
/// write numbers; a delete comes once, last), and the server's counter must equal the
/// record. Then the counter is exactly `carried - folded + deletes`: no slack for doubles.
pub fn check_applied(applied: &[(String, Mutation)], outcome: &mut Outcome) {
    if applied.len() as u64 != outcome.server_writes {
        outcome.other.push(format!(
            "the server's counter says {} writes to Note, its record holds {}",
            outcome.server_writes,
            applied.len()
        ));
    }
    let mut rows: BTreeMap<&str, (Vec<u64>, bool)> = BTreeMap::new();
    for (id, mutation) in applied {
        let (before, deleted) = rows.entry(id.as_str()).or_default();
        let (text, removed) = match mutation {
            Mutation::Put {
                values, deleted, ..
            } => (
                values.get("text").and_then(Value::as_str).unwrap_or(""),
                *deleted,
            ),
            Mutation::Remove => ("", true),
        };
        if *deleted {
            outcome.doubled.push(format!(
                "{id}: the server applied a write after its delete: {mutation:?}"
            ));
            continue;
        }
        if removed {
            *deleted = true;
            outcome.applied_deletes += 1;
            continue;
        }
        let now = numbers(text);
        if !now.starts_with(before) {
            outcome.other.push(format!(
                "{id}: an applied write lost earlier ones: {before:?} then {now:?}"
            ));
        } else if now.len() == before.len() {
            outcome
                .doubled
                .push(format!("{id}: the server applied {now:?} again"));
        } else {
            let new = (now.len() - before.len()) as u64;
            outcome.applied_puts += 1;
            outcome.carried += new;
            outcome.folded += new - 1;
        }
        *before = now;
    }
    let expected = outcome.carried - outcome.folded + outcome.applied_deletes;
    if outcome.server_writes != expected {
        outcome.doubled.push(format!(
            "the server applied {} writes to Note; the client writes it received account for \
             exactly {expected} ({} carried - {} folded + {} deletes)",
            outcome.server_writes, outcome.carried, outcome.folded, outcome.applied_deletes
        ));
    }
}

/// Checks the server's live `Note` rows against the log.
pub fn check_log(log: &LogState, server: &BTreeMap<String, String>, outcome: &mut Outcome) {
    let mut by_id: BTreeMap<&str, Vec<(u64, &LoggedWrite)>> = BTreeMap::new();
    for (n, write) in &log.writes {
        match write.status {
            Status::Acked => outcome.acked += 1,
            Status::Volatile => {
                outcome.acked += 1;
                outcome.volatile += 1;
            }
            Status::CutOff => outcome.cut_off += 1,
            Status::Refused => outcome.refused += 1,
        }
        by_id.entry(&write.id).or_default().push((*n, write));
    }
    let mut seen_anywhere = BTreeSet::new();
    // Rows on the server: their write numbers.
    for (id, text) in server {
        let Some(writes) = by_id.get(id.as_str()) else {
            outcome
                .other
                .push(format!("{id} is on the server but no write made it"));
            continue;
        };
        let numbers = numbers(text);
        if numbers.windows(2).any(|w| w[0] >= w[1]) {
            outcome
                .doubled
                .push(format!("{id}: write numbers repeat or go back: {text}"));
        }
        let mut seen = BTreeSet::new();
        for (i, number) in numbers.iter().enumerate() {
            let made = writes.iter().find(|(n, _)| n == number);
            match made {
                Some((_, w)) if w.status == Status::Refused => outcome
                    .other
                    .push(format!("{id}: refused write {number} took effect")),
                Some((_, w)) if (i == 0) != (w.kind == Kind::Insert) => outcome
                    .other
                    .push(format!("{id}: write {number} ({:?}) at place {i}", w.kind)),
                Some(_) => {}
                None => outcome
                    .other
                    .push(format!("{id}: write {number} is not a write to this row")),
            }
            seen.insert(*number);
        }
        for (n, write) in writes {
            if write.kind == Kind::Delete || seen.contains(n) {
                continue;
            }
            match write.status {
                Status::Acked => outcome.lost.push(format!(
                    "{id}: acknowledged {:?} {n} is missing: {text}",
                    write.kind
                )),
                Status::Volatile => outcome.undone += 1,
                _ => {}
            }
        }
        seen_anywhere.extend(seen);
    }
    // Rows the log says must (not) be there: from the last write that certainly happened.
    for (id, writes) in &by_id {
        let last_acked = writes.iter().rev().find(|(_, w)| w.status == Status::Acked);
        let Some((last, write)) = last_acked else {
            continue;
        };
        // A delete after it that may have happened.
        let maybe_deleted = writes.iter().any(|(n, w)| {
            n > last
                && w.kind == Kind::Delete
                && matches!(w.status, Status::CutOff | Status::Volatile)
        });
        let there = server.contains_key(*id);
        match write.kind {
            Kind::Delete if there => outcome
                .lost
                .push(format!("{id}: the acknowledged delete {last} is undone")),
            Kind::Insert | Kind::Update if !there && !maybe_deleted => outcome.lost.push(format!(
                "{id}: acknowledged {:?} {last}, but no row",
                write.kind
            )),
            _ => {}
        }
    }
    // Undone inserts of rows that never reached the server are counted too.
    for (n, write) in &log.writes {
        if write.status == Status::Volatile
            && write.kind == Kind::Insert
            && !server.contains_key(&write.id)
            && !seen_anywhere.contains(n)
        {
            outcome.undone += 1;
        }
    }
}
