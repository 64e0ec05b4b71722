//! The canonical form of a user value in each column type: what a store holds and answers.
//!
//! A write is answered with the row as stored, so the write path puts every value into this
//! form before the store sees it ([`canonical`]), and both stores read values back into it
//! ([`number_from_f64`], [`number_from_text`], [`datetime_text`]): the answer to a write
//! equals a later read of the same version, value for value.
//!
//! - **integer**: a JSON integer in the signed 64-bit range (a whole number written as a
//!   float, `5.0`, is that integer); stored as a 64-bit integer.
//! - **number**: a JSON integer in the signed 64-bit range stays that integer, exactly; any
//!   other number (a fraction, or beyond the 64-bit range) is the nearest double, and a double
//!   that is a whole number in the 64-bit range is that integer (`5.0` is `5`, `-0.0` is `0`).
//!   Stored with SQLite's NUMERIC affinity (integers as integers, the rest as doubles) and as
//!   PostgreSQL `numeric` (written and read as the number's text).
//! - **datetime**: an ISO-8601 / RFC 3339 date-time, stored as milliseconds since the epoch
//!   (an instant: offsets are applied, digits beyond the millisecond dropped) and answered in
//!   the form of `updatedAt`: UTC with three fractional digits (`2024-01-01T00:00:00.000Z`).
//! - **string** and **bool**: as sent.

use serde_json::{Number, Value};
use tidesync_protocol::{format_timestamp, parse_timestamp};

use super::{ColumnType, ms_to_time, time_to_ms};

/// Why a value does not fit a column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfit {
    /// The JSON type is wrong for the column.
    Type,
    /// An integer column was sent a fraction or a number beyond 64 bits.
    NotAnInteger,
    /// A datetime column was sent a string that is not a date-time.
    NotADateTime,
}

/// `value` in the canonical form of a column of type `ty`; null stays null.
///
/// # Errors
///
/// [`Misfit`] when the value cannot be one of `ty`.
pub fn canonical(ty: ColumnType, value: Value) -> Result<Value, Misfit> {
    match (ty, value) {
        (_, Value::Null) => Ok(Value::Null),
        (ColumnType::String, value @ Value::String(_))
        | (ColumnType::Boolean, value @ Value::Bool(_))
        | (ColumnType::Json, value @ (Value::Array(_) | Value::Object(_))) => Ok(value),
        (ColumnType::Number, Value::Number(number)) => Ok(canonical_number(&number)),
        (ColumnType::Integer, Value::Number(number)) => match canonical_number(&number) {
            integer @ Value::Number(_) if integer.is_i64() => Ok(integer),
            _ => Err(Misfit::NotAnInteger),
        },
        (ColumnType::DateTime, Value::String(text)) => datetime_ms(&text)
            .map(|ms| Value::String(datetime_text(ms)))
            .ok_or(Misfit::NotADateTime),
        _ => Err(Misfit::Type),
    }
}

/// A JSON number in the `number` column form.
pub fn canonical_number(number: &Number) -> Value {
    match number.as_i64() {
        Some(integer) => Value::from(integer),
        None => number_from_f64(number.as_f64().unwrap_or(f64::NAN)),
    }
}

/// A double as a `number` column holds it: a whole number in the 64-bit range is that
/// integer, anything else the double (a non-finite one, which JSON cannot carry, is null).
pub fn number_from_f64(number: f64) -> Value {
    // 2^63 is exactly representable; whole doubles in [-2^63, 2^63) convert exactly.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if number.fract() == 0.0 && (-TWO_63..TWO_63).contains(&number) {
        #[allow(clippy::cast_possible_truncation)]
        let integer = number as i64;
        Value::from(integer)
    } else {
        Number::from_f64(number).map_or(Value::Null, Value::Number)
    }
}

/// A `number` column's value read as text (PostgreSQL `numeric::text`).
pub fn number_from_text(text: &str) -> Option<Value> {
    match text.parse::<i64>() {
        Ok(integer) => Some(Value::from(integer)),
        Err(_) => text.parse::<f64>().ok().map(number_from_f64),
    }
}

/// The instant of a date-time text, in milliseconds since the epoch.
pub fn datetime_ms(text: &str) -> Option<i64> {
    parse_timestamp(text).ok().map(time_to_ms)
}

/// Milliseconds since the epoch in the canonical date-time form.
pub fn datetime_text(ms: i64) -> String {
    format_timestamp(ms_to_time(ms))
}

/// The column type a dynamic table learns from a value: booleans, numbers (the `number`
/// type: it holds integers exactly and fractions too), date-times (a string of the form
/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` that names a real instant: the form the official
/// clients send and the official server recognises), other strings (a string that is not
/// such a date-time stays a string), and objects and arrays (which the write path refuses).
/// `None` for null.
pub fn learned_type(value: &Value) -> Option<ColumnType> {
    match value {
        Value::Null => None,
        Value::Bool(_) => Some(ColumnType::Boolean),
        Value::Number(_) => Some(ColumnType::Number),
        Value::String(text) if looks_like_datetime(text) => Some(ColumnType::DateTime),
        Value::String(_) => Some(ColumnType::String),
        Value::Array(_) | Value::Object(_) => Some(ColumnType::Json),
    }
}

/// `YYYY-MM-DDTHH:MM:SS`, an optional `.` and 1–9 digits, then `Z`, naming a real instant.
fn looks_like_datetime(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    let shape = bytes.len() >= 20
        && digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && digits(11..13)
        && digits(14..16)
        && digits(17..19)
        && separators
            .iter()
            .all(|(at, byte)| bytes.get(*at) == Some(byte))
        && bytes.last() == Some(&b'Z');
    if !shape {
        return false;
    }
    let fraction = bytes.get(19..bytes.len() - 1).unwrap_or_default();
    let fraction_ok = fraction.is_empty()
        || (fraction.len() >= 2
            && fraction.len() <= 10
            && fraction.first() == Some(&b'.')
            && fraction.iter().skip(1).all(u8::is_ascii_digit));
    fraction_ok && datetime_ms(text).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_keep_integers_exact_and_fold_whole_doubles() {
        let cases = [
            (json!(5), json!(5)),
            (json!(5.0), json!(5)),
            (json!(-0.0), json!(0)),
            (json!(i64::MAX), json!(i64::MAX)),
            (json!(i64::MIN), json!(i64::MIN)),
            (
                json!(9_007_199_254_740_993_i64),
                json!(9_007_199_254_740_993_i64),
            ),
            (json!(1.5), json!(1.5)),
            (json!(1e300), json!(1e300)),
            (json!(u64::MAX), json!(18_446_744_073_709_551_615.0_f64)),
        ];
        for (sent, stored) in cases {
            assert_eq!(
                canonical(ColumnType::Number, sent.clone()),
                Ok(stored),
                "{sent}"
            );
        }
        assert_eq!(
            canonical(ColumnType::Integer, json!(1.5)),
            Err(Misfit::NotAnInteger)
        );
        assert_eq!(
            canonical(ColumnType::Integer, json!(u64::MAX)),
            Err(Misfit::NotAnInteger)
        );
        assert_eq!(canonical(ColumnType::Integer, json!(7.0)), Ok(json!(7)));
    }

    #[test]
    fn number_text_reads_back_as_written() {
        for value in [
            json!(0),
            json!(-12),
            json!(1.5),
            json!(1e300),
            json!(5e-324),
        ] {
            let stored = canonical_number(value.as_number().unwrap());
            let text = stored.to_string();
            assert_eq!(number_from_text(&text), Some(stored.clone()), "{text}");
        }
        // PostgreSQL prints numeric in plain notation.
        assert_eq!(
            number_from_text(&format!("1{}", "0".repeat(300))),
            Some(json!(1e300))
        );
        assert_eq!(number_from_text("0.0000001"), Some(json!(1e-7)));
    }

    #[test]
    fn datetimes_are_instants_in_one_form() {
        let value = canonical(
            ColumnType::DateTime,
            json!("2024-01-01T01:30:00.1234+01:00"),
        );
        assert_eq!(value, Ok(json!("2024-01-01T00:30:00.123Z")));
        assert_eq!(
            canonical(ColumnType::DateTime, json!("soon")),
            Err(Misfit::NotADateTime)
        );
    }

    #[test]
    fn only_the_official_clients_date_form_is_learned_as_a_date() {
        for text in [
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:00.000Z",
            "1994-10-14T23:59:59.1234567Z",
        ] {
            assert_eq!(
                learned_type(&json!(text)),
                Some(ColumnType::DateTime),
                "{text}"
            );
        }
        for text in [
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00+01:00",
            "2024-02-30T00:00:00Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00.1234567890Z",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00Zx",
            "hello",
            "",
        ] {
            assert_eq!(
                learned_type(&json!(text)),
                Some(ColumnType::String),
                "{text}"
            );
        }
    }
}
