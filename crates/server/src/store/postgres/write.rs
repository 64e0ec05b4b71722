//! One row write on PostgreSQL, as a single request and each op of a batch make it (the
//! item is locked already): read the row, run the decision, add its new columns (only
//! under the table lock), stamp from the table clock, store.

use std::future::Future;

use deadpool_postgres::Transaction;

use super::super::schema::{TableSchema, TableSpec};
use super::super::{Decide, Mutation, Outcome, Refusal, StoreError, Written};
use super::rows::{column_list, decode_row};
use super::{PgFailure, PostgresStore, lock_items, pg_error};

/// A table a write transaction writes, as that transaction sees it.
pub(super) struct TableWriter {
    schema: TableSchema,
    /// Whether a write added columns (the cache takes the schema after the commit).
    learned: bool,
}

impl TableWriter {
    pub(super) fn new(schema: TableSchema) -> TableWriter {
        TableWriter {
            schema,
            learned: false,
        }
    }

    /// The schema with the columns the writes added, if they added any.
    pub(super) fn learned(self) -> Option<TableSchema> {
        self.learned.then_some(self.schema)
    }
}

/// How one write went.
pub(super) enum Applied {
    /// Decided (and written, if `Ok`).
    Done(Outcome),
    /// The decision adds columns and the transaction does not hold the table's lock: start
    /// over with the lock taken first (nothing of this attempt may be kept).
    NeedsTableLock,
}

impl PostgresStore {
    /// Runs `attempt` (a whole write transaction) again when it failed on a deadlock or a
    /// serialization failure, at most `limits.write_retries` times: decisions depend on what
    /// the transaction reads only, so a second run decides afresh. Past the retries the
    /// write answers busy (503), never a server error.
    pub(super) async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut failures = 0u32;
        loop {
            match attempt().await {
                Err(error) if PgFailure::is_retryable(&error) => {
                    self.run_again(&mut failures, &error)?;
                }
                other => return other,
            }
        }
    }

    /// Counts one more contention failure of a write: `Ok` to run it again, or the busy
    /// refusal once `limits.write_retries` are used up.
    pub(super) fn run_again(
        &self,
        failures: &mut u32,
        error: &StoreError,
    ) -> Result<(), StoreError> {
        *failures += 1;
        if *failures > self.limits.write_retries {
            tracing::warn!(%error, failures, "a write kept losing to other writes");
            return Err(StoreError::Busy {
                limit: "limits.write_retries",
                message: "the write kept conflicting with other writes; try again".to_owned(),
            });
        }
        tracing::info!(%error, failures, "write run again after contention");
        Ok(())
    }

    /// One run of a single write: its item lock, then (only when its decision adds columns:
    /// it starts over for that) the table lock, then the decision and the write.
    pub(super) async fn write_once(
        &self,
        spec: &TableSpec,
        id: &str,
        decide: &Decide,
    ) -> Result<Outcome, StoreError> {
        let table = spec.name.as_str();
        // A write that adds columns needs the table's ACCESS EXCLUSIVE lock. It is taken
        // right after the item lock, before any other lock on the table, so that two such
        // writes cannot deadlock upgrading their locks; the first attempt runs without it and
        // only a decision that adds columns runs again under it (a refused write never
        // locks the table).
        let mut lock_table = false;
        loop {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            lock_items(&tx, &[(table, id)]).await?;
            if lock_table {
                self.lock_table(&tx, table, "ACCESS EXCLUSIVE").await?;
            }
            // Loaded in the transaction: another server may have added columns, which a
            // full replace must clear.
            let mut writer = TableWriter::new(self.columns_in(&tx, spec.clone()).await?);
            let outcome = match self
                .apply_write(&tx, &mut writer, lock_table, id, decide)
                .await?
            {
                Applied::Done(outcome) => outcome,
                Applied::NeedsTableLock => {
                    tx.rollback().await.map_err(pg_error)?;
                    lock_table = true;
                    continue;
                }
            };
            if outcome.is_ok() {
                tx.commit().await.map_err(pg_error)?;
                if let Some(schema) = writer.learned() {
                    self.schemas.put(schema)?;
                }
            }
            return Ok(outcome);
        }
    }

    /// Decides and writes the row `id` of `table`; `locked` says whether the transaction
    /// holds the table's ACCESS EXCLUSIVE lock (needed to add columns). The outer error
    /// aborts the transaction; a refusal is the write's outcome, and then nothing of it was
    /// written.
    pub(super) async fn apply_write(
        &self,
        tx: &Transaction<'_>,
        table: &mut TableWriter,
        locked: bool,
        id: &str,
        decide: &Decide,
    ) -> Result<Applied, StoreError> {
        let name = table.schema.spec.name.clone();
        let select = tx
            .prepare_cached(&format!(
                "SELECT {} FROM {} WHERE \"id\" = $1 FOR UPDATE",
                column_list(&table.schema),
                self.table(&name)
            ))
            .await
            .map_err(pg_error)?;
        let existing = tx
            .query_opt(&select, &[&id])
            .await
            .map_err(pg_error)?
            .map(|r| decode_row(&r, &table.schema))
            .transpose()?;
        let mutation = match decide(existing.as_ref(), &table.schema) {
            Ok(mutation) => mutation,
            Err(refused) => return Ok(Applied::Done(Err(refused))),
        };
        match mutation {
            Mutation::Remove => {
                let Some(row) = existing else {
                    return Ok(Applied::Done(Err(Refusal::NotFound)));
                };
                let delete = tx
                    .prepare_cached(&format!(
                        "DELETE FROM {} WHERE \"id\" = $1",
                        self.table(&name)
                    ))
                    .await
                    .map_err(pg_error)?;
                tx.execute(&delete, &[&id]).await.map_err(pg_error)?;
                Ok(Applied::Done(Ok(Written::Removed(row))))
            }
            Mutation::Put {
                values,
                deleted,
                new_columns,
            } => {
                if !new_columns.is_empty() {
                    if !locked {
                        return Ok(Applied::NeedsTableLock);
                    }
                    let schema = table.schema.clone();
                    table.schema = self.add_columns(tx, schema, &new_columns).await?;
                    table.learned = true;
                }
                table.schema.check_known(&values)?;
                let row = self
                    .stamp_and_store(tx, &table.schema, id, existing.as_ref(), &values, deleted)
                    .await?;
                Ok(Applied::Done(Ok(Written::Stored(row))))
            }
        }
    }
}
