//! Table specs, column types and the learned schema (columns typed by their first value).

use std::collections::HashMap;
use std::sync::RwLock;

use serde_json::Value;
use tidesync_protocol::Item;

use super::StoreError;

use super::OWNER_COLUMN;

/// What the configuration says about a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// The table name as served (also the SQL table name).
    pub name: String,
    /// Whether DELETE keeps a tombstone.
    pub soft_delete: bool,
    /// Whether the table has the `userId` owner column.
    pub owned: bool,
    /// The declared user columns: a table with them has a fixed schema (created when the
    /// table is prepared); `None` for a dynamic table, whose columns are learned from writes.
    pub declared: Option<Vec<(String, ColumnType)>>,
    /// The string column of a tenant scope (`[tables.scope] column`), created with the table.
    pub scope_column: Option<String>,
}

impl TableSpec {
    /// A dynamic table (no declared columns).
    pub fn new(name: impl Into<String>, soft_delete: bool, owned: bool) -> TableSpec {
        TableSpec {
            name: name.into(),
            soft_delete,
            owned,
            declared: None,
            scope_column: None,
        }
    }
}

/// The type of a user column: declared in the configuration, or fixed by the first non-null
/// value a dynamic table stores in it. See `store::values` for how each type holds values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[non_exhaustive]
pub enum ColumnType {
    /// JSON strings (`string`).
    #[serde(rename = "string")]
    String,
    /// JSON booleans (`bool`).
    #[serde(rename = "bool")]
    Boolean,
    /// JSON integers in the signed 64-bit range, stored exactly (`integer`).
    #[serde(rename = "integer")]
    Integer,
    /// JSON numbers: integers exactly, other numbers as doubles (`number`).
    #[serde(rename = "number")]
    Number,
    /// ISO-8601 date-times, stored as instants at millisecond precision (`datetime`).
    #[serde(rename = "datetime")]
    DateTime,
    /// JSON objects and arrays (stored as JSON text; never declared).
    #[serde(skip)]
    Json,
}

impl ColumnType {
    /// The type of the value a JSON value is (`None` for null): what a wrong value is
    /// reported as.
    pub fn of(value: &Value) -> Option<ColumnType> {
        match value {
            Value::Null => None,
            Value::Bool(_) => Some(ColumnType::Boolean),
            Value::Number(_) => Some(ColumnType::Number),
            Value::String(_) => Some(ColumnType::String),
            Value::Array(_) | Value::Object(_) => Some(ColumnType::Json),
        }
    }

    /// The name used in error messages.
    pub fn describe(self) -> &'static str {
        match self {
            ColumnType::String => "a string",
            ColumnType::Boolean => "a boolean",
            ColumnType::Integer => "an integer",
            ColumnType::Number => "a number",
            ColumnType::DateTime => "a date-time",
            ColumnType::Json => "an object or array",
        }
    }
}

/// A table's spec and its user columns in definition order.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// The spec.
    pub spec: TableSpec,
    /// The user columns (including `userId` on owner tables).
    pub columns: Vec<(String, ColumnType)>,
}

impl TableSchema {
    /// The row a write stores: the table's columns taken from `values` (absent
    /// ones null), stamped with `updated_at_ms` and `version`, keeping the
    /// creation time of the row it replaces.
    pub fn stamped_row(
        &self,
        id: &str,
        existing: Option<&super::Row>,
        updated_at_ms: i64,
        version: u64,
        deleted: bool,
        values: &tidesync_protocol::Item,
    ) -> super::Row {
        let values = self
            .columns
            .iter()
            .filter_map(|(name, _)| values.get(name).map(|v| (name.clone(), v.clone())))
            .collect();
        self.into_stamped_row(id, existing, updated_at_ms, version, deleted, values)
    }

    /// [`TableSchema::stamped_row`] that moves the values out of `values` instead of
    /// copying them.
    pub fn into_stamped_row(
        &self,
        id: &str,
        existing: Option<&super::Row>,
        updated_at_ms: i64,
        version: u64,
        deleted: bool,
        mut values: tidesync_protocol::Item,
    ) -> super::Row {
        super::Row {
            id: id.to_owned(),
            created_at_ms: existing.map_or(updated_at_ms, |r| r.created_at_ms),
            updated_at_ms,
            version,
            deleted,
            values: self
                .columns
                .iter()
                .map(|(name, _)| {
                    (
                        name.clone(),
                        values.remove(name).unwrap_or(serde_json::Value::Null),
                    )
                })
                .collect(),
        }
    }

    /// The columns the table must have before any write: `userId` on owner tables, and the
    /// declared ones.
    pub fn required_columns(spec: &TableSpec) -> Vec<(String, ColumnType)> {
        let mut columns = Vec::new();
        if spec.owned {
            columns.push((OWNER_COLUMN.to_owned(), ColumnType::String));
        }
        for (name, ty) in spec.declared.iter().flatten() {
            if !(spec.owned && name == OWNER_COLUMN) {
                columns.push((name.clone(), *ty));
            }
        }
        if let Some(scope) = &spec.scope_column {
            if !columns.iter().any(|(name, _)| name == scope) {
                columns.push((scope.clone(), ColumnType::String));
            }
        }
        columns
    }

    /// Checks that the loaded columns have the types `required` gives them, and returns the
    /// ones missing.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] naming a column whose stored type differs.
    pub fn missing(
        &self,
        required: &[(String, ColumnType)],
    ) -> Result<Vec<(String, ColumnType)>, StoreError> {
        let mut missing = Vec::new();
        for (name, ty) in required {
            match self.column(name) {
                None => missing.push((name.clone(), *ty)),
                Some(found) if found == *ty => {}
                Some(found) => {
                    return Err(StoreError::Config {
                        message: format!(
                            "column '{name}' of table '{}' holds {} in the database but is declared {}",
                            self.spec.name,
                            found.describe(),
                            ty.describe()
                        ),
                    });
                }
            }
        }
        Ok(missing)
    }

    /// The type of user column `name` (exact case).
    pub fn column(&self, name: &str) -> Option<ColumnType> {
        self.columns
            .iter()
            .find(|(column, _)| column == name)
            .map(|(_, ty)| *ty)
    }

    /// Checks that every key of `values` is a column: a decision may only write columns
    /// the table has (or that it added), anything else is a bug of the decision, never
    /// silently dropped.
    ///
    /// # Errors
    ///
    /// [`StoreError::Internal`] naming the first unknown key.
    pub fn check_known(&self, values: &Item) -> Result<(), StoreError> {
        match values.keys().find(|name| self.column(name).is_none()) {
            Some(name) => Err(StoreError::Internal(format!(
                "column '{name}' of table '{}' was not added before the write",
                self.spec.name
            ))),
            None => Ok(()),
        }
    }
}

/// The schemas a store has loaded, by table name.
#[derive(Debug, Default)]
pub(crate) struct SchemaCache {
    tables: RwLock<HashMap<String, TableSchema>>,
}

impl SchemaCache {
    pub(crate) fn get(&self, table: &str) -> Result<TableSchema, StoreError> {
        let tables = self
            .tables
            .read()
            .map_err(|_| StoreError::Internal("schema cache poisoned".to_owned()))?;
        tables
            .get(table)
            .cloned()
            .ok_or_else(|| StoreError::UnknownTable {
                table: table.to_owned(),
            })
    }

    pub(crate) fn put(&self, schema: TableSchema) -> Result<(), StoreError> {
        let mut tables = self
            .tables
            .write()
            .map_err(|_| StoreError::Internal("schema cache poisoned".to_owned()))?;
        tables.insert(schema.spec.name.clone(), schema);
        Ok(())
    }
}

/// Validates a configured table name: it becomes an SQL identifier.
///
/// # Errors
///
/// A message when the name is not `[A-Za-z_][A-Za-z0-9_]*` of at most 63 characters.
pub fn check_table_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
        && !name.to_ascii_lowercase().starts_with("_tidesync");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "table name '{name}' is not allowed: use letters, digits and '_' (at most 63), starting with a letter or '_'"
        ))
    }
}
