//! Tenant scopes (`[tables.scope] column, claim`) on SQLite and PostgreSQL: two tenants
//! that see, change and hear of (change feed) only their own rows, through single requests
//! (v2 and v3), the batch extension, the snapshot and `$filter` tricks that try to widen a
//! query; inserts are stamped from the claim, updates cannot move a row to another tenant,
//! and a token without the claim is refused (403).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tidesync_server::{Access, ColumnType, Server, ServerBuilder, TableConfig};
use tokio::time::Instant;
use tower::ServiceExt;

use common::{Client, SECRET};

fn token(sub: &str, tid: Option<&str>) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut claims = json!({
        "sub": sub, "iat": now, "exp": now + 3600,
        "aud": "urn:microsoft:windows-azure:zumo", "iss": "urn:microsoft:windows-azure:zumo",
    });
    if let Some(tid) = tid {
        claims["tid"] = json!(tid);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn builder() -> ServerBuilder {
    Server::builder()
        .table_config(
            TableConfig::new("Tasks")
                .access(Access::Authenticated)
                .column("text", ColumnType::String)
                .scope("tenantId", "tid"),
        )
        .jwt_secret(SECRET)
}

/// An open change feed, read from the router's streaming body.
struct Feed {
    body: Body,
    text: String,
}

impl Feed {
    async fn open(router: &Router, token: &str) -> Feed {
        let request = Request::builder()
            .uri("/tidesync/v1/feed?tables=Tasks")
            .header("host", "127.0.0.1")
            .header("x-zumo-auth", token)
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        Feed {
            body: response.into_body(),
            text: String::new(),
        }
    }

    /// The ids of the change events that arrive within `wait`.
    async fn ids_within(&mut self, wait: Duration) -> Vec<String> {
        let until = Instant::now() + wait;
        while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(until, self.body.frame()).await {
            if let Ok(data) = frame.into_data() {
                self.text.push_str(&String::from_utf8_lossy(&data));
            }
        }
        self.text
            .split("\n\n")
            .filter(|block| block.lines().any(|l| l == "event: change"))
            .filter_map(|block| block.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|data| {
                let event: Value = serde_json::from_str(data).unwrap();
                event["id"].as_str().unwrap_or("?").to_owned()
            })
            .collect()
    }

    /// Waits until an event for `id` arrives (bounded).
    async fn until(&mut self, id: &str) {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if self
                .ids_within(Duration::from_millis(100))
                .await
                .iter()
                .any(|i| i == id)
            {
                return;
            }
        }
        panic!("no change event for {id}: {}", self.text);
    }
}

async fn isolation(c: &Client) {
    let a = token("alice", Some("t1"));
    let b = token("bob", Some("t2"));
    let a2 = token("ann", Some("t1"));
    let none = token("carol", None);
    let ha = [("x-zumo-auth", a.as_str())];
    let hb = [("x-zumo-auth", b.as_str())];
    let ha2 = [("x-zumo-auth", a2.as_str())];
    let hn = [("x-zumo-auth", none.as_str())];

    // Feeds first, so that every write below is heard (or not).
    let mut feed_a = Feed::open(&c.router, &a).await;
    let mut feed_b = Feed::open(&c.router, &b).await;

    // Inserts are stamped from the claim; a client-sent tenant is replaced.
    let r = c
        .v3(
            "POST",
            "/tables/Tasks",
            &ha,
            Some(json!({"id": "a1", "text": "a", "tenantId": "t2"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["tenantId"], "t1");
    let r = c
        .v2(
            "POST",
            "/tables/Tasks",
            &hb,
            Some(json!({"id": "b1", "text": "b"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["tenantId"], "t2");
    feed_b.until("b1").await;
    feed_a.until("a1").await;

    // Reads: each tenant sees its own rows, whoever of the tenant asks.
    for (h, mine) in [(&ha, "a1"), (&ha2, "a1"), (&hb, "b1")] {
        assert_eq!(c.v2("GET", "/tables/Tasks", h, None).await.ids(), [mine]);
        assert_eq!(c.v3("GET", "/tables/Tasks", h, None).await.ids(), [mine]);
    }
    // `$filter` tricks cannot widen the scope: the client's filter is one operand of an AST
    // conjunction, never text spliced into the scope's.
    for filter in [
        "tenantId ne 'x' or true",
        "tenantId eq 't2'",
        "(tenantId eq 't2') or (1 eq 1)",
        "true) or (true",
        "tenantId eq 't2' or tenantId eq 't1'",
        "not (tenantId eq 't1')",
        "startswith(tenantId, 't')",
    ] {
        let path = format!("/tables/Tasks?$filter={}", common::cases::escaped(filter));
        for r in [
            c.v2("GET", &path, &ha, None).await,
            c.v3("GET", &path, &ha, None).await,
        ] {
            assert!(r.status == 200 || r.status == 400, "{filter}: {}", r.text);
            assert!(
                !r.ids().contains(&"b1".to_owned()),
                "{filter} leaked: {}",
                r.text
            );
        }
    }
    let r = c
        .v3(
            "GET",
            "/tables/Tasks?$filter=tenantId%20ne%20'x'%20or%20true&$count=true",
            &ha,
            None,
        )
        .await;
    assert_eq!(
        (r.ids(), r.body["count"].clone()),
        (vec!["a1".to_owned()], json!(1))
    );
    let r = c
        .v3(
            "GET",
            "/tidesync/v1/tables/Tasks/snapshot?$filter=true%20or%20true",
            &ha,
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.text.contains("\"a1\"") && !r.text.contains("\"b1\""),
        "{}",
        r.text
    );

    // Another tenant's row does not exist for this one, on every verb.
    assert_eq!(c.v3("GET", "/tables/Tasks/b1", &ha, None).await.status, 404);
    assert_eq!(c.v2("GET", "/tables/Tasks/b1", &ha, None).await.status, 404);
    let r = c
        .v2("PATCH", "/tables/Tasks/b1", &ha, Some(json!({"text": "x"})))
        .await;
    assert_eq!(r.status, 404);
    let r = c
        .v3(
            "PUT",
            "/tables/Tasks/b1",
            &ha,
            Some(json!({"id": "b1", "text": "x"})),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        c.v3("DELETE", "/tables/Tasks/b1", &ha, None).await.status,
        404
    );
    assert_eq!(
        c.v2("DELETE", "/tables/Tasks/b1", &ha, None).await.status,
        404
    );
    let r = c
        .v3(
            "POST",
            "/tables/Tasks",
            &ha,
            Some(json!({"id": "b1", "text": "x"})),
        )
        .await;
    assert_eq!(r.status, 400, "an id taken in another tenant: {}", r.text);
    assert!(
        !r.text.contains("\"b\""),
        "nothing of the other row: {}",
        r.text
    );

    // An update cannot move a row to another tenant; leaving the column out keeps it.
    let r = c
        .v2(
            "PATCH",
            "/tables/Tasks/a1",
            &ha,
            Some(json!({"tenantId": "t2"})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.body["error"].is_string());
    let r = c
        .v3(
            "PUT",
            "/tables/Tasks/a1",
            &ha,
            Some(json!({"id": "a1", "text": "A", "tenantId": "t2"})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = c
        .v3(
            "PUT",
            "/tables/Tasks/a1",
            &ha2,
            Some(json!({"id": "a1", "text": "A"})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["tenantId"].clone()),
        (200, json!("t1")),
        "{}",
        r.text
    );

    // The batch: the same rules per op.
    let ops = json!({"operations": [
        {"id": "o1", "kind": "update", "table": "Tasks", "itemId": "b1", "item": {"text": "x"}},
        {"id": "o2", "kind": "delete", "table": "Tasks", "itemId": "b1"},
        {"id": "o3", "kind": "insert", "table": "Tasks", "itemId": "a2",
         "item": {"text": "z", "tenantId": "t2"}},
        {"id": "o4", "kind": "update", "table": "Tasks", "itemId": "a1",
         "item": {"tenantId": "t2"}},
    ]});
    let r = c.batch(&ops, &ha).await;
    let results = &r.body["results"];
    assert_eq!(results[0]["status"], 404, "{}", r.text);
    assert_eq!(results[1]["status"], 404, "{}", r.text);
    assert_eq!(results[2]["status"], 201, "{}", r.text);
    assert_eq!(results[2]["item"]["tenantId"], "t1");
    assert_eq!(results[3]["status"], 403, "{}", r.text);
    let r = c.batch(&ops, &hn).await;
    assert_eq!(r.body["results"][2]["status"], 403, "{}", r.text);

    // No claim: 403 everywhere; no token: 401.
    assert_eq!(c.v2("GET", "/tables/Tasks", &hn, None).await.status, 403);
    let r = c
        .v3(
            "POST",
            "/tables/Tasks",
            &hn,
            Some(json!({"id": "n1", "text": "n"})),
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.body["error"].as_str().unwrap().contains("tid"));
    assert_eq!(c.v2("GET", "/tables/Tasks", &[], None).await.status, 401);

    // The feeds heard only of their own tenant's rows.
    feed_a.until("a2").await;
    let heard_a = feed_a.ids_within(Duration::from_millis(300)).await;
    let heard_b = feed_b.ids_within(Duration::from_millis(300)).await;
    assert!(heard_a.iter().all(|id| id.starts_with('a')), "{heard_a:?}");
    assert_eq!(heard_b, ["b1"], "b heard only of b1");
    // The stored rows are as the rules say.
    let r = c.v3("GET", "/tables/Tasks", &hb, None).await;
    assert_eq!(r.body["items"][0]["text"], "b");
}

on_both_stores!(
    two_tenants_are_isolated_sqlite,
    two_tenants_are_isolated_postgres,
    builder(),
    isolation
);

/// Owner mode is the tenant scope `column = "userId", claim = "sub"`: the same requests get
/// the same answers from an owner table and from a table scoped that way.
#[tokio::test]
async fn owner_mode_is_the_user_id_scope() {
    let dir = tempfile::tempdir().unwrap();
    let app = Server::builder()
        .sqlite(dir.path().join("owner.db"))
        .table_config(TableConfig::new("Owned").access(Access::Owner))
        .table_config(
            TableConfig::new("Scoped")
                .access(Access::Authenticated)
                .scope("userId", "sub"),
        )
        .jwt_secret(SECRET)
        .build()
        .await
        .unwrap();
    let c = Client {
        router: app.router(),
    };
    let alice = token("alice", None);
    let bob = token("bob", None);
    let ha = [("x-zumo-auth", alice.as_str())];
    let hb = [("x-zumo-auth", bob.as_str())];
    let mut answers: Vec<Vec<(u16, Value)>> = Vec::new();
    for table in ["Owned", "Scoped"] {
        let t = format!("/tables/{table}");
        let mut seen = Vec::new();
        let mut note = |r: common::Resp| {
            let body = r.body.get("userId").cloned().unwrap_or(Value::Null);
            seen.push((r.status, body));
        };
        note(
            c.v3("POST", &t, &ha, Some(json!({"id": "a", "userId": "bob"})))
                .await,
        );
        note(c.v3("POST", &t, &hb, Some(json!({"id": "b"}))).await);
        note(c.v3("GET", &format!("{t}/b"), &ha, None).await);
        note(
            c.v2("PATCH", &format!("{t}/b"), &ha, Some(json!({"x": 1})))
                .await,
        );
        note(
            c.v2(
                "PATCH",
                &format!("{t}/a"),
                &ha,
                Some(json!({"userId": "bob"})),
            )
            .await,
        );
        note(c.v3("DELETE", &format!("{t}/b"), &ha, None).await);
        note(c.v3("POST", &t, &ha, Some(json!({"id": "b"}))).await);
        note(c.v3("GET", &t, &[], None).await);
        let list = c.v2("GET", &t, &ha, None).await;
        seen.push((list.status, json!(list.ids())));
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0][0], (201, json!("alice")));
    assert_eq!(answers[0][2].0, 404);
    assert_eq!(
        answers[0][4],
        (200, json!("alice")),
        "a client userId is dropped"
    );
    assert_eq!(answers[0][8], (200, json!(["a"])));
}
