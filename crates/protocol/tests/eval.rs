//! Evaluator tests: every operator and function, null and unicode cases, as data tables.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use serde_json::{Value, json};
use tidesync_protocol::odata::eval::{EvalError, evaluate, matches, members};
use tidesync_protocol::odata::{Expr, Literal, col, lit, parse_filter};
use tidesync_protocol::{Item, compare_values};

fn item() -> Item {
    serde_json::from_value(json!({
        "id": "bulk-03",
        "text": "bulk 03",
        "complete": false,
        "n": 7,
        "x": 2.5,
        "big": 9_223_372_036_854_775_807_i64,
        "nothing": null,
        "uni": "Ünïcödé ☃ x",
        "createdAt": "2026-11-27T08:29:29.167Z",
        "offset": "2026-01-01T01:00:00+02:00",
        "bad": "not a date",
        "tags": ["a", "b"],
    }))
    .unwrap()
}

/// Evaluates `filter` against [`item`] and compares with the expected JSON value.
fn check_value(filter: &str, expected: Value) {
    let expr = parse_filter(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
    assert_eq!(evaluate(&expr, &item()), Ok(expected), "{filter}");
}

fn check_match(filter: &str, expected: bool) {
    let expr = parse_filter(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
    assert_eq!(matches(&expr, &item()), Ok(expected), "{filter}");
}

#[test]
fn values() {
    let cases = [
        ("text", json!("bulk 03")),
        ("missing", json!(null)),
        ("n add 1", json!(8)),
        ("n sub 10", json!(-3)),
        ("n mul 3", json!(21)),
        ("n div 2", json!(3)),
        ("-7 div 2", json!(-3)),
        ("n mod 4", json!(3)),
        ("-7 mod 4", json!(-3)),
        ("n add 0.5", json!(7.5)),
        ("x mul 2", json!(5.0)),
        ("7.5 mod 2", json!(1.5)),
        ("1 div 4.0", json!(0.25)),
        ("-n", json!(-7)),
        ("-x", json!(-2.5)),
        ("nothing add 1", json!(null)),
        ("-missing", json!(null)),
        ("tolower(uni)", json!("ünïcödé ☃ x")),
        ("toupper(uni)", json!("ÜNÏCÖDÉ ☃ X")),
        ("trim('  a b  ')", json!("a b")),
        ("length(uni)", json!(11)),
        ("length('')", json!(0)),
        ("indexof(uni, '☃')", json!(8)),
        ("indexof(text, 'zz')", json!(-1)),
        ("indexof(text, '')", json!(0)),
        ("substring(uni, 8)", json!("☃ x")),
        ("substring(uni, 1, 3)", json!("nïc")),
        ("substring(text, 50)", json!("")),
        ("substring(text, -2, 2)", json!("bu")),
        ("substring(text, 1, -1)", json!("")),
        ("substring(text, 1, null)", json!(null)),
        ("substring(missing, 1)", json!(null)),
        ("concat(text, '!')", json!("bulk 03!")),
        ("concat(text, missing)", json!(null)),
        ("replace(text, ' ', '-')", json!("bulk-03")),
        ("replace(text, '', '-')", json!("bulk 03")),
        ("year(createdAt)", json!(2026)),
        ("month(createdAt)", json!(11)),
        ("day(createdAt)", json!(27)),
        ("hour(createdAt)", json!(8)),
        ("minute(createdAt)", json!(29)),
        ("second(createdAt)", json!(29)),
        ("year(offset)", json!(2025)),
        ("year(bad)", json!(null)),
        ("year(datetime'1999-12-31T23:59:59Z')", json!(1999)),
        ("hour(datetimeoffset'2026-01-01T01:00:00+02:00')", json!(23)),
        ("round(1.5)", json!(2.0)),
        ("round(-1.5)", json!(-2.0)),
        ("round(2.4)", json!(2.0)),
        ("round(7)", json!(7)),
        ("floor(-1.5)", json!(-2.0)),
        ("ceiling(1.2)", json!(2.0)),
        ("floor(missing)", json!(null)),
        (
            "datetime'2026-11-27T08:29:29.1Z'",
            json!("2026-11-27T08:29:29.1Z"),
        ),
        ("nothing eq null", json!(true)),
        ("complete and missing", json!(false)),
        ("not missing", json!(null)),
        ("missing or true", json!(true)),
        ("missing and true", json!(null)),
        ("tags", json!(["a", "b"])),
    ];
    for (filter, expected) in cases {
        check_value(filter, expected);
    }
}

#[test]
fn predicates() {
    let cases = [
        ("complete eq false", true),
        ("complete", false),
        ("not complete", true),
        ("text eq 'bulk 03'", true),
        ("text ne 'bulk 03'", false),
        ("text gt 'bulk 02'", true),
        ("text lt 'bulk 02'", false),
        ("'B' lt 'a'", true),
        ("'é' gt 'z'", true),
        ("n eq 7.0", true),
        ("n gt 6.5", true),
        ("n ge 7", true),
        ("n le 6.99", false),
        ("big gt 9223372036854775806", true),
        ("big eq 9223372036854775807.0", false),
        ("big lt 9223372036854775808.0", true),
        ("text eq null", false),
        ("nothing eq null", true),
        ("missing eq null", true),
        ("missing ne null", false),
        ("text ne null", true),
        ("null eq null", true),
        ("missing eq 5", false),
        ("missing ne 5", true),
        ("missing gt 5", false),
        ("missing lt 5", false),
        ("missing le null", false),
        ("text eq 5", false),
        ("text gt 5", false),
        ("text ne 5", true),
        ("createdAt ge datetime'2026-11-27T08:29:29.167Z'", true),
        (
            "createdAt gt datetimeoffset'2026-11-27T08:29:29.167Z'",
            false,
        ),
        (
            "createdAt eq datetimeoffset'2026-11-27T09:29:29.167+01:00'",
            true,
        ),
        ("createdAt lt 2026-11-27T08:29:29.1671Z", true),
        (
            "createdAt gt cast(2000-01-01T00:00:00Z,Edm.DateTimeOffset)",
            true,
        ),
        ("bad eq datetime'2026-11-27T08:29:29.167Z'", false),
        ("bad ne datetime'2026-11-27T08:29:29.167Z'", true),
        ("bad lt datetime'2026-11-27T08:29:29.167Z'", false),
        ("year(createdAt) ge 2000", true),
        ("startswith(text,'bulk 0')", true),
        ("startswith(text,'ulk')", false),
        ("endswith(text,'03')", true),
        ("substringof('ulk 0', text)", true),
        ("contains(text, 'ulk 0')", true),
        ("contains(uni, 'ö')", true),
        ("contains(missing, 'a')", false),
        ("not contains(missing, 'a')", false),
        ("round(1.4) eq 1", true),
        ("floor(1.6) eq 1", true),
        ("ceiling(1.2) eq 2", true),
        ("(1 add 2) eq 3", true),
        ("id in ('bulk-01', 'bulk-03')", true),
        ("id in ('bulk-01')", false),
        ("missing in (1, null)", true),
        ("n in (7.0)", true),
        ("id in ()", false),
        ("text", false),
        ("n", false),
        ("tags eq tags", true),
        ("true or 1 div 0 eq 1", true),
        ("false and 1 div 0 eq 1", false),
    ];
    for (filter, expected) in cases {
        check_match(filter, expected);
    }
}

#[test]
fn errors() {
    let overflow = |op| Err(EvalError::Overflow { op });
    let type_error = |message: &str| {
        Err(EvalError::Type {
            message: message.into(),
        })
    };
    let cases: Vec<(&str, Result<Value, EvalError>)> = vec![
        ("'a' add 1", type_error("add expects numbers, not a string")),
        ("1 add 'a'", type_error("add expects numbers, not a string")),
        ("-text", type_error("- expects a number, not a string")),
        ("big add 1", overflow("add")),
        ("-9223372036854775808 div -1", overflow("div")),
        ("-(-9223372036854775808)", overflow("-")),
        ("1.0e308 mul 10", overflow("mul")),
        ("n div 0", Err(EvalError::DivisionByZero)),
        ("n mod 0", Err(EvalError::DivisionByZero)),
        ("x div 0.0", Err(EvalError::DivisionByZero)),
        (
            "length(n)",
            type_error("length expects strings, not a number"),
        ),
        (
            "startswith(text, 1)",
            type_error("startswith expects strings, not a number"),
        ),
        (
            "year(n)",
            type_error("year expects a date-time, not a number"),
        ),
        (
            "round(text)",
            type_error("round expects a number, not a string"),
        ),
        (
            "substring(text, 'a')",
            type_error("substring expects an integer position, not a string"),
        ),
    ];
    for (filter, expected) in cases {
        let expr = parse_filter(filter).unwrap();
        assert_eq!(evaluate(&expr, &item()), expected, "{filter}");
    }
    let message = EvalError::DivisionByZero.to_string();
    assert_eq!(message, "division by zero");
}

#[test]
fn deep_built_expressions_do_not_overflow_the_stack() {
    let mut expr = col("complete");
    for _ in 0..5_000 {
        expr = Expr::Not(Box::new(expr));
    }
    assert_eq!(matches(&expr, &item()), Err(EvalError::TooDeep));
    // Dropping a deep tree is the caller's business; keep this one shallow enough to drop.
}

#[test]
fn members_are_distinct_and_ordered() {
    let expr =
        parse_filter("a eq 1 and (startswith(b, 'x') or a in (1)) and not c and -d gt 0").unwrap();
    assert_eq!(members(&expr), vec!["a", "b", "c", "d"]);
    assert_eq!(members(&lit(1)), Vec::<&str>::new());
}

#[test]
fn compare_values_is_a_total_order() {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let cases = [
        (json!(null), json!(false), Less),
        (json!(true), json!(false), Greater),
        (json!(true), json!(0), Less),
        (json!(1), json!(1.0), Equal),
        (json!(1), json!(1.5), Less),
        (json!(-1.5), json!(-1), Less),
        (json!(u64::MAX), json!(i64::MAX), Greater),
        (
            json!(9_007_199_254_740_993_i64),
            json!(9_007_199_254_740_992.0),
            Greater,
        ),
        (json!(1e300), json!(u64::MAX), Greater),
        (json!(100), json!("1"), Less),
        (json!("B"), json!("a"), Less),
        (json!("é"), json!("z"), Greater),
        (json!("z"), json!([1]), Less),
        (json!([1]), json!({"a": 1}), Less),
        (json!([1, 2]), json!([1, 2]), Equal),
    ];
    for (a, b, expected) in cases {
        assert_eq!(compare_values(&a, &b), expected, "{a} vs {b}");
        assert_eq!(compare_values(&b, &a), expected.reverse(), "{b} vs {a}");
    }
}

#[test]
fn literal_to_json() {
    assert_eq!(Literal::Float(f64::INFINITY).to_json(), json!(null));
    assert_eq!(Literal::Int(3).to_json(), json!(3));
    assert_eq!(Literal::String("a".into()).to_json(), json!("a"));
}
