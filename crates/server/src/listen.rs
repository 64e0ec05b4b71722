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

/// Serves one connection under the timers of the module documentation.
async fn connection(
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
