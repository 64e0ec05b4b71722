//! The axum router: table routes, health, the tidesync extension routes (capabilities,
//! horizon, snapshot, batch, feed, metrics) and the middleware
//! (request ids, tracing, metrics and the request log, body limit, CORS, cache headers).

mod batch;
mod context;
mod ext;
pub mod feed;
mod items;
mod json;
pub(crate) mod metrics;
mod page;
mod query;
pub mod response;
mod schema_check;
mod snapshot;
mod write;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use axum::middleware;
use axum::response::Response;
use axum::routing::{any, get, post};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::Authenticator;
use crate::config::{BatchConfig, Paging, SchemaConfig, TableConfig};
use crate::error::ServerError;
use crate::policy::{Caller, Guard, Operation, TablePolicy};
use crate::store::Store;

/// The prefix of the tidesync-only routes.
pub const EXTENSION_PREFIX: &str = "/tidesync/v1";

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) tables: Vec<TableConfig>,
    /// Each table's rules, by configured name (see [`AppState::guard`]).
    pub(crate) guards: HashMap<String, Arc<Guard>>,
    pub(crate) paging: Paging,
    pub(crate) auth: Arc<dyn Authenticator>,
    pub(crate) body_limit: usize,
    pub(crate) lenient_version: bool,
    pub(crate) tombstone_retention_secs: Option<u64>,
    pub(crate) cors_origins: Vec<String>,
    pub(crate) batch: BatchConfig,
    /// The caps on dynamic tables' schemas.
    pub(crate) schema: SchemaConfig,
    /// The tombstone purge task (stopped when the state is dropped).
    pub(crate) purger: std::sync::Mutex<Option<crate::server::PurgeTask>>,
    /// The change feed's broadcast and settings.
    pub(crate) feed: crate::feed::FeedHub,
    pub(crate) feed_config: crate::feed::FeedConfig,
    /// What one client can make the server do.
    pub(crate) limits: crate::config::Limits,
    /// The counters of `GET /tidesync/v1/metrics`.
    pub(crate) metrics: metrics::Metrics,
}

impl AppState {
    /// The configured table for a URL name (case-insensitive).
    pub(crate) fn table(&self, name: &str) -> Result<&TableConfig, ServerError> {
        self.tables
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| ServerError::UnknownTable {
                table: name.to_owned(),
            })
    }

    /// The rules of `table`: its configured rules and the app's policy, if registered.
    pub(crate) fn guard(&self, table: &TableConfig) -> Arc<Guard> {
        self.guards
            .get(&table.name)
            .cloned()
            .unwrap_or_else(|| Arc::new(Guard::new(table, None)))
    }

    /// Authenticates a request with the server's [`Authenticator`] (the built-in one: the API
    /// key when one is configured, and the user of a token when one is sent; it must verify).
    pub(crate) async fn caller(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<Caller, ServerError> {
        Ok(Caller::new(self.auth.authenticate(headers).await?))
    }

    /// The table `name` for an authenticated `caller` who wants to do `operation`, with its
    /// policy, which has allowed it. Run after [`AppState::caller`]: credentials come before
    /// the table, and to a caller without a user an unknown table answers like a table that
    /// needs one (401) whenever this server verifies tokens, so that strangers cannot tell
    /// which tables exist; only signed-in callers learn that a table does not (404).
    pub(crate) fn resolve(
        &self,
        name: &str,
        caller: &Caller,
        operation: Operation,
    ) -> Result<(&TableConfig, Arc<Guard>), ServerError> {
        let table = match self.table(name) {
            Ok(table) => table,
            Err(_) if caller.user.is_none() && self.auth.verifies_tokens() => {
                return Err(ServerError::Unauthenticated);
            }
            Err(unknown) => return Err(unknown),
        };
        let guard = self.guard(table);
        guard.authorize(caller, operation)?;
        Ok((table, guard))
    }
}

/// Checks that a declared column's name is usable: the rules a dynamic table applies to a
/// new property.
///
/// # Errors
///
/// Which rule the name breaks.
pub(crate) fn check_declared_column(name: &str) -> Result<(), String> {
    schema_check::check_column_name(name)
}

/// The guard of every configured table, with the app's policies (by table name, any case).
pub(crate) fn guards(
    tables: &[TableConfig],
    policies: &HashMap<String, Arc<dyn TablePolicy>>,
) -> HashMap<String, Arc<Guard>> {
    tables
        .iter()
        .map(|table| {
            let app = policies
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&table.name))
                .map(|(_, policy)| Arc::clone(policy));
            (table.name.clone(), Arc::new(Guard::new(table, app)))
        })
        .collect()
}

pub(crate) type Shared = Arc<AppState>;

/// Builds the router over `state`.
pub(crate) fn router(state: Shared) -> Router {
    let tables = Router::new()
        .route(
            "/tables/{table}",
            get(query::list)
                .post(items::insert)
                .fallback(method_not_allowed),
        )
        .route(
            "/tables/{table}/{id}",
            get(items::read)
                .patch(items::patch)
                .put(items::put)
                .delete(items::delete)
                .merge(post(items::undelete))
                .fallback(method_not_allowed),
        )
        .layer(middleware::map_response(table_headers));
    let extensions = Router::new()
        .route(
            &format!("{EXTENSION_PREFIX}/capabilities"),
            get(ext::capabilities),
        )
        .route(
            &format!("{EXTENSION_PREFIX}/tables/{{table}}/horizon"),
            get(ext::horizon),
        )
        .route(
            &format!("{EXTENSION_PREFIX}/tables/{{table}}/snapshot"),
            get(snapshot::snapshot),
        )
        .route(&format!("{EXTENSION_PREFIX}/batch"), post(batch::batch))
        .route(&format!("{EXTENSION_PREFIX}/feed"), get(feed::feed))
        .route(
            &format!("{EXTENSION_PREFIX}/metrics"),
            get(metrics::metrics),
        )
        // Unknown paths in this router's own space answer its JSON 404; the rest of the
        // URL space is the host app's (no router-level fallback, so `Router::merge` into a
        // host router with a fallback of its own works).
        .route(&format!("{EXTENSION_PREFIX}/{{*rest}}"), any(not_found))
        .route("/tables/{table}/{id}/{*rest}", any(not_found));
    let mut app = Router::new()
        .merge(tables)
        .merge(extensions)
        .route("/health", get(health))
        .route("/ready", get(ready))
        .layer(DefaultBodyLimit::max(state.body_limit))
        // A body that stalls ends its request instead of holding the connection.
        .layer(RequestBodyTimeoutLayer::new(
            state.limits.body_read_timeout(),
        ));
    if let Some(cors) = cors_layer(&state.cors_origins) {
        app = app.layer(cors);
    }
    let request_id = HeaderName::from_static("x-request-id");
    // The request span names the method and the path only: query strings may carry a token
    // (`access_token`) or an API key (`api_key`), and no credential is ever logged.
    let trace = TraceLayer::new_for_http().make_span_with(|request: &Request<Body>| {
        tracing::debug_span!(
            "request",
            method = %request.method(),
            path = %request.uri().path(),
            request_id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
        )
    });
    // Inside the request id layers: the log line carries the id.
    app.layer(middleware::from_fn_with_state(
        Arc::clone(&state),
        metrics::observe,
    ))
    .layer(PropagateRequestIdLayer::new(request_id.clone()))
    .layer(trace)
    .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
    .with_state(state)
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PATCH,
                Method::PUT,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers([
                header::LINK,
                header::ETAG,
                header::LOCATION,
                header::LAST_MODIFIED,
                HeaderName::from_static("x-request-id"),
                // The tombstone horizon: browser clients must see it to know when to resync.
                HeaderName::from_static(query::PURGED_BEFORE_HEADER),
            ])
            .max_age(std::time::Duration::from_secs(300)),
    )
}

/// Adds the cache headers of table responses (spec 2.3).
async fn table_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::EXPIRES, HeaderValue::from_static("0"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        HeaderName::from_static("x-zumo-server-version"),
        HeaderValue::from_static(concat!("tidesync-", env!("CARGO_PKG_VERSION"))),
    );
    response
}

async fn method_not_allowed() -> Response {
    ServerError::MethodNotAllowed.into_response_for(None)
}

/// The answer of a path no route serves (the standalone server's fallback too).
pub(crate) async fn not_found() -> Response {
    response::error_body(StatusCode::NOT_FOUND, "no such route")
}

async fn health() -> Response {
    response::json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

async fn ready(axum::extract::State(state): axum::extract::State<Shared>) -> Response {
    match state.store.ping().await {
        Ok(()) => response::json(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        Err(error) => response::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "unavailable", "error": error.to_string() }),
        ),
    }
}
