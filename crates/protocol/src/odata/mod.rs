//! The OData subset of the `/tables` protocol: the `$filter` AST, its parser, printer,
//! builders and evaluator, and the [`Query`] with its URL form.

mod ast;
mod builder;
mod error;
pub mod eval;
mod lexer;
mod parser;
mod printer;
mod query;

pub use ast::{BinaryOp, Expr, Function, Literal, OrderBy, Query};
pub use builder::{after_keyset, and_maybe, col, lit};
pub use error::ParseError;
pub use parser::{ParseLimits, parse_filter, parse_filter_with, parse_order_by, parse_select};
pub use query::{Dialect, QueryError};
