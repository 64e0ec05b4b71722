//! Queries, evaluated in Rust over decoded rows.
//!
//! **Cost:** a query decodes every row of the table and hands them to
//! [`run_query`] (filter, sort, skip, top, select), so it is O(n) in the
//! table's size plus O(m log m) to sort the m matches, and holds the decoded
//! rows in memory. No shape is cheaper: the store keeps no secondary index
//! (format 1's `(updatedAt, id)` index, which let `updatedAt`-ordered queries
//! stop early, cost a second B-tree write on every row write, and the client's
//! own reads seldom order by `updatedAt`).

use redb::ReadableTable;
use tidesync_core::{Item, QueryResult, StoreError, TableDef};
use tidesync_protocol::odata::Query;
use tidesync_protocol::odata::eval::{members, run_query};
use tidesync_protocol::system::ID;

use crate::codec::{corrupt_row, decode_row};
use crate::error::from_redb;
use crate::schema::StoredTable;

/// Rows keyed by id, as a read or write transaction opens them.
pub(crate) trait Rows: ReadableTable<&'static str, &'static [u8]> {}
impl<T: ReadableTable<&'static str, &'static [u8]>> Rows for T {}

/// Runs a query on one table.
pub(crate) fn run(
    table: &str,
    stored: &StoredTable,
    rows: &impl Rows,
    query: &Query,
) -> Result<QueryResult, StoreError> {
    check_members(table, &stored.def, query)?;
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
    query: &Query,
) -> Result<Vec<String>, StoreError> {
    let query = Query {
        select: None,
        count: false,
        ..query.clone()
    };
    Ok(run(table, stored, rows, &query)?
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
