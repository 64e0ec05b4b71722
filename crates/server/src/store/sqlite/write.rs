//! One row write on SQLite, as a single request and each op of a batch make it: read the
//! row, run the decision, add its new columns, stamp from the table clock, store.

use rusqlite::Connection;

use super::super::schema::{ColumnType, TableSchema};
use super::super::{Decide, Mutation, Outcome, Refusal, StoreError, Written};
use super::rows::{insert_sql, select_row_with, select_sql, store_row_with, update_sql};
use super::{add_columns, next_stamp, quote, read_clock, write_clock};

/// A table a write transaction writes: its schema, its statement texts and its write clock
/// (read once, kept in memory, written back by [`TableWriter::save_clock`] before the
/// commit).
pub(super) struct TableWriter {
    schema: TableSchema,
    select: String,
    insert: String,
    update: String,
    delete: String,
    /// The last stamp given, once the clock was read.
    clock: Option<(i64, i64)>,
    /// Whether a write added columns (the store's cached schema takes them after the
    /// commit).
    learned: bool,
}

impl TableWriter {
    pub(super) fn new(schema: TableSchema) -> TableWriter {
        TableWriter {
            select: select_sql(&schema),
            insert: insert_sql(&schema),
            update: update_sql(&schema),
            delete: format!("DELETE FROM {} WHERE \"id\" = ?1", quote(&schema.spec.name)),
            schema,
            clock: None,
            learned: false,
        }
    }

    /// Decides and writes one row. The outer error aborts the transaction (the database
    /// failed); a refusal is the write's outcome, and then nothing of it was written.
    pub(super) fn apply(
        &mut self,
        conn: &Connection,
        id: &str,
        decide: &Decide,
    ) -> Result<Outcome, StoreError> {
        let existing = select_row_with(conn, &self.schema, &self.select, id)?;
        let mutation = match decide(existing.as_ref(), &self.schema) {
            Ok(mutation) => mutation,
            Err(refused) => return Ok(Err(refused)),
        };
        match mutation {
            Mutation::Remove => {
                let Some(row) = existing else {
                    return Ok(Err(Refusal::NotFound));
                };
                conn.prepare_cached(&self.delete)
                    .and_then(|mut s| s.execute([id]))
                    .map_err(StoreError::backend)?;
                Ok(Ok(Written::Removed(row)))
            }
            Mutation::Put {
                values,
                deleted,
                new_columns,
            } => {
                if !new_columns.is_empty() {
                    self.add_columns(conn, &new_columns)?;
                }
                self.schema.check_known(&values)?;
                let (updated_at_ms, version) = self.stamp(conn)?;
                let row = self.schema.into_stamped_row(
                    id,
                    existing.as_ref(),
                    updated_at_ms,
                    version,
                    deleted,
                    values,
                );
                let query = if existing.is_some() {
                    &self.update
                } else {
                    &self.insert
                };
                store_row_with(conn, &self.schema, query, &row)?;
                Ok(Ok(Written::Stored(row)))
            }
        }
    }

    /// Writes the clock back, if a write took a stamp.
    pub(super) fn save_clock(&self, conn: &Connection) -> Result<(), StoreError> {
        match self.clock {
            Some((clock_ms, version)) => {
                write_clock(conn, &self.schema.spec.name, clock_ms, version)
            }
            None => Ok(()),
        }
    }

    /// The schema with the columns the writes added, if they added any.
    pub(super) fn learned(self) -> Option<TableSchema> {
        self.learned.then_some(self.schema)
    }

    /// Adds columns (in the transaction) and rebuilds the statement texts.
    fn add_columns(
        &mut self,
        conn: &Connection,
        columns: &[(String, ColumnType)],
    ) -> Result<(), StoreError> {
        let schema = add_columns(conn, self.schema.clone(), columns)?;
        let clock = self.clock;
        *self = TableWriter::new(schema);
        self.clock = clock;
        self.learned = true;
        Ok(())
    }

    /// The next `(updatedAt, version)` of the table.
    fn stamp(&mut self, conn: &Connection) -> Result<(i64, u64), StoreError> {
        let (clock_ms, version) = match self.clock {
            Some(clock) => clock,
            None => read_clock(conn, &self.schema.spec.name)?,
        };
        let next = next_stamp(clock_ms, version);
        self.clock = Some(next);
        Ok((next.0, u64::try_from(next.1).unwrap_or(0)))
    }
}
