//! The snapshot extension (`GET /tidesync/v1/tables/{table}/snapshot`) on SQLite and
//! PostgreSQL: every live row in `(updatedAt, id)` order across several internal pages, the
//! end line, `$filter`, bad input, auth, owner isolation, the capabilities document, and the
//! error line when the store fails mid-stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use common::{Client, Resp, SECRET, drop_pg_schema, postgres_client, sqlite_client, token};
use serde_json::{Value, json};
use tidesync_server::store::{
    BatchWrite, Decide, Outcome, ReadRequest, ReadResult, Row, StoreError, TableSchema, TableSpec,
};
use tidesync_server::{Access, Server, ServerBuilder, SqliteStore, Store, TableConfig};

const PAGE: u64 = 5;

fn snapshot_path(table: &str) -> String {
    format!("/tidesync/v1/tables/{table}/snapshot")
}

fn builder() -> ServerBuilder {
    Server::builder()
        .table("TodoItem")
        .table_config(TableConfig::new("Notes").access(Access::Owner))
        .jwt_secret(SECRET)
        .snapshot_page_size(PAGE)
}

/// The lines of an ndjson body, parsed.
fn lines(r: &Resp) -> Vec<Value> {
    assert!(r.text.ends_with('\n'), "{:?}", r.text);
    r.text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The rows of a complete snapshot, checking status, content type and the end line.
async fn snapshot(c: &Client, query: &str, extra: &[(&str, &str)]) -> Vec<Value> {
    let path = format!("{}{query}", snapshot_path("TodoItem"));
    rows_of(&c.send("GET", &path, extra, None).await)
}

fn rows_of(r: &Resp) -> Vec<Value> {
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let mut lines = lines(r);
    let end = lines.pop().unwrap();
    assert_eq!(end, json!({"end": true, "rows": lines.len()}));
    lines
}

/// The same rows as a v3 list returns them.
async fn listed(c: &Client, table: &str, filter: Option<&str>, extra: &[(&str, &str)]) -> Value {
    let filter = filter.map(|f| format!("&$filter={f}")).unwrap_or_default();
    let path = format!("/tables/{table}?$orderby=updatedAt,id&$top=1000{filter}");
    let r = c.v3("GET", &path, extra, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"].clone()
}

fn assert_ordered(rows: &[Value]) {
    let keys: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["updatedAt"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
}

async fn cases(c: &Client) {
    // 23 rows inserted with ids out of order, 3 soft-deleted, 2 updated (moved to the end).
    for i in 0..23u32 {
        let id = format!("row-{:02}", (i * 7) % 23);
        let r = c
            .v3(
                "POST",
                "/tables/TodoItem",
                &[],
                Some(json!({"id": id, "text": format!("t{i}"), "n": i})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    for id in ["row-03", "row-10", "row-17"] {
        let r = c
            .v3("DELETE", &format!("/tables/TodoItem/{id}"), &[], None)
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
    // `n` of row-k is the i that inserted it: k * 10 mod 23 (10 is 7's inverse mod 23).
    for (id, n) in [("row-00", 0), ("row-12", 5)] {
        let r = c
            .v3(
                "PUT",
                &format!("/tables/TodoItem/{id}"),
                &[],
                Some(json!({"id": id, "text": "changed", "n": n})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }

    // All 20 live rows (four full internal pages, then an empty one), as v3 lists them.
    let rows = snapshot(c, "", &[]).await;
    assert_eq!(rows.len(), 20);
    assert_ordered(&rows);
    assert!(rows.iter().all(|r| r["deleted"] == json!(false)));
    assert_eq!(
        Value::Array(rows.clone()),
        listed(c, "TodoItem", None, &[]).await
    );
    assert_eq!(rows[18]["id"], "row-00");
    assert_eq!(rows[19]["text"], "changed");

    // With `__includedeleted=true` the three tombstones come too, in their place.
    let all = snapshot(c, "?__includedeleted=true", &[]).await;
    assert_eq!(all.len(), 23);
    assert_ordered(&all);
    assert_eq!(
        all.iter().filter(|r| r["deleted"] == json!(true)).count(),
        3
    );
    let path = "/tables/TodoItem?$orderby=updatedAt,id&$top=1000&__includedeleted=true";
    let listed_all = c.v3("GET", path, &[], None).await;
    assert_eq!(Value::Array(all), listed_all.body["items"]);

    // `$filter` narrows (and ends on a short page).
    let rows = snapshot(c, "?$filter=n%20ge%2010", &[]).await;
    assert_eq!(rows.len(), 13);
    assert_ordered(&rows);
    assert_eq!(
        Value::Array(rows),
        listed(c, "TodoItem", Some("n%20ge%2010"), &[]).await
    );
    let rows = snapshot(c, "?$filter=text%20eq%20%27changed%27", &[]).await;
    assert_eq!(rows.len(), 2);
    // `$top` ends the body after that many rows (a client's segment), the first in order.
    let top = snapshot(c, "?$filter=text%20eq%20%27changed%27&$top=1", &[]).await;
    assert_eq!(top, rows[..1].to_vec());
    for bad in ["0", "-1", "x"] {
        let path = format!("{}?$top={bad}", snapshot_path("TodoItem"));
        let r = c.send("GET", &path, &[], None).await;
        assert_eq!(r.status, 400, "$top={bad}: {}", r.text);
    }

    // Bad input: 400 for a filter that does not parse or names no column, 404 for a table.
    for filter in ["n%20ge", "nope%20eq%201", "text%20eq%201"] {
        let path = format!("{}?$filter={filter}", snapshot_path("TodoItem"));
        let r = c.send("GET", &path, &[], None).await;
        assert_eq!(r.status, 400, "{filter}: {}", r.text);
        assert!(r.body["error"].is_string(), "{}", r.text);
    }
    // An unknown table: 401 to a caller without a token (like a table that needs one), 404
    // to a signed-in caller.
    let (alice, bob) = (token("sid:alice"), token("sid:bob"));
    let r = c.send("GET", &snapshot_path("Nope"), &[], None).await;
    assert_eq!(r.status, 401);
    let r = c
        .send(
            "GET",
            &snapshot_path("Nope"),
            &[("x-zumo-auth", &alice)],
            None,
        )
        .await;
    assert_eq!(r.status, 404);

    // Owner tables: only the caller's rows; no token, no snapshot.
    for (who, n) in [(&alice, 7), (&bob, 4)] {
        for i in 0..n {
            let r = c
                .v3(
                    "POST",
                    "/tables/Notes",
                    &[("x-zumo-auth", who)],
                    Some(json!({"text": format!("note {i}")})),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.text);
        }
    }
    let r = c
        .send(
            "GET",
            &snapshot_path("Notes"),
            &[("x-zumo-auth", &alice)],
            None,
        )
        .await;
    let rows = rows_of(&r);
    assert_eq!(rows.len(), 7);
    assert!(rows.iter().all(|r| r["userId"] == "sid:alice"));
    assert_eq!(
        Value::Array(rows),
        listed(c, "Notes", None, &[("x-zumo-auth", &alice)]).await
    );
    let r = c
        .send(
            "GET",
            &snapshot_path("Notes"),
            &[("authorization", &format!("Bearer {bob}"))],
            None,
        )
        .await;
    assert_eq!(rows_of(&r).len(), 4);
    let r = c.send("GET", &snapshot_path("Notes"), &[], None).await;
    assert_eq!((r.status, r.text.as_str()), (401, ""));
    let r = c
        .send(
            "GET",
            &snapshot_path("Notes"),
            &[("x-zumo-auth", "bad")],
            None,
        )
        .await;
    assert_eq!(r.status, 401);

    // The capabilities document advertises the route.
    let r = c.send("GET", "/tidesync/v1/capabilities", &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["extensions"]["snapshot"],
        json!({"path": "/tidesync/v1/tables/{table}/snapshot", "format": "ndjson",
               "formats": ["ndjson", "columns"]})
    );
}

#[tokio::test]
async fn snapshot_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    cases(&sqlite_client(builder(), dir.path()).await).await;
}

#[tokio::test]
async fn snapshot_on_postgres() {
    let Some((client, schema)) = postgres_client(builder(), "snapshot").await else {
        return;
    };
    cases(&client).await;
    drop_pg_schema(&schema).await;
}

#[tokio::test]
async fn an_empty_table_is_just_the_end_line() {
    let dir = tempfile::tempdir().unwrap();
    let app = builder()
        .sqlite(dir.path().join("empty.db"))
        .build()
        .await
        .unwrap();
    let c = Client {
        router: app.router(),
    };
    let r = c.send("GET", &snapshot_path("todoitem"), &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text, "{\"end\":true,\"rows\":0}\n");
}

#[tokio::test]
async fn the_api_key_is_required_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let app = builder()
        .sqlite(dir.path().join("key.db"))
        .api_key("k3y")
        .build()
        .await
        .unwrap();
    let c = Client {
        router: app.router(),
    };
    let path = snapshot_path("TodoItem");
    assert_eq!(c.send("GET", &path, &[], None).await.status, 401);
    assert_eq!(
        c.send("GET", &path, &[("x-api-key", "wrong")], None)
            .await
            .status,
        401
    );
    let r = c.send("GET", &path, &[("x-api-key", "k3y")], None).await;
    assert_eq!(rows_of(&r).len(), 0);
    let r = c.send("GET", &path, &[("zumo-api-key", "k3y")], None).await;
    assert_eq!(r.status, 200);
}

/// A store whose reads fail once `reads_left` reaches zero.
#[derive(Debug)]
struct FailingReads {
    inner: SqliteStore,
    reads_left: AtomicI64,
}

#[async_trait]
impl Store for FailingReads {
    async fn prepare_table(&self, spec: &TableSpec) -> Result<(), StoreError> {
        self.inner.prepare_table(spec).await
    }

    async fn schema(&self, table: &str) -> Result<TableSchema, StoreError> {
        self.inner.schema(table).await
    }

    async fn get(&self, table: &str, id: &str) -> Result<Option<Row>, StoreError> {
        self.inner.get(table, id).await
    }

    async fn write(&self, table: &str, id: &str, decide: Decide) -> Result<Outcome, StoreError> {
        self.inner.write(table, id, decide).await
    }

    async fn read(&self, table: &str, request: &ReadRequest) -> Result<ReadResult, StoreError> {
        if self.reads_left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(StoreError::Unavailable("the disk is on fire".to_owned()));
        }
        self.inner.read(table, request).await
    }

    async fn purge_deleted(&self, table: &str, before_ms: i64) -> Result<u64, StoreError> {
        self.inner.purge_deleted(table, before_ms).await
    }

    async fn purge_horizon(&self, table: &str) -> Result<Option<i64>, StoreError> {
        self.inner.purge_horizon(table).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn write_batch(
        &self,
        writes: Vec<BatchWrite>,
        retention_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.write_batch(writes, retention_ms).await
    }
}

#[tokio::test]
async fn a_store_failure_mid_stream_ends_with_an_error_line_and_no_end_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FailingReads {
        inner: SqliteStore::open(&dir.path().join("fail.db"))
            .await
            .unwrap(),
        reads_left: AtomicI64::new(i64::MAX),
    });
    let app = builder().store(store.clone()).build().await.unwrap();
    let c = Client {
        router: app.router(),
    };
    for i in 0..12 {
        let r = c
            .v3("POST", "/tables/TodoItem", &[], Some(json!({"n": i})))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    // The first page is read before the status: a failure there is an ordinary error.
    store.reads_left.store(0, Ordering::SeqCst);
    let r = c.send("GET", &snapshot_path("TodoItem"), &[], None).await;
    assert_eq!(r.status, 503, "{}", r.text);
    // A failure on the second page: 200, the first page, the error line, no end line.
    store.reads_left.store(1, Ordering::SeqCst);
    let r = c.send("GET", &snapshot_path("TodoItem"), &[], None).await;
    assert_eq!(r.status, 200);
    let lines = lines(&r);
    assert_eq!(lines.len(), 6, "{}", r.text);
    assert!(lines[..5].iter().all(|l| l["id"].is_string()));
    let error = lines[5]["error"].as_str().unwrap();
    assert!(error.contains("the disk is on fire"), "{error}");
    assert!(lines.iter().all(|l| l.get("end").is_none()));
}
