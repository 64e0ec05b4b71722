//! The file format: the format version and its migrations, the metadata tables,
//! and the SQL tables behind table definitions.
//!
//! Format version 5 (`PRAGMA user_version = 5`, `PRAGMA application_id` =
//! [`APPLICATION_ID`]):
//! * `__tables(name TEXT PRIMARY KEY, definition TEXT)`: each table definition as JSON;
//! * one table per defined table, `id` its primary key, with no other index,
//!   and a hidden column `__tidesync_op`: the queued op kept in that row,
//!   as JSON, or null (see `queue`). App tables keep their rowid: a
//!   `WITHOUT ROWID` table would also make a local write one page cheaper,
//!   but bulk pulls of random ids into it were 1.7 times slower (whole rows
//!   move at each page split), and bulk sync matters more. Date-time columns
//!   hold UTC text with exactly three fractional digits;
//! * `__row_op_tables(name TEXT PRIMARY KEY)`: the tables some of whose rows
//!   hold an op (the only ones the queue scans when it reads the queue again);
//! * `__operations(id, kind, state, tableName, itemId, item, base, sequence, version)`:
//!   the ops not kept in a row, a rowid table with no index at all, its keys
//!   kept in memory (see `queue`);
//! * `__errors(id, operationVersion, operationKind, tableName, itemId, httpStatus,
//!   item, serverItem, rawResult, message)`, keyed by the op id;
//! * `__config(id TEXT PRIMARY KEY, value TEXT)`;
//! * `__attempted(ops TEXT)`: one row per batch of ops a push marked attempted at
//!   once, listing their ids as a JSON array; an op listed there is attempted
//!   whatever state its own record says, until it is written or deleted (the row
//!   is then rewritten without it, or deleted when it lists none; see `queue`).
//!
//! Opening an older file migrates it step by step, in one transaction. The history of
//! every format, with the commits that wrote each committed fixture, is in
//! `docs/FORMATS.md`; in short: version 1 had `__operations` keyed by `id` with indexes,
//! and an `(updatedAt, id)` index on each app table; version 2 dropped those indexes
//! (its first layout also made app tables `WITHOUT ROWID`); version 3 added the op
//! column (its first layout lacked `__row_op_tables`). Version 4 is the layout version
//! 3 ended with: its migration repairs the layouts that changed in place. Version 5
//! adds `__attempted`.
//!
//! **Rule:** any change to the layout or to how values are stored bumps the version
//! and adds a migration; a committed fixture never changes (the tidy test pins each
//! one's sha256).

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Transaction};
use tidesync_core::{ColumnDef, ColumnType, StoreError, TableDef};

use crate::error::{Result, SqlResultExt, corrupt};
use crate::rows::OP_COLUMN;

/// `PRAGMA application_id` of a tidesync store ("tide" in ASCII).
pub(crate) const APPLICATION_ID: i32 = 0x7469_6465;

/// One step of the format: migrates a file from version `i` to `i + 1`
/// (the function at index `i`), inside the opening transaction.
type Migration = fn(&Transaction<'_>) -> Result<()>;

/// The migrations, oldest first. The current format version is their number.
const MIGRATIONS: &[Migration] = &[
    |tx| v0_to_v1(tx).store(),
    |tx| v1_to_v2(tx).store(),
    |tx| v2_to_v3(tx).store(),
    v3_to_v4,
    |tx| v4_to_v5(tx).store(),
];

/// The format version this build writes.
pub(crate) fn current_version() -> u32 {
    u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX)
}

/// The metadata tables every store has, reserved as table names.
const RESERVED: [&str; 6] = [
    "__tables",
    "__operations",
    "__errors",
    "__config",
    "__row_op_tables",
    "__attempted",
];

fn v0_to_v1(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE __tables (
             name TEXT PRIMARY KEY NOT NULL,
             definition TEXT NOT NULL
         );
         CREATE TABLE __operations (
             id TEXT PRIMARY KEY NOT NULL,
             kind INTEGER NOT NULL,
             state INTEGER NOT NULL,
             tableName TEXT NOT NULL,
             itemId TEXT NOT NULL,
             item TEXT,
             base TEXT,
             sequence INTEGER NOT NULL,
             version INTEGER NOT NULL
         );
         CREATE INDEX __operations_sequence ON __operations (sequence);
         CREATE INDEX __operations_item ON __operations (tableName, itemId, sequence);
         CREATE TABLE __errors (
             id TEXT PRIMARY KEY NOT NULL,
             operationVersion INTEGER NOT NULL,
             operationKind INTEGER NOT NULL,
             tableName TEXT NOT NULL,
             itemId TEXT NOT NULL,
             httpStatus INTEGER,
             item TEXT,
             serverItem TEXT,
             rawResult TEXT,
             message TEXT NOT NULL
         );
         CREATE TABLE __config (
             id TEXT PRIMARY KEY NOT NULL,
             value TEXT NOT NULL
         );",
    )
}

/// The queue without indexes (see the module docs), and no `(updatedAt, id)`
/// index on app tables: the client never reads its rows in that order often
/// enough to pay an index write on every local write.
fn v1_to_v2(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    for name in table_names(tx)? {
        tx.execute_batch(&format!(
            "DROP INDEX IF EXISTS {}",
            quote(&format!("__idx_{name}_updatedAt_id"))
        ))?;
    }
    tx.execute_batch(
        "CREATE TABLE __operations_v2 (
             id TEXT NOT NULL,
             kind INTEGER NOT NULL,
             state INTEGER NOT NULL,
             tableName TEXT NOT NULL,
             itemId TEXT NOT NULL,
             item TEXT,
             base TEXT,
             sequence INTEGER NOT NULL,
             version INTEGER NOT NULL
         );
         INSERT INTO __operations_v2
             SELECT id, kind, state, tableName, itemId, item, base, sequence, version
             FROM __operations ORDER BY sequence, id;
         DROP TABLE __operations;
         ALTER TABLE __operations_v2 RENAME TO __operations;",
    )
}

/// The op column on every app table and the list of tables whose rows hold
/// ops (see `queue`): ops already queued stay in `__operations`, where the
/// queue still looks for them.
fn v2_to_v3(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch("CREATE TABLE __row_op_tables (name TEXT PRIMARY KEY NOT NULL)")?;
    for name in table_names(tx)? {
        tx.execute_batch(&format!(
            "ALTER TABLE {} ADD COLUMN {} TEXT",
            quote(&name),
            quote(OP_COLUMN)
        ))?;
    }
    Ok(())
}

/// Format 4 is the layout format 3 ended with. Three changes reached main without a
/// version bump, so a file of format 3 (or migrated to it) may have any of them undone;
/// this step redoes each where it is missing, and does nothing on a file that has them:
/// * app tables created `WITHOUT ROWID` (format 2 until commit 3b7d63e) become rowid
///   tables again (rebuilt from their own `CREATE TABLE` text);
/// * `__row_op_tables` (missing in format 3 until commit bd1f79b) is created and lists
///   every table with an op in one of its rows;
/// * date-times written with more than three fractional digits (format 1 until commit
///   9a62c28) are cut to milliseconds, as stores now keep them, so that text order is
///   time order again.
fn v3_to_v4(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch("CREATE TABLE IF NOT EXISTS __row_op_tables (name TEXT PRIMARY KEY NOT NULL)")
        .store()?;
    for (name, def) in load_definitions(tx)? {
        let table = quote(&name);
        let sql: String = tx
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [&name],
                |r| r.get(0),
            )
            .store()?;
        if sql
            .trim_end()
            .to_ascii_uppercase()
            .ends_with("WITHOUT ROWID")
        {
            let end = sql
                .rfind(')')
                .ok_or_else(|| corrupt(format!("the definition of table {name}: {sql}")))?;
            tx.execute_batch(&format!(
                "ALTER TABLE {table} RENAME TO __tidesync_rebuild;
                 {};
                 INSERT INTO {table} SELECT * FROM __tidesync_rebuild;
                 DROP TABLE __tidesync_rebuild;",
                &sql[..=end]
            ))
            .store()?;
        }
        tx.execute(
            &format!(
                "INSERT OR IGNORE INTO __row_op_tables (name) SELECT ?1 \
                 WHERE EXISTS (SELECT 1 FROM {table} WHERE {} IS NOT NULL)",
                quote(OP_COLUMN)
            ),
            [&name],
        )
        .store()?;
        for column in def.all_columns().filter(|c| c.ty == ColumnType::DateTime) {
            millisecond_date_times(tx, &table, &quote(&column.name))?;
        }
    }
    Ok(())
}

/// `__attempted`: a push marks a batch of ops attempted with one row listing
/// them, instead of rewriting each op (see `queue`).
fn v4_to_v5(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch("CREATE TABLE __attempted (ops TEXT NOT NULL)")
}

/// Rewrites the date-times of one column that are not in the stored form.
fn millisecond_date_times(tx: &Transaction<'_>, table: &str, column: &str) -> Result<()> {
    // The stored form is `YYYY-MM-DDTHH:MM:SS.mmmZ`, 24 characters.
    let wide: Vec<(String, String)> = tx
        .prepare(&format!(
            "SELECT id, {column} FROM {table} WHERE typeof({column}) = 'text' AND length({column}) <> 24"
        ))
        .store()?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .store()?
        .collect::<rusqlite::Result<_>>()
        .store()?;
    let mut update = tx
        .prepare(&format!("UPDATE {table} SET {column} = ?1 WHERE id = ?2"))
        .store()?;
    for (id, text) in wide {
        if let Ok(at) = tidesync_protocol::parse_timestamp(&text) {
            update
                .execute((tidesync_protocol::format_timestamp(at), id))
                .store()?;
        }
    }
    Ok(())
}

fn table_names(tx: &Transaction<'_>) -> rusqlite::Result<Vec<String>> {
    let mut stmt = tx.prepare("SELECT name FROM __tables")?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

/// Brings the file to the current format inside one `BEGIN IMMEDIATE`
/// transaction, so two processes opening a new file at once cannot both create it.
///
/// # Errors
/// `UnsupportedFormat` for a newer file, `Corrupt` for a SQLite file of another
/// application, `Busy` when another writer holds the file past the busy timeout.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    // A current file needs no write lock: opening it while another connection
    // writes must not wait for that writer.
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .store()?;
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .store()?;
    if version == i64::from(current_version()) && app == APPLICATION_ID {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .store()?;
    let found: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .store()?;
    let app: i32 = tx
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .store()?;
    let found = u32::try_from(found).map_err(|_| corrupt(format!("format version {found}")))?;
    let supported = current_version();
    if found > supported {
        return Err(StoreError::UnsupportedFormat { found, supported });
    }
    if found == supported {
        return Ok(());
    }
    if found == 0 {
        let objects: i64 = tx
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .store()?;
        if objects > 0 && app != APPLICATION_ID {
            return Err(corrupt("a SQLite database that is not a tidesync store"));
        }
    } else if app != APPLICATION_ID {
        return Err(corrupt("a SQLite database that is not a tidesync store"));
    }
    for (from, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tracing::info!(from, to = from + 1, "migrating the store format");
        step(&tx)?;
    }
    tx.pragma_update(None, "user_version", supported).store()?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .store()?;
    tx.commit().store()
}

/// Quotes an identifier that [`TableDef::validate`] accepted (letters, digits, `_`).
pub(crate) fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

/// The declared SQL type of a column kind. Reals are declared without a type
/// (no affinity): with `REAL` affinity SQLite stores a real without fraction as
/// an integer on disk, which turns -0.0 into 0. Every value bound to them is a
/// real, so they still hold only reals (and nulls).
fn sql_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::String | ColumnType::DateTime | ColumnType::Json => " TEXT",
        ColumnType::Bool | ColumnType::Integer => " INTEGER",
        ColumnType::Real => "",
    }
}

fn column_sql(c: &ColumnDef) -> String {
    if c.name == tidesync_protocol::system::ID {
        format!("{} TEXT PRIMARY KEY NOT NULL", quote(&c.name))
    } else {
        format!("{}{}", quote(&c.name), sql_type(c.ty))
    }
}

/// Every stored definition, by name.
pub(crate) fn load_definitions(conn: &Connection) -> Result<HashMap<String, TableDef>> {
    let mut stmt = conn
        .prepare_cached("SELECT name, definition FROM __tables")
        .store()?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .store()?;
    let mut defs = HashMap::new();
    for row in rows {
        let (name, text) = row.store()?;
        let def: TableDef = serde_json::from_str(&text)
            .map_err(|e| corrupt(format!("definition of table {name}: {e}")))?;
        defs.insert(name, def);
    }
    Ok(defs)
}

/// One stored definition.
pub(crate) fn load_definition(conn: &Connection, name: &str) -> Result<Option<TableDef>> {
    let text: Option<String> = conn
        .prepare_cached("SELECT definition FROM __tables WHERE name = ?1")
        .store()?
        .query_row([name], |r| r.get(0))
        .optional()
        .store()?;
    text.map(|text| {
        serde_json::from_str(&text).map_err(|e| corrupt(format!("definition of table {name}: {e}")))
    })
    .transpose()
}

fn invalid(message: String) -> StoreError {
    StoreError::InvalidDefinition(message)
}

/// Creates or grows the table for `def` inside `tx`, as `MemoryStore` does:
/// new columns are added, existing ones must keep their type. Returns the
/// stored definition afterwards. Refuses what SQLite cannot hold: names equal
/// to another table's or column's but for letter case (SQLite identifiers are
/// case-insensitive), the metadata table names and `sqlite_` names.
pub(crate) fn define(tx: &Transaction<'_>, def: &TableDef) -> Result<TableDef> {
    def.validate()?;
    let name = def.name();
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
        || name.to_ascii_lowercase().starts_with("sqlite_")
    {
        return Err(invalid(format!(
            "table name {name} is reserved by the SQLite store"
        )));
    }
    check_case_collisions(def)?;
    if let Some(c) = def
        .columns()
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(OP_COLUMN))
    {
        return Err(invalid(format!(
            "column name {} of table {name} is reserved by the SQLite store",
            c.name
        )));
    }
    match load_definition(tx, name)? {
        None => {
            let others = load_definitions(tx)?;
            if let Some(other) = others.keys().find(|o| o.eq_ignore_ascii_case(name)) {
                return Err(invalid(format!(
                    "table {name} differs from table {other} only in letter case"
                )));
            }
            let mut columns: Vec<String> = def.all_columns().map(|c| column_sql(&c)).collect();
            columns.push(format!("{} TEXT", quote(OP_COLUMN)));
            let table = quote(name);
            tx.execute_batch(&format!("CREATE TABLE {table} ({})", columns.join(", "),))
                .store()?;
            save_definition(tx, def)?;
            Ok(def.clone())
        }
        Some(existing) => {
            let mut grown = existing.clone();
            for c in def.columns() {
                match existing.column_type(&c.name) {
                    Some(ty) if ty != c.ty => {
                        return Err(invalid(format!(
                            "column {} of table {name} is {ty:?}, not {:?}",
                            c.name, c.ty
                        )));
                    }
                    Some(_) => {}
                    None => grown = grown.column(c.name.clone(), c.ty),
                }
            }
            if grown == existing {
                return Ok(existing);
            }
            check_case_collisions(&grown)?;
            for c in grown.columns() {
                if existing.column_type(&c.name).is_none() {
                    tx.execute_batch(&format!(
                        "ALTER TABLE {} ADD COLUMN {}",
                        quote(name),
                        column_sql(c)
                    ))
                    .store()?;
                }
            }
            save_definition(tx, &grown)?;
            Ok(grown)
        }
    }
}

fn check_case_collisions(def: &TableDef) -> Result<()> {
    let columns: Vec<ColumnDef> = def.all_columns().collect();
    for (i, a) in columns.iter().enumerate() {
        if let Some(b) = columns[i + 1..]
            .iter()
            .find(|b| b.name.eq_ignore_ascii_case(&a.name))
        {
            return Err(invalid(format!(
                "columns {} and {} of table {} differ only in letter case",
                a.name,
                b.name,
                def.name()
            )));
        }
    }
    Ok(())
}

fn save_definition(tx: &Transaction<'_>, def: &TableDef) -> Result<()> {
    let text = serde_json::to_string(def).map_err(StoreError::backend)?;
    tx.prepare_cached("INSERT OR REPLACE INTO __tables (name, definition) VALUES (?1, ?2)")
        .store()?
        .execute((def.name(), text))
        .store()?;
    Ok(())
}
