//! [`PullRun`]: one pull, as a value. It checks its arguments, pushes first
//! when the table has pending ops ([`PullRun::push_first`]), on a first sync
//! reads the app's first screen when asked (`first.rs`), reads the table's
//! snapshot when the query is new and the table empty
//! ([`PullRun::read_snapshot`]), then reads pages after its cursor
//! ([`PullRun::read_pages`], pipelined: the next page is read while one is
//! applied), applies each page in one store batch (`page.rs`), reports its
//! progress (`progress.rs`), and after a resync removes the rows the server no
//! longer has. Several tables at once are `many.rs`; purge is in `purge.rs`;
//! what a pull returns is in `outcome.rs`.

mod bootstrap;
mod first;
mod many;
mod page;
mod progress;
mod purge;

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;
use tidesync_protocol::odata::{OrderBy, Query, and_maybe};
use tidesync_protocol::system::{ID, UPDATED_AT};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::engine::Engine;
use crate::error::{Error, Result, TransportError};
use crate::events::{ChangeEvent, SyncAction};
use crate::outcome::{
    Cursor, PullOptions, PullProgress, PullResult, PushOptions, PushResult, cursor_key,
};
use crate::push::PushRun;
use crate::status::SyncErrorInfo;
use crate::transport::{Page, ReadRequest, SnapshotRequest};

pub(crate) use many::pull_tables;
pub(crate) use purge::purge;

use page::{Applied, after_cursor, before_horizon, check_pull_args, page_newest};
use progress::Progress;

/// One pull of one table and query.
pub(crate) struct PullRun {
    engine: Arc<Engine>,
    table: String,
    /// The `__config` key of the query's cursor; `None` for a full read.
    key: Option<String>,
    query: Query,
    options: PullOptions,
    cancel: CancellationToken,
    page_size: u64,
    /// Where the pull is: the last row applied.
    cursor: Option<Cursor>,
    /// After a resync: the ids the server sent.
    seen: Option<HashSet<String>>,
    /// Rows applied and the total, reported as change events.
    progress: Progress,
    result: PullResult,
}

impl PullRun {
    /// Runs a pull, announcing its start and end.
    ///
    /// # Errors
    /// See `SyncContext::pull`.
    pub(crate) async fn start(
        engine: &Arc<Engine>,
        table: &str,
        query_id: Option<&str>,
        query: Query,
        options: PullOptions,
    ) -> Result<PullResult> {
        announce_start(engine, table);
        let span = tracing::info_span!("pull", table, query_id);
        let result = async {
            let mut run = PullRun::new(engine, table, query_id, query, options)?;
            run.result.push = run.push_first().await?;
            let _sync = engine.sync.lock().await;
            run.run().await
        }
        .instrument(span)
        .await;
        announce_end(engine, table, &result);
        result
    }

    /// A pull with checked arguments, not started.
    fn new(
        engine: &Arc<Engine>,
        table: &str,
        query_id: Option<&str>,
        query: Query,
        options: PullOptions,
    ) -> Result<PullRun> {
        check_pull_args(query_id, &query)?;
        engine.tables.get(&*engine.store, table)?;
        Ok(PullRun {
            engine: engine.clone(),
            table: table.to_owned(),
            key: query_id.map(|id| cursor_key(table, id)),
            cancel: options.cancel.clone().unwrap_or_default(),
            page_size: options.page_size.unwrap_or(engine.options.page_size).max(1),
            query,
            options,
            cursor: None,
            seen: None,
            progress: Progress::new(table),
            result: PullResult::default(),
        })
    }

    /// The pull after its implicit push, under the engine's sync lock (held by the caller).
    async fn run(mut self) -> Result<PullResult> {
        self.cursor = self.stored_cursor()?;
        let first_sync = self.key.is_some() && self.cursor.is_none();
        let empty = first_sync && self.table_is_empty()?;
        // A bootstrap that was cut off reads the rest of the snapshot after its cursor.
        let resume = match (&self.key, &self.cursor) {
            (Some(key), Some(_)) => bootstrap::interrupted(&self.engine, key)?,
            _ => false,
        };
        // A first sync reads the rows the app shows first, when it asked for them.
        if first_sync {
            if let Some(screen) = self.options.first_screen.clone() {
                self.read_first_screen(screen).await?;
            }
        }
        // A query pulled for the first time into an empty table reads the table in one
        // streamed snapshot when the server offers one, then pages on from its cursor.
        if resume || empty {
            if let Some(end) = self.read_snapshot().await? {
                self.cursor = end;
            }
        }
        self.read_pages().await?;
        if let Some(seen) = self.seen.take() {
            let removed = self.remove_unseen(&seen)?;
            if removed > 0 {
                self.engine.emit(ChangeEvent::Pulled {
                    table: self.table.clone(),
                    upserted: 0,
                    deleted: removed,
                });
            }
            self.result.deleted += removed;
        }
        self.progress.finish(&self.engine);
        let result = self.result;
        tracing::info!(
            upserted = result.upserted,
            deleted = result.deleted,
            skipped = result.skipped,
            requests = result.requests,
            resynced = result.resynced,
            first_screen = result.first_screen,
            "pull finished"
        );
        Ok(result)
    }

    /// Pushes until the table has no pending ops (at most a few rounds).
    async fn push_first(&self) -> Result<Option<PushResult>> {
        let scope = (!self.options.push_other_tables).then(|| vec![self.table.clone()]);
        push_before(
            &self.engine,
            std::slice::from_ref(&self.table),
            scope,
            self.options.cancel.as_ref(),
        )
        .await
    }

    /// The query's stored cursor.
    fn stored_cursor(&self) -> Result<Option<Cursor>> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        match self.engine.store.config(key)? {
            Some(text) => Ok(Some(serde_json::from_str(&text).map_err(|e| {
                Error::Internal(format!("stored cursor {key} is damaged: {e}"))
            })?)),
            None => Ok(None),
        }
    }

    /// True when the local table has no row.
    fn table_is_empty(&self) -> Result<bool> {
        let probe = Query {
            select: Some(vec![ID.to_owned()]),
            top: Some(1),
            ..Query::default()
        };
        Ok(self
            .engine
            .store
            .query(&self.table, &probe)?
            .items
            .is_empty())
    }

    /// The request for the page after `cursor` (incremental) or at `skip`.
    fn page_request(
        &self,
        cursor: Option<&Cursor>,
        skip: u64,
        remaining: Option<u64>,
    ) -> Result<ReadRequest> {
        let mut page_query = Query {
            filter: self.query.filter.clone(),
            ..Query::default()
        };
        if self.key.is_some() {
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
            page_query.top = Some(self.page_size);
        } else {
            page_query.order_by = self.query.order_by.clone();
            page_query.skip = Some(skip);
            page_query.top = Some(remaining.map_or(self.page_size, |r| r.min(self.page_size)));
        }
        Ok(ReadRequest {
            table: self.table.clone(),
            query: page_query,
            include_deleted: self.key.is_some(),
        })
    }

    /// Reads pages until the query is done. Pipelined: while a page is applied,
    /// the next one is already being read. The next request depends only on the
    /// rows received (their newest `(updatedAt, id)`, or their number), so it is
    /// known before the page is applied. At most two pages are held at once,
    /// which bounds memory by the page size.
    async fn read_pages(&mut self) -> Result<()> {
        let mut skip = self.query.skip.unwrap_or(0);
        let mut remaining = self.query.top;
        let mut next = Some(self.page_request(self.cursor.as_ref(), skip, remaining)?);
        let mut fetched = None;
        loop {
            if self.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let (request, page) = match fetched.take() {
                Some(done) => done,
                None => match next.take() {
                    Some(request) => {
                        self.result.requests += 1;
                        read(&self.engine, &self.cancel, request).await?
                    }
                    None => break,
                },
            };
            // A cursor older than the server's tombstone horizon may have missed
            // deletes whose tombstones are gone: read the query again in full and
            // drop the local rows the server no longer has.
            if self.seen.is_none()
                && self
                    .cursor
                    .as_ref()
                    .is_some_and(|c| before_horizon(c, page.purged_before.as_deref()))
            {
                tracing::warn!(
                    table = %self.table,
                    "cursor older than the server's tombstone horizon: reading the query again in full"
                );
                self.result.resynced = true;
                self.seen = Some(HashSet::new());
                self.cursor = None;
                next = Some(self.page_request(None, skip, remaining)?);
                continue;
            }
            if let Some(seen) = self.seen.as_mut() {
                seen.extend(
                    page.items
                        .iter()
                        .filter_map(|i| i.get(ID).and_then(Value::as_str).map(str::to_owned)),
                );
            }
            self.progress.set_total(page.count);
            let received = page.items.len() as u64;
            if received == 0 {
                break;
            }
            // Where the next page starts, and whether there is one.
            let requested = request.query.top.unwrap_or(u64::MAX);
            let mut more = !(page.has_more == Some(false) && received < requested);
            if self.key.is_some() {
                let newest = page_newest(&page.items);
                if newest.is_none() || newest == self.cursor {
                    tracing::warn!("rows without updatedAt: the cursor cannot advance, stopping");
                    more = false;
                }
                if more {
                    next = Some(self.page_request(newest.as_ref(), skip, remaining)?);
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
                    next = Some(self.page_request(None, skip, remaining)?);
                }
            }
            // Progress is told when a page arrives, before the next request goes out, so a
            // callback that reacts (cancels, logs) acts before anything further is sent.
            if let Some(progress) = &self.options.progress {
                progress(PullProgress {
                    received: self.result.received() + received,
                    requests: self.result.requests,
                    total: self.progress.total(),
                });
            }
            let upcoming = next.take();
            if upcoming.is_some() {
                self.result.requests += 1;
            }
            let prefetch = async {
                match upcoming {
                    Some(request) => Some(read(&self.engine, &self.cancel, request).await),
                    None => None,
                }
            };
            let apply = page::apply_page(
                self.engine.clone(),
                self.table.clone(),
                self.key.clone(),
                self.cursor.clone(),
                page.items,
            );
            let (applied, prefetched) = tokio::join!(apply, prefetch);
            let applied = applied?;
            self.count_applied(&applied);
            self.cursor = applied.cursor;
            tracing::debug!(
                rows = received,
                total = self.result.received(),
                "page applied"
            );
            match prefetched {
                Some(done) => fetched = Some(done?),
                None => break,
            }
        }
        Ok(())
    }

    /// Reads the table through the transport's snapshot, applying each batch as
    /// it arrives (the transport reads ahead meanwhile). Returns the cursor
    /// after the last row, `None` when the transport has no snapshot. Each batch
    /// commits with its cursor and a marker (`bootstrap.rs`); a failure or a kill
    /// part-way leaves the batches applied so far, and the next pull reads the rest
    /// of the snapshot after their cursor.
    async fn read_snapshot(&mut self) -> Result<Option<Option<Cursor>>> {
        let Some(key) = self.key.clone() else {
            return Ok(None);
        };
        // Resuming: the rows after the cursor (led by `updatedAt ge`, so the server seeks).
        let filter = match &self.cursor {
            Some(c) => Some(and_maybe(self.query.filter.clone(), after_cursor(c)?)),
            None => self.query.filter.clone(),
        };
        let request = SnapshotRequest {
            table: self.table.clone(),
            filter,
            batch_rows: usize::try_from(self.page_size).unwrap_or(usize::MAX),
        };
        let mut batches = match self.engine.transport.snapshot(&request).await {
            Ok(batches) => batches,
            Err(TransportError::Unsupported(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        tracing::info!(table = %self.table, "reading the table's snapshot");
        self.result.snapshot = true;
        self.result.requests += 1;
        let mut cursor = self.cursor.clone();
        let mut mark = true;
        loop {
            let next = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Err(Error::Cancelled),
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
            if let Some(progress) = &self.options.progress {
                progress(PullProgress {
                    received: self.result.received() + received,
                    requests: self.result.requests,
                    total: self.progress.total(),
                });
            }
            let applied = bootstrap::apply_batch(
                self.engine.clone(),
                self.table.clone(),
                key.clone(),
                cursor.clone(),
                items,
                std::mem::take(&mut mark),
            )
            .await?;
            self.count_applied(&applied);
            cursor = applied.cursor;
            tracing::debug!(rows = received, "snapshot batch applied");
        }
        bootstrap::finish(&self.engine, &key)?;
        Ok(Some(cursor))
    }

    /// Announces an applied page or batch and counts it in the result.
    fn count_applied(&mut self, applied: &Applied) {
        self.engine.emit(ChangeEvent::Pulled {
            table: self.table.clone(),
            upserted: applied.upserted,
            deleted: applied.deleted,
        });
        self.result.upserted += applied.upserted;
        self.result.deleted += applied.deleted;
        self.result.skipped += applied.skipped;
        self.progress.applied(
            &self.engine,
            applied.upserted + applied.deleted + applied.skipped,
        );
    }

    /// After a full re-read: removes the local rows the query selects that the
    /// server did not send and that have no queued op.
    fn remove_unseen(&self, seen: &HashSet<String>) -> Result<u64> {
        page::remove_unseen(&self.engine, &self.table, &self.query, seen)
    }
}

/// Announces a pull's start.
fn announce_start(engine: &Engine, table: &str) {
    engine.emit(ChangeEvent::SyncStarted {
        action: SyncAction::Pull,
        table: Some(table.to_owned()),
    });
}

/// Announces a pull's end (and its failure).
fn announce_end(engine: &Engine, table: &str, result: &Result<PullResult>) {
    if let Err(e) = result {
        engine.emit(ChangeEvent::SyncFailed {
            error: SyncErrorInfo::of(SyncAction::Pull, Some(table), e),
        });
    }
    engine.emit(ChangeEvent::SyncFinished {
        action: SyncAction::Pull,
        table: Some(table.to_owned()),
        push_status: None,
        ok: result.is_ok(),
    });
}

/// The implicit push before a pull: pushes (every table, or the `scope`) until
/// none of `tables` has pending ops (at most a few rounds).
async fn push_before(
    engine: &Arc<Engine>,
    tables: &[String],
    scope: Option<Vec<String>>,
    cancel: Option<&CancellationToken>,
) -> Result<Option<PushResult>> {
    let pending = || {
        let queue = engine.lock_queue();
        tables.iter().any(|t| queue.count(Some(t)) > 0)
    };
    let mut last = None;
    for _ in 0..3 {
        if !pending() {
            return Ok(last);
        }
        let mut push = PushOptions::new();
        if let Some(scope) = &scope {
            push = push.tables(scope.iter().cloned());
        }
        if let Some(cancel) = cancel {
            push = push.cancel(cancel.clone());
        }
        tracing::debug!(?tables, "implicit push before pull");
        let result = PushRun::spawn(engine, push).await?;
        if !result.is_success() {
            return Err(Error::PushFailed(Box::new(result)));
        }
        last = Some(result);
    }
    if pending() {
        Err(Error::PushFailed(Box::new(last.unwrap_or_default())))
    } else {
        Ok(last)
    }
}

/// Reads one page, unless the pull's token fires first.
async fn read(
    engine: &Engine,
    cancel: &CancellationToken,
    request: ReadRequest,
) -> Result<(ReadRequest, Page)> {
    let page = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(Error::Cancelled),
        page = engine.transport.read(&request) => page?,
    };
    Ok((request, page))
}
