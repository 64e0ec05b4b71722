//! The hostile-input suite, part one: the server binary attacked over HTTP on SQLite and on
//! PostgreSQL with costly queries, bad bodies and queries, schema pollution, forged or
//! stretched credentials, another user's op ids and write floods against the clock.
//!
//! Each attack is run through `Hostile::attack`: answered with the expected 4xx/503 within
//! the bound, the server alive, the database unchanged; the server's peak memory is checked
//! at the end. Connections, read slots, cancellation and PostgreSQL contention are in
//! `hostile_net.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::cases;
use common::hostile::{Backend, Hostile, SECRET, refused_start, token};
use serde_json::{Value, json};

const T: &str = "/tables/TodoItem";

/// The server every case here attacks: small bounds, so that attacks hit them quickly.
fn config() -> String {
    format!(
        "body_limit_bytes = 1048576
[batch]
max_operations = 1000
[limits]
query_timeout_ms = 100
max_string_bytes = 1048576
max_string_growth = 4096
max_json_values = 20000
[schema]
max_new_columns_per_write = 4
[auth]
jwt_secret = \"{SECRET}\"
max_token_lifetime_secs = 3600
[[tables]]
name = \"TodoItem\"
[[tables]]
name = \"Members\"
access = \"authenticated\"
"
    )
}

/// `length(replace(…(text,'a','aaaa')…)) eq 1`, `depth` replaces deep: growth `4^depth`.
fn replaces(depth: usize) -> String {
    let mut expr = "text".to_owned();
    for _ in 0..depth {
        expr = format!("replace({expr},'a','aaaa')");
    }
    format!("length({expr}) eq 1")
}

/// 2,000 rows of 1 KB, and the row whose columns the bad bodies are judged against.
async fn seed(server: &Hostile) {
    let r = server.json("POST", T, &[], &cases::seed_row()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    server.seed_text_rows(2000, 1024).await;
}

fn assert_limit(r: &common::Resp, status: u16, limit: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text);
    assert_eq!(r.body["limit"], limit, "{what}: {}", r.text);
    assert!(r.body["error"].is_string(), "{what}: {}", r.text);
    if status == 503 {
        assert!(r.header("retry-after").is_some(), "{what}: no Retry-After");
    }
}

/// Item 1: a filter over its cost budget is refused before it runs; a string past the
/// SQLite length cap is refused; a query past its deadline is stopped.
async fn costly_queries(server: &Hostile) {
    let get = |filter: String| async move {
        server
            .get(&format!("{T}?$filter={}", cases::escaped(&filter)), &[])
            .await
    };
    let r = server.attack("growth 4^7 > 4096", get(replaces(7))).await;
    assert_limit(&r, 400, "limits.max_string_growth", "growth");
    let r = server
        .attack(
            "a replacement that is not a literal",
            get("replace(text,'a',text) eq 'x'".to_owned()),
        )
        .await;
    assert_limit(&r, 400, "limits.max_string_growth", "non-literal");
    // 4 MB strings: past SQLite's length cap (1 MB here); PostgreSQL has none and runs into
    // the deadline instead.
    let r = server.attack("4 MB strings", get(replaces(6))).await;
    match server.backend {
        Backend::Sqlite => assert_limit(&r, 400, "limits.max_string_bytes", "cap"),
        Backend::Postgres => assert_limit(&r, 503, "limits.query_timeout_ms", "cap"),
    }
    // Within every budget, but 2,000 rows of 256 KB strings take far longer than 100 ms.
    let r = server.attack("past the deadline", get(replaces(4))).await;
    assert_limit(&r, 503, "limits.query_timeout_ms", "deadline");
    let r = server
        .attack(
            "the same with a count",
            server.get(
                &format!("{T}?$count=true&$filter={}", cases::escaped(&replaces(4))),
                &[],
            ),
        )
        .await;
    assert_limit(&r, 503, "limits.query_timeout_ms", "deadline with count");
    // What is cheap still runs.
    let r = get(replaces(1).replace("eq 1", "gt 0")).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// The earlier bad-input cases, and bodies past the JSON value bound.
async fn bad_input(server: &Hostile) {
    let v2 = [
        ("zumo-api-version", "2.0.0"),
        ("content-type", "application/json"),
    ];
    for (body, what) in cases::BAD_BODIES {
        let r = server
            .attack(
                what,
                server.send("POST", T, &v2, Some(body.as_bytes().to_vec())),
            )
            .await;
        assert_eq!(r.status, 400, "{what}: {}", r.text);
    }
    for query in cases::bad_queries() {
        for version in ["2.0.0", "3.0.0"] {
            let path = format!("{T}?{}", cases::escaped(&query));
            let r = server
                .attack(
                    &query,
                    server.send("GET", &path, &[("zumo-api-version", version)], None),
                )
                .await;
            assert_eq!(r.status, 400, "{version} {query}: {}", r.text);
        }
    }
    for filter in cases::ODD_FILTERS {
        let path = format!("{T}?$filter={}", cases::escaped(filter));
        let r = server.attack(filter, server.get(&path, &[])).await;
        assert!(r.status < 500, "{filter}: {} {}", r.status, r.text);
    }
    let zeros = format!("{{\"id\":\"z\",\"list\":[{}0]}}", "0,".repeat(100_000));
    let r = server
        .attack(
            "100,000 JSON values",
            server.send("POST", T, &v2, Some(zeros.into_bytes())),
        )
        .await;
    assert_limit(&r, 413, "limits.max_json_values", "values");
    let deep = format!(
        "{{\"id\":\"d\",\"x\":{}1{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let r = server
        .attack(
            "nested 5,000 deep",
            server.send("POST", T, &v2, Some(deep.into_bytes())),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
}

/// Item 2 (the write path's schema rules): a refused write adds no column; a write over the
/// per-write column cap is refused whole.
async fn schema_pollution(server: &Hostile) {
    let conflict = json!({"id": "ok", "brand_new": 1, "other_new": "x"});
    let r = server
        .attack(
            "a conflicting insert with new properties",
            server.json("POST", T, &[], &conflict),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    let stale = json!({"id": "ok", "text": "x", "new_on_412": true});
    let r = server
        .attack(
            "a stale update with new properties",
            server.json(
                "PUT",
                &format!("{T}/ok"),
                &[("if-match", "\"AAAAAAAAAAA=\"")],
                &stale,
            ),
        )
        .await;
    assert_eq!(r.status, 412, "{}", r.text);
    let mut wide = json!({"id": "wide"});
    for n in 0..5 {
        wide[format!("c{n}")] = json!(n);
    }
    let r = server
        .attack(
            "five new columns, four allowed",
            server.json("POST", T, &[], &wide),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
}

/// Item 3: credentials before tables, every extension behind the table's rules, tokens that
/// stretch the rules refused.
async fn credentials(server: &Hostile) {
    let alice = token("sid:alice", json!({}));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let bad_tokens = [
        (
            "a token valid from next hour",
            token("sid:a", json!({"nbf": now + 3600})),
        ),
        ("an empty sub", token("", json!({}))),
        (
            "ten years",
            token("sid:a", json!({"exp": now + 315_360_000})),
        ),
        (
            "ten years without iat",
            token("sid:a", json!({"iat": null, "exp": now + 315_360_000})),
        ),
        (
            "issued a day ago",
            token("sid:a", json!({"iat": now - 86_400})),
        ),
        ("not a token", "garbage".to_owned()),
    ];
    for (what, token) in &bad_tokens {
        let r = server
            .attack(
                what,
                server.get("/tables/Members", &[("x-zumo-auth", token)]),
            )
            .await;
        assert_eq!(r.status, 401, "{what}: {}", r.text);
    }
    // Without credentials, a table that does not exist looks like one that needs them.
    for path in [
        "/tables/NoSuchTable",
        "/tables/Members",
        "/tidesync/v1/tables/Members/horizon",
        "/tidesync/v1/tables/NoSuchTable/horizon",
        "/tidesync/v1/tables/NoSuchTable/snapshot",
        "/tidesync/v1/tables/Members/snapshot",
        "/tidesync/v1/feed?tables=NoSuchTable",
    ] {
        let r = server.attack(path, server.get(path, &[])).await;
        assert_eq!(r.status, 401, "{path}: {}", r.text);
    }
    let bearer = [("x-zumo-auth", alice.as_str())];
    let r = server.get("/tables/NoSuchTable", &bearer).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = server
        .get("/tidesync/v1/tables/Members/horizon", &bearer)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A token in the feed's query string (browsers cannot set headers) is a credential too.
    let r = server
        .get(
            &format!("/tidesync/v1/feed?tables=NoSuchTable&access_token={alice}"),
            &[],
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    // The capabilities name only the tables the caller may read.
    let names = |r: &common::Resp| -> Vec<String> {
        r.body["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = server.get("/tidesync/v1/capabilities", &[]).await;
    assert_eq!(names(&r), ["TodoItem"]);
    let r = server.get("/tidesync/v1/capabilities", &bearer).await;
    assert_eq!(names(&r), ["TodoItem", "Members"]);
}

/// Item 3: a feed opened with a token ends when the token expires.
async fn feed_ends_with_its_token(server: &Hostile) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = token("sid:alice", json!({"exp": now + 2}));
    let mut stream = server.connect().await;
    let request = format!(
        "GET /tidesync/v1/feed?tables=Members HTTP/1.1\r\nhost: x\r\nx-zumo-auth: {token}\r\n\r\n"
    );
    Hostile::write_raw(&mut stream, request.as_bytes()).await;
    let sent = server
        .attack(
            "a feed whose token expires",
            Hostile::until_response_end(&mut stream),
        )
        .await;
    let sent = String::from_utf8_lossy(&sent);
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent}");
    assert!(
        sent.ends_with("\r\n0\r\n\r\n"),
        "the stream did not end: {sent}"
    );
}

/// Item 4: one user's op ids neither answer nor overwrite another's.
async fn op_ids_are_scoped(server: &Hostile) {
    let alice = token("sid:alice", json!({}));
    let bob = token("sid:bob", json!({}));
    let op = |item: &str, text: &str| {
        vec![json!({"id": "op-1", "kind": "insert", "table": "TodoItem",
                    "itemId": item, "item": {"text": text}})]
    };
    let first = server
        .batch(op("alice-1", "a"), &[("x-zumo-auth", &alice)])
        .await;
    assert_eq!(first.body["results"][0]["status"], 201, "{}", first.text);
    let r = server
        .batch(op("bob-1", "b"), &[("x-zumo-auth", &bob)])
        .await;
    assert_eq!(r.body["results"][0]["status"], 201, "{}", r.text);
    // Bob reusing Alice's op id with Alice's content gets no answer of hers.
    let r = server
        .batch(op("alice-1", "a"), &[("x-zumo-auth", &bob)])
        .await;
    assert_eq!(r.body["results"][0]["status"], 409, "{}", r.text);
    let again = server
        .attack(
            "alice resends her batch",
            server.batch(op("alice-1", "a"), &[("x-zumo-auth", &alice)]),
        )
        .await;
    assert_eq!(again.body, first.body, "alice's remembered answer");
}

/// Item 6: a flood of updates does not push `updatedAt` past the wall clock.
async fn clock_is_not_pushed_ahead(server: &Hostile) {
    for round in 0..4 {
        let ops: Vec<Value> = (0..1000)
            .map(|n| {
                json!({"id": format!("u{round}-{n}"), "kind": "update", "table": "TodoItem",
                       "itemId": format!("r{n:04}"), "item": {"text": format!("round {round}")}})
            })
            .collect();
        let r = server.batch(ops, &[]).await;
        assert_eq!(r.status, 200);
    }
    let now = time::OffsetDateTime::now_utc();
    let r = server
        .get(&format!("{T}?$orderby=updatedAt%20desc&$top=1"), &[])
        .await;
    let newest = r.body["items"][0]["updatedAt"].as_str().unwrap().to_owned();
    let newest = tidesync_protocol::parse_timestamp(&newest).unwrap();
    assert!(
        newest <= now,
        "4,000 updates stamped {newest}, after the wall clock's {now}"
    );
}

async fn suite(backend: Backend, test: &str) {
    let Some(server) = Hostile::start(backend, test, &config(), &[("RUST_LOG", "trace")]).await
    else {
        return;
    };
    seed(&server).await;
    costly_queries(&server).await;
    bad_input(&server).await;
    schema_pollution(&server).await;
    credentials(&server).await;
    feed_ends_with_its_token(&server).await;
    op_ids_are_scoped(&server).await;
    clock_is_not_pushed_ahead(&server).await;
    server.assert_memory_bounded(test);
    // Tokens travelled in headers and in the feed's query string: none is in the log, even
    // at the trace level.
    let log = server.log();
    assert!(
        log.contains("DEBUG"),
        "the server did not log verbosely: {}",
        &log[..log.len().min(2000)]
    );
    assert!(!log.contains(SECRET), "the secret is in the log");
    // Every token starts with the base64 of `{"`.
    let leaked: Vec<&str> = log.lines().filter(|l| l.contains("eyJ")).collect();
    assert!(leaked.is_empty(), "tokens in the log: {leaked:?}");
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_on_sqlite() {
    suite(Backend::Sqlite, "hostile").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_on_postgres() {
    suite(Backend::Postgres, "hostile").await;
}

#[test]
fn weak_credentials_stop_the_server_at_start() {
    let short = "golden-secret";
    for (config, args, says) in [
        ("", vec!["--api-key", ""], "the API key is empty"),
        ("", vec!["--jwt-secret", short], "at least 32"),
        ("", vec!["--jwt-secret", ""], "at least 32"),
        ("[auth]\napi_key = \"\"\n", vec![], "the API key is empty"),
    ] {
        let (code, stderr) = refused_start(config, &args);
        assert!(matches!(code, Some(c) if c != 0), "{args:?}: exit {code:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
