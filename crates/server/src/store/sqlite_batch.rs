//! The batch extension on SQLite: one `IMMEDIATE` transaction per batch on the writer
//! connection, each op decided before anything of it is written (see `store::batch`).

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::super::batch::{BatchWrite, OPS_TABLE};
use super::super::{Decide, Mutation, Written, now_ms};
use super::{Inner, SqliteStore, quote, select_row, stamp, store_row};
use crate::error::ServerError;

/// The DDL of the remembered-ops table (run when the store opens).
pub(super) fn ops_table_ddl() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {OPS_TABLE} (
            op_id TEXT PRIMARY KEY NOT NULL,
            fingerprint TEXT NOT NULL,
            result TEXT NOT NULL,
            at INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS {OPS_TABLE}_at ON {OPS_TABLE} (at);"
    )
}

impl SqliteStore {
    pub(super) async fn apply_batch(
        &self,
        writes: Vec<BatchWrite>,
        retention_ms: i64,
    ) -> Result<Vec<String>, ServerError> {
        self.with_writer(move |conn, inner| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(ServerError::store)?;
            let now = now_ms();
            tx.prepare_cached(&format!("DELETE FROM {OPS_TABLE} WHERE at < ?1"))
                .and_then(|mut s| s.execute([now.saturating_sub(retention_ms)]))
                .map_err(ServerError::store)?;
            let mut results = Vec::with_capacity(writes.len());
            for write in writes {
                let known: Option<(String, String)> = tx
                    .prepare_cached(&format!(
                        "SELECT fingerprint, result FROM {OPS_TABLE} WHERE op_id = ?1"
                    ))
                    .and_then(|mut s| {
                        s.query_row([&write.op_id], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()
                    })
                    .map_err(ServerError::store)?;
                if let Some((fingerprint, result)) = known {
                    if fingerprint == write.fingerprint {
                        results.push(result);
                        continue;
                    }
                }
                let outcome = apply_one(&tx, inner, &write.table, &write.id, write.decide)?;
                let rendered = (write.render)(outcome);
                if rendered.remember {
                    tx.prepare_cached(&format!(
                        "INSERT OR REPLACE INTO {OPS_TABLE} (op_id, fingerprint, result, at)
                         VALUES (?1, ?2, ?3, ?4)"
                    ))
                    .and_then(|mut s| {
                        s.execute(rusqlite::params![
                            write.op_id,
                            write.fingerprint,
                            rendered.json,
                            now
                        ])
                    })
                    .map_err(ServerError::store)?;
                }
                results.push(rendered.json);
            }
            tx.commit().map_err(ServerError::store)?;
            Ok(results)
        })
        .await
    }
}

/// Decides and writes one op. The outer error aborts the batch (the database failed); the
/// inner one is the op's own refusal, and then nothing of the op was written.
fn apply_one(
    conn: &Connection,
    inner: &Inner,
    table: &str,
    id: &str,
    decide: Decide,
) -> Result<Result<Written, ServerError>, ServerError> {
    let schema = match inner.schemas.get(table) {
        Ok(schema) => schema,
        Err(refused) => return Ok(Err(refused)),
    };
    let existing = select_row(conn, &schema, id)?;
    let mutation = match decide(existing.as_ref()) {
        Ok(mutation) => mutation,
        Err(refused) => return Ok(Err(refused)),
    };
    match mutation {
        Mutation::Remove => {
            let Some(row) = existing else {
                return Ok(Err(ServerError::NotFound));
            };
            conn.prepare_cached(&format!("DELETE FROM {} WHERE \"id\" = ?1", quote(table)))
                .and_then(|mut s| s.execute([id]))
                .map_err(ServerError::store)?;
            Ok(Ok(Written::Removed(row)))
        }
        Mutation::Put { values, deleted } => {
            match schema.missing_columns(&values) {
                Ok(missing) if missing.is_empty() => {}
                Ok(missing) => {
                    let names: Vec<&str> = missing.iter().map(|(n, _)| n.as_str()).collect();
                    return Ok(Err(ServerError::Internal(format!(
                        "columns {names:?} were not learned before the write"
                    ))));
                }
                Err(refused) => return Ok(Err(refused)),
            }
            let (updated_at_ms, version) = stamp(conn, table)?;
            let row = schema.stamped_row(
                id,
                existing.as_ref(),
                updated_at_ms,
                version,
                deleted,
                &values,
            );
            store_row(conn, &schema, &row, existing.is_some())?;
            Ok(Ok(Written::Stored(row)))
        }
    }
}
