//! Queries, evaluated in Rust over decoded rows.
//!
//! **Cost:** a query decodes every row of the table and hands them to
//! [`run_query`] (filter, sort, skip, top, select), so it is O(n) in the
//! table's size plus O(m log m) to sort the m matches, and holds the decoded
//! rows in memory. One shape avoids the sort and stops early: order by
//! `updatedAt` ascending (optionally then `id` ascending), no count, and a
//! filter that cannot fail (comparisons, `and`/`or`/`not`, `in`, no
//! arithmetic or functions). It walks the `(updatedAt, id)` index and decodes
//! rows only until `skip + top` matches are found, and gives exactly what
//! [`run_query`] gives because the index order is the evaluator's order
//! (null first, then the text bytewise, then `id`).

use redb::ReadableTable;
use tidesync_core::{Item, QueryResult, StoreError, TableDef};
use tidesync_protocol::odata::eval::{self, members, run_query};
use tidesync_protocol::odata::{BinaryOp, Expr, Query};
use tidesync_protocol::system::{ID, UPDATED_AT};

use crate::codec::{corrupt_row, decode_row};
use crate::error::from_redb;
use crate::schema::{IndexKey, StoredTable};

/// Rows keyed by id, as a read or write transaction opens them.
pub(crate) trait Rows: ReadableTable<&'static str, &'static [u8]> {}
impl<T: ReadableTable<&'static str, &'static [u8]>> Rows for T {}

/// The `(updatedAt, id)` index, as a read or write transaction opens it.
pub(crate) trait Index: ReadableTable<IndexKey, ()> {}
impl<T: ReadableTable<IndexKey, ()>> Index for T {}

/// Runs a query on one table.
pub(crate) fn run(
    table: &str,
    stored: &StoredTable,
    rows: &impl Rows,
    index: &impl Index,
    query: &Query,
) -> Result<QueryResult, StoreError> {
    check_members(table, &stored.def, query)?;
    if follows_index(query) {
        return by_index(table, stored, rows, index, query);
    }
    let out = run_query(all_rows(table, stored, rows)?, query).map_err(|e| invalid(table, e))?;
    Ok(QueryResult {
        items: out.items,
        count: out.count,
    })
}

/// The ids a `DeleteItems` query selects (its select and count are ignored).
pub(crate) fn selected_ids(
    table: &str,
    stored: &StoredTable,
    rows: &impl Rows,
    index: &impl Index,
    query: &Query,
) -> Result<Vec<String>, StoreError> {
    let query = Query {
        select: None,
        count: false,
        ..query.clone()
    };
    Ok(run(table, stored, rows, index, &query)?
        .items
        .iter()
        .filter_map(|item| item.get(ID).and_then(|v| v.as_str()).map(str::to_owned))
        .collect())
}

/// Decodes one row.
pub(crate) fn decode(
    table: &str,
    stored: &StoredTable,
    id: &str,
    bytes: &[u8],
) -> Result<Item, StoreError> {
    decode_row(id, bytes, &stored.slots).map_err(|why| corrupt_row(table, id, why))
}

fn all_rows(table: &str, stored: &StoredTable, rows: &impl Rows) -> Result<Vec<Item>, StoreError> {
    let mut items =
        Vec::with_capacity(usize::try_from(rows.len().map_err(from_redb)?).unwrap_or(0));
    for entry in rows.iter().map_err(from_redb)? {
        let (id, bytes) = entry.map_err(from_redb)?;
        items.push(decode(table, stored, id.value(), bytes.value())?);
    }
    Ok(items)
}

fn invalid(table: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::InvalidQuery {
        table: table.to_owned(),
        message: e.to_string(),
    }
}

/// Refuses a query naming a column the table lacks, as `MemoryStore` does.
fn check_members(table: &str, def: &TableDef, query: &Query) -> Result<(), StoreError> {
    let mut names: Vec<&str> = query.filter.as_ref().map(members).unwrap_or_default();
    names.extend(query.order_by.iter().map(|o| o.member.as_str()));
    if let Some(select) = &query.select {
        names.extend(select.iter().map(String::as_str));
    }
    match names.into_iter().find(|n| def.column_type(n).is_none()) {
        Some(n) => Err(invalid(table, format!("no column {n}"))),
        None => Ok(()),
    }
}

/// True for the shape the `(updatedAt, id)` index answers exactly.
fn follows_index(query: &Query) -> bool {
    let order_ok = match query.order_by.as_slice() {
        [first] => first.member == UPDATED_AT && !first.descending,
        [first, second] => {
            first.member == UPDATED_AT
                && !first.descending
                && second.member == ID
                && !second.descending
        }
        _ => false,
    };
    order_ok && !query.count && query.filter.as_ref().is_none_or(|f| cannot_fail(f, 0))
}

/// True when evaluating `expr` can never return an error, whatever the row, so
/// stopping early cannot hide an error [`run_query`] would report.
fn cannot_fail(expr: &Expr, depth: usize) -> bool {
    if depth > 64 {
        return false;
    }
    match expr {
        Expr::Literal(_) | Expr::Member(_) => true,
        Expr::Not(inner) => cannot_fail(inner, depth + 1),
        Expr::In { expr, .. } => cannot_fail(expr, depth + 1),
        Expr::Binary { op, left, right } => {
            !matches!(
                op,
                BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod
            ) && cannot_fail(left, depth + 1)
                && cannot_fail(right, depth + 1)
        }
        Expr::Neg(_) | Expr::Call { .. } => false,
    }
}

fn by_index(
    table: &str,
    stored: &StoredTable,
    rows: &impl Rows,
    index: &impl Index,
    query: &Query,
) -> Result<QueryResult, StoreError> {
    let mut to_skip = query.skip.unwrap_or(0);
    let mut left = query.top.unwrap_or(u64::MAX);
    let mut page = Vec::new();
    if left > 0 {
        for entry in index.iter().map_err(from_redb)? {
            let (key, _) = entry.map_err(from_redb)?;
            let (_, id) = key.value();
            let bytes = rows.get(id).map_err(from_redb)?.ok_or_else(|| {
                StoreError::Corrupt(format!("index of table {table} names a missing row {id:?}"))
            })?;
            let item = decode(table, stored, id, bytes.value())?;
            let keep = match &query.filter {
                Some(filter) => eval::matches(filter, &item).map_err(|e| invalid(table, e))?,
                None => true,
            };
            if !keep {
                continue;
            }
            if to_skip > 0 {
                to_skip -= 1;
                continue;
            }
            page.push(item);
            left -= 1;
            if left == 0 {
                break;
            }
        }
    }
    // The page is in order already; run_query only projects it.
    let project = Query {
        filter: None,
        skip: None,
        top: None,
        count: false,
        ..query.clone()
    };
    let out = run_query(page, &project).map_err(|e| invalid(table, e))?;
    Ok(QueryResult {
        items: out.items,
        count: None,
    })
}
