//! The policy API for apps that embed the server: a [`TablePolicy`] (read filter, item
//! authorization, before-write stamping and validation, after-commit hooks whose failures
//! never undo a commit) and a custom [`Authenticator`], registered with the `ServerBuilder`,
//! seen through every verb of both protocols, the batch extension, the snapshot and the
//! change feed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{HeaderMap, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tidesync_protocol::Item;
use tidesync_protocol::odata::{Expr, col};
use tidesync_server::error::ServerError;
use tidesync_server::{
    Access, Authenticator, Caller, ColumnType, Operation, PolicyError, Server, TableConfig,
    TablePolicy, User,
};
use tower::ServiceExt;

use common::Client;

/// Signs in whoever the `x-user` header names (`intruder` is refused); `boss` is an admin.
#[derive(Debug)]
struct HeaderAuth;

#[async_trait]
impl Authenticator for HeaderAuth {
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<User>, ServerError> {
        let Some(name) = headers.get("x-user").and_then(|v| v.to_str().ok()) else {
            return Ok(None);
        };
        match name {
            "intruder" => Err(ServerError::InvalidToken {
                message: "unknown user".to_owned(),
            }),
            "boss" => Ok(Some(User::new("boss").role("admin"))),
            other => Ok(Some(User::new(other))),
        }
    }
}

/// Stamps `modifiedBy`, refuses long texts, hides archived rows, protects locked rows from
/// deletion (but not from admins), and records every commit.
#[derive(Debug, Default)]
struct NotesPolicy {
    committed: Mutex<Vec<(Operation, String)>>,
}

impl TablePolicy for NotesPolicy {
    fn read_filter(&self, _caller: &Caller) -> Result<Option<Expr>, PolicyError> {
        Ok(Some(col("archived").eq(false)))
    }

    fn authorize(
        &self,
        caller: &Caller,
        operation: Operation,
        item: Option<&Item>,
    ) -> Result<(), PolicyError> {
        let admin = caller.user.as_ref().is_some_and(|u| u.has_role("admin"));
        match (operation, item) {
            (Operation::Delete, Some(item))
                if item.get("locked") == Some(&json!(true)) && !admin =>
            {
                Err(PolicyError::Forbidden("this note is locked".to_owned()))
            }
            _ => Ok(()),
        }
    }

    fn before_write(
        &self,
        caller: &Caller,
        operation: Operation,
        item: &mut Item,
    ) -> Result<(), PolicyError> {
        if item
            .get("text")
            .and_then(Value::as_str)
            .is_some_and(|text| text.chars().count() > 200)
        {
            return Err(PolicyError::Invalid(
                "text is longer than 200 characters".to_owned(),
            ));
        }
        let who = caller.user.as_ref().map_or("anonymous", |u| u.id.as_str());
        item.insert("modifiedBy".to_owned(), json!(who));
        if operation == Operation::Insert {
            item.entry("archived").or_insert(json!(false));
            item.entry("locked").or_insert(json!(false));
        }
        Ok(())
    }

    fn after_commit(
        &self,
        _caller: &Caller,
        operation: Operation,
        item: &Item,
    ) -> Result<(), PolicyError> {
        let id = item
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.committed.lock().unwrap().push((operation, id));
        if item.get("text") == Some(&json!("fail-after")) {
            return Err(PolicyError::Invalid("the side effect failed".to_owned()));
        }
        Ok(())
    }
}

fn builder(policy: Arc<NotesPolicy>) -> tidesync_server::ServerBuilder {
    let table = TableConfig::new("Notes")
        .access(Access::Authenticated)
        .column("text", ColumnType::String)
        .column("modifiedBy", ColumnType::String)
        .column("archived", ColumnType::Boolean)
        .column("locked", ColumnType::Boolean);
    Server::builder()
        .table_config(table)
        .authenticator(Arc::new(HeaderAuth))
        .policy("notes", policy)
}

async fn app(dir: &tempfile::TempDir, policy: Arc<NotesPolicy>) -> Client {
    common::sqlite_client(builder(policy), dir.path()).await
}

#[tokio::test]
async fn the_policy_runs_on_every_path_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let policy = Arc::new(NotesPolicy::default());
    let c = app(&dir, Arc::clone(&policy)).await;
    policy_case(&c, &policy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_runs_on_every_path_postgres() {
    let policy = Arc::new(NotesPolicy::default());
    let Some((c, schema)) =
        common::postgres_client(builder(Arc::clone(&policy)), "policy_api").await
    else {
        return;
    };
    policy_case(&c, &policy).await;
    common::drop_pg_schema(&schema).await;
}

async fn policy_case(c: &Client, policy: &NotesPolicy) {
    let ann = [("x-user", "ann")];
    let bob = [("x-user", "bob")];
    let boss = [("x-user", "boss")];

    // The custom authenticator: nobody is 401 on an authenticated table, a refused user 401.
    assert_eq!(c.v3("GET", "/tables/Notes", &[], None).await.status, 401);
    assert_eq!(
        c.v2("GET", "/tables/Notes", &[("x-user", "intruder")], None)
            .await
            .status,
        401
    );

    // before_write stamps modifiedBy (a client value is replaced), on v3, v2 and the batch.
    let r = c
        .v3(
            "POST",
            "/tables/Notes",
            &ann,
            Some(json!({"id": "n1", "text": "a", "modifiedBy": "mallory"})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["modifiedBy"].clone()),
        (201, json!("ann")),
        "{}",
        r.text
    );
    let r = c
        .v2(
            "PATCH",
            "/tables/Notes/n1",
            &bob,
            Some(json!({"text": "b"})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["modifiedBy"].clone()),
        (200, json!("bob")),
        "{}",
        r.text
    );
    let r = c
        .v3(
            "PUT",
            "/tables/Notes/n1",
            &ann,
            Some(json!({"id": "n1", "text": "c", "archived": false})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["modifiedBy"].clone()),
        (200, json!("ann")),
        "{}",
        r.text
    );

    // ... and refuses a long text with the app's message: 400 on every write path.
    let long = "x".repeat(201);
    let r = c
        .v3(
            "POST",
            "/tables/Notes",
            &ann,
            Some(json!({"id": "n2", "text": long})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "text is longer than 200 characters");
    let r = c
        .v2(
            "PATCH",
            "/tables/Notes/n1",
            &ann,
            Some(json!({"text": long})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = c
        .v3(
            "PUT",
            "/tables/Notes/n1",
            &ann,
            Some(json!({"id": "n1", "text": long})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let ops = json!({"operations": [
        {"id": "o1", "kind": "insert", "table": "Notes", "itemId": "n3", "item": {"text": long}},
        {"id": "o2", "kind": "insert", "table": "Notes", "itemId": "n4", "item": {"text": "ok"}},
        {"id": "o3", "kind": "update", "table": "Notes", "itemId": "n1", "item": {"text": long}},
    ]});
    let r = c.batch(&ops, &bob).await;
    let results = &r.body["results"];
    assert_eq!(results[0]["status"], 400, "{}", r.text);
    assert_eq!(results[0]["error"], "text is longer than 200 characters");
    assert_eq!(results[1]["status"], 201);
    assert_eq!(results[1]["item"]["modifiedBy"], "bob");
    assert_eq!(results[2]["status"], 400);
    let exactly = "y".repeat(200);
    let r = c
        .v3(
            "POST",
            "/tables/Notes",
            &ann,
            Some(json!({"id": "n5", "text": exactly})),
        )
        .await;
    assert_eq!(r.status, 201, "200 characters are allowed: {}", r.text);

    // authorize per row: a locked note cannot be deleted (403 with the app's message) except
    // by an admin; single and batch.
    let r = c
        .v2(
            "PATCH",
            "/tables/Notes/n4",
            &ann,
            Some(json!({"locked": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = c.v3("DELETE", "/tables/Notes/n4", &ann, None).await;
    assert_eq!(
        (r.status, r.body["error"].clone()),
        (403, json!("this note is locked"))
    );
    let r = c.v2("DELETE", "/tables/Notes/n4", &ann, None).await;
    assert_eq!(r.status, 403);
    let del = json!({"operations": [
        {"id": "d1", "kind": "delete", "table": "Notes", "itemId": "n4"}]});
    assert_eq!(c.batch(&del, &ann).await.body["results"][0]["status"], 403);
    assert_eq!(c.batch(&del, &boss).await.body["results"][0]["status"], 204);

    // The read filter: an archived note is gone from lists, item reads, the snapshot, and
    // cannot be changed (404) any more.
    let r = c
        .v2(
            "PATCH",
            "/tables/Notes/n5",
            &ann,
            Some(json!({"archived": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(c.v3("GET", "/tables/Notes", &ann, None).await.ids(), ["n1"]);
    assert_eq!(c.v2("GET", "/tables/Notes", &ann, None).await.ids(), ["n1"]);
    let r = c
        .v2(
            "GET",
            "/tables/Notes?$filter=archived%20eq%20true%20or%20true",
            &ann,
            None,
        )
        .await;
    assert_eq!(r.ids(), ["n1"]);
    assert_eq!(
        c.v3("GET", "/tables/Notes/n5", &ann, None).await.status,
        404
    );
    let r = c
        .send("GET", "/tidesync/v1/tables/Notes/snapshot", &ann, None)
        .await;
    assert!(
        r.text.contains("\"n1\"") && !r.text.contains("\"n5\""),
        "{}",
        r.text
    );
    let r = c
        .v2(
            "PATCH",
            "/tables/Notes/n5",
            &ann,
            Some(json!({"archived": false})),
        )
        .await;
    assert_eq!(r.status, 404);

    // after_commit saw every commit, in order; a failing one is logged and the write stays.
    let r = c
        .v3(
            "POST",
            "/tables/Notes",
            &ann,
            Some(json!({"id": "n6", "text": "fail-after"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        c.v3("GET", "/tables/Notes/n6", &ann, None).await.status,
        200
    );
    let committed = policy.committed.lock().unwrap().clone();
    let expected: Vec<(Operation, String)> = [
        (Operation::Insert, "n1"),
        (Operation::Update, "n1"),
        (Operation::Update, "n1"),
        (Operation::Insert, "n4"),
        (Operation::Insert, "n5"),
        (Operation::Update, "n4"),
        (Operation::Delete, "n4"),
        (Operation::Update, "n5"),
        (Operation::Insert, "n6"),
    ]
    .into_iter()
    .map(|(op, id)| (op, id.to_owned()))
    .collect();
    assert_eq!(committed, expected);
}

/// The change feed tells a caller only of rows the read filter lets them see.
#[tokio::test]
async fn the_feed_follows_the_read_filter() {
    let dir = tempfile::tempdir().unwrap();
    let c = app(&dir, Arc::default()).await;
    let request = Request::builder()
        .uri("/tidesync/v1/feed?tables=Notes")
        .header("host", "127.0.0.1")
        .header("x-user", "ann")
        .body(Body::empty())
        .unwrap();
    let response = c.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let ann = [("x-user", "ann")];
    // One archived row, then one visible one: only the visible one is told.
    let r = c
        .v3(
            "POST",
            "/tables/Notes",
            &ann,
            Some(json!({"id": "hidden", "text": "h", "archived": true})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = c
        .v3(
            "POST",
            "/tables/Notes",
            &ann,
            Some(json!({"id": "shown", "text": "s"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut text = String::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while !text.contains("\"shown\"") {
        let frame = tokio::time::timeout_at(until, body.frame())
            .await
            .expect("an event for the visible row")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(!text.contains("\"hidden\""), "{text}");
}

/// A policy for a table that is not served is a configuration error.
#[tokio::test]
async fn a_policy_for_an_unknown_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = Server::builder()
        .sqlite(dir.path().join("x.db"))
        .table("Notes")
        .policy("Nope", Arc::new(NotesPolicy::default()))
        .build()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("Nope"), "{error}");
}
