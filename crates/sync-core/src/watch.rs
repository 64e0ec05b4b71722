//! Live sync: [`SyncContext::watch`] keeps the server's change feed open and pulls a
//! table as soon as the server says it changed, so an app sees other clients' writes
//! without calling pull.
//!
//! The [`Watcher`] it returns runs one background task that:
//!
//! - opens the feed ([`Transport::change_feed`](crate::Transport::change_feed)) for the
//!   watched tables, then pulls every watched table once (incrementally, with the
//!   options' query id), so whatever changed while it was not connected is read;
//! - on a feed event, pulls the table at once, unless a pull started less than
//!   `debounce` ago: then once that much time has passed, together with every other table
//!   told of a change meanwhile (a burst of events costs few pulls, and a lone change no
//!   wait);
//! - when the feed drops (or cannot be opened), waits with a capped exponential backoff
//!   and opens it again, pulling once more on success, so nothing is missed;
//! - with `auto_push`, pushes shortly after local writes (every write within the window
//!   joins one push) and on each (re)connect;
//! - when the transport has no change feed (`TransportError::Unsupported`), falls back to
//!   pulling every `poll_interval` instead.
//!
//! Its lifecycle shows up as [`ChangeEvent::FeedConnected`],
//! [`ChangeEvent::FeedDisconnected`] and [`ChangeEvent::FeedPolling`], next to the pulls'
//! and pushes' own events. [`Watcher::stop`] ends it and waits; dropping the watcher ends
//! it too (without waiting).

use std::collections::BTreeSet;
use std::time::Duration;

use tidesync_protocol::odata::Query;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::context::SyncContext;
use crate::error::{Error, Result, TransportError};
use crate::events::{ChangeEvent, SyncAction};
use crate::status::SyncErrorInfo;
use crate::transport::ChangeFeed;

/// How long to wait before reconnecting: `initial`, doubled after each failed attempt,
/// at most `max`, less a random part of up to a quarter (so clients cut off together do
/// not all come back in the same instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait.
    pub initial: Duration,
    /// The cap.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait before attempt `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        let full = self.initial.saturating_mul(factor).min(self.max);
        // A quarter of jitter from a v4 UUID's random bits: no extra dependency.
        let random = uuid::Uuid::new_v4().as_u128() as u16;
        full.mul_f64(1.0 - f64::from(random) / f64::from(u16::MAX) / 4.0)
    }
}

/// What [`SyncContext::watch`] watches and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOptions {
    /// The tables to keep up to date (pulled with [`Query::all`]).
    pub tables: Vec<String>,
    /// The query id of the incremental pulls (one cursor per table under this id).
    pub query_id: String,
    /// The least time between two pulls started for feed events (default 10 ms): the
    /// first event after a quiet spell is pulled at once, later ones are gathered until
    /// this much time has passed since the last pull started.
    pub debounce: Duration,
    /// `Some(window)`: push `window` after a local write (writes within the window join
    /// one push), and on every (re)connect. `None` (the default): the watcher does not
    /// push on its own (a pull still pushes the pulled table's pending ops first).
    pub auto_push: Option<Duration>,
    /// The wait between reconnection attempts (and before retrying a failed pull).
    pub backoff: Backoff,
    /// When the transport has no change feed: how often to pull every table instead
    /// (default 30 s).
    pub poll_interval: Duration,
}

impl WatchOptions {
    /// Watches `tables` with the query id `"watch"`, a 10 ms debounce, no auto push, the
    /// default [`Backoff`] and a 30 s polling fallback.
    pub fn new<I, S>(tables: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            tables: tables.into_iter().map(Into::into).collect(),
            query_id: "watch".to_owned(),
            debounce: Duration::from_millis(10),
            auto_push: None,
            backoff: Backoff::default(),
            poll_interval: Duration::from_secs(30),
        }
    }

    /// Sets the query id of the pulls.
    #[must_use]
    pub fn query_id(mut self, query_id: impl Into<String>) -> Self {
        self.query_id = query_id.into();
        self
    }

    /// Sets the debounce of feed events.
    #[must_use]
    pub fn debounce(mut self, debounce: Duration) -> Self {
        self.debounce = debounce;
        self
    }

    /// Pushes `window` after local writes and on every (re)connect.
    #[must_use]
    pub fn auto_push(mut self, window: Duration) -> Self {
        self.auto_push = Some(window);
        self
    }

    /// Sets the reconnection backoff.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the polling interval used when the transport has no change feed.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }
}

/// A running watch, from [`SyncContext::watch`]. Stop it with [`Watcher::stop`]; dropping
/// it stops it as well, without waiting for the task to finish.
#[derive(Debug)]
pub struct Watcher {
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Stops watching: closes the feed, abandons a pull or push wait in progress (a push
    /// already sent finishes on its own task) and waits for the task to end.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// True while the background task runs.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl SyncContext {
    /// Keeps `options.tables` up to date from the server's change feed (see the
    /// [module documentation](crate::WatchOptions) for the whole behaviour). Must be
    /// called inside a tokio runtime.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] without tables, with a query id a pull would refuse, or
    /// outside a tokio runtime; store failures when a table is unknown.
    pub fn watch(&self, options: WatchOptions) -> Result<Watcher> {
        if options.tables.is_empty() {
            return Err(Error::InvalidArgument(
                "watch needs at least one table".to_owned(),
            ));
        }
        if options.query_id.is_empty()
            || options.query_id.contains('|')
            || options.query_id.chars().count() > 255
        {
            return Err(Error::InvalidArgument(format!(
                "the watch query id {:?} must be 1 to 255 characters without '|'",
                options.query_id
            )));
        }
        for table in &options.tables {
            if self.store().table(table)?.is_none() {
                return Err(Error::InvalidArgument(format!(
                    "cannot watch the unknown table {table:?}"
                )));
            }
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::InvalidArgument("watch must be called inside a tokio runtime".to_owned())
        })?;
        let cancel = CancellationToken::new();
        let state = WatchState {
            ctx: self.clone(),
            // Subscribed before the task starts, so no local write is missed.
            local: self.subscribe(),
            cancel: cancel.clone(),
            dirty: BTreeSet::new(),
            pull_at: None,
            push_at: None,
            pull_failures: 0,
            last_pull: None,
            options,
        };
        let span = tracing::info_span!("watch", tables = ?state.options.tables);
        let task = runtime.spawn(state.run().instrument(span));
        Ok(Watcher {
            cancel,
            task: Some(task),
        })
    }
}

/// How a session with the feed (or with polling) ended.
enum Ended {
    /// The watcher was stopped.
    Stopped,
    /// The feed dropped; reconnect.
    Dropped,
}

/// The background task's state.
struct WatchState {
    ctx: SyncContext,
    options: WatchOptions,
    local: tokio::sync::broadcast::Receiver<ChangeEvent>,
    cancel: CancellationToken,
    /// Tables told of a change and not pulled since.
    dirty: BTreeSet<String>,
    /// When to pull the dirty tables.
    pull_at: Option<Instant>,
    /// When to push (auto push only).
    push_at: Option<Instant>,
    /// Pulls failed in a row (for the retry backoff).
    pull_failures: u32,
    /// When the last pull started (for the debounce).
    last_pull: Option<Instant>,
}

impl WatchState {
    async fn run(mut self) {
        let mut attempt = 0u32;
        loop {
            let opened = tokio::select! {
                () = self.cancel.cancelled() => return,
                opened = self.ctx.transport().change_feed(&self.options.tables) => opened,
            };
            let reason = match opened {
                Ok(feed) => {
                    attempt = 0;
                    tracing::debug!("change feed open");
                    self.ctx.emit(ChangeEvent::FeedConnected {
                        tables: self.options.tables.clone(),
                    });
                    match self.session(feed).await {
                        Ended::Stopped => return,
                        Ended::Dropped => "the change feed closed".to_owned(),
                    }
                }
                Err(TransportError::Unsupported(_)) => {
                    tracing::info!(
                        interval = ?self.options.poll_interval,
                        "no change feed; polling"
                    );
                    self.ctx.emit(ChangeEvent::FeedPolling {
                        interval: self.options.poll_interval,
                    });
                    self.poll().await;
                    return;
                }
                Err(error) => {
                    // A feed that cannot be opened is a failure of background sync.
                    let error = Error::Transport(error);
                    self.ctx.emit(ChangeEvent::SyncFailed {
                        error: SyncErrorInfo::of(SyncAction::Feed, None, &error),
                    });
                    error.to_string()
                }
            };
            let retry_in = self.options.backoff.delay(attempt);
            attempt = attempt.saturating_add(1);
            tracing::info!(%reason, ?retry_in, "change feed down");
            self.ctx
                .emit(ChangeEvent::FeedDisconnected { reason, retry_in });
            // Local writes still arm the push timer while the feed is down; the push on
            // reconnect covers them.
            let until = Instant::now() + retry_in;
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// One connected session: catch up, then follow the feed until it drops.
    async fn session(&mut self, mut feed: ChangeFeed) -> Ended {
        // Everything may have changed while we were away: push first (so the pull is not
        // held up by queued ops), then pull every table.
        if self.options.auto_push.is_some() {
            self.push_at = Some(Instant::now());
        }
        self.dirty.extend(self.options.tables.iter().cloned());
        self.pull_at = Some(Instant::now());
        loop {
            let next = self.next_deadline();
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Ended::Stopped,
                () = sleep_until_opt(next) => {
                    if self.run_due().await.is_err() {
                        return Ended::Stopped;
                    }
                }
                event = feed.recv() => match event {
                    Some(event) => {
                        tracing::trace!(table = %event.table, updated_at = ?event.updated_at, "feed event");
                        if self.options.tables.iter().any(|t| t.eq_ignore_ascii_case(&event.table)) {
                            self.mark_dirty_all_or(Some(&event.table));
                        }
                    }
                    None => return Ended::Dropped,
                },
                local = self.local.recv() => self.on_local(local),
            }
        }
    }

    /// The polling fallback: pull every table each interval, push after local writes.
    async fn poll(&mut self) {
        let mut next_poll = Instant::now();
        loop {
            if self.pull_at.is_none() && self.dirty.is_empty() {
                self.pull_at = Some(next_poll);
            }
            let next = self.next_deadline();
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return,
                () = sleep_until_opt(next) => {
                    let polling = self.pull_at.is_some_and(|at| at <= Instant::now());
                    if polling {
                        self.dirty.extend(self.options.tables.iter().cloned());
                        next_poll = Instant::now() + self.options.poll_interval;
                    }
                    if self.run_due().await.is_err() {
                        return;
                    }
                }
                local = self.local.recv() => self.on_local(local),
            }
        }
    }

    /// Marks one table (or all) for a pull: now, or `debounce` after the last pull started.
    fn mark_dirty_all_or(&mut self, table: Option<&str>) {
        match table.and_then(|t| {
            self.options
                .tables
                .iter()
                .find(|w| w.eq_ignore_ascii_case(t))
        }) {
            Some(table) => {
                self.dirty.insert(table.clone());
            }
            None => self.dirty.extend(self.options.tables.iter().cloned()),
        }
        if self.pull_at.is_none() {
            let now = Instant::now();
            let at = self
                .last_pull
                .map_or(now, |last| (last + self.options.debounce).max(now));
            self.pull_at = Some(at);
        }
    }

    /// A local change event: arms the push timer for local writes (auto push only).
    fn on_local(&mut self, event: std::result::Result<ChangeEvent, RecvError>) {
        let Some(window) = self.options.auto_push else {
            return;
        };
        let wrote = match event {
            Ok(ChangeEvent::LocalWrite { .. }) | Err(RecvError::Lagged(_)) => true,
            Ok(_) => false,
            // The context is gone; nothing more will be written.
            Err(RecvError::Closed) => false,
        };
        if wrote && self.push_at.is_none() {
            self.push_at = Some(Instant::now() + window);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        match (self.pull_at, self.push_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the push and the pulls whose time has come. `Err` when stopped meanwhile.
    async fn run_due(&mut self) -> std::result::Result<(), ()> {
        let now = Instant::now();
        if self.push_at.is_some_and(|at| at <= now) {
            self.push_at = None;
            self.push().await?;
        }
        if self.pull_at.is_some_and(|at| at <= now) {
            self.pull_at = None;
            self.pull_dirty().await?;
        }
        Ok(())
    }

    async fn push(&mut self) -> std::result::Result<(), ()> {
        if self.ctx.pending_operations().unwrap_or(1) == 0 {
            return Ok(());
        }
        let pushed = tokio::select! {
            () = self.cancel.cancelled() => return Err(()),
            pushed = self.ctx.push() => pushed,
        };
        match pushed {
            Ok(result) if result.is_success() => tracing::debug!("auto push done"),
            Ok(result) => tracing::info!(status = ?result.status, "auto push incomplete"),
            Err(error) => tracing::warn!(%error, "auto push failed"),
        }
        Ok(())
    }

    async fn pull_dirty(&mut self) -> std::result::Result<(), ()> {
        self.last_pull = Some(Instant::now());
        let tables: Vec<String> = std::mem::take(&mut self.dirty).into_iter().collect();
        for (i, table) in tables.iter().enumerate() {
            let pulled = tokio::select! {
                () = self.cancel.cancelled() => return Err(()),
                pulled = self.ctx.pull(table, Some(&self.options.query_id), Query::all()) => pulled,
            };
            match pulled {
                Ok(result) => {
                    self.pull_failures = 0;
                    tracing::debug!(%table, upserted = result.upserted, deleted = result.deleted, "watch pull");
                }
                Err(error) => {
                    // Keep this table and the ones not reached yet; try again later.
                    let retry_in = self.options.backoff.delay(self.pull_failures);
                    self.pull_failures = self.pull_failures.saturating_add(1);
                    tracing::info!(%table, %error, ?retry_in, "watch pull failed");
                    self.dirty.extend(tables[i..].iter().cloned());
                    let at = Instant::now() + retry_in;
                    self.pull_at = Some(self.pull_at.map_or(at, |p| p.max(at)));
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Sleeps until `at`, or forever without one. A deadline already reached returns at once
/// (the timer would round it up to its next millisecond tick).
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) if at <= Instant::now() => {}
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
