//! Test helpers shared by the server's integration tests: an in-process client over the
//! router, token minting and the golden exchanges of the spec as one store-agnostic case.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod cases;
pub mod cursor;
pub mod golden;
pub mod hostile;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request};
use http_body_util::BodyExt;
use serde_json::Value;
use tidesync_server::{Access, Server, ServerBuilder, TableConfig};
use tower::ServiceExt;

/// The HS256 secret of the test servers.
pub const SECRET: &str = "golden-secret-of-at-least-32-bytes";

/// A response, read in full.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Resp {
    /// A response from its parts (the body parsed as JSON when it is JSON, else null).
    pub fn new(status: u16, headers: HeaderMap, bytes: &[u8]) -> Resp {
        Resp {
            status,
            headers,
            text: String::from_utf8_lossy(bytes).into_owned(),
            body: serde_json::from_slice(bytes).unwrap_or(Value::Null),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn etag(&self) -> String {
        self.header("etag").expect("an ETag header").to_owned()
    }

    /// The `id`s of an array body (or of `results` / `items`).
    pub fn ids(&self) -> Vec<String> {
        let list = match &self.body {
            Value::Array(list) => list.clone(),
            Value::Object(map) => map
                .get("results")
                .or_else(|| map.get("items"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        list.iter()
            .map(|item| item["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// Drives a router in-process.
#[derive(Debug, Clone)]
pub struct Client {
    pub router: Router,
}

impl Client {
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Resp {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1:8080");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Resp::new(status, headers, &bytes)
    }

    /// A v2 request (`ZUMO-API-VERSION: 2.0.0`, JSON body).
    pub async fn v2(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<Value>,
    ) -> Resp {
        self.versioned("2.0.0", method, path, extra, body).await
    }

    /// A v3 request.
    pub async fn v3(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<Value>,
    ) -> Resp {
        self.versioned("3.0.0", method, path, extra, body).await
    }

    /// `POST /tidesync/v1/batch` with `body`.
    pub async fn batch(&self, body: &Value, extra: &[(&str, &str)]) -> Resp {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend_from_slice(extra);
        self.send(
            "POST",
            "/tidesync/v1/batch",
            &headers,
            Some(&body.to_string()),
        )
        .await
    }

    async fn versioned(
        &self,
        version: &str,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<Value>,
    ) -> Resp {
        let mut headers = vec![("zumo-api-version", version)];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        headers.extend_from_slice(extra);
        let text = body.map(|b| b.to_string());
        self.send(method, path, &headers, text.as_deref()).await
    }
}

/// The golden server: `TodoItem` (anonymous) and `AuthTodoItem` (authenticated), HS256 auth.
pub fn golden_builder() -> ServerBuilder {
    Server::builder()
        .table("TodoItem")
        .table_config(TableConfig::new("AuthTodoItem").access(Access::Authenticated))
        .jwt_secret(SECRET)
}

/// A valid token for `sub`.
pub fn token(sub: &str) -> String {
    token_with(sub, SECRET, "urn:microsoft:windows-azure:zumo")
}

pub fn token_with(sub: &str, secret: &str, audience: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = serde_json::json!({
        "sub": sub, "iat": now, "exp": now + 3600,
        "aud": audience, "iss": "urn:microsoft:windows-azure:zumo",
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The test PostgreSQL URL (`TIDESYNC_TEST_PG`, default the local trust-auth server).
pub fn pg_url() -> String {
    std::env::var("TIDESYNC_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh schema name for one test, or `None` (skip) when PostgreSQL is unreachable outside
/// CI. Under `CI=true` an unreachable PostgreSQL fails the test.
pub async fn pg_schema(test: &str) -> Option<String> {
    match tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            drop(client);
            drop(connection);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            Some(format!("ts_{test}_{}_{nanos}", std::process::id()))
        }
        Err(error) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "PostgreSQL at {} is required under CI: {error}",
                pg_url()
            );
            eprintln!(
                "skipping: PostgreSQL at {} is unreachable: {error}",
                pg_url()
            );
            None
        }
    }
}

/// A client of the server `builder` makes over a fresh SQLite file in `dir`.
pub async fn sqlite_client(builder: ServerBuilder, dir: &std::path::Path) -> Client {
    let app = builder.sqlite(dir.join("server.db")).build().await.unwrap();
    Client {
        router: app.router(),
    }
}

/// A client of the server `builder` makes over a fresh PostgreSQL schema for `test`, and the
/// schema to drop afterwards; `None` (skip) as [`pg_schema`] says.
pub async fn postgres_client(builder: ServerBuilder, test: &str) -> Option<(Client, String)> {
    let schema = pg_schema(test).await?;
    let app = builder
        .postgres(pg_url(), Some(schema.clone()))
        .build()
        .await
        .unwrap();
    Some((
        Client {
            router: app.router(),
        },
        schema,
    ))
}

/// Drops a test schema.
pub async fn drop_pg_schema(schema: &str) {
    let (client, connection) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .unwrap();
    drop(client);
    let _ = task.await;
}

/// Two tests that run `case(&Client)` against the server `builder` makes: `$sqlite` over a
/// fresh SQLite file, `$postgres` over a fresh PostgreSQL schema (skipped as [`pg_schema`]
/// says; the schema is dropped after a passing case).
#[macro_export]
macro_rules! on_both_stores {
    ($sqlite:ident, $postgres:ident, $builder:expr, $case:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let dir = tempfile::tempdir().unwrap();
            $case(&common::sqlite_client($builder, dir.path()).await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let Some((client, schema)) =
                common::postgres_client($builder, stringify!($postgres)).await
            else {
                return;
            };
            $case(&client).await;
            common::drop_pg_schema(&schema).await;
        }
    };
}
