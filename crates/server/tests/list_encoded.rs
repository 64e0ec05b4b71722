//! The SQLite store writes a list page's body itself (`Store::read_page`, no `$select`):
//! its responses must be byte for byte those of the general path (`Store::read`, a `Row`
//! per row, serialized by the handler), which a store without `read_page` still takes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use common::{Client, Resp};
use serde_json::{Value, json};
use tidesync_server::store::{
    BatchWrite, ColumnType, Decide, EncodedPage, Outcome, PageRequest, ReadRequest, ReadResult,
    Row, StoreError, TableSchema, TableSpec,
};
use tidesync_server::{Server, ServerBuilder, SqliteStore, Store, TableConfig};

/// Delegates to a SQLite store; `encoded` says whether `read_page` is passed on too (the
/// new path) or left to the default (the general path), and `pages` counts the pages the
/// store encoded.
#[derive(Debug)]
struct Probe {
    inner: SqliteStore,
    encoded: bool,
    pages: AtomicUsize,
}

#[async_trait]
impl Store for Probe {
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
        self.inner.read(table, request).await
    }

    async fn read_page(
        &self,
        table: &str,
        page: &PageRequest,
    ) -> Result<Option<EncodedPage>, StoreError> {
        if !self.encoded {
            return Ok(None);
        }
        let encoded = self.inner.read_page(table, page).await?;
        if encoded.is_some() {
            self.pages.fetch_add(1, Ordering::SeqCst);
        }
        Ok(encoded)
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

fn builder() -> ServerBuilder {
    Server::builder()
        // Columns before, between and after the system properties in key order.
        .table_config(
            TableConfig::new("Typed")
                .column("Zeta", ColumnType::String)
                .column("amount", ColumnType::Number)
                .column("count", ColumnType::Integer)
                .column("done", ColumnType::Boolean)
                .column("due", ColumnType::DateTime)
                .column("text", ColumnType::String)
                .column("zz", ColumnType::Number),
        )
        // Dynamic, without soft delete.
        .table_config(TableConfig::new("Loose").soft_delete(false))
        .page_size(4)
}

/// The rows: every type, nulls, strings that need escapes, extreme numbers.
fn rows() -> Vec<Value> {
    let texts = [
        "plain",
        "quote \" backslash \\ slash / newline \n tab \t",
        "control \u{1} \u{1f} del \u{7f}",
        "unicode é ß 漢字 😀 \u{2028}",
        "",
        "</script><b>",
    ];
    let amounts = [
        json!(0),
        json!(2.5),
        json!(-1e300),
        json!(1.0),
        json!(9_007_199_254_740_993_i64),
        json!(0.1),
        json!(-7),
        Value::Null,
    ];
    let counts = [
        json!(i64::MIN),
        json!(i64::MAX),
        json!(0),
        json!(-42),
        Value::Null,
    ];
    let dues = [
        json!("2026-12-06T07:00:00.000Z"),
        json!("1970-01-01T00:00:00.001Z"),
        json!("2399-12-31T23:59:59.999Z"),
        Value::Null,
    ];
    (0..23)
        .map(|n: usize| {
            let mut row = json!({
                "id": format!("row-{n:02}"),
                "Zeta": texts[n % texts.len()],
                "amount": amounts[n % amounts.len()],
                "count": counts[n % counts.len()],
                "done": if n % 3 == 2 { Value::Null } else { json!(n % 2 == 0) },
                "due": dues[n % dues.len()],
                "text": if n % 5 == 4 { Value::Null } else { json!(texts[(n + 2) % texts.len()]) },
            });
            if n % 4 != 1 {
                row["zz"] = json!(n as f64 / 8.0);
            }
            if n == 7 {
                row["id"] = json!("é ü 漢 😀");
            }
            row
        })
        .collect()
}

/// Both clients get the same answer (status, body bytes, headers that matter).
async fn same(encoded: &Client, general: &Client, version: &str, path: &str) -> Resp {
    let headers = [("zumo-api-version", version)];
    let new = encoded.send("GET", path, &headers, None).await;
    let old = general.send("GET", path, &headers, None).await;
    assert_eq!(new.status, old.status, "{version} {path}: {}", new.text);
    assert_eq!(new.text, old.text, "{version} {path}");
    for name in ["content-type", "link", "x-tidesync-purged-before"] {
        assert_eq!(
            new.header(name),
            old.header(name),
            "{version} {path} {name}"
        );
    }
    new
}

#[tokio::test]
async fn an_encoded_page_is_the_general_paths_page_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("pages.db"))
        .await
        .unwrap();
    let probe = |encoded| {
        Arc::new(Probe {
            inner: store.clone(),
            encoded,
            pages: AtomicUsize::new(0),
        })
    };
    let (new_store, old_store) = (probe(true), probe(false));
    let encoded = Client {
        router: builder()
            .store(new_store.clone())
            .build()
            .await
            .unwrap()
            .router(),
    };
    let general = Client {
        router: builder()
            .store(old_store.clone())
            .build()
            .await
            .unwrap()
            .router(),
    };

    for row in rows() {
        let r = encoded.v3("POST", "/tables/Typed", &[], Some(row)).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    // A purge of one tombstone (the purge horizon header), then more tombstones.
    let r = encoded
        .v3("DELETE", "/tables/Typed/row-03", &[], None)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(store.purge_deleted("Typed", i64::MAX).await.unwrap(), 1);
    for n in [4, 10, 18] {
        let r = encoded
            .v3("DELETE", &format!("/tables/Typed/row-{n:02}"), &[], None)
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
    // Learned columns: a string, a number, a boolean, a date-time; nulls in the others.
    for (n, (column, value)) in [
        ("s", json!("a\u{0}b")),
        ("n", json!(1.5)),
        ("b", json!(true)),
        ("d", json!("2026-01-02T03:04:05.678Z")),
        ("s", json!("two")),
    ]
    .into_iter()
    .enumerate()
    {
        let r = encoded
            .v3(
                "POST",
                "/tables/Loose",
                &[],
                Some(json!({"id": format!("l{n}"), column: value})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = encoded.v3("DELETE", "/tables/Loose/l0", &[], None).await;
    assert_eq!(r.status, 204, "{}", r.text);

    let queries = [
        "",
        "?$orderby=updatedAt,id",
        "?$orderby=updatedAt,id&$top=7",
        "?$orderby=updatedAt,id&$top=7&$skip=5",
        "?$orderby=amount%20desc&$skip=2&$top=3&$count=true",
        "?$orderby=Zeta,id&$count=true",
        "?$orderby=id&__includeDeleted=true",
        "?$orderby=id&__includeDeleted=true&$count=true&$skip=19",
        "?$orderby=id&__includeDeleted=true&$top=100&$skip=4",
        "?$filter=done%20eq%20true&$orderby=id&$count=true",
        "?$filter=count%20gt%200&$orderby=count%20desc,id",
        "?$skip=100&$count=true",
        "?$top=0",
        "?$select=id,Zeta",
    ];
    let loose = [
        "",
        "?$orderby=id&$top=2",
        "?$orderby=updatedAt,id&$count=true&$skip=1&$top=2",
        "?$orderby=s,id&__includeDeleted=true",
        "?$select=id,s",
    ];
    let mut pages = 0;
    for (table, queries) in [("Typed", &queries[..]), ("Loose", &loose[..])] {
        for query in queries {
            for version in ["2.0.0", "3.0.0"] {
                let r = same(
                    &encoded,
                    &general,
                    version,
                    &format!("/tables/{table}{query}"),
                )
                .await;
                assert_eq!(r.status, 200, "{table}{query}: {}", r.text);
                if !query.contains("$select") {
                    pages += 1;
                }
            }
        }
    }
    // The pages had what they were meant to cover.
    let v3 = same(
        &encoded,
        &general,
        "3.0.0",
        "/tables/Typed?__includeDeleted=true&$top=50",
    )
    .await;
    let v2 = same(
        &encoded,
        &general,
        "2.0.0",
        "/tables/Typed?__includeDeleted=true&$top=50",
    )
    .await;
    assert_eq!(v2.ids().len(), 22);
    let text = &format!("{}{}", v3.text, v2.text);
    for needle in [
        "\"deleted\":true",
        "\"deleted\":false",
        "\"count\":null",
        "\\\"",
        "\\u0001",
        "-1e+300",
        "9223372036854775807",
        "-9223372036854775808",
        "\"zz\":null",
        "\"due\":\"2399-12-31T23:59:59.999Z\"",
        "\"done\":null",
        "\"nextLink\":\"__includeDeleted=true&$skip=4&$top=46\"",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    let loose = same(&encoded, &general, "2.0.0", "/tables/Loose?$top=1").await;
    assert!(!loose.text.contains("deleted"), "{}", loose.text);
    assert!(loose.header("link").is_some());
    assert!(loose.header("x-tidesync-purged-before").is_none());
    let typed = same(&encoded, &general, "2.0.0", "/tables/Typed").await;
    assert!(typed.header("x-tidesync-purged-before").is_some());

    // Every page without `$select` was encoded by the store on one side and not the other.
    assert_eq!(new_store.pages.load(Ordering::SeqCst), pages + 4);
    assert_eq!(old_store.pages.load(Ordering::SeqCst), 0);
}
