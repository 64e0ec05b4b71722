//! The batch extension on PostgreSQL: one transaction per batch, each op decided before
//! anything of it is written (see `store::batch`). The batch's op ids are locked
//! (transaction-scoped advisory locks, taken sorted in one statement) before they are looked
//! up, so two servers given the same batch at once apply it once: the second waits, then finds
//! the first one's remembered results. The lookup is one query and the results to remember
//! are inserted with one statement after the last op; the per-op statements come from the
//! connection's statement cache.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use deadpool_postgres::Transaction;

use super::super::batch::{BatchWrite, OPS_TABLE};
use super::super::schema::TableSchema;
use super::super::{Decide, Mutation, Written, now_ms};
use super::{PostgresStore, decode_row, pg_error, quote};
use crate::error::ServerError;

/// What the batch knows about an op id besides its fingerprint.
enum Known {
    /// The result remembered by an earlier batch.
    Stored(String),
    /// Applied by this batch: the index of its result, remembered at the end.
    Applied(usize),
}

/// The DDL of the remembered-ops table in `schema` (run by `prepare_table`, under the
/// schema lock).
pub(super) fn ops_table_ddl(schema: &str) -> String {
    let table = format!("{}.{}", quote(schema), quote(OPS_TABLE));
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            op_id TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            result TEXT NOT NULL,
            at BIGINT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS {} ON {table} (at);",
        quote(&format!("{OPS_TABLE}_at"))
    )
}

impl PostgresStore {
    pub(super) async fn apply_batch(
        &self,
        writes: Vec<BatchWrite>,
        retention_ms: i64,
    ) -> Result<Vec<String>, ServerError> {
        // Reloaded once per batch: another server may have added columns.
        let mut schemas: HashMap<String, Result<TableSchema, String>> = HashMap::new();
        let tables: Vec<String> = writes.iter().map(|w| w.table.clone()).collect();
        for table in tables {
            if let Entry::Vacant(slot) = schemas.entry(table) {
                let schema = match self.fresh_schema(slot.key()).await {
                    Ok(schema) => Ok(schema),
                    Err(ServerError::UnknownTable { table }) => Err(table),
                    Err(other) => return Err(other),
                };
                slot.insert(schema);
            }
        }
        let ops = format!("{}.{}", quote(&self.schema), quote(OPS_TABLE));
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let now = now_ms();
        tx.execute(
            &format!("DELETE FROM {ops} WHERE at < $1"),
            &[&now.saturating_sub(retention_ms)],
        )
        .await
        .map_err(pg_error)?;
        // Lock every op id of the batch (sorted, so two batches sharing ids cannot deadlock on
        // them), then recall the remembered ones, in one round trip each.
        let op_ids: Vec<&str> = writes.iter().map(|w| w.op_id.as_str()).collect();
        let lock = tx
            .prepare_cached(
                "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT
                   hashtextextended('op/' || k, 1) AS h FROM unnest($1::text[]) AS k ORDER BY h) AS l",
            )
            .await
            .map_err(pg_error)?;
        tx.execute(&lock, &[&op_ids]).await.map_err(pg_error)?;
        let recall = tx
            .prepare_cached(&format!(
                "SELECT op_id, fingerprint, result FROM {ops} WHERE op_id = ANY($1::text[])"
            ))
            .await
            .map_err(pg_error)?;
        let mut known: HashMap<String, (String, Known)> = HashMap::with_capacity(writes.len());
        for row in tx.query(&recall, &[&op_ids]).await.map_err(pg_error)? {
            known.insert(row.get(0), (row.get(1), Known::Stored(row.get(2))));
        }
        let mut results: Vec<String> = Vec::with_capacity(writes.len());
        for write in writes {
            if let Some((fingerprint, result)) = known.get(&write.op_id) {
                if *fingerprint == write.fingerprint {
                    let result = match result {
                        Known::Stored(result) => result.clone(),
                        Known::Applied(at) => results.get(*at).cloned().unwrap_or_default(),
                    };
                    results.push(result);
                    continue;
                }
            }
            let outcome = match schemas.get(&write.table) {
                Some(Ok(schema)) => self.apply_one(&tx, schema, &write.id, write.decide).await?,
                Some(Err(table)) => Err(ServerError::UnknownTable {
                    table: table.clone(),
                }),
                None => Err(ServerError::UnknownTable {
                    table: write.table.clone(),
                }),
            };
            let rendered = (write.render)(outcome);
            if rendered.remember {
                known.insert(
                    write.op_id,
                    (write.fingerprint, Known::Applied(results.len())),
                );
            }
            results.push(rendered.json);
        }
        // The results this batch applied (the last one per op id), in one statement.
        let mut remembered: (Vec<&str>, Vec<&str>, Vec<&str>) = Default::default();
        for (op_id, (fingerprint, result)) in &known {
            if let Known::Applied(at) = result {
                if let Some(result) = results.get(*at) {
                    remembered.0.push(op_id);
                    remembered.1.push(fingerprint);
                    remembered.2.push(result);
                }
            }
        }
        if !remembered.0.is_empty() {
            let remember = tx
                .prepare_cached(&format!(
                    "INSERT INTO {ops} (op_id, fingerprint, result, at)
                     SELECT o, f, r, $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS t (o, f, r)
                     ON CONFLICT (op_id) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,
                       result = EXCLUDED.result, at = EXCLUDED.at"
                ))
                .await
                .map_err(pg_error)?;
            tx.execute(
                &remember,
                &[&remembered.0, &remembered.1, &remembered.2, &now],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(results)
    }

    /// Decides and writes one op, as `write` does. The outer error aborts the batch; the
    /// inner one is the op's refusal, and then nothing of the op was written.
    async fn apply_one(
        &self,
        tx: &Transaction<'_>,
        schema: &TableSchema,
        id: &str,
        decide: Decide,
    ) -> Result<Result<Written, ServerError>, ServerError> {
        let table = schema.spec.name.as_str();
        let key = format!("{table}/{id}");
        let lock = tx
            .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .await
            .map_err(pg_error)?;
        tx.execute(&lock, &[&key]).await.map_err(pg_error)?;
        let select = tx
            .prepare_cached(&format!(
                "SELECT {} FROM {} WHERE \"id\" = $1 FOR UPDATE",
                Self::column_list(schema),
                self.table(table)
            ))
            .await
            .map_err(pg_error)?;
        let existing = tx
            .query_opt(&select, &[&id])
            .await
            .map_err(pg_error)?
            .map(|r| decode_row(&r, schema))
            .transpose()?;
        let mutation = match decide(existing.as_ref()) {
            Ok(mutation) => mutation,
            Err(refused) => return Ok(Err(refused)),
        };
        match mutation {
            Mutation::Remove => {
                let Some(row) = existing else {
                    return Ok(Err(ServerError::NotFound));
                };
                let delete = tx
                    .prepare_cached(&format!(
                        "DELETE FROM {} WHERE \"id\" = $1",
                        self.table(table)
                    ))
                    .await
                    .map_err(pg_error)?;
                tx.execute(&delete, &[&id]).await.map_err(pg_error)?;
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
                let row = self
                    .stamp_and_store(tx, schema, id, existing.as_ref(), &values, deleted)
                    .await?;
                Ok(Ok(Written::Stored(row)))
            }
        }
    }
}
