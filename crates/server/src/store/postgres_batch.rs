//! The batch extension on PostgreSQL: one transaction per batch, each op decided before
//! anything of it is written (see `store::batch`). An op id is locked (transaction-scoped
//! advisory lock) before it is looked up, so two servers given the same batch at once apply
//! it once: the second waits, then finds the first one's remembered result.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use tokio_postgres::Transaction;

use super::super::batch::{BatchWrite, OPS_TABLE};
use super::super::schema::TableSchema;
use super::super::{Decide, Mutation, Written, now_ms};
use super::{PostgresStore, decode_row, pg_error, quote};
use crate::error::ServerError;

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
        let lock = tx
            .prepare("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))")
            .await
            .map_err(pg_error)?;
        let recall = tx
            .prepare(&format!(
                "SELECT fingerprint, result FROM {ops} WHERE op_id = $1"
            ))
            .await
            .map_err(pg_error)?;
        let remember = tx
            .prepare(&format!(
                "INSERT INTO {ops} (op_id, fingerprint, result, at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (op_id) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,
                   result = EXCLUDED.result, at = EXCLUDED.at"
            ))
            .await
            .map_err(pg_error)?;
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            let key = format!("op/{}", write.op_id);
            tx.execute(&lock, &[&key]).await.map_err(pg_error)?;
            if let Some(known) = tx
                .query_opt(&recall, &[&write.op_id])
                .await
                .map_err(pg_error)?
            {
                let fingerprint: String = known.get(0);
                if fingerprint == write.fingerprint {
                    results.push(known.get::<_, String>(1));
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
                tx.execute(
                    &remember,
                    &[&write.op_id, &write.fingerprint, &rendered.json, &now],
                )
                .await
                .map_err(pg_error)?;
            }
            results.push(rendered.json);
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
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&key],
        )
        .await
        .map_err(pg_error)?;
        let existing = tx
            .query_opt(
                &format!(
                    "SELECT {} FROM {} WHERE \"id\" = $1 FOR UPDATE",
                    Self::column_list(schema),
                    self.table(table)
                ),
                &[&id],
            )
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
                tx.execute(
                    &format!("DELETE FROM {} WHERE \"id\" = $1", self.table(table)),
                    &[&id],
                )
                .await
                .map_err(pg_error)?;
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
                    .stamp_and_store(tx, table, schema, id, existing.as_ref(), &values, deleted)
                    .await?;
                Ok(Ok(Written::Stored(row)))
            }
        }
    }
}
