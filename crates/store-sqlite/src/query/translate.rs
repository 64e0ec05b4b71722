//! Translation of the filter AST to parameterised SQL, for the part SQLite can
//! answer exactly as `eval::matches` does.
//!
//! Every translated expression is two-valued (0 or 1, never NULL), so `and`,
//! `or` and `not` over them agree with the evaluator's three-valued logic. Only
//! comparisons of a column with a literal of the column's own kind translate:
//! text with text (byte order on both sides), integers with integers, reals
//! with reals (and with integers that an `f64` holds exactly), booleans with
//! booleans, anything with `null`; plus `in` lists of those.

use rusqlite::types::Value as SqlValue;
use tidesync_core::{ColumnType, Expr, TableDef};
use tidesync_protocol::odata::{BinaryOp, Literal};

use crate::schema::quote;

/// Filters nested deeper than this are left to the evaluator (which reports
/// its own depth limit; SQLite has another).
const MAX_DEPTH: usize = 64;

/// Leaves the rest to the evaluator past this many bound values per query.
const MAX_PARAMS: usize = 10_000;

/// A filter split into a SQL condition and what is left for Rust.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Translated {
    /// A SQL condition (`1` when nothing translated) with `?` placeholders.
    pub(crate) sql: String,
    /// The values bound to the placeholders, in order.
    pub(crate) params: Vec<SqlValue>,
    /// True when `sql` is the whole filter; otherwise it only narrows the
    /// candidates, and the full filter must run on them in Rust.
    pub(crate) exact: bool,
}

/// Translates the leading conjuncts of `filter` that SQLite answers exactly.
///
/// Only a leading run is used: the evaluator stops at the first false conjunct,
/// so rows removed by the SQL part never reach a later conjunct that could
/// raise an error in the evaluator; the outcome, errors included, is the same.
pub(crate) fn translate_filter(def: &TableDef, filter: Option<&Expr>) -> Translated {
    let Some(filter) = filter else {
        return Translated {
            sql: "1".to_owned(),
            params: Vec::new(),
            exact: true,
        };
    };
    let mut conjuncts = Vec::new();
    flatten_and(filter, &mut conjuncts);
    let mut parts = Vec::new();
    let mut params = Vec::new();
    let mut exact = depth(filter, 0) <= MAX_DEPTH;
    if exact {
        for conjunct in &conjuncts {
            let mut local = Vec::new();
            match atom(def, conjunct, &mut local) {
                Some(sql) if params.len() + local.len() <= MAX_PARAMS => {
                    parts.push(sql);
                    params.extend(local);
                }
                _ => {
                    exact = false;
                    break;
                }
            }
        }
    }
    Translated {
        sql: if parts.is_empty() {
            "1".to_owned()
        } else {
            parts.join(" AND ")
        },
        params,
        exact,
    }
}

/// The conjuncts of nested `and`s, in evaluation order.
fn flatten_and<'e>(expr: &'e Expr, out: &mut Vec<&'e Expr>) {
    match expr {
        Expr::Binary {
            op: BinaryOp::And,
            left,
            right,
        } => {
            flatten_and(left, out);
            flatten_and(right, out);
        }
        other => out.push(other),
    }
}

fn depth(expr: &Expr, at: usize) -> usize {
    if at > MAX_DEPTH {
        return at;
    }
    match expr {
        Expr::Literal(_) | Expr::Member(_) => at,
        Expr::Not(inner) | Expr::Neg(inner) => depth(inner, at + 1),
        Expr::Binary { left, right, .. } => depth(left, at + 1).max(depth(right, at + 1)),
        Expr::Call { args, .. } => args.iter().map(|a| depth(a, at + 1)).max().unwrap_or(at),
        Expr::In { expr, .. } => depth(expr, at + 1),
    }
}

/// A two-valued SQL condition equal to `eval::matches` for `expr`, or `None`.
fn atom(def: &TableDef, expr: &Expr, params: &mut Vec<SqlValue>) -> Option<String> {
    match expr {
        Expr::Literal(Literal::Bool(b)) => Some(if *b { "1" } else { "0" }.to_owned()),
        Expr::Not(inner) => Some(format!("(NOT {})", atom(def, inner, params)?)),
        Expr::Binary {
            op: op @ (BinaryOp::And | BinaryOp::Or),
            left,
            right,
        } => {
            let l = atom(def, left, params)?;
            let r = atom(def, right, params)?;
            let word = if *op == BinaryOp::And { "AND" } else { "OR" };
            Some(format!("({l} {word} {r})"))
        }
        Expr::Binary { op, left, right } => match (&**left, &**right) {
            (Expr::Member(column), Expr::Literal(literal)) => {
                compare(def, column, *op, literal, params)
            }
            (Expr::Literal(literal), Expr::Member(column)) => {
                compare(def, column, flip(*op)?, literal, params)
            }
            _ => None,
        },
        Expr::In { expr, list } => {
            let Expr::Member(column) = &**expr else {
                return None;
            };
            if list.is_empty() {
                return Some("0".to_owned());
            }
            let parts = list
                .iter()
                .map(|literal| compare(def, column, BinaryOp::Eq, literal, params))
                .collect::<Option<Vec<_>>>()?;
            Some(format!("({})", parts.join(" OR ")))
        }
        _ => None,
    }
}

/// The operator with its operands swapped (`5 lt x` is `x gt 5`).
fn flip(op: BinaryOp) -> Option<BinaryOp> {
    Some(match op {
        BinaryOp::Eq => BinaryOp::Eq,
        BinaryOp::Ne => BinaryOp::Ne,
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::Ge => BinaryOp::Le,
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::Le => BinaryOp::Ge,
        _ => return None,
    })
}

/// `column op literal` when the literal has the column's kind (or is null).
fn compare(
    def: &TableDef,
    column: &str,
    op: BinaryOp,
    literal: &Literal,
    params: &mut Vec<SqlValue>,
) -> Option<String> {
    let ty = def.column_type(column)?;
    let quoted = quote(column);
    if *literal == Literal::Null {
        return Some(match op {
            BinaryOp::Eq => format!("({quoted} IS NULL)"),
            BinaryOp::Ne => format!("({quoted} IS NOT NULL)"),
            BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Lt | BinaryOp::Le => "0".to_owned(),
            _ => return None,
        });
    }
    let value = match (ty, literal) {
        (ColumnType::String | ColumnType::DateTime, Literal::String(s)) => {
            SqlValue::Text(s.clone())
        }
        (ColumnType::Integer, Literal::Int(i)) => SqlValue::Integer(*i),
        (ColumnType::Real, Literal::Float(x)) => SqlValue::Real(*x),
        (ColumnType::Real, Literal::Int(i)) if i.unsigned_abs() <= 1 << 53 =>
        {
            #[allow(clippy::cast_precision_loss)]
            SqlValue::Real(*i as f64)
        }
        (ColumnType::Bool, Literal::Bool(b)) => SqlValue::Integer(i64::from(*b)),
        _ => return None,
    };
    let sql = match op {
        BinaryOp::Eq => format!("({quoted} IS ?)"),
        BinaryOp::Ne => format!("({quoted} IS NOT ?)"),
        BinaryOp::Gt => format!("IFNULL({quoted} > ?, 0)"),
        BinaryOp::Ge => format!("IFNULL({quoted} >= ?, 0)"),
        BinaryOp::Lt => format!("IFNULL({quoted} < ?, 0)"),
        BinaryOp::Le => format!("IFNULL({quoted} <= ?, 0)"),
        _ => return None,
    };
    params.push(value);
    Some(sql)
}

/// True when SQLite orders `column` exactly as `eval::compare_values` does:
/// every column kind but JSON (which mixes kinds) holds one kind plus nulls,
/// and nulls sort first ascending, last descending, in both.
pub(crate) fn orderable(def: &TableDef, column: &str) -> bool {
    matches!(
        def.column_type(column),
        Some(
            ColumnType::String
                | ColumnType::DateTime
                | ColumnType::Bool
                | ColumnType::Integer
                | ColumnType::Real
        )
    )
}
