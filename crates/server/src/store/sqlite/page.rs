//! A list page written as JSON straight from SQLite's result rows: the bytes `serde_json`
//! writes for the items of [`Row::to_item`](crate::store::Row::to_item) (keys in sorted
//! order, the system properties among the user columns), without a `Row`, a map or an
//! owned string per value.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rusqlite::types::ValueRef;
use serde::Serialize;
use tidesync_protocol::time_fmt::push_timestamp_millis;
use tidesync_protocol::{encode_version, format_timestamp, system};

use super::super::schema::{ColumnType, TableSchema};
use super::super::{StoreError, ms_to_time, values};

/// What an entry of the item is, and where the select list has it.
#[derive(Debug, Clone, Copy)]
enum Field {
    Id,
    CreatedAt,
    UpdatedAt,
    Version,
    Deleted,
    /// A user column: its index in the result row and its type.
    User(usize, ColumnType),
}

/// Writes rows of one table (selected as `rows::column_list` lists them) as wire items.
#[derive(Debug)]
pub(super) struct RowEncoder {
    /// The entries in key order, each with its key as JSON (`"name":`, after a comma for
    /// all but the first).
    entries: Vec<(Vec<u8>, Field)>,
}

impl RowEncoder {
    pub(super) fn new(schema: &TableSchema, soft_delete: bool) -> Result<RowEncoder, StoreError> {
        let mut named: Vec<(&str, Field)> = vec![
            (system::ID, Field::Id),
            (system::CREATED_AT, Field::CreatedAt),
            (system::UPDATED_AT, Field::UpdatedAt),
            (system::VERSION, Field::Version),
        ];
        if soft_delete {
            named.push((system::DELETED, Field::Deleted));
        }
        for (index, (name, ty)) in schema.columns.iter().enumerate() {
            named.push((name.as_str(), Field::User(index + 5, *ty)));
        }
        // A `String` map's order: bytewise.
        named.sort_by(|a, b| a.0.cmp(b.0));
        let mut entries = Vec::with_capacity(named.len());
        for (position, (name, field)) in named.into_iter().enumerate() {
            let mut key = Vec::with_capacity(name.len() + 4);
            if position > 0 {
                key.push(b',');
            }
            write_json(&mut key, name)?;
            key.push(b':');
            entries.push((key, field));
        }
        Ok(RowEncoder { entries })
    }

    /// Appends `r` as one JSON object.
    pub(super) fn write(&self, out: &mut Vec<u8>, r: &rusqlite::Row<'_>) -> Result<(), StoreError> {
        out.push(b'{');
        for (key, field) in &self.entries {
            out.extend_from_slice(key);
            match *field {
                Field::Id => write_str(out, value(r, 0)?.as_str().map_err(StoreError::backend)?)?,
                Field::CreatedAt => write_time(out, integer(r, 1)?)?,
                Field::UpdatedAt => write_time(out, integer(r, 2)?)?,
                Field::Version => write_version(out, u64::try_from(integer(r, 3)?).unwrap_or(0)),
                Field::Deleted => write_bool(out, integer(r, 4)? != 0),
                Field::User(at, ty) => write_user(out, value(r, at)?, ty)?,
            }
        }
        out.push(b'}');
        Ok(())
    }
}

/// A user value as `rows::decode_row` reads it, written as its JSON.
fn write_user(out: &mut Vec<u8>, value: ValueRef<'_>, ty: ColumnType) -> Result<(), StoreError> {
    let null = |out: &mut Vec<u8>| out.extend_from_slice(b"null");
    match ty {
        ColumnType::String => match value.as_str_or_null().map_err(StoreError::backend)? {
            Some(text) => write_str(out, text)?,
            None => null(out),
        },
        ColumnType::Integer => match value.as_i64_or_null().map_err(StoreError::backend)? {
            Some(integer) => write_json(out, &integer)?,
            None => null(out),
        },
        ColumnType::Number => match value {
            ValueRef::Integer(integer) => write_json(out, &integer)?,
            ValueRef::Real(real) => write_json(out, &values::number_from_f64(real))?,
            _ => null(out),
        },
        ColumnType::DateTime => match value.as_i64_or_null().map_err(StoreError::backend)? {
            Some(ms) => write_time(out, ms)?,
            None => null(out),
        },
        ColumnType::Boolean => match value.as_i64_or_null().map_err(StoreError::backend)? {
            Some(b) => write_bool(out, b != 0),
            None => null(out),
        },
        ColumnType::Json => match value.as_str_or_null().map_err(StoreError::backend)? {
            Some(text) => {
                let parsed: serde_json::Value =
                    serde_json::from_str(text).map_err(StoreError::backend)?;
                write_json(out, &parsed)?;
            }
            None => null(out),
        },
    }
    Ok(())
}

fn value<'a>(r: &'a rusqlite::Row<'_>, at: usize) -> Result<ValueRef<'a>, StoreError> {
    r.get_ref(at).map_err(StoreError::backend)
}

fn integer(r: &rusqlite::Row<'_>, at: usize) -> Result<i64, StoreError> {
    value(r, at)?.as_i64().map_err(StoreError::backend)
}

fn write_bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// A timestamp as `format_timestamp(ms_to_time(ms))` writes it, quoted (it needs no
/// escapes).
fn write_time(out: &mut Vec<u8>, ms: i64) -> Result<(), StoreError> {
    out.push(b'"');
    if push_timestamp_millis(out, ms) {
        out.push(b'"');
        return Ok(());
    }
    out.pop();
    write_json(out, &format_timestamp(ms_to_time(ms)))
}

/// A version as `encode_version` writes it, quoted (base64 needs no escapes).
fn write_version(out: &mut Vec<u8>, version: u64) {
    let mut text = [0_u8; 12];
    out.push(b'"');
    match STANDARD.encode_slice(version.to_be_bytes(), &mut text) {
        Ok(written) => out.extend_from_slice(text.get(..written).unwrap_or(&text)),
        Err(_) => out.extend_from_slice(encode_version(version).as_bytes()),
    }
    out.push(b'"');
}

/// A string as `serde_json` writes it: copied whole when nothing in it needs an escape.
fn write_str(out: &mut Vec<u8>, text: &str) -> Result<(), StoreError> {
    // No early exit: the loop vectorizes.
    let escapes = text.bytes().fold(false, |seen, b| {
        seen | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if escapes {
        return write_json(out, text);
    }
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
    Ok(())
}

fn write_json(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) -> Result<(), StoreError> {
    value
        .serialize(&mut serde_json::Serializer::new(out))
        .map_err(StoreError::backend)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TableSpec;
    use crate::store::sqlite::rows::{column_list, decode_row};
    use rusqlite::Connection;
    use tidesync_protocol::time_fmt::YEAR_10000_MS;

    /// Every column type, including JSON text (never written through HTTP) and values of
    /// another storage class than their column's, encodes as the decoded row's item does.
    #[test]
    fn an_encoded_row_is_the_item_of_the_decoded_row() {
        let schema = TableSchema {
            spec: TableSpec::new("t", true, false),
            columns: vec![
                ("Big".to_owned(), ColumnType::Integer),
                ("amount".to_owned(), ColumnType::Number),
                ("done".to_owned(), ColumnType::Boolean),
                ("due".to_owned(), ColumnType::DateTime),
                ("extra".to_owned(), ColumnType::Json),
                ("name".to_owned(), ColumnType::String),
            ],
        };
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id, createdAt, updatedAt, version, deleted,
                             Big, amount, done, due, extra, name);
             INSERT INTO t VALUES
               ('a\"\\b', 1, 1700000000123, 7, 0, 9, 2.5, 1, 0, '{\"k\":[1,2.5,null,\"x\"]}', 'é\n'),
               ('c', -5, 0, -1, 1, NULL, NULL, NULL, NULL, NULL, NULL),
               ('d', 2, 3, 9223372036854775807, 2, -3, 'text', 0, 253402300799999,
                '[true, \"\\u0001\"]', ''),
               ('e', 2, 3, 4, 0, 1, 3.0, 5, -1, '\"s\"', 'x'),
               ('f', 2, 3, 4, 0, 1, 1e300, 5, -1, '1.5e3', 'x');",
        )
        .unwrap();
        let query = format!("SELECT {} FROM t ORDER BY rowid", column_list(&schema));
        for soft_delete in [true, false] {
            let encoder = RowEncoder::new(&schema, soft_delete).unwrap();
            let mut statement = conn.prepare(&query).unwrap();
            let mut rows = statement.query([]).unwrap();
            let mut seen = 0;
            while let Some(r) = rows.next().unwrap() {
                let mut direct = Vec::new();
                encoder.write(&mut direct, r).unwrap();
                let built =
                    serde_json::to_vec(&decode_row(r, &schema).unwrap().to_item(soft_delete))
                        .unwrap();
                assert_eq!(
                    String::from_utf8(direct).unwrap(),
                    String::from_utf8(built).unwrap()
                );
                seen += 1;
            }
            assert_eq!(seen, 5);
        }
    }

    #[test]
    fn timestamps_and_versions_are_written_as_the_general_formatters_write_them() {
        let mut ms: i64 = 0;
        let mut samples = vec![
            0,
            1,
            -1,
            86_399_999,
            951_782_400_000,   // 2000-02-29
            4_107_542_400_000, // 2100-03-01
            YEAR_10000_MS - 1,
            YEAR_10000_MS,
            i64::MIN,
            i64::MAX,
        ];
        for _ in 0..20_000 {
            // A spread over the four-digit years.
            ms = ms
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            samples.push(ms.rem_euclid(YEAR_10000_MS + 1_000));
        }
        for ms in samples {
            let mut direct = Vec::new();
            write_time(&mut direct, ms).unwrap();
            let built = serde_json::to_vec(&format_timestamp(ms_to_time(ms))).unwrap();
            assert_eq!(direct, built, "{ms}");
        }
        for version in [0, 1, 255, 1 << 40, u64::MAX] {
            let mut direct = Vec::new();
            write_version(&mut direct, version);
            assert_eq!(
                direct,
                serde_json::to_vec(&encode_version(version)).unwrap()
            );
        }
        for text in [
            "",
            "plain",
            "a\"b",
            "back\\slash",
            "\u{0}",
            "\u{1f}",
            "\u{7f} é 😀",
            "x\ny",
        ] {
            let mut direct = Vec::new();
            write_str(&mut direct, text).unwrap();
            assert_eq!(direct, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
    }
}
