//! Driving one HTTP/2 connection: its streams' handlers polled in the connection's own task,
//! stream activity for the idle timeout, keep-alive and graceful shutdown.

use super::routing::{Dispatch, Shared};
use super::settings::GrpcEndpointOptions;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// Streams in progress on one connection and when the last one ended.
pub(super) struct Activity {
    started: Instant,
    active: AtomicUsize,
    last_ms: AtomicU64,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self { started: Instant::now(), active: AtomicUsize::new(0), last_ms: AtomicU64::new(0) }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long the connection has had no stream (zero while one is active).
    pub(super) fn idle_for(&self) -> Duration {
        if self.active.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.now_ms().saturating_sub(self.last_ms.load(Ordering::Acquire)))
    }
}

/// Marks a stream active while it lives, and counts it in `grpc_requests_in_flight`.
pub(super) struct StreamGuard(Arc<Activity>);

impl StreamGuard {
    pub(super) fn enter(activity: &Arc<Activity>) -> Self {
        activity.active.fetch_add(1, Ordering::AcqRel);
        if let Some(m) = crate::toolkit::metrics::grpc() {
            m.in_flight.inc();
        }
        Self(activity.clone())
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.last_ms.store(self.0.now_ms(), Ordering::Release);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        if let Some(m) = crate::toolkit::metrics::grpc() {
            m.in_flight.dec();
        }
    }
}

/// The stream handlers hyper starts on one connection, run inside that connection's own task
/// instead of one spawned task each.
///
/// hyper's HTTP/2 server hands every stream's handler to its executor. Spawned on the runtime,
/// each request costs a task, a wake of the connection task (often on the other worker) for
/// every reply, and a write per reply. Queued here, the handlers are polled by
/// [`serve_connection`] right after the connection has read their requests, and the connection
/// is polled again right after them: the replies of every stream that was ready go out together
/// in one write, without a task or a cross-thread wake per request. Streams of one connection
/// then share one task (as the connection's HTTP/2 framing already does); connections still
/// spread over the runtime's workers.
#[derive(Clone)]
struct StreamExecutor(Arc<StreamQueue>);

type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

struct StreamQueue {
    started: Mutex<Vec<StreamFuture>>,
    waker: futures::task::AtomicWaker,
}

impl StreamExecutor {
    fn new() -> Self {
        Self(Arc::new(StreamQueue { started: Mutex::new(Vec::new()), waker: futures::task::AtomicWaker::new() }))
    }
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.started.lock().push(Box::pin(future));
        self.0.waker.wake();
    }
}

/// Drives a connection and the handlers of its streams; ready when the connection has ended.
fn drive_connection<C>(
    conn: Pin<&mut C>,
    streams: &mut futures::stream::FuturesUnordered<StreamFuture>,
    queue: &StreamQueue,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<C::Output>
where
    C: Future,
{
    use futures::Stream;
    use std::task::Poll;
    queue.waker.register(cx.waker());
    let mut conn = conn;
    // Connection, then the handlers it started or woke, then the connection again to send what
    // they answered; a few rounds at most, so one busy connection cannot starve the worker.
    for _ in 0..4 {
        if let Poll::Ready(result) = conn.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        let started = std::mem::take(&mut *queue.started.lock());
        let mut progressed = !started.is_empty();
        streams.extend(started);
        while let Poll::Ready(Some(())) = Pin::new(&mut *streams).poll_next(cx) {
            progressed = true;
        }
        if !progressed {
            return Poll::Pending;
        }
    }
    // Still busy: come back after the other tasks of this worker had their turn.
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// Serves one connection until it ends, the endpoint drains it (`drain`: graceful) or drops it
/// (`kill`), or it stays without streams for the idle timeout (graceful). Handlers still running
/// when the connection ends are driven to their end (their replies go nowhere) unless killed.
pub(super) async fn serve_connection<I>(
    io: I,
    shared: Arc<Shared>,
    options: GrpcEndpointOptions,
    drain: CancellationToken,
    kill: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use futures::StreamExt;
    let activity = Arc::new(Activity::new());
    let dispatch = Dispatch { shared, activity: activity.clone() };
    let executor = StreamExecutor::new();
    let queue = executor.0.clone();
    let mut builder = hyper::server::conn::http2::Builder::new(executor);
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.max_concurrent_streams)
        .max_header_list_size(16 * 1024)
        .max_pending_accept_reset_streams(Some(50))
        .max_local_error_reset_streams(Some(256))
        // gRPC replies need no Date header; leaving it out spares encoding one per reply.
        .auto_date_header(false);
    if options.keep_alive_interval > 0 {
        builder
            .keep_alive_interval(Some(Duration::from_millis(options.keep_alive_interval)))
            .keep_alive_timeout(Duration::from_millis(options.keep_alive_timeout.max(1)));
    }
    let conn = builder.serve_connection(TokioIo::new(io), dispatch);
    tokio::pin!(conn);
    let mut streams = futures::stream::FuturesUnordered::new();
    let idle_limit = (options.idle_timeout > 0).then(|| Duration::from_millis(options.idle_timeout));
    let tick = idle_limit
        .map_or(Duration::from_secs(3600), |d| (d / 4).clamp(Duration::from_millis(50), Duration::from_secs(5)));
    let mut draining = false;
    loop {
        tokio::select! {
            result = std::future::poll_fn(|cx| drive_connection(conn.as_mut(), &mut streams, &queue, cx)) => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "gRPC connection ended with an error.");
                }
                break;
            }
            () = kill.cancelled() => return,
            () = drain.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep(tick), if !draining && idle_limit.is_some() => {
                if idle_limit.is_some_and(|limit| activity.idle_for() >= limit) {
                    tracing::debug!("Closing an idle gRPC connection.");
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
    streams.extend(std::mem::take(&mut *queue.started.lock()));
    tokio::select! {
        () = async { while streams.next().await.is_some() {} } => {}
        () = kill.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_time_counts_only_without_streams() {
        let a = Arc::new(Activity::new());
        let g = StreamGuard::enter(&a);
        assert_eq!(a.idle_for(), Duration::ZERO);
        drop(g);
        assert!(a.idle_for() < Duration::from_secs(1));
    }
}
