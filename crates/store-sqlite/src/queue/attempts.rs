//! The marks of `Write::MarkAttempted` (see the parent module's docs): which ops
//! each row of `__attempted` still marks, and keeping those rows up to date.

use rusqlite::Connection;

use super::{Id, OpIndex};
use crate::error::{Result, SqlResultExt, corrupt};

/// One row of `__attempted`: the ops a push marked attempted at once, as far
/// as they are still marked so (an op written or deleted since leaves it).
#[derive(Debug, Default)]
pub(super) struct Attempts {
    ids: std::collections::HashSet<Id, foldhash::fast::RandomState>,
    /// The row no longer lists exactly `ids`: rewritten (or deleted, when
    /// `ids` is empty) at the end of the write batch.
    stale: bool,
}

impl OpIndex {
    /// The ops marked attempted by the rows of `__attempted` (a later row
    /// wins for an op listed twice; a row listing no queued op is deleted at
    /// the next write).
    pub(super) fn read_attempts(&mut self, conn: &Connection) -> Result<()> {
        let mut stmt = conn
            .prepare_cached("SELECT rowid, ops FROM __attempted ORDER BY rowid")
            .store()?;
        let mut rows = stmt.query([]).store()?;
        while let Some(row) = rows.next().store()? {
            let rowid: i64 = row.get(0).store()?;
            let text: String = row.get(1).store()?;
            let ids: Vec<String> = serde_json::from_str(&text)
                .map_err(|e| corrupt(format!("__attempted row {rowid}: {e}")))?;
            let mut live = Attempts {
                stale: true,
                ..Attempts::default()
            };
            for id in ids {
                if let Some((id, _)) = self.by_id.get_key_value(id.as_str()) {
                    let id = id.clone();
                    self.unmark(&id);
                    self.marked.insert(id.clone(), rowid);
                    live.ids.insert(id);
                }
            }
            // A row none of whose ops is queued goes at the next write; one that
            // still lists some gone ops is rewritten when one of its ops leaves it.
            live.stale = live.ids.is_empty();
            self.attempts.insert(rowid, live);
        }
        Ok(())
    }

    /// Marks the queued ops among `ids` attempted: one row of `__attempted`
    /// for all of them, instead of rewriting each op.
    pub(crate) fn mark_attempted(&mut self, conn: &Connection, ids: &[String]) -> Result<()> {
        self.record();
        let mut live = Attempts::default();
        for id in ids {
            if let Some((id, _)) = self.by_id.get_key_value(id.as_str()) {
                live.ids.insert(id.clone());
            }
        }
        if live.ids.is_empty() {
            return Ok(());
        }
        let listed: Vec<&str> = live.ids.iter().map(|id| &**id).collect();
        let text = serde_json::to_string(&listed)
            .map_err(|e| corrupt(format!("marking ops attempted: {e}")))?;
        conn.prepare_cached("INSERT INTO __attempted (ops) VALUES (?1)")
            .store()?
            .execute([text])
            .store()?;
        let rowid = conn.last_insert_rowid();
        for id in &live.ids {
            self.unmark(id);
            self.marked.insert(id.clone(), rowid);
        }
        self.attempts.insert(rowid, live);
        Ok(())
    }

    /// Forgets that op `id` was marked attempted by a row of `__attempted`
    /// (it has just been written or deleted); that row is brought up to date
    /// by [`OpIndex::flush_attempts`].
    pub(super) fn unmark(&mut self, id: &str) {
        if self.marked.is_empty() {
            return;
        }
        if let Some(rowid) = self.marked.remove(id) {
            if let Some(attempts) = self.attempts.get_mut(&rowid) {
                attempts.ids.remove(id);
                attempts.stale = true;
            }
        }
    }

    /// True when op `id` is marked attempted by a row of `__attempted`.
    pub(crate) fn is_marked(&self, id: &str) -> bool {
        !self.marked.is_empty() && self.marked.contains_key(id)
    }

    /// Rewrites the rows of `__attempted` that ops left in this write batch,
    /// deleting those that mark none any more (at the end of the batch).
    pub(crate) fn flush_attempts(&mut self, conn: &Connection) -> Result<()> {
        if self.attempts.is_empty() {
            return Ok(());
        }
        // An op rewritten by a local write in this batch leaves its row too.
        if !self.unrecorded.is_empty() && !self.marked.is_empty() {
            self.record();
        }
        for (rowid, attempts) in &mut self.attempts {
            if !attempts.stale {
                continue;
            }
            if attempts.ids.is_empty() {
                conn.prepare_cached("DELETE FROM __attempted WHERE rowid = ?1")
                    .store()?
                    .execute([*rowid])
                    .store()?;
            } else {
                let listed: Vec<&str> = attempts.ids.iter().map(|id| &**id).collect();
                let text = serde_json::to_string(&listed)
                    .map_err(|e| corrupt(format!("marking ops attempted: {e}")))?;
                conn.prepare_cached("UPDATE __attempted SET ops = ?1 WHERE rowid = ?2")
                    .store()?
                    .execute((text, *rowid))
                    .store()?;
            }
            attempts.stale = false;
        }
        self.attempts.retain(|_, attempts| !attempts.ids.is_empty());
        Ok(())
    }
}
