//! Tests for ids, versions, ETags, timestamps, system properties and wire shapes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use serde_json::json;
use tidesync_protocol::ids::{IdError, new_client_id, new_server_id, validate_id};
use tidesync_protocol::system::{is_system_property, strip_system_properties};
use tidesync_protocol::time_fmt::{format_timestamp, parse_timestamp};
use tidesync_protocol::version::{ETag, decode_version, encode_version, format_etag, parse_etag};
use tidesync_protocol::wire::{self, ApiVersion, ErrorBody, V2CountedPage, V3Page};
use tidesync_protocol::{Item, ItemExt};
use time::macros::datetime;

#[test]
fn ids() {
    let long = "x".repeat(256);
    let max = "é".repeat(255);
    let cases: Vec<(&str, Result<(), IdError>)> = vec![
        ("item-1", Ok(())),
        ("ünïcödé ☃", Ok(())),
        (&max, Ok(())),
        ("...", Ok(())),
        ("", Err(IdError::Empty)),
        (&long, Err(IdError::TooLong { n_chars: 256 })),
        (".", Err(IdError::DotSegment)),
        ("..", Err(IdError::DotSegment)),
        (
            "a\"b",
            Err(IdError::ForbiddenCharacter {
                character: '"',
                index: 1,
            }),
        ),
        (
            "a+b",
            Err(IdError::ForbiddenCharacter {
                character: '+',
                index: 1,
            }),
        ),
        (
            "?",
            Err(IdError::ForbiddenCharacter {
                character: '?',
                index: 0,
            }),
        ),
        (
            "a\\",
            Err(IdError::ForbiddenCharacter {
                character: '\\',
                index: 1,
            }),
        ),
        (
            "a/b",
            Err(IdError::ForbiddenCharacter {
                character: '/',
                index: 1,
            }),
        ),
        (
            "`",
            Err(IdError::ForbiddenCharacter {
                character: '`',
                index: 0,
            }),
        ),
        (
            "a\u{0}",
            Err(IdError::ForbiddenCharacter {
                character: '\u{0}',
                index: 1,
            }),
        ),
        (
            "\u{1f}",
            Err(IdError::ForbiddenCharacter {
                character: '\u{1f}',
                index: 0,
            }),
        ),
        (
            "\u{7f}",
            Err(IdError::ForbiddenCharacter {
                character: '\u{7f}',
                index: 0,
            }),
        ),
        (
            "\u{9f}",
            Err(IdError::ForbiddenCharacter {
                character: '\u{9f}',
                index: 0,
            }),
        ),
        ("\u{a0}", Ok(())),
    ];
    for (id, expected) in cases {
        assert_eq!(validate_id(id), expected, "{id:?}");
    }
    let client = new_client_id();
    assert_eq!(client.len(), 32);
    assert!(
        client
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    let server = new_server_id();
    assert_eq!(server.len(), 36);
    assert_eq!(server.as_bytes()[14], b'4');
    assert_eq!(server, server.to_lowercase());
    assert_ne!(new_client_id(), client);
}

#[test]
fn versions_and_etags() {
    let cases = [
        (0u64, "AAAAAAAAAAA="),
        (1, "AAAAAAAAAAE="),
        (2001, "AAAAAAAAB9E="),
        (u64::MAX, "//////////8="),
    ];
    for (counter, text) in cases {
        assert_eq!(encode_version(counter), text);
        assert_eq!(decode_version(text), Some(counter));
    }
    for opaque in ["MQ==", "not base64!", "", "AAAAAAAAAAAA"] {
        assert_eq!(decode_version(opaque), None, "{opaque}");
    }
    assert_eq!(format_etag("MQ=="), "\"MQ==\"");
    assert_eq!(format_etag("a\"b"), "\"a\\\"b\"");
    let cases = [
        ("\"MQ==\"", ETag::Strong("MQ==".into())),
        (" \"a\\\"b\" ", ETag::Strong("a\"b".into())),
        ("*", ETag::Any),
        ("W/\"xyz\"", ETag::Weak("xyz".into())),
        ("MQ==", ETag::Strong("MQ==".into())),
        ("\"\"", ETag::Strong(String::new())),
    ];
    for (header, expected) in cases {
        assert_eq!(parse_etag(header), expected, "{header}");
    }
    assert_eq!(
        parse_etag(&format_etag("q\"uo\"te")),
        ETag::Strong("q\"uo\"te".into())
    );
}

#[test]
fn timestamps() {
    assert_eq!(
        format_timestamp(datetime!(2026-11-27 08:29:29.1678 UTC)),
        "2026-11-27T08:29:29.167Z"
    );
    assert_eq!(
        format_timestamp(datetime!(2026-11-27 10:29:29 +2)),
        "2026-11-27T08:29:29.000Z"
    );
    let cases = [
        (
            "2026-11-27T08:29:29.167Z",
            Some(datetime!(2026-11-27 08:29:29.167 UTC)),
        ),
        (
            "2026-11-27T08:29:29Z",
            Some(datetime!(2026-11-27 08:29:29 UTC)),
        ),
        (
            "2026-11-27T08:29:29",
            Some(datetime!(2026-11-27 08:29:29 UTC)),
        ),
        (
            "2026-11-27t08:29:29.1234567z",
            Some(datetime!(2026-11-27 08:29:29.1234567 UTC)),
        ),
        (
            "2026-11-27 08:29:29+01:00",
            Some(datetime!(2026-11-27 07:29:29 UTC)),
        ),
        (
            "2026-11-27T08:29-0130",
            Some(datetime!(2026-11-27 09:59 UTC)),
        ),
        ("2026-11-27", Some(datetime!(2026-11-27 00:00 UTC))),
        (
            "2026-11-27T08:29:29.1234567891234Z",
            Some(datetime!(2026-11-27 08:29:29.123456789 UTC)),
        ),
        ("2026-02-30T00:00:00Z", None),
        ("2026-11-27T24:00:00Z", None),
        ("2026-11-27T08:29:29.Z", None),
        ("2026-11-27T08:29:29Zjunk", None),
        ("27/11/2026", None),
        ("", None),
        ("2026-11-27T08:29:29+99:00", None),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_timestamp(text).ok(), expected, "{text}");
    }
    assert_eq!(
        parse_timestamp("nope").unwrap_err().to_string(),
        "invalid timestamp 'nope': expected a four-digit year"
    );
    let t = datetime!(2026-11-27 08:29:29.167 UTC);
    assert_eq!(parse_timestamp(&format_timestamp(t)), Ok(t));
}

#[test]
fn system_properties_and_item_ext() {
    for name in ["createdAt", "UPDATEDAT", "version", "Deleted"] {
        assert!(is_system_property(name), "{name}");
    }
    for name in ["id", "text", "versions"] {
        assert!(!is_system_property(name), "{name}");
    }
    let mut item: Item = serde_json::from_value(json!({
        "id": "a", "text": "t", "createdat": "x", "updatedAt": "2026-11-27T08:29:29.167Z",
        "Version": "MQ==", "deleted": true
    }))
    .unwrap();
    assert_eq!(item.id(), Some("a"));
    assert_eq!(item.version(), None);
    assert_eq!(
        item.updated_at(),
        Some(datetime!(2026-11-27 08:29:29.167 UTC))
    );
    assert!(item.is_deleted());
    let mut kept = item.clone();
    strip_system_properties(&mut kept, true);
    assert_eq!(
        kept,
        serde_json::from_value::<Item>(json!({"id": "a", "text": "t", "Version": "MQ=="})).unwrap()
    );
    strip_system_properties(&mut item, false);
    assert_eq!(
        item,
        serde_json::from_value::<Item>(json!({"id": "a", "text": "t"})).unwrap()
    );
    assert!(!item.is_deleted());
    assert_eq!(item.updated_at(), None);
}

#[test]
fn wire_shapes() {
    let cases = [
        ("2.0.0", Some(ApiVersion::V2)),
        ("2.0.1", Some(ApiVersion::V2)),
        ("2.0.15", Some(ApiVersion::V2)),
        ("3.0.0", Some(ApiVersion::V3)),
        (" 3.0.2 ", Some(ApiVersion::V3)),
        ("2.0", None),
        ("2.0.", None),
        ("2.1.0", None),
        ("2.0.0-beta", None),
        ("", None),
    ];
    for (value, expected) in cases {
        assert_eq!(ApiVersion::parse(value), expected, "{value}");
    }
    assert_eq!(ApiVersion::V2.as_header_value(), "2.0.0");
    assert_eq!(ApiVersion::V3.as_header_value(), "3.0.0");
    assert_eq!(wire::ZUMO_API_VERSION, "ZUMO-API-VERSION");
    assert_eq!(wire::X_ZUMO_AUTH, "X-ZUMO-AUTH");
    let body = ErrorBody {
        error: wire::INVALID_API_VERSION_MESSAGE.into(),
    };
    assert_eq!(
        serde_json::to_value(&body).unwrap(),
        json!({"error": "An invalid API version was specified in the request, this request needs to specify a ZUMO-API-VERSION of 2.0.0."})
    );
    let page = V3Page {
        items: vec![],
        count: None,
        next_link: None,
    };
    assert_eq!(
        serde_json::to_value(&page).unwrap(),
        json!({"items": [], "count": null, "nextLink": null})
    );
    let read: V3Page = serde_json::from_value(
        json!({"items": [{"id": "a"}], "count": 5, "nextLink": "$skip=100"}),
    )
    .unwrap();
    assert_eq!(
        (read.count, read.next_link.as_deref()),
        (Some(5), Some("$skip=100"))
    );
    let counted = V2CountedPage {
        results: vec![],
        count: 58,
    };
    assert_eq!(
        serde_json::to_value(&counted).unwrap(),
        json!({"results": [], "count": 58})
    );
}
