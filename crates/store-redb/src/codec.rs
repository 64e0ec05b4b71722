//! The row encoding: a compact, type-directed byte string per row.
//!
//! A row is a sequence of entries, one per non-null column, in ascending slot
//! order. An entry is the column's slot number (LEB128) followed by its value,
//! laid out by the column's type:
//!
//! | type       | bytes                                                        |
//! |------------|--------------------------------------------------------------|
//! | `String`   | length (LEB128), UTF-8                                       |
//! | `Bool`     | one byte, 0 or 1                                             |
//! | `Integer`  | zigzag LEB128                                                |
//! | `Real`     | 8 bytes, the `f64` bits little-endian (keeps `-0.0`)         |
//! | `DateTime` | unix seconds (zigzag LEB128), nanoseconds (LEB128)           |
//! | `Json`     | length (LEB128), JSON text                                   |
//!
//! A slot is a column's position in the table's append-only slot list (see
//! `schema::StoredTable`), so growing a table never rewrites old rows. The id
//! is the redb key and is not repeated in the value; nulls are not written.
//! Date-times are kept as instants and printed back with
//! [`format_stored_timestamp`], which is exactly the text
//! [`normalize_value`](tidesync_core::normalize_value) produces for them.

use serde_json::{Number, Value};
use tidesync_core::{
    ColumnType, Item, Operation, OperationError, StoreError, format_stored_timestamp,
};
use tidesync_protocol::system::ID;

/// One column as the codec sees it: its name and type, found by slot number.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Slot {
    pub(crate) name: String,
    pub(crate) ty: ColumnType,
}

/// Encodes normalised values, given as `(slot, type, value)`, into a row.
/// Nulls are skipped; the entries are sorted by slot.
pub(crate) fn encode_row(
    mut values: Vec<(usize, ColumnType, Value)>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    out.clear();
    values.sort_by_key(|(slot, _, _)| *slot);
    for (slot, ty, value) in &values {
        if value.is_null() {
            continue;
        }
        put_varint(out, *slot as u64);
        encode_value(*ty, value, out)?;
    }
    Ok(())
}

fn encode_value(ty: ColumnType, value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    let wrong = || format!("value {value} does not fit {ty:?}");
    match ty {
        ColumnType::String => {
            let text = value.as_str().ok_or_else(wrong)?;
            put_bytes(out, text.as_bytes());
        }
        ColumnType::Bool => out.push(u8::from(value.as_bool().ok_or_else(wrong)?)),
        ColumnType::Integer => put_varint(out, zigzag(value.as_i64().ok_or_else(wrong)?)),
        ColumnType::Real => {
            let real = value.as_f64().ok_or_else(wrong)?;
            out.extend_from_slice(&real.to_bits().to_le_bytes());
        }
        ColumnType::DateTime => {
            let text = value.as_str().ok_or_else(wrong)?;
            let at =
                tidesync_protocol::time_fmt::parse_timestamp(text).map_err(|e| e.to_string())?;
            put_varint(out, zigzag(at.unix_timestamp()));
            put_varint(out, u64::from(at.nanosecond()));
        }
        ColumnType::Json => {
            let text = serde_json::to_vec(value).map_err(|e| e.to_string())?;
            put_bytes(out, &text);
        }
    }
    Ok(())
}

/// Decodes a row into an item with its `id`.
pub(crate) fn decode_row(id: &str, bytes: &[u8], slots: &[Slot]) -> Result<Item, String> {
    let mut item = Item::new();
    item.insert(ID.to_owned(), Value::String(id.to_owned()));
    let mut reader = Reader { bytes, at: 0 };
    while !reader.done() {
        let (_, slot) = reader.slot(slots)?;
        let value = reader.value(slot.ty)?;
        item.insert(slot.name.clone(), value);
    }
    Ok(item)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn byte(&mut self) -> Result<u8, String> {
        let byte = *self.bytes.get(self.at).ok_or("row ends early")?;
        self.at += 1;
        Ok(byte)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).ok_or("length overflows")?;
        let taken = self.bytes.get(self.at..end).ok_or("row ends early")?;
        self.at = end;
        Ok(taken)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".to_owned())
    }

    fn len(&mut self) -> Result<usize, String> {
        usize::try_from(self.varint()?).map_err(|_| "length too large".to_owned())
    }

    fn slot<'s>(&mut self, slots: &'s [Slot]) -> Result<(usize, &'s Slot), String> {
        let slot = self.varint()?;
        usize::try_from(slot)
            .ok()
            .and_then(|i| slots.get(i).map(|s| (i, s)))
            .ok_or_else(|| format!("unknown column slot {slot}"))
    }

    fn value(&mut self, ty: ColumnType) -> Result<Value, String> {
        Ok(match ty {
            ColumnType::String => {
                let n = self.len()?;
                let text = std::str::from_utf8(self.take(n)?).map_err(|e| e.to_string())?;
                Value::String(text.to_owned())
            }
            ColumnType::Bool => match self.byte()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                other => return Err(format!("bad bool byte {other}")),
            },
            ColumnType::Integer => Value::from(unzigzag(self.varint()?)),
            ColumnType::Real => {
                let mut bits = [0u8; 8];
                bits.copy_from_slice(self.take(8)?);
                Number::from_f64(f64::from_le_bytes(bits))
                    .map(Value::Number)
                    .ok_or("non-finite real")?
            }
            ColumnType::DateTime => {
                let seconds = unzigzag(self.varint()?);
                let nanos = u32::try_from(self.varint()?).map_err(|e| e.to_string())?;
                let at = time::OffsetDateTime::from_unix_timestamp(seconds)
                    .and_then(|at| at.replace_nanosecond(nanos))
                    .map_err(|e| e.to_string())?;
                Value::String(format_stored_timestamp(at))
            }
            ColumnType::Json => {
                let n = self.len()?;
                serde_json::from_slice(self.take(n)?).map_err(|e| e.to_string())?
            }
        })
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// A decoding failure as a store error naming the row.
pub(crate) fn corrupt_row(table: &str, id: &str, why: String) -> StoreError {
    StoreError::Corrupt(format!("row {id:?} of table {table}: {why}"))
}

/// A stored op.
pub(crate) fn decode_op(bytes: &[u8]) -> Result<Operation, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| crate::error::corrupt_json("stored op", e))
}

/// A stored error record.
pub(crate) fn decode_error(bytes: &[u8]) -> Result<OperationError, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| crate::error::corrupt_json("stored error record", e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slots() -> Vec<Slot> {
        [
            ("createdAt", ColumnType::DateTime),
            ("updatedAt", ColumnType::DateTime),
            ("s", ColumnType::String),
            ("b", ColumnType::Bool),
            ("i", ColumnType::Integer),
            ("r", ColumnType::Real),
            ("j", ColumnType::Json),
        ]
        .into_iter()
        .map(|(name, ty)| Slot {
            name: name.to_owned(),
            ty,
        })
        .collect()
    }

    fn round_trip(values: Vec<(usize, Value)>) -> (Vec<u8>, Item) {
        let slots = slots();
        let typed = values
            .into_iter()
            .map(|(slot, v)| (slot, slots[slot].ty, v))
            .collect();
        let mut bytes = Vec::new();
        encode_row(typed, &mut bytes).unwrap();
        let item = decode_row("the-id", &bytes, &slots).unwrap();
        (bytes, item)
    }

    #[test]
    fn every_type_round_trips_and_nulls_vanish() {
        let (_, item) = round_trip(vec![
            (6, json!({"a": [1, null, "🍎"]})),
            (2, json!("Grüße\n")),
            (3, json!(true)),
            (4, json!(i64::MIN)),
            (5, json!(-0.0)),
            (1, json!("2024-01-15T10:20:30.123456Z")),
            (0, Value::Null),
        ]);
        let expected = json!({"id": "the-id", "s": "Grüße\n", "b": true, "i": i64::MIN,
            "r": -0.0, "updatedAt": "2024-01-15T10:20:30.123Z", "j": {"a": [1, null, "🍎"]}});
        assert_eq!(Value::Object(item.clone()), expected);
        assert_eq!(item["r"].as_f64().unwrap().to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn rows_are_compact() {
        let (bytes, _) = round_trip(vec![
            (1, json!("2024-01-15T10:20:30.123Z")),
            (2, json!("buy milk")),
            (3, json!(false)),
            (4, json!(3)),
        ]);
        // 1 + 5 + 4 (date-time) + 1 + 1 + 8 (text) + 2 (bool) + 2 (integer)
        assert_eq!(bytes.len(), 24, "{bytes:?}");
    }

    #[test]
    fn damaged_rows_are_errors_not_panics() {
        let slots = slots();
        let (bytes, _) = round_trip(vec![(2, json!("hello")), (6, json!([1, 2]))]);
        for cut in 0..bytes.len() {
            let _ = decode_row("x", &bytes[..cut], &slots);
        }
        assert!(decode_row("x", &[99], &slots).is_err(), "unknown slot");
        assert!(decode_row("x", &[3, 7], &slots).is_err(), "bad bool");
        assert!(decode_row("x", &[2, 200], &slots).is_err(), "short string");
        assert!(decode_row("x", &[0xff; 12], &slots).is_err(), "long varint");
        assert!(
            decode_row("x", &[2, 2, 0xff, 0xfe], &slots).is_err(),
            "bad utf-8"
        );
    }

    #[test]
    fn zigzag_covers_the_bounds() {
        for v in [0, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}
