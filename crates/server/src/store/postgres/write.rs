//! One row write on PostgreSQL, as a single request and each op of a batch make it (the
//! item is locked already): read the row, run the decision, add its new columns (only
//! under the table lock), stamp from the table clock, store.

use deadpool_postgres::Transaction;

use super::super::schema::TableSchema;
use super::super::{Decide, Mutation, Outcome, Refusal, StoreError, Written};
use super::rows::{column_list, decode_row};
use super::{PostgresStore, pg_error};

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
    NeedsTableLock(String),
}

impl PostgresStore {
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
                        return Ok(Applied::NeedsTableLock(name));
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
