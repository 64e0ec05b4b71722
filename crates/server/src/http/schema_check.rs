//! The schema check of the write path: do the sent properties fit the table's columns, and
//! which columns would a dynamic table learn from them. It runs inside the store's write
//! transaction, on the columns as that transaction sees them, so the columns a write adds are
//! added only when the write itself commits.

use serde_json::Value;
use tidesync_protocol::{Item, system};

use crate::store::{ColumnType, Refusal, TableSchema};

/// The sent values that passed the check, and the columns they add.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Checked {
    /// The values to store: every key is a column of the table or of `new_columns`.
    pub(crate) values: Item,
    /// The columns to add, typed by their first value.
    pub(crate) new_columns: Vec<(String, ColumnType)>,
}

/// Checks `values` against `schema`: known columns must get a value of their type (or null);
/// a property the table lacks must have a name that can be a column, and becomes one typed by
/// its value (a null value of an unknown property is dropped: it cannot be typed yet).
///
/// # Errors
///
/// [`Refusal::Invalid`] naming the first property that does not fit.
pub(crate) fn check(schema: &TableSchema, values: Item) -> Result<Checked, Refusal> {
    let mut checked = Checked {
        values: Item::new(),
        new_columns: Vec::new(),
    };
    for (name, value) in values {
        match schema.column(&name) {
            Some(ty) => check_value(&name, ty, &value)?,
            None => {
                check_column_name(&name)?;
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
                match ColumnType::of(&value) {
                    Some(ty) => checked.new_columns.push((name.clone(), ty)),
                    None => continue,
                }
            }
        }
        checked.values.insert(name, value);
    }
    Ok(checked)
}

/// Checks that `value` fits a column of type `ty` (null fits every column).
fn check_value(name: &str, ty: ColumnType, value: &Value) -> Result<(), Refusal> {
    match ColumnType::of(value) {
        None => Ok(()),
        Some(found) if found == ty => Ok(()),
        Some(found) => Err(Refusal::invalid(format!(
            "property '{name}' must be {} (the column's type), not {}",
            ty.describe(),
            found.describe()
        ))),
    }
}

/// Checks that a property name can be a column: ASCII letter or `_` first, then letters,
/// digits and `_`, at most 128 characters, not a system property name.
fn check_column_name(name: &str) -> Result<(), Refusal> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok || !rest_ok || name.len() > 128 {
        return Err(Refusal::invalid(format!(
            "property name '{}' is not allowed: use letters, digits and '_' (at most 128), starting with a letter or '_'",
            name.escape_debug()
        )));
    }
    if name.eq_ignore_ascii_case(system::ID) || system::is_system_property(name) {
        return Err(Refusal::invalid(format!("property '{name}' is reserved")));
    }
    if name.to_ascii_lowercase().starts_with("_tidesync") {
        return Err(Refusal::invalid(format!("property '{name}' is reserved")));
    }
    Ok(())
}
