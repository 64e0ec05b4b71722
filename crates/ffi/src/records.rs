//! The plain values that cross the boundary: settings, queries, outcomes, the sync
//! status and conflicts. Items travel as JSON text (one object, or one array for a
//! whole query result), so a result of any size crosses in one call.

use std::collections::HashMap;

use tidesync::backend::format_stored_timestamp;
use tidesync::backend::protocol::odata::{parse_filter, parse_order_by};
use tidesync::{Item, Query};

use crate::error::TidesyncError;

/// The type of a local column ([`tidesync::ColumnType`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ColumnType {
    /// A JSON string.
    String,
    /// A JSON boolean.
    Bool,
    /// A JSON integer that fits an i64.
    Integer,
    /// Any JSON number.
    Real,
    /// An RFC 3339 date-time string.
    DateTime,
    /// Any JSON value, kept as JSON text.
    Json,
}

impl From<ColumnType> for tidesync::ColumnType {
    fn from(ty: ColumnType) -> Self {
        match ty {
            ColumnType::String => Self::String,
            ColumnType::Bool => Self::Bool,
            ColumnType::Integer => Self::Integer,
            ColumnType::Real => Self::Real,
            ColumnType::DateTime => Self::DateTime,
            ColumnType::Json => Self::Json,
        }
    }
}

/// One declared column.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ColumnSpec {
    /// The property name (case-sensitive).
    pub name: String,
    /// Its type.
    pub column_type: ColumnType,
}

/// A table to define (or grow) when the client opens: its name and app columns
/// (the system columns `id`, `updatedAt`, `version`, `deleted` come with it).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct TableSpec {
    /// The table name, as the server knows it.
    pub name: String,
    /// The app's columns.
    pub columns: Vec<ColumnSpec>,
}

impl From<&TableSpec> for tidesync::TableDef {
    fn from(spec: &TableSpec) -> Self {
        spec.columns
            .iter()
            .fold(tidesync::TableDef::new(&spec.name), |def, column| {
                def.column(&column.name, column.column_type.into())
            })
    }
}

/// How a client opens: the SQLite file, the server and its credentials, the
/// tables, and the transport's and engine's settings (`None`: the default).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ClientConfig {
    /// The SQLite database file (created when missing).
    pub database_path: String,
    /// The sync server's base URL (`http(s)://host[:port][/path]`).
    pub server_url: String,
    /// The tables to define.
    pub tables: Vec<TableSpec>,
    /// An API key sent as `x-api-key`.
    #[uniffi(default)]
    pub api_key: Option<String>,
    /// A bearer token sent as `Authorization: Bearer …`.
    #[uniffi(default)]
    pub bearer_token: Option<String>,
    /// Headers sent with every request.
    #[uniffi(default)]
    pub headers: HashMap<String, String>,
    /// How long one request may take in all, in milliseconds (default 30 s).
    #[uniffi(default)]
    pub timeout_ms: Option<u64>,
    /// How long connecting may take, in milliseconds.
    #[uniffi(default)]
    pub connect_timeout_ms: Option<u64>,
    /// Retries of a failed request (default 3; 0 disables).
    #[uniffi(default)]
    pub max_retries: Option<u32>,
    /// Rows per pull request.
    #[uniffi(default)]
    pub page_size: Option<u64>,
    /// Ops per batch push request.
    #[uniffi(default)]
    pub batch_size: Option<u32>,
    /// How often one push may ask the conflict handler about one op.
    #[uniffi(default)]
    pub max_conflict_rounds: Option<u32>,
}

/// A local or server query in OData terms: `filter` and `order_by` are `$filter`
/// and `$orderby` text (`"complete eq false"`, `"text desc"`). All unset: every row.
#[derive(Debug, Clone, Default, PartialEq, uniffi::Record)]
pub struct QuerySpec {
    /// `$filter`.
    #[uniffi(default)]
    pub filter: Option<String>,
    /// `$orderby`.
    #[uniffi(default)]
    pub order_by: Option<String>,
    /// `$skip`.
    #[uniffi(default)]
    pub skip: Option<u64>,
    /// `$top`.
    #[uniffi(default)]
    pub top: Option<u64>,
}

impl QuerySpec {
    /// The facade's query.
    ///
    /// # Errors
    /// [`TidesyncError::InvalidArgument`] for a filter or order that does not parse.
    pub(crate) fn to_query(&self) -> Result<Query, TidesyncError> {
        let mut query = Query::new();
        if let Some(filter) = &self.filter {
            query =
                query.filter(parse_filter(filter).map_err(|e| {
                    TidesyncError::invalid_argument(format!("filter {filter:?}: {e}"))
                })?);
        }
        if let Some(order_by) = &self.order_by {
            query.order_by = parse_order_by(order_by).map_err(|e| {
                TidesyncError::invalid_argument(format!("order_by {order_by:?}: {e}"))
            })?;
        }
        query.skip = self.skip;
        query.top = self.top;
        Ok(query)
    }
}

/// How a push ended ([`tidesync::PushStatus`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum PushStatus {
    /// The queue was walked to the end (per-item errors may remain).
    Complete,
    /// A request got no answer; nothing later was sent, nothing is lost.
    CancelledByNetworkError,
    /// The server answered 401.
    CancelledByAuthenticationError,
    /// The local store failed.
    CancelledBySyncStoreError,
    /// The push was cancelled.
    CancelledByToken,
    /// The conflict handler asked to abort the push.
    CancelledByOperation,
    /// The push machinery failed unexpectedly.
    InternalError,
}

impl From<tidesync::PushStatus> for PushStatus {
    fn from(status: tidesync::PushStatus) -> Self {
        use tidesync::PushStatus as S;
        match status {
            S::Complete => Self::Complete,
            S::CancelledByNetworkError => Self::CancelledByNetworkError,
            S::CancelledByAuthenticationError => Self::CancelledByAuthenticationError,
            S::CancelledBySyncStoreError => Self::CancelledBySyncStoreError,
            S::CancelledByToken => Self::CancelledByToken,
            S::CancelledByOperation => Self::CancelledByOperation,
            S::InternalError => Self::InternalError,
        }
    }
}

/// What a queued operation does ([`tidesync::OpKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum OpKind {
    /// Create the item.
    Insert,
    /// Replace the item.
    Update,
    /// Delete the item.
    Delete,
}

impl From<tidesync::OpKind> for OpKind {
    fn from(kind: tidesync::OpKind) -> Self {
        match kind {
            tidesync::OpKind::Insert => Self::Insert,
            tidesync::OpKind::Update => Self::Update,
            tidesync::OpKind::Delete => Self::Delete,
        }
    }
}

/// An operation that failed and waits for a resolution ([`tidesync::OperationError`]).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct OperationFailure {
    /// The op's id.
    pub operation_id: String,
    /// What the op does.
    pub kind: OpKind,
    /// The table.
    pub table: String,
    /// The item's id.
    pub item_id: String,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// True for 409 or 412: the server has another version of the item.
    pub is_conflict: bool,
    /// What was sent, JSON text.
    pub item: Option<String>,
    /// The server's copy, JSON text, when the answer carried it.
    pub server_item: Option<String>,
    /// A readable description.
    pub detail: String,
}

impl From<&tidesync::OperationError> for OperationFailure {
    fn from(error: &tidesync::OperationError) -> Self {
        Self {
            operation_id: error.operation_id.clone(),
            kind: error.kind.into(),
            table: error.table.clone(),
            item_id: error.item_id.clone(),
            status: error.status,
            is_conflict: error.is_conflict(),
            item: error.item.as_ref().map(item_json),
            server_item: error.server_item.as_ref().map(item_json),
            detail: error.message.clone(),
        }
    }
}

/// The outcome of a push ([`tidesync::PushResult`]).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct PushOutcome {
    /// How it ended.
    pub status: PushStatus,
    /// True when it completed with no error of any kind.
    pub succeeded: bool,
    /// Ops the server acknowledged (or that were resolved).
    pub pushed: u64,
    /// Ops that failed and were not resolved by the conflict handler.
    pub failures: Vec<OperationFailure>,
    /// A failure not about one item.
    pub other_error: Option<String>,
}

impl From<&tidesync::PushResult> for PushOutcome {
    fn from(result: &tidesync::PushResult) -> Self {
        Self {
            status: result.status.into(),
            succeeded: result.is_success(),
            pushed: result.pushed,
            failures: result.errors.iter().map(OperationFailure::from).collect(),
            other_error: result.other_error.clone(),
        }
    }
}

/// The outcome of a pull ([`tidesync::PullResult`]).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct PullOutcome {
    /// Rows written locally.
    pub upserted: u64,
    /// Rows removed because the server deleted them.
    pub deleted: u64,
    /// Rows left alone because they have a pending local change.
    pub skipped: u64,
    /// Requests made.
    pub requests: u64,
    /// The push made first, if one was needed.
    pub push: Option<PushOutcome>,
}

impl From<&tidesync::PullResult> for PullOutcome {
    fn from(result: &tidesync::PullResult) -> Self {
        Self {
            upserted: result.upserted,
            deleted: result.deleted,
            skipped: result.skipped,
            requests: result.requests,
            push: result.push.as_ref().map(PushOutcome::from),
        }
    }
}

/// Which sync action failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SyncAction {
    /// A push.
    Push,
    /// A pull.
    Pull,
    /// A change feed.
    Feed,
}

/// What kind of failure stopped a push or pull ([`tidesync::SyncErrorKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SyncErrorKind {
    /// The server could not be reached: retry later.
    Network,
    /// The credentials were refused: sign in again.
    Auth,
    /// The server failed or refused the request.
    Server,
    /// Some ops were refused or conflicted.
    Operations,
    /// The local store failed.
    Store,
    /// Cancelled.
    Cancelled,
    /// Anything else.
    Other,
}

/// A failed push or pull, as the status reports it.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SyncErrorInfo {
    /// Which action failed.
    pub action: SyncAction,
    /// The pulled table (pulls only).
    pub table: Option<String>,
    /// What kind of failure.
    pub kind: SyncErrorKind,
    /// The failure, for people.
    pub detail: String,
}

/// Where sync stands ([`tidesync::SyncStatus`]); times are RFC 3339 text.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SyncStatus {
    /// Queued ops, all tables.
    pub pending: u64,
    /// Queued ops per table.
    pub pending_by_table: HashMap<String, u64>,
    /// A push is running.
    pub pushing: bool,
    /// A pull is running.
    pub pulling: bool,
    /// The change feed's state, when known.
    pub connected: Option<bool>,
    /// When a push last completed with every op accepted.
    pub last_pushed_at: Option<String>,
    /// When a pull last completed.
    pub last_pulled_at: Option<String>,
    /// How the last push or pull failed.
    pub last_error: Option<SyncErrorInfo>,
}

impl From<&tidesync::SyncStatus> for SyncStatus {
    fn from(status: &tidesync::SyncStatus) -> Self {
        Self {
            pending: status.pending,
            pending_by_table: status
                .pending_by_table
                .iter()
                .map(|(table, n)| (table.clone(), *n))
                .collect(),
            pushing: status.pushing,
            pulling: status.pulling,
            connected: status.connected,
            last_pushed_at: status.last_pushed_at.map(format_stored_timestamp),
            last_pulled_at: status.last_pulled_at.map(format_stored_timestamp),
            last_error: status.last_error.as_ref().map(|e| SyncErrorInfo {
                action: match e.action {
                    tidesync::SyncAction::Push => SyncAction::Push,
                    tidesync::SyncAction::Pull => SyncAction::Pull,
                    tidesync::SyncAction::Feed => SyncAction::Feed,
                },
                table: e.table.clone(),
                kind: match e.kind {
                    tidesync::SyncErrorKind::Network => SyncErrorKind::Network,
                    tidesync::SyncErrorKind::Auth => SyncErrorKind::Auth,
                    tidesync::SyncErrorKind::Server => SyncErrorKind::Server,
                    tidesync::SyncErrorKind::Operations => SyncErrorKind::Operations,
                    tidesync::SyncErrorKind::Store => SyncErrorKind::Store,
                    tidesync::SyncErrorKind::Cancelled => SyncErrorKind::Cancelled,
                    _ => SyncErrorKind::Other,
                },
                detail: e.message.clone(),
            }),
        }
    }
}

/// A conflict the host's [`ConflictResolver`](crate::ConflictResolver) decides:
/// the refused op and the three copies of the item, JSON text.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ConflictInfo {
    /// The op's id.
    pub operation_id: String,
    /// What the op does.
    pub kind: OpKind,
    /// The table.
    pub table: String,
    /// The item's id.
    pub item_id: String,
    /// 409 or 412.
    pub status: u16,
    /// The client's copy that was sent.
    pub local_item: Option<String>,
    /// The server's current copy, when the answer carried it.
    pub server_item: Option<String>,
    /// The server version the local edit started from, when known.
    pub base_item: Option<String>,
}

impl From<&tidesync::Conflict> for ConflictInfo {
    fn from(conflict: &tidesync::Conflict) -> Self {
        Self {
            operation_id: conflict.operation.id.clone(),
            kind: conflict.operation.kind.into(),
            table: conflict.operation.table.clone(),
            item_id: conflict.operation.item_id.clone(),
            status: conflict.status,
            local_item: conflict.local_item.as_ref().map(item_json),
            server_item: conflict.server_item.as_ref().map(item_json),
            base_item: conflict.base_item.as_ref().map(item_json),
        }
    }
}

/// What to do about a conflict ([`tidesync::Resolution`]).
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum ConflictResolution {
    /// Leave it: the op stays queued and an operation failure is recorded.
    Fail,
    /// Stop the whole push (`CancelledByOperation`).
    AbortPush,
    /// Client wins: resend the local copy over the server's version.
    KeepClient,
    /// Server wins: drop the op and keep the server's copy.
    TakeServer,
    /// Store this item (a JSON object) and send it over the server's version.
    /// Text that is not a JSON object counts as `Fail`.
    Merge {
        /// The merged item, JSON text.
        item: String,
    },
}

/// An item as JSON text.
pub(crate) fn item_json(item: &Item) -> String {
    // A map with string keys always serialises; the fallback is never taken.
    serde_json::to_string(item).unwrap_or_else(|_| "{}".to_owned())
}

/// JSON text as an item (a JSON object).
///
/// # Errors
/// [`TidesyncError::InvalidItem`] when the text is not one JSON object.
pub(crate) fn parse_item(json: &str) -> Result<Item, TidesyncError> {
    match serde_json::from_str(json) {
        Ok(serde_json::Value::Object(item)) => Ok(item),
        Ok(_) => Err(TidesyncError::InvalidItem {
            detail: "an item must be a JSON object".to_owned(),
        }),
        Err(e) => Err(TidesyncError::InvalidItem {
            detail: format!("not JSON: {e}"),
        }),
    }
}
