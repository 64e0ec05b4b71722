//! A pull's progress as change events ([`ChangeEvent::PullProgress`], which the
//! sync status keeps per table): rows applied and the total when known,
//! throttled by time so that a pull of many small pages does not announce every
//! one, with a last report when the pull has applied its last row.

use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::events::ChangeEvent;

/// At most one report per this long (and one at the end).
const EVERY: Duration = Duration::from_millis(100);

/// The progress of one pull.
#[derive(Debug)]
pub(super) struct Progress {
    table: String,
    applied: u64,
    total: Option<u64>,
    /// When the last report went out; `None` before the first.
    reported_at: Option<Instant>,
    /// True when the last count was reported.
    told: bool,
}

impl Progress {
    pub(super) fn new(table: &str) -> Self {
        Self {
            table: table.to_owned(),
            applied: 0,
            total: None,
            reported_at: None,
            told: true,
        }
    }

    /// The total, once the server said (a later count replaces an earlier one).
    pub(super) fn set_total(&mut self, total: Option<u64>) {
        if total.is_some() {
            self.total = total;
        }
    }

    /// The total, when known.
    pub(super) fn total(&self) -> Option<u64> {
        self.total
    }

    /// Counts `rows` applied; reports when the last report is old enough.
    pub(super) fn applied(&mut self, engine: &Engine, rows: u64) {
        if rows == 0 {
            return;
        }
        self.applied += rows;
        self.told = false;
        if self.reported_at.is_none_or(|at| at.elapsed() >= EVERY) {
            self.report(engine);
        }
    }

    /// The last report, unless the last count went out already.
    pub(super) fn finish(&mut self, engine: &Engine) {
        if !self.told {
            self.report(engine);
        }
    }

    fn report(&mut self, engine: &Engine) {
        self.reported_at = Some(Instant::now());
        self.told = true;
        engine.emit(ChangeEvent::PullProgress {
            table: self.table.clone(),
            applied: self.applied,
            total: self.total.map(|t| t.max(self.applied)),
        });
    }
}
