//! Timestamps on the wire: the server writes UTC with exactly three fractional digits and a
//! `Z`; readers accept any RFC 3339 form, with any fraction length and an optional offset.

use std::fmt::Write as _;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Why a timestamp could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimestampError {
    /// The text is not an RFC 3339 / ISO-8601 date-time.
    #[error("invalid timestamp '{text}': {reason}")]
    Invalid {
        /// The text that was given.
        text: String,
        /// What was wrong with it.
        reason: &'static str,
    },
}

/// Formats `t` the way the servers emit `createdAt` / `updatedAt`: converted to UTC, exactly
/// three fractional digits, `Z` suffix (`2026-11-27T08:29:29.167Z`).
///
/// A value that cannot be expressed in UTC (only possible at the very ends of the supported
/// range) keeps its own offset.
pub fn format_timestamp(t: OffsetDateTime) -> String {
    format_with(t, Fraction::Millis)
}

/// The first millisecond of the year 10000, as milliseconds after the Unix epoch: where
/// [`push_timestamp_millis`] stops.
pub const YEAR_10000_MS: i64 = 253_402_300_800_000;

/// Appends what [`format_timestamp`] writes for the instant `ms` milliseconds after the
/// Unix epoch, digit by digit with no `OffsetDateTime` built, when the instant falls in the
/// years 1970 to 9999 (a store that keeps times as such numbers writes two or three per
/// row of a page); returns false, with nothing appended, for any other instant.
pub fn push_timestamp_millis(out: &mut Vec<u8>, ms: i64) -> bool {
    if !(0..YEAR_10000_MS).contains(&ms) {
        return false;
    }
    // Days since the epoch to a civil date (H. Hinnant's `civil_from_days`), every
    // quantity non-negative here.
    let days = ms / 86_400_000;
    let of_day = ms % 86_400_000;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut text = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut n: i64| {
        for place in (at..at + width).rev() {
            // A digit is below 10: the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let digit = (n % 10) as u8;
            text[place] = b'0' + digit;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, of_day / 3_600_000);
    put(14, 2, of_day / 60_000 % 60);
    put(17, 2, of_day / 1_000 % 60);
    put(20, 3, of_day % 1_000);
    out.extend_from_slice(&text);
    true
}

/// Formats `t` in UTC with as many fractional digits as needed (none, up to nine).
pub(crate) fn format_timestamp_exact(t: OffsetDateTime) -> String {
    format_with(t, Fraction::Minimal)
}

/// Parses an RFC 3339 / ISO-8601 date-time: `YYYY-MM-DD[(T|t| )hh:mm[:ss[.fraction]][Z|±hh[:]mm]]`.
///
/// The fraction may have any number of digits (beyond nanoseconds they are dropped), a missing
/// offset means UTC and a date alone means midnight UTC. The result is normalised to UTC.
///
/// # Errors
///
/// [`TimestampError::Invalid`] when the text does not have that shape or names a date or time
/// that does not exist (`2026-02-30`, `25:00`).
pub fn parse_timestamp(text: &str) -> Result<OffsetDateTime, TimestampError> {
    parse_parts(text.as_bytes()).map_err(|reason| TimestampError::Invalid {
        text: text.to_owned(),
        reason,
    })
}

/// True when `text` is exactly what [`format_timestamp`] writes for some instant
/// (`YYYY-MM-DDThh:mm:ss.mmmZ`, a date and time that exist): then it is its own normal form,
/// and [`parse_timestamp`] reads it. Cheaper than parsing, for checking values in bulk.
pub fn is_canonical_timestamp(text: &str) -> bool {
    const HIGH: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    const THREES: u64 = 0x3030_3030_3030_3030;
    const SIXES: u64 = 0x0606_0606_0606_0606;
    let Ok(b) = <&[u8; 24]>::try_from(text.as_bytes()) else {
        return false;
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[23] != b'Z'
    {
        return false;
    }
    // Every other byte a digit: with the separators set to `0`, each 8-byte word has a high
    // nibble of 3 in every byte and a low nibble that stays below 10 when 6 is added.
    let mut digits = *b;
    for at in [4, 7, 10, 13, 16, 19, 23] {
        digits[at] = b'0';
    }
    let all_digits = digits.chunks_exact(8).all(|word| {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        let x = u64::from_le_bytes(bytes);
        x & HIGH == THREES && x.wrapping_add(SIXES) & HIGH == THREES
    });
    if !all_digits {
        return false;
    }
    let digit = |at: usize| u32::from(b[at] - b'0');
    let two = |at: usize| digit(at) * 10 + digit(at + 1);
    let year = two(0) * 100 + two(2);
    // The proleptic Gregorian calendar, as `time` has it (year 0 is a leap year).
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match two(5) {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&two(8)) && two(11) < 24 && two(14) < 60 && two(17) < 60
}

#[derive(Clone, Copy)]
enum Fraction {
    Millis,
    Minimal,
}

fn format_with(t: OffsetDateTime, fraction: Fraction) -> String {
    let t = t.checked_to_offset(UtcOffset::UTC).unwrap_or(t);
    match u32::try_from(t.year()) {
        // The common case, digit by digit: `write!` costs several times more, and every
        // row of a snapshot formats two or three timestamps.
        Ok(year) if year <= 9999 && t.offset().is_utc() => format_utc(t, year, fraction),
        _ => format_general(t, fraction),
    }
}

/// [`format_with`] for a UTC instant of a four-digit year.
fn format_utc(t: OffsetDateTime, year: u32, fraction: Fraction) -> String {
    fn push_digits(out: &mut Vec<u8>, n: u32, width: u32) {
        for place in (0..width).rev() {
            // A digit is below 10: the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation)]
            out.push(b'0' + (n / 10u32.pow(place) % 10) as u8);
        }
    }
    let mut out = Vec::with_capacity(30);
    push_digits(&mut out, year, 4);
    out.push(b'-');
    push_digits(&mut out, u32::from(u8::from(t.month())), 2);
    out.push(b'-');
    push_digits(&mut out, u32::from(t.day()), 2);
    out.push(b'T');
    push_digits(&mut out, u32::from(t.hour()), 2);
    out.push(b':');
    push_digits(&mut out, u32::from(t.minute()), 2);
    out.push(b':');
    push_digits(&mut out, u32::from(t.second()), 2);
    let nanos = t.nanosecond();
    match fraction {
        Fraction::Millis => {
            out.push(b'.');
            push_digits(&mut out, nanos / 1_000_000, 3);
        }
        Fraction::Minimal if nanos != 0 => {
            out.push(b'.');
            push_digits(&mut out, nanos, 9);
            while out.last() == Some(&b'0') {
                out.pop();
            }
        }
        Fraction::Minimal => {}
    }
    out.push(b'Z');
    // Only ASCII digits and punctuation were pushed.
    String::from_utf8(out).unwrap_or_default()
}

/// [`format_with`] for any instant (years beyond four digits, offsets kept).
fn format_general(t: OffsetDateTime, fraction: Fraction) -> String {
    let mut out = String::with_capacity(30);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    match fraction {
        Fraction::Millis => {
            let _ = write!(out, ".{:03}", nanos / 1_000_000);
        }
        Fraction::Minimal if nanos != 0 => {
            let digits = format!("{nanos:09}");
            out.push('.');
            out.push_str(digits.trim_end_matches('0'));
        }
        Fraction::Minimal => {}
    }
    let offset = t.offset();
    if offset.is_utc() {
        out.push('Z');
    } else {
        let (hours, minutes, _) = offset.as_hms();
        let sign = if offset.is_negative() { '-' } else { '+' };
        let _ = write!(
            out,
            "{sign}{:02}:{:02}",
            hours.unsigned_abs(),
            minutes.unsigned_abs()
        );
    }
    out
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, wanted: u8) -> bool {
        if self.peek() == Some(wanted) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, wanted: u8, reason: &'static str) -> Result<(), &'static str> {
        if self.eat(wanted) {
            Ok(())
        } else {
            Err(reason)
        }
    }

    /// Exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize, reason: &'static str) -> Result<u32, &'static str> {
        let mut value = 0u32;
        for _ in 0..n {
            match self.peek() {
                Some(b @ b'0'..=b'9') => {
                    value = value * 10 + u32::from(b - b'0');
                    self.pos += 1;
                }
                _ => return Err(reason),
            }
        }
        Ok(value)
    }
}

fn parse_parts(bytes: &[u8]) -> Result<OffsetDateTime, &'static str> {
    let mut c = Cursor { bytes, pos: 0 };
    let year = c.digits(4, "expected a four-digit year")?;
    c.expect(b'-', "expected '-' after the year")?;
    let month = c.digits(2, "expected a two-digit month")?;
    c.expect(b'-', "expected '-' after the month")?;
    let day = c.digits(2, "expected a two-digit day")?;
    let month = u8::try_from(month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or("month out of range")?;
    let year = i32::try_from(year).map_err(|_| "year out of range")?;
    let day = u8::try_from(day).map_err(|_| "day out of range")?;
    let date = Date::from_calendar_date(year, month, day).map_err(|_| "no such date")?;
    if c.peek().is_none() {
        return Ok(PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc());
    }
    if !(c.eat(b'T') || c.eat(b't') || c.eat(b' ')) {
        return Err("expected 'T' between date and time");
    }
    let hour = c.digits(2, "expected a two-digit hour")?;
    c.expect(b':', "expected ':' after the hour")?;
    let minute = c.digits(2, "expected two-digit minutes")?;
    let mut second = 0;
    let mut nanos = 0u32;
    if c.eat(b':') {
        second = c.digits(2, "expected two-digit seconds")?;
        if c.eat(b'.') || c.eat(b',') {
            let mut n_digits = 0;
            while let Some(b @ b'0'..=b'9') = c.peek() {
                if n_digits < 9 {
                    nanos = nanos * 10 + u32::from(b - b'0');
                }
                n_digits += 1;
                c.pos += 1;
            }
            if n_digits == 0 {
                return Err("expected digits after the decimal point");
            }
            for _ in n_digits..9 {
                nanos *= 10;
            }
        }
    }
    let offset = match c.peek() {
        None => UtcOffset::UTC,
        Some(b'Z' | b'z') => {
            c.pos += 1;
            UtcOffset::UTC
        }
        Some(sign @ (b'+' | b'-')) => {
            c.pos += 1;
            let hours = c.digits(2, "expected two-digit offset hours")?;
            c.eat(b':');
            let minutes = c.digits(2, "expected two-digit offset minutes")?;
            let (hours, minutes) = (
                i8::try_from(hours).map_err(|_| "offset out of range")?,
                i8::try_from(minutes).map_err(|_| "offset out of range")?,
            );
            let (hours, minutes) = if sign == b'-' {
                (-hours, -minutes)
            } else {
                (hours, minutes)
            };
            UtcOffset::from_hms(hours, minutes, 0).map_err(|_| "offset out of range")?
        }
        Some(_) => return Err("unexpected character after the time"),
    };
    if c.peek().is_some() {
        return Err("unexpected text after the offset");
    }
    let to_u8 = |v: u32| u8::try_from(v).map_err(|_| "time out of range");
    let time = Time::from_hms_nano(to_u8(hour)?, to_u8(minute)?, to_u8(second)?, nanos)
        .map_err(|_| "no such time of day")?;
    let value = PrimitiveDateTime::new(date, time).assume_offset(offset);
    Ok(value.checked_to_offset(UtcOffset::UTC).unwrap_or(value))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use time::Duration;

    use super::*;

    /// The shape check says yes exactly for the texts that parse and print back the same.
    #[test]
    fn canonical_timestamps_are_the_ones_that_print_back_the_same() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |below: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % below
        };
        let reference =
            |text: &str| parse_timestamp(text).is_ok_and(|t| format_timestamp(t) == text);
        let mut accepted = 0;
        for _ in 0..50_000 {
            // Fields mostly in range, sometimes just past it (day 29-31, hour 24, second 60).
            let text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                next(10_000),
                next(14),
                next(33),
                next(26),
                next(61),
                next(62),
                next(1000)
            );
            assert_eq!(is_canonical_timestamp(&text), reference(&text), "{text}");
            accepted += u32::from(reference(&text));
        }
        assert!(accepted > 1000, "the cases should mostly be valid");
        for text in [
            "2026-11-27T08:29:29.167Z",
            "2026-11-27T08:29:29.167+00:00",
            "2026-11-27T08:29:29Z",
            "2026-11-27 08:29:29.167Z",
            "2024-02-29T00:00:00.000Z",
            "2025-02-29T00:00:00.000Z",
            "1900-02-29T00:00:00.000Z",
            "2000-02-29T00:00:00.000Z",
            "0000-02-29T00:00:00.000Z",
            "2100-02-29T00:00:00.000Z",
            "2026-04-31T00:00:00.000Z",
            "2026-00-10T00:00:00.000Z",
            "2026-01-00T00:00:00.000Z",
            "2026-1/-10T00:00:00.000Z",
            "2026-11-27T08:29:29.167z",
            "2026-11-27T08:29:29.1670Z",
            "",
        ] {
            assert_eq!(is_canonical_timestamp(text), reference(text), "{text}");
        }
        // Any byte in any place of a valid text.
        let valid = "2024-02-29T23:59:59.999Z";
        for at in 0..valid.len() {
            for byte in [
                b'/',
                b':',
                b'0',
                b'9',
                b'a',
                b'Z',
                b' ',
                0x3a,
                0x2f,
                0x40,
                0xb0,
                0x39 + 6,
            ] {
                let mut bytes = valid.as_bytes().to_vec();
                bytes[at] = byte;
                if let Ok(text) = String::from_utf8(bytes) {
                    assert_eq!(is_canonical_timestamp(&text), reference(&text), "{text}");
                }
            }
        }
    }

    /// The digit-by-digit formatter writes what the general one writes, for both
    /// fraction styles, across the four-digit years and at their edges.
    #[test]
    fn the_fast_formatter_agrees_with_the_general_one() {
        let first = Date::from_calendar_date(0, Month::January, 1)
            .unwrap()
            .midnight()
            .assume_utc();
        let last = Date::from_calendar_date(9999, Month::December, 31)
            .unwrap()
            .with_hms_nano(23, 59, 59, 999_999_999)
            .unwrap()
            .assume_utc();
        let mut instants = vec![first, last, OffsetDateTime::UNIX_EPOCH];
        // A cheap pseudo-random walk over the range, with every kind of fraction.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let span = (last - first).whole_seconds();
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let secs = i64::try_from(state >> 20).unwrap() % span;
            let nanos = i64::try_from(state % 4).unwrap();
            let nanos = match nanos {
                0 => 0,
                1 => i64::try_from(state % 1000).unwrap() * 1_000_000,
                2 => i64::try_from(state % 1_000_000_000).unwrap(),
                _ => i64::try_from(state % 10).unwrap() * 100_000_000,
            };
            instants.push(first + Duration::seconds(secs) + Duration::nanoseconds(nanos));
        }
        for t in instants {
            for fraction in [Fraction::Millis, Fraction::Minimal] {
                let year = u32::try_from(t.year()).unwrap();
                assert_eq!(
                    format_utc(t, year, fraction),
                    format_general(t, fraction),
                    "{t}"
                );
            }
            // The writer from milliseconds, from 1970 on (for a stored time the whole
            // milliseconds are the instant).
            let ms = i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap();
            let mut out = Vec::new();
            if push_timestamp_millis(&mut out, ms) {
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    format_general(t, Fraction::Millis),
                    "{t}"
                );
            } else {
                assert!(!(0..YEAR_10000_MS).contains(&ms), "{t}");
            }
        }
    }
}
