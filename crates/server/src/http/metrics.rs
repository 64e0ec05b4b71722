//! `GET /tidesync/v1/metrics`: the server's counters in the Prometheus text format (0.0.4),
//! and the request log.
//!
//! Protected like the other extensions: the API key when one is configured, and a token, if
//! sent, must verify. What it tells:
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `tidesync_http_requests_total` | counter | `route`, `status` |
//! | `tidesync_http_request_duration_seconds` | histogram (to the response head) | `route` |
//! | `tidesync_feeds_open` | gauge | |
//! | `tidesync_feed_events_sent_total` | counter | |
//! | `tidesync_feed_events_dropped_total` | counter (changes a feed skipped: it fell behind, or its client was too slow and was closed) | |
//! | `tidesync_store_read_slots`, `…_reads_in_use` | gauge | |
//! | `tidesync_store_read_waits_total`, `…_read_wait_timeouts_total` | counter | |
//! | `tidesync_store_connections`, `…_idle`, `…_waiting` | gauge (PostgreSQL) | |
//! | `tidesync_ops_applied_total` | counter (single writes and batch ops) | |
//! | `tidesync_rows_served_total` | counter (rows in table pages and snapshots) | |
//!
//! Routes are the route templates (`/tables/{table}`, `/tidesync/v1/feed`, …, `other`), never
//! the raw path, so the label set is bounded whatever clients send.
//!
//! Every request is also logged once it is answered, at `info` on the target
//! `tidesync::request`, as structured fields: `request_id` (the `x-request-id` the server
//! set or kept), `method`, `route`, `status` and `ms`. No query string is logged (it may carry
//! a credential).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;

/// The histogram's upper bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The server's counters (one per server, in the shared state).
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    routes: Mutex<BTreeMap<&'static str, Route>>,
    pub(crate) ops_applied: AtomicU64,
    pub(crate) rows_served: AtomicU64,
}

#[derive(Debug, Default)]
struct Route {
    by_status: BTreeMap<u16, u64>,
    /// Non-cumulative counts per bucket; the last is `+Inf`.
    buckets: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Metrics {
    pub(crate) fn add_ops(&self, n: usize) {
        self.ops_applied.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_rows(&self, n: usize) {
        self.rows_served.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn record(&self, route: &'static str, status: u16, seconds: f64) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let entry = routes.entry(route).or_default();
        *entry.by_status.entry(status).or_default() += 1;
        let at = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        entry.buckets[at] += 1;
        entry.sum += seconds;
        entry.count += 1;
    }
}

/// The route template of a path (bounded label values).
pub(crate) fn route_of(path: &str) -> &'static str {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match parts.as_slice() {
        ["tables", _] => "/tables/{table}",
        ["tables", _, _] => "/tables/{table}/{id}",
        ["tidesync", "v1", "capabilities"] => "/tidesync/v1/capabilities",
        ["tidesync", "v1", "batch"] => "/tidesync/v1/batch",
        ["tidesync", "v1", "feed"] => "/tidesync/v1/feed",
        ["tidesync", "v1", "metrics"] => "/tidesync/v1/metrics",
        ["tidesync", "v1", "tables", _, "horizon"] => "/tidesync/v1/tables/{table}/horizon",
        ["tidesync", "v1", "tables", _, "snapshot"] => "/tidesync/v1/tables/{table}/snapshot",
        ["health"] => "/health",
        ["ready"] => "/ready",
        _ => "other",
    }
}

/// The middleware: counts, times and logs every request.
pub(crate) async fn observe(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_of(request.uri().path());
    let method = request.method().clone();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    state.metrics.record(route, status, seconds);
    tracing::info!(
        target: "tidesync::request",
        request_id,
        method = %method,
        route,
        status,
        ms = (seconds * 1e4).round() / 10.0,
        "request"
    );
    response
}

/// `GET /tidesync/v1/metrics`.
pub(crate) async fn metrics(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(error) = state.caller(&headers).await {
        return error.into_response_for(None);
    }
    let mut out = String::with_capacity(4096);
    {
        let routes = state
            .metrics
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        out.push_str("# HELP tidesync_http_requests_total HTTP requests answered, by route template and status.\n# TYPE tidesync_http_requests_total counter\n");
        for (route, data) in routes.iter() {
            for (status, n) in &data.by_status {
                let _ = writeln!(
                    out,
                    "tidesync_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP tidesync_http_request_duration_seconds Time to the response head, by route template.\n# TYPE tidesync_http_request_duration_seconds histogram\n");
        for (route, data) in routes.iter() {
            let mut cumulative = 0;
            for (at, bound) in BUCKETS.iter().enumerate() {
                cumulative += data.buckets[at];
                let _ = writeln!(
                    out,
                    "tidesync_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "tidesync_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n\
                 tidesync_http_request_duration_seconds_sum{{route=\"{route}\"}} {}\n\
                 tidesync_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                data.count, data.sum, data.count
            );
        }
    }
    let (open, sent, dropped) = state.feed.stats();
    let pool = state.store.pool_stats();
    let scalars: [(&str, &str, &str, u64); 13] = [
        (
            "tidesync_feeds_open",
            "gauge",
            "Open change feeds.",
            open as u64,
        ),
        (
            "tidesync_feed_events_sent_total",
            "counter",
            "Change events written to feeds.",
            sent,
        ),
        (
            "tidesync_feed_events_dropped_total",
            "counter",
            "Changes feeds skipped (fell behind the broadcast, or the client was too slow and its feed was closed).",
            dropped,
        ),
        (
            "tidesync_store_read_slots",
            "gauge",
            "Reads the store runs at once at most.",
            pool.read_slots,
        ),
        (
            "tidesync_store_reads_in_use",
            "gauge",
            "Reads running now.",
            pool.reads_in_use,
        ),
        (
            "tidesync_store_read_waits_total",
            "counter",
            "Reads that waited for a slot.",
            pool.read_waits,
        ),
        (
            "tidesync_store_read_wait_timeouts_total",
            "counter",
            "Reads that waited past limits.queue_timeout_ms (503).",
            pool.read_wait_timeouts,
        ),
        (
            "tidesync_store_connections",
            "gauge",
            "PostgreSQL connections open.",
            pool.connections,
        ),
        (
            "tidesync_store_connections_idle",
            "gauge",
            "PostgreSQL connections idle.",
            pool.connections_idle,
        ),
        (
            "tidesync_store_connections_waiting",
            "gauge",
            "Callers waiting for a PostgreSQL connection.",
            pool.connections_waiting,
        ),
        (
            "tidesync_ops_applied_total",
            "counter",
            "Writes applied (single writes and batch ops).",
            state.metrics.ops_applied.load(Ordering::Relaxed),
        ),
        (
            "tidesync_rows_served_total",
            "counter",
            "Rows sent in table pages and snapshots.",
            state.metrics.rows_served.load(Ordering::Relaxed),
        ),
        ("tidesync_up", "gauge", "1 while the server answers.", 1),
    ];
    for (name, kind, help, value) in scalars {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    let mut response = (StatusCode::OK, out).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::route_of;

    #[test]
    fn routes_are_templates_whatever_the_path() {
        assert_eq!(route_of("/tables/TodoItem"), "/tables/{table}");
        assert_eq!(route_of("/tables/TodoItem/abc"), "/tables/{table}/{id}");
        assert_eq!(route_of("/tidesync/v1/feed"), "/tidesync/v1/feed");
        assert_eq!(
            route_of("/tidesync/v1/tables/x/snapshot"),
            "/tidesync/v1/tables/{table}/snapshot"
        );
        assert_eq!(route_of("/some/thing/else/entirely"), "other");
        assert_eq!(route_of("/"), "other");
    }
}
