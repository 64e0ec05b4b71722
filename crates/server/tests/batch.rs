//! The batch extension (`POST /tidesync/v1/batch`) on SQLite and PostgreSQL: per-op results,
//! independence of ops inside one transaction, a resent batch applied once, bad input,
//! auth, and the capabilities document.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, Resp, drop_pg_schema, golden_builder, postgres_client, sqlite_client, token};
use serde_json::{Value, json};
use tidesync_server::{BatchConfig, ServerBuilder};

const BATCH: &str = "/tidesync/v1/batch";

async fn post(c: &Client, body: &Value, extra: &[(&str, &str)]) -> Resp {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend_from_slice(extra);
    c.send("POST", BATCH, &headers, Some(&body.to_string()))
        .await
}

fn statuses(resp: &Resp) -> Vec<u64> {
    resp.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect()
}

fn insert(op: &str, id: &str, text: &str) -> Value {
    json!({"id": op, "kind": "insert", "table": "TodoItem", "itemId": id,
           "item": {"id": id, "text": text}})
}

fn builder() -> ServerBuilder {
    golden_builder().batch(BatchConfig {
        max_operations: 5,
        op_retention_secs: 3600,
    })
}

/// Every case, against one server.
async fn cases(c: &Client) {
    // The capabilities document advertises the extension and its limit.
    let caps = c.send("GET", "/tidesync/v1/capabilities", &[], None).await;
    assert_eq!(caps.body["extensions"]["batch"]["maxOperations"], 5);
    assert_eq!(caps.body["extensions"]["batch"]["path"], BATCH);

    // A conflicting op does not undo the others.
    c.v3(
        "POST",
        "/tables/TodoItem",
        &[],
        Some(json!({"id": "b", "text": "server"})),
    )
    .await;
    let first = json!({"operations": [insert("op1", "a", "x"), insert("op2", "b", "y"),
                                      insert("op3", "c", "z")]});
    let resp = post(c, &first, &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(statuses(&resp), vec![201, 409, 201]);
    let results = resp.body["results"].as_array().unwrap().clone();
    assert_eq!(results[0]["item"]["text"], "x");
    assert_eq!(results[1]["item"]["text"], "server");
    assert!(results[1]["error"].is_string());
    let version_a = results[0]["item"]["version"].clone();

    // The same batch again: applied ops answer their remembered results, unchanged rows.
    let again = post(c, &first, &[]).await;
    assert_eq!(statuses(&again), vec![201, 409, 201]);
    assert_eq!(again.body["results"][0], results[0]);
    let a = c.v3("GET", "/tables/TodoItem/a", &[], None).await;
    assert_eq!(a.body["version"], version_a);

    // The same op id with new content is a new op (here: an insert of an existing id).
    let reused = json!({"operations": [insert("op1", "a", "changed")]});
    assert_eq!(statuses(&post(c, &reused, &[]).await), vec![409]);

    // Updates merge and honour ifMatch; deletes answer 204, then 410; missing rows 404.
    let ops = json!({"operations": [
        {"id": "u1", "kind": "update", "table": "TodoItem", "itemId": "a",
         "item": {"id": "a", "complete": true}, "ifMatch": version_a},
        {"id": "u2", "kind": "update", "table": "TodoItem", "itemId": "c",
         "item": {"text": "w"}, "ifMatch": "AAAAAAAAAAA="},
        {"id": "d1", "kind": "delete", "table": "TodoItem", "itemId": "c"},
        {"id": "d2", "kind": "delete", "table": "TodoItem", "itemId": "c"},
        {"id": "d3", "kind": "delete", "table": "todoitem", "itemId": "nope"},
    ]});
    let resp = post(c, &ops, &[]).await;
    assert_eq!(
        statuses(&resp),
        vec![200, 412, 204, 410, 404],
        "{}",
        resp.text
    );
    assert_eq!(resp.body["results"][0]["item"]["text"], "x");
    assert_eq!(resp.body["results"][0]["item"]["complete"], true);
    assert_eq!(resp.body["results"][1]["item"]["text"], "z");
    assert!(resp.body["results"][2]["item"].is_null());

    // Malformed ops are refused one by one; the request answers 200.
    let ops = json!({"operations": [
        {"id": "m1", "kind": "upsert", "table": "TodoItem", "itemId": "m"},
        {"id": "m2", "kind": "insert", "table": "NoSuchTable", "itemId": "m", "item": {}},
        {"id": "m3", "kind": "insert", "table": "TodoItem", "itemId": "m"},
        {"kind": "insert", "table": "TodoItem", "itemId": "m", "item": {}},
        {"id": "m5", "kind": "insert", "table": "TodoItem", "itemId": "m",
         "item": {"id": "other"}},
    ]});
    let resp = post(c, &ops, &[]).await;
    // Without a token an unknown table looks like one that needs a user (401).
    assert_eq!(
        statuses(&resp),
        vec![400, 401, 400, 400, 400],
        "{}",
        resp.text
    );
    let alice = token("sid:alice");
    let resp = post(c, &ops, &[("x-zumo-auth", &alice)]).await;
    assert_eq!(
        statuses(&resp),
        vec![400, 404, 400, 400, 400],
        "{}",
        resp.text
    );
    let ops = json!({"operations": [
        {"id": "t1", "kind": "insert", "table": "TodoItem", "itemId": "t",
         "item": {"text": 5}},
        7,
    ]});
    assert_eq!(statuses(&post(c, &ops, &[]).await), vec![400, 400]);

    // Requests that are wrong as a whole.
    for body in ["not json", "[]", "{\"operations\": 3}", "{}"] {
        let resp = c
            .send(
                "POST",
                BATCH,
                &[("content-type", "application/json")],
                Some(body),
            )
            .await;
        assert_eq!(resp.status, 400, "{body}: {}", resp.text);
    }
    let many: Vec<Value> = (0..6).map(|n| insert(&format!("n{n}"), "n", "n")).collect();
    let resp = post(c, &json!({ "operations": many }), &[]).await;
    assert_eq!(resp.status, 413);
    assert_eq!(
        statuses(&post(c, &json!({"operations": []}), &[]).await),
        Vec::<u64>::new()
    );

    // Auth as for single requests: a table that needs a user refuses an anonymous op; a bad
    // token fails the request.
    let auth_op = json!({"operations": [{"id": "x1", "kind": "insert", "table": "AuthTodoItem",
                                        "itemId": "q", "item": {"text": "q"}}]});
    assert_eq!(statuses(&post(c, &auth_op, &[]).await), vec![401]);
    let bearer = format!("Bearer {}", token("alice"));
    let resp = post(c, &auth_op, &[("authorization", &bearer)]).await;
    assert_eq!(statuses(&resp), vec![201]);
    let resp = post(c, &auth_op, &[("authorization", "Bearer nope")]).await;
    assert_eq!(resp.status, 401);
    // The remembered result is the user's: another user resending the op gets it decided anew.
    let bob = format!("Bearer {}", token("bob"));
    assert_eq!(
        statuses(&post(c, &auth_op, &[("authorization", &bob)]).await),
        vec![409]
    );
}

#[tokio::test]
async fn batch_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    cases(&sqlite_client(builder(), dir.path()).await).await;
}

#[tokio::test]
async fn batch_on_postgres() {
    let Some((client, schema)) = postgres_client(builder(), "batch").await else {
        return;
    };
    cases(&client).await;
    drop_pg_schema(&schema).await;
}

#[tokio::test]
async fn owner_tables_keep_batches_to_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let app = builder()
        .table_config(
            tidesync_server::TableConfig::new("Mine").access(tidesync_server::Access::Owner),
        )
        .sqlite(dir.path().join("owner.db"))
        .build()
        .await
        .unwrap();
    let c = Client {
        router: app.router(),
    };
    let alice = format!("Bearer {}", token("alice"));
    let bob = format!("Bearer {}", token("bob"));
    let op = |op: &str, kind: &str| {
        json!({"operations": [{"id": op, "kind": kind, "table": "Mine", "itemId": "m",
                               "item": {"text": "t", "userId": "mallory"}}]})
    };
    let resp = post(&c, &op("o1", "insert"), &[("authorization", &alice)]).await;
    assert_eq!(statuses(&resp), vec![201]);
    assert_eq!(resp.body["results"][0]["item"]["userId"], "alice");
    assert_eq!(
        statuses(&post(&c, &op("o2", "update"), &[("authorization", &bob)]).await),
        vec![404]
    );
    assert_eq!(
        statuses(&post(&c, &op("o3", "insert"), &[("authorization", &bob)]).await),
        vec![400]
    );
}

/// The version text of a result or item, as its counter.
fn counter(version: &Value) -> u64 {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(version.as_str().unwrap())
        .unwrap();
    u64::from_be_bytes(bytes.try_into().unwrap())
}

/// What a batch must keep when ops repeat an item or an op id, mix new and remembered ops,
/// touch two tables, and are followed by single writes.
async fn repeats(c: &Client) {
    let bearer = format!("Bearer {}", token("alice"));
    let auth = [("authorization", bearer.as_str())];
    // The same item twice: the second op sees the first one's write.
    let resp = post(
        c,
        &json!({"operations": [
            insert("s1", "same", "one"),
            {"id": "s2", "kind": "update", "table": "TodoItem", "itemId": "same",
             "item": {"complete": true}},
            {"id": "s3", "kind": "insert", "table": "AuthTodoItem", "itemId": "other",
             "item": {"text": "two"}},
            {"id": "s4", "kind": "delete", "table": "TodoItem", "itemId": "same"},
            {"id": "s5", "kind": "update", "table": "TodoItem", "itemId": "same",
             "item": {"text": "gone"}},
        ]}),
        &auth,
    )
    .await;
    assert_eq!(
        statuses(&resp),
        vec![201, 200, 201, 204, 410],
        "{}",
        resp.text
    );
    let r = &resp.body["results"];
    assert_eq!(r[1]["item"]["text"], "one");
    assert_eq!(r[1]["item"]["complete"], true);
    assert!(counter(&r[1]["item"]["version"]) > counter(&r[0]["item"]["version"]));
    assert_eq!(r[0]["item"]["createdAt"], r[1]["item"]["createdAt"]);
    // Writes of one millisecond share `updatedAt`; it never goes back.
    assert!(r[1]["item"]["updatedAt"].as_str() >= r[0]["item"]["updatedAt"].as_str());
    let gone = c
        .v3(
            "GET",
            "/tables/TodoItem/same?__includedeleted=true",
            &[],
            None,
        )
        .await;
    assert_eq!(gone.body["deleted"], true, "{}", gone.text);

    // A single write after the batch is stamped after every row of it (the batch's clock
    // was written back), in both tables: a later version, and an `updatedAt` not before.
    let single = c
        .v3(
            "POST",
            "/tables/TodoItem",
            &[],
            Some(json!({"id": "later", "text": "later"})),
        )
        .await;
    assert_eq!(single.status, 201, "{}", single.text);
    assert!(counter(&single.body["version"]) > counter(&gone.body["version"]));
    assert!(single.body["updatedAt"].as_str() >= gone.body["updatedAt"].as_str());
    let single = c
        .v3(
            "POST",
            "/tables/AuthTodoItem",
            &auth,
            Some(json!({"id": "later2", "text": "later"})),
        )
        .await;
    assert_eq!(single.status, 201, "{}", single.text);
    assert!(counter(&single.body["version"]) > counter(&r[2]["item"]["version"]));

    // An op id repeated inside one batch: with the same content it answers the first one's
    // result (applied once); with other content it is a new op; a refused op is decided
    // again.
    let resp = post(
        c,
        &json!({"operations": [
            insert("r1", "dup", "x"),
            insert("r1", "dup", "x"),
            insert("r1", "dup", "y"),
            insert("r2", "later", "z"),
            insert("r2", "later", "z"),
        ]}),
        &[],
    )
    .await;
    assert_eq!(
        statuses(&resp),
        vec![201, 201, 409, 409, 409],
        "{}",
        resp.text
    );
    let r = resp.body["results"].as_array().unwrap().clone();
    assert_eq!(r[0], r[1]);
    assert_eq!(r[2]["item"]["text"], "x");
    // The op id now stands for its last applied content... which was refused, so the first
    // content is still remembered.
    let again = post(c, &json!({"operations": [insert("r1", "dup", "x")]}), &[]).await;
    assert_eq!(again.body["results"][0], r[0]);

    // New and remembered ops mixed: the remembered ones answer as before and are not
    // applied again, the new ones are applied, in order.
    let first = post(
        c,
        &json!({"operations": [insert("m1", "m1", "a"), insert("m2", "m2", "b")]}),
        &[],
    )
    .await;
    assert_eq!(statuses(&first), vec![201, 201]);
    let mixed = post(
        c,
        &json!({"operations": [
            insert("m1", "m1", "a"),
            insert("m3", "m3", "c"),
            {"id": "m4", "kind": "update", "table": "TodoItem", "itemId": "m2",
             "item": {"text": "b2"}},
            insert("m2", "m2", "b"),
        ]}),
        &[],
    )
    .await;
    assert_eq!(statuses(&mixed), vec![201, 201, 200, 201], "{}", mixed.text);
    assert_eq!(mixed.body["results"][0], first.body["results"][0]);
    assert_eq!(mixed.body["results"][3], first.body["results"][1]);
    assert_eq!(mixed.body["results"][2]["item"]["text"], "b2");
    let m1 = c.v3("GET", "/tables/TodoItem/m1", &[], None).await;
    assert_eq!(
        m1.body["version"],
        first.body["results"][0]["item"]["version"]
    );
}

#[tokio::test]
async fn repeated_items_and_op_ids_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    repeats(&sqlite_client(builder(), dir.path()).await).await;
}

#[tokio::test]
async fn repeated_items_and_op_ids_on_postgres() {
    let Some((client, schema)) = postgres_client(builder(), "batch_repeats").await else {
        return;
    };
    repeats(&client).await;
    drop_pg_schema(&schema).await;
}

/// Remembered ops are forgotten after the retention: the op is then applied as new.
async fn expiry(c: &Client) {
    let op = json!({"operations": [insert("e1", "e", "x")]});
    let first = post(c, &op, &[]).await;
    assert_eq!(statuses(&first), vec![201]);
    assert_eq!(post(c, &op, &[]).await.body, first.body);
    let forgotten = retry_until_forgotten(c, &op, &first).await;
    assert_eq!(statuses(&forgotten), vec![409]);
}

/// Resends `op` (a retry changes nothing while the op is remembered: the same answer comes
/// back) until the answer differs, and returns it; gives up after 10 s (the retention is 1 s
/// of the server's wall clock).
async fn retry_until_forgotten(c: &Client, op: &Value, first: &Resp) -> Resp {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let again = post(c, op, &[]).await;
        if again.body != first.body {
            return again;
        }
        assert!(
            std::time::Instant::now() < until,
            "the op was still remembered after 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn short_retention() -> ServerBuilder {
    golden_builder().batch(BatchConfig {
        max_operations: 5,
        op_retention_secs: 1,
    })
}

#[tokio::test]
async fn remembered_ops_expire_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    expiry(&sqlite_client(short_retention(), dir.path()).await).await;
}

#[tokio::test]
async fn remembered_ops_expire_on_postgres() {
    let Some((client, schema)) = postgres_client(short_retention(), "batch_expiry").await else {
        return;
    };
    expiry(&client).await;
    drop_pg_schema(&schema).await;
}
