//! The batch extension on SQLite: one `IMMEDIATE` transaction per batch on the writer
//! connection, each op decided before anything of it is written (see `store::batch`).
//!
//! The work is set-wise where SQLite gains by it (`store::staged`): the batch's remembered ops
//! are looked up and the rows of its item ids read first (one point lookup per id), each op
//! is decided and stamped in memory on the rows as the batch leaves them, and then each
//! table gets one single-row upsert per row it ends with (one prepared statement) and one
//! delete per chunk of at most [`CHUNK_ROWS`] removed ids, and the remembered ops one
//! single-row insert each. The table clock is read once and written back once, before the
//! commit. In process a statement costs little; a multi-row `INSERT` would make SQLite keep
//! a statement journal, and an `IN (SELECT value FROM json_each(…))` lookup encodes the ids
//! as JSON, parses them back and builds a temporary index of them first.

use std::collections::HashMap;

use rusqlite::{Connection, TransactionBehavior};

use super::super::batch::{BatchWrite, LEGACY_OPS_TABLE, OPS_TABLE, OpKey};
use super::super::staged::{CHUNK_ROWS, Staged, Step};
use super::super::{Row, StoreError, now_ms};
use super::rows::{bind_row, column_names, decode_row, select_sql};
use super::{SqliteStore, add_columns, next_stamp, quote, read_clock, write_clock};

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

/// A table the batch writes: its staged rows and its clock, read at the first stamp.
struct Table {
    staged: Staged,
    clock: Option<(i64, i64)>,
}

impl Table {
    /// The next `(updatedAt, version)` of the table.
    fn stamp(&mut self, conn: &Connection) -> Result<(i64, u64), StoreError> {
        let (clock_ms, version) = match self.clock {
            Some(clock) => clock,
            None => read_clock(conn, &self.staged.schema().spec.name)?,
        };
        let next = next_stamp(clock_ms, version);
        self.clock = Some(next);
        Ok((next.0, u64::try_from(next.1).unwrap_or(0)))
    }
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
            let mut tables = read_rows(&tx, inner, &writes)?;
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
                let table =
                    tables
                        .get_mut(&write.table)
                        .ok_or_else(|| StoreError::UnknownTable {
                            table: write.table.clone(),
                        })?;
                let outcome = match table.staged.decide(&write.id, &write.decide) {
                    Step::Done(outcome) => outcome,
                    Step::Put { values, deleted } => {
                        let stamp = table.stamp(&tx)?;
                        table.staged.put(&write.id, values, deleted, stamp)?
                    }
                    Step::AddColumns {
                        columns,
                        values,
                        deleted,
                    } => {
                        let schema = table.staged.schema().clone();
                        table.staged.set_schema(add_columns(&tx, schema, &columns)?);
                        let stamp = table.stamp(&tx)?;
                        table.staged.put(&write.id, values, deleted, stamp)?
                    }
                };
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
                write_rows(&tx, &table.staged)?;
                if let Some((clock_ms, version)) = table.clock {
                    write_clock(&tx, &table.staged.schema().spec.name, clock_ms, version)?;
                }
            }
            remember(&tx, &known, &results, now)?;
            tx.commit().map_err(StoreError::backend)?;
            for table in tables.into_values() {
                if let Some(schema) = table.staged.learned() {
                    inner.schemas.put(schema)?;
                }
            }
            Ok(results)
        })
        .await
    }
}

/// The rows of the batch's item ids, by their schema, one point lookup per id.
fn read_rows(
    conn: &Connection,
    inner: &super::Inner,
    writes: &[BatchWrite],
) -> Result<HashMap<String, Table>, StoreError> {
    let mut ids: HashMap<&str, Vec<&str>> = HashMap::new();
    for write in writes {
        ids.entry(write.table.as_str())
            .or_default()
            .push(write.id.as_str());
    }
    let mut tables = HashMap::with_capacity(ids.len());
    for (name, ids) in ids {
        let schema = inner.schemas.get(name)?;
        // One point lookup per id, as `recall` does (an id named twice is read twice, and
        // `Staged::new` keeps one copy).
        let mut statement = conn
            .prepare_cached(&select_sql(&schema))
            .map_err(StoreError::backend)?;
        let mut found: Vec<Row> = Vec::with_capacity(ids.len());
        for id in ids {
            let mut rows = statement.query([id]).map_err(StoreError::backend)?;
            if let Some(row) = rows.next().map_err(StoreError::backend)? {
                found.push(decode_row(row, &schema)?);
            }
        }
        tables.insert(
            name.to_owned(),
            Table {
                staged: Staged::new(schema, found),
                clock: None,
            },
        );
    }
    Ok(tables)
}

/// Writes the final state of the staged rows: one single-row upsert per row, a delete per
/// chunk of removed ids.
///
/// One row per statement, not a multi-row `INSERT`: a statement that can write many rows makes
/// SQLite keep a statement journal (every page it touches that existed before it, copied to a
/// temporary file, which spills to disk past 64 KiB), which costs more than the statements it
/// saves; in process a statement costs little.
fn write_rows(conn: &Connection, staged: &Staged) -> Result<(), StoreError> {
    let schema = staged.schema();
    let table = quote(&schema.spec.name);
    let rows = staged.final_state();
    if !rows.removes.is_empty() {
        let mut delete = conn
            .prepare_cached(&format!(
                "DELETE FROM {table} WHERE \"id\" IN (SELECT value FROM json_each(?1))"
            ))
            .map_err(StoreError::backend)?;
        for chunk in rows.removes.chunks(CHUNK_ROWS) {
            let ids = serde_json::to_string(chunk).map_err(StoreError::backend)?;
            delete.execute([ids]).map_err(StoreError::backend)?;
        }
    }
    if !rows.puts.is_empty() {
        let mut upsert = conn
            .prepare_cached(&upsert_sql(&table, &column_names(schema)))
            .map_err(StoreError::backend)?;
        for row in &rows.puts {
            bind_row(&mut upsert, schema, row).map_err(StoreError::backend)?;
            upsert.raw_execute().map_err(StoreError::backend)?;
        }
    }
    Ok(())
}

/// `INSERT INTO table (names) VALUES (?1, …) ON CONFLICT ("id") DO UPDATE SET` every other
/// column: one row as [`bind_row`] binds it.
fn upsert_sql(table: &str, names: &[String]) -> String {
    let marks: Vec<String> = (1..=names.len()).map(|n| format!("?{n}")).collect();
    let sets: Vec<String> = names
        .iter()
        .skip(1)
        .map(|name| format!("{name} = excluded.{name}"))
        .collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT (\"id\") DO UPDATE SET {}",
        names.join(", "),
        marks.join(", "),
        sets.join(", ")
    )
}

/// The remembered ops of the batch's op ids, one point lookup per op id on the key (cheaper
/// than one `IN (SELECT value FROM json_each(…))` query, which encodes the ids as JSON, parses
/// them back and builds a temporary index of them before it looks anything up).
fn recall(conn: &Connection, writes: &[BatchWrite]) -> Result<HashMap<OpKey, Known>, StoreError> {
    let mut known = HashMap::with_capacity(writes.len());
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT table_name, fingerprint, result FROM {OPS_TABLE}
             WHERE user_id = ?1 AND op_id = ?2"
        ))
        .map_err(StoreError::backend)?;
    for write in writes {
        let mut rows = statement
            .query(rusqlite::params![write.user, write.op_id])
            .map_err(StoreError::backend)?;
        while let Some(row) = rows.next().map_err(StoreError::backend)? {
            let key = OpKey {
                user: write.user.clone(),
                op_id: write.op_id.clone(),
                table: row.get(0).map_err(StoreError::backend)?,
            };
            known.insert(
                key,
                Known {
                    fingerprint: row.get(1).map_err(StoreError::backend)?,
                    result: KnownResult::Stored(row.get(2).map_err(StoreError::backend)?),
                },
            );
        }
    }
    Ok(known)
}

/// Remembers the results of the ops this batch applied (the last one per key), one
/// single-row insert each (see [`write_rows`] for why not many rows per statement).
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
        let bind = |statement: &mut rusqlite::Statement<'_>| -> rusqlite::Result<()> {
            statement.raw_bind_parameter(1, key.user.as_str())?;
            statement.raw_bind_parameter(2, key.op_id.as_str())?;
            statement.raw_bind_parameter(3, key.table.as_str())?;
            statement.raw_bind_parameter(4, entry.fingerprint.as_str())?;
            statement.raw_bind_parameter(5, result.as_str())?;
            statement.raw_bind_parameter(6, now)?;
            statement.raw_execute().map(|_| ())
        };
        bind(&mut statement).map_err(StoreError::backend)?;
    }
    Ok(())
}
