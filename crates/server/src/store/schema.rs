//! Table specs, column types and the learned schema (columns typed by their first value).

use std::collections::HashMap;
use std::sync::RwLock;

use serde_json::Value;
use tidesync_protocol::{Item, system};

use crate::error::ServerError;

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
}

/// The type of a user column, fixed by the first non-null value stored in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// JSON strings.
    String,
    /// JSON numbers (stored as doubles).
    Number,
    /// JSON booleans.
    Boolean,
    /// JSON objects and arrays (stored as JSON text).
    Json,
}

impl ColumnType {
    /// The type a JSON value asks for; `None` for null.
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
            ColumnType::Number => "a number",
            ColumnType::Boolean => "a boolean",
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

    /// A schema with only the declared columns.
    pub fn new(spec: TableSpec) -> TableSchema {
        let columns = if spec.owned {
            vec![(OWNER_COLUMN.to_owned(), ColumnType::String)]
        } else {
            Vec::new()
        };
        TableSchema { spec, columns }
    }

    /// The type of user column `name` (exact case).
    pub fn column(&self, name: &str) -> Option<ColumnType> {
        self.columns
            .iter()
            .find(|(column, _)| column == name)
            .map(|(_, ty)| *ty)
    }

    /// The columns `values` needs that the table lacks, with their types; checks the types of
    /// the known ones and the names of the new ones. Null values of unknown columns are skipped
    /// (they cannot be typed yet).
    ///
    /// # Errors
    ///
    /// [`ServerError::BadRequest`] for a name that cannot be a column (or differs from an
    /// existing column only in letter case), [`ServerError::Type`] for a value of the wrong type.
    pub fn missing_columns(&self, values: &Item) -> Result<Vec<(String, ColumnType)>, ServerError> {
        let mut missing: Vec<(String, ColumnType)> = Vec::new();
        for (name, value) in values {
            match self.column(name) {
                Some(ty) => check_value(name, ty, value)?,
                None => {
                    check_column_name(name)?;
                    if let Some(clash) = self
                        .columns
                        .iter()
                        .map(|(column, _)| column.as_str())
                        .chain(missing.iter().map(|(column, _)| column.as_str()))
                        .find(|column| column.eq_ignore_ascii_case(name))
                    {
                        return Err(ServerError::bad_request(format!(
                            "property '{name}' differs from the existing column '{clash}' only in letter case"
                        )));
                    }
                    if let Some(ty) = ColumnType::of(value) {
                        missing.push((name.clone(), ty));
                    }
                }
            }
        }
        Ok(missing)
    }
}

/// Checks that `value` fits a column of type `ty` (null fits every column).
///
/// # Errors
///
/// [`ServerError::Type`] naming the column and both types.
pub fn check_value(name: &str, ty: ColumnType, value: &Value) -> Result<(), ServerError> {
    match ColumnType::of(value) {
        None => Ok(()),
        Some(found) if found == ty => Ok(()),
        Some(found) => Err(ServerError::Type {
            message: format!(
                "property '{name}' must be {} (the column's type), not {}",
                ty.describe(),
                found.describe()
            ),
        }),
    }
}

/// Checks that a property name can be a column: ASCII letter or `_` first, then letters,
/// digits and `_`, at most 128 characters, not a system property name.
///
/// # Errors
///
/// [`ServerError::BadRequest`] saying which rule the name breaks.
pub fn check_column_name(name: &str) -> Result<(), ServerError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok || !rest_ok || name.len() > 128 {
        return Err(ServerError::bad_request(format!(
            "property name '{}' is not allowed: use letters, digits and '_' (at most 128), starting with a letter or '_'",
            name.escape_debug()
        )));
    }
    if name.eq_ignore_ascii_case(system::ID) || system::is_system_property(name) {
        return Err(ServerError::bad_request(format!(
            "property '{name}' is reserved"
        )));
    }
    if name.to_ascii_lowercase().starts_with("_tidesync") {
        return Err(ServerError::bad_request(format!(
            "property '{name}' is reserved"
        )));
    }
    Ok(())
}

/// The schemas a store has loaded, by table name.
#[derive(Debug, Default)]
pub(crate) struct SchemaCache {
    tables: RwLock<HashMap<String, TableSchema>>,
}

impl SchemaCache {
    pub(crate) fn get(&self, table: &str) -> Result<TableSchema, ServerError> {
        let tables = self
            .tables
            .read()
            .map_err(|_| ServerError::Internal("schema cache poisoned".to_owned()))?;
        tables
            .get(table)
            .cloned()
            .ok_or_else(|| ServerError::UnknownTable {
                table: table.to_owned(),
            })
    }

    /// [`TableSchema::missing_columns`] of the cached schema, without copying it.
    pub(crate) fn missing_columns(
        &self,
        table: &str,
        values: &Item,
    ) -> Result<Vec<(String, ColumnType)>, ServerError> {
        let tables = self
            .tables
            .read()
            .map_err(|_| ServerError::Internal("schema cache poisoned".to_owned()))?;
        tables
            .get(table)
            .ok_or_else(|| ServerError::UnknownTable {
                table: table.to_owned(),
            })?
            .missing_columns(values)
    }

    pub(crate) fn put(&self, schema: TableSchema) -> Result<(), ServerError> {
        let mut tables = self
            .tables
            .write()
            .map_err(|_| ServerError::Internal("schema cache poisoned".to_owned()))?;
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
