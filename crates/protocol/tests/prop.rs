//! Property tests: printed filters and query strings read back to the same value, the parser
//! and evaluator never panic, and `compare_values` is a total order. The number of cases
//! follows `PROPTEST_CASES`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use proptest::prelude::*;
use serde_json::{Value, json};
use tidesync_protocol::odata::eval::{evaluate, matches};
use tidesync_protocol::odata::{
    BinaryOp, Expr, Function, Literal, OrderBy, ParseLimits, parse_filter,
};
use tidesync_protocol::{Dialect, Item, Query, compare_values};
use time::{Duration, OffsetDateTime};

const KEYWORDS: [&str; 18] = [
    "and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le", "add", "sub", "mul", "div", "mod",
    "in", "true", "false", "null",
];

fn config() -> ProptestConfig {
    ProptestConfig::default()
}

fn member() -> impl Strategy<Value = String> {
    "[a-zA-Zé_][a-zA-Z0-9é_]{0,6}".prop_filter("not a keyword", |s| !KEYWORDS.contains(&s.as_str()))
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "['a ☃é\"\\\\+%&]{0,8}"]
}

fn date_time() -> impl Strategy<Value = OffsetDateTime> {
    // Years 1 to 9999, with nanoseconds.
    (-62_135_596_800i64..253_402_300_799i64, 0i64..1_000_000_000).prop_map(|(secs, nanos)| {
        OffsetDateTime::from_unix_timestamp(secs).unwrap() + Duration::nanoseconds(nanos)
    })
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        Just(Literal::Null),
        any::<bool>().prop_map(Literal::Bool),
        any::<i64>().prop_map(Literal::Int),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Literal::Float),
        string().prop_map(Literal::String),
        date_time().prop_map(Literal::DateTime),
    ]
}

fn binary_op() -> impl Strategy<Value = BinaryOp> {
    prop::sample::select(vec![
        BinaryOp::Or,
        BinaryOp::And,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Gt,
        BinaryOp::Ge,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Mod,
    ])
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        member().prop_map(Expr::Member),
        literal().prop_map(Expr::Literal),
    ];
    leaf.prop_recursive(4, 32, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            inner.clone().prop_map(|e| Expr::Neg(Box::new(e))),
            (binary_op(), inner.clone(), inner.clone()).prop_map(|(op, l, r)| Expr::Binary {
                op,
                left: Box::new(l),
                right: Box::new(r),
            }),
            (
                prop::sample::select(Function::ALL.to_vec()),
                prop::collection::vec(inner.clone(), 3),
                any::<bool>()
            )
                .prop_map(|(func, mut args, fewest)| {
                    let (min, max) = func.arity();
                    args.truncate(if fewest { min } else { max });
                    Expr::Call { func, args }
                }),
            (inner, prop::collection::vec(literal(), 0..4)).prop_map(|(e, list)| Expr::In {
                expr: Box::new(e),
                list,
            }),
        ]
    })
}

fn query() -> impl Strategy<Value = Query> {
    let order = prop::collection::vec(
        (member(), any::<bool>()).prop_map(|(member, descending)| OrderBy { member, descending }),
        0..3,
    );
    (
        prop::option::of(expr()),
        order,
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
        prop::option::of(prop::collection::vec(member(), 1..4)),
        any::<bool>(),
    )
        .prop_map(|(filter, order_by, skip, top, select, count)| Query {
            filter,
            order_by,
            skip,
            top,
            select,
            count,
        })
}

/// What a filter reads back as after [`Expr::to_odata`]: the dialect's spelling of
/// `contains`/`substringof`.
fn as_dialect(expr: &Expr, dialect: Dialect) -> Expr {
    let map = |e: &Expr| Box::new(as_dialect(e, dialect));
    match expr {
        Expr::Literal(_) | Expr::Member(_) => expr.clone(),
        Expr::Not(e) => Expr::Not(map(e)),
        Expr::Neg(e) => Expr::Neg(map(e)),
        Expr::Binary { op, left, right } => Expr::Binary {
            op: *op,
            left: map(left),
            right: map(right),
        },
        Expr::In { expr, list } => Expr::In {
            expr: map(expr),
            list: list.clone(),
        },
        Expr::Call { func, args } => {
            let mut args: Vec<Expr> = args.iter().map(|a| as_dialect(a, dialect)).collect();
            let spelled = match (func, dialect) {
                (Function::Contains, Dialect::V2) => Function::SubstringOf,
                (Function::SubstringOf, Dialect::V3) => Function::Contains,
                _ => *func,
            };
            if spelled != *func {
                args.reverse();
            }
            Expr::Call {
                func: spelled,
                args,
            }
        }
    }
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

fn sample_item() -> Item {
    serde_json::from_value(json!({
        "id": "a", "text": "Ünï ☃", "n": 3, "x": -1.5, "complete": true,
        "createdAt": "2026-11-27T08:29:29.167Z", "nothing": null, "list": [1]
    }))
    .unwrap()
}

fn json_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|u| json!(u)),
        (-1e20f64..1e20).prop_map(|x| json!(x)),
        (-10i64..10).prop_map(|i| json!(i as f64 + 0.5)),
        (-10i64..10).prop_map(|i| json!(i)),
        "[a-c☃]{0,3}".prop_map(Value::String),
        prop::collection::vec(any::<i8>(), 0..2).prop_map(|v| json!(v)),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn prop_odata_roundtrip(e in expr()) {
        let printed = e.to_string();
        prop_assert_eq!(parse_filter(&printed), Ok(e), "printed: {}", printed);
    }

    #[test]
    fn prop_odata_dialect_roundtrip(e in expr(), v3 in any::<bool>()) {
        let dialect = if v3 { Dialect::V3 } else { Dialect::V2 };
        let printed = e.to_odata(dialect);
        prop_assert_eq!(parse_filter(&printed), Ok(as_dialect(&e, dialect)), "printed: {}", printed);
    }

    #[test]
    fn prop_query_string_roundtrip(q in query(), v3 in any::<bool>()) {
        let dialect = if v3 { Dialect::V3 } else { Dialect::V2 };
        let text = q.to_query_string(dialect);
        let pairs: Vec<(String, String)> = text
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (decode(k), decode(v))
            })
            .collect();
        let read = Query::from_query_pairs(
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &ParseLimits::default(),
        );
        let expected = Query { filter: q.filter.as_ref().map(|f| as_dialect(f, dialect)), ..q };
        prop_assert_eq!(read, Ok(expected), "query string: {}", text);
    }

    #[test]
    fn prop_parser_never_panics(
        text in prop_oneof![any::<String>(), "[a-z0-9 ()',.:+\\-TZeLd]{0,60}", "(not |-|\\(|tolower\\(|a eq |'x'|1|\\)|, | in \\(|2026-01-01T00:00:00Z){0,20}"]
    ) {
        if let Ok(e) = parse_filter(&text) {
            let item = sample_item();
            let _ = matches(&e, &item);
            let _ = evaluate(&e, &item);
            prop_assert_eq!(parse_filter(&e.to_string()), Ok(e));
        }
    }

    #[test]
    fn prop_evaluator_never_panics(e in expr()) {
        let item = sample_item();
        let _ = matches(&e, &item);
        let _ = evaluate(&e, &item);
    }

    #[test]
    fn prop_compare_values_is_a_total_order(a in json_scalar(), b in json_scalar(), c in json_scalar()) {
        use std::cmp::Ordering;
        prop_assert_eq!(compare_values(&a, &b), compare_values(&b, &a).reverse());
        if compare_values(&a, &b) != Ordering::Greater && compare_values(&b, &c) != Ordering::Greater {
            prop_assert_ne!(compare_values(&a, &c), Ordering::Greater);
        }
    }
}
