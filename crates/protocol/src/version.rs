//! Item versions (base64 of an 8-byte big-endian counter) and the ETag headers that carry them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The version text for a counter value: standard base64 of its 8 big-endian bytes.
pub fn encode_version(counter: u64) -> String {
    STANDARD.encode(counter.to_be_bytes())
}

/// The counter behind a version written by [`encode_version`]; `None` for any other text
/// (versions from other servers are opaque and may not decode).
pub fn decode_version(version: &str) -> Option<u64> {
    let bytes = STANDARD.decode(version).ok()?;
    let bytes: [u8; 8] = bytes.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// A strong ETag header value for `version`: quoted, with `"` escaped as `\"`.
pub fn format_etag(version: &str) -> String {
    format!("\"{}\"", version.replace('"', "\\\""))
}

/// A parsed `If-Match` / `If-None-Match` / `ETag` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ETag {
    /// `*`: matches any existing item.
    Any,
    /// `W/"…"`: a weak tag, which never matches a version.
    Weak(String),
    /// `"…"` (or an unquoted value): the version it names.
    Strong(String),
}

/// Reads an ETag header value: surrounding whitespace is ignored, `*` is [`ETag::Any`],
/// `W/"…"` is weak, and quotes are stripped with `\"` unescaped. An unquoted value is taken
/// as it stands.
pub fn parse_etag(header: &str) -> ETag {
    let header = header.trim();
    if header == "*" {
        return ETag::Any;
    }
    if let Some(rest) = header.strip_prefix("W/") {
        return ETag::Weak(unquote(rest.trim()));
    }
    ETag::Strong(unquote(header))
}

fn unquote(text: &str) -> String {
    let inner = text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(text);
    inner.replace("\\\"", "\"")
}
