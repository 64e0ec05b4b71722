//! Prints filters back to OData text that the official servers accept and that
//! [`parse_filter`](super::parse_filter) reads back to the same AST.
//!
//! [`Display`](std::fmt::Display) gives the canonical form: v2 style (`datetimeoffset'…'`),
//! every function as written in the AST. [`Expr::to_odata`] adapts to a server [`Dialect`]:
//! v3 servers (OData v4) get bare timestamps and `contains`, v2 servers `substringof`.

use std::fmt::{self, Display, Formatter};

use super::ast::{Expr, Function, Literal};
use super::query::Dialect;
use crate::time_fmt::format_timestamp_exact;

/// How a filter is being printed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    /// Faithful to the AST, v2 literals.
    Canonical,
    /// For a server of this dialect.
    For(Dialect),
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_expr(f, self, Style::Canonical)
    }
}

impl Display for Literal {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_literal(f, self, Style::Canonical)
    }
}

impl Expr {
    /// The filter as text for a server of `dialect`.
    ///
    /// [`Dialect::V2`] prints `contains(h, n)` as `substringof(n, h)`; [`Dialect::V3`] prints
    /// `substringof(n, h)` as `contains(h, n)` and date-times as bare ISO timestamps, since
    /// OData v4 has neither `substringof` nor `datetimeoffset'…'`.
    pub fn to_odata(&self, dialect: Dialect) -> String {
        let mut out = String::new();
        let _ = write_expr(&mut out, self, Style::For(dialect));
        out
    }
}

fn write_expr(out: &mut impl fmt::Write, expr: &Expr, style: Style) -> fmt::Result {
    match expr {
        Expr::Literal(literal) => write_literal(out, literal, style),
        Expr::Member(name) => out.write_str(name),
        Expr::Not(inner) => {
            out.write_str("not ")?;
            write_operand(out, inner, style, is_atom(inner))
        }
        Expr::Neg(inner) => {
            // Always parenthesised so `-(5)` does not read back as the literal -5.
            out.write_char('-')?;
            write_operand(out, inner, style, false)
        }
        Expr::Binary { op, left, right } => {
            write_operand(out, left, style, !matches!(**left, Expr::Binary { .. }))?;
            write!(out, " {} ", op.keyword())?;
            write_operand(out, right, style, !matches!(**right, Expr::Binary { .. }))
        }
        Expr::Call { func, args } => write_call(out, *func, args, style),
        Expr::In { expr, list } => {
            write_operand(out, expr, style, is_atom(expr))?;
            out.write_str(" in (")?;
            for (i, literal) in list.iter().enumerate() {
                if i > 0 {
                    out.write_str(", ")?;
                }
                write_literal(out, literal, style)?;
            }
            out.write_char(')')
        }
    }
}

/// Members, literals and calls need no parentheses anywhere.
fn is_atom(expr: &Expr) -> bool {
    matches!(expr, Expr::Member(_) | Expr::Literal(_) | Expr::Call { .. })
}

fn write_operand(out: &mut impl fmt::Write, expr: &Expr, style: Style, bare: bool) -> fmt::Result {
    if bare {
        write_expr(out, expr, style)
    } else {
        out.write_char('(')?;
        write_expr(out, expr, style)?;
        out.write_char(')')
    }
}

fn write_call(
    out: &mut impl fmt::Write,
    func: Function,
    args: &[Expr],
    style: Style,
) -> fmt::Result {
    let (name, swapped) = match (func, style) {
        (Function::Contains, Style::For(Dialect::V2)) => ("substringof", args.len() == 2),
        (Function::SubstringOf, Style::For(Dialect::V3)) => ("contains", args.len() == 2),
        _ => (func.name(), false),
    };
    out.write_str(name)?;
    out.write_char('(')?;
    let ordered: Vec<&Expr> = if swapped {
        args.iter().rev().collect()
    } else {
        args.iter().collect()
    };
    for (i, arg) in ordered.into_iter().enumerate() {
        if i > 0 {
            out.write_str(", ")?;
        }
        write_expr(out, arg, style)?;
    }
    out.write_char(')')
}

fn write_literal(out: &mut impl fmt::Write, literal: &Literal, style: Style) -> fmt::Result {
    match literal {
        Literal::Null => out.write_str("null"),
        Literal::Bool(b) => write!(out, "{b}"),
        Literal::Int(i) => write!(out, "{i}"),
        // NaN and infinities have no OData spelling; the builders never make them.
        Literal::Float(x) if !x.is_finite() => out.write_str("null"),
        Literal::Float(x) => {
            // Debug prints the shortest text that reads back to the same value.
            let text = format!("{x:?}");
            out.write_str(&text)?;
            if !text.contains(['.', 'e', 'E']) {
                out.write_str(".0")?;
            }
            Ok(())
        }
        Literal::String(s) => {
            out.write_char('\'')?;
            out.write_str(&s.replace('\'', "''"))?;
            out.write_char('\'')
        }
        Literal::DateTime(t) => {
            let text = format_timestamp_exact(*t);
            if style == Style::For(Dialect::V3) {
                out.write_str(&text)
            } else {
                write!(out, "datetimeoffset'{text}'")
            }
        }
    }
}
