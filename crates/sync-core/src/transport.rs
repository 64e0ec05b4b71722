//! The network seam: [`Transport`], the remote table API push and pull use.

use async_trait::async_trait;
use tidesync_protocol::Item;
use tidesync_protocol::odata::Query;

use crate::error::TransportError;
use crate::model::OpKind;

/// A read of one page of a remote table.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadRequest {
    /// The table.
    pub table: String,
    /// Filter, order, skip and top for this page (the engine adds the cursor).
    pub query: Query,
    /// Ask for soft-deleted rows too (incremental pulls do, to learn of deletes).
    pub include_deleted: bool,
}

/// One page of a remote table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// The rows, in the requested order.
    pub items: Vec<Item>,
    /// `Some(false)` when the server said this is the last page (a v3 `nextLink`
    /// of null); `Some(true)` when it said more follow; `None` when it did not say.
    pub has_more: Option<bool>,
    /// The total count, when asked for and given.
    pub count: Option<u64>,
    /// The server's tombstone horizon (the tidesync extension): soft-deleted
    /// rows changed before this time have been removed, so a cursor older than
    /// it may have missed deletes and the query must be read again in full.
    pub purged_before: Option<String>,
}

/// One op of a batch push (the tidesync batch extension).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOperation {
    /// The op id; the server remembers it so that a retried batch is applied once.
    pub operation_id: String,
    /// What to do.
    pub kind: OpKind,
    /// The table.
    pub table: String,
    /// The item id.
    pub item_id: String,
    /// The item to send (inserts and updates), system properties stripped.
    pub item: Option<Item>,
    /// The expected server version (`If-Match`), if any.
    pub if_match: Option<String>,
}

/// The outcome of one op of a batch push.
#[derive(Debug)]
pub enum BatchOutcome {
    /// Applied; the server's copy of the item (none for deletes).
    Ok(Option<Item>),
    /// Refused; classified like a single call's error.
    Err(TransportError),
}

/// The answer to a batch request whose per-op outcomes may still be undecoded
/// (see [`Transport::batch_answer`]).
pub struct BatchAnswer {
    decode: Box<dyn FnOnce() -> Result<Vec<BatchOutcome>, TransportError> + Send>,
}

impl BatchAnswer {
    /// An answer whose outcomes are decoded already.
    pub fn decoded(outcomes: Vec<BatchOutcome>) -> BatchAnswer {
        BatchAnswer::deferred(move || Ok(outcomes))
    }

    /// An answer that `decode` turns into its outcomes when they are asked for.
    pub fn deferred(
        decode: impl FnOnce() -> Result<Vec<BatchOutcome>, TransportError> + Send + 'static,
    ) -> BatchAnswer {
        BatchAnswer {
            decode: Box::new(decode),
        }
    }

    /// The per-op outcomes, one per op sent, in order (decoded now if they were not).
    ///
    /// # Errors
    /// `Protocol` when the answer does not decode.
    pub fn outcomes(self) -> Result<Vec<BatchOutcome>, TransportError> {
        (self.decode)()
    }
}

impl std::fmt::Debug for BatchAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchAnswer").finish_non_exhaustive()
    }
}

/// A notification from the server's change feed (the tidesync change-feed
/// extension): rows of a table changed, up to this position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEvent {
    /// The table that changed.
    pub table: String,
    /// The newest `updatedAt` the server knows for the table, if it said.
    pub updated_at: Option<String>,
    /// The id of that newest row, if it said.
    pub id: Option<String>,
}

/// An open change feed: events arrive on the receiver; when the connection
/// drops, the sender side is dropped and `recv` returns `None`.
pub type ChangeFeed = tokio::sync::mpsc::Receiver<FeedEvent>;

/// A bootstrap read of a whole table (the tidesync snapshot extension): every row
/// the filter selects, tombstones included, in ascending `(updatedAt, id)` order,
/// in one streamed response instead of one request per page.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRequest {
    /// The table.
    pub table: String,
    /// The pull's own filter, if any.
    pub filter: Option<tidesync_protocol::odata::Expr>,
    /// Rows per batch handed to the engine (it applies one batch per store write).
    pub batch_rows: usize,
}

/// An open snapshot: batches of rows in `(updatedAt, id)` order arrive on the
/// receiver. The channel closes after the last batch once the server said the
/// snapshot is complete; anything else (a cut connection, a server failure
/// after the headers) arrives as an `Err` before it closes.
pub type Snapshot = tokio::sync::mpsc::Receiver<Result<Vec<Item>, TransportError>>;

/// The remote table API.
///
/// Async and object-safe (through `async-trait`) so that a
/// [`SyncContext`](crate::SyncContext) holds an `Arc<dyn Transport>` and needs
/// no type parameters. Implementations classify failures into
/// [`TransportError`] variants; push and pull decide what each means.
#[async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Reads one page.
    ///
    /// # Errors
    /// A classified [`TransportError`].
    async fn read(&self, request: &ReadRequest) -> Result<Page, TransportError>;

    /// Creates an item; returns the server's copy (with `version`, `updatedAt`, ...).
    ///
    /// # Errors
    /// `Conflict` with the stored item when the id exists; others as classified.
    async fn insert(&self, table: &str, item: &Item) -> Result<Item, TransportError>;

    /// Replaces an item with `item` (v2 `PATCH` of the full row, v3 `PUT`),
    /// conditional on `if_match` when given; returns the server's copy.
    ///
    /// # Errors
    /// `Conflict` (412) with the server's item on a version mismatch, `NotFound`
    /// when the item does not exist.
    async fn replace(
        &self,
        table: &str,
        item: &Item,
        if_match: Option<&str>,
    ) -> Result<Item, TransportError>;

    /// Deletes an item, conditional on `if_match` when given. A missing item (404
    /// or 410) counts as success.
    ///
    /// # Errors
    /// `Conflict` (412) with the server's item on a version mismatch.
    async fn delete(
        &self,
        table: &str,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), TransportError>;

    /// Opens the server's change feed for `tables` (the tidesync extension). The
    /// feed stays open until the connection drops or the receiver is dropped.
    ///
    /// # Errors
    /// `Unsupported` when the server (or transport) has no change feed; `Network`
    /// or `Auth` when it cannot be opened.
    async fn change_feed(&self, tables: &[String]) -> Result<ChangeFeed, TransportError> {
        let _ = tables;
        Err(TransportError::Unsupported("change feed"))
    }

    /// Opens a snapshot of a table (the tidesync extension) for a client that has
    /// none of its rows yet.
    ///
    /// # Errors
    /// `Unsupported` when the server (or transport) has no snapshot; the engine
    /// then pages as usual. `Network`, `Auth`, `Http` when it cannot be opened.
    async fn snapshot(&self, request: &SnapshotRequest) -> Result<Snapshot, TransportError> {
        let _ = request;
        Err(TransportError::Unsupported("snapshot"))
    }

    /// True when [`batch`](Transport::batch) is available (our server advertises it).
    fn supports_batch(&self) -> bool {
        false
    }

    /// Sends many ops in one request; one outcome per op, in order.
    ///
    /// # Errors
    /// A failure of the request as a whole (network, auth); per-op failures are outcomes.
    async fn batch(
        &self,
        operations: &[BatchOperation],
    ) -> Result<Vec<BatchOutcome>, TransportError> {
        let _ = operations;
        Err(TransportError::Unsupported("batch push"))
    }

    /// [`batch`](Transport::batch), leaving the decoding of the per-op outcomes
    /// to the caller ([`BatchAnswer::outcomes`]): a pipelined push sends its next
    /// batch as soon as an answer has arrived and decodes the answer after, so
    /// decoding is not on the path from one request to the next. The default
    /// decodes at once.
    ///
    /// # Errors
    /// As [`batch`](Transport::batch): a failure of the request as a whole.
    async fn batch_answer(
        &self,
        operations: &[BatchOperation],
    ) -> Result<BatchAnswer, TransportError> {
        self.batch(operations).await.map(BatchAnswer::decoded)
    }
}
