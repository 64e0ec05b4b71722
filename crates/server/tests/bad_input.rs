//! Bad input gets a 4xx with a JSON error naming the problem: never a 5xx, never a partial write.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, cases, golden_builder};
use serde_json::json;
use tidesync_server::ServerConfig;

const T: &str = "/tables/TodoItem";

async fn client(dir: &tempfile::TempDir) -> Client {
    let app = golden_builder()
        .sqlite(dir.path().join("bad.db"))
        .build()
        .await
        .unwrap();
    Client {
        router: app.router(),
    }
}

async fn row_count(c: &Client) -> usize {
    let r = c
        .v2(
            "GET",
            &format!("{T}?__includeDeleted=true&$top=1000"),
            &[],
            None,
        )
        .await;
    r.body.as_array().unwrap().len()
}

#[tokio::test]
async fn bad_bodies_are_400_or_415_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = client(&dir).await;
    let r = c
        .v2(
            "POST",
            T,
            &[],
            Some(json!({"id":"ok","text":"t","complete":false})),
        )
        .await;
    assert_eq!(r.status, 201);

    let v2 = [
        ("zumo-api-version", "2.0.0"),
        ("content-type", "application/json"),
    ];
    for (body, what) in cases::BAD_BODIES {
        let r = c.send("POST", T, &v2, Some(body)).await;
        assert_eq!(r.status, 400, "{what}: {}", r.text);
        assert!(r.body["error"].is_string(), "{what}: {}", r.text);
    }
    let long_id = "x".repeat(256);
    let r = c.v2("POST", T, &[], Some(json!({"id": long_id}))).await;
    assert_eq!(r.status, 400, "{}", r.text);

    let r = c
        .send(
            "POST",
            T,
            &[
                ("zumo-api-version", "2.0.0"),
                ("content-type", "text/plain"),
            ],
            Some("{}"),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .send(
            "POST",
            T,
            &[
                ("zumo-api-version", "3.0.0"),
                ("content-type", "text/plain"),
            ],
            Some("{}"),
        )
        .await;
    assert_eq!(r.status, 415);

    let r = c
        .v2(
            "PATCH",
            &format!("{T}/ok"),
            &[],
            Some(json!({"complete": 3})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = c
        .v3(
            "PUT",
            &format!("{T}/ok"),
            &[],
            Some(json!({"text": "no id"})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(row_count(&c).await, 1);
}

#[tokio::test]
async fn bad_queries_are_400() {
    let dir = tempfile::tempdir().unwrap();
    let c = client(&dir).await;
    c.v2(
        "POST",
        T,
        &[],
        Some(json!({"id":"a","text":"t","complete":false,"n":1})),
    )
    .await;
    for query in cases::bad_queries() {
        let query = cases::escaped(&query);
        let r = c.v2("GET", &format!("{T}?{query}"), &[], None).await;
        assert_eq!(r.status, 400, "{query}: {}", r.text);
        assert!(r.body["error"].is_string(), "{query}");
        let r = c.v3("GET", &format!("{T}?{query}"), &[], None).await;
        assert_eq!(r.status, 400, "v3 {query}: {}", r.text);
    }
    // Division by zero and big numbers are not server errors.
    for filter in cases::ODD_FILTERS {
        let filter = cases::escaped(filter);
        let r = c
            .v2("GET", &format!("{T}?$filter={filter}"), &[], None)
            .await;
        assert!(r.status < 500, "{filter}: {} {}", r.status, r.text);
    }
}

#[tokio::test]
async fn unknown_tables_routes_and_verbs() {
    let dir = tempfile::tempdir().unwrap();
    let c = client(&dir).await;
    // To a caller without a token an unknown table looks like one that needs a user.
    let r = c.v2("GET", "/tables/NoSuchTable", &[], None).await;
    assert_eq!(r.status, 401);
    let alice = common::token("sid:alice");
    let r = c
        .v2(
            "GET",
            "/tables/NoSuchTable",
            &[("x-zumo-auth", &alice)],
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    assert!(r.body["error"].as_str().unwrap().contains("NoSuchTable"));
    let r = c.v2("DELETE", T, &[], None).await;
    assert_eq!(r.status, 405);
    let r = c.v2("GET", "/nowhere", &[], None).await;
    assert_eq!(r.status, 404);
    let r = c.v2("GET", &format!("{T}/a%2Fb"), &[], None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = c
        .send("GET", T, &[("zumo-api-version", "4.0.0")], None)
        .await;
    assert_eq!(r.status, 400);
    assert!(r.header("x-request-id").is_some());
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        body_limit_bytes: 1024,
        ..ServerConfig::default()
    };
    let app = golden_builder()
        .config(config)
        .table("TodoItem")
        .sqlite(dir.path().join("l.db"))
        .build()
        .await
        .unwrap();
    let c = Client {
        router: app.router(),
    };
    let big = json!({"id": "big", "text": "x".repeat(2048)});
    let r = c.v2("POST", T, &[], Some(big)).await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert!(r.body["error"].is_string());
    assert_eq!(row_count(&c).await, 0);
}

#[tokio::test]
async fn default_limit_is_ten_mebibytes() {
    let dir = tempfile::tempdir().unwrap();
    let c = client(&dir).await;
    let big = json!({"id": "big", "text": "x".repeat(10 * 1024 * 1024 + 10)});
    let r = c.v2("POST", T, &[], Some(big)).await;
    assert_eq!(r.status, 413);
    let fits = json!({"id": "fits", "text": "x".repeat(1024 * 1024)});
    let r = c.v2("POST", T, &[], Some(fits)).await;
    assert_eq!(r.status, 201);
}
