#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Tombstone retention (purge, the `x-tidesync-purged-before` header, the horizon endpoint),
//! CORS for browser clients and the lenient version mode (spec 2.2, 2.3; issue 5 items 1, 8).
//! The purge is triggered deterministically through the store's `purge_deleted`; the
//! background purge of a served app is checked with a bounded wait.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tidesync_protocol::parse_timestamp;
use tidesync_server::store::{now_ms, time_to_ms};
use tidesync_server::{Server, ServerBuilder, ServerConfig, Store};

use common::{Client, Resp, drop_pg_schema, pg_schema, pg_url};

const HEADER: &str = "x-tidesync-purged-before";

fn client(app: &tidesync_server::App) -> Client {
    Client {
        router: app.router(),
    }
}

fn ms(text: &str) -> i64 {
    time_to_ms(parse_timestamp(text).expect("a timestamp"))
}

/// The item with `id` in a v3 page, if present.
fn find<'a>(page: &'a Resp, id: &str) -> Option<&'a Value> {
    page.body["items"]
        .as_array()
        .expect("a v3 page")
        .iter()
        .find(|item| item["id"] == id)
}

/// The retention case on any store: `TodoItem` gets a purge, `Other` does not.
async fn retention_case(client: &Client, store: &Arc<dyn Store>) {
    for id in ["gone", "live", "recent"] {
        let r = client
            .v3(
                "POST",
                "/tables/TodoItem",
                &[],
                Some(json!({ "id": id, "text": id })),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = client
        .v3("POST", "/tables/Other", &[], Some(json!({ "id": "o1" })))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = client
        .v3("DELETE", "/tables/TodoItem/gone", &[], None)
        .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    let r = client.v3("DELETE", "/tables/Other/o1", &[], None).await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);

    // Before any purge: the tombstone is there, no header, no horizon.
    let all = client
        .v3("GET", "/tables/TodoItem?__includedeleted=true", &[], None)
        .await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(all.header(HEADER), None);
    let gone = find(&all, "gone").expect("the tombstone before the purge");
    assert_eq!(gone["deleted"], true);
    let gone_ms = ms(gone["updatedAt"].as_str().unwrap());
    let h = client
        .send("GET", "/tidesync/v1/tables/TodoItem/horizon", &[], None)
        .await;
    assert_eq!(h.status, 200, "{}", h.text);
    assert_eq!(h.body["purgedBefore"], Value::Null);

    // One purge pass removing tombstones written up to the deleted row.
    let removed = store.purge_deleted("TodoItem", gone_ms + 1).await.unwrap();
    assert_eq!(removed, 1);

    // A later soft delete stays (younger than the horizon: `updatedAt` is strictly
    // increasing per table, so it is stamped at `gone_ms + 1` or later); live rows stay.
    let r = client
        .v3("DELETE", "/tables/TodoItem/recent", &[], None)
        .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);

    let all = client
        .v3("GET", "/tables/TodoItem?__includedeleted=true", &[], None)
        .await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert!(find(&all, "gone").is_none(), "purged row still listed");
    assert!(find(&all, "live").is_some());
    assert_eq!(
        find(&all, "recent").expect("younger tombstone")["deleted"],
        true
    );
    let header = all.header(HEADER).expect("the purged-before header");
    assert!(
        ms(header) >= gone_ms,
        "{header} < the purged row's updatedAt"
    );

    let live = client.v3("GET", "/tables/TodoItem", &[], None).await;
    assert_eq!(live.ids(), vec!["live".to_owned()]);
    assert_eq!(live.header(HEADER), Some(header));
    let v2 = client
        .v2("GET", "/tables/TodoItem?__includedeleted=true", &[], None)
        .await;
    assert_eq!(v2.status, 200, "{}", v2.text);
    assert_eq!(v2.header(HEADER), Some(header));
    assert!(!v2.ids().contains(&"gone".to_owned()));

    let one = client
        .v3(
            "GET",
            "/tables/TodoItem/gone?__includedeleted=true",
            &[],
            None,
        )
        .await;
    assert_eq!(one.status, 404, "{}", one.text);

    let h = client
        .send("GET", "/tidesync/v1/tables/TodoItem/horizon", &[], None)
        .await;
    assert_eq!(h.status, 200, "{}", h.text);
    let purged = h.body["purgedBefore"].as_str().expect("a horizon");
    assert!(ms(purged) >= gone_ms);
    assert_eq!(ms(purged), ms(header));

    // A table without purges: its tombstone stays, no header, no horizon.
    let other = client
        .v3("GET", "/tables/Other?__includedeleted=true", &[], None)
        .await;
    assert_eq!(other.status, 200, "{}", other.text);
    assert_eq!(other.header(HEADER), None);
    assert!(find(&other, "o1").is_some());
    let h = client
        .send("GET", "/tidesync/v1/tables/Other/horizon", &[], None)
        .await;
    assert_eq!(h.body["purgedBefore"], Value::Null);

    // A purge that removes nothing does not move the horizon.
    assert_eq!(store.purge_deleted("Other", 0).await.unwrap(), 0);
    let other = client.v3("GET", "/tables/Other", &[], None).await;
    assert_eq!(other.header(HEADER), None);
}

#[tokio::test]
async fn purge_removes_old_tombstones_and_reports_the_horizon_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let app = Server::builder()
        .sqlite(dir.path().join("data.db"))
        .table("TodoItem")
        .table("Other")
        .tombstone_retention(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    retention_case(&client(&app), &app.store()).await;
}

#[tokio::test]
async fn purge_removes_old_tombstones_and_reports_the_horizon_on_postgres() {
    let Some(schema) = pg_schema("retention").await else {
        return;
    };
    let app = Server::builder()
        .postgres(pg_url(), Some(schema.clone()))
        .table("TodoItem")
        .table("Other")
        .tombstone_retention(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    retention_case(&client(&app), &app.store()).await;
    drop_pg_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_purge_of_a_served_app_removes_expired_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let app = Server::builder()
        .sqlite(dir.path().join("data.db"))
        .table("TodoItem")
        .bind("127.0.0.1:0")
        .tombstone_retention(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let client = client(&app);
    let running = app.serve().await.unwrap();
    for id in ["gone", "live"] {
        let r = client
            .v3("POST", "/tables/TodoItem", &[], Some(json!({ "id": id })))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = client
        .v3("DELETE", "/tables/TodoItem/gone", &[], None)
        .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    let deleted = client
        .v3("GET", "/tables/TodoItem?__includedeleted=true", &[], None)
        .await;
    let gone_ms = ms(find(&deleted, "gone").unwrap()["updatedAt"]
        .as_str()
        .unwrap());

    let started = now_ms();
    let page = wait_until_purged(&client, "gone").await;
    // Retention is a minimum: not purged before it was a second old.
    assert!(
        now_ms() - gone_ms >= 1000,
        "purged after {} ms",
        now_ms() - started
    );
    assert!(find(&page, "live").is_some());
    let header = page.header(HEADER).expect("the purged-before header");
    assert!(ms(header) >= gone_ms);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn sub_second_retention_is_not_rounded_down_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let app = Server::builder()
        .sqlite(dir.path().join("data.db"))
        .table("TodoItem")
        .tombstone_retention(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let caps = client(&app)
        .send("GET", "/tidesync/v1/capabilities", &[], None)
        .await;
    assert_eq!(caps.body["tombstoneRetentionSeconds"], 1, "{}", caps.text);
}

// ---- CORS ----

const ORIGIN: &str = "http://localhost:3000";

async fn app_with(config: ServerConfig, dir: &tempfile::TempDir) -> Client {
    let builder: ServerBuilder = Server::builder()
        .config(config)
        .sqlite(dir.path().join("data.db"))
        .table("TodoItem");
    client(&builder.build().await.unwrap())
}

async fn cors_app(origins: &[&str], dir: &tempfile::TempDir) -> Client {
    app_with(
        ServerConfig {
            cors_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            ..ServerConfig::default()
        },
        dir,
    )
    .await
}

fn exposed(r: &Resp) -> Vec<String> {
    r.header("access-control-expose-headers")
        .unwrap_or_default()
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn cors_allows_a_configured_origin_and_exposes_etag_and_link() {
    let dir = tempfile::tempdir().unwrap();
    let client = cors_app(&[ORIGIN], &dir).await;
    let created = client
        .v3(
            "POST",
            "/tables/TodoItem",
            &[("origin", ORIGIN)],
            Some(json!({ "id": "a" })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.header("access-control-allow-origin"), Some(ORIGIN));
    let one = client
        .v3("GET", "/tables/TodoItem/a", &[("origin", ORIGIN)], None)
        .await;
    assert_eq!(one.status, 200);
    assert_eq!(one.header("access-control-allow-origin"), Some(ORIGIN));
    let exposed = exposed(&one);
    for name in ["etag", "link", HEADER] {
        assert!(
            exposed.iter().any(|h| h == name),
            "{name} not in {exposed:?}"
        );
    }
    // Errors carry the CORS headers too, so a browser can read them.
    let refused = client
        .send("GET", "/tables/TodoItem", &[("origin", ORIGIN)], None)
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.header("access-control-allow-origin"), Some(ORIGIN));
    // Extension routes as well.
    let caps = client
        .send(
            "GET",
            "/tidesync/v1/capabilities",
            &[("origin", ORIGIN)],
            None,
        )
        .await;
    assert_eq!(caps.status, 200);
    assert_eq!(caps.header("access-control-allow-origin"), Some(ORIGIN));
}

#[tokio::test]
async fn cors_preflight_is_answered_without_a_version_header() {
    let dir = tempfile::tempdir().unwrap();
    let client = cors_app(&[ORIGIN], &dir).await;
    for path in [
        "/tables/TodoItem",
        "/tables/TodoItem/a",
        "/tidesync/v1/batch",
    ] {
        let r = client
            .send(
                "OPTIONS",
                path,
                &[
                    ("origin", ORIGIN),
                    ("access-control-request-method", "PUT"),
                    (
                        "access-control-request-headers",
                        "zumo-api-version,content-type,if-match",
                    ),
                ],
                None,
            )
            .await;
        assert!(
            (200..300).contains(&r.status),
            "{path}: {} {}",
            r.status,
            r.text
        );
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some(ORIGIN),
            "{path}"
        );
        let methods = r
            .header("access-control-allow-methods")
            .unwrap_or_default()
            .to_ascii_uppercase();
        assert!(methods.contains("PUT"), "{path}: {methods}");
        let allowed = r
            .header("access-control-allow-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        for name in ["zumo-api-version", "content-type", "if-match"] {
            assert!(allowed.contains(name), "{path}: {name} not in {allowed}");
        }
    }
}

#[tokio::test]
async fn cors_ignores_other_origins() {
    let dir = tempfile::tempdir().unwrap();
    let client = cors_app(&[ORIGIN], &dir).await;
    let evil = "http://evil.example";
    let r = client
        .v3("GET", "/tables/TodoItem", &[("origin", evil)], None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = client
        .send(
            "OPTIONS",
            "/tables/TodoItem",
            &[("origin", evil), ("access-control-request-method", "POST")],
            None,
        )
        .await;
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn cors_is_off_without_configured_origins() {
    let dir = tempfile::tempdir().unwrap();
    let client = cors_app(&[], &dir).await;
    let r = client
        .v3("GET", "/tables/TodoItem", &[("origin", ORIGIN)], None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("access-control-expose-headers"), None);
}

#[tokio::test]
async fn cors_wildcard_allows_any_origin() {
    let dir = tempfile::tempdir().unwrap();
    let client = cors_app(&["*"], &dir).await;
    let r = client
        .v3(
            "GET",
            "/tables/TodoItem",
            &[("origin", "http://any.example")],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

// ---- lenient version mode (spec 2.2) ----

#[tokio::test]
async fn lenient_mode_treats_a_missing_version_as_v3() {
    let dir = tempfile::tempdir().unwrap();
    let client = app_with(
        ServerConfig {
            lenient_version: true,
            ..ServerConfig::default()
        },
        &dir,
    )
    .await;
    let r = client
        .send(
            "POST",
            "/tables/TodoItem",
            &[("content-type", "application/json")],
            Some(r#"{"id":"a","text":"x"}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(
        r.header("location").is_some(),
        "v3 creates answer a Location"
    );
    let page = client.send("GET", "/tables/TodoItem", &[], None).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.body["items"].is_array(), "a v3 page: {}", page.text);
    // An explicit version still wins; an unknown one is still refused.
    let v2 = client.v2("GET", "/tables/TodoItem", &[], None).await;
    assert!(v2.body.is_array(), "a v2 array: {}", v2.text);
    let bad = client
        .send(
            "GET",
            "/tables/TodoItem",
            &[("zumo-api-version", "9.9.9")],
            None,
        )
        .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn strict_mode_refuses_a_missing_version() {
    let dir = tempfile::tempdir().unwrap();
    let client = app_with(ServerConfig::default(), &dir).await;
    let r = client
        .send(
            "POST",
            "/tables/TodoItem",
            &[("content-type", "application/json")],
            Some(r#"{"id":"a"}"#),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("ZUMO-API-VERSION"),
        "{}",
        r.text
    );
    // Nothing was written.
    let page = client.v3("GET", "/tables/TodoItem", &[], None).await;
    assert!(page.ids().is_empty());
}

/// Reads the table with tombstones until `id` is gone from it (the background purge runs on
/// the server's wall clock); gives up after 10 s.
async fn wait_until_purged(client: &Client, id: &str) -> Resp {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = client
            .v3("GET", "/tables/TodoItem?__includedeleted=true", &[], None)
            .await;
        if find(&page, id).is_none() {
            return page;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the tombstone {id} was not purged within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
