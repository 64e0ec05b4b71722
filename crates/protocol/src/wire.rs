//! Header names, API versions and the JSON bodies of the `/tables` protocol.

use serde::{Deserialize, Serialize};

use crate::Item;

/// The protocol version header (also accepted as a query parameter).
pub const ZUMO_API_VERSION: &str = "ZUMO-API-VERSION";
/// The session token header.
pub const X_ZUMO_AUTH: &str = "X-ZUMO-AUTH";

/// The exact v2 error text for a missing or unsupported `ZUMO-API-VERSION` (spec 2.2).
pub const INVALID_API_VERSION_MESSAGE: &str = "An invalid API version was specified in the request, this request needs to specify a ZUMO-API-VERSION of 2.0.0.";

/// Which table protocol a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiVersion {
    /// Azure Mobile Apps, `2.0.x`.
    V2,
    /// Datasync, `3.0.x`.
    V3,
}

impl ApiVersion {
    /// Reads a `ZUMO-API-VERSION` value: `2.0.<digits>` is v2, `3.0.<digits>` is v3, anything
    /// else is `None`. Surrounding whitespace is ignored.
    pub fn parse(value: &str) -> Option<ApiVersion> {
        let value = value.trim();
        let patch_ok = |patch: &str| !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit());
        if let Some(patch) = value.strip_prefix("2.0.") {
            return patch_ok(patch).then_some(ApiVersion::V2);
        }
        if let Some(patch) = value.strip_prefix("3.0.") {
            return patch_ok(patch).then_some(ApiVersion::V3);
        }
        None
    }

    /// The value clients send for this version: `2.0.0` or `3.0.0`.
    pub fn as_header_value(self) -> &'static str {
        match self {
            ApiVersion::V2 => "2.0.0",
            ApiVersion::V3 => "3.0.0",
        }
    }
}

/// The body of an error response without an item: `{"error":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The message.
    pub error: String,
}

/// A v2 query result with `$inlinecount=allpages`: `{"results":[…],"count":58}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct V2CountedPage {
    /// The page of items.
    pub results: Vec<Item>,
    /// The number of items matching the filter, ignoring `$skip` / `$top`.
    pub count: u64,
}

/// A v3 query result: `{"items":[…],"count":null,"nextLink":null}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct V3Page {
    /// The page of items.
    pub items: Vec<Item>,
    /// The filtered total when `$count=true` was asked for.
    pub count: Option<u64>,
    /// The query string (no path, no `?`) of the next page, if any.
    #[serde(rename = "nextLink")]
    pub next_link: Option<String>,
}
