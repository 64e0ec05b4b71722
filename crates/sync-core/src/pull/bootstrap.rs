//! Applying a snapshot (a bootstrap): each batch in one store transaction with the
//! cursor, its rows as one bulk [`Write::PutItems`], and a marker that says a bootstrap
//! of the query is under way.
//!
//! The marker (`bootstrap|{table}|{query id}` in `__config`) is written with the first
//! batch and removed when the snapshot has ended. A pull that finds it with a stored
//! cursor knows a bootstrap was cut off (a crash, a kill, a dropped connection) and reads
//! the rest of the snapshot after that cursor: what was applied is not downloaded again,
//! and since every batch commits with its cursor, no batch is ever half applied. A marker
//! left without a cursor (after a purge) is harmless: a snapshot after a cursor selects
//! exactly the rows an incremental pull would.

use serde_json::Value;
use tidesync_protocol::Item;
use tidesync_protocol::system::{DELETED, ID};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::outcome::Cursor;
use crate::store::{Write, WriteBatch};

use super::page::{Applied, page_newest, server_row};

/// The marker's `__config` key for a query's cursor key (`deltaToken|{table}|{query id}`).
pub(super) fn marker_key(cursor_key: &str) -> String {
    let rest = cursor_key.strip_prefix("deltaToken|").unwrap_or(cursor_key);
    format!("bootstrap|{rest}")
}

/// True when a bootstrap of the query was cut off before its end.
pub(super) fn interrupted(engine: &Engine, cursor_key: &str) -> Result<bool> {
    Ok(engine.store.config(&marker_key(cursor_key))?.is_some())
}

/// Removes the marker: the snapshot ended.
pub(super) fn finish(engine: &Engine, cursor_key: &str) -> Result<()> {
    let mut batch = WriteBatch::new();
    batch.push(Write::SetConfig {
        key: marker_key(cursor_key),
        value: None,
    });
    engine.lock_queue().commit(&*engine.store, &batch)?;
    Ok(())
}

/// Applies one snapshot batch in one store batch (on a blocking thread): the rows, the
/// cursor after them and, with `mark`, the marker.
pub(super) async fn apply_batch(
    engine: std::sync::Arc<Engine>,
    table: String,
    key: String,
    cursor: Option<Cursor>,
    items: Vec<Item>,
    mark: bool,
) -> Result<Applied> {
    tokio::task::spawn_blocking(move || apply_now(&engine, &table, &key, cursor, items, mark))
        .await
        .map_err(|e| Error::Internal(format!("snapshot apply failed: {e}")))?
}

fn apply_now(
    engine: &Engine,
    table: &str,
    key: &str,
    cursor: Option<Cursor>,
    items: Vec<Item>,
    mark: bool,
) -> Result<Applied> {
    let def = engine.tables.get(&*engine.store, table)?;
    let newest = page_newest(&items);
    let mut queue = engine.lock_queue();
    let mut applied = Applied::default();
    let mut batch = WriteBatch::new();
    let mut puts: Vec<Item> = Vec::with_capacity(items.len());
    for item in items {
        let Some(id) = item.get(ID).and_then(Value::as_str) else {
            continue;
        };
        if queue.has_ops(table, id) {
            applied.skipped += 1;
            continue;
        }
        if item.get(DELETED).and_then(Value::as_bool) == Some(true) {
            applied.deleted += 1;
            // Rows keep their order: the puts before the delete go first.
            if !puts.is_empty() {
                batch.push(Write::PutItems {
                    table: table.to_owned(),
                    items: std::mem::take(&mut puts),
                });
            }
            batch.push(Write::DeleteItem {
                table: table.to_owned(),
                id: id.to_owned(),
            });
        } else {
            applied.upserted += 1;
            let id = id.to_owned();
            let row = server_row(&def, table, id, item)?;
            puts.push(row);
        }
    }
    if !puts.is_empty() {
        batch.push(Write::PutItems {
            table: table.to_owned(),
            items: puts,
        });
    }
    applied.cursor = cursor;
    if let Some(next) = newest {
        batch.push(Write::SetConfig {
            key: key.to_owned(),
            value: Some(serde_json::to_string(&next)?),
        });
        applied.cursor = Some(next);
    }
    if mark {
        batch.push(Write::SetConfig {
            key: marker_key(key),
            value: Some("1".to_owned()),
        });
    }
    queue.commit(&*engine.store, &batch)?;
    Ok(applied)
}
