//! The write path of [`SqliteStore`](crate::SqliteStore): a batch in one
//! transaction ([`write_batch`]) or a lone local write as one statement
//! ([`write_alone`]), the table statements both use ([`TableInfo`]) and the
//! row checks.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::types::ToSqlOutput;
use rusqlite::{CachedStatement, Connection, Statement};
use tidesync_core::{
    ColumnType, Item, Operation, StoreError, TableDef, Write, WriteBatch, check_value,
};

use crate::error::{Result, SqlResultExt};
use crate::query::{columns_of, select_ids};
use crate::queue::OpIndex;
use crate::rows::{
    ERROR_COLUMNS, OP_COLUMN, error_params, row_op_text, row_op_text_into, to_sql, to_sql_ref,
};
use crate::schema::{self, quote};

/// The writer's table definitions (no `PRAGMA schema_version` per use).
#[derive(Debug, Default)]
pub(crate) struct WriterTables(HashMap<String, Arc<TableInfo>, foldhash::fast::RandomState>);

impl WriterTables {
    fn get(&mut self, conn: &Connection, table: &str) -> Result<Arc<TableInfo>> {
        self.get_ref(conn, table).cloned()
    }

    /// As [`get`](Self::get), borrowed (no reference count to touch).
    fn get_ref(&mut self, conn: &Connection, table: &str) -> Result<&Arc<TableInfo>> {
        if !self.0.contains_key(table) {
            let info = Arc::new(TableInfo::load(conn, table)?);
            self.0.insert(table.to_owned(), info);
        }
        self.0
            .get(table)
            .ok_or_else(|| StoreError::UnknownTable(table.to_owned()))
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

/// A batch of one local write (a row with its op) whose op can go into the
/// row, as **one statement in autocommit mode**: SQLite runs a statement
/// outside a transaction as a transaction of its own, atomic and committed
/// as durably as any other, so the row and its op still commit together,
/// with two statements (`BEGIN`, `COMMIT`) fewer than [`write_batch`].
///
/// The statement (`put_alone_sql`) checks what the map cannot promise
/// without a transaction around it: it writes nothing unless the table is
/// listed in `__row_op_tables` (which another connection may have changed)
/// and the row holds no other op. `false`, with nothing written, when the
/// write cannot take this path; the caller then runs [`write_batch`].
pub(crate) fn write_alone(
    conn: &Connection,
    tables: &mut WriterTables,
    ops: &mut OpIndex,
    op_text: &mut String,
    table: &str,
    item: &Item,
    op: &Operation,
) -> Result<bool> {
    let fits = op.table == table
        && item
            .get("id")
            .and_then(|v| v.as_str())
            .is_some_and(|id| op.item_id == id);
    if !fits
        || !conn.is_autocommit()
        || !ops.ready_for_alone(table)
        || !ops.may_hold_in_row(op)
        || ops.is_marked(&op.id)
    {
        // (A marked op rewritten leaves its `__attempted` row: a batch's work.)
        return Ok(false);
    }
    let info = tables.get_ref(conn, table)?;
    let mut statement = conn.prepare_cached(&info.put_alone_sql).store()?;
    row_op_text_into(op, op_text)?;
    // Fresh from the cache, which cleared its bindings.
    let changed = put_item(&mut statement, info, item, Some(op_text), false)?;
    drop(statement);
    if changed == 0 {
        return Ok(false);
    }
    ops.wrote_alone(conn, op);
    Ok(true)
}

/// One `BEGIN IMMEDIATE` transaction for the whole batch, rolled back on any
/// error. The transaction statements are cached like every other statement.
pub(crate) fn write_batch(
    conn: &Connection,
    tables: &mut WriterTables,
    ops: &mut OpIndex,
    batch: &WriteBatch,
) -> Result<()> {
    execute(conn, "BEGIN IMMEDIATE", [])?;
    let result = (|| {
        if ops.refresh_for_write(conn)? {
            tables.clear();
        }
        let mut put = None;
        // The completions' statement, kept from one op to the next as `put` is.
        let mut clearing: LastPut<'_, '_> = None;
        let mut errors = ErrorRecords::default();
        let writes = &batch.writes;
        let mut at = 0;
        while let Some(write) = writes.get(at) {
            at += 1;
            if errors.skips(conn, write)? {
                continue;
            }
            // A completed op kept in its row, and the row's new copy right after
            // (past the op's error record): one statement clears the op and
            // writes the row, where deleting the op would rewrite the row first.
            if let Write::DeleteOperation { id } = write {
                if let Some((next, table, item)) = put_after(writes, at) {
                    let item_id = item.get("id").and_then(|v| v.as_str());
                    if item_id.is_some_and(|item_id| ops.forget_row_op(id, table, item_id)) {
                        for between in &writes[at..next] {
                            if !errors.skips(conn, between)? {
                                apply(conn, tables, ops, &mut put, between)?;
                            }
                        }
                        let current = match clearing.take() {
                            Some(same) if same.0 == table => same,
                            _ => {
                                let info = tables.get(conn, table)?;
                                let statement =
                                    conn.prepare_cached(&info.put_clearing_op_sql).store()?;
                                (table, info, statement)
                            }
                        };
                        let (_, info, statement) = clearing.insert(current);
                        // A statement kept from the previous op still holds its bindings.
                        put_item(statement, info, item, None, true)?;
                        at = next + 1;
                        continue;
                    }
                }
            }
            // A row and its op: one statement writes both when the row can
            // hold the op (the op in the row's op column, see `queue`).
            if let Write::PutItemAndOperation { table, item, op } = write {
                let id = item.get("id").and_then(|v| v.as_str());
                if op.table == *table
                    && id.is_some_and(|id| op.item_id == id)
                    && ops.may_hold_in_row(op)
                {
                    let info = tables.get_ref(conn, table)?;
                    let mut statement = conn.prepare_cached(&info.put_with_op_sql).store()?;
                    // Fresh from the cache, which cleared its bindings.
                    let changed =
                        put_item(&mut statement, info, item, Some(&row_op_text(op)?), false)?;
                    drop(statement);
                    if changed == 1 {
                        ops.row_written(conn, op)?;
                        continue;
                    }
                    // The row holds another op: the row as any row, the op
                    // in `__operations` (below).
                }
            }
            apply(conn, tables, ops, &mut put, write)?;
        }
        drop(put);
        drop(clearing);
        ops.unmark_empty(conn)?;
        ops.flush_attempts(conn)?;
        execute(conn, "COMMIT", [])?;
        ops.committed(conn);
        Ok(())
    })();
    if result.is_err() && !conn.is_autocommit() {
        // Best effort: the error that made us roll back is the one to report.
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

/// Whether `__errors` holds any record, as far as one batch needs to know: a
/// pushed op's completion deletes its error record, which nearly always does
/// not exist, and one look at the table spares a statement per op.
#[derive(Debug, Default)]
struct ErrorRecords {
    /// `None` until the batch's first `DeleteError` looks; a `PutError` in the
    /// batch makes it `Some(false)`.
    empty: Option<bool>,
}

impl ErrorRecords {
    /// True when `write` deletes an error record and there is none to delete.
    fn skips(&mut self, conn: &Connection, write: &Write) -> Result<bool> {
        match write {
            Write::DeleteError { .. } => {
                let empty = match self.empty {
                    Some(empty) => empty,
                    None => {
                        let any: bool = conn
                            .prepare_cached("SELECT EXISTS (SELECT 1 FROM __errors)")
                            .store()?
                            .query_row([], |r| r.get(0))
                            .store()?;
                        self.empty = Some(!any);
                        !any
                    }
                };
                Ok(empty)
            }
            Write::PutError(_) => {
                self.empty = Some(false);
                Ok(false)
            }
            _ => Ok(false),
        }
    }
}

/// A table as reads and writes use it: its definition, columns and statements.
#[derive(Debug)]
pub(crate) struct TableInfo {
    pub(crate) def: TableDef,
    pub(crate) columns: Vec<(String, ColumnType)>,
    pub(crate) select_sql: String,
    /// Inserts the row or replaces its columns, keeping the op kept in it.
    put_sql: String,
    /// As `put_sql`, also setting the op column (one more parameter), but
    /// replacing an existing row only when its op column is null or holds
    /// the same op (same `id`); otherwise it changes nothing (0 rows).
    put_with_op_sql: String,
    /// As `put_with_op_sql`, writing nothing unless the table is listed in
    /// `__row_op_tables` (a local write run as its own transaction).
    put_alone_sql: String,
    /// As `put_sql`, also clearing the op column of an existing row: a pushed
    /// op completed and its row takes the server's copy, in one statement.
    put_clearing_op_sql: String,
    delete_sql: String,
}

impl TableInfo {
    pub(crate) fn load(conn: &Connection, table: &str) -> Result<TableInfo> {
        let def = schema::load_definition(conn, table)?
            .ok_or_else(|| StoreError::UnknownTable(table.to_owned()))?;
        // An existing row takes the op only when it holds none or this one.
        let guard = format!(
            "WHERE {op} IS NULL OR {op} ->> '$.id' = excluded.{op} ->> '$.id'",
            op = quote(OP_COLUMN)
        );
        let columns = columns_of(&def);
        let names: Vec<String> = columns.iter().map(|(n, _)| quote(n)).collect();
        let upsert = |extra: Option<&str>| {
            let mut names = names.clone();
            names.extend(extra.map(quote));
            let marks: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
            format!(
                "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (\"id\") DO UPDATE SET {}",
                quote(table),
                names.join(", "),
                marks.join(", "),
                excluded_sets(&names)
            )
        };
        Ok(TableInfo {
            select_sql: format!(
                "SELECT {} FROM {} WHERE \"id\" = ?1",
                names.join(", "),
                quote(table)
            ),
            put_sql: upsert(None),
            put_with_op_sql: format!("{} {guard}", upsert(Some(OP_COLUMN))),
            put_alone_sql: {
                let mut names = names.clone();
                names.push(quote(OP_COLUMN));
                let marks: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
                // `INSERT … SELECT` takes a `WHERE` (and needs one before `ON
                // CONFLICT`); the table's name is a string literal.
                format!(
                    "INSERT INTO {} ({}) SELECT {} WHERE EXISTS (SELECT 1 FROM __row_op_tables \
                     WHERE name = '{}') ON CONFLICT (\"id\") DO UPDATE SET {} {guard}",
                    quote(table),
                    names.join(", "),
                    marks.join(", "),
                    table.replace('\'', "''"),
                    excluded_sets(&names)
                )
            },
            put_clearing_op_sql: format!("{}, {} = NULL", upsert(None), quote(OP_COLUMN)),
            delete_sql: format!("DELETE FROM {} WHERE \"id\" = ?1", quote(table)),
            def,
            columns,
        })
    }
}

/// An upsert's `SET` list: every column but `id` takes the new row's value.
fn excluded_sets(names: &[String]) -> String {
    let sets: Vec<String> = names
        .iter()
        .filter(|n| n.as_str() != "\"id\"")
        .map(|n| format!("{n} = excluded.{n}"))
        .collect();
    sets.join(", ")
}

/// The first write after `from` that is not an error record's deletion, when it
/// is a [`Write::PutItem`]: its position, table and row.
fn put_after(writes: &[Write], from: usize) -> Option<(usize, &str, &Item)> {
    let next = from
        + writes
            .get(from..)?
            .iter()
            .position(|w| !matches!(w, Write::DeleteError { .. }))?;
    match writes.get(next)? {
        Write::PutItem { table, item } => Some((next, table.as_str(), item)),
        _ => None,
    }
}

/// The insert statement of the table a batch last put a row in: consecutive rows
/// of one table (a pulled page) share one prepared statement, looked up once.
type LastPut<'w, 'c> = Option<(&'w str, Arc<TableInfo>, CachedStatement<'c>)>;

fn apply<'w, 'c>(
    conn: &'c Connection,
    tables: &mut WriterTables,
    ops: &mut OpIndex,
    put: &mut LastPut<'w, 'c>,
    write: &'w Write,
) -> Result<()> {
    match write {
        Write::PutItem { table, item } => {
            let current = match put.take() {
                Some(same) if same.0 == table.as_str() => same,
                _ => {
                    let info = tables.get(conn, table)?;
                    let statement = conn.prepare_cached(&info.put_sql).store()?;
                    (table.as_str(), info, statement)
                }
            };
            let (_, info, statement) = put.insert(current);
            // A statement kept from the previous row still holds its bindings.
            put_item(statement, info, item, None, true).map(|_| ())
        }
        Write::PutItems { table, items } => {
            // One single-row statement per row: a multi-row `INSERT` would make SQLite keep
            // a statement journal (every page it touches that existed before it, copied to a
            // temporary file), which costs more than the statements it saves.
            let info = tables.get(conn, table)?;
            let mut statement = conn.prepare_cached(&info.put_sql).store()?;
            for (n, item) in items.iter().enumerate() {
                put_item(&mut statement, &info, item, None, n > 0)?;
            }
            Ok(())
        }
        Write::DeleteItem { table, id } => {
            let info = tables.get(conn, table)?;
            ops.evict(conn, table, id)?;
            execute(conn, &info.delete_sql, [id])
        }
        Write::DeleteItems { table, query } => {
            let info = tables.get(conn, table)?;
            for id in select_ids(conn, &info.def, query)? {
                ops.evict(conn, table, &id)?;
                execute(conn, &info.delete_sql, [id])?;
            }
            Ok(())
        }
        Write::PutItemAndOperation { table, item, op } => {
            let info = tables.get(conn, table)?;
            let mut statement = conn.prepare_cached(&info.put_sql).store()?;
            put_item(&mut statement, &info, item, None, false)?;
            drop(statement);
            ops.put(conn, op, true)
        }
        Write::PutOperation(op) => {
            let table_exists = match tables.get(conn, &op.table) {
                Ok(_) => true,
                Err(StoreError::UnknownTable(_)) => false,
                Err(other) => return Err(other),
            };
            ops.put(conn, op, table_exists)
        }
        Write::DeleteOperation { id } => ops.delete(conn, id),
        Write::MarkAttempted { ids } => ops.mark_attempted(conn, ids),
        Write::DeleteTableOperations { table } => {
            ops.delete_table(conn, table)?;
            execute(conn, "DELETE FROM __errors WHERE tableName = ?1", [table])
        }
        Write::Clear => {
            let names: Vec<String> = conn
                .prepare_cached("SELECT name FROM __tables")
                .store()?
                .query_map([], |r| r.get(0))
                .store()?
                .collect::<rusqlite::Result<_>>()
                .store()?;
            for name in names {
                // Rows go with the ops kept in them; `ops.clear` forgets those.
                execute(conn, &format!("DELETE FROM {}", quote(&name)), [])?;
            }
            ops.clear(conn)?;
            execute(conn, "DELETE FROM __errors", [])?;
            execute(conn, "DELETE FROM __config", [])
        }
        Write::PutError(error) => {
            let sql = format!(
                "INSERT OR REPLACE INTO __errors ({ERROR_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            );
            conn.prepare_cached(&sql)
                .store()?
                .execute(error_params(error)?)
                .store()?;
            Ok(())
        }
        Write::DeleteError { operation_id } => {
            execute(conn, "DELETE FROM __errors WHERE id = ?1", [operation_id])
        }
        Write::SetConfig { key, value } => match value {
            Some(value) => execute(
                conn,
                "INSERT OR REPLACE INTO __config (id, value) VALUES (?1, ?2)",
                [key, value],
            ),
            None => execute(conn, "DELETE FROM __config WHERE id = ?1", [key]),
        },
        other => Err(StoreError::backend(std::io::Error::other(format!(
            "the SQLite store does not know the write {other:?}"
        )))),
    }
}

pub(crate) fn execute(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<()> {
    conn.prepare_cached(sql).store()?.execute(params).store()?;
    Ok(())
}

/// Checks the item as `MemoryStore` does (a string id, then each property in
/// order: a known column, a value of its type) and replaces the whole row.
/// Values already in normal form are bound as they are, without a copy, and
/// only the row's values are bound: the statement's earlier bindings are
/// cleared first, so every column the item lacks is `NULL` (as the full row
/// replace needs) without binding it.
/// `statement` is the table's `put_sql`, or its `put_with_op_sql` with the op
/// column's text in `op`. `bound`: the statement may hold an earlier row's
/// bindings (a statement just taken from rusqlite's cache has none: the
/// cache clears them when a statement returns to it).
fn put_item(
    statement: &mut Statement<'_>,
    info: &TableInfo,
    item: &Item,
    op: Option<&str>,
    bound: bool,
) -> Result<usize> {
    check_id(info, item)?;
    if bound {
        statement.clear_bindings();
    }
    for (name, value) in item {
        let (index, value) = column_param(info, name, value)?;
        // SQLite numbers parameters from 1.
        statement.raw_bind_parameter(index + 1, value).store()?;
    }
    if let Some(text) = op {
        statement
            .raw_bind_parameter(info.columns.len() + 1, text)
            .store()?;
    }
    statement.raw_execute().store()
}

/// A row must have a string id.
fn check_id(info: &TableInfo, item: &Item) -> Result<()> {
    match item.get("id").and_then(|v| v.as_str()) {
        Some(_) => Ok(()),
        None => Err(StoreError::MissingId {
            table: info.def.name().to_owned(),
        }),
    }
}

/// The column index of property `name` and its checked value, ready to bind
/// (borrowed when already in normal form).
fn column_param<'i>(
    info: &TableInfo,
    name: &str,
    value: &'i serde_json::Value,
) -> Result<(usize, ToSqlOutput<'i>)> {
    let table = info.def.name();
    let index = info
        .columns
        .iter()
        .position(|(column, _)| column == name)
        .ok_or_else(|| StoreError::UnknownColumn {
            table: table.to_owned(),
            column: name.to_owned(),
        })?;
    let ty = info.columns[index].1;
    let value = match check_value(table, name, ty, value)? {
        Cow::Borrowed(value) => to_sql_ref(ty, value)?,
        Cow::Owned(value) => ToSqlOutput::Owned(to_sql(ty, value)?),
    };
    Ok((index, value))
}
