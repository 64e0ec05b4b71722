//! The batch extension on PostgreSQL: one transaction per batch, each op decided before
//! anything of it is written (see `store::batch`). The batch's op ids are locked
//! (transaction-scoped advisory locks, taken sorted in one statement) before they are looked
//! up, so two servers given the same batch at once apply it once: the second waits, then finds
//! the first one's remembered results. Then the batch's items are locked, sorted, in one
//! statement, before any table is touched, so batches sharing items cannot deadlock.
//!
//! The round trips do not grow with the ops (`store::staged`): the lookup is one query, the
//! rows of the batch's items are read (`FOR UPDATE`) in one query per table, each op is
//! decided and stamped in memory (the table's clock is read once, under the clock lock the
//! batch holds from its start, and written back once), and each table's final rows are
//! written with one `INSERT … SELECT … FROM unnest(…) ON CONFLICT ("id") DO UPDATE` and one
//! `DELETE … WHERE "id" = ANY(…)` per chunk of rows; the results to remember are inserted
//! with one statement after the last op.
//!
//! An op whose decision adds columns needs its table's ACCESS EXCLUSIVE lock, which must be
//! taken before any other lock on the table: the batch then starts over with that table
//! locked up front (decisions are pure, so running them again is safe). The ops' results are
//! rendered once, after the last op, so a restart renders nothing twice.

use std::collections::{BTreeSet, HashMap};

use deadpool_postgres::Transaction;

use super::super::batch::{BatchWrite, LEGACY_OPS_TABLE, OPS_TABLE, OpKey};
use super::super::horizon::next_stamp;
use super::super::schema::{TableSchema, TableSpec};
use super::super::staged::{CHUNK_ROWS, Staged, Step};
use super::super::{Decide, Outcome, StoreError, now_ms};
use super::rows::{UpsertArrays, column_list, decode_row, upsert_sql};
use super::{
    CLOCK_LOCK_SEED, NOW_MS, OP_LOCK_SEED, PgFailure, PostgresStore, lock_items, lock_keys,
    pg_error, quote,
};

/// What the batch knows about an op id besides its fingerprint.
enum Known {
    /// The result remembered by an earlier batch.
    Stored(String),
    /// Applied by this batch: the index of its result, remembered at the end.
    Applied(usize),
}

/// The result of one op, before it is rendered.
enum Slot {
    /// Remembered by an earlier batch: the result as it was sent then.
    Remembered(String),
    /// A repeat of an op id this batch applied: the result of that op.
    SameAs(usize),
    /// Decided (and, if `Ok`, written) now.
    Decided(Outcome),
}

/// One op as the transaction needs it (the render step stays outside: it runs once, after
/// the last op).
struct Plan {
    key: OpKey,
    fingerprint: String,
    table: String,
    id: String,
    decide: Decide,
}

/// A table the batch writes: its staged rows, and once a write took a stamp, the database's
/// time then and the clock's last stamp.
struct Table {
    staged: Staged,
    clock: Option<(i64, i64, i64)>,
}

/// What one attempt at the batch did, before its results are rendered.
struct Attempt {
    slots: Vec<Slot>,
    known: HashMap<OpKey, (String, Known)>,
    /// The schemas of the tables the batch added columns to (cached after the commit).
    learned: Vec<TableSchema>,
}

/// The DDL of the remembered-ops table in `schema` (run by `prepare_table`, under the
/// schema lock).
pub(super) fn ops_table_ddl(schema: &str) -> String {
    let table = format!("{}.{}", quote(schema), quote(OPS_TABLE));
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            user_id TEXT NOT NULL,
            op_id TEXT NOT NULL,
            table_name TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            result TEXT NOT NULL,
            at BIGINT NOT NULL,
            PRIMARY KEY (user_id, op_id, table_name)
         );
         CREATE INDEX IF NOT EXISTS {} ON {table} (at);
         DROP TABLE IF EXISTS {}.{};",
        quote(&format!("{OPS_TABLE}_at")),
        quote(schema),
        quote(LEGACY_OPS_TABLE)
    )
}

impl PostgresStore {
    pub(super) async fn apply_batch(
        &self,
        writes: Vec<BatchWrite>,
        retention_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut specs: HashMap<String, TableSpec> = HashMap::new();
        let mut plans = Vec::with_capacity(writes.len());
        let mut renders = Vec::with_capacity(writes.len());
        for write in writes {
            if !specs.contains_key(&write.table) {
                let spec = self.schemas.get(&write.table)?.spec;
                specs.insert(write.table.clone(), spec);
            }
            plans.push(Plan {
                key: write.key(),
                fingerprint: write.fingerprint,
                table: write.table,
                id: write.id,
                decide: write.decide,
            });
            renders.push(write.render);
        }
        let mut locked_tables: BTreeSet<String> = BTreeSet::new();
        let mut failures = 0u32;
        loop {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            let now = now_ms();
            let attempt = match self
                .run_batch(&tx, &plans, &specs, &locked_tables, now, retention_ms)
                .await
            {
                Ok(Ok(done)) => done,
                Ok(Err(table)) => {
                    tx.rollback().await.map_err(pg_error)?;
                    locked_tables.insert(table);
                    continue;
                }
                // A deadlock or a serialization failure: nothing was kept and nothing was
                // rendered yet, so the batch runs again (as `retrying` does for one write).
                Err(error) if PgFailure::is_retryable(&error) => {
                    drop(tx);
                    self.run_again(&mut failures, &error)?;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let Attempt {
                slots,
                mut known,
                learned,
            } = attempt;
            let mut results: Vec<String> = Vec::with_capacity(slots.len());
            for (index, (slot, render)) in slots.into_iter().zip(renders).enumerate() {
                let result = match slot {
                    Slot::Remembered(result) => result,
                    Slot::SameAs(at) => results.get(at).cloned().unwrap_or_default(),
                    Slot::Decided(outcome) => {
                        let rendered = render(outcome);
                        if !rendered.remember {
                            known.retain(
                                |_, (_, k)| !matches!(k, Known::Applied(at) if *at == index),
                            );
                        }
                        rendered.json
                    }
                };
                results.push(result);
            }
            self.remember(&tx, &known, &results, now).await?;
            tx.commit().await.map_err(pg_error)?;
            for schema in learned {
                self.schemas.put(schema)?;
            }
            return Ok(results);
        }
    }

    /// Locks, recalls and applies every op of the batch in `tx`. The inner `Err` names a
    /// table an op must add columns to that is not in `locked_tables` (nothing is kept of
    /// this attempt then).
    async fn run_batch(
        &self,
        tx: &Transaction<'_>,
        plans: &[Plan],
        specs: &HashMap<String, TableSpec>,
        locked_tables: &BTreeSet<String>,
        now: i64,
        retention_ms: i64,
    ) -> Result<Result<Attempt, String>, StoreError> {
        let ops = format!("{}.{}", quote(&self.schema), quote(OPS_TABLE));
        tx.execute(
            &format!("DELETE FROM {ops} WHERE at < $1"),
            &[&now.saturating_sub(retention_ms)],
        )
        .await
        .map_err(pg_error)?;
        // Lock every op key of the batch (sorted, so two batches sharing ops cannot deadlock on
        // them), then recall the remembered ones, in one round trip each.
        let op_locks: Vec<String> = plans
            .iter()
            .map(|p| {
                serde_json::json!([self.schema, p.key.user, p.key.table, p.key.op_id]).to_string()
            })
            .collect();
        lock_keys(tx, &op_locks, OP_LOCK_SEED).await?;
        let items: Vec<(&str, &str)> = plans
            .iter()
            .map(|p| (p.table.as_str(), p.id.as_str()))
            .collect();
        lock_items(tx, &items).await?;
        // Then every table the batch writes, in name order (ACCESS EXCLUSIVE where an op adds
        // columns, ROW EXCLUSIVE, what its row writes take anyway, elsewhere), and then their
        // clocks, before the first stamp. Every write takes its locks in this order (items,
        // tables, clocks), so batches and single writes over the same tables in any order
        // cannot deadlock.
        let tables: BTreeSet<&String> = specs.keys().collect();
        for table in tables {
            let mode = if locked_tables.contains(table) {
                "ACCESS EXCLUSIVE"
            } else {
                "ROW EXCLUSIVE"
            };
            self.lock_table(tx, table, mode).await?;
        }
        let clocks: Vec<String> = specs.keys().map(|table| self.clock_key(table)).collect();
        lock_keys(tx, &clocks, CLOCK_LOCK_SEED).await?;
        let recall = tx
            .prepare_cached(&format!(
                "SELECT op_id, table_name, fingerprint, result FROM {ops}
                 WHERE user_id = $1 AND op_id = ANY($2::text[])"
            ))
            .await
            .map_err(pg_error)?;
        let mut by_user: HashMap<&str, Vec<&str>> = HashMap::new();
        for plan in plans {
            by_user
                .entry(plan.key.user.as_str())
                .or_default()
                .push(plan.key.op_id.as_str());
        }
        let mut known: HashMap<OpKey, (String, Known)> = HashMap::with_capacity(plans.len());
        for (user, op_ids) in by_user {
            for row in tx
                .query(&recall, &[&user, &op_ids])
                .await
                .map_err(pg_error)?
            {
                let key = OpKey {
                    user: user.to_owned(),
                    op_id: row.get(0),
                    table: row.get(1),
                };
                known.insert(key, (row.get(2), Known::Stored(row.get(3))));
            }
        }
        // Loaded in the transaction: another server may have added columns. Then the rows
        // of the batch's items, locked, in one query per table.
        let mut tables: HashMap<&str, Table> = HashMap::with_capacity(specs.len());
        for (name, spec) in specs {
            let schema = self.columns_in(tx, spec.clone()).await?;
            let ids: Vec<&str> = plans
                .iter()
                .filter(|p| p.table == *name)
                .map(|p| p.id.as_str())
                .collect();
            let select = tx
                .prepare_cached(&format!(
                    "SELECT {} FROM {} WHERE \"id\" = ANY($1::text[]) FOR UPDATE",
                    column_list(&schema),
                    self.table(name)
                ))
                .await
                .map_err(pg_error)?;
            let rows = tx
                .query(&select, &[&ids])
                .await
                .map_err(pg_error)?
                .iter()
                .map(|r| decode_row(r, &schema))
                .collect::<Result<Vec<_>, _>>()?;
            tables.insert(
                name.as_str(),
                Table {
                    staged: Staged::new(schema, rows),
                    clock: None,
                },
            );
        }
        let mut slots: Vec<Slot> = Vec::with_capacity(plans.len());
        for plan in plans {
            if let Some((fingerprint, result)) = known.get(&plan.key) {
                if *fingerprint == plan.fingerprint {
                    slots.push(match result {
                        Known::Stored(result) => Slot::Remembered(result.clone()),
                        Known::Applied(at) => Slot::SameAs(*at),
                    });
                    continue;
                }
            }
            let Some(table) = tables.get_mut(plan.table.as_str()) else {
                return Err(StoreError::UnknownTable {
                    table: plan.table.clone(),
                });
            };
            let outcome = match table.staged.decide(&plan.id, &plan.decide) {
                Step::Done(outcome) => outcome,
                Step::Put { values, deleted } => {
                    let stamp = self.stamp(tx, table).await?;
                    table.staged.put(&plan.id, values, deleted, stamp)?
                }
                Step::AddColumns {
                    columns,
                    values,
                    deleted,
                } => {
                    // Adding columns needs the table's ACCESS EXCLUSIVE lock, taken
                    // before any other: start over with it (the one case where a
                    // decision runs again, in a new transaction).
                    if !locked_tables.contains(&plan.table) {
                        return Ok(Err(plan.table.clone()));
                    }
                    let schema = table.staged.schema().clone();
                    let schema = self.add_columns(tx, schema, &columns).await?;
                    table.staged.set_schema(schema);
                    let stamp = self.stamp(tx, table).await?;
                    table.staged.put(&plan.id, values, deleted, stamp)?
                }
            };
            if outcome.is_ok() {
                known.insert(
                    plan.key.clone(),
                    (plan.fingerprint.clone(), Known::Applied(slots.len())),
                );
            }
            slots.push(Slot::Decided(outcome));
        }
        for table in tables.values() {
            self.write_rows(tx, table).await?;
        }
        let learned = tables
            .into_values()
            .filter_map(|table| table.staged.learned())
            .collect();
        Ok(Ok(Attempt {
            slots,
            known,
            learned,
        }))
    }

    /// The next `(updatedAt, version)` of `table`: its clock is read at the first stamp
    /// (the batch holds the clock lock since it began) with the database's time then, and
    /// moved in memory after that (see `store::horizon`); [`Self::write_rows`] writes it
    /// back.
    async fn stamp(
        &self,
        tx: &Transaction<'_>,
        table: &mut Table,
    ) -> Result<(i64, u64), StoreError> {
        let (now, clock_ms, version) = match table.clock {
            Some(clock) => clock,
            None => {
                let read = tx
                    .prepare_cached(&format!(
                        "SELECT {NOW_MS}, clock_ms, version FROM {} WHERE name = $1",
                        self.bookkeeping()
                    ))
                    .await
                    .map_err(pg_error)?;
                let row = tx
                    .query_one(&read, &[&table.staged.schema().spec.name])
                    .await
                    .map_err(pg_error)?;
                (row.get(0), row.get(1), row.get(2))
            }
        };
        let (clock_ms, version) = next_stamp(now, clock_ms, version);
        table.clock = Some((now, clock_ms, version));
        Ok((clock_ms, u64::try_from(version).unwrap_or(0)))
    }

    /// Writes the final state of a table's staged rows (a delete and a multi-row upsert per
    /// chunk) and its clock.
    async fn write_rows(&self, tx: &Transaction<'_>, table: &Table) -> Result<(), StoreError> {
        let schema = table.staged.schema();
        let name = self.table(&schema.spec.name);
        let rows = table.staged.final_state();
        if !rows.removes.is_empty() {
            let delete = tx
                .prepare_cached(&format!(
                    "DELETE FROM {name} WHERE \"id\" = ANY($1::text[])"
                ))
                .await
                .map_err(pg_error)?;
            for chunk in rows.removes.chunks(CHUNK_ROWS) {
                tx.execute(&delete, &[&chunk]).await.map_err(pg_error)?;
            }
        }
        if !rows.puts.is_empty() {
            let upsert = tx
                .prepare_cached(&upsert_sql(&name, schema))
                .await
                .map_err(pg_error)?;
            for chunk in rows.puts.chunks(CHUNK_ROWS) {
                let arrays = UpsertArrays::of(schema, chunk);
                tx.execute(&upsert, &arrays.params())
                    .await
                    .map_err(pg_error)?;
            }
        }
        if let Some((_, clock_ms, version)) = table.clock {
            let write = tx
                .prepare_cached(&format!(
                    "UPDATE {} SET clock_ms = $2, version = $3 WHERE name = $1",
                    self.bookkeeping()
                ))
                .await
                .map_err(pg_error)?;
            tx.execute(&write, &[&schema.spec.name, &clock_ms, &version])
                .await
                .map_err(pg_error)?;
        }
        Ok(())
    }

    /// Remembers the results this batch applied (the last one per op key), in one statement.
    async fn remember(
        &self,
        tx: &Transaction<'_>,
        known: &HashMap<OpKey, (String, Known)>,
        results: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        let ops = format!("{}.{}", quote(&self.schema), quote(OPS_TABLE));
        let mut columns: [Vec<&str>; 5] = Default::default();
        for (key, (fingerprint, result)) in known {
            if let Known::Applied(at) = result {
                if let Some(result) = results.get(*at) {
                    for (column, value) in columns.iter_mut().zip([
                        key.user.as_str(),
                        key.op_id.as_str(),
                        key.table.as_str(),
                        fingerprint.as_str(),
                        result.as_str(),
                    ]) {
                        column.push(value);
                    }
                }
            }
        }
        if columns[0].is_empty() {
            return Ok(());
        }
        let remember = tx
            .prepare_cached(&format!(
                "INSERT INTO {ops} (user_id, op_id, table_name, fingerprint, result, at)
                 SELECT u, o, t, f, r, $6
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                   AS v (u, o, t, f, r)
                 ON CONFLICT (user_id, op_id, table_name) DO UPDATE SET
                   fingerprint = EXCLUDED.fingerprint, result = EXCLUDED.result, at = EXCLUDED.at"
            ))
            .await
            .map_err(pg_error)?;
        let [users, op_ids, tables, fingerprints, results] = &columns;
        tx.execute(
            &remember,
            &[users, op_ids, tables, fingerprints, results, &now],
        )
        .await
        .map_err(pg_error)?;
        Ok(())
    }
}
