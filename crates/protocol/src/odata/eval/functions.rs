//! The filter functions: string functions by character, date parts, rounding.

use std::borrow::Cow;

use time::OffsetDateTime;

use super::value::V;
use super::{EvalError, type_error};
use crate::odata::ast::Function;
use crate::time_fmt::parse_timestamp;

/// Applies `func` to already evaluated arguments. Null arguments give null.
pub(super) fn call(func: Function, args: Vec<V<'_>>) -> Result<V<'_>, EvalError> {
    let name = func.name();
    let (min, max) = func.arity();
    if args.len() < min || args.len() > max {
        return Err(EvalError::Type {
            message: format!("{name} takes {min} to {max} arguments, not {}", args.len()),
        });
    }
    let n_args = args.len();
    let mut args = args.into_iter();
    let mut next = || args.next().unwrap_or(V::Null);
    match func {
        Function::SubstringOf => {
            let (needle, haystack) = (next(), next());
            two_strings(name, &haystack, &needle, |h, n| V::Bool(h.contains(n)))
        }
        Function::Contains => two_strings(name, &next(), &next(), |h, n| V::Bool(h.contains(n))),
        Function::StartsWith => {
            two_strings(name, &next(), &next(), |s, p| V::Bool(s.starts_with(p)))
        }
        Function::EndsWith => two_strings(name, &next(), &next(), |s, p| V::Bool(s.ends_with(p))),
        Function::IndexOf => two_strings(name, &next(), &next(), |s, find| {
            V::Int(match s.find(find) {
                Some(at) => count_chars(s.get(..at).unwrap_or("")),
                None => -1,
            })
        }),
        Function::Concat => two_strings(name, &next(), &next(), |a, b| {
            V::Str(Cow::Owned(format!("{a}{b}")))
        }),
        Function::ToLower => one_string(name, &next(), |s| owned(s.to_lowercase())),
        Function::ToUpper => one_string(name, &next(), |s| owned(s.to_uppercase())),
        Function::Trim => one_string(name, &next(), |s| owned(s.trim().to_owned())),
        Function::Length => one_string(name, &next(), |s| V::Int(count_chars(s))),
        Function::Substring => {
            let (s, start) = (next(), next());
            let len = (n_args == 3).then(&mut next);
            substring(&s, &start, len)
        }
        Function::Replace => {
            let (s, find, with) = (next(), next(), next());
            match (
                string(name, &s)?,
                string(name, &find)?,
                string(name, &with)?,
            ) {
                (Some(s), Some(""), Some(_)) => Ok(owned(s.to_owned())),
                (Some(s), Some(find), Some(with)) => Ok(owned(s.replace(find, with))),
                _ => Ok(V::Null),
            }
        }
        Function::Year => date_part(name, &next(), |t| i64::from(t.year())),
        Function::Month => date_part(name, &next(), |t| i64::from(u8::from(t.month()))),
        Function::Day => date_part(name, &next(), |t| i64::from(t.day())),
        Function::Hour => date_part(name, &next(), |t| i64::from(t.hour())),
        Function::Minute => date_part(name, &next(), |t| i64::from(t.minute())),
        Function::Second => date_part(name, &next(), |t| i64::from(t.second())),
        Function::Round => rounding(name, next(), f64::round),
        Function::Floor => rounding(name, next(), f64::floor),
        Function::Ceiling => rounding(name, next(), f64::ceil),
    }
}

fn owned<'a>(s: String) -> V<'a> {
    V::Str(Cow::Owned(s))
}

fn count_chars(s: &str) -> i64 {
    i64::try_from(s.chars().count()).unwrap_or(i64::MAX)
}

/// The string inside `v`, `None` for null, an error for anything else.
fn string<'v>(name: &str, v: &'v V<'_>) -> Result<Option<&'v str>, EvalError> {
    match v {
        V::Null => Ok(None),
        V::Str(s) => Ok(Some(s)),
        other => Err(type_error(name, "strings", other)),
    }
}

fn one_string<'a>(
    name: &str,
    a: &V<'_>,
    f: impl FnOnce(&str) -> V<'a>,
) -> Result<V<'a>, EvalError> {
    Ok(string(name, a)?.map_or(V::Null, f))
}

fn two_strings<'a>(
    name: &str,
    a: &V<'_>,
    b: &V<'_>,
    f: impl FnOnce(&str, &str) -> V<'a>,
) -> Result<V<'a>, EvalError> {
    match (string(name, a)?, string(name, b)?) {
        (Some(a), Some(b)) => Ok(f(a, b)),
        _ => Ok(V::Null),
    }
}

/// `substring(s, start[, len])` by characters; a negative start counts as 0, a negative
/// length as 0, and positions past the end give the empty string.
fn substring<'a>(s: &V<'_>, start: &V<'_>, len: Option<V<'_>>) -> Result<V<'a>, EvalError> {
    let name = "substring";
    let int = |v: &V<'_>| match v {
        V::Null => Ok(None),
        V::Int(i) => Ok(Some(*i)),
        other => Err(type_error(name, "an integer position", other)),
    };
    let (Some(s), Some(start)) = (string(name, s)?, int(start)?) else {
        return Ok(V::Null);
    };
    let len = match &len {
        Some(v) => match int(v)? {
            Some(n) => Some(n),
            None => return Ok(V::Null),
        },
        None => None,
    };
    let to_usize = |n: i64| usize::try_from(n.max(0)).unwrap_or(usize::MAX);
    let chars = s.chars().skip(to_usize(start));
    let text: String = match len {
        Some(n) => chars.take(to_usize(n)).collect(),
        None => chars.collect(),
    };
    Ok(owned(text))
}

/// A part of a date-time argument, read in UTC: a date-time value, or a string parsed as one
/// (null when it does not parse).
fn date_part<'a>(
    name: &str,
    v: &V<'_>,
    part: impl FnOnce(OffsetDateTime) -> i64,
) -> Result<V<'a>, EvalError> {
    let t = match v {
        V::Null => return Ok(V::Null),
        V::DateTime(t) => *t,
        V::Str(s) => match parse_timestamp(s) {
            Ok(t) => t,
            Err(_) => return Ok(V::Null),
        },
        other => return Err(type_error(name, "a date-time", other)),
    };
    let utc = t.checked_to_offset(time::UtcOffset::UTC).unwrap_or(t);
    Ok(V::Int(part(utc)))
}

fn rounding<'a>(name: &str, v: V<'a>, f: fn(f64) -> f64) -> Result<V<'a>, EvalError> {
    match v {
        V::Null | V::Int(_) => Ok(v),
        V::Float(x) => Ok(V::Float(f(x))),
        other => Err(type_error(name, "a number", &other)),
    }
}
