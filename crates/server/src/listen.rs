//! The accept loop and the life of one connection: what [`crate::App::serve`] runs.
//!
//! Each connection is served by hyper's HTTP/1 server with three rules of
//! [`crate::config::Limits`] around it:
//!
//! - **At most `max_connections` at once.** One more is answered `503` with `Retry-After` and
//!   closed at once, without a task of its own.
//! - **A request head arrives within `header_read_timeout_ms`**, counted from its first byte
//!   (or from the connection opening, for the first request): a client that sends half a
//!   request and waits is disconnected.
//! - **An idle keep-alive connection is closed after `keep_alive_timeout_ms`.**
//!
//! A connection is *busy* from the moment its request head is complete until its response
//! body has been sent (or dropped); only an idle connection is timed, so a long response (a
//! change feed, a snapshot) is never cut. The timers cost nothing while a connection is
//! busy: its task sleeps until the connection's state changes.
//!
//! Stopping: the loop stops accepting, every connection finishes its request in flight and
//! closes, and [`serve`] returns once the last one has.
//!
//! **Change feeds skip hyper.** A connection whose first bytes are `GET /tidesync/v1/feed`
//! has its request head read here (at most [`FEED_HEAD_MAX`] bytes, within
//! `header_read_timeout_ms`), and the request goes through the same router (credentials,
//! caps, request id, logs). When the answer is an open feed, its head is written here and the
//! feed's session writes its events straight to the socket ([`crate::feed::deliver`]), in a
//! small task of its own: a feed that lives for hours keeps no HTTP connection state, read or
//! write buffers (hyper's are 8 KB each) or request future. The connection closes when the
//! feed ends (`connection: close`). Any other first request (and a feed request whose first
//! packet is shorter than the prefix) is served by hyper as above. A feed request on this path
//! must be HTTP/1.1 (the events are chunks); anything else, or a head that does not parse,
//! answers 400, and a head over the size 431, each closing the connection.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::config::Limits;
use crate::feed::FeedTakeover;

/// The request line's start that marks a change feed connection.
const FEED_PREFIX: &[u8] = b"GET /tidesync/v1/feed";
/// The longest feed request head read (a token in the query or a header fits many times).
pub(crate) const FEED_HEAD_MAX: usize = 16 * 1024;
/// The most headers a feed request may carry.
const FEED_HEADERS_MAX: usize = 64;
/// The largest error answer passed on to a feed request.
const FEED_ANSWER_MAX: usize = 64 * 1024;

/// The answer to a connection over the limit (sent without reading its request).
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json; charset=utf-8\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 82\r\n\r\n\
{\"error\":\"the server is at its connection limit\",\"limit\":\"limits.max_connections\"}";

/// Serves `router` on `listener` until `stop` fires, then waits for open connections.
///
/// # Errors
///
/// Never today; the signature leaves room for fatal listener errors.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stop: oneshot::Receiver<()>,
) -> io::Result<()> {
    let max = limits.max_connections.clamp(1, u32::MAX as usize);
    let permits = Arc::new(Semaphore::new(max));
    let (shutdown, shutting_down) = watch::channel(false);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            // A fresh socket's send buffer is empty, so this write does not block.
            let _ = stream.try_write(BUSY);
            tracing::warn!(%peer, limit = max, "connection refused: limits.max_connections");
            continue;
        };
        tokio::spawn(connection(
            stream,
            peer,
            router.clone(),
            limits,
            shutting_down.clone(),
            permit,
        ));
    }
    drop(listener);
    shutdown.send_replace(true);
    // Every connection holds a permit until it ends.
    let _ = permits
        .acquire_many(u32::try_from(max).unwrap_or(u32::MAX))
        .await;
    Ok(())
}

/// Serves one connection: a change feed here, anything else with hyper.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    mut shutting_down: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) {
    let first = tokio::select! {
        first = tokio::time::timeout(limits.header_read_timeout(), starts_feed(&stream)) => first,
        _ = shutting_down.changed() => return,
    };
    match first {
        // Nothing arrived in time: a head that never came.
        Err(_) => {}
        Ok(true) => {
            // The request and its answer run in this (short) task; a feed then lives in a
            // small task of its own.
            if let Some((session, stream)) = Box::pin(open_feed(stream, peer, router, limits)).await
            {
                tokio::spawn(async move {
                    let _permit = permit;
                    let mut stream = stream;
                    crate::feed::deliver(session, &mut stream).await;
                });
            }
        }
        Ok(false) => {
            Box::pin(http_connection(
                stream,
                peer,
                router,
                limits,
                shutting_down,
                permit,
            ))
            .await;
        }
    }
}

/// Whether the connection's first bytes are a feed request (waits for the first packet).
async fn starts_feed(stream: &TcpStream) -> bool {
    let mut first = [0u8; FEED_PREFIX.len()];
    match stream.peek(&mut first).await {
        Ok(n) => n == FEED_PREFIX.len() && first == FEED_PREFIX,
        Err(_) => false,
    }
}

/// Reads a feed request's head, runs it through the router and, when the answer is an open
/// feed, writes its head and returns the session; otherwise writes the answer and closes.
async fn open_feed(
    mut stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
) -> Option<(crate::feed::deliver::FeedSession, TcpStream)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // Each event is one complete write: waiting to merge it with a later one only delays it.
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + limits.header_read_timeout();
    let mut head = Vec::with_capacity(1024);
    let end = loop {
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if head.len() >= FEED_HEAD_MAX {
            let _ = stream
                .write_all(&plain_answer(431, "the request head is too large"))
                .await;
            return None;
        }
        let mut chunk = [0u8; 2048];
        let want = chunk.len().min(FEED_HEAD_MAX + 4 - head.len());
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk[..want])).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    };
    let Some(request) = feed_request(&head[..end], peer) else {
        let _ = stream
            .write_all(&plain_answer(400, "the request head is not valid"))
            .await;
        return None;
    };
    drop(head);
    let Ok(response) = router.oneshot(request).await;
    let (parts, body) = response.into_parts();
    let session = parts
        .extensions
        .get::<FeedTakeover>()
        .filter(|_| parts.status == axum::http::StatusCode::OK)
        .and_then(FeedTakeover::take);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in &parts.headers {
        if name == axum::http::header::CONTENT_LENGTH
            || name == axum::http::header::TRANSFER_ENCODING
            || name == axum::http::header::CONNECTION
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match session {
        Some(session) => {
            drop(body);
            out.extend_from_slice(b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n");
            stream.write_all(&out).await.ok()?;
            Some((session, stream))
        }
        None => {
            let body = axum::body::to_bytes(body, FEED_ANSWER_MAX)
                .await
                .unwrap_or_default();
            out.extend_from_slice(
                format!(
                    "content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(&body);
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
            None
        }
    }
}

/// The request of a complete feed request head, or `None` when it does not parse.
fn feed_request(head: &[u8], peer: SocketAddr) -> Option<Request<Body>> {
    let mut headers = [httparse::EMPTY_HEADER; FEED_HEADERS_MAX];
    let mut parsed = httparse::Request::new(&mut headers);
    if !matches!(parsed.parse(head), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    if parsed.version != Some(1) {
        return None;
    }
    let mut builder = Request::builder()
        .method(parsed.method?)
        .uri(parsed.path?)
        .version(axum::http::Version::HTTP_11);
    for header in parsed.headers.iter() {
        builder = builder.header(header.name, header.value);
    }
    let mut request = builder.body(Body::empty()).ok()?;
    request.extensions_mut().insert(ConnectInfo(peer));
    Some(request)
}

/// A small JSON error answer that closes the connection.
fn plain_answer(status: u16, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": message }).to_string();
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves one connection with hyper under the timers of the module documentation.
async fn http_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    mut shutting_down: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let requests = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let busy = requests.begin();
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move {
            let Ok(response) = router.oneshot(request).await;
            Ok::<_, Infallible>(response.map(|body| Body::new(Tracked { body, _busy: busy })))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let deadline = activity.deadline(&limits, closing);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = sleep_until(deadline) => match activity.expired(&limits, closing) {
                Some(Expired::HeaderRead) => {
                    tracing::debug!(%peer, "closing a connection whose request head did not arrive in time");
                    return;
                }
                Some(Expired::Idle) => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                None => {}
            },
            () = activity.changed.notified() => {}
            _ = shutting_down.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Which timer of a connection ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    /// A request head began and did not complete in time.
    HeaderRead,
    /// The connection was idle for too long.
    Idle,
}

/// What the timers of one connection look at.
#[derive(Debug)]
struct Activity {
    state: Mutex<State>,
    /// Woken when the connection becomes busy or idle, or a request head begins.
    changed: Notify,
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// Requests whose response has not been sent yet.
    busy: usize,
    /// When the connection last became idle (or opened).
    idle_since: Instant,
    /// When the first byte of the next request head arrived, while idle.
    head_started: Option<Instant>,
    /// Whether a request has been served (an unused connection is timed like a head).
    served: bool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            state: Mutex::new(State {
                busy: 0,
                idle_since: Instant::now(),
                head_started: None,
                served: false,
            }),
            changed: Notify::new(),
        }
    }

    fn with<T>(&self, work: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        work(&mut state)
    }

    /// A request head is complete: busy until the returned guard is dropped.
    fn begin(self: &Arc<Activity>) -> Busy {
        self.with(|state| {
            state.busy += 1;
            state.head_started = None;
            state.served = true;
        });
        self.changed.notify_one();
        Busy {
            activity: Arc::clone(self),
        }
    }

    /// Bytes arrived: while idle, the first ones start the head timer.
    fn read(&self) {
        let started = self.with(|state| {
            let start = state.busy == 0 && state.head_started.is_none();
            if start {
                state.head_started = Some(Instant::now());
            }
            start
        });
        if started {
            self.changed.notify_one();
        }
    }

    /// When a timer runs out next (`None` while busy).
    fn deadline(&self, limits: &Limits, closing: bool) -> Option<Instant> {
        self.with(|state| {
            if state.busy > 0 {
                return None;
            }
            match state.head_started {
                Some(started) => Some(started + limits.header_read_timeout()),
                // Closing already: only a half-sent head can still hold the connection.
                None if closing => None,
                None if state.served => Some(state.idle_since + limits.keep_alive_timeout()),
                None => Some(state.idle_since + limits.header_read_timeout()),
            }
        })
    }

    fn expired(&self, limits: &Limits, closing: bool) -> Option<Expired> {
        let deadline = self.deadline(limits, closing)?;
        if Instant::now() < deadline {
            return None;
        }
        self.with(|state| match state.head_started {
            Some(_) => Some(Expired::HeaderRead),
            // An unused connection that sent nothing is a head that never came.
            None if !state.served => Some(Expired::HeaderRead),
            None => Some(Expired::Idle),
        })
    }
}

/// Held while a response is on its way; dropping it makes the connection idle.
#[derive(Debug)]
struct Busy {
    activity: Arc<Activity>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.activity.with(|state| {
            state.busy = state.busy.saturating_sub(1);
            if state.busy == 0 {
                state.idle_since = Instant::now();
            }
        });
        self.activity.changed.notify_one();
    }
}

/// A response body that keeps its connection busy until it is sent or dropped.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket, telling [`Activity`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
