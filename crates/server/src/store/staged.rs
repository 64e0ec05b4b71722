//! The writes of a batch to one table, decided in memory and written in a few set-wise
//! statements: how both stores bring a batch to one statement per chunk instead of a read
//! and a write per op.
//!
//! The store reads the rows of every item id the batch names in one query (PostgreSQL: with
//! `FOR UPDATE`), then each op is decided on the row as the batch left it so far (the
//! [`Staged`] view: a decision sees the earlier ops of the same batch, exactly as it would
//! after a read-back), stamped from the table clock and kept in the view. After the last op
//! the store writes the final state of each touched item: the rows that exist at the end
//! upserted (PostgreSQL: one multi-row upsert per chunk; SQLite: one prepared single-row
//! upsert per row), those that do not deleted per chunk. Several ops on
//! one item come to one row write (the last state), which is what a reader can tell apart
//! anyway: the rows of one transaction commit together.
//!
//! Adding columns mid-batch changes the schema of the view (every row gets the new columns
//! as null, as the database gives them after `ALTER TABLE ADD COLUMN`); the final statements
//! are built from the schema as it is at the end, so rows staged before the change store
//! null in the new columns, as they would have written one by one.

use std::collections::HashMap;

use serde_json::Value;

use super::schema::TableSchema;
use super::{Decide, Mutation, Outcome, Refusal, Row, StoreError, Written};

/// Rows per write statement at most (and fewer when the columns would pass the store's
/// parameter limit): bounds the statement a batch builds, whatever its size.
pub(crate) const CHUNK_ROWS: usize = 500;

/// One item the batch has seen: its row as the batch leaves it, and whether an op of the
/// batch wrote it.
#[derive(Debug)]
struct Seen {
    row: Option<Row>,
    touched: bool,
}

/// What a decision asks of the store before the op can be staged.
pub(crate) enum Step {
    /// Decided: refused, or removed (the row as it was).
    Done(Outcome),
    /// A write of these values (the columns exist).
    Put {
        values: tidesync_protocol::Item,
        deleted: bool,
    },
    /// A write of these values that needs `columns` added first: add them, take the new
    /// schema with [`Staged::set_schema`], then stamp and [`Staged::put`] the values. The
    /// decision is not run again (it ran once, as for a single write; policy hooks inside
    /// it must not see one write twice).
    AddColumns {
        columns: Vec<(String, super::ColumnType)>,
        values: tidesync_protocol::Item,
        deleted: bool,
    },
}

/// The rows a batch writes to one table (see the module documentation).
#[derive(Debug)]
pub(crate) struct Staged {
    schema: TableSchema,
    seen: HashMap<String, Seen>,
    /// Touched ids in the order of their first write (so statements are deterministic).
    order: Vec<String>,
    /// Whether a decision added columns (the store's schema cache takes them after commit).
    learned: bool,
}

/// The final state of the touched rows: those to store and the ids to remove.
pub(crate) struct Final<'a> {
    pub(crate) puts: Vec<&'a Row>,
    pub(crate) removes: Vec<&'a str>,
}

impl Staged {
    /// A table as its transaction sees it, with the rows read for the batch's ids (ids not
    /// among `rows` are absent from the table).
    pub(crate) fn new(schema: TableSchema, rows: Vec<Row>) -> Staged {
        let seen = rows
            .into_iter()
            .map(|row| {
                (
                    row.id.clone(),
                    Seen {
                        row: Some(row),
                        touched: false,
                    },
                )
            })
            .collect();
        Staged {
            schema,
            seen,
            order: Vec::new(),
            learned: false,
        }
    }

    /// The table's schema as the batch has it.
    pub(crate) fn schema(&self) -> &TableSchema {
        &self.schema
    }

    /// Runs `decide` on the row `id` as the batch left it. A removal is staged here; a put
    /// is returned for the caller to stamp and [`Staged::put`].
    pub(crate) fn decide(&mut self, id: &str, decide: &Decide) -> Step {
        let existing = self.seen.get(id).and_then(|seen| seen.row.as_ref());
        let mutation = match decide(existing, &self.schema) {
            Ok(mutation) => mutation,
            Err(refused) => return Step::Done(Err(refused)),
        };
        match mutation {
            Mutation::Remove => {
                if existing.is_none() {
                    return Step::Done(Err(Refusal::NotFound));
                }
                match self.slot(id).row.take() {
                    Some(row) => Step::Done(Ok(Written::Removed(row))),
                    None => Step::Done(Err(Refusal::NotFound)),
                }
            }
            Mutation::Put {
                values,
                deleted,
                new_columns,
            } => {
                if new_columns.is_empty() {
                    Step::Put { values, deleted }
                } else {
                    Step::AddColumns {
                        columns: new_columns,
                        values,
                        deleted,
                    }
                }
            }
        }
    }

    /// Stages the row `id` with `values`, stamped `(updated_at_ms, version)`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Internal`] when `values` name a column the table lacks.
    pub(crate) fn put(
        &mut self,
        id: &str,
        values: tidesync_protocol::Item,
        deleted: bool,
        (updated_at_ms, version): (i64, u64),
    ) -> Result<Outcome, StoreError> {
        self.schema.check_known(&values)?;
        let existing = self.seen.get(id).and_then(|seen| seen.row.as_ref());
        let row =
            self.schema
                .into_stamped_row(id, existing, updated_at_ms, version, deleted, values);
        self.slot(id).row = Some(row.clone());
        Ok(Ok(Written::Stored(row)))
    }

    /// Takes the schema after columns were added: every row of the view gets the new
    /// columns as null.
    pub(crate) fn set_schema(&mut self, schema: TableSchema) {
        for seen in self.seen.values_mut() {
            if let Some(row) = seen.row.as_mut() {
                for (name, _) in &schema.columns {
                    if !row.values.contains_key(name) {
                        row.values.insert(name.clone(), Value::Null);
                    }
                }
            }
        }
        self.schema = schema;
        self.learned = true;
    }

    /// The touched rows' final state, in the order they were first written.
    pub(crate) fn final_state(&self) -> Final<'_> {
        let mut puts = Vec::new();
        let mut removes = Vec::new();
        for id in &self.order {
            match self.seen.get(id).and_then(|seen| seen.row.as_ref()) {
                Some(row) => puts.push(row),
                None => removes.push(id.as_str()),
            }
        }
        Final { puts, removes }
    }

    /// The schema with the columns the batch added, if it added any.
    pub(crate) fn learned(self) -> Option<TableSchema> {
        self.learned.then_some(self.schema)
    }

    /// The view's entry of `id`, marked touched.
    fn slot(&mut self, id: &str) -> &mut Seen {
        let seen = self.seen.entry(id.to_owned()).or_insert(Seen {
            row: None,
            touched: false,
        });
        if !seen.touched {
            seen.touched = true;
            self.order.push(id.to_owned());
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ColumnType, TableSpec};

    fn schema() -> TableSchema {
        TableSchema {
            spec: TableSpec::new("T", false, false),
            columns: vec![("a".to_owned(), ColumnType::String)],
        }
    }

    fn put_decision(text: &'static str) -> Decide {
        Box::new(move |_, _| {
            let mut values = tidesync_protocol::Item::new();
            values.insert("a".to_owned(), Value::from(text));
            Ok(Mutation::Put {
                values,
                deleted: false,
                new_columns: Vec::new(),
            })
        })
    }

    fn stage(staged: &mut Staged, id: &str, decide: &Decide, version: u64) -> Outcome {
        match staged.decide(id, decide) {
            Step::Done(outcome) => outcome,
            Step::Put { values, deleted } => {
                staged.put(id, values, deleted, (10, version)).unwrap()
            }
            Step::AddColumns { .. } => panic!("no columns to add"),
        }
    }

    #[test]
    fn later_ops_see_earlier_ones_and_only_the_final_state_is_written() {
        let mut staged = Staged::new(schema(), Vec::new());
        let remove: Decide = Box::new(|_, _| Ok(Mutation::Remove));
        // Removing a row the table lacks is refused and touches nothing.
        assert_eq!(stage(&mut staged, "x", &remove, 0), Err(Refusal::NotFound));
        let first = stage(&mut staged, "x", &put_decision("one"), 1).unwrap();
        let Written::Stored(first) = first else {
            panic!("stored")
        };
        // The second decision sees the first op's row.
        let seen_first: Decide = Box::new(move |existing, _| match existing {
            Some(row) if row.version == 1 => Ok(Mutation::Remove),
            _ => Err(Refusal::NotFound),
        });
        assert_eq!(
            stage(&mut staged, "x", &seen_first, 0),
            Ok(Written::Removed(first))
        );
        stage(&mut staged, "y", &put_decision("two"), 2).unwrap();
        let fin = staged.final_state();
        assert_eq!(fin.removes, vec!["x"]);
        assert_eq!(fin.puts.len(), 1);
        assert_eq!(fin.puts[0].id, "y");
        assert_eq!(fin.puts[0].values["a"], "two");
    }
}
