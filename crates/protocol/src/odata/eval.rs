//! Evaluates filters and whole queries against JSON items, for the in-memory and redb stores
//! and the mock server.
//!
//! The semantics are exact and total: no input panics. In short:
//! * a missing property reads as null; `x eq null` is true when `x` is missing or null, and
//!   `eq`/`ne` are two-valued (`null eq 5` is false, `null ne 5` true);
//! * `gt ge lt le` with a null, or between values of different kinds, are false;
//! * `and`/`or`/`not` use three-valued logic with null (and any non-boolean) as unknown; a
//!   filter that ends up unknown does not match;
//! * a date-time literal compared with a string parses the string as RFC 3339 (an unparseable
//!   string is simply not equal); `year(x)` etc. parse strings too (null when they fail) and
//!   read the parts in UTC;
//! * string functions count characters (Unicode scalar values), `indexof` is 0-based and -1
//!   when absent, `substring` clamps out-of-range positions, `round` is half away from zero;
//! * integer arithmetic is checked, mixing integers and reals gives a real, and `div`/`mod` by
//!   zero, overflow and operands of the wrong type (`'a' add 1`) are an [`EvalError`].

mod functions;
mod value;

use std::cmp::Ordering;

use serde_json::Value;

use super::ast::{BinaryOp, Expr, Literal, Query};
use crate::Item;
use value::V;

pub use value::compare_values;

/// Deepest expression the evaluator walks before giving up with [`EvalError::TooDeep`].
const MAX_EVAL_DEPTH: usize = 512;

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// An operator or function got a value of the wrong kind, e.g. `'a' add 1`.
    #[error("type mismatch: {message}")]
    Type {
        /// What was expected and what was found.
        message: String,
    },
    /// Integer arithmetic overflowed, or real arithmetic left the finite range.
    #[error("arithmetic overflow in '{op}'")]
    Overflow {
        /// The operator.
        op: &'static str,
    },
    /// `div` or `mod` by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// The expression is nested deeper than the evaluator walks.
    #[error("expression nested too deeply")]
    TooDeep,
}

/// What [`run_query`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutput {
    /// The page: filtered, ordered, skipped, limited and projected.
    pub items: Vec<Item>,
    /// The number of items that passed the filter, before `$skip`/`$top`, when the query
    /// asked for a count.
    pub count: Option<u64>,
}

/// True when `expr` evaluates to `true` for `item`. Null and non-boolean results are false.
///
/// # Errors
///
/// An [`EvalError`] for type errors, overflow and division by zero.
pub fn matches(expr: &Expr, item: &Item) -> Result<bool, EvalError> {
    Ok(matches!(eval(expr, item, 0)?, V::Bool(true)))
}

/// The value of `expr` for `item` as JSON. Date-times come out as RFC 3339 strings.
///
/// # Errors
///
/// An [`EvalError`] for type errors, overflow and division by zero.
pub fn evaluate(expr: &Expr, item: &Item) -> Result<Value, EvalError> {
    Ok(eval(expr, item, 0)?.into_json())
}

/// Runs `query` over `items`: filter, order (by `order_by`, then always by `id`), count,
/// skip, top, then `$select` projection (only the listed properties that exist; `id` only if
/// listed). `top` of zero gives an empty page: page-size defaults are the caller's business.
///
/// The projected items keep the key order of [`Item`], which follows serde_json's `Map`
/// (sorted unless the `preserve_order` feature is on), not the `$select` order.
///
/// # Errors
///
/// The first [`EvalError`] the filter raises on any item.
pub fn run_query(
    items: impl IntoIterator<Item = Item>,
    query: &Query,
) -> Result<QueryOutput, EvalError> {
    let mut kept = Vec::new();
    for item in items {
        let keep = match &query.filter {
            Some(filter) => matches(filter, &item)?,
            None => true,
        };
        if keep {
            kept.push(item);
        }
    }
    kept.sort_by(|a, b| compare_items(a, b, query));
    let count = query
        .count
        .then(|| u64::try_from(kept.len()).unwrap_or(u64::MAX));
    let skip = query
        .skip
        .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let top = query
        .top
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let page = kept.into_iter().skip(skip).take(top);
    let items = match &query.select {
        None => page.collect(),
        Some(names) => page
            .map(|mut item| {
                let mut projected = Item::new();
                for name in names {
                    if let Some(value) = item.remove(name) {
                        projected.insert(name.clone(), value);
                    }
                }
                projected
            })
            .collect(),
    };
    Ok(QueryOutput { items, count })
}

/// The distinct member names `expr` refers to, in order of first appearance.
pub fn members(expr: &Expr) -> Vec<&str> {
    let mut names = Vec::new();
    let mut stack = vec![expr];
    while let Some(expr) = stack.pop() {
        match expr {
            Expr::Literal(_) => {}
            Expr::Member(name) => {
                if !names.contains(&name.as_str()) {
                    names.push(name.as_str());
                }
            }
            Expr::Not(inner) | Expr::Neg(inner) => stack.push(inner),
            Expr::Binary { left, right, .. } => {
                stack.push(right);
                stack.push(left);
            }
            Expr::Call { args, .. } => stack.extend(args.iter().rev()),
            Expr::In { expr, .. } => stack.push(expr),
        }
    }
    names
}

fn compare_items(a: &Item, b: &Item, query: &Query) -> Ordering {
    let field = |item: &Item, name: &str| item.get(name).cloned().unwrap_or(Value::Null);
    for term in &query.order_by {
        let ordering = compare_values(&field(a, &term.member), &field(b, &term.member));
        let ordering = if term.descending {
            ordering.reverse()
        } else {
            ordering
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    compare_values(&field(a, crate::system::ID), &field(b, crate::system::ID))
}

fn eval<'a>(expr: &'a Expr, item: &'a Item, depth: usize) -> Result<V<'a>, EvalError> {
    if depth > MAX_EVAL_DEPTH {
        return Err(EvalError::TooDeep);
    }
    let depth = depth + 1;
    Ok(match expr {
        Expr::Literal(literal) => V::from_literal(literal),
        Expr::Member(name) => item.get(name).map_or(V::Null, V::from_json),
        Expr::Not(inner) => match eval(inner, item, depth)?.truth() {
            Some(b) => V::Bool(!b),
            None => V::Null,
        },
        Expr::Neg(inner) => match eval(inner, item, depth)? {
            V::Null => V::Null,
            V::Int(i) => V::Int(i.checked_neg().ok_or(EvalError::Overflow { op: "-" })?),
            V::Float(x) => V::Float(-x),
            other => return Err(type_error("-", "a number", &other)),
        },
        Expr::Binary { op, left, right } => binary(*op, left, right, item, depth)?,
        Expr::Call { func, args } => {
            let values = args
                .iter()
                .map(|arg| eval(arg, item, depth))
                .collect::<Result<Vec<_>, _>>()?;
            functions::call(*func, values)?
        }
        Expr::In { expr, list } => {
            let value = eval(expr, item, depth)?;
            V::Bool(
                list.iter()
                    .any(|literal| value::equals(&value, &V::from_literal(literal))),
            )
        }
    })
}

fn binary<'a>(
    op: BinaryOp,
    left: &'a Expr,
    right: &'a Expr,
    item: &'a Item,
    depth: usize,
) -> Result<V<'a>, EvalError> {
    let l = eval(left, item, depth)?;
    // `false and …` / `true or …` do not look at the right side.
    match (op, l.truth()) {
        (BinaryOp::And, Some(false)) => return Ok(V::Bool(false)),
        (BinaryOp::Or, Some(true)) => return Ok(V::Bool(true)),
        _ => {}
    }
    let r = eval(right, item, depth)?;
    Ok(match op {
        BinaryOp::And => match (l.truth(), r.truth()) {
            (_, Some(false)) => V::Bool(false),
            (Some(true), Some(true)) => V::Bool(true),
            _ => V::Null,
        },
        BinaryOp::Or => match (l.truth(), r.truth()) {
            (_, Some(true)) => V::Bool(true),
            (Some(false), Some(false)) => V::Bool(false),
            _ => V::Null,
        },
        BinaryOp::Eq => V::Bool(value::equals(&l, &r)),
        BinaryOp::Ne => V::Bool(!value::equals(&l, &r)),
        BinaryOp::Gt => V::Bool(value::order(&l, &r) == Some(Ordering::Greater)),
        BinaryOp::Ge => V::Bool(matches!(
            value::order(&l, &r),
            Some(Ordering::Greater | Ordering::Equal)
        )),
        BinaryOp::Lt => V::Bool(value::order(&l, &r) == Some(Ordering::Less)),
        BinaryOp::Le => V::Bool(matches!(
            value::order(&l, &r),
            Some(Ordering::Less | Ordering::Equal)
        )),
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => {
            value::arithmetic(op, l, r)?
        }
    })
}

pub(crate) fn type_error(what: &str, expected: &str, found: &V<'_>) -> EvalError {
    EvalError::Type {
        message: format!("{what} expects {expected}, not {}", found.kind()),
    }
}

impl Literal {
    /// The literal as a JSON value (date-times as RFC 3339 strings, non-finite floats as null).
    pub fn to_json(&self) -> Value {
        V::from_literal(self).into_json()
    }
}
