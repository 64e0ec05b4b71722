//! Purge: local rows deleted without contacting the server.

use tidesync_protocol::odata::Query;

use super::page::check_query_id;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::events::ChangeEvent;
use crate::outcome::cursor_key;
use crate::store::{Write, WriteBatch};

/// Deletes local rows (all, or those `query` selects) and forgets the cursor of
/// `query_id`; see `SyncContext::purge`.
///
/// # Errors
/// [`Error::PendingOperations`] for a table with pending ops (unless forced
/// without a filter); store failures.
pub(crate) async fn purge(
    engine: &Engine,
    table: &str,
    query_id: Option<&str>,
    query: Option<Query>,
    force: bool,
) -> Result<()> {
    if let Some(id) = query_id {
        check_query_id(id)?;
    }
    engine.tables.get(&*engine.store, table)?;
    let _sync = engine.sync.lock().await;
    let mut queue = engine.lock_queue();
    let pending = queue.count(Some(table));
    let filtered = query.as_ref().is_some_and(|q| q.filter.is_some());
    if pending > 0 && (filtered || !force) {
        return Err(Error::PendingOperations {
            table: table.to_owned(),
            pending,
        });
    }
    let mut batch = WriteBatch::new();
    if pending > 0 {
        batch.push(Write::DeleteTableOperations {
            table: table.to_owned(),
        });
    }
    batch.push(Write::DeleteItems {
        table: table.to_owned(),
        query: query.unwrap_or_default(),
    });
    if let Some(id) = query_id {
        batch.push(Write::SetConfig {
            key: cursor_key(table, id),
            value: None,
        });
    }
    queue.commit(&*engine.store, &batch)?;
    drop(queue);
    engine.emit(ChangeEvent::Purged {
        table: table.to_owned(),
    });
    tracing::info!(table, query_id, pending_dropped = pending, "purged");
    Ok(())
}
