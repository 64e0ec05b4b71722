//! Wire types and the OData query language shared by the tidesync client and server.
//!
//! This crate is pure: it does no I/O and knows nothing of HTTP, SQL or any store. It holds
//! the system property names ([`system`]), item helpers ([`Item`], [`ItemExt`]), id rules
//! ([`ids`]), version and ETag encoding ([`version`]), timestamps ([`time_fmt`]), headers and
//! response bodies ([`wire`]), and the `$filter` language ([`odata`]): AST, parser, printer,
//! builders and an evaluator ([`odata::eval`]) for in-memory queries. It is not a general
//! OData implementation: only what the Azure Mobile Apps / Datasync table protocols use.
//!
//! ```
//! use serde_json::json;
//! use tidesync_protocol::odata::{self, col, eval};
//! use tidesync_protocol::Item;
//!
//! let filter = odata::parse_filter("startswith(text, 'buy') and not complete")?;
//! assert_eq!(filter, col("text").starts_with("buy").and(col("complete").not()));
//! assert_eq!(filter.to_string(), "startswith(text, 'buy') and not complete");
//!
//! let item: Item = serde_json::from_value(json!({"id": "1", "text": "buy milk", "complete": false}))?;
//! assert!(eval::matches(&filter, &item)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod columns;
pub mod ids;
mod item;
pub mod odata;
pub mod system;
pub mod time_fmt;
pub mod version;
pub mod wire;

pub use ids::{IdError, new_client_id, new_server_id, validate_id};
pub use item::{Item, ItemExt};
pub use odata::eval::{EvalError, QueryOutput, compare_values, evaluate, matches, run_query};
pub use odata::{
    BinaryOp, Dialect, Expr, Function, Literal, OrderBy, ParseError, ParseLimits, Query,
    QueryError, col, lit, parse_filter, parse_filter_with,
};
pub use time_fmt::{TimestampError, format_timestamp, parse_timestamp};
pub use version::{ETag, decode_version, encode_version, format_etag, parse_etag};
pub use wire::ApiVersion;
