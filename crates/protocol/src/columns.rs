//! The columnar snapshot framing (`application/vnd.tidesync.columns`): a tidesync extension
//! beyond the table protocols, used by the snapshot route when the client asks for it in its
//! `Accept` header (`docs/protocol.md`, "Snapshot"). Pure: it encodes and decodes bytes and
//! does no I/O.
//!
//! A body is a sequence of frames; each frame is a tag byte, its payload length as a
//! little-endian `u32`, then the payload:
//!
//! - `C` — a chunk of rows in `(updatedAt, id)` order: `u32` row count, `u16` column count,
//!   then per column its name (`u16` length, UTF-8), a type byte, one state byte per row
//!   (`0` absent, `1` null, `2` a value) and the values of the rows in state `2`;
//! - `E` — the end: a `u64`, the number of rows sent in all chunks;
//! - `X` — the server failed part-way: a UTF-8 message. No frame follows.
//!
//! Value encodings by type byte: `1` text (`u32` length, UTF-8), `2` integer (`i64`), `3`
//! real (`f64`), `4` boolean (one byte), `5` timestamp (`i64` milliseconds since the epoch,
//! read back as [`format_timestamp`] prints it), `6` version counter (`u64`, read back as
//! [`encode_version`] prints it), `7` any other JSON value (`u32` length, JSON text). All
//! numbers are little-endian. The types are chosen per chunk and column: the server sends
//! the narrowest that holds every value of the column in that chunk.
//!
//! Decoded rows are exactly the objects the NDJSON snapshot (and `GET /tables`) would have
//! carried: the same keys with the same JSON values.

use serde_json::{Number, Value};
use time::OffsetDateTime;

use crate::item::Item;
use crate::system::{CREATED_AT, DELETED, ID, UPDATED_AT, VERSION};
use crate::time_fmt::format_timestamp;
use crate::version::encode_version;

/// The media type of a columnar snapshot body.
pub const CONTENT_TYPE: &str = "application/vnd.tidesync.columns";

/// The largest frame a decoder accepts (a server sends far smaller ones).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

const CHUNK: u8 = b'C';
const END: u8 = b'E';
const ERROR: u8 = b'X';

const ABSENT: u8 = 0;
const NULL: u8 = 1;
const PRESENT: u8 = 2;

const TEXT: u8 = 1;
const INTEGER: u8 = 2;
const REAL: u8 = 3;
const BOOL: u8 = 4;
const TIMESTAMP: u8 = 5;
const COUNTER: u8 = 6;
const JSON: u8 = 7;

/// A body that does not follow the framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("columnar snapshot: {0}")]
pub struct ColumnsError(String);

fn bad(why: impl Into<String>) -> ColumnsError {
    ColumnsError(why.into())
}

/// One row as the server holds it, for [`encode_chunk`].
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    /// The id.
    pub id: &'a str,
    /// `createdAt`, milliseconds since the epoch.
    pub created_at_ms: i64,
    /// `updatedAt`, milliseconds since the epoch.
    pub updated_at_ms: i64,
    /// The version counter.
    pub version: u64,
    /// `deleted`, on soft-delete tables only (`None`: no `deleted` property).
    pub deleted: Option<bool>,
    /// The user columns (a JSON null is a null, an absent key is absent).
    pub values: &'a Item,
}

/// Appends one `C` frame holding `rows`.
///
/// # Errors
/// More rows, columns or bytes than the framing's counters hold.
pub fn encode_chunk(rows: &[RowRef<'_>], out: &mut Vec<u8>) -> Result<(), ColumnsError> {
    let start = begin_frame(CHUNK, out);
    put_u32(out, rows.len(), "rows in a chunk")?;
    // One pass over the rows' values: each user column's states, values and type.
    let mut columns: Vec<UserColumn<'_>> = Vec::new();
    for (at, row) in rows.iter().enumerate() {
        let mut guess = 0;
        for (name, value) in row.values {
            // Rows mostly share their keys, in the same (sorted) order: try the column after
            // the last one first.
            let index = match columns.get(guess) {
                Some(column) if column.name == name.as_str() => guess,
                _ => match columns.iter().position(|c| c.name == name.as_str()) {
                    Some(index) => index,
                    None => {
                        columns.push(UserColumn::new(name, rows.len()));
                        columns.len() - 1
                    }
                },
            };
            guess = index + 1;
            columns[index].add(at, value);
        }
    }
    let soft_delete = rows.iter().any(|r| r.deleted.is_some());
    let system = 4 + usize::from(soft_delete);
    let count = u16::try_from(columns.len() + system).map_err(|_| bad("too many columns"))?;
    out.extend_from_slice(&count.to_le_bytes());
    put_name(out, ID)?;
    out.push(TEXT);
    out.extend(std::iter::repeat_n(PRESENT, rows.len()));
    for row in rows {
        put_text(out, row.id)?;
    }
    for (name, created) in [(CREATED_AT, true), (UPDATED_AT, false)] {
        put_name(out, name)?;
        out.push(TIMESTAMP);
        out.extend(std::iter::repeat_n(PRESENT, rows.len()));
        for row in rows {
            let ms = if created {
                row.created_at_ms
            } else {
                row.updated_at_ms
            };
            out.extend_from_slice(&ms.to_le_bytes());
        }
    }
    put_name(out, VERSION)?;
    out.push(COUNTER);
    out.extend(std::iter::repeat_n(PRESENT, rows.len()));
    for row in rows {
        out.extend_from_slice(&row.version.to_le_bytes());
    }
    if soft_delete {
        put_name(out, DELETED)?;
        out.push(BOOL);
        out.extend(
            rows.iter()
                .map(|r| if r.deleted.is_some() { PRESENT } else { ABSENT }),
        );
        for deleted in rows.iter().filter_map(|r| r.deleted) {
            out.push(u8::from(deleted));
        }
    }
    for column in columns {
        put_name(out, column.name)?;
        let ty = column.ty.unwrap_or(JSON);
        out.push(ty);
        out.extend_from_slice(&column.states);
        for value in column.values {
            put_value(out, ty, value)?;
        }
    }
    end_frame(start, out)
}

/// Appends the `E` frame: `rows` rows were sent.
pub fn encode_end(rows: u64, out: &mut Vec<u8>) {
    out.push(END);
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&rows.to_le_bytes());
}

/// Appends the `X` frame (the message is cut to fit a frame).
pub fn encode_error(message: &str, out: &mut Vec<u8>) {
    let mut cut = message.len().min(64 * 1024);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    out.push(ERROR);
    out.extend_from_slice(&u32::try_from(cut).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&message.as_bytes()[..cut]);
}

fn begin_frame(tag: u8, out: &mut Vec<u8>) -> usize {
    out.push(tag);
    out.extend_from_slice(&[0; 4]);
    out.len()
}

fn end_frame(start: usize, out: &mut [u8]) -> Result<(), ColumnsError> {
    let len = u32::try_from(out.len() - start).map_err(|_| bad("a frame over 4 GiB"))?;
    out[start - 4..start].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

fn put_u32(out: &mut Vec<u8>, n: usize, what: &str) -> Result<(), ColumnsError> {
    let n = u32::try_from(n).map_err(|_| bad(format!("too many {what}")))?;
    out.extend_from_slice(&n.to_le_bytes());
    Ok(())
}

fn put_name(out: &mut Vec<u8>, name: &str) -> Result<(), ColumnsError> {
    let len = u16::try_from(name.len()).map_err(|_| bad("a column name over 64 KiB"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

fn put_text(out: &mut Vec<u8>, text: &str) -> Result<(), ColumnsError> {
    put_u32(out, text.len(), "bytes in a text")?;
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// A user column of a chunk being encoded.
struct UserColumn<'a> {
    name: &'a str,
    /// One state per row, absent until a row has the column.
    states: Vec<u8>,
    /// The non-null values, in row order.
    values: Vec<&'a Value>,
    /// The narrowest type holding every non-null value so far (`None`: no value yet).
    ty: Option<u8>,
}

impl<'a> UserColumn<'a> {
    fn new(name: &'a str, rows: usize) -> UserColumn<'a> {
        UserColumn {
            name,
            states: vec![ABSENT; rows],
            values: Vec::with_capacity(rows),
            ty: None,
        }
    }

    /// Row `at` has `value` in this column.
    fn add(&mut self, at: usize, value: &'a Value) {
        let this = match value {
            Value::Null => {
                self.states[at] = NULL;
                return;
            }
            Value::String(_) => TEXT,
            Value::Bool(_) => BOOL,
            Value::Number(n) if n.is_i64() => INTEGER,
            Value::Number(n) if n.is_f64() => REAL,
            _ => JSON,
        };
        self.states[at] = PRESENT;
        self.values.push(value);
        self.ty = match self.ty {
            None => Some(this),
            Some(seen) if seen == this => Some(seen),
            Some(_) => Some(JSON),
        };
    }
}

fn put_value(out: &mut Vec<u8>, ty: u8, value: &Value) -> Result<(), ColumnsError> {
    match (ty, value) {
        (TEXT, Value::String(s)) => put_text(out, s),
        (BOOL, Value::Bool(b)) => {
            out.push(u8::from(*b));
            Ok(())
        }
        (INTEGER, Value::Number(n)) => {
            let n = n.as_i64().ok_or_else(|| bad("not an integer"))?;
            out.extend_from_slice(&n.to_le_bytes());
            Ok(())
        }
        (REAL, Value::Number(n)) => {
            let x = n.as_f64().ok_or_else(|| bad("not a real"))?;
            out.extend_from_slice(&x.to_le_bytes());
            Ok(())
        }
        (_, other) => {
            let text = other.to_string();
            put_text(out, &text)
        }
    }
}

/// What a decoder read.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A chunk of rows, in order.
    Rows(Vec<Item>),
    /// The end, with the number of rows the server sent.
    End(u64),
    /// The server failed part-way, with its message.
    Error(String),
}

/// Decodes a body as it arrives: [`push`](Self::push) bytes, then take whole frames with
/// [`next_frame`](Self::next_frame).
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
    /// Bytes of `buffer` already decoded.
    read: usize,
}

impl Decoder {
    /// A decoder at the start of a body.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Adds bytes of the body.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.read > 0 && self.read == self.buffer.len() {
            self.buffer.clear();
            self.read = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes received but not yet decoded (a part of a frame).
    pub fn pending(&self) -> usize {
        self.buffer.len() - self.read
    }

    /// The next whole frame, `None` while its bytes have not all arrived.
    ///
    /// # Errors
    /// A frame that breaks the framing (unknown tag, over [`MAX_FRAME`], counts that do not
    /// fit its length, text that is not UTF-8).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ColumnsError> {
        let rest = &self.buffer[self.read..];
        if rest.len() < 5 {
            return Ok(None);
        }
        let tag = rest[0];
        let len = u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if len > MAX_FRAME {
            return Err(bad(format!("a frame of {len} bytes (at most {MAX_FRAME})")));
        }
        if !matches!(tag, CHUNK | END | ERROR) {
            return Err(bad(format!("unknown frame tag {tag:#04x}")));
        }
        if rest.len() < 5 + len {
            return Ok(None);
        }
        let payload = &rest[5..5 + len];
        let frame = match tag {
            CHUNK => Frame::Rows(decode_chunk(payload)?),
            END => {
                let bytes: [u8; 8] = payload
                    .try_into()
                    .map_err(|_| bad("an end frame of the wrong size"))?;
                Frame::End(u64::from_le_bytes(bytes))
            }
            _ => Frame::Error(String::from_utf8_lossy(payload).into_owned()),
        };
        self.read += 5 + len;
        if self.read == self.buffer.len() {
            self.buffer.clear();
            self.read = 0;
        }
        Ok(Some(frame))
    }
}

/// A cursor over a payload.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ColumnsError> {
        if self.bytes.len() < n {
            return Err(bad("a chunk ends early"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ColumnsError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, ColumnsError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize, ColumnsError> {
        Ok(usize::from(u16::from_le_bytes(self.array()?)))
    }

    fn u32(&mut self) -> Result<usize, ColumnsError> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }

    fn text(&mut self, len: usize) -> Result<&'a str, ColumnsError> {
        std::str::from_utf8(self.take(len)?).map_err(|_| bad("text that is not UTF-8"))
    }
}

fn decode_chunk(payload: &[u8]) -> Result<Vec<Item>, ColumnsError> {
    let mut reader = Reader { bytes: payload };
    let rows = reader.u32()?;
    let columns = reader.u16()?;
    // Every column holds a state byte per row: a row count the payload cannot hold is refused
    // before anything is allocated for it.
    if columns == 0 || rows > payload.len() / columns {
        if rows == 0 {
            return Ok(Vec::new());
        }
        return Err(bad(format!(
            "{rows} rows of {columns} columns do not fit the chunk"
        )));
    }
    let mut items: Vec<Item> = (0..rows).map(|_| Item::new()).collect();
    for _ in 0..columns {
        let len = reader.u16()?;
        let name = reader.text(len)?.to_owned();
        let ty = reader.u8()?;
        let states = reader.take(rows)?;
        for (item, state) in items.iter_mut().zip(states) {
            let value = match *state {
                ABSENT => continue,
                NULL => Value::Null,
                PRESENT => read_value(&mut reader, ty)?,
                other => return Err(bad(format!("unknown value state {other}"))),
            };
            item.insert(name.clone(), value);
        }
    }
    if !reader.bytes.is_empty() {
        return Err(bad("bytes after a chunk's last column"));
    }
    Ok(items)
}

fn read_value(reader: &mut Reader<'_>, ty: u8) -> Result<Value, ColumnsError> {
    Ok(match ty {
        TEXT => {
            let len = reader.u32()?;
            Value::String(reader.text(len)?.to_owned())
        }
        INTEGER => Value::from(i64::from_le_bytes(reader.array()?)),
        REAL => {
            let x = f64::from_le_bytes(reader.array()?);
            Value::Number(Number::from_f64(x).ok_or_else(|| bad("a real that is not finite"))?)
        }
        BOOL => match reader.u8()? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            other => return Err(bad(format!("a boolean byte {other}"))),
        },
        TIMESTAMP => {
            let ms = i64::from_le_bytes(reader.array()?);
            let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .map_err(|_| bad(format!("timestamp {ms} ms is out of range")))?;
            Value::String(format_timestamp(at))
        }
        COUNTER => Value::String(encode_version(u64::from_le_bytes(reader.array()?))),
        JSON => {
            let len = reader.u32()?;
            serde_json::from_slice(reader.take(len)?)
                .map_err(|e| bad(format!("a JSON value that does not parse: {e}")))?
        }
        other => return Err(bad(format!("unknown column type {other}"))),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    fn item(value: Value) -> Item {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn as_json(row: &RowRef<'_>) -> Item {
        let mut out = row.values.clone();
        out.insert(ID.into(), json!(row.id));
        let at = |ms: i64| {
            format_timestamp(
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap(),
            )
        };
        out.insert(CREATED_AT.into(), json!(at(row.created_at_ms)));
        out.insert(UPDATED_AT.into(), json!(at(row.updated_at_ms)));
        out.insert(VERSION.into(), json!(encode_version(row.version)));
        if let Some(d) = row.deleted {
            out.insert(DELETED.into(), json!(d));
        }
        out
    }

    #[test]
    fn rows_decode_to_the_json_a_page_carries() {
        let values = [
            item(
                json!({"text": "a", "n": 1, "x": 1.5, "done": true, "due": "2026-01-01T00:00:00.000Z", "tags": [1, "b"], "gone": null}),
            ),
            item(
                json!({"text": "é", "n": -7, "x": 2.0, "done": false, "due": null, "tags": {"k": 1}}),
            ),
            item(json!({"text": null, "n": 1e300, "x": 3, "extra": u64::MAX})),
        ];
        let rows: Vec<RowRef<'_>> = values
            .iter()
            .enumerate()
            .map(|(i, values)| RowRef {
                id: ["a1", "a2", "a3"][i],
                created_at_ms: 1_700_000_000_000 + i as i64,
                updated_at_ms: 1_700_000_000_500,
                version: 40 + i as u64,
                deleted: Some(i == 1),
                values,
            })
            .collect();
        let mut body = Vec::new();
        encode_chunk(&rows, &mut body).unwrap();
        encode_chunk(&rows[..1], &mut body).unwrap();
        encode_end(4, &mut body);
        let mut decoder = Decoder::new();
        let mut frames = Vec::new();
        // Byte by byte: frames split anywhere still decode.
        for byte in &body {
            decoder.push(std::slice::from_ref(byte));
            while let Some(frame) = decoder.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        let expected: Vec<Item> = rows.iter().map(as_json).collect();
        assert_eq!(frames[0], Frame::Rows(expected.clone()));
        assert_eq!(frames[1], Frame::Rows(expected[..1].to_vec()));
        assert_eq!(frames[2], Frame::End(4));
        assert_eq!(decoder.pending(), 0);
    }

    #[test]
    fn broken_bodies_are_errors_not_panics() {
        let values = item(json!({"text": "a"}));
        let row = RowRef {
            id: "a",
            created_at_ms: 0,
            updated_at_ms: 0,
            version: 1,
            deleted: None,
            values: &values,
        };
        let mut body = Vec::new();
        encode_chunk(&[row], &mut body).unwrap();
        // Every truncation of the payload (with the length fixed up) is refused.
        for cut in 5..body.len() {
            let mut short = body[..cut].to_vec();
            let len = u32::try_from(cut - 5).unwrap();
            short[1..5].copy_from_slice(&len.to_le_bytes());
            let mut decoder = Decoder::new();
            decoder.push(&short);
            assert!(decoder.next_frame().is_err(), "cut at {cut}");
        }
        let mut decoder = Decoder::new();
        decoder.push(b"Z\0\0\0\0");
        assert!(decoder.next_frame().is_err());
        let mut decoder = Decoder::new();
        decoder.push(&[b'C', 0xff, 0xff, 0xff, 0xff]);
        assert!(decoder.next_frame().is_err());
        // A row count the payload cannot hold allocates nothing.
        let mut decoder = Decoder::new();
        decoder.push(&[b'C', 6, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 1, 0]);
        assert!(decoder.next_frame().is_err());
        let mut body = Vec::new();
        encode_error("disk full", &mut body);
        let mut decoder = Decoder::new();
        decoder.push(&body);
        assert_eq!(
            decoder.next_frame().unwrap(),
            Some(Frame::Error("disk full".into()))
        );
    }
}
