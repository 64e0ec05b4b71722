//! Auth per spec §9: tokens in either header, audience/issuer checks, API keys and the
//! per-table access modes, including owner isolation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, SECRET, token, token_with};
use serde_json::json;
use tidesync_server::{Access, Server, TableConfig};

async fn client(dir: &tempfile::TempDir, api_key: Option<&str>) -> Client {
    let mut builder = Server::builder()
        .sqlite(dir.path().join("auth.db"))
        .table("Open")
        .table_config(TableConfig::new("Members").access(Access::Authenticated))
        .table_config(TableConfig::new("Notes").access(Access::Owner))
        .jwt_secret(SECRET);
    if let Some(key) = api_key {
        builder = builder.api_key(key);
    }
    Client {
        router: builder.build().await.unwrap().router(),
    }
}

#[tokio::test]
async fn tokens_are_checked_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let c = client(&dir, None).await;
    assert_eq!(c.v2("GET", "/tables/Open", &[], None).await.status, 200);
    assert_eq!(c.v2("GET", "/tables/Members", &[], None).await.status, 401);
    let r = c.v3("GET", "/tables/Members", &[], None).await;
    assert_eq!((r.status, r.text.as_str()), (401, ""));
    let wrong_secret = token_with("sid:x", "other-secret", "urn:microsoft:windows-azure:zumo");
    let wrong_audience = token_with("sid:x", SECRET, "urn:somewhere-else");
    for bad in ["not-a-jwt", wrong_secret.as_str(), wrong_audience.as_str()] {
        let r = c
            .v2("GET", "/tables/Open", &[("x-zumo-auth", bad)], None)
            .await;
        assert_eq!(r.status, 401, "{bad}");
        assert!(r.body["error"].is_string());
    }
    let good = token("sid:x");
    assert_eq!(
        c.v2("GET", "/tables/Members", &[("x-zumo-auth", &good)], None)
            .await
            .status,
        200
    );
    let bearer = format!("Bearer {good}");
    assert_eq!(
        c.v2(
            "GET",
            "/tables/Members",
            &[("authorization", &bearer)],
            None
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn owner_tables_isolate_users() {
    let dir = tempfile::tempdir().unwrap();
    let c = client(&dir, None).await;
    let alice = token("sid:alice");
    let bob = token("sid:bob");
    let a = [("x-zumo-auth", alice.as_str())];
    let b = [("x-zumo-auth", bob.as_str())];
    let r = c
        .v2(
            "POST",
            "/tables/Notes",
            &a,
            Some(json!({"id":"n1","text":"mine","userId":"sid:bob"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["userId"], "sid:alice");
    assert_eq!(c.v2("GET", "/tables/Notes", &[], None).await.status, 401);
    assert_eq!(c.v2("GET", "/tables/Notes/n1", &b, None).await.status, 404);
    assert_eq!(c.v3("GET", "/tables/Notes/n1", &b, None).await.status, 404);
    assert_eq!(c.v2("GET", "/tables/Notes", &b, None).await.body, json!([]));
    assert_eq!(
        c.v2("PATCH", "/tables/Notes/n1", &b, Some(json!({"text":"x"})))
            .await
            .status,
        404
    );
    assert_eq!(
        c.v2("DELETE", "/tables/Notes/n1", &b, None).await.status,
        404
    );
    let r = c
        .v2(
            "POST",
            "/tables/Notes",
            &b,
            Some(json!({"id":"n1","text":"theirs"})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(!r.text.contains("mine"));
    let r = c.v2("GET", "/tables/Notes", &a, None).await;
    assert_eq!(r.ids(), ["n1"]);
    assert_eq!(r.body[0]["text"], "mine");
    let r = c
        .v2(
            "PATCH",
            "/tables/Notes/n1",
            &a,
            Some(json!({"text":"edited","userId":"sid:bob"})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["userId"], "sid:alice");
}

#[tokio::test]
async fn api_key_is_required_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let c = client(&dir, Some("k-123")).await;
    assert_eq!(c.v2("GET", "/tables/Open", &[], None).await.status, 401);
    assert_eq!(
        c.v2("GET", "/tables/Open", &[("x-api-key", "wrong")], None)
            .await
            .status,
        401
    );
    assert_eq!(
        c.v2("GET", "/tables/Open", &[("x-api-key", "k-123")], None)
            .await
            .status,
        200
    );
    assert_eq!(
        c.send("GET", "/tidesync/v1/capabilities", &[], None)
            .await
            .status,
        401
    );
    assert_eq!(c.send("GET", "/health", &[], None).await.status, 200);
}

#[tokio::test]
async fn authenticated_tables_need_a_key_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let result = Server::builder()
        .sqlite(dir.path().join("x.db"))
        .table_config(TableConfig::new("Members").access(Access::Authenticated))
        .build()
        .await;
    assert!(matches!(
        result,
        Err(tidesync_server::StartError::Config(_))
    ));
}
