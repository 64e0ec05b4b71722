//! What the host implements: the conflict resolver and the listeners of the sync
//! status and of live queries, and the [`Subscription`] that keeps a listener fed.
//!
//! Host code is called on a blocking thread of the binding's runtime (never on a
//! runtime worker), one call at a time per listener, so a slow host callback
//! delays only its own listener.

use std::sync::Arc;

use futures_util::StreamExt;
use tidesync::{Conflict, FnHandler, Resolution};
use tokio::task::AbortHandle;

use crate::error::TidesyncError;
use crate::records::{ConflictInfo, ConflictResolution, QuerySpec, SyncStatus, parse_item};
use crate::runtime::runtime;

/// Decides conflicts during a push, in the host language.
#[uniffi::export(with_foreign)]
pub trait ConflictResolver: Send + Sync {
    /// Decides one conflict; called again if the resolution conflicts again (a
    /// bounded number of times).
    fn resolve(&self, conflict: ConflictInfo) -> ConflictResolution;
}

/// Told the sync status now and after every change of it.
#[uniffi::export(with_foreign)]
pub trait StatusListener: Send + Sync {
    /// The current status.
    fn on_status(&self, status: SyncStatus);
}

/// Told a live query's result now and again whenever it changes.
#[uniffi::export(with_foreign)]
pub trait LiveQueryListener: Send + Sync {
    /// The rows, one JSON array.
    fn on_rows(&self, rows_json: String);
    /// The query failed this time; the next change tries again.
    fn on_error(&self, error: String);
}

/// Keeps a listener fed until [`cancel`](Subscription::cancel) is called or the
/// subscription is dropped (garbage collected): keep a reference to it.
#[derive(Debug, uniffi::Object)]
pub struct Subscription {
    task: AbortHandle,
}

#[uniffi::export]
impl Subscription {
    /// Stops the listener; no call starts after this returns.
    pub fn cancel(&self) {
        self.task.abort();
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Calls host code on a blocking thread; false when the call panicked.
async fn call_host<F>(call: F) -> bool
where
    F: FnOnce() + Send + 'static,
{
    tokio::task::spawn_blocking(call).await.is_ok()
}

/// The engine's conflict handler that asks the host's resolver.
pub(crate) fn conflict_handler(resolver: Arc<dyn ConflictResolver>) -> FnHandler {
    FnHandler::new(move |conflict: Conflict| {
        let resolver = resolver.clone();
        async move {
            let info = ConflictInfo::from(&conflict);
            let decided = tokio::task::spawn_blocking(move || resolver.resolve(info)).await;
            match decided {
                Ok(resolution) => to_resolution(resolution, &conflict),
                Err(e) => {
                    tracing::warn!(error = %e, "the conflict resolver failed: the op stays failed");
                    Resolution::Fail
                }
            }
        }
    })
}

fn to_resolution(resolution: ConflictResolution, conflict: &Conflict) -> Resolution {
    match resolution {
        ConflictResolution::Fail => Resolution::Fail,
        ConflictResolution::AbortPush => Resolution::AbortPush,
        ConflictResolution::KeepClient => Resolution::KeepClient,
        ConflictResolution::TakeServer => Resolution::TakeServer,
        ConflictResolution::Merge { item } => match parse_item(&item) {
            Ok(item) => Resolution::Merge(item),
            Err(e) => {
                tracing::warn!(
                    table = %conflict.operation.table,
                    id = %conflict.operation.item_id,
                    error = %e,
                    "the conflict resolver merged to an invalid item: the op stays failed"
                );
                Resolution::Fail
            }
        },
    }
}

/// Feeds `listener` the client's status now and after every change.
pub(crate) fn watch_status(
    client: &tidesync::Client,
    listener: Arc<dyn StatusListener>,
) -> Result<Arc<Subscription>, TidesyncError> {
    let mut status = client.status();
    let task = runtime()?.spawn(async move {
        loop {
            let now = SyncStatus::from(&*status.borrow_and_update());
            let listener = listener.clone();
            if !call_host(move || listener.on_status(now)).await {
                tracing::warn!("a status listener failed: it is stopped");
                return;
            }
            if status.changed().await.is_err() {
                return;
            }
        }
    });
    Ok(Arc::new(Subscription {
        task: task.abort_handle(),
    }))
}

/// Feeds `listener` the result of `query` on `table` now and after every change.
pub(crate) fn live_query(
    table: &tidesync::SyncTable,
    query: &QuerySpec,
    listener: Arc<dyn LiveQueryListener>,
) -> Result<Arc<Subscription>, TidesyncError> {
    let mut rows = table.live_query(query.to_query()?);
    let task = runtime()?.spawn(async move {
        while let Some(result) = rows.next().await {
            let listener = listener.clone();
            let called = match result {
                Ok(rows) => match serde_json::to_string(&rows) {
                    Ok(json) => call_host(move || listener.on_rows(json)).await,
                    Err(e) => call_host(move || listener.on_error(e.to_string())).await,
                },
                Err(e) => {
                    let error = TidesyncError::from(e).to_string();
                    call_host(move || listener.on_error(error)).await
                }
            };
            if !called {
                tracing::warn!("a live query listener failed: it is stopped");
                return;
            }
        }
    });
    Ok(Arc::new(Subscription {
        task: task.abort_handle(),
    }))
}
