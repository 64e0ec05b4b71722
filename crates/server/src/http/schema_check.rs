//! The schema check of the write path: do the sent properties fit the table's columns, in
//! which form does the store hold their values, and which columns does a dynamic table learn
//! from them. It runs inside the store's write transaction, on the columns as that
//! transaction sees them, so the columns a write adds are added only when the write itself
//! commits.
//!
//! - A **declared** table (`columns = {…}` in the configuration) has a fixed schema: a
//!   property it does not declare, or a value of the wrong type, is refused.
//! - A **dynamic** table learns a column from a new property, typed by its value
//!   (`store::values::learned_type`), within the caps of [`SchemaConfig`]: at most
//!   `max_new_columns_per_write` new properties per write, at most `max_columns_per_table`
//!   user columns. The name must be usable in both stores (see [`check_column_name`]).
//!
//! A value that is an object or array is refused whatever the table (the protocol has no
//! nested values). Every value is put into its column's canonical form (`store::values::canonical`): the
//! store holds exactly that, and the write is answered with it.

use serde_json::Value;
use tidesync_protocol::{Item, system};

use crate::config::SchemaConfig;
use crate::store::values::{self, Misfit};
use crate::store::{ColumnType, OWNER_COLUMN, Refusal, TableSchema};

/// The longest column name: PostgreSQL keeps 63 bytes of an identifier and silently cuts
/// longer ones (so two long names could become one column).
pub(crate) const MAX_COLUMN_NAME: usize = 63;

/// Names a column may not have (any letter case): the rowid aliases of SQLite and the system
/// columns of PostgreSQL, which a same-named user column would shadow or collide with.
const STORE_INTERNALS: [&str; 9] = [
    "rowid", "_rowid_", "oid", "ctid", "xmin", "xmax", "cmin", "cmax", "tableoid",
];

/// The sent values that passed the check, and the columns they add.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Checked {
    /// The values to store, in canonical form: every key is a column of the table or of
    /// `new_columns`.
    pub(crate) values: Item,
    /// The columns to add, typed by their first value.
    pub(crate) new_columns: Vec<(String, ColumnType)>,
}

/// Checks `values` against `schema` (see the module documentation).
///
/// # Errors
///
/// [`Refusal::Invalid`] naming the first property that does not fit, or the cap it breaks.
pub(crate) fn check(
    schema: &TableSchema,
    values: Item,
    limits: &SchemaConfig,
) -> Result<Checked, Refusal> {
    let table = &schema.spec.name;
    let mut checked = Checked {
        values: Item::new(),
        new_columns: Vec::new(),
    };
    let mut n_new = 0;
    for (name, value) in values {
        if value.is_object() || value.is_array() {
            return Err(Refusal::invalid(format!(
                "property '{name}' is an object or array: the table protocol has no nested values"
            )));
        }
        let ty = match (schema.column(&name), &schema.spec.declared) {
            (Some(ty), None) => ty,
            (Some(ty), Some(_)) if is_declared(schema, &name) => ty,
            (_, Some(_)) => {
                return Err(Refusal::invalid(format!(
                    "property '{name}' is not a column of table '{table}' (its columns are declared)"
                )));
            }
            (None, None) => {
                n_new += 1;
                if n_new > limits.max_new_columns_per_write {
                    return Err(Refusal::invalid(format!(
                        "a write may add at most {} new properties to table '{table}' \
                         ([schema] max_new_columns_per_write); this one sends more",
                        limits.max_new_columns_per_write
                    )));
                }
                check_column_name(&name).map_err(Refusal::invalid)?;
                if let Some(clash) = schema
                    .columns
                    .iter()
                    .chain(&checked.new_columns)
                    .map(|(column, _)| column.as_str())
                    .find(|column| column.eq_ignore_ascii_case(&name))
                {
                    return Err(Refusal::invalid(format!(
                        "property '{name}' differs from the existing column '{clash}' only in letter case"
                    )));
                }
                // A null cannot be typed yet: nothing to store, no column to add.
                let Some(ty) = values::learned_type(&value) else {
                    continue;
                };
                let n_columns = schema.columns.len() + checked.new_columns.len();
                if n_columns >= limits.max_columns_per_table {
                    return Err(Refusal::invalid(format!(
                        "table '{table}' has {n_columns} columns, the most a table without \
                         declared columns may have ([schema] max_columns_per_table); \
                         property '{name}' would add one more"
                    )));
                }
                checked.new_columns.push((name.clone(), ty));
                ty
            }
        };
        let value = canonical(&name, ty, value)?;
        checked.values.insert(name, value);
    }
    Ok(checked)
}

/// Whether a declared table takes property `name`: declared, its owner column or its tenant
/// scope column.
fn is_declared(schema: &TableSchema, name: &str) -> bool {
    (schema.spec.owned && name == OWNER_COLUMN)
        || schema.spec.scope_column.as_deref() == Some(name)
        || schema
            .spec
            .declared
            .iter()
            .flatten()
            .any(|(column, _)| column == name)
}

/// `value` in the canonical form of a column of type `ty`, or why it does not fit.
fn canonical(name: &str, ty: ColumnType, value: Value) -> Result<Value, Refusal> {
    let found = ColumnType::of(&value);
    values::canonical(ty, value).map_err(|misfit| {
        Refusal::invalid(match misfit {
            Misfit::NotAnInteger => {
                format!("property '{name}' must be an integer in the signed 64-bit range")
            }
            Misfit::NotADateTime => format!(
                "property '{name}' must be a date-time (ISO 8601, e.g. 2024-01-01T00:00:00.000Z)"
            ),
            Misfit::Type => format!(
                "property '{name}' must be {} (the column's type), not {}",
                ty.describe(),
                found.map_or("null", ColumnType::describe)
            ),
        })
    })
}

/// Checks that a property name can be a column in both stores: an ASCII letter or `_` first,
/// then letters, digits and `_`, at most [`MAX_COLUMN_NAME`] bytes; not a system property,
/// not starting with `__` (the protocol's and tidesync's own names) or `_tidesync`, and not
/// a store internal ([`STORE_INTERNALS`]).
///
/// # Errors
///
/// Which rule the name breaks.
pub(crate) fn check_column_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok || !rest_ok || name.len() > MAX_COLUMN_NAME {
        let shown: String = name.chars().take(80).collect();
        return Err(format!(
            "property name '{}' is not allowed: use letters, digits and '_' (at most {MAX_COLUMN_NAME}), starting with a letter or '_'",
            shown.escape_debug()
        ));
    }
    let lower = name.to_ascii_lowercase();
    let reserved = name.eq_ignore_ascii_case(system::ID)
        || system::is_system_property(name)
        || lower.starts_with("__")
        || lower.starts_with("_tidesync")
        || STORE_INTERNALS.contains(&lower.as_str());
    if reserved {
        return Err(format!("property '{name}' is reserved"));
    }
    Ok(())
}
