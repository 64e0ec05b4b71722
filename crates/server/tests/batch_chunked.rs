//! A batch is written set-wise (one read of its items, one multi-row upsert and one delete per
//! chunk of rows, its remembered op ids likewise): these tests send one large batch with
//! every kind of outcome (inserts over more than one chunk, updates, a conflicting version,
//! an insert of an existing id, deletes hard and soft, a missing row, the same item and the
//! same op id twice, a new column mid-batch) to one server, and the same ops one per request
//! to another, and ask for the same answers and the same rows, on SQLite and PostgreSQL. The
//! batch resent answers the same and changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, drop_pg_schema, golden_builder, postgres_client, sqlite_client};
use serde_json::{Value, json};
use tidesync_server::{BatchConfig, ServerBuilder, TableConfig};

/// More inserts than one statement's chunk (500 rows).
const NEW_ROWS: usize = 1_100;

fn builder() -> ServerBuilder {
    golden_builder()
        .table_config(TableConfig::new("Hard").soft_delete(false))
        .batch(BatchConfig {
            max_operations: 2_000,
            op_retention_secs: 3600,
        })
}

fn op(id: &str, kind: &str, table: &str, item_id: &str, item: Option<Value>) -> Value {
    json!({"id": id, "kind": kind, "table": table, "itemId": item_id, "item": item})
}

/// Rows both servers hold before the batch (each written by its own request).
fn seed_ops() -> Vec<Value> {
    let mut ops = Vec::new();
    for n in 0..6 {
        ops.push(op(
            &format!("seed{n}"),
            "insert",
            "TodoItem",
            &format!("old{n}"),
            Some(json!({"text": format!("old {n}")})),
        ));
        ops.push(op(
            &format!("hseed{n}"),
            "insert",
            "Hard",
            &format!("h{n}"),
            Some(json!({"text": format!("hard {n}")})),
        ));
    }
    ops
}

/// The batch: every kind of outcome, in an order where later ops depend on earlier ones.
fn mixed_ops(stale_version: &str) -> Vec<Value> {
    let mut ops = Vec::new();
    for n in 0..NEW_ROWS {
        ops.push(op(
            &format!("new{n}"),
            "insert",
            "TodoItem",
            &format!("n{n:05}"),
            Some(json!({"text": format!("new {n}"), "complete": n % 3 == 0})),
        ));
    }
    ops.extend([
        // An update that merges, then one on the same item that sees it.
        op(
            "u1",
            "update",
            "TodoItem",
            "old0",
            Some(json!({"complete": true})),
        ),
        op(
            "u2",
            "update",
            "TodoItem",
            "old0",
            Some(json!({"text": "twice"})),
        ),
        // A conflicting version (412 with the server's copy) and an insert of an existing
        // id (409 with the server's copy).
        json!({"id": "u3", "kind": "update", "table": "TodoItem", "itemId": "old1",
               "item": {"text": "stale"}, "ifMatch": stale_version}),
        op(
            "i1",
            "insert",
            "TodoItem",
            "old2",
            Some(json!({"text": "again"})),
        ),
        // A soft delete, then an update of the deleted row (410).
        op("d1", "delete", "TodoItem", "old3", None),
        op(
            "u4",
            "update",
            "TodoItem",
            "old3",
            Some(json!({"text": "gone"})),
        ),
        // Hard deletes: a row, a missing row (404), a row inserted earlier in the batch.
        op("hd1", "delete", "Hard", "h0", None),
        op("hd2", "delete", "Hard", "nothing", None),
        op(
            "hi1",
            "insert",
            "Hard",
            "fresh",
            Some(json!({"text": "fresh"})),
        ),
        op("hd3", "delete", "Hard", "fresh", None),
        // Deleted, then inserted again under the same id.
        op("hd4", "delete", "Hard", "h1", None),
        op(
            "hi2",
            "insert",
            "Hard",
            "h1",
            Some(json!({"text": "reborn"})),
        ),
        // A new column mid-batch, then a write of a row staged before it.
        op("c1", "update", "TodoItem", "old4", Some(json!({"rank": 7}))),
        op(
            "c2",
            "update",
            "TodoItem",
            "n00001",
            Some(json!({"text": "after"})),
        ),
        // The same op id twice with the same content: applied once.
        op(
            "new5",
            "insert",
            "TodoItem",
            "n00005",
            Some(json!({"text": "new 5", "complete": false})),
        ),
        // A malformed op.
        json!({"id": "bad", "kind": "upsert", "table": "TodoItem", "itemId": "x"}),
    ]);
    ops
}

/// A result without the times (the two servers write at different moments).
fn timeless(mut value: Value) -> Value {
    if let Some(item) = value.get_mut("item").and_then(Value::as_object_mut) {
        item.remove("updatedAt");
        item.remove("createdAt");
    }
    value
}

async fn batch(c: &Client, ops: &[Value]) -> Vec<Value> {
    let resp = c.batch(&json!({ "operations": ops }), &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    resp.body["results"].as_array().unwrap().clone()
}

/// Every row of `table`, deleted ones included, without times, in pages of 100.
async fn rows(c: &Client, table: &str) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let resp = c
            .v3(
                "GET",
                &format!(
                    "/tables/{table}?$orderby=id&$top=100&$skip={}&__includedeleted=true",
                    all.len()
                ),
                &[],
                None,
            )
            .await;
        assert_eq!(resp.status, 200, "{}", resp.text);
        let page = resp.body["items"].as_array().unwrap().clone();
        if page.is_empty() {
            return all;
        }
        all.extend(
            page.into_iter()
                .map(|item| timeless(json!({ "item": item }))["item"].clone()),
        );
    }
}

/// Seeds both servers, then sends the mixed ops as one batch to `chunked` and one op per
/// request to `single`, and compares.
async fn same_as_one_by_one(chunked: &Client, single: &Client) {
    for c in [chunked, single] {
        for seed in seed_ops() {
            assert_eq!(batch(c, &[seed]).await[0]["status"], 201);
        }
    }
    let old1 = chunked.v3("GET", "/tables/TodoItem/old1", &[], None).await;
    let stale = format!("{}x", old1.body["version"].as_str().unwrap());
    let ops = mixed_ops(&stale);

    let together = batch(chunked, &ops).await;
    let mut apart = Vec::new();
    for op in &ops {
        apart.extend(batch(single, std::slice::from_ref(op)).await);
    }
    assert_eq!(together.len(), ops.len());
    let statuses = |results: &[Value]| -> Vec<u64> {
        results
            .iter()
            .map(|r| r["status"].as_u64().unwrap())
            .collect()
    };
    let tail = NEW_ROWS;
    assert_eq!(
        statuses(&together[tail..]),
        vec![
            200, 200, 412, 409, 204, 410, 204, 404, 201, 204, 204, 201, 200, 200, 201, 400
        ],
        "{:#?}",
        &together[tail..]
    );
    assert!(statuses(&together[..tail]).iter().all(|s| *s == 201));
    for (n, (a, b)) in together.iter().zip(&apart).enumerate() {
        assert_eq!(
            timeless(a.clone()),
            timeless(b.clone()),
            "op {n}: {}",
            ops[n]
        );
    }
    // The merge saw the earlier op of the batch; the conflict carries the server's copy.
    assert_eq!(together[tail + 1]["item"]["complete"], true);
    assert_eq!(together[tail + 1]["item"]["text"], "twice");
    assert_eq!(together[tail + 2]["item"]["text"], "old 1");
    assert_eq!(together[tail + 12]["item"]["rank"], 7);
    assert_eq!(together[tail + 13]["item"]["rank"], Value::Null);
    // The repeated op id answered the first op's result, and the row was written once.
    assert_eq!(together[5], together[tail + 14]);
    for table in ["TodoItem", "Hard"] {
        assert_eq!(
            rows(chunked, table).await,
            rows(single, table).await,
            "{table}"
        );
    }
    let hard = rows(chunked, "Hard").await;
    let ids: Vec<&str> = hard.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["h1", "h2", "h3", "h4", "h5"]);
    assert_eq!(hard[0]["text"], "reborn");

    // The batch again: every applied op answers its remembered result, nothing changes.
    let before = rows(chunked, "TodoItem").await;
    let again = batch(chunked, &ops).await;
    for (n, (first, second)) in together.iter().zip(&again).enumerate() {
        let refused_then = first["status"].as_u64().unwrap() >= 400;
        if !refused_then {
            assert_eq!(first, second, "op {n}");
        }
    }
    assert_eq!(rows(chunked, "TodoItem").await, before);
}

#[tokio::test]
async fn a_chunked_batch_answers_as_one_by_one_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let chunked = sqlite_client(builder(), dir.path()).await;
    let single_dir = tempfile::tempdir().unwrap();
    let single = sqlite_client(builder(), single_dir.path()).await;
    same_as_one_by_one(&chunked, &single).await;
}

#[tokio::test]
async fn a_chunked_batch_answers_as_one_by_one_on_postgres() {
    let Some((chunked, a)) = postgres_client(builder(), "chunked_a").await else {
        return;
    };
    let Some((single, b)) = postgres_client(builder(), "chunked_b").await else {
        return;
    };
    same_as_one_by_one(&chunked, &single).await;
    drop_pg_schema(&a).await;
    drop_pg_schema(&b).await;
}
