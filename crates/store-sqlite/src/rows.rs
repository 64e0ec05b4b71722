//! Rows ↔ JSON: binding item values by column type and reading rows back into
//! [`Item`]s, plus the queue and error records.

use std::borrow::Cow;

use rusqlite::Row;
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use serde_json::{Number, Value};
use tidesync_core::{ColumnType, Item, OpKind, OpState, Operation, OperationError, StoreError};

use crate::error::{Result, corrupt};

/// The SQL value of a JSON value already checked by `normalize_value` (taken
/// by value so text moves instead of being copied).
pub(crate) fn to_sql(ty: ColumnType, value: Value) -> Result<SqlValue> {
    Ok(match (ty, value) {
        (_, Value::Null) => SqlValue::Null,
        (ColumnType::Bool, Value::Bool(b)) => SqlValue::Integer(i64::from(b)),
        (ColumnType::Integer, Value::Number(n)) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => return Err(corrupt(format!("integer out of range: {n}"))),
        },
        (ColumnType::Real, Value::Number(n)) => match n.as_f64() {
            Some(x) => SqlValue::Real(x),
            None => return Err(corrupt(format!("not a real: {n}"))),
        },
        (ColumnType::String | ColumnType::DateTime, Value::String(s)) => SqlValue::Text(s),
        (ColumnType::Json, other) => SqlValue::Text(other.to_string()),
        (ty, other) => return Err(corrupt(format!("{other} is not a {ty:?} value"))),
    })
}

/// As [`to_sql`], borrowing text instead of moving it (for values that
/// `check_value` found already normal).
pub(crate) fn to_sql_ref(ty: ColumnType, value: &Value) -> Result<ToSqlOutput<'_>> {
    Ok(match (ty, value) {
        (ColumnType::String | ColumnType::DateTime, Value::String(s)) => {
            ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
        }
        _ => ToSqlOutput::Owned(to_sql(ty, value.clone())?),
    })
}

/// The JSON value of a stored column, by its type.
pub(crate) fn from_sql(ty: ColumnType, value: ValueRef<'_>) -> Result<Value> {
    let text = |bytes: &[u8]| -> Result<String> {
        String::from_utf8(bytes.to_vec()).map_err(|e| corrupt(format!("text is not UTF-8: {e}")))
    };
    Ok(match (ty, value) {
        (_, ValueRef::Null) => Value::Null,
        (ColumnType::Bool, ValueRef::Integer(i)) => Value::Bool(i != 0),
        (ColumnType::Integer, ValueRef::Integer(i)) => Value::from(i),
        (ColumnType::Real, ValueRef::Real(x)) => real(x)?,
        #[allow(clippy::cast_precision_loss)]
        (ColumnType::Real, ValueRef::Integer(i)) => real(i as f64)?,
        (ColumnType::String | ColumnType::DateTime, ValueRef::Text(t)) => Value::String(text(t)?),
        (ColumnType::Json, ValueRef::Text(t)) => serde_json::from_slice(t)
            .map_err(|e| corrupt(format!("stored JSON does not parse: {e}")))?,
        (ty, other) => {
            return Err(corrupt(format!(
                "a {:?} value in a {ty:?} column",
                other.data_type()
            )));
        }
    })
}

fn real(x: f64) -> Result<Value> {
    Number::from_f64(x)
        .map(Value::Number)
        .ok_or_else(|| corrupt(format!("non-finite real {x}")))
}

/// Reads a row selected as the given columns, in order, leaving out nulls.
pub(crate) fn read_item(row: &Row<'_>, columns: &[(String, ColumnType)]) -> Result<Item> {
    let mut item = Item::new();
    for (i, (name, ty)) in columns.iter().enumerate() {
        let value = from_sql(*ty, row.get_ref(i).map_err(crate::error::map_err)?)?;
        if !value.is_null() {
            item.insert(name.clone(), value);
        }
    }
    Ok(item)
}

fn json_text(item: Option<&Item>) -> Result<Option<String>> {
    item.map(|i| serde_json::to_string(i).map_err(StoreError::backend))
        .transpose()
}

fn parse_item(text: Option<String>, what: &str) -> Result<Option<Item>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(format!("{what}: {e}"))))
        .transpose()
}

pub(crate) fn to_i64(n: u64, what: &str) -> Result<i64> {
    i64::try_from(n).map_err(|_| {
        StoreError::backend(std::io::Error::other(format!(
            "{what} {n} is too large for the SQLite store"
        )))
    })
}

/// The columns of `__operations`, in the order [`read_operation`] expects (a
/// macro, so that statements can be static text built with `concat!`).
macro_rules! operation_columns {
    () => {
        "id, kind, state, tableName, itemId, item, base, sequence, version"
    };
}
pub(crate) use operation_columns;

/// The parameters of an `__operations` row, in `operation_columns!()` order.
pub(crate) fn operation_params(op: &Operation) -> Result<[SqlValue; 9]> {
    Ok([
        SqlValue::Text(op.id.clone()),
        SqlValue::Integer(op.kind.code()),
        SqlValue::Integer(op.state.code()),
        SqlValue::Text(op.table.clone()),
        SqlValue::Text(op.item_id.clone()),
        json_text(op.item.as_ref())?.map_or(SqlValue::Null, SqlValue::Text),
        json_text(op.base.as_ref())?.map_or(SqlValue::Null, SqlValue::Text),
        SqlValue::Integer(to_i64(op.sequence, "operation sequence")?),
        SqlValue::Integer(i64::from(op.version)),
    ])
}

/// Reads an `__operations` row selected as `operation_columns!()`.
pub(crate) fn read_operation(row: &Row<'_>) -> Result<Operation> {
    let get_err = crate::error::map_err;
    let kind: i64 = row.get(1).map_err(get_err)?;
    let state: i64 = row.get(2).map_err(get_err)?;
    let sequence: i64 = row.get(7).map_err(get_err)?;
    let version: i64 = row.get(8).map_err(get_err)?;
    Ok(Operation {
        id: row.get(0).map_err(get_err)?,
        kind: OpKind::from_code(kind).ok_or_else(|| corrupt(format!("operation kind {kind}")))?,
        state: OpState::from_code(state)
            .ok_or_else(|| corrupt(format!("operation state {state}")))?,
        table: row.get(3).map_err(get_err)?,
        item_id: row.get(4).map_err(get_err)?,
        item: parse_item(row.get(5).map_err(get_err)?, "operation item")?,
        base: parse_item(row.get(6).map_err(get_err)?, "operation base")?,
        sequence: u64::try_from(sequence).map_err(|_| corrupt(format!("sequence {sequence}")))?,
        version: u32::try_from(version)
            .map_err(|_| corrupt(format!("operation version {version}")))?,
    })
}

/// The columns of `__errors`, in the order [`read_error`] expects.
pub(crate) const ERROR_COLUMNS: &str = "id, operationVersion, operationKind, tableName, itemId, \
     httpStatus, item, serverItem, rawResult, message";

/// The parameters of an `__errors` row, in [`ERROR_COLUMNS`] order.
pub(crate) fn error_params(e: &OperationError) -> Result<[SqlValue; 10]> {
    Ok([
        SqlValue::Text(e.operation_id.clone()),
        SqlValue::Integer(i64::from(e.operation_version)),
        SqlValue::Integer(e.kind.code()),
        SqlValue::Text(e.table.clone()),
        SqlValue::Text(e.item_id.clone()),
        e.status
            .map_or(SqlValue::Null, |s| SqlValue::Integer(i64::from(s))),
        json_text(e.item.as_ref())?.map_or(SqlValue::Null, SqlValue::Text),
        json_text(e.server_item.as_ref())?.map_or(SqlValue::Null, SqlValue::Text),
        e.raw_result.clone().map_or(SqlValue::Null, SqlValue::Text),
        SqlValue::Text(e.message.clone()),
    ])
}

/// Reads an `__errors` row selected as [`ERROR_COLUMNS`].
pub(crate) fn read_error(row: &Row<'_>) -> Result<OperationError> {
    let get_err = crate::error::map_err;
    let version: i64 = row.get(1).map_err(get_err)?;
    let kind: i64 = row.get(2).map_err(get_err)?;
    let status: Option<i64> = row.get(5).map_err(get_err)?;
    Ok(OperationError {
        operation_id: row.get(0).map_err(get_err)?,
        operation_version: u32::try_from(version)
            .map_err(|_| corrupt(format!("operation version {version}")))?,
        kind: OpKind::from_code(kind).ok_or_else(|| corrupt(format!("operation kind {kind}")))?,
        table: row.get(3).map_err(get_err)?,
        item_id: row.get(4).map_err(get_err)?,
        status: status
            .map(|s| u16::try_from(s).map_err(|_| corrupt(format!("HTTP status {s}"))))
            .transpose()?,
        item: parse_item(row.get(6).map_err(get_err)?, "error item")?,
        server_item: parse_item(row.get(7).map_err(get_err)?, "error server item")?,
        raw_result: row.get(8).map_err(get_err)?,
        message: row.get(9).map_err(get_err)?,
    })
}

/// The hidden column of every app table that holds the queued op living in
/// that row (see `queue`), as JSON; null when the row holds none.
pub(crate) const OP_COLUMN: &str = "__tidesync_op";

/// An op as stored in [`OP_COLUMN`]: its table and item are the row's.
#[derive(serde::Serialize, serde::Deserialize)]
struct RowOp<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    kind: i64,
    state: i64,
    seq: u64,
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    item: Option<Cow<'a, Item>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base: Option<Cow<'a, Item>>,
}

/// The id and sequence of an [`OP_COLUMN`] value (what the queue map needs).
#[derive(serde::Deserialize)]
struct RowOpKey<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    seq: u64,
}

/// The [`OP_COLUMN`] text of `op`. Its sequence must fit `__operations`
/// (an `i64`), where the op moves when its row is deleted.
///
/// An op with no item and no base (every new insert's and update's) is
/// written by hand, byte for byte the text serde writes for [`RowOp`] (a
/// test compares the two): a local write pays a few string appends instead
/// of serde's machinery. Ids that would need escaping go through serde.
pub(crate) fn row_op_text(op: &Operation) -> Result<String> {
    let mut text = String::new();
    row_op_text_into(op, &mut text)?;
    Ok(text)
}

/// [`row_op_text`] into `text` (emptied first), reusing its buffer.
pub(crate) fn row_op_text_into(op: &Operation, text: &mut String) -> Result<()> {
    to_i64(op.sequence, "operation sequence")?;
    text.clear();
    if op.item.is_none() && op.base.is_none() && is_plain_json_text(&op.id) {
        text.push_str("{\"id\":\"");
        text.push_str(&op.id);
        text.push_str("\",\"kind\":");
        push_decimal(text, op.kind.code().unsigned_abs());
        text.push_str(",\"state\":");
        push_decimal(text, op.state.code().unsigned_abs());
        text.push_str(",\"seq\":");
        push_decimal(text, op.sequence);
        text.push_str(",\"version\":");
        push_decimal(text, u64::from(op.version));
        text.push('}');
        return Ok(());
    }
    text.push_str(&row_op_text_serde(op)?);
    Ok(())
}

/// Appends `n` in decimal, as serde writes it (no `fmt` machinery).
fn push_decimal(text: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // A digit: `n % 10` fits a `u8`.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits: always UTF-8.
    text.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

/// True when `text` goes into a JSON string as it is (no quote, backslash
/// or control character to escape).
fn is_plain_json_text(text: &str) -> bool {
    !text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

/// [`row_op_text`] through serde: any op.
fn row_op_text_serde(op: &Operation) -> Result<String> {
    serde_json::to_string(&RowOp {
        id: Cow::Borrowed(&op.id),
        kind: op.kind.code(),
        state: op.state.code(),
        seq: op.sequence,
        version: op.version,
        item: op.item.as_ref().map(Cow::Borrowed),
        base: op.base.as_ref().map(Cow::Borrowed),
    })
    .map_err(StoreError::backend)
}

/// The op of row `item_id` of `table` from its [`OP_COLUMN`] text.
pub(crate) fn read_row_op(text: &str, table: &str, item_id: &str) -> Result<Operation> {
    let op: RowOp<'_> = serde_json::from_str(text)
        .map_err(|e| corrupt(format!("queued op in row {item_id} of {table}: {e}")))?;
    Ok(Operation {
        id: op.id.into_owned(),
        kind: OpKind::from_code(op.kind)
            .ok_or_else(|| corrupt(format!("operation kind {}", op.kind)))?,
        state: OpState::from_code(op.state)
            .ok_or_else(|| corrupt(format!("operation state {}", op.state)))?,
        table: table.to_owned(),
        item_id: item_id.to_owned(),
        item: op.item.map(Cow::into_owned),
        base: op.base.map(Cow::into_owned),
        sequence: op.seq,
        version: op.version,
    })
}

/// The op id and sequence in an [`OP_COLUMN`] text.
pub(crate) fn row_op_key(text: &str, table: &str, item_id: &str) -> Result<(String, u64)> {
    let key: RowOpKey<'_> = serde_json::from_str(text)
        .map_err(|e| corrupt(format!("queued op in row {item_id} of {table}: {e}")))?;
    Ok((key.id.into_owned(), key.seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: &str, kind: OpKind, state: OpState, sequence: u64, version: u32) -> Operation {
        Operation {
            id: id.to_owned(),
            kind,
            state,
            table: "T".to_owned(),
            item_id: "a".to_owned(),
            item: None,
            base: None,
            sequence,
            version,
        }
    }

    /// The hand-written op text is serde's, byte for byte, so files written
    /// before and after it read alike.
    #[test]
    fn row_op_text_by_hand_is_serdes() {
        let mut with_item = op("x", OpKind::Update, OpState::Attempted, 3, 2);
        with_item.item = Some(Item::from_iter([("n".to_owned(), Value::from(1))]));
        let cases = [
            op(
                "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                OpKind::Insert,
                OpState::Pending,
                0,
                1,
            ),
            op(
                "x",
                OpKind::Update,
                OpState::Attempted,
                i64::MAX as u64,
                u32::MAX,
            ),
            op("y", OpKind::Delete, OpState::Failed, 17, 0),
            op("", OpKind::Insert, OpState::Pending, 1, 1),
            op(
                "quote\"back\\slash\ttab",
                OpKind::Insert,
                OpState::Pending,
                1,
                1,
            ),
            op("é ü 日本", OpKind::Insert, OpState::Pending, 42, 7),
            with_item,
        ];
        let mut reused = "left over".to_owned();
        for case in cases {
            let by_hand = row_op_text(&case).unwrap();
            row_op_text_into(&case, &mut reused).unwrap();
            assert_eq!(reused, by_hand);
            assert_eq!(by_hand, row_op_text_serde(&case).unwrap(), "{case:?}");
            let back = read_row_op(&by_hand, "T", "a").unwrap();
            assert_eq!(back, case);
        }
    }
}
