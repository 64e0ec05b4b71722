//! How a row travels between PostgreSQL and the [`Row`] type: the column list, decoding a
//! result row, and the statement and parameters that store a row (each user value in its
//! column's canonical form, `store::values`).

use serde_json::Value;
use tidesync_protocol::Item;
use tokio_postgres::types::ToSql;

use super::super::schema::{ColumnType, TableSchema};
use super::super::sql::quote;
use super::super::values;
use super::super::{Row, StoreError};

/// The system columns, in the order every statement lists them.
pub(super) const SYSTEM_COLUMNS: [&str; 5] = ["id", "createdAt", "updatedAt", "version", "deleted"];

/// Boxed statement parameters.
pub(super) type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// The selected columns, system columns first; `number` and legacy JSON columns as text,
/// datetime columns as their `bigint` milliseconds.
///
/// A cast keeps the column's name as its output name, and PostgreSQL binds a bare name in
/// `ORDER BY` to an output column before a table column: `"n"::text` would make
/// `ORDER BY "n"` order numbers as text. So each cast gets an alias no column can have
/// (names starting with `_tidesync` are refused); rows are decoded by position.
pub(super) fn column_list(schema: &TableSchema) -> String {
    let mut names: Vec<String> = SYSTEM_COLUMNS.iter().map(|c| quote(c)).collect();
    for (index, (name, ty)) in schema.columns.iter().enumerate() {
        names.push(match ty {
            ColumnType::Json | ColumnType::Number => {
                format!("{}::text AS \"_tidesync_{index}\"", quote(name))
            }
            ColumnType::DateTime => format!("{}::bigint AS \"_tidesync_{index}\"", quote(name)),
            _ => quote(name),
        });
    }
    names.join(", ")
}

/// Decodes a row selected with [`column_list`].
pub(super) fn decode_row(r: &tokio_postgres::Row, schema: &TableSchema) -> Result<Row, StoreError> {
    let mut values = Item::new();
    for (index, (name, ty)) in schema.columns.iter().enumerate() {
        let at = index + 5;
        let value = match ty {
            ColumnType::String => r
                .try_get::<_, Option<String>>(at)
                .map_err(StoreError::backend)?
                .map_or(Value::Null, Value::String),
            ColumnType::Integer => r
                .try_get::<_, Option<i64>>(at)
                .map_err(StoreError::backend)?
                .map_or(Value::Null, Value::from),
            ColumnType::Number => r
                .try_get::<_, Option<String>>(at)
                .map_err(StoreError::backend)?
                .and_then(|text| values::number_from_text(&text))
                .unwrap_or(Value::Null),
            ColumnType::DateTime => r
                .try_get::<_, Option<i64>>(at)
                .map_err(StoreError::backend)?
                .map_or(Value::Null, |ms| Value::String(values::datetime_text(ms))),
            ColumnType::Boolean => r
                .try_get::<_, Option<bool>>(at)
                .map_err(StoreError::backend)?
                .map_or(Value::Null, Value::Bool),
            ColumnType::Json => match r
                .try_get::<_, Option<String>>(at)
                .map_err(StoreError::backend)?
            {
                Some(text) => serde_json::from_str(&text).map_err(StoreError::backend)?,
                None => Value::Null,
            },
        };
        values.insert(name.clone(), value);
    }
    let version: i64 = r.try_get(3).map_err(StoreError::backend)?;
    Ok(Row {
        id: r.try_get(0).map_err(StoreError::backend)?,
        created_at_ms: r.try_get(1).map_err(StoreError::backend)?,
        updated_at_ms: r.try_get(2).map_err(StoreError::backend)?,
        version: u64::try_from(version).unwrap_or(0),
        deleted: r.try_get(4).map_err(StoreError::backend)?,
        values,
    })
}

/// The `UPDATE` (when the row `exists`) or `INSERT` that stores `row` in `table` (its quoted
/// SQL name), with its parameters.
pub(super) fn store_statement(
    table: &str,
    schema: &TableSchema,
    row: &Row,
    exists: bool,
) -> (String, Params) {
    let mut params: Params = vec![
        Box::new(row.id.clone()),
        Box::new(row.created_at_ms),
        Box::new(row.updated_at_ms),
        Box::new(i64::try_from(row.version).unwrap_or(i64::MAX)),
        Box::new(row.deleted),
    ];
    let mut placeholders: Vec<String> = (1..=5).map(|n| format!("${n}")).collect();
    for (name, ty) in &schema.columns {
        let value = row.values.get(name).unwrap_or(&Value::Null);
        let n = params.len() + 1;
        let (param, placeholder): (Box<dyn ToSql + Sync + Send>, String) = match ty {
            ColumnType::String => (
                Box::new(value.as_str().map(str::to_owned)),
                format!("${n}::text"),
            ),
            // The values are in their column's canonical form (`store::values`).
            ColumnType::Integer => (Box::new(value.as_i64()), format!("${n}::bigint")),
            ColumnType::Number => (
                Box::new(value.is_number().then(|| value.to_string())),
                format!("${n}::text::numeric"),
            ),
            ColumnType::DateTime => (
                Box::new(value.as_str().and_then(values::datetime_ms)),
                format!("${n}::bigint"),
            ),
            ColumnType::Boolean => (Box::new(value.as_bool()), format!("${n}::boolean")),
            ColumnType::Json => (
                Box::new((!value.is_null()).then(|| value.to_string())),
                format!("${n}::text::jsonb"),
            ),
        };
        params.push(param);
        placeholders.push(placeholder);
    }
    let names: Vec<String> = SYSTEM_COLUMNS
        .iter()
        .map(|c| quote(c))
        .chain(schema.columns.iter().map(|(name, _)| quote(name)))
        .collect();
    let query = if exists {
        let sets: Vec<String> = names
            .iter()
            .zip(&placeholders)
            .skip(1)
            .map(|(name, placeholder)| format!("{name} = {placeholder}"))
            .collect();
        format!("UPDATE {table} SET {} WHERE \"id\" = $1", sets.join(", "))
    } else {
        format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            names.join(", "),
            placeholders.join(", ")
        )
    };
    (query, params)
}

/// The values of one column for a multi-row statement, as one array parameter.
enum ColumnArray {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
}

impl ColumnArray {
    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            ColumnArray::Text(values) => values,
            ColumnArray::Int(values) => values,
            ColumnArray::Bool(values) => values,
        }
    }
}

/// The upsert of many rows of `schema` into `table` (its quoted SQL name) in one statement:
/// `INSERT … SELECT … FROM unnest(<one array per column>) ON CONFLICT ("id") DO UPDATE`
/// every other column. The text depends on the schema only, so one prepared statement
/// serves every chunk size; [`UpsertArrays`] holds its parameters.
pub(super) fn upsert_sql(table: &str, schema: &TableSchema) -> String {
    let names: Vec<String> = SYSTEM_COLUMNS
        .iter()
        .map(|c| quote(c))
        .chain(schema.columns.iter().map(|(name, _)| quote(name)))
        .collect();
    let mut arrays: Vec<String> = ["text", "int8", "int8", "int8", "bool"]
        .iter()
        .enumerate()
        .map(|(n, ty)| format!("${}::{ty}[]", n + 1))
        .collect();
    let mut selected: Vec<String> = (0..5).map(|n| format!("c{n}")).collect();
    for (index, (_, ty)) in schema.columns.iter().enumerate() {
        let n = index + 5;
        let (array, select) = match ty {
            ColumnType::String => ("text", format!("c{n}")),
            ColumnType::Integer | ColumnType::DateTime => ("int8", format!("c{n}")),
            ColumnType::Number => ("text", format!("c{n}::numeric")),
            ColumnType::Boolean => ("bool", format!("c{n}")),
            ColumnType::Json => ("text", format!("c{n}::jsonb")),
        };
        arrays.push(format!("${}::{array}[]", n + 1));
        selected.push(select);
    }
    let aliases: Vec<String> = (0..names.len()).map(|n| format!("c{n}")).collect();
    let sets: Vec<String> = names
        .iter()
        .skip(1)
        .map(|name| format!("{name} = EXCLUDED.{name}"))
        .collect();
    format!(
        "INSERT INTO {table} ({}) SELECT {} FROM unnest({}) AS v ({})
         ON CONFLICT (\"id\") DO UPDATE SET {}",
        names.join(", "),
        selected.join(", "),
        arrays.join(", "),
        aliases.join(", "),
        sets.join(", ")
    )
}

/// The parameters of an [`upsert_sql`] statement: one array per column.
pub(super) struct UpsertArrays {
    columns: Vec<ColumnArray>,
}

impl UpsertArrays {
    /// The arrays of `rows` (each user value in its column's canonical form).
    pub(super) fn of(schema: &TableSchema, rows: &[&Row]) -> UpsertArrays {
        let mut columns = vec![
            ColumnArray::Text(rows.iter().map(|r| Some(r.id.clone())).collect()),
            ColumnArray::Int(rows.iter().map(|r| Some(r.created_at_ms)).collect()),
            ColumnArray::Int(rows.iter().map(|r| Some(r.updated_at_ms)).collect()),
            ColumnArray::Int(
                rows.iter()
                    .map(|r| Some(i64::try_from(r.version).unwrap_or(i64::MAX)))
                    .collect(),
            ),
            ColumnArray::Bool(rows.iter().map(|r| Some(r.deleted)).collect()),
        ];
        for (name, ty) in &schema.columns {
            let values = rows
                .iter()
                .map(|r| r.values.get(name).unwrap_or(&Value::Null));
            columns.push(match ty {
                ColumnType::String => {
                    ColumnArray::Text(values.map(|v| v.as_str().map(str::to_owned)).collect())
                }
                ColumnType::Integer => ColumnArray::Int(values.map(Value::as_i64).collect()),
                ColumnType::Number => ColumnArray::Text(
                    values
                        .map(|v| v.is_number().then(|| v.to_string()))
                        .collect(),
                ),
                ColumnType::DateTime => ColumnArray::Int(
                    values
                        .map(|v| v.as_str().and_then(values::datetime_ms))
                        .collect(),
                ),
                ColumnType::Boolean => ColumnArray::Bool(values.map(Value::as_bool).collect()),
                ColumnType::Json => ColumnArray::Text(
                    values
                        .map(|v| (!v.is_null()).then(|| v.to_string()))
                        .collect(),
                ),
            });
        }
        UpsertArrays { columns }
    }

    /// The statement parameters, in column order.
    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.columns.iter().map(ColumnArray::param).collect()
    }
}
