//! How a row travels between SQLite and the [`Row`] type: the column lists, the statement
//! texts, decoding a result row and binding a row's values (each user value in its
//! column's canonical form, `store::values`).

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;
use tidesync_protocol::Item;

use super::super::schema::{ColumnType, TableSchema};
use super::super::sql::quote;
use super::super::values;
use super::super::{Row, StoreError};

pub(super) fn column_list(schema: &TableSchema) -> String {
    let mut names = vec![
        "\"id\"".to_owned(),
        "\"createdAt\"".to_owned(),
        "\"updatedAt\"".to_owned(),
        "\"version\"".to_owned(),
        "\"deleted\"".to_owned(),
    ];
    names.extend(schema.columns.iter().map(|(name, _)| quote(name)));
    names.join(", ")
}

/// `SELECT <all columns> FROM <table> WHERE "id" = ?1`.
pub(super) fn select_sql(schema: &TableSchema) -> String {
    format!(
        "SELECT {} FROM {} WHERE \"id\" = ?1",
        column_list(schema),
        quote(&schema.spec.name)
    )
}

pub(super) fn select_row(
    conn: &Connection,
    schema: &TableSchema,
    id: &str,
) -> Result<Option<Row>, StoreError> {
    select_row_with(conn, schema, &select_sql(schema), id)
}

/// [`select_row`] with the query text already built (see [`select_sql`]).
pub(super) fn select_row_with(
    conn: &Connection,
    schema: &TableSchema,
    query: &str,
    id: &str,
) -> Result<Option<Row>, StoreError> {
    conn.prepare_cached(query)
        .and_then(|mut s| s.query_row([id], |r| Ok(decode_row(r, schema))).optional())
        .map_err(StoreError::backend)?
        .transpose()
}

pub(super) fn decode_row(r: &rusqlite::Row<'_>, schema: &TableSchema) -> Result<Row, StoreError> {
    let get_error = |e: rusqlite::Error| StoreError::backend(e);
    let mut values = Item::new();
    for (index, (name, ty)) in schema.columns.iter().enumerate() {
        let at = index + 5;
        let value = match ty {
            ColumnType::String => r
                .get::<_, Option<String>>(at)
                .map_err(get_error)?
                .map_or(Value::Null, Value::String),
            ColumnType::Integer => r
                .get::<_, Option<i64>>(at)
                .map_err(get_error)?
                .map_or(Value::Null, Value::from),
            ColumnType::Number => match r.get_ref(at).map_err(get_error)? {
                ValueRef::Integer(integer) => Value::from(integer),
                ValueRef::Real(real) => values::number_from_f64(real),
                _ => Value::Null,
            },
            ColumnType::DateTime => r
                .get::<_, Option<i64>>(at)
                .map_err(get_error)?
                .map_or(Value::Null, |ms| Value::String(values::datetime_text(ms))),
            ColumnType::Boolean => r
                .get::<_, Option<i64>>(at)
                .map_err(get_error)?
                .map_or(Value::Null, |b| Value::Bool(b != 0)),
            ColumnType::Json => match r.get::<_, Option<String>>(at).map_err(get_error)? {
                Some(text) => serde_json::from_str(&text).map_err(StoreError::backend)?,
                None => Value::Null,
            },
        };
        values.insert(name.clone(), value);
    }
    let version: i64 = r.get(3).map_err(get_error)?;
    Ok(Row {
        id: r.get(0).map_err(get_error)?,
        created_at_ms: r.get(1).map_err(get_error)?,
        updated_at_ms: r.get(2).map_err(get_error)?,
        version: u64::try_from(version).unwrap_or(0),
        deleted: r.get::<_, i64>(4).map_err(get_error)? != 0,
        values,
    })
}

/// The quoted names of all columns, system columns first (the order of [`bind_row`]).
pub(super) fn column_names(schema: &TableSchema) -> Vec<String> {
    ["id", "createdAt", "updatedAt", "version", "deleted"]
        .into_iter()
        .map(quote)
        .chain(schema.columns.iter().map(|(name, _)| quote(name)))
        .collect()
}

/// `INSERT` of a whole row, parameters as [`bind_row`] binds them.
pub(super) fn insert_sql(schema: &TableSchema) -> String {
    let names = column_names(schema);
    let placeholders: Vec<String> = (1..=names.len()).map(|n| format!("?{n}")).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        quote(&schema.spec.name),
        names.join(", "),
        placeholders.join(", ")
    )
}

/// `UPDATE` of a whole row by id (`?1`), parameters as [`bind_row`] binds them.
pub(super) fn update_sql(schema: &TableSchema) -> String {
    let sets: Vec<String> = column_names(schema)
        .iter()
        .enumerate()
        .skip(1)
        .map(|(index, name)| format!("{name} = ?{}", index + 1))
        .collect();
    format!(
        "UPDATE {} SET {} WHERE \"id\" = ?1",
        quote(&schema.spec.name),
        sets.join(", ")
    )
}

/// Runs `query` (an [`insert_sql`] or [`update_sql`] of `schema`) for `row`.
pub(super) fn store_row_with(
    conn: &Connection,
    schema: &TableSchema,
    query: &str,
    row: &Row,
) -> Result<(), StoreError> {
    let mut statement = conn.prepare_cached(query).map_err(StoreError::backend)?;
    bind_row(&mut statement, schema, row).map_err(StoreError::backend)?;
    statement.raw_execute().map_err(StoreError::backend)?;
    Ok(())
}

/// Binds the system columns, then the user columns in schema order, without copying values.
pub(super) fn bind_row(
    statement: &mut rusqlite::Statement<'_>,
    schema: &TableSchema,
    row: &Row,
) -> rusqlite::Result<()> {
    statement.raw_bind_parameter(1, row.id.as_str())?;
    statement.raw_bind_parameter(2, row.created_at_ms)?;
    statement.raw_bind_parameter(3, row.updated_at_ms)?;
    statement.raw_bind_parameter(4, i64::try_from(row.version).unwrap_or(i64::MAX))?;
    statement.raw_bind_parameter(5, i64::from(row.deleted))?;
    for (index, (name, ty)) in schema.columns.iter().enumerate() {
        let at = index + 6;
        // The values are in their column's canonical form (`store::values`).
        match (ty, row.values.get(name).unwrap_or(&Value::Null)) {
            (_, Value::Null) => statement.raw_bind_parameter(at, rusqlite::types::Null)?,
            (_, Value::Bool(b)) => statement.raw_bind_parameter(at, i64::from(*b))?,
            (_, Value::Number(n)) => match n.as_i64() {
                Some(integer) => statement.raw_bind_parameter(at, integer)?,
                None => statement.raw_bind_parameter(at, n.as_f64())?,
            },
            (ColumnType::DateTime, Value::String(s)) => {
                statement.raw_bind_parameter(at, values::datetime_ms(s))?;
            }
            (_, Value::String(s)) => statement.raw_bind_parameter(at, s.as_str())?,
            (_, value @ (Value::Array(_) | Value::Object(_))) => {
                statement.raw_bind_parameter(at, value.to_string())?;
            }
        }
    }
    Ok(())
}
