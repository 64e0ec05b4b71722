//! Parser and printer tests for `$filter`, `$orderby` and `$select`, as data tables.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use tidesync_protocol::odata::{
    BinaryOp, Expr, Function, Literal, ParseError, ParseLimits, col, lit, parse_filter,
    parse_filter_with, parse_order_by, parse_select,
};
use time::macros::datetime;

/// Parses `input` and checks the AST, then that the printed form reads back to it.
fn check_parse(input: &str, expected: &Expr) {
    let parsed = parse_filter(input).unwrap_or_else(|e| panic!("{input}: {e}"));
    assert_eq!(&parsed, expected, "{input}");
    let printed = parsed.to_string();
    assert_eq!(
        parse_filter(&printed).as_ref(),
        Ok(expected),
        "{input} printed as {printed}"
    );
}

fn check_error(input: &str, message: &str, position: usize) {
    let error = parse_filter(input).expect_err(input);
    assert_eq!(error.to_string(), message, "{input}");
    assert_eq!(error.position(), position, "{input}");
}

#[test]
fn golden_filters_parse() {
    let ts = datetime!(2026-11-27 08:29:32.659 UTC);
    let cases: Vec<(&str, Expr)> = vec![
        ("id eq 'item-del'", col("id").eq("item-del")),
        (
            "(updatedAt ge datetimeoffset'2026-11-27T08:29:32.659Z')",
            col("updatedAt").ge(ts),
        ),
        (
            "updatedAt ge datetime'2026-11-27T08:29:32.659Z'",
            col("updatedAt").ge(ts),
        ),
        (
            "(updatedAt gt cast(2026-11-27T08:29:32.659Z,Edm.DateTimeOffset))",
            col("updatedAt").gt(ts),
        ),
        (
            "updatedAt gt 2026-11-27T08:29:32.659Z",
            col("updatedAt").gt(ts),
        ),
        ("complete eq true", col("complete").eq(true)),
        ("complete", col("complete")),
        ("not complete", col("complete").not()),
        ("text eq 'bulk 07'", col("text").eq("bulk 07")),
        (
            "text ne 'bulk 07' and complete eq false",
            col("text").ne("bulk 07").and(col("complete").eq(false)),
        ),
        (
            "id eq 'bulk-01' or id eq 'bulk-02'",
            col("id").eq("bulk-01").or(col("id").eq("bulk-02")),
        ),
        (
            "startswith(text,'bulk 1')",
            col("text").starts_with("bulk 1"),
        ),
        ("endswith(text,'9')", col("text").ends_with("9")),
        (
            "substringof('ulk 2',text)",
            Expr::Call {
                func: Function::SubstringOf,
                args: vec![lit("ulk 2"), col("text")],
            },
        ),
        ("contains(text,'ulk 2')", col("text").contains("ulk 2")),
        (
            "tolower(text) eq 'bulk 03'",
            col("text").to_lower().eq("bulk 03"),
        ),
        (
            "toupper(text) eq 'BULK 03'",
            col("text").to_upper().eq("BULK 03"),
        ),
        ("trim(text) eq 'bulk 03'", col("text").trim().eq("bulk 03")),
        (
            "concat(text,'!') eq 'bulk 03!'",
            col("text").concat("!").eq("bulk 03!"),
        ),
        ("length(text) eq 7", col("text").length().eq(7)),
        ("indexof(text,'3') eq 6", col("text").index_of("3").eq(6)),
        (
            "substring(text,5) eq '03'",
            col("text").substring(5, None).eq("03"),
        ),
        (
            "substring(text,5,1) eq '0'",
            col("text").substring(5, Some(1)).eq("0"),
        ),
        ("year(createdAt) ge 2000", col("createdAt").year().ge(2000)),
        ("month(createdAt) ge 1", col("createdAt").month().ge(1)),
        ("day(createdAt) ge 1", col("createdAt").day().ge(1)),
        ("round(1.4) eq 1", lit(1.4).round().eq(1)),
        ("floor(1.6) eq 1", lit(1.6).floor().eq(1)),
        ("ceiling(1.2) eq 2", lit(1.2).ceiling().eq(2)),
        ("text eq null", col("text").is_null()),
        ("(1 add 2) eq 3", lit(1).add(2).eq(3)),
        (
            "replace(text, ' ', '-') eq 'a-b'",
            col("text").replace(" ", "-").eq("a-b"),
        ),
        ("id in ('a', 'b')", col("id").is_in(["a", "b"])),
        ("id in ()", col("id").is_in(Vec::<i64>::new())),
    ];
    for (input, expected) in &cases {
        check_parse(input, expected);
    }
}

#[test]
fn precedence_and_unary() {
    let cases: Vec<(&str, Expr)> = vec![
        ("a or b and c", col("a").or(col("b").and(col("c")))),
        ("a eq 1 add 2 mul 3", col("a").eq(lit(1).add(lit(2).mul(3)))),
        ("a sub b sub c", col("a").sub(col("b")).sub(col("c"))),
        ("a div b mod c", col("a").div(col("b")).modulo(col("c"))),
        ("not a eq b", col("a").not().eq(col("b"))),
        ("not (a eq b)", col("a").eq(col("b")).not()),
        ("-5", lit(-5)),
        ("- 5", Expr::Neg(Box::new(lit(5)))),
        ("-(5)", Expr::Neg(Box::new(lit(5)))),
        ("-a", Expr::Neg(Box::new(col("a")))),
        ("--5", Expr::Neg(Box::new(lit(-5)))),
        ("a sub -5", col("a").sub(-5)),
        ("-9223372036854775808", lit(i64::MIN)),
        ("9223372036854775807L", lit(i64::MAX)),
        ("9223372036854775808", lit(9_223_372_036_854_775_808.0)),
        ("1.5", lit(1.5)),
        ("1e3", lit(1000.0)),
        ("2.5E-3", lit(0.0025)),
        ("7d", lit(7.0)),
        ("7.25m", lit(7.25)),
        ("3f", lit(3.0)),
        ("5L", lit(5)),
        ("'it''s'", lit("it's")),
        ("'héllo ☃'", lit("héllo ☃")),
        ("''", lit("")),
        ("null", Expr::Literal(Literal::Null)),
        (
            "a in (1, -2, 'x', null, true)",
            col("a").is_in([
                Literal::Int(1),
                Literal::Int(-2),
                Literal::String("x".into()),
                Literal::Null,
                Literal::Bool(true),
            ]),
        ),
        ("tolower(a) in ('x')", col("a").to_lower().is_in(["x"])),
        ("not a in (1)", col("a").is_in([1]).not()),
        ("été eq 1", col("été").eq(1)),
        ("_x1 eq 1", col("_x1").eq(1)),
        ("year eq 1", col("year").eq(1)),
        ("  a   eq\t1 ", col("a").eq(1)),
    ];
    for (input, expected) in &cases {
        check_parse(input, expected);
    }
}

#[test]
fn date_time_literals() {
    let cases = [
        (
            "datetime'2026-11-27T08:29:32Z'",
            datetime!(2026-11-27 08:29:32 UTC),
        ),
        (
            "datetimeoffset'2026-11-27T08:29:32'",
            datetime!(2026-11-27 08:29:32 UTC),
        ),
        (
            "datetimeoffset'2026-11-27T10:29:32.1234567+02:00'",
            datetime!(2026-11-27 08:29:32.1234567 UTC),
        ),
        (
            "datetimeoffset'2026-11-27T08:29:32.123456789123Z'",
            datetime!(2026-11-27 08:29:32.123456789 UTC),
        ),
        (
            "2026-11-27T08:29:32.5-01:30",
            datetime!(2026-11-27 09:59:32.5 UTC),
        ),
        (
            "cast('2026-11-27T08:29:32Z',Edm.DateTimeOffset)",
            datetime!(2026-11-27 08:29:32 UTC),
        ),
    ];
    for (input, expected) in cases {
        let Expr::Literal(Literal::DateTime(t)) = parse_filter(input).unwrap() else {
            panic!("{input} is not a date-time literal");
        };
        assert_eq!(t, expected, "{input}");
    }
}

#[test]
fn printer_output() {
    let cases: Vec<(Expr, &str)> = vec![
        (
            col("updatedAt").ge(datetime!(2026-11-27 08:29:32.659 UTC)),
            "updatedAt ge datetimeoffset'2026-11-27T08:29:32.659Z'",
        ),
        (
            lit(datetime!(2026-11-27 08:29:32.000000001 UTC)),
            "datetimeoffset'2026-11-27T08:29:32.000000001Z'",
        ),
        (
            lit(datetime!(2026-11-27 08:29:32 +1)),
            "datetimeoffset'2026-11-27T07:29:32Z'",
        ),
        (col("a").eq(1).and(col("b").eq(2)), "(a eq 1) and (b eq 2)"),
        (lit(1.0), "1.0"),
        (lit(1e20), "1e20"),
        (lit(-0.5), "-0.5"),
        (lit(f64::NAN), "null"),
        (Expr::Neg(Box::new(lit(5))), "-(5)"),
        (lit("it's"), "'it''s'"),
        (col("complete").not(), "not complete"),
        (col("a").eq(1).not(), "not (a eq 1)"),
        (col("a").is_in([1, 2]), "a in (1, 2)"),
        (lit(Some(3)), "3"),
        (lit(None::<&str>), "null"),
        (lit(3u32), "3"),
    ];
    for (expr, expected) in &cases {
        assert_eq!(expr.to_string(), *expected);
    }
}

#[test]
fn dialect_printing() {
    use tidesync_protocol::Dialect;
    let ts = datetime!(2026-11-27 08:29:32.659 UTC);
    let expr = col("updatedAt").gt(ts).and(col("text").contains("x"));
    assert_eq!(
        expr.to_odata(Dialect::V2),
        "(updatedAt gt datetimeoffset'2026-11-27T08:29:32.659Z') and substringof('x', text)"
    );
    assert_eq!(
        expr.to_odata(Dialect::V3),
        "(updatedAt gt 2026-11-27T08:29:32.659Z) and contains(text, 'x')"
    );
    let v2 = Expr::Call {
        func: Function::SubstringOf,
        args: vec![lit("x"), col("text")],
    };
    assert_eq!(v2.to_odata(Dialect::V3), "contains(text, 'x')");
    // The v3 form reads back to the same date-time.
    assert_eq!(parse_filter(&expr.to_odata(Dialect::V3)).unwrap(), expr);
}

#[test]
fn syntax_errors_carry_positions() {
    let cases = [
        ("text eq", "expected an expression at 7", 7),
        ("frobnicate(text)", "unknown function 'frobnicate' at 0", 0),
        ("a eq (1", "expected ')' at 7", 7),
        ("'abc", "unterminated string at 0", 0),
        (
            "a eq 1 b",
            "expected an operator or the end of the filter at 7",
            7,
        ),
        ("", "expected an expression at 0", 0),
        (
            "substring(text)",
            "substring takes 2 or 3 arguments, not 1 at 0",
            0,
        ),
        ("length(a, b)", "length takes 1 arguments, not 2 at 0", 0),
        ("a eq 1 + 2", "unexpected character '+' at 7", 7),
        (
            "a eq 9223372036854775808L",
            "integer literal out of range at 5",
            5,
        ),
        ("a eq 1e999", "number out of range at 5", 5),
        ("a eq 12abc", "malformed number at 5", 5),
        (
            "a eq datetime'yesterday'",
            "invalid date-time 'yesterday' at 13",
            13,
        ),
        ("a eq guid'1'", "unsupported literal type 'guid' at 5", 5),
        (
            "cast('x',Edm.Guid)",
            "cast to 'Edm.Guid' is not supported at 9",
            9,
        ),
        ("a/b eq 1", "unexpected character '/' at 1", 1),
        ("a.b eq 1", "member paths are not supported ('a.b') at 0", 0),
        ("a in ('x', b)", "expected a literal at 11", 11),
        ("a in 1", "expected '(' after 'in' at 5", 5),
        ("and", "expected an expression at 0", 0),
        ("Startswith(a,'b')", "unknown function 'Startswith' at 0", 0),
        (
            "a eq 2026-13-01T00:00:00Z",
            "invalid date-time '2026-13-01T00:00:00Z' at 5",
            5,
        ),
    ];
    for (input, message, position) in cases {
        check_error(input, message, position);
    }
}

#[test]
fn limits() {
    let limits = ParseLimits::default();
    assert_eq!((limits.max_len, limits.max_depth), (16_384, 64));
    let long = format!("a eq '{}'", "x".repeat(20_000));
    assert_eq!(
        parse_filter(&long),
        Err(ParseError::TooLong { position: 16_384 })
    );
    assert_eq!(
        parse_filter(&long).unwrap_err().to_string(),
        "filter too long"
    );

    let nested = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
    assert!(parse_filter(&nested(60)).is_ok());
    let deep = parse_filter(&nested(1000)).unwrap_err();
    assert!(matches!(deep, ParseError::TooDeep { .. }));
    assert_eq!(deep.to_string(), "filter nested too deeply");
    assert!(matches!(
        parse_filter(&"not ".repeat(100)),
        Err(ParseError::TooDeep { .. })
    ));
    let chain = vec!["a eq 1"; 100].join(" and ");
    assert!(matches!(
        parse_filter(&chain),
        Err(ParseError::TooDeep { .. })
    ));
    let tight = ParseLimits {
        max_len: 10,
        max_depth: 2,
    };
    assert!(parse_filter_with("a eq 1", &tight).is_ok());
    assert!(matches!(
        parse_filter_with(
            "((a))",
            &ParseLimits {
                max_depth: 1,
                ..tight.clone()
            }
        ),
        Err(ParseError::TooDeep { .. })
    ));
    assert!(matches!(
        parse_filter_with("a eq 12345678", &tight),
        Err(ParseError::TooLong { .. })
    ));
    // A long but shallow filter within the length limit parses.
    let wide = vec!["a eq 1"; 30].join(" and ");
    assert!(parse_filter(&wide).is_ok());
}

#[test]
fn binary_operator_keywords_round_trip() {
    let ops = [
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
    ];
    for op in ops {
        let expr = Expr::Binary {
            op,
            left: Box::new(col("a")),
            right: Box::new(lit(1)),
        };
        check_parse(&format!("a {} 1", op.keyword()), &expr);
    }
    for func in Function::ALL {
        assert_eq!(Function::from_name(func.name()), Some(func));
    }
}

#[test]
fn order_by_and_select() {
    use tidesync_protocol::OrderBy;
    let order = |m: &str, descending: bool| OrderBy {
        member: m.into(),
        descending,
    };
    assert_eq!(
        parse_order_by("text desc,id").unwrap(),
        vec![order("text", true), order("id", false)]
    );
    assert_eq!(
        parse_order_by(" updatedAt asc , id  desc").unwrap(),
        vec![order("updatedAt", false), order("id", true)]
    );
    assert_eq!(parse_order_by("").unwrap(), vec![]);
    let errors = [
        ("a,", "expected a property name at 2"),
        ("a up", "expected 'asc' or 'desc' at 2"),
        ("a desc b", "expected ',' or the end at 7"),
        ("a-b", "'a-b' is not a property name at 0"),
    ];
    for (input, message) in errors {
        assert_eq!(
            parse_order_by(input).unwrap_err().to_string(),
            message,
            "{input}"
        );
    }
    assert_eq!(parse_select("id,text").unwrap(), vec!["id", "text"]);
    assert_eq!(parse_select(" id , text ").unwrap(), vec!["id", "text"]);
    assert_eq!(
        parse_select("id,,text").unwrap_err().to_string(),
        "expected a property name at 3"
    );
    assert_eq!(
        parse_select("id text").unwrap_err().to_string(),
        "expected ',' or the end at 3"
    );
}
