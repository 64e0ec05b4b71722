//! The batch extension on SQLite: one `IMMEDIATE` transaction per batch on the writer
//! connection, each op decided before anything of it is written (see `store::batch`).
//!
//! The per-op work is kept close to the row write itself: the batch's remembered ops are
//! looked up in one query, each table's [`TableWriter`] (schema, statement texts, write
//! clock) is set up once per batch (the clock is written back once, before the commit), and
//! the results to remember are stored after the last op.

use std::collections::HashMap;

use rusqlite::{Connection, TransactionBehavior};

use super::super::batch::{BatchWrite, LEGACY_OPS_TABLE, OPS_TABLE, OpKey};
use super::super::{StoreError, now_ms};
use super::SqliteStore;
use super::write::TableWriter;

/// The DDL of the remembered-ops table (run when the store opens). A rowid table: its records
/// are appended in order, only the small key and `at` index entries land at random. The key
/// leads with the user and the op id, the two a batch looks its ops up by.
pub(super) fn ops_table_ddl() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {OPS_TABLE} (
            user_id TEXT NOT NULL,
            op_id TEXT NOT NULL,
            table_name TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            result TEXT NOT NULL,
            at INTEGER NOT NULL,
            PRIMARY KEY (user_id, op_id, table_name)
        );
        CREATE INDEX IF NOT EXISTS {OPS_TABLE}_at ON {OPS_TABLE} (at);
        DROP TABLE IF EXISTS {LEGACY_OPS_TABLE};"
    )
}

/// What the batch knows about an op id: remembered before it, or applied by it.
struct Known {
    fingerprint: String,
    result: KnownResult,
}

enum KnownResult {
    /// The result remembered by an earlier batch.
    Stored(String),
    /// Applied by this batch: the index of its result, to remember at the end.
    Applied(usize),
}

impl SqliteStore {
    pub(super) async fn apply_batch(
        &self,
        writes: Vec<BatchWrite>,
        retention_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.with_writer(move |conn, inner| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(StoreError::backend)?;
            let now = now_ms();
            tx.prepare_cached(&format!("DELETE FROM {OPS_TABLE} WHERE at < ?1"))
                .and_then(|mut s| s.execute([now.saturating_sub(retention_ms)]))
                .map_err(StoreError::backend)?;
            let mut known = recall(&tx, &writes)?;
            let mut tables: HashMap<String, TableWriter> = HashMap::new();
            let mut results: Vec<String> = Vec::with_capacity(writes.len());
            for write in writes {
                let key = write.key();
                if let Some(entry) = known.get(&key) {
                    if entry.fingerprint == write.fingerprint {
                        let result = match &entry.result {
                            KnownResult::Stored(result) => result.clone(),
                            KnownResult::Applied(at) => {
                                results.get(*at).cloned().unwrap_or_default()
                            }
                        };
                        results.push(result);
                        continue;
                    }
                }
                let table = match tables.entry(write.table.clone()) {
                    std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                    std::collections::hash_map::Entry::Vacant(entry) => {
                        entry.insert(TableWriter::new(inner.schemas.get(&write.table)?))
                    }
                };
                let outcome = table.apply(&tx, &write.id, &write.decide)?;
                let rendered = (write.render)(outcome);
                if rendered.remember {
                    known.insert(
                        key,
                        Known {
                            fingerprint: write.fingerprint,
                            result: KnownResult::Applied(results.len()),
                        },
                    );
                }
                results.push(rendered.json);
            }
            for table in tables.values() {
                table.save_clock(&tx)?;
            }
            remember(&tx, &known, &results, now)?;
            tx.commit().map_err(StoreError::backend)?;
            for table in tables.into_values() {
                if let Some(schema) = table.learned() {
                    inner.schemas.put(schema)?;
                }
            }
            Ok(results)
        })
        .await
    }
}

/// The remembered ops of the batch's op ids, in one query per user (a batch has one).
fn recall(conn: &Connection, writes: &[BatchWrite]) -> Result<HashMap<OpKey, Known>, StoreError> {
    let mut known = HashMap::with_capacity(writes.len());
    let mut by_user: HashMap<&str, Vec<&str>> = HashMap::new();
    for write in writes {
        by_user
            .entry(write.user.as_str())
            .or_default()
            .push(write.op_id.as_str());
    }
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT op_id, table_name, fingerprint, result FROM {OPS_TABLE}
             WHERE user_id = ?1 AND op_id IN (SELECT value FROM json_each(?2))"
        ))
        .map_err(StoreError::backend)?;
    for (user, op_ids) in by_user {
        let op_ids = serde_json::to_string(&op_ids).map_err(StoreError::backend)?;
        let mut rows = statement
            .query(rusqlite::params![user, op_ids])
            .map_err(StoreError::backend)?;
        while let Some(row) = rows.next().map_err(StoreError::backend)? {
            let key = OpKey {
                user: user.to_owned(),
                op_id: row.get(0).map_err(StoreError::backend)?,
                table: row.get(1).map_err(StoreError::backend)?,
            };
            known.insert(
                key,
                Known {
                    fingerprint: row.get(2).map_err(StoreError::backend)?,
                    result: KnownResult::Stored(row.get(3).map_err(StoreError::backend)?),
                },
            );
        }
    }
    Ok(known)
}

/// Remembers the results of the ops this batch applied (the last one per key). One row per
/// statement run: a multi-row insert would need a statement journal, which costs more.
fn remember(
    conn: &Connection,
    known: &HashMap<OpKey, Known>,
    results: &[String],
    now: i64,
) -> Result<(), StoreError> {
    let mut statement = conn
        .prepare_cached(&format!(
            "INSERT OR REPLACE INTO {OPS_TABLE}
               (user_id, op_id, table_name, fingerprint, result, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        ))
        .map_err(StoreError::backend)?;
    for (key, entry) in known {
        let KnownResult::Applied(at) = entry.result else {
            continue;
        };
        let Some(result) = results.get(at) else {
            continue;
        };
        statement
            .execute(rusqlite::params![
                key.user,
                key.op_id,
                key.table,
                entry.fingerprint,
                result,
                now
            ])
            .map_err(StoreError::backend)?;
    }
    Ok(())
}
