//! Applying what a pull read: one page (or snapshot batch) in one store batch,
//! rows with a queued op left alone, the cursor stored with the rows; and the
//! cursor arithmetic that says where the next page starts.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;
use tidesync_protocol::Item;
use tidesync_protocol::odata::{Expr, Query, after_keyset};
use tidesync_protocol::system::{DELETED, ID, UPDATED_AT};
use tidesync_protocol::time_fmt::{is_canonical_timestamp, parse_timestamp};
use time::OffsetDateTime;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::TableDef;
use crate::outcome::Cursor;
use crate::queue::conform_owned;
use crate::store::{Write, WriteBatch};

/// Pages of up to this many rows are applied inline; larger ones on a
/// blocking thread.
const INLINE_ROWS: usize = 64;

/// What applying one page did.
#[derive(Debug, Default)]
pub(super) struct Applied {
    pub upserted: u64,
    pub deleted: u64,
    pub skipped: u64,
    pub cursor: Option<Cursor>,
}

pub(super) fn check_query_id(query_id: &str) -> Result<()> {
    if query_id.contains('|') || query_id.chars().count() > 255 {
        return Err(Error::InvalidArgument(format!(
            "query id {query_id:?} must be at most 255 characters without '|'"
        )));
    }
    Ok(())
}

/// Checks a pull's arguments before anything runs (spec §4.1).
pub(super) fn check_pull_args(query_id: Option<&str>, query: &Query) -> Result<()> {
    if let Some(id) = query_id {
        check_query_id(id)?;
    }
    if query.select.is_some() {
        return Err(Error::InvalidArgument(
            "a pull query cannot have $select: local rows need every column".to_owned(),
        ));
    }
    if query_id.is_some()
        && (!query.order_by.is_empty() || query.skip.is_some() || query.top.is_some())
    {
        return Err(Error::InvalidArgument(
            "an incremental pull orders and pages by itself: no $orderby, $skip or $top".to_owned(),
        ));
    }
    Ok(())
}

/// The filter that reads strictly after a cursor ([`after_keyset`], shaped so that a
/// server seeks its `(updatedAt, id)` index).
pub(super) fn after_cursor(cursor: &Cursor) -> Result<Expr> {
    let at = parse_timestamp(&cursor.updated_at)
        .map_err(|e| Error::Internal(format!("stored cursor is damaged: {e}")))?;
    Ok(after_keyset(at, &cursor.id))
}

/// True when the cursor is older than the server's tombstone horizon.
pub(super) fn before_horizon(cursor: &Cursor, horizon: Option<&str>) -> bool {
    let (Some(horizon), Ok(at)) = (horizon, parse_timestamp(&cursor.updated_at)) else {
        return false;
    };
    parse_timestamp(horizon).is_ok_and(|h| at < h)
}

/// The `(updatedAt, id)` of a row, if it has a parseable `updatedAt`.
fn row_position(item: &Item) -> Option<(OffsetDateTime, &str, &str)> {
    let text = item.get(UPDATED_AT)?.as_str()?;
    let at = parse_timestamp(text).ok()?;
    let id = item.get(ID)?.as_str()?;
    Some((at, text, id))
}

/// The cursor a page moves to: its newest `(updatedAt, id)`, if any row has one.
pub(super) fn page_newest(items: &[Item]) -> Option<Cursor> {
    // When every row has an id and an `updatedAt` as servers write it (fixed width, UTC),
    // text order is time order: no row needs parsing.
    fn canonical(item: &Item) -> Option<(&str, &str)> {
        let text = item.get(UPDATED_AT)?.as_str()?;
        let id = item.get(ID)?.as_str()?;
        is_canonical_timestamp(text).then_some((text, id))
    }
    if let Some(positions) = items.iter().map(canonical).collect::<Option<Vec<_>>>() {
        return positions.into_iter().max().map(|(text, id)| Cursor {
            updated_at: text.to_owned(),
            id: id.to_owned(),
        });
    }
    newest_parsed(items)
}

/// [`page_newest`] by parsed time, for rows of any timestamp form.
fn newest_parsed(items: &[Item]) -> Option<Cursor> {
    let mut newest: Option<(OffsetDateTime, &str, &str)> = None;
    for item in items {
        if let Some((at, text, id)) = row_position(item) {
            if newest.is_none_or(|(n_at, _, n_id)| (at, id).cmp(&(n_at, n_id)) == Ordering::Greater)
            {
                newest = Some((at, text, id));
            }
        }
    }
    newest.map(|(_, text, id)| Cursor {
        updated_at: text.to_owned(),
        id: id.to_owned(),
    })
}

/// Applies one page in one store batch, on a blocking thread when it is large.
pub(super) async fn apply_page(
    engine: Arc<Engine>,
    table: String,
    key: Option<String>,
    cursor: Option<Cursor>,
    items: Vec<Item>,
) -> Result<Applied> {
    if items.len() <= INLINE_ROWS {
        return apply_page_now(&engine, &table, key, cursor, items);
    }
    tokio::task::spawn_blocking(move || apply_page_now(&engine, &table, key, cursor, items))
        .await
        .map_err(|e| Error::Internal(format!("page apply failed: {e}")))?
}

fn apply_page_now(
    engine: &Engine,
    table: &str,
    key: Option<String>,
    mut cursor: Option<Cursor>,
    items: Vec<Item>,
) -> Result<Applied> {
    let def = engine.tables.get(&*engine.store, table)?;
    let mut queue = engine.lock_queue();
    let mut applied = Applied::default();
    let mut batch = WriteBatch::new();
    let mut newest: Option<(OffsetDateTime, String, String)> = None;
    for item in items {
        let Some(id) = item.get(ID).and_then(Value::as_str) else {
            continue;
        };
        if let Some((at, text, id)) = row_position(&item) {
            if newest.as_ref().is_none_or(|(n_at, _, n_id)| {
                (at, id).cmp(&(*n_at, n_id.as_str())) == Ordering::Greater
            }) {
                newest = Some((at, text.to_owned(), id.to_owned()));
            }
        }
        if queue.has_ops(table, id) {
            applied.skipped += 1;
            continue;
        }
        if item.get(DELETED).and_then(Value::as_bool) == Some(true) {
            applied.deleted += 1;
            batch.push(Write::DeleteItem {
                table: table.to_owned(),
                id: id.to_owned(),
            });
        } else {
            applied.upserted += 1;
            let id = id.to_owned();
            let row = server_row(&def, table, id, item)?;
            batch.push(Write::PutItem {
                table: table.to_owned(),
                item: row,
            });
        }
    }
    if let (Some(key), Some((_, text, id))) = (key, newest) {
        let next = Cursor {
            updated_at: text,
            id,
        };
        batch.push(Write::SetConfig {
            key,
            value: Some(serde_json::to_string(&next)?),
        });
        cursor = Some(next);
    }
    queue.commit(&*engine.store, &batch)?;
    applied.cursor = cursor;
    Ok(applied)
}

/// A row the server sent, shaped for the local table `table`; one that does not
/// fit fails the pull with [`Error::BadServerRow`].
pub(super) fn server_row(def: &TableDef, table: &str, id: String, item: Item) -> Result<Item> {
    conform_owned(def, item, true).map_err(|reason| Error::BadServerRow {
        table: table.to_owned(),
        id,
        reason: Box::new(reason),
    })
}

/// After a full re-read: removes the local rows the query selects that the
/// server did not send and that have no queued op.
pub(super) fn remove_unseen(
    engine: &Engine,
    table: &str,
    query: &Query,
    seen: &HashSet<String>,
) -> Result<u64> {
    let mut queue = engine.lock_queue();
    let local = engine.store.query(
        table,
        &Query {
            filter: query.filter.clone(),
            select: Some(vec![ID.to_owned()]),
            ..Query::default()
        },
    )?;
    let pending = queue.item_ids(table);
    let mut batch = WriteBatch::new();
    for id in local
        .items
        .iter()
        .filter_map(|i| i.get(ID).and_then(Value::as_str))
        .filter(|id| !seen.contains(*id) && !pending.contains(*id))
    {
        batch.push(Write::DeleteItem {
            table: table.to_owned(),
            id: id.to_owned(),
        });
    }
    let removed = batch.len() as u64;
    queue.commit(&*engine.store, &batch)?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn row(updated_at: &str, id: &str) -> Item {
        match json!({"id": id, "updatedAt": updated_at}) {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    /// Comparing canonical text picks the row that comparing parsed times picks.
    #[test]
    fn the_newest_row_by_text_is_the_newest_by_time() {
        let times = [
            "2026-01-01T00:00:00.000Z",
            "2026-01-01T00:00:00.001Z",
            "2025-12-31T23:59:59.999Z",
            "0999-06-01T12:00:00.000Z",
            "9999-12-31T23:59:59.999Z",
        ];
        let ids = ["a", "b", "B", "a1", ""];
        let mut state: u64 = 7;
        for _ in 0..2_000 {
            let mut items = Vec::new();
            for _ in 0..(state % 6) {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let pick = usize::try_from(state >> 40).unwrap();
                items.push(row(times[pick % times.len()], ids[(pick / 7) % ids.len()]));
            }
            assert_eq!(page_newest(&items), newest_parsed(&items), "{items:?}");
        }
        // A row in another form sends the page to the parsing path.
        let mixed = [
            row("2026-01-01T00:00:00.000Z", "a"),
            row("2026-01-01T01:00:00+02:00", "b"),
        ];
        assert_eq!(page_newest(&mixed).unwrap().id, "a");
    }
}
