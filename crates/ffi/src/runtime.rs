//! The binding's own tokio runtime: every async call and every listener runs on
//! it, so hosts need no runtime of their own (Python's asyncio, Kotlin's
//! coroutines and Swift's concurrency only await the result).

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::error::TidesyncError;

/// One runtime per process, shared by every client; never dropped, so no client
/// (or listener) dropped on one of its threads can shut it down under itself.
static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The runtime, started on first use.
///
/// # Errors
/// [`TidesyncError::Internal`] when the OS refuses its threads.
pub(crate) fn runtime() -> Result<&'static Runtime, TidesyncError> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("tidesync")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| TidesyncError::internal(format!("cannot start the tokio runtime: {e}")))
}

/// Runs `future` on the runtime and waits for it from whatever executor polls
/// the returned future (the host's). Dropping the wait (the host cancelled)
/// aborts the task.
///
/// # Errors
/// The future's own error; [`TidesyncError::Internal`] when the task panicked.
pub(crate) async fn run<T, F>(future: F) -> Result<T, TidesyncError>
where
    F: Future<Output = Result<T, TidesyncError>> + Send + 'static,
    T: Send + 'static,
{
    let task = AbortOnDrop(runtime()?.spawn(future));
    match task.await {
        Ok(result) => result,
        Err(e) if e.is_cancelled() => Err(TidesyncError::Cancelled),
        Err(e) => Err(TidesyncError::internal(format!("the call failed: {e}"))),
    }
}

/// A task handle that aborts its task when dropped unfinished.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
