//! Generated `$filter`s against the OData parser and the SQL translation of both stores:
//! grammar-shaped expressions over the table's columns, unknown names, every function with
//! any arguments, odd literals, and raw noise. Whatever comes in, the server never panics,
//! never answers 5xx except `503` for a query it stopped at its deadline (naming the limit),
//! and answers within the harness's bound: no filter costs more than the budget. On a
//! tenant-scoped table no filter shows a caller another tenant's row.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, Resp};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::json;
use tidesync_protocol::odata::parse_filter;
use tidesync_server::{Limits, Server, ServerBuilder};

const MEMBERS: &[&str] = &[
    "text",
    "n",
    "x",
    "complete",
    "due",
    "id",
    "createdAt",
    "updatedAt",
    "version",
    "deleted",
    "nosuch",
    "Text",
    "tenantId",
];
const OPERATORS: &[&str] = &[
    "eq", "ne", "gt", "ge", "lt", "le", "and", "or", "add", "sub", "mul", "div", "mod",
];
const FUNCTIONS: &[&str] = &[
    "substringof",
    "contains",
    "startswith",
    "endswith",
    "tolower",
    "toupper",
    "trim",
    "length",
    "indexof",
    "substring",
    "concat",
    "replace",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "round",
    "floor",
    "ceiling",
    "nosuchfunction",
];

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(MEMBERS).prop_map(str::to_owned),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        "[a-zé' %_]{0,6}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("datetimeoffset'2026-01-01T00:00:00Z'".to_owned()),
        Just("'2026-01-01T00:00:00.000Z'".to_owned()),
        Just("99999999999999999999".to_owned()),
    ]
}

fn expression() -> impl Strategy<Value = String> {
    leaf().prop_recursive(6, 48, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                proptest::sample::select(OPERATORS),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            (
                proptest::sample::select(FUNCTIONS),
                proptest::collection::vec(inner.clone(), 0..4)
            )
                .prop_map(|(f, args)| format!("{f}({})", args.join(","))),
            inner.clone().prop_map(|a| format!("not {a}")),
            inner.clone().prop_map(|a| format!("-{a}")),
            (inner, proptest::collection::vec(leaf(), 0..3))
                .prop_map(|(a, list)| format!("{a} in ({})", list.join(","))),
        ]
    })
}

fn string_literal() -> impl Strategy<Value = String> {
    "[a-zé' %_]{0,5}".prop_map(|s| format!("'{}'", s.replace('\'', "''")))
}

/// Well-typed string expressions over `text` (so that most reach the database).
fn text_expr(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        Just("text".to_owned()),
        Just("id".to_owned()),
        string_literal()
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    let inner = text_expr(depth - 1);
    prop_oneof![
        2 => leaf,
        1 => (proptest::sample::select(&["tolower", "toupper", "trim"][..]), inner.clone())
            .prop_map(|(f, a)| format!("{f}({a})")),
        1 => (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("concat({a},{b})")),
        1 => (inner.clone(), number_expr(0)).prop_map(|(a, n)| format!("substring({a},{n})")),
        1 => (inner, string_literal(), string_literal())
            .prop_map(|(a, b, c)| format!("replace({a},{b},{c})")),
    ]
    .boxed()
}

/// Well-typed numeric expressions.
fn number_expr(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        Just("n".to_owned()),
        Just("x".to_owned()),
        any::<i32>().prop_map(|i| i.to_string()),
        Just("0".to_owned()),
        Just("1.5".to_owned()),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    let inner = number_expr(depth - 1);
    prop_oneof![
        2 => leaf,
        1 => (inner.clone(), proptest::sample::select(&["add", "sub", "mul", "div", "mod"][..]), inner.clone())
            .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
        1 => (proptest::sample::select(&["round", "floor", "ceiling"][..]), inner)
            .prop_map(|(f, a)| format!("{f}({a})")),
        1 => text_expr(depth - 1).prop_map(|a| format!("length({a})")),
        1 => (text_expr(depth - 1), string_literal()).prop_map(|(a, b)| format!("indexof({a},{b})")),
        1 => proptest::sample::select(&["year", "month", "day", "hour", "minute", "second"][..])
            .prop_map(|f| format!("{f}(due)")),
    ]
    .boxed()
}

/// Well-typed conditions.
fn condition(depth: u32) -> BoxedStrategy<String> {
    let compare = prop_oneof![
        (
            text_expr(depth),
            proptest::sample::select(&["eq", "ne", "gt", "le"][..]),
            text_expr(depth)
        )
            .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        (
            number_expr(depth),
            proptest::sample::select(&["eq", "ne", "gt", "ge", "lt", "le"][..]),
            number_expr(depth)
        )
            .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        (
            proptest::sample::select(&["startswith", "endswith", "contains", "substringof"][..]),
            text_expr(depth),
            text_expr(depth)
        )
            .prop_map(|(f, a, b)| format!("{f}({a},{b})")),
        Just("complete".to_owned()),
        Just("due gt datetimeoffset'2026-01-01T00:00:00Z'".to_owned()),
        Just("updatedAt ge '2026-01-01T00:00:00.000Z'".to_owned()),
        (
            number_expr(depth),
            proptest::collection::vec(any::<i16>(), 0..3)
        )
            .prop_map(|(a, l)| format!(
                "{a} in ({})",
                l.iter().map(i16::to_string).collect::<Vec<_>>().join(",")
            )),
    ];
    if depth == 0 {
        return compare.boxed();
    }
    let inner = condition(depth - 1);
    prop_oneof![
        3 => compare,
        1 => (inner.clone(), proptest::sample::select(&["and", "or"][..]), inner.clone())
            .prop_map(|(a, op, b)| format!("({a}) {op} ({b})")),
        1 => inner.prop_map(|a| format!("not ({a})")),
    ]
    .boxed()
}

/// A filter: well-typed conditions, grammar-shaped expressions of any types, and noise.
fn filter() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => condition(2),
        4 => expression(),
        1 => "[ -~]{0,40}",
        1 => (expression(), "[()',a-z ]{1,4}").prop_map(|(e, cut)| format!("{e}{cut}")),
    ]
}

fn server() -> ServerBuilder {
    Server::builder().table("TodoItem").limits(Limits {
        query_timeout_ms: 300,
        ..Limits::default()
    })
}

async fn seed(c: &Client) {
    for (n, item) in [
        json!({"id": "a", "text": "alpha", "n": 1, "x": 0.5, "complete": true,
               "due": "2026-03-01T10:00:00.000Z"}),
        json!({"id": "b", "text": "b'é%_", "n": -2, "x": -2.5, "complete": false}),
        json!({"id": "c", "text": "a".repeat(2000), "n": 9_007_199_254_740_993_i64}),
    ]
    .into_iter()
    .enumerate()
    {
        let r = c.v3("POST", "/tables/TodoItem", &[], Some(item)).await;
        assert_eq!(r.status, 201, "seed {n}: {}", r.text);
    }
}

async fn check(c: &Client, filter: &str) -> Result<(), TestCaseError> {
    let encoded = utf8_percent_encode(filter, NON_ALPHANUMERIC).to_string();
    for (version, path) in [
        ("3.0.0", format!("/tables/TodoItem?$filter={encoded}")),
        (
            "2.0.0",
            format!("/tables/TodoItem?$filter={encoded}&$count=true"),
        ),
        (
            "3.0.0",
            format!("/tidesync/v1/tables/TodoItem/snapshot?$filter={encoded}"),
        ),
    ] {
        let r: Resp = tokio::time::timeout(
            common::hostile::BOUND,
            c.send("GET", &path, &[("zumo-api-version", version)], None),
        )
        .await
        .map_err(|_| TestCaseError::fail(format!("no answer within the bound: {filter}")))?;
        prop_assert!(
            matches!(r.status, 200 | 400 | 503),
            "{filter} ({version}): {} {}",
            r.status,
            r.text
        );
        if r.status == 503 {
            prop_assert_eq!(&r.body["limit"], "limits.query_timeout_ms", "{}", r.text);
        }
        if r.status == 400 {
            prop_assert!(r.body["error"].is_string(), "{}: {}", filter, r.text);
        }
    }
    Ok(())
}

fn run(client: Client, runtime: &tokio::runtime::Runtime, cases: u32) {
    runtime.block_on(seed(&client));
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&filter(), |filter| {
            runtime.block_on(check(&client, &filter))
        })
        .unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn generated_filters_never_fail_the_server_on_sqlite() {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let app = runtime
        .block_on(server().sqlite(dir.path().join("fuzz.db")).build())
        .unwrap();
    run(
        Client {
            router: app.router(),
        },
        &runtime,
        256,
    );
}

#[test]
fn generated_filters_never_fail_the_server_on_postgres() {
    let runtime = runtime();
    let Some((client, schema)) = runtime.block_on(common::postgres_client(server(), "fuzz")) else {
        return;
    };
    run(client, &runtime, 128);
    runtime.block_on(common::drop_pg_schema(&schema));
}

/// A tenant-scoped table (`tenantId` from the `tid` claim) where tenant `t1` holds `a`..`c`
/// and tenant `t2` holds `d`..`f`.
fn tenant_server() -> ServerBuilder {
    Server::builder()
        .table_config(
            tidesync_server::TableConfig::new("TodoItem")
                .access(tidesync_server::Access::Authenticated)
                .scope("tenantId", "tid"),
        )
        .jwt_secret(common::hostile::SECRET)
        .limits(Limits {
            query_timeout_ms: 300,
            ..Limits::default()
        })
}

fn tenant_token(tid: &str) -> String {
    common::hostile::token(&format!("user-{tid}"), json!({ "tid": tid }))
}

async fn seed_tenants(c: &Client) {
    for (tid, ids) in [("t1", ["a", "b", "c"]), ("t2", ["d", "e", "f"])] {
        let token = tenant_token(tid);
        for (n, id) in ids.into_iter().enumerate() {
            let item = json!({"id": id, "text": format!("{id}'é%_"), "n": n, "x": 0.5,
                              "complete": n == 1, "due": "2026-03-01T10:00:00.000Z"});
            let r = c
                .v3(
                    "POST",
                    "/tables/TodoItem",
                    &[("x-zumo-auth", &token)],
                    Some(item),
                )
                .await;
            assert_eq!(r.status, 201, "seed {id}: {}", r.text);
        }
    }
}

/// As tenant `t1`: whatever the filter, an answer of 200, 400 or 503 that holds none of
/// `t2`'s rows (lists, counts and the snapshot).
async fn check_tenant(c: &Client, token: &str, filter: &str) -> Result<(), TestCaseError> {
    let encoded = utf8_percent_encode(filter, NON_ALPHANUMERIC).to_string();
    for (version, path) in [
        (
            "3.0.0",
            format!("/tables/TodoItem?$filter={encoded}&$count=true"),
        ),
        (
            "2.0.0",
            format!("/tables/TodoItem?$filter={encoded}&$inlinecount=allpages"),
        ),
        (
            "3.0.0",
            format!("/tidesync/v1/tables/TodoItem/snapshot?$filter={encoded}"),
        ),
    ] {
        let headers = [("zumo-api-version", version), ("x-zumo-auth", token)];
        let r: Resp =
            tokio::time::timeout(common::hostile::BOUND, c.send("GET", &path, &headers, None))
                .await
                .map_err(|_| {
                    TestCaseError::fail(format!("no answer within the bound: {filter}"))
                })?;
        prop_assert!(
            matches!(r.status, 200 | 400 | 503),
            "{filter}: {} {}",
            r.status,
            r.text
        );
        if r.status != 200 {
            continue;
        }
        let ids: Vec<String> = if path.contains("snapshot") {
            r.text
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter_map(|row| row["id"].as_str().map(str::to_owned))
                .collect()
        } else {
            r.ids()
        };
        prop_assert!(
            ids.iter().all(|id| ["a", "b", "c"].contains(&id.as_str())),
            "{filter} ({version}) leaked another tenant's row: {ids:?}"
        );
        let count = r.body["count"].as_u64().unwrap_or(0);
        prop_assert!(
            count <= 3,
            "{filter}: count {count} includes another tenant"
        );
    }
    Ok(())
}

fn run_tenants(client: Client, runtime: &tokio::runtime::Runtime, cases: u32) {
    runtime.block_on(seed_tenants(&client));
    let token = tenant_token("t1");
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&filter(), |filter| {
            runtime.block_on(check_tenant(&client, &token, &filter))
        })
        .unwrap();
}

#[test]
fn generated_filters_never_cross_a_tenant_on_sqlite() {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let app = runtime
        .block_on(
            tenant_server()
                .sqlite(dir.path().join("tenants.db"))
                .build(),
        )
        .unwrap();
    let client = Client {
        router: app.router(),
    };
    run_tenants(client, &runtime, 256);
}

#[test]
fn generated_filters_never_cross_a_tenant_on_postgres() {
    let runtime = runtime();
    let Some((client, schema)) =
        runtime.block_on(common::postgres_client(tenant_server(), "fuzz_tenants"))
    else {
        return;
    };
    run_tenants(client, &runtime, 128);
    runtime.block_on(common::drop_pg_schema(&schema));
}

proptest! {
    #![proptest_config(Config { cases: 2000, failure_persistence: None, ..Config::default() })]

    /// The parser alone, on anything: an expression or an error, never a panic.
    #[test]
    fn the_parser_takes_any_text(text in filter()) {
        let _ = parse_filter(&text);
    }
}
