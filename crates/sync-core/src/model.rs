//! The data model: table definitions, column types, queued operations and the
//! error records a push leaves behind.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tidesync_protocol::Item;
use tidesync_protocol::system::{CREATED_AT, ID, UPDATED_AT, VERSION};

use crate::store::StoreError;

/// The type of a local column. Items are JSON objects; the type says which JSON
/// values a column accepts and how a store keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ColumnType {
    /// A JSON string.
    String,
    /// A JSON boolean.
    Bool,
    /// A JSON integer that fits an `i64`.
    Integer,
    /// Any JSON number, kept as an `f64`.
    Real,
    /// An RFC 3339 date-time string; stores keep it normalised to UTC with
    /// millisecond precision (see [`format_stored_timestamp`]).
    DateTime,
    /// Any JSON value (objects and arrays included), kept as JSON text.
    Json,
}

/// One declared column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// The column (property) name, case-sensitive.
    pub name: String,
    /// Its type.
    pub ty: ColumnType,
}

/// The columns every local table has besides the declared ones.
pub const SYSTEM_COLUMNS: [(&str, ColumnType); 4] = [
    (ID, ColumnType::String),
    (CREATED_AT, ColumnType::DateTime),
    (UPDATED_AT, ColumnType::DateTime),
    (VERSION, ColumnType::String),
];

/// The hidden column in which a local row keeps the properties of its server
/// copy that the local table does not define (a JSON object, absent when there
/// are none). A local table may define fewer columns than the server has; push
/// sends these properties back with the row, so an update (a full replace in
/// the v3 protocol) never erases server columns the app does not know. The
/// engine adds the column to every table it uses and hides it from app reads;
/// apps cannot write it. Other names starting with `__tidesync_` are reserved.
pub const UNMAPPED_COLUMN: &str = "__tidesync_unmapped";

/// The definition of a local table: its name and declared columns. The system
/// columns `id`, `createdAt`, `updatedAt` and `version` are always present and
/// need not be declared. A local table may keep a subset of the server's columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    name: String,
    columns: Vec<ColumnDef>,
}

impl TableDef {
    /// A table with no declared columns yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            columns: Vec::new(),
        }
    }

    /// Adds a declared column (a later declaration of the same name replaces the earlier one).
    #[must_use]
    pub fn column(mut self, name: impl Into<String>, ty: ColumnType) -> Self {
        let name = name.into();
        self.columns.retain(|c| c.name != name);
        self.columns.push(ColumnDef { name, ty });
        self
    }

    /// The table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The declared columns, in declaration order (system columns not included).
    pub fn columns(&self) -> &[ColumnDef] {
        &self.columns
    }

    /// The type of a column, system columns included.
    pub fn column_type(&self, name: &str) -> Option<ColumnType> {
        SYSTEM_COLUMNS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .or_else(|| self.columns.iter().find(|c| c.name == name).map(|c| c.ty))
    }

    /// Every column: the system columns first, then the declared ones.
    pub fn all_columns(&self) -> impl Iterator<Item = ColumnDef> + '_ {
        SYSTEM_COLUMNS
            .iter()
            .map(|(n, t)| ColumnDef {
                name: (*n).to_owned(),
                ty: *t,
            })
            .chain(
                self.columns
                    .iter()
                    .filter(|c| SYSTEM_COLUMNS.iter().all(|(n, _)| *n != c.name))
                    .cloned(),
            )
    }

    /// Checks the names: 1–128 characters, a letter or `_` first, then letters,
    /// digits or `_`; table names starting with `__` or `sqlite_` are reserved;
    /// no two columns whose names differ only in letter case (SQL identifiers
    /// ignore case); no column declared with a system column's name and another
    /// type; column names starting with `__tidesync_` are reserved (the engine's
    /// own [`UNMAPPED_COLUMN`], of type [`ColumnType::Json`], is the one allowed).
    ///
    /// # Errors
    /// [`StoreError::InvalidDefinition`] naming the problem.
    pub fn validate(&self) -> Result<(), StoreError> {
        check_identifier(&self.name).map_err(|why| {
            StoreError::InvalidDefinition(format!("table name {:?}: {why}", self.name))
        })?;
        let lower = self.name.to_ascii_lowercase();
        if lower.starts_with("__") || lower.starts_with("sqlite_") {
            return Err(StoreError::InvalidDefinition(format!(
                "table name {:?} is reserved for the store's own tables",
                self.name
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for c in self.all_columns() {
            if !seen.insert(c.name.to_ascii_lowercase()) {
                return Err(StoreError::InvalidDefinition(format!(
                    "column {} of table {} differs from another only in letter case",
                    c.name, self.name
                )));
            }
        }
        for c in &self.columns {
            check_identifier(&c.name).map_err(|why| {
                StoreError::InvalidDefinition(format!(
                    "column {:?} of table {}: {why}",
                    c.name, self.name
                ))
            })?;
            let reserved = c.name.to_ascii_lowercase().starts_with("__tidesync_");
            if reserved && !(c.name == UNMAPPED_COLUMN && c.ty == ColumnType::Json) {
                return Err(StoreError::InvalidDefinition(format!(
                    "column name {} of table {} is reserved for tidesync's own use",
                    c.name, self.name
                )));
            }
            if let Some((_, ty)) = SYSTEM_COLUMNS.iter().find(|(n, _)| *n == c.name) {
                if *ty != c.ty {
                    return Err(StoreError::InvalidDefinition(format!(
                        "column {} of table {} is a system column of type {ty:?}",
                        c.name, self.name
                    )));
                }
            }
        }
        Ok(())
    }
}

fn check_identifier(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("empty"),
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        Some(_) => return Err("must start with a letter or '_'"),
    }
    if name.len() > 128 {
        return Err("longer than 128 characters");
    }
    if chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err("only letters, digits and '_' are allowed")
    }
}

/// Checks a JSON value against a column type and returns the form stores keep:
/// integers as `i64`, reals as `f64`, date-times as fixed-width UTC RFC 3339
/// text with milliseconds ([`format_stored_timestamp`]), everything else unchanged.
/// `null` fits every type.
///
/// # Errors
/// [`StoreError::TypeMismatch`] when the value does not fit.
pub fn normalize_value(
    table: &str,
    column: &str,
    ty: ColumnType,
    value: &Value,
) -> Result<Value, StoreError> {
    check_value(table, column, ty, value).map(Cow::into_owned)
}

/// As [`normalize_value`], but borrows `value` when it already is in its
/// normal form (the common case: rows a server sent, values read back), so
/// checking a row copies nothing.
///
/// # Errors
/// As [`normalize_value`].
pub fn check_value<'a>(
    table: &str,
    column: &str,
    ty: ColumnType,
    value: &'a Value,
) -> Result<Cow<'a, Value>, StoreError> {
    fit_value(table, column, ty, value).map_err(StoreError::from)
}

/// [`check_value`] as the engine sees it: a value that does not fit is the
/// item's fault ([`InvalidItem`]), not the store's.
pub(crate) fn fit_value<'a>(
    table: &str,
    column: &str,
    ty: ColumnType,
    value: &'a Value,
) -> Result<Cow<'a, Value>, InvalidItem> {
    let mismatch = || InvalidItem::TypeMismatch {
        table: table.to_owned(),
        column: column.to_owned(),
        expected: ty,
        found: short_json(value),
    };
    if value.is_null() {
        return Ok(Cow::Borrowed(value));
    }
    Ok(match ty {
        ColumnType::String if value.is_string() => Cow::Borrowed(value),
        ColumnType::Bool if value.is_boolean() => Cow::Borrowed(value),
        ColumnType::Integer => match value.as_i64() {
            Some(_) => Cow::Borrowed(value),
            None => match value.as_f64() {
                // An integral float such as 3.0 is accepted; 3.5 is not.
                Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => {
                    Cow::Owned(Value::from(f as i64))
                }
                _ => return Err(mismatch()),
            },
        },
        ColumnType::Real if value.is_f64() => Cow::Borrowed(value),
        ColumnType::Real => match value.as_f64() {
            Some(f) => Cow::Owned(
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(mismatch)?,
            ),
            None => return Err(mismatch()),
        },
        ColumnType::DateTime => {
            let text = value.as_str().ok_or_else(mismatch)?;
            if tidesync_protocol::time_fmt::is_canonical_timestamp(text) {
                // Already `YYYY-MM-DDThh:mm:ss.mmmZ` and an existing instant: parsing
                // and formatting it again would give the same text.
                Cow::Borrowed(value)
            } else {
                let at =
                    tidesync_protocol::time_fmt::parse_timestamp(text).map_err(|_| mismatch())?;
                Cow::Owned(Value::String(format_stored_timestamp(at)))
            }
        }
        ColumnType::Json => Cow::Borrowed(value),
        _ => return Err(mismatch()),
    })
}

/// Formats an instant the way stores keep date-time columns: UTC RFC 3339 with
/// exactly three fractional digits (`2026-11-27T08:29:29.167Z`; sub-millisecond
/// digits are dropped, as servers emit milliseconds). A fixed width makes text
/// order equal time order, so stores and the evaluator may sort the text.
pub fn format_stored_timestamp(at: time::OffsetDateTime) -> String {
    tidesync_protocol::time_fmt::format_timestamp(at)
}

fn short_json(value: &Value) -> String {
    let mut text = value.to_string();
    if text.len() > 60 {
        let mut cut = 57;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// What a queued operation does on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OpKind {
    /// Create the item (`POST`).
    Insert,
    /// Replace the item with the local row (`PATCH` in v2, `PUT` in v3).
    Update,
    /// Delete the item.
    Delete,
}

impl OpKind {
    /// The reference client's numeric code (0, 1, 2).
    pub fn code(self) -> i64 {
        match self {
            OpKind::Insert => 0,
            OpKind::Update => 1,
            OpKind::Delete => 2,
        }
    }

    /// The kind for a numeric code.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => OpKind::Insert,
            1 => OpKind::Update,
            2 => OpKind::Delete,
            _ => return None,
        })
    }
}

/// Where a queued operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OpState {
    /// Not yet sent (or reset by a resolution).
    Pending,
    /// Sent at least once; the outcome is unknown (persisted before each request).
    Attempted,
    /// The last attempt failed; the op stays queued until resolved or retried.
    Failed,
}

impl OpState {
    /// The reference client's numeric code (0, 1, 2).
    pub fn code(self) -> i64 {
        match self {
            OpState::Pending => 0,
            OpState::Attempted => 1,
            OpState::Failed => 2,
        }
    }

    /// The state for a numeric code.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => OpState::Pending,
            1 => OpState::Attempted,
            2 => OpState::Failed,
            _ => return None,
        })
    }
}

/// A queued change waiting to be pushed.
///
/// At most one op per `(table, item_id)` is waiting to be sent; a second one can
/// exist only behind an op that is being pushed at that moment (see
/// `docs/ARCHITECTURE.md`, "in-flight edits").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// A unique id (UUID v7), also the key of its error record.
    pub id: String,
    /// What the op does.
    pub kind: OpKind,
    /// Where it stands.
    pub state: OpState,
    /// The table of the item.
    pub table: String,
    /// The id of the item.
    pub item_id: String,
    /// For a delete: the item as the caller gave it (its `version` becomes `If-Match`).
    /// Inserts and updates push the local row as it is at push time.
    pub item: Option<Item>,
    /// The last server version of the item that the local edit started from: the
    /// base of a three-way merge. `None` for inserts and for rows never seen on a server.
    pub base: Option<Item>,
    /// Global order across tables; ops are pushed in ascending sequence.
    pub sequence: u64,
    /// Revision counter, bumped whenever a later local write collapses into this op.
    pub version: u32,
}

/// An operation that failed and is waiting for the app to resolve it (the
/// `__errors` table). Kept until the op succeeds, is resolved, is changed by a
/// later local write, or fails again (which replaces the record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationError {
    /// The failed op's id.
    pub operation_id: String,
    /// The op's version when the error was recorded; resolutions check it.
    pub operation_version: u32,
    /// The op's kind.
    pub kind: OpKind,
    /// The table.
    pub table: String,
    /// The item's id.
    pub item_id: String,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// What was sent (the client's copy), system properties stripped but `version`.
    pub item: Option<Item>,
    /// The server's copy of the item, when the response carried one (409, 412).
    pub server_item: Option<Item>,
    /// The raw response body, if any.
    pub raw_result: Option<String>,
    /// A readable description.
    pub message: String,
}

impl OperationError {
    /// True for a 409 or 412 answer: the server has another version of the item.
    pub fn is_conflict(&self) -> bool {
        matches!(self.status, Some(409 | 412))
    }
}

/// The id of an item, or `None` if it has no string id.
pub(crate) fn item_id(item: &Item) -> Option<&str> {
    item.get(ID).and_then(Value::as_str)
}

/// An item (from the app, a conflict handler or the server) that does not fit
/// its local table. Not a store failure: the store was never asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidItem {
    /// The item has a property that is not a column of the table.
    #[error("table {table} has no column {column}")]
    UnknownColumn {
        /// The table.
        table: String,
        /// The unknown property.
        column: String,
    },
    /// A value does not fit its column's type.
    #[error("column {column} of table {table} expects {expected:?}, found {found}")]
    TypeMismatch {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The declared type.
        expected: ColumnType,
        /// A short rendering of the offending value.
        found: String,
    },
}
