//! The parent's side of the crash test: the child's acknowledgement log, the store states it
//! allows after a kill, and the comparison with what the reopened store holds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use tidesync_protocol::odata::Query;

use super::{CrashMode, NEXT, Promise, item_id};
use crate::error::StoreError;
use crate::testkit::QueueView;

/// What the crash test saw, over all rounds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Kills survived.
    pub rounds: u32,
    /// Batches the writer reported as written.
    pub acknowledged: u64,
    /// Kills that came while a batch was being written, and the batch was found whole.
    pub in_flight_kept: u64,
    /// Kills that came while a batch was being written, and the batch was found absent.
    pub in_flight_dropped: u64,
    /// Acknowledged batches a [`Promise::UntilClose`] store dropped (written after its last
    /// close, so allowed).
    pub dropped_after_close: u64,
    /// Items in the store after the last round.
    pub items: usize,
}

impl fmt::Display for CrashReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} kills; {} acknowledged batches, all found but {} written after the last close \
             (allowed by the promise); the batch in flight at the kill found whole {} times and \
             absent {} times; {} items at the end",
            self.rounds,
            self.acknowledged,
            self.dropped_after_close,
            self.in_flight_kept,
            self.in_flight_dropped,
            self.items
        )
    }
}

/// A broken promise: the round, and what the reopened store holds that it should not (or
/// lacks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashFailure {
    /// The mode's name.
    pub mode: String,
    /// The round (kill) that found it, from 0.
    pub round: u32,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CrashFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "crash test {}, round {}: {}",
            self.mode, self.round, self.message
        )
    }
}

/// One batch from the log: the items `first..=last` added, the item `removed` taken out.
#[derive(Debug, Clone, Copy)]
struct Batch {
    first: u64,
    last: u64,
    removed: Option<u64>,
}

/// The child's log of one round.
#[derive(Debug, Default)]
pub(super) struct RoundLog {
    /// Every batch begun, in order (batch `k` at index `k - 1`).
    batches: Vec<Batch>,
    /// The last acknowledged batch (`A k`), 0 for none.
    acknowledged: u64,
    /// The last batch followed by a close and reopen (`D k`), 0 for none.
    closed: u64,
}

impl RoundLog {
    pub(super) fn read(path: &Path) -> RoundLog {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut log = RoundLog::default();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            match fields.first().copied() {
                // A torn last line (the kill came inside the `write` call) says nothing.
                Some("B") => {
                    if let (Some(k), Some(first), Some(last)) = (number(1), number(2), number(3)) {
                        if k as usize == log.batches.len() + 1 && fields.len() == 5 {
                            log.batches.push(Batch {
                                first,
                                last,
                                removed: number(4),
                            });
                        }
                    }
                }
                Some("A") => log.acknowledged = number(1).unwrap_or(log.acknowledged),
                Some("D") => log.closed = number(1).unwrap_or(log.closed),
                _ => {}
            }
        }
        log
    }
}

/// The store's content as far as the test sees it: the items (by number) and the next
/// sequence number in the metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Survivor {
    items: BTreeSet<u64>,
    next: Option<u64>,
}

impl Survivor {
    fn after(&self, batch: &Batch) -> Survivor {
        let mut items = self.items.clone();
        items.extend(batch.first..=batch.last);
        if let Some(removed) = batch.removed {
            items.remove(&removed);
        }
        Survivor {
            items,
            next: Some(batch.last + 1),
        }
    }
}

/// Reopens the store after round `round`'s kill and checks it against the state `before`
/// the round and the round's log. Returns the state found, the start of the next round.
pub(super) fn check_round(
    mode: &CrashMode<'_>,
    path: &Path,
    round: u32,
    before: &Survivor,
    log: &RoundLog,
    report: &mut CrashReport,
) -> Result<Survivor, CrashFailure> {
    let fail = |message: String| CrashFailure {
        mode: mode.name.to_owned(),
        round,
        message,
    };
    let found = read_store(mode, path).map_err(fail)?;
    // The states the log allows: after batch k, for k from `floor` to every batch begun.
    let begun = log.batches.len() as u64;
    let floor = match mode.promise {
        Promise::EveryAcknowledged => log.acknowledged,
        Promise::UntilClose { .. } => log.closed,
    };
    let mut states = vec![before.clone()];
    for batch in &log.batches {
        let next = states[states.len() - 1].after(batch);
        states.push(next);
    }
    let matched = (floor..=begun).find(|&k| states[k as usize] == found);
    let Some(k) = matched else {
        return Err(fail(explain(&found, &states, log, floor)));
    };
    report.rounds += 1;
    report.acknowledged += log.acknowledged;
    report.dropped_after_close += log.acknowledged.saturating_sub(k);
    if begun > log.acknowledged {
        if k == begun {
            report.in_flight_kept += 1;
        } else {
            report.in_flight_dropped += 1;
        }
    }
    report.items = found.items.len();
    Ok(found)
}

/// Reads the items, the queue and the metadata, checking that every item has exactly its op.
fn read_store(mode: &CrashMode<'_>, path: &Path) -> Result<Survivor, String> {
    let store = match mode.factory.open(path) {
        Ok(store) => store,
        Err(StoreError::Busy(_)) => return Err("the killed child still holds the file".into()),
        Err(e) => return Err(format!("reopen failed: {e}")),
    };
    let io = |e: StoreError| format!("reading the reopened store failed: {e}");
    if store.table("notes").map_err(io)?.is_none() {
        // Killed before its first definition committed.
        return Ok(Survivor::default());
    }
    let mut items = BTreeSet::new();
    for item in store.query("notes", &Query::all()).map_err(io)?.items {
        let n = item["n"]
            .as_u64()
            .ok_or(format!("an item without n: {item:?}"))?;
        if item["id"] != item_id(n).as_str() {
            return Err(format!("item {n} has the id {}", item["id"]));
        }
        items.insert(n);
    }
    let ops = store.operations(0, usize::MAX).map_err(io)?;
    let op_items: BTreeSet<u64> = ops.iter().map(|op| op.sequence).collect();
    if ops.len() != op_items.len() || op_items != items {
        return Err(format!(
            "items and queue disagree: items without an op {:?}, ops without an item {:?}",
            items.difference(&op_items).collect::<Vec<_>>(),
            op_items.difference(&items).collect::<Vec<_>>()
        ));
    }
    if let Some(op) = ops.iter().find(|op| op.item_id != item_id(op.sequence)) {
        return Err(format!("op {} points at {}", op.id, op.item_id));
    }
    // The (table, id) lookup on a spread of about 200 items: every item would make each
    // round's check cost grow with everything written so far.
    for n in items.iter().step_by(items.len() / 200 + 1) {
        let found = store
            .operations_for("notes", &item_id(*n))
            .map_err(io)?
            .len();
        if found != 1 {
            return Err(format!("the lookup of item {n} found {found} ops"));
        }
    }
    let counted = store.count_operations(None).map_err(io)?;
    if counted != ops.len() as u64 {
        return Err(format!("{counted} ops counted, {} listed", ops.len()));
    }
    let next = store
        .config(NEXT)
        .map_err(io)?
        .map(|v| {
            v.parse::<u64>()
                .map_err(|e| format!("{NEXT} is {v:?}: {e}"))
        })
        .transpose()?;
    let max = store.max_sequence().map_err(io)?;
    if max >= next.unwrap_or(1) {
        return Err(format!(
            "the sequence counter ({next:?}) is behind the queue ({max}): it did not travel with its batch"
        ));
    }
    Ok(Survivor { items, next })
}

/// Why `found` is none of the allowed states `states[floor..]`: its difference from the
/// nearest one, each item named with the batch that wrote or removed it.
fn explain(found: &Survivor, states: &[Survivor], log: &RoundLog, floor: u64) -> String {
    let (k, nearest) = states
        .iter()
        .enumerate()
        .skip(floor as usize)
        .min_by_key(|(_, s)| s.items.symmetric_difference(&found.items).count())
        .unwrap_or((0, &states[0]));
    let mut writer: BTreeMap<u64, usize> = BTreeMap::new();
    let mut remover: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, batch) in log.batches.iter().enumerate() {
        for n in batch.first..=batch.last {
            writer.insert(n, i + 1);
        }
        if let Some(n) = batch.removed {
            remover.insert(n, i + 1);
        }
    }
    let acknowledged = log.acknowledged as usize;
    // Keyed by the batch number (0 for none), so the message lists batches in order.
    let mut missing: BTreeMap<(usize, String), Vec<u64>> = BTreeMap::new();
    for n in nearest.items.difference(&found.items) {
        let key = match writer.get(n) {
            Some(&b) if b <= acknowledged => (b, format!("acknowledged batch {b}")),
            Some(&b) => (b, format!("batch {b} (in flight)")),
            None => (0, "a batch of an earlier round".to_owned()),
        };
        missing.entry(key).or_default().push(*n);
    }
    let mut extra: BTreeMap<(usize, String), Vec<u64>> = BTreeMap::new();
    for n in found.items.difference(&nearest.items) {
        let key = match (remover.get(n), writer.get(n)) {
            (Some(&b), _) => (b, format!("removed by batch {b}, yet there")),
            (None, Some(&b)) => (
                b,
                format!("written by batch {b} (not acknowledged), half there"),
            ),
            (None, None) => (0, "written by no batch".to_owned()),
        };
        extra.entry(key).or_default().push(*n);
    }
    let mut message = format!(
        "the store matches no state the log allows (after batch {floor} to {}; {} acknowledged, \
         {} closed); nearest: after batch {k}.",
        log.batches.len(),
        log.acknowledged,
        log.closed
    );
    for ((_, what), items) in missing {
        message.push_str(&format!(" Missing, from {what}: items {items:?}."));
    }
    for ((_, what), items) in extra {
        message.push_str(&format!(" Present, {what}: items {items:?}."));
    }
    if found.next != nearest.next {
        message.push_str(&format!(
            " The sequence metadata is {:?}, not {:?}.",
            found.next, nearest.next
        ));
    }
    message
}
