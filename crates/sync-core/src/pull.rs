//! Pull and purge: incremental download with a tie-proof `(updatedAt, id)`
//! cursor, the implicit push before a pull, and local purge.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tidesync_protocol::Item;
use tidesync_protocol::odata::{Expr, OrderBy, Query, after_keyset, and_maybe};
use tidesync_protocol::system::{DELETED, ID, UPDATED_AT};
use tidesync_protocol::time_fmt::parse_timestamp;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::context::Inner;
use crate::error::TransportError;
use crate::error::{Error, Result};
use crate::events::{ChangeEvent, SyncAction};
use crate::push::{PushOptions, PushResult};
use crate::queue::conform_owned;
use crate::store::{Write, WriteBatch};
use crate::transport::{ReadRequest, SnapshotRequest};

/// Progress of a running pull, reported as each page arrives (it is then applied while
/// the next page is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullProgress {
    /// Rows received so far (upserted, deleted or skipped).
    pub received: u64,
    /// Requests made so far.
    pub requests: u64,
    /// The total on the server, when the server said.
    pub total: Option<u64>,
}

/// A callback told of pull progress.
pub type ProgressFn = Arc<dyn Fn(PullProgress) + Send + Sync>;

/// Options of one pull.
#[derive(Clone)]
pub struct PullOptions {
    /// When the table has pending ops, push every table first (`true`, the
    /// default) or only the pulled table (`false`).
    pub push_other_tables: bool,
    /// Rows per request; the engine's default when `None`.
    pub page_size: Option<u64>,
    /// Cancels the pull between pages and while a request is outstanding.
    pub cancel: Option<CancellationToken>,
    /// Told of progress after every page.
    pub progress: Option<ProgressFn>,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            push_other_tables: true,
            page_size: None,
            cancel: None,
            progress: None,
        }
    }
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("push_other_tables", &self.push_other_tables)
            .field("page_size", &self.page_size)
            .field("cancel", &self.cancel)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// The outcome of a pull.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PullResult {
    /// Rows written locally (inserted or updated).
    pub upserted: u64,
    /// Rows removed locally because the server marked them deleted.
    pub deleted: u64,
    /// Rows left alone because they have a pending local change.
    pub skipped: u64,
    /// Requests made to the server.
    pub requests: u64,
    /// The implicit push made first, if one was needed.
    pub push: Option<PushResult>,
    /// True when the query was read again in full because its cursor was older
    /// than the server's tombstone horizon (local rows the server no longer has
    /// were removed and are counted in `deleted`).
    pub resynced: bool,
    /// True when the rows came first from the server's snapshot extension (one
    /// streamed response) rather than page by page.
    pub snapshot: bool,
}

impl PullResult {
    /// Every row the server sent.
    pub fn received(&self) -> u64 {
        self.upserted + self.deleted + self.skipped
    }
}

/// The incremental cursor of one query: the `(updatedAt, id)` of the last row
/// applied. Rows are read in `(updatedAt, id)` order strictly after it, so rows
/// sharing one timestamp are neither skipped nor read twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The last row's `updatedAt`, RFC 3339.
    #[serde(rename = "updatedAt")]
    pub updated_at: String,
    /// The last row's id.
    pub id: String,
}

/// The `__config` key of a query's cursor.
pub fn cursor_key(table: &str, query_id: &str) -> String {
    format!("deltaToken|{table}|{query_id}")
}

fn check_query_id(query_id: &str) -> Result<()> {
    if query_id.contains('|') || query_id.chars().count() > 255 {
        return Err(Error::InvalidArgument(format!(
            "query id {query_id:?} must be at most 255 characters without '|'"
        )));
    }
    Ok(())
}

/// Checks a pull's arguments before anything runs (spec §4.1).
fn check_pull_args(query_id: Option<&str>, query: &Query) -> Result<()> {
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
fn after_cursor(cursor: &Cursor) -> Result<Expr> {
    let at = parse_timestamp(&cursor.updated_at)
        .map_err(|e| Error::Internal(format!("stored cursor is damaged: {e}")))?;
    Ok(after_keyset(at, &cursor.id))
}

/// True when the cursor is older than the server's tombstone horizon.
fn before_horizon(cursor: &Cursor, horizon: Option<&str>) -> bool {
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
fn page_newest(items: &[Item]) -> Option<Cursor> {
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

impl Inner {
    /// Pushes until the table has no pending ops (at most a few rounds).
    pub(crate) async fn implicit_push(
        self: &Arc<Self>,
        table: &str,
        options: &PullOptions,
    ) -> Result<Option<PushResult>> {
        let mut last = None;
        for _ in 0..3 {
            if self.store.count_operations(Some(table))? == 0 {
                return Ok(last);
            }
            let mut push = PushOptions::new();
            if !options.push_other_tables {
                push = push.tables([table]);
            }
            if let Some(cancel) = &options.cancel {
                push = push.cancel(cancel.clone());
            }
            tracing::debug!(table, "implicit push before pull");
            let result = self.push(push).await?;
            if !result.is_success() {
                return Err(Error::PushFailed(Box::new(result)));
            }
            last = Some(result);
        }
        if self.store.count_operations(Some(table))? == 0 {
            Ok(last)
        } else {
            Err(Error::PushFailed(Box::new(last.unwrap_or_default())))
        }
    }

    pub(crate) async fn pull(
        self: &Arc<Self>,
        table: &str,
        query_id: Option<&str>,
        query: Query,
        options: PullOptions,
    ) -> Result<PullResult> {
        self.emit(ChangeEvent::SyncStarted {
            action: SyncAction::Pull,
            table: Some(table.to_owned()),
        });
        let result = self.pull_inner(table, query_id, query, options).await;
        self.emit(ChangeEvent::SyncFinished {
            action: SyncAction::Pull,
            table: Some(table.to_owned()),
            push_status: None,
            ok: result.is_ok(),
        });
        result
    }

    async fn pull_inner(
        self: &Arc<Self>,
        table: &str,
        query_id: Option<&str>,
        query: Query,
        options: PullOptions,
    ) -> Result<PullResult> {
        check_pull_args(query_id, &query)?;
        self.tables.get(&*self.store, table)?;
        let push = self.implicit_push(table, &options).await?;
        let _sync = self.sync.lock().await;
        let span = tracing::info_span!("pull", table, query_id);
        let _enter = span.enter();
        let mut result = PullResult {
            push,
            ..PullResult::default()
        };
        let cancel = options.cancel.clone().unwrap_or_default();
        let page_size = options.page_size.unwrap_or(self.options.page_size).max(1);
        let key = query_id.map(|id| cursor_key(table, id));
        let mut cursor: Option<Cursor> = match &key {
            Some(key) => match self.store.config(key)? {
                Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
                    Error::Internal(format!("stored cursor {key} is damaged: {e}"))
                })?),
                None => None,
            },
            None => None,
        };
        // A query pulled for the first time into an empty table reads the table in one
        // streamed snapshot when the server offers one, then pages on from its cursor.
        if key.is_some() && cursor.is_none() && self.table_is_empty(table)? {
            if let Some(end) = self
                .snapshot_pull(
                    table,
                    key.as_deref(),
                    &query,
                    &options,
                    &cancel,
                    page_size,
                    &mut result,
                )
                .await?
            {
                cursor = end;
            }
        }
        let mut skip = query.skip.unwrap_or(0);
        let mut remaining = query.top;
        // Pipelined: while a page is applied, the next one is already being read. The next
        // request depends only on the rows received (their newest `(updatedAt, id)`, or
        // their number), so it is known before the page is applied. At most two pages are
        // held at once, which bounds memory by the page size.
        let page_request = |cursor: Option<&Cursor>, skip: u64, remaining: Option<u64>| {
            let mut page_query = Query {
                filter: query.filter.clone(),
                ..Query::default()
            };
            if key.is_some() {
                if let Some(c) = cursor {
                    page_query.filter = Some(and_maybe(page_query.filter.take(), after_cursor(c)?));
                }
                page_query.order_by = vec![
                    OrderBy {
                        member: UPDATED_AT.to_owned(),
                        descending: false,
                    },
                    OrderBy {
                        member: ID.to_owned(),
                        descending: false,
                    },
                ];
                page_query.top = Some(page_size);
            } else {
                page_query.order_by = query.order_by.clone();
                page_query.skip = Some(skip);
                page_query.top = Some(remaining.map_or(page_size, |r| r.min(page_size)));
            }
            Ok::<_, Error>(ReadRequest {
                table: table.to_owned(),
                query: page_query,
                include_deleted: key.is_some(),
            })
        };
        let read = |request: ReadRequest| {
            let cancel = cancel.clone();
            let transport = Arc::clone(&self.transport);
            async move {
                let page = tokio::select! {
                    biased;
                    () = cancel.cancelled() => return Err(Error::Cancelled),
                    page = transport.read(&request) => page?,
                };
                Ok::<_, Error>((request, page))
            }
        };
        let mut seen: Option<HashSet<String>> = None;
        let mut next = Some(page_request(cursor.as_ref(), skip, remaining)?);
        let mut fetched = None;
        loop {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let (request, page) = match fetched.take() {
                Some(done) => done,
                None => match next.take() {
                    Some(request) => {
                        result.requests += 1;
                        read(request).await?
                    }
                    None => break,
                },
            };
            // A cursor older than the server's tombstone horizon may have missed
            // deletes whose tombstones are gone: read the query again in full and
            // drop the local rows the server no longer has.
            if seen.is_none()
                && cursor
                    .as_ref()
                    .is_some_and(|c| before_horizon(c, page.purged_before.as_deref()))
            {
                tracing::warn!(
                    table,
                    "cursor older than the server's tombstone horizon: reading the query again in full"
                );
                result.resynced = true;
                seen = Some(HashSet::new());
                cursor = None;
                next = Some(page_request(None, skip, remaining)?);
                continue;
            }
            if let Some(seen) = seen.as_mut() {
                seen.extend(
                    page.items
                        .iter()
                        .filter_map(|i| i.get(ID).and_then(Value::as_str).map(str::to_owned)),
                );
            }
            let received = page.items.len() as u64;
            if received == 0 {
                break;
            }
            // Where the next page starts, and whether there is one.
            let requested = request.query.top.unwrap_or(u64::MAX);
            let mut more = !(page.has_more == Some(false) && received < requested);
            if key.is_some() {
                let newest = page_newest(&page.items);
                if newest.is_none() || newest == cursor {
                    tracing::warn!("rows without updatedAt: the cursor cannot advance, stopping");
                    more = false;
                }
                if more {
                    next = Some(page_request(newest.as_ref(), skip, remaining)?);
                }
            } else {
                skip += received;
                if let Some(r) = remaining.as_mut() {
                    *r = r.saturating_sub(received);
                    if *r == 0 {
                        more = false;
                    }
                }
                if more {
                    next = Some(page_request(None, skip, remaining)?);
                }
            }
            // Progress is told when a page arrives, before the next request goes out, so a
            // callback that reacts (cancels, logs) acts before anything further is sent.
            if let Some(progress) = &options.progress {
                progress(PullProgress {
                    received: result.received() + received,
                    requests: result.requests,
                    total: page.count,
                });
            }
            let upcoming = next.take();
            if upcoming.is_some() {
                result.requests += 1;
            }
            let prefetch = async {
                match upcoming {
                    Some(request) => Some(read(request).await),
                    None => None,
                }
            };
            let apply = self
                .clone()
                .apply_page(table, key.clone(), cursor.clone(), page.items);
            let (applied, prefetched) = tokio::join!(apply, prefetch);
            let applied = applied?;
            self.count_applied(table, &applied, &mut result);
            cursor = applied.cursor;
            tracing::debug!(rows = received, total = result.received(), "page applied");
            match prefetched {
                Some(done) => fetched = Some(done?),
                None => break,
            }
        }
        if let Some(seen) = seen {
            let removed = self.remove_unseen(table, &query, &seen)?;
            if removed > 0 {
                self.emit(ChangeEvent::Pulled {
                    table: table.to_owned(),
                    upserted: 0,
                    deleted: removed,
                });
            }
            result.deleted += removed;
        }
        tracing::info!(
            upserted = result.upserted,
            deleted = result.deleted,
            skipped = result.skipped,
            requests = result.requests,
            resynced = result.resynced,
            "pull finished"
        );
        Ok(result)
    }

    /// True when the local table has no row.
    fn table_is_empty(&self, table: &str) -> Result<bool> {
        let probe = Query {
            select: Some(vec![ID.to_owned()]),
            top: Some(1),
            ..Query::default()
        };
        Ok(self.store.query(table, &probe)?.items.is_empty())
    }

    /// Reads `table` through the transport's snapshot, applying each batch as it
    /// arrives (the transport reads ahead meanwhile) and counting it in `result`.
    /// Returns the cursor after the last row, `None` when the transport has no
    /// snapshot. A failure part-way leaves the batches applied so far and their
    /// cursor stored: the next pull pages on from there.
    #[allow(clippy::too_many_arguments)]
    async fn snapshot_pull(
        self: &Arc<Self>,
        table: &str,
        key: Option<&str>,
        query: &Query,
        options: &PullOptions,
        cancel: &CancellationToken,
        page_size: u64,
        result: &mut PullResult,
    ) -> Result<Option<Option<Cursor>>> {
        let request = SnapshotRequest {
            table: table.to_owned(),
            filter: query.filter.clone(),
            batch_rows: usize::try_from(page_size).unwrap_or(usize::MAX),
        };
        let mut batches = match self.transport.snapshot(&request).await {
            Ok(batches) => batches,
            Err(TransportError::Unsupported(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        tracing::info!(table, "reading the table's snapshot");
        result.snapshot = true;
        result.requests += 1;
        let mut cursor = None;
        loop {
            let next = tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(Error::Cancelled),
                next = batches.recv() => next,
            };
            let Some(items) = next else {
                break;
            };
            let items = items?;
            if items.is_empty() {
                continue;
            }
            let received = items.len() as u64;
            if let Some(progress) = &options.progress {
                progress(PullProgress {
                    received: result.received() + received,
                    requests: result.requests,
                    total: None,
                });
            }
            let applied = self
                .clone()
                .apply_page(table, key.map(str::to_owned), cursor.clone(), items)
                .await?;
            self.count_applied(table, &applied, result);
            cursor = applied.cursor;
            tracing::debug!(rows = received, "snapshot batch applied");
        }
        Ok(Some(cursor))
    }

    /// Announces an applied page or batch and counts it in `result`.
    fn count_applied(&self, table: &str, applied: &Applied, result: &mut PullResult) {
        self.emit(ChangeEvent::Pulled {
            table: table.to_owned(),
            upserted: applied.upserted,
            deleted: applied.deleted,
        });
        result.upserted += applied.upserted;
        result.deleted += applied.deleted;
        result.skipped += applied.skipped;
    }

    /// The ids of a table's items with a queued op, read in one pass over the
    /// queue (nothing is read when the table has none); the caller holds the
    /// queue lock.
    fn pending_ids(&self, table: &str) -> Result<HashSet<String>> {
        if self.store.count_operations(Some(table))? == 0 {
            return Ok(HashSet::new());
        }
        Ok(self
            .queued_ops()?
            .into_iter()
            .filter(|op| op.table == table)
            .map(|op| op.item_id)
            .collect())
    }

    /// After a full re-read: removes the local rows the query selects that the
    /// server did not send and that have no queued op.
    fn remove_unseen(&self, table: &str, query: &Query, seen: &HashSet<String>) -> Result<u64> {
        let _state = self.lock_queue();
        let local = self.store.query(
            table,
            &Query {
                filter: query.filter.clone(),
                select: Some(vec![ID.to_owned()]),
                ..Query::default()
            },
        )?;
        let pending = self.pending_ids(table)?;
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
        self.store.write(&batch)?;
        Ok(removed)
    }

    /// Applies one page in one store batch, on a blocking thread when it is large.
    async fn apply_page(
        self: Arc<Self>,
        table: &str,
        key: Option<String>,
        cursor: Option<Cursor>,
        items: Vec<Item>,
    ) -> Result<Applied> {
        if items.len() <= 64 {
            return self.apply_page_now(table, key, cursor, items);
        }
        let table = table.to_owned();
        tokio::task::spawn_blocking(move || self.apply_page_now(&table, key, cursor, items))
            .await
            .map_err(|e| Error::Internal(format!("page apply failed: {e}")))?
    }

    fn apply_page_now(
        &self,
        table: &str,
        key: Option<String>,
        mut cursor: Option<Cursor>,
        items: Vec<Item>,
    ) -> Result<Applied> {
        let def = self.tables.get(&*self.store, table)?;
        let _state = self.lock_queue();
        let pending = self.pending_ids(table)?;
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
            if pending.contains(id) {
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
                batch.push(Write::PutItem {
                    table: table.to_owned(),
                    item: conform_owned(&def, item, true)?,
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
        self.store.write(&batch)?;
        applied.cursor = cursor;
        Ok(applied)
    }

    pub(crate) async fn purge(
        &self,
        table: &str,
        query_id: Option<&str>,
        query: Option<Query>,
        force: bool,
    ) -> Result<()> {
        if let Some(id) = query_id {
            check_query_id(id)?;
        }
        self.tables.get(&*self.store, table)?;
        let _sync = self.sync.lock().await;
        let state = self.lock_queue();
        let pending = self.store.count_operations(Some(table))?;
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
        self.store.write(&batch)?;
        drop(state);
        self.emit(ChangeEvent::Purged {
            table: table.to_owned(),
        });
        tracing::info!(table, query_id, pending_dropped = pending, "purged");
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Applied {
    upserted: u64,
    deleted: u64,
    skipped: u64,
    cursor: Option<Cursor>,
}
