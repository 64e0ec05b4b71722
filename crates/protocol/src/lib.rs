//! Wire types and the OData query language shared by the tidesync client and server.
//!
//! This crate is pure: no I/O, no HTTP, no SQL. It holds the system property names,
//! item helpers, version and ETag encoding, error bodies and the `$filter` AST with
//! its parser, printer and evaluator.

pub mod odata;
