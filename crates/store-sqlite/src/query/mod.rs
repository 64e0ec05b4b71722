//! Running a [`Query`] on one table: check the names, translate what SQLite can
//! answer exactly, and finish the rest with `eval::run_query`.

#[cfg(test)]
mod tests;
mod translate;

use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use tidesync_core::{ColumnType, Item, Query, QueryResult, StoreError, TableDef};
use tidesync_protocol::odata::eval;

use crate::error::{Result, SqlResultExt};
use crate::rows::read_item;
use crate::schema::quote;

pub(crate) use translate::{orderable, translate_filter};

/// The table's columns as `(name, type)`, system columns first.
pub(crate) fn columns_of(def: &TableDef) -> Vec<(String, ColumnType)> {
    def.all_columns().map(|c| (c.name, c.ty)).collect()
}

fn invalid_query(table: &str, message: impl std::fmt::Display) -> StoreError {
    StoreError::InvalidQuery {
        table: table.to_owned(),
        message: message.to_string(),
    }
}

/// Refuses a query naming a column the table lacks, as `MemoryStore` does.
fn check_members(def: &TableDef, query: &Query) -> Result<()> {
    let mut names: Vec<&str> = query.filter.as_ref().map(eval::members).unwrap_or_default();
    names.extend(query.order_by.iter().map(|o| o.member.as_str()));
    if let Some(select) = &query.select {
        names.extend(select.iter().map(String::as_str));
    }
    match names.into_iter().find(|n| def.column_type(n).is_none()) {
        Some(n) => Err(invalid_query(def.name(), format!("no column {n}"))),
        None => Ok(()),
    }
}

fn select_list(columns: &[(String, ColumnType)]) -> String {
    columns
        .iter()
        .map(|(name, _)| quote(name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn to_i64_saturating(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Reads the rows `sql` selects (as `columns`) with `params` bound.
fn fetch(
    conn: &Connection,
    sql: &str,
    params: &[SqlValue],
    columns: &[(String, ColumnType)],
) -> Result<Vec<Item>> {
    let mut stmt = conn.prepare_cached(sql).store()?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter()))
        .store()?;
    let mut items = Vec::new();
    while let Some(row) = rows.next().store()? {
        items.push(read_item(row, columns)?);
    }
    Ok(items)
}

/// Runs `query` on the table of `def` through `conn`: filter, order (with `id`
/// as the last tiebreaker), count, skip, top and select, exactly as
/// `eval::run_query` would over the table's rows.
pub(crate) fn run(conn: &Connection, def: &TableDef, query: &Query) -> Result<QueryResult> {
    check_members(def, query)?;
    let columns = columns_of(def);
    let table = quote(def.name());
    let translated = translate_filter(def, query.filter.as_ref());
    let sql_order = query.order_by.iter().all(|o| orderable(def, &o.member));
    if !(translated.exact && sql_order) {
        // Narrow in SQL, finish in Rust: filter (again, whole), sort, count, page, select.
        let sql = format!(
            "SELECT {} FROM {table} WHERE {}",
            select_list(&columns),
            translated.sql
        );
        let candidates = fetch(conn, &sql, &translated.params, &columns)?;
        let out = eval::run_query(candidates, query).map_err(|e| invalid_query(def.name(), e))?;
        return Ok(QueryResult {
            items: out.items,
            count: out.count,
        });
    }
    let count = if query.count {
        let sql = format!("SELECT count(*) FROM {table} WHERE {}", translated.sql);
        let n: i64 = conn
            .prepare_cached(&sql)
            .store()?
            .query_row(rusqlite::params_from_iter(translated.params.iter()), |r| {
                r.get(0)
            })
            .store()?;
        Some(u64::try_from(n).unwrap_or(0))
    } else {
        None
    };
    let mut order: Vec<String> = query
        .order_by
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                quote(&o.member),
                if o.descending { "DESC" } else { "ASC" }
            )
        })
        .collect();
    order.push("\"id\" ASC".to_owned());
    let mut params = translated.params;
    params.push(SqlValue::Integer(query.top.map_or(-1, to_i64_saturating)));
    params.push(SqlValue::Integer(query.skip.map_or(0, to_i64_saturating)));
    let sql = format!(
        "SELECT {} FROM {table} WHERE {} ORDER BY {} LIMIT ? OFFSET ?",
        select_list(&columns),
        translated.sql,
        order.join(", ")
    );
    let items = fetch(conn, &sql, &params, &columns)?;
    let items = match &query.select {
        None => items,
        Some(names) => items.into_iter().map(|item| project(item, names)).collect(),
    };
    Ok(QueryResult { items, count })
}

/// `$select` as `eval::run_query` does it: the listed properties that exist.
fn project(mut item: Item, names: &[String]) -> Item {
    let mut projected = Item::new();
    for name in names {
        if let Some(value) = item.remove(name) {
            projected.insert(name.clone(), value);
        }
    }
    projected
}

/// The ids of the rows a query selects (filter, order, skip and top; no select).
pub(crate) fn select_ids(conn: &Connection, def: &TableDef, query: &Query) -> Result<Vec<String>> {
    let query = Query {
        select: None,
        count: false,
        ..query.clone()
    };
    Ok(run(conn, def, &query)?
        .items
        .iter()
        .filter_map(|i| i.get("id").and_then(|v| v.as_str()).map(str::to_owned))
        .collect())
}
