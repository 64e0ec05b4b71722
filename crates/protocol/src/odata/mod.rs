//! The OData subset of the `/tables` protocol.

mod ast;

pub use ast::{BinaryOp, Expr, Function, Literal, OrderBy, Query};
