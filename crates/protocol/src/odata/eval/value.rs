//! The evaluator's runtime values, equality, ordering and arithmetic.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Number, Value};
use time::OffsetDateTime;

use super::{EvalError, type_error};
use crate::odata::ast::{BinaryOp, Literal};
use crate::time_fmt::{format_timestamp_exact, parse_timestamp};

/// A value during evaluation, borrowing from the expression or the item where it can.
#[derive(Debug, Clone)]
pub(crate) enum V<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    DateTime(OffsetDateTime),
    /// Arrays and objects, compared only for equality.
    Json(&'a Value),
}

impl<'a> V<'a> {
    pub(crate) fn from_literal(literal: &'a Literal) -> V<'a> {
        match literal {
            Literal::Null => V::Null,
            Literal::Bool(b) => V::Bool(*b),
            Literal::Int(i) => V::Int(*i),
            Literal::Float(x) => V::Float(*x),
            Literal::String(s) => V::Str(Cow::Borrowed(s)),
            Literal::DateTime(t) => V::DateTime(*t),
        }
    }

    pub(crate) fn from_json(value: &'a Value) -> V<'a> {
        match value {
            Value::Null => V::Null,
            Value::Bool(b) => V::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => V::Int(i),
                None => V::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => V::Str(Cow::Borrowed(s)),
            Value::Array(_) | Value::Object(_) => V::Json(value),
        }
    }

    pub(crate) fn into_json(self) -> Value {
        match self {
            V::Null => Value::Null,
            V::Bool(b) => Value::Bool(b),
            V::Int(i) => Value::from(i),
            V::Float(x) => Number::from_f64(x).map_or(Value::Null, Value::Number),
            V::Str(s) => Value::String(s.into_owned()),
            V::DateTime(t) => Value::String(format_timestamp_exact(t)),
            V::Json(value) => value.clone(),
        }
    }

    /// The boolean this value stands for in `and`/`or`/`not`; `None` is "unknown".
    pub(crate) fn truth(&self) -> Option<bool> {
        match self {
            V::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            V::Null => "null",
            V::Bool(_) => "a boolean",
            V::Int(_) | V::Float(_) => "a number",
            V::Str(_) => "a string",
            V::DateTime(_) => "a date-time",
            V::Json(Value::Array(_)) => "an array",
            V::Json(_) => "an object",
        }
    }
}

/// `eq` semantics: null equals only null, numbers compare numerically, a date-time equals a
/// string naming the same instant, values of different kinds are unequal.
pub(crate) fn equals(a: &V<'_>, b: &V<'_>) -> bool {
    match (a, b) {
        (V::Null, V::Null) => true,
        (V::Json(x), V::Json(y)) => x == y,
        _ => order(a, b) == Some(Ordering::Equal),
    }
}

/// `gt`/`lt` semantics: `None` when the values are not comparable (null, different kinds, a
/// string that is not a timestamp against a date-time).
pub(crate) fn order(a: &V<'_>, b: &V<'_>) -> Option<Ordering> {
    match (a, b) {
        (V::Bool(x), V::Bool(y)) => Some(x.cmp(y)),
        (V::Int(x), V::Int(y)) => Some(x.cmp(y)),
        (V::Int(x), V::Float(y)) => cmp_int_float(i128::from(*x), *y),
        (V::Float(x), V::Int(y)) => cmp_int_float(i128::from(*y), *x).map(Ordering::reverse),
        (V::Float(x), V::Float(y)) => x.partial_cmp(y),
        (V::Str(x), V::Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (V::DateTime(x), V::DateTime(y)) => Some(x.cmp(y)),
        (V::DateTime(x), V::Str(y)) => parse_timestamp(y).ok().map(|y| x.cmp(&y)),
        (V::Str(x), V::DateTime(y)) => parse_timestamp(x).ok().map(|x| x.cmp(y)),
        _ => None,
    }
}

/// Exact comparison of an integer with a real (no rounding of large integers).
fn cmp_int_float(i: i128, x: f64) -> Option<Ordering> {
    if x.is_nan() {
        return None;
    }
    let limit = 2f64.powi(100);
    if x >= limit {
        return Some(Ordering::Less);
    }
    if x <= -limit {
        return Some(Ordering::Greater);
    }
    let whole = x.trunc();
    // In range, so the conversion is exact.
    let whole_int = whole as i128;
    let fraction = if x > whole {
        Ordering::Less
    } else if x < whole {
        Ordering::Greater
    } else {
        Ordering::Equal
    };
    Some(i.cmp(&whole_int).then(fraction))
}

/// `add sub mul div mod`: null in, null out; integers checked; reals when either side is.
pub(crate) fn arithmetic<'a>(op: BinaryOp, l: V<'a>, r: V<'a>) -> Result<V<'a>, EvalError> {
    let name = op.keyword();
    let overflow = EvalError::Overflow { op: name };
    match (&l, &r) {
        (V::Null, _) | (_, V::Null) => Ok(V::Null),
        (V::Int(x), V::Int(y)) => {
            let (x, y) = (*x, *y);
            if matches!(op, BinaryOp::Div | BinaryOp::Mod) && y == 0 {
                return Err(EvalError::DivisionByZero);
            }
            let result = match op {
                BinaryOp::Add => x.checked_add(y),
                BinaryOp::Sub => x.checked_sub(y),
                BinaryOp::Mul => x.checked_mul(y),
                BinaryOp::Div => x.checked_div(y),
                _ => x.checked_rem(y),
            };
            result.map(V::Int).ok_or(overflow)
        }
        (V::Int(_) | V::Float(_), V::Int(_) | V::Float(_)) => {
            let (x, y) = (as_float(&l), as_float(&r));
            if matches!(op, BinaryOp::Div | BinaryOp::Mod) && y == 0.0 {
                return Err(EvalError::DivisionByZero);
            }
            let result = match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div => x / y,
                _ => x % y,
            };
            if result.is_finite() {
                Ok(V::Float(result))
            } else {
                Err(overflow)
            }
        }
        (V::Int(_) | V::Float(_), other) | (other, _) => Err(type_error(name, "numbers", other)),
    }
}

#[allow(clippy::cast_precision_loss)]
fn as_float(v: &V<'_>) -> f64 {
    match v {
        V::Int(i) => *i as f64,
        V::Float(x) => *x,
        _ => f64::NAN,
    }
}

/// A total order on JSON values for `$orderby`: null < booleans < numbers < strings < arrays
/// and objects. Numbers compare numerically (exactly, across integers and reals), strings by
/// bytes (ordinal), arrays and objects by their JSON text.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) | Value::Object(_) => 4,
        }
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(_) | Value::Object(_), Value::Array(_) | Value::Object(_)) => {
            a.to_string().cmp(&b.to_string())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

fn compare_numbers(x: &Number, y: &Number) -> Ordering {
    let int = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (int(x), int(y)) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(a), None) => cmp_int_float(a, y.as_f64().unwrap_or(0.0)).unwrap_or(Ordering::Equal),
        (None, Some(b)) => cmp_int_float(b, x.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal)
            .reverse(),
        (None, None) => {
            let (a, b) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            a.partial_cmp(&b).unwrap_or(Ordering::Equal)
        }
    }
}
