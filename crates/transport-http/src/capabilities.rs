//! The capabilities document of a tidesync server, read by [`Protocol::Auto`](crate::Protocol::Auto).
//!
//! `GET {base}/tidesync/v1/capabilities` (outside `/tables`, so no `ZUMO-API-VERSION` is
//! needed) answers a JSON object; the fields this client reads are:
//!
//! ```json
//! {
//!   "server": "tidesync",
//!   "protocols": ["2.0.0", "3.0.0"],
//!   "extensions": ["batch"],
//!   "pageSize": {"default": 100, "max": 1000}
//! }
//! ```
//!
//! `protocols` lists the `ZUMO-API-VERSION` values served; `extensions` names the
//! tidesync extensions (an array of names, or an object whose keys are the names). Any
//! other field is ignored, so the server may add more.

use serde_json::Value;
use tidesync_protocol::wire::ApiVersion;

/// What a server said about itself, or what was assumed when it said nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// The protocol this transport speaks to it.
    pub version: ApiVersion,
    /// True when the server published a tidesync capabilities document.
    pub tidesync: bool,
    /// The extensions it advertised (e.g. `batch`).
    pub extensions: Vec<String>,
}

impl Capabilities {
    /// A server that was not asked, or did not answer with a document: speak `version`.
    pub(crate) fn assumed(version: ApiVersion) -> Self {
        Self {
            version,
            tidesync: false,
            extensions: Vec::new(),
        }
    }

    /// True when the server advertised the extension `name`.
    pub fn has_extension(&self, name: &str) -> bool {
        self.extensions.iter().any(|e| e.eq_ignore_ascii_case(name))
    }

    /// Reads a capabilities document; `None` when it is not one (not JSON, not an
    /// object, or no `protocols` array). Speaks v3 when `3.0.x` is listed, else v2.
    pub(crate) fn from_document(body: &[u8]) -> Option<Self> {
        let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(body) else {
            return None;
        };
        let protocols: Vec<ApiVersion> = doc
            .get("protocols")?
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .filter_map(ApiVersion::parse)
            .collect();
        let version = if protocols.contains(&ApiVersion::V3) {
            ApiVersion::V3
        } else {
            ApiVersion::V2
        };
        let extensions = match doc.get("extensions") {
            Some(Value::Array(names)) => names
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        Some(Self {
            version,
            tidesync: true,
            extensions,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn documents_are_read_leniently() {
        let doc = br#"{"protocols":["2.0.0","3.0.0"],"extensions":["batch"],"x":1}"#;
        let caps = Capabilities::from_document(doc).unwrap();
        assert_eq!(caps.version, ApiVersion::V3);
        assert!(caps.tidesync);
        assert!(caps.has_extension("BATCH"));

        let doc = br#"{"protocols":["2.0.0"],"extensions":{"changes":{"path":"/x"}}}"#;
        let caps = Capabilities::from_document(doc).unwrap();
        assert_eq!(caps.version, ApiVersion::V2);
        assert_eq!(caps.extensions, vec!["changes".to_owned()]);

        assert!(Capabilities::from_document(b"<html>").is_none());
        assert!(Capabilities::from_document(br#"{"status":"ok"}"#).is_none());
    }
}
