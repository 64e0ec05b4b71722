//! [`Engine`]: the parts a sync context shares with its runs — the store, the
//! transport, the conflict handler, the [`Queue`] behind its lock, the table
//! cache, the settings and the event channel. It holds state and wires; the
//! push and pull algorithms are their own runs (`PushRun`, `PullRun`).

use std::sync::{Arc, Mutex, MutexGuard};

use crate::conflict::ConflictHandler;
use crate::events::ChangeEvent;
use crate::queue::Queue;
use crate::status::StatusCell;
use crate::store::LocalStore;
use crate::tables::TableCache;
use crate::transport::Transport;

/// Engine settings.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub page_size: u64,
    pub max_conflict_rounds: u32,
    pub batch_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            page_size: 100,
            max_conflict_rounds: 3,
            batch_size: 500,
        }
    }
}

/// The shared state behind a `SyncContext`.
#[derive(Debug)]
pub(crate) struct Engine {
    pub store: Arc<dyn LocalStore>,
    pub transport: Arc<dyn Transport>,
    pub handler: Arc<dyn ConflictHandler>,
    /// The queue; see [`Engine::lock_queue`].
    queue: Mutex<Queue>,
    /// Push, pull and purge run one at a time.
    pub sync: tokio::sync::Mutex<()>,
    pub tables: TableCache,
    pub options: Options,
    pub events: tokio::sync::broadcast::Sender<ChangeEvent>,
    /// The sync status, kept current from the events (and the queue's counts).
    pub status: StatusCell,
}

impl Engine {
    pub(crate) fn new(
        store: Arc<dyn LocalStore>,
        transport: Arc<dyn Transport>,
        handler: Arc<dyn ConflictHandler>,
        queue: Queue,
        options: Options,
        events: tokio::sync::broadcast::Sender<ChangeEvent>,
        status: StatusCell,
    ) -> Self {
        Self {
            store,
            transport,
            handler,
            queue: Mutex::new(queue),
            sync: tokio::sync::Mutex::new(()),
            tables: TableCache::default(),
            options,
            events,
            status,
        }
    }

    /// Announces an event to subscribers (none listening is fine).
    pub(crate) fn emit(&self, event: ChangeEvent) {
        self.status.on_event(&event);
        let _ = self.events.send(event);
    }

    /// The queue lock, taken by every local write and every queue change of a
    /// run, never across an await. A panic elsewhere cannot leave the queue
    /// half-changed (it changes only after a store commit, in memory), so a
    /// poisoned lock is reused.
    pub(crate) fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}
