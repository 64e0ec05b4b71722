//! Live queries: a local query's result as a stream that refreshes itself.
//!
//! Built on the change events alone (no polling): the stream subscribes before
//! it first queries, so no change can fall between its result and its next
//! wake-up; it re-queries when an event says rows of its table may have changed
//! (a local write, a pull, a push's answer, a purge, a resolution, a
//! `clear_all`), first draining every event already waiting so a burst costs one
//! query; and it yields a result only when the rows differ from the last one it
//! yielded. One task runs each query after the last, so a result never follows a
//! newer one.

use futures_util::stream::{self, Stream};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::error::Result;
use crate::events::ChangeEvent;
use crate::table::SyncTable;
use tidesync_protocol::Item;
use tidesync_protocol::odata::Query;

/// Where a live query stands between two results.
struct LiveState<T> {
    table: SyncTable<T>,
    name: String,
    query: Query,
    events: Receiver<ChangeEvent>,
    /// True once the first result (or error) was yielded.
    started: bool,
    /// The rows last yielded (None before the first result and after an error).
    last: Option<Vec<Item>>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> SyncTable<T> {
    /// The result of `query` now, and again after every change that can affect
    /// it, for as long as the stream is kept.
    ///
    /// The first item comes at once. After that the stream waits, without
    /// polling, for an event that may change this table's rows, re-runs the query
    /// (several changes at once cost one query) and yields the new result when it
    /// differs from the last one. A failed query yields the error and the stream
    /// goes on. Drop the stream to stop it.
    pub fn live_query(
        &self,
        query: Query,
    ) -> impl Stream<Item = Result<Vec<T>>> + Send + Unpin + 'static {
        let state = LiveState {
            table: self.clone(),
            name: self.name().to_owned(),
            query,
            events: self.context().subscribe(),
            started: false,
            last: None,
        };
        Box::pin(stream::unfold(state, |mut state| async move {
            if state.started {
                state.wait_for_change().await;
            }
            state.started = true;
            loop {
                match state.table.query_items(&state.query).await {
                    Ok(rows) if state.last.as_ref() == Some(&rows) => {
                        state.wait_for_change().await;
                    }
                    Ok(rows) => {
                        state.last = Some(rows.clone());
                        return Some((state.table.typed(rows), state));
                    }
                    Err(e) => {
                        // Yield the failure; the next change tries again.
                        state.last = None;
                        return Some((Err(e), state));
                    }
                }
            }
        }))
    }
}

impl<T> LiveState<T> {
    /// Waits for an event that may change the table's rows, then drains every
    /// event already queued (they are covered by the one query that follows).
    async fn wait_for_change(&mut self) {
        loop {
            match self.events.recv().await {
                Ok(event) if self.affects(&event) => break,
                Ok(_) => {}
                // Missed events may have been about this table: query to be sure.
                Err(RecvError::Lagged(_)) => break,
                // The context is gone, so nothing changes any more: wait forever
                // (never happens while this stream holds its table handle).
                Err(RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
        while let Ok(_) | Err(TryRecvError::Lagged(_)) = self.events.try_recv() {}
    }

    fn affects(&self, event: &ChangeEvent) -> bool {
        event.changes_rows() && event.table().is_none_or(|t| t == self.name)
    }
}
