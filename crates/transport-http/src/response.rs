//! Reading answers: items, pages and errors, classified into [`TransportError`]s.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ETAG, HeaderMap, LINK, RETRY_AFTER};
use serde_json::Value;
use tidesync_core::{Page, TransportError};
use tidesync_protocol::system::{ID, VERSION};
use tidesync_protocol::wire::{ApiVersion, ErrorBody};
use tidesync_protocol::{ETag, Item, parse_etag};

/// A complete answer: status, headers and the whole body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// The body as text, or `None` when it is empty.
    pub(crate) fn raw(&self) -> Option<String> {
        (!self.body.is_empty()).then(|| String::from_utf8_lossy(&self.body).into_owned())
    }

    /// The version named by a strong `ETag` header, if any.
    fn etag_version(&self) -> Option<String> {
        let value = self.headers.get(ETAG)?.to_str().ok()?;
        match parse_etag(value) {
            ETag::Strong(version) if !version.is_empty() => Some(version),
            _ => None,
        }
    }
}

/// Which write an answer belongs to, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Insert,
    Replace,
}

/// The error for a non-2xx answer (401 included: by the time it gets here, any refresh
/// has been tried).
pub(crate) fn error_for(reply: &Reply) -> TransportError {
    let status = reply.status.as_u16();
    let raw = reply.raw();
    match status {
        401 => TransportError::Auth {
            message: error_message(reply),
        },
        409 | 412 => TransportError::Conflict {
            status,
            server_item: server_item(reply),
            raw,
        },
        404 | 410 => TransportError::NotFound { status, raw },
        _ => TransportError::Http {
            status,
            message: error_message(reply),
            raw,
        },
    }
}

/// The item of a 2xx answer to an insert or replace, with `version` taken from the `ETag`
/// header when there is one.
pub(crate) fn item_from(reply: &Reply, call: Call) -> Result<Item, TransportError> {
    if reply.body.iter().all(u8::is_ascii_whitespace) {
        return Err(TransportError::Protocol(format!(
            "the {call:?} answer (HTTP {}) has an empty body",
            reply.status.as_u16()
        )));
    }
    match serde_json::from_slice::<Value>(&reply.body) {
        Ok(Value::Object(mut item)) => {
            if let Some(version) = reply.etag_version() {
                item.insert(VERSION.to_owned(), Value::String(version));
            }
            Ok(item)
        }
        Ok(other) => Err(TransportError::Protocol(format!(
            "the {call:?} answer is not a JSON object but {}",
            kind_of(&other)
        ))),
        Err(e) => Err(TransportError::Protocol(format!(
            "the {call:?} answer is not JSON: {e}"
        ))),
    }
}

/// What a page's answer says about the rows after it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageContext {
    pub(crate) version: ApiVersion,
    /// The `$top` sent, if any.
    pub(crate) top: Option<u64>,
    /// The server is a tidesync server (it said so in its capabilities document), so a
    /// v2 page without a `Link` header is known to be the last.
    pub(crate) ours: bool,
}

/// The page of a 2xx query answer. Bodies: a plain array, `{results,count}` (v2) or
/// `{items,count,nextLink}` (v3); either version's shape is accepted from either server.
/// Elements that are not objects are dropped (the engine would skip them anyway).
///
/// The body is read whole and parsed in one go (`serde_json::from_slice`), so memory grows
/// with the page size; pages are bounded by `$top` and the server's page limit.
pub(crate) fn page_from(reply: &Reply, context: PageContext) -> Result<Page, TransportError> {
    let body: Value = serde_json::from_slice(&reply.body)
        .map_err(|e| TransportError::Protocol(format!("the query answer is not JSON: {e}")))?;
    let (rows, count, next_link) = match body {
        Value::Array(rows) => (rows, None, None),
        Value::Object(mut object) => {
            let rows = ["items", "results"]
                .iter()
                .find_map(|key| match object.remove(*key) {
                    Some(Value::Array(rows)) => Some(rows),
                    _ => None,
                })
                .ok_or_else(|| {
                    TransportError::Protocol(
                        "the query answer has neither an items nor a results array".to_owned(),
                    )
                })?;
            let count = object.get("count").and_then(Value::as_u64);
            let next_link = match object.get("nextLink") {
                Some(Value::String(link)) if !link.is_empty() => Some(true),
                Some(Value::String(_) | Value::Null) => Some(false),
                _ => None,
            };
            (rows, count, next_link)
        }
        other => {
            return Err(TransportError::Protocol(format!(
                "the query answer is {}, not an array or object",
                kind_of(&other)
            )));
        }
    };
    let items: Vec<Item> = rows
        .into_iter()
        .filter_map(|row| match row {
            Value::Object(item) => Some(item),
            _ => None,
        })
        .collect();
    let short = context.top.is_some_and(|top| (items.len() as u64) < top);
    let has_more = if next_link == Some(true) || has_link_next(&reply.headers) {
        Some(true)
    } else {
        match (context.version, next_link) {
            // A v3 nextLink of null is the end only if the page is short: once the requested
            // $top is used up, the server leaves nextLink null even when more rows follow.
            (_, Some(false)) if short || context.top.is_none() => Some(false),
            // Our v2 mode sends a Link header whenever rows follow.
            (ApiVersion::V2, None) if context.ours && short => Some(false),
            _ => None,
        }
    };
    let purged_before = reply
        .headers
        .get(PURGED_BEFORE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(Page {
        items,
        has_more,
        count,
        purged_before,
    })
}

/// tidesync-server's tombstone horizon on query answers.
const PURGED_BEFORE: &str = "x-tidesync-purged-before";

/// The server's copy of the item in a 409/412 body, if the body is an object with an id.
fn server_item(reply: &Reply) -> Option<Item> {
    let Ok(Value::Object(mut item)) = serde_json::from_slice::<Value>(&reply.body) else {
        return None;
    };
    if !item.get(ID).is_some_and(Value::is_string) {
        return None;
    }
    if let Some(version) = reply.etag_version() {
        item.insert(VERSION.to_owned(), Value::String(version));
    }
    Some(item)
}

/// The longest message kept from a body that is not JSON.
const MAX_MESSAGE_CHARS: usize = 500;

/// The server's message: `error` of `{"error":…}`, else `message` (JWT errors), else the
/// body text, else the status's reason phrase.
pub(crate) fn error_message(reply: &Reply) -> String {
    if let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(&reply.body) {
        return error;
    }
    if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(&reply.body) {
        if let Some(Value::String(message)) = object.get("message") {
            return message.clone();
        }
    }
    let text = String::from_utf8_lossy(&reply.body);
    let text = text.trim();
    if text.is_empty() {
        return reply
            .status
            .canonical_reason()
            .unwrap_or("no message")
            .to_owned();
    }
    text.chars().take(MAX_MESSAGE_CHARS).collect()
}

/// True when a `Link` header has a `rel=next` entry.
fn has_link_next(headers: &HeaderMap) -> bool {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|link| {
            link.split(';').skip(1).any(|param| {
                let param = param.trim().to_ascii_lowercase();
                param == "rel=next" || param == "rel=\"next\""
            })
        })
}

/// A `Retry-After` given in seconds.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use reqwest::header::HeaderValue;

    use super::*;

    fn reply(status: u16, body: &str, headers: &[(&'static str, &'static str)]) -> Reply {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, HeaderValue::from_static(value));
        }
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: body.as_bytes().to_vec(),
        }
    }

    fn more(
        body: &str,
        headers: &[(&'static str, &'static str)],
        ctx: PageContext,
    ) -> Option<bool> {
        page_from(&reply(200, body, headers), ctx).unwrap().has_more
    }

    const V2: PageContext = PageContext {
        version: ApiVersion::V2,
        top: Some(2),
        ours: false,
    };
    const V3: PageContext = PageContext {
        version: ApiVersion::V3,
        top: Some(2),
        ours: false,
    };

    #[test]
    fn has_more_is_said_only_when_certain() {
        let one = r#"[{"id":"a"}]"#;
        let two = r#"[{"id":"a"},{"id":"b"}]"#;
        // v2, foreign server: no promise either way unless a Link says more.
        assert_eq!(more(one, &[], V2), None);
        assert_eq!(more(two, &[], V2), None);
        assert_eq!(
            more(two, &[("link", "http://h/?$skip=2; rel=next")], V2),
            Some(true)
        );
        // v2, our server: a short page without a Link is the last.
        let ours = PageContext { ours: true, ..V2 };
        assert_eq!(more(one, &[], ours), Some(false));
        assert_eq!(more(two, &[], ours), None);
        // v3: nextLink decides, except that a full page with a null nextLink may just
        // have used up $top.
        let v3_one = r#"{"items":[{"id":"a"}],"count":null,"nextLink":null}"#;
        let v3_two = r#"{"items":[{"id":"a"},{"id":"b"}],"nextLink":null}"#;
        let v3_link = r#"{"items":[{"id":"a"},{"id":"b"}],"nextLink":"$skip=2"}"#;
        assert_eq!(more(v3_one, &[], V3), Some(false));
        assert_eq!(more(v3_two, &[], V3), None);
        assert_eq!(more(v3_link, &[], V3), Some(true));
        let no_top = PageContext { top: None, ..V3 };
        assert_eq!(more(v3_two, &[], no_top), Some(false));
    }

    #[test]
    fn bodies_of_both_shapes_are_read() {
        let counted = r#"{"results":[{"id":"a"},7,{"id":"b"}],"count":58}"#;
        let page = page_from(&reply(200, counted, &[]), V2).unwrap();
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.count, Some(58));
        assert!(matches!(
            page_from(&reply(200, r#"{"rows":[]}"#, &[]), V2),
            Err(TransportError::Protocol(_))
        ));
        assert!(matches!(
            page_from(&reply(200, "\"x\"", &[]), V2),
            Err(TransportError::Protocol(_))
        ));
    }

    #[test]
    fn messages_come_from_the_body() {
        assert_eq!(error_message(&reply(400, r#"{"error":"bad"}"#, &[])), "bad");
        assert_eq!(
            error_message(&reply(
                401,
                r#"{"name":"JsonWebTokenError","message":"jwt malformed"}"#,
                &[]
            )),
            "jwt malformed"
        );
        assert_eq!(error_message(&reply(401, " nope ", &[])), "nope");
        assert_eq!(error_message(&reply(503, "", &[])), "Service Unavailable");
    }

    #[test]
    fn server_items_need_an_id_and_take_the_etag() {
        let item = server_item(&reply(
            412,
            r#"{"id":"a","version":"old"}"#,
            &[("etag", "\"new\"")],
        ))
        .unwrap();
        assert_eq!(item["version"], "new");
        assert!(server_item(&reply(409, r#"{"text":"x"}"#, &[])).is_none());
        assert!(server_item(&reply(409, "not json", &[])).is_none());
    }

    #[test]
    fn links_and_retry_after_are_parsed() {
        let mut headers = HeaderMap::new();
        headers.append(LINK, HeaderValue::from_static("<http://a>; rel=\"next\""));
        assert!(has_link_next(&headers));
        headers.clear();
        headers.append(LINK, HeaderValue::from_static("<http://a>; rel=prev"));
        assert!(!has_link_next(&headers));
        headers.append(RETRY_AFTER, HeaderValue::from_static(" 2 "));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
    }
}
