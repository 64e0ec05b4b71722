//! What runs return and take: [`PushResult`], [`PushStatus`], [`PullResult`],
//! their options and the pull [`Cursor`]. A leaf: plain data, importing only
//! the model.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tidesync_protocol::odata::{OrderBy, Query};
use tokio_util::sync::CancellationToken;

use crate::model::OperationError;

/// How a push ended (the reference client's `MobileServicePushStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PushStatus {
    /// The queue was walked to the end; per-item errors may remain.
    #[default]
    Complete,
    /// A request got no answer; the op stays queued and nothing later was sent.
    CancelledByNetworkError,
    /// The server answered 401; the op stays queued and nothing later was sent.
    CancelledByAuthenticationError,
    /// The local store failed during the push.
    CancelledBySyncStoreError,
    /// The caller's cancellation token fired.
    CancelledByToken,
    /// A conflict handler asked to abort the push.
    CancelledByOperation,
    /// The push machinery itself failed unexpectedly (a panic in a store or transport).
    InternalError,
}

impl PushStatus {
    /// The reference client's numeric code.
    pub fn code(self) -> u32 {
        match self {
            PushStatus::Complete => 0,
            PushStatus::CancelledByNetworkError => 1,
            PushStatus::CancelledByAuthenticationError => 2,
            PushStatus::CancelledBySyncStoreError => 3,
            PushStatus::CancelledByToken => 4,
            PushStatus::CancelledByOperation => 5,
            PushStatus::InternalError => 2_147_483_647,
        }
    }
}

impl std::fmt::Display for PushStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// The outcome of a push.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushResult {
    /// How it ended.
    pub status: PushStatus,
    /// The ops that failed during this push and were not resolved by the conflict
    /// handler. Their records stay in the store until resolved or retried.
    pub errors: Vec<OperationError>,
    /// A failure that is not about one item (a store error, a panic).
    pub other_error: Option<String>,
    /// How many ops the server acknowledged (or that were resolved) in this push.
    pub pushed: u64,
}

impl PushResult {
    /// True when the push completed with no errors of any kind.
    pub fn is_success(&self) -> bool {
        self.status == PushStatus::Complete && self.errors.is_empty() && self.other_error.is_none()
    }
}

/// Options of one push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Only ops of these tables; all tables when `None`.
    pub tables: Option<Vec<String>>,
    /// Cancels the push between ops and while a request is outstanding.
    pub cancel: Option<CancellationToken>,
}

impl PushOptions {
    /// Every table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only these tables.
    #[must_use]
    pub fn tables<I, S>(mut self, tables: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tables = Some(tables.into_iter().map(Into::into).collect());
        self
    }

    /// With a cancellation token.
    #[must_use]
    pub fn cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }
}

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
    /// On a first sync of the query (no cursor yet), read and apply the rows the app
    /// is about to show first, before the bulk of the table; `None` (the default)
    /// reads only the bulk. See [`FirstScreen`].
    pub first_screen: Option<FirstScreen>,
}

impl PullOptions {
    /// With a first screen: on a first sync, the first `rows` rows of the pull's
    /// query in `order_by` order (the server's default order when empty) are read
    /// and applied before the bulk.
    #[must_use]
    pub fn first_screen(mut self, order_by: Vec<OrderBy>, rows: u64) -> Self {
        self.first_screen = Some(FirstScreen { order_by, rows });
        self
    }
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            push_other_tables: true,
            page_size: None,
            cancel: None,
            progress: None,
            first_screen: None,
        }
    }
}

/// The rows a first sync reads before the bulk ([`PullOptions::first_screen`]): the
/// first page of the pull's own query (its filter) in the order the app shows it.
///
/// On a first sync (the query has no cursor yet) the pull first reads these rows
/// (live rows only, with the server's count of the query's rows, which becomes the
/// progress total) and applies them without moving the cursor, so they are readable
/// locally at once; then the bulk (the snapshot, or pages in `(updatedAt, id)`
/// order) reads the whole query as an ordinary pull would and applies those rows
/// again. The end state (rows and cursor) is the same as without a first screen.
/// Incremental pulls with a cursor read no first screen.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstScreen {
    /// The order the app shows (`$orderby`); the server's default order when empty.
    pub order_by: Vec<OrderBy>,
    /// How many rows (`$top`), at least 1.
    pub rows: u64,
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("push_other_tables", &self.push_other_tables)
            .field("page_size", &self.page_size)
            .field("cancel", &self.cancel)
            .field("progress", &self.progress.is_some())
            .field("first_screen", &self.first_screen)
            .finish()
    }
}

/// One table of [`SyncContext::pull_tables`](crate::SyncContext::pull_tables):
/// what [`SyncContext::pull_with`](crate::SyncContext::pull_with) takes for one table.
#[derive(Debug, Clone)]
pub struct TablePull {
    /// The table.
    pub table: String,
    /// The query id (incremental pull); `None` reads the whole query.
    pub query_id: Option<String>,
    /// The query.
    pub query: Query,
    /// The options. The one push made before the pulls covers every table when any
    /// pull has `push_other_tables` (the default), else the pulled tables only; the
    /// first `cancel` token given also cancels that push.
    pub options: PullOptions,
}

impl TablePull {
    /// An incremental pull of `table` under `query_id`, with default options.
    pub fn new(table: impl Into<String>, query_id: impl Into<String>, query: Query) -> Self {
        Self {
            table: table.into(),
            query_id: Some(query_id.into()),
            query,
            options: PullOptions::default(),
        }
    }

    /// With options.
    #[must_use]
    pub fn options(mut self, options: PullOptions) -> Self {
        self.options = options;
        self
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
    /// Rows applied early as the first screen ([`PullOptions::first_screen`]). The
    /// bulk applied them again and counts them in `upserted`, like an ordinary pull.
    pub first_screen: u64,
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

/// The query id [`SyncTable::pull_query`](crate::SyncTable::pull_query) gives a
/// query when the app names none: `auto-` and a 64-bit FNV-1a hash of the query's
/// text, the same on every run and build, so two different queries of a table
/// never share a cursor by accident and the same query finds its cursor again.
/// (The table is part of the cursor's key already.) Pass it to
/// [`SyncContext::purge`](crate::SyncContext::purge) to forget that cursor.
pub fn derived_query_id(query: &Query) -> String {
    let text = query.to_query_string(tidesync_protocol::odata::Dialect::V3);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("auto-{hash:016x}")
}

/// The `__config` key of a query's cursor.
pub fn cursor_key(table: &str, query_id: &str) -> String {
    format!("deltaToken|{table}|{query_id}")
}
