//! Query builder, query-string and `run_query` tests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use serde_json::json;
use tidesync_protocol::odata::eval::{QueryOutput, run_query};
use tidesync_protocol::odata::{ParseLimits, col};
use tidesync_protocol::{Dialect, Item, ParseError, Query, QueryError};

fn pairs(query: &Query, dialect: Dialect) -> Vec<(String, String)> {
    query.to_query_pairs(dialect)
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn decode(query_string: &str) -> Vec<(String, String)> {
    query_string
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            let d = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .unwrap()
                    .into_owned()
            };
            (d(k), d(v))
        })
        .collect()
}

fn from_pairs(pairs: &[(&str, &str)]) -> Result<Query, QueryError> {
    Query::from_query_pairs(pairs.iter().copied(), &ParseLimits::default())
}

#[test]
fn builder_and_pairs() {
    let query = Query::new()
        .filter(col("complete").eq(false))
        .filter(col("text").starts_with("a+b"))
        .order_by("text")
        .order_by_desc("id")
        .skip(10)
        .top(5)
        .select(["id", "text"])
        .with_count();
    let filter = "(complete eq false) and startswith(text, 'a+b')";
    assert_eq!(
        pairs(&query, Dialect::V2),
        owned(&[
            ("$filter", filter),
            ("$orderby", "text,id desc"),
            ("$skip", "10"),
            ("$top", "5"),
            ("$select", "id,text"),
            ("$inlinecount", "allpages"),
        ])
    );
    assert_eq!(
        pairs(&query, Dialect::V3).last().unwrap(),
        &("$count".into(), "true".into())
    );
    assert_eq!(
        query.to_query_string(Dialect::V3),
        "$filter=(complete%20eq%20false)%20and%20startswith(text,%20'a%2Bb')\
         &$orderby=text,id%20desc&$skip=10&$top=5&$select=id,text&$count=true"
    );
    assert_eq!(Query::all(), Query::new());
    assert!(pairs(&Query::all(), Dialect::V2).is_empty());
    assert_eq!(Query::all().to_query_string(Dialect::V2), "");
}

#[test]
fn query_string_round_trips() {
    let queries = [
        Query::new(),
        Query::new().top(0),
        Query::new()
            .filter(col("updatedAt").ge(time::macros::datetime!(2026-11-27 08:29:32.659 UTC)))
            .order_by("updatedAt")
            .skip(0)
            .top(50),
        Query::new()
            .filter(
                col("text")
                    .eq("it's & 100% + ☃ #?=")
                    .or(col("n").is_in([1, -2])),
            )
            .select(["id"])
            .with_count(),
    ];
    for query in queries {
        for dialect in [Dialect::V2, Dialect::V3] {
            let decoded = decode(&query.to_query_string(dialect));
            let read = Query::from_query_pairs(
                decoded.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                &ParseLimits::default(),
            );
            assert_eq!(read, Ok(query.clone()), "{dialect:?}");
        }
    }
}

#[test]
fn reading_pairs() {
    let query = from_pairs(&[
        ("$filter", "id eq 'item-del'"),
        ("$orderby", "text desc,id"),
        ("$top", "3"),
        ("$skip", "0"),
        ("$select", "id,text"),
        ("$inlinecount", "allpages"),
        ("__includeDeleted", "true"),
        ("ZUMO-API-VERSION", "2.0.0"),
        ("$expand", "whatever"),
    ])
    .unwrap();
    assert_eq!(
        query,
        Query::new()
            .filter(col("id").eq("item-del"))
            .order_by_desc("text")
            .order_by("id")
            .top(3)
            .skip(0)
            .select(["id", "text"])
            .with_count()
    );
    assert_eq!(
        from_pairs(&[("$count", "TRUE")]).unwrap(),
        Query::new().with_count()
    );
    assert_eq!(from_pairs(&[("$count", "false")]).unwrap(), Query::new());
    assert_eq!(from_pairs(&[("$select", "*")]).unwrap(), Query::new());
    assert_eq!(from_pairs(&[("$filter", "  ")]).unwrap(), Query::new());
    assert_eq!(from_pairs(&[("$TOP", "2")]).unwrap(), Query::new().top(2));
}

#[test]
fn bad_pairs_name_the_parameter() {
    let invalid = |name: &str, message: &str| QueryError::InvalidParameter {
        name: name.into(),
        message: message.into(),
    };
    let cases: Vec<(&[(&str, &str)], QueryError)> = vec![
        (
            &[("$top", "-1")],
            invalid("$top", "expected a non-negative integer"),
        ),
        (
            &[("$skip", "ten")],
            invalid("$skip", "expected a non-negative integer"),
        ),
        (
            &[("$top", "99999999999999999999999")],
            invalid("$top", "number too large"),
        ),
        (
            &[("$count", "yes")],
            invalid("$count", "expected 'true' or 'false'"),
        ),
        (
            &[("$inlinecount", "some")],
            invalid("$inlinecount", "expected 'allpages' or 'none'"),
        ),
        (
            &[("$top", "1"), ("$top", "2")],
            invalid("$top", "given more than once"),
        ),
        (
            &[("$filter", "text eq")],
            QueryError::Syntax {
                name: "$filter".into(),
                source: ParseError::Syntax {
                    message: "expected an expression".into(),
                    position: 7,
                },
            },
        ),
    ];
    for (input, expected) in cases {
        let error = from_pairs(input).unwrap_err();
        assert_eq!(error, expected);
        assert_eq!(error.parameter(), expected.parameter());
    }
    assert_eq!(
        from_pairs(&[("$filter", "frobnicate(text)")])
            .unwrap_err()
            .to_string(),
        "invalid $filter: unknown function 'frobnicate' at 0"
    );
    assert_eq!(
        from_pairs(&[("$orderby", "a b")]).unwrap_err().parameter(),
        "$orderby"
    );
}

fn bulk() -> Vec<Item> {
    let mut items: Vec<Item> = (1..=9)
        .rev()
        .map(|i| {
            serde_json::from_value(json!({
                "id": format!("bulk-{i:02}"),
                "text": format!("bulk {i:02}"),
                "complete": i % 2 == 0,
                "rank": i % 3,
            }))
            .unwrap()
        })
        .collect();
    items.push(serde_json::from_value(json!({"id": "item-1", "text": null})).unwrap());
    items
}

fn ids(output: &QueryOutput) -> Vec<&str> {
    output
        .items
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect()
}

#[test]
fn run_query_pipeline() {
    let cases: Vec<(Query, Vec<&str>, Option<u64>)> = vec![
        (
            Query::new()
                .filter(col("complete").eq(true))
                .order_by("id")
                .top(3),
            vec!["bulk-02", "bulk-04", "bulk-06"],
            None,
        ),
        (
            Query::new().filter(col("complete").not()).top(3),
            vec!["bulk-01", "bulk-03", "bulk-05"],
            None,
        ),
        // `id` is always the final tiebreaker.
        (
            Query::new().order_by_desc("rank").top(4),
            vec!["bulk-02", "bulk-05", "bulk-08", "bulk-01"],
            None,
        ),
        (
            Query::new().order_by("text").top(2).with_count(),
            vec!["item-1", "bulk-01"],
            Some(10),
        ),
        (
            Query::new().order_by_desc("text").skip(8).with_count(),
            vec!["bulk-01", "item-1"],
            Some(10),
        ),
        (
            Query::new().filter(col("text").is_null()).with_count(),
            vec!["item-1"],
            Some(1),
        ),
        (Query::new().skip(100), vec![], None),
        (Query::new().top(0).with_count(), vec![], Some(10)),
    ];
    for (query, expected, count) in cases {
        let output = run_query(bulk(), &query).unwrap();
        assert_eq!(ids(&output), expected, "{query:?}");
        assert_eq!(output.count, count, "{query:?}");
    }
}

#[test]
fn run_query_projects_and_reports_errors() {
    let output = run_query(
        bulk(),
        &Query::new().order_by("id").top(1).select(["text", "nope"]),
    )
    .unwrap();
    assert_eq!(
        output.items,
        vec![serde_json::from_value::<Item>(json!({"text": "bulk 01"})).unwrap()]
    );
    let failing = Query::new().filter(col("text").add(1).eq(2));
    assert!(run_query(bulk(), &failing).is_err());
}
