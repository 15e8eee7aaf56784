//! The accept loop: the listener, TLS, the connection cap, each connection's watchdog, and
//! HTTP/1 + HTTP/2 serving through hyper-util, each request handed to the pipeline as hyper
//! parsed it.

use super::pipeline::Dispatch;
use super::settings::MIN_HEADER_SIZE;
use super::Inner;
use crate::toolkit::net::{self, AcceptErrors};
use futures::FutureExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulConnection;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Descriptors kept free for everything but client connections (log files, the store's files,
/// outgoing connections), at least this many and at least an eighth of the limit.
const RESERVED_DESCRIPTORS: u64 = 256;

/// `max_connections` kept under the process's open-file limit (read once at start-up): a flood of
/// connections then waits in the accept queue instead of leaving no descriptor for anything else.
fn connection_cap(configured: usize) -> usize {
    let Some(limit) = open_files_limit() else { return configured.max(1) };
    let reserve = RESERVED_DESCRIPTORS.max(limit / 8);
    let cap = usize::try_from(limit.saturating_sub(reserve)).unwrap_or(usize::MAX).max(1);
    if configured > cap {
        tracing::warn!(
            max_connections = configured,
            open_files_limit = limit,
            lowered_to = cap,
            "options.max_connections is above what the open-file limit allows; lowered. Raise the limit (ulimit -n) to allow more."
        );
        return cap;
    }
    configured.max(1)
}

/// The soft open-file limit (RLIMIT_NOFILE) of this process, from `/proc/self/limits` (Linux,
/// where the service is deployed; elsewhere `None` and the configured cap stands). Read from the
/// file because `getrlimit` needs `unsafe` or another dependency for one number.
fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files_limit(&text)
}

fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// What the requests of one connection tell its watchdog.
struct Activity {
    accepted: tokio::time::Instant,
    /// Requests whose head was complete.
    started: AtomicU64,
    in_flight: AtomicUsize,
    /// When the last request finished, ms after `accepted`.
    last_done_ms: AtomicU64,
}

/// Ends a request's part in its connection's [`Activity`]: when the pipeline says it was served
/// ([`RequestGuard::end_at`]), else when dropped (the connection went away first).
struct RequestGuard {
    activity: Arc<Activity>,
    ended: bool,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            accepted: tokio::time::Instant::now(),
            started: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
        })
    }

    fn begin(self: &Arc<Self>) -> RequestGuard {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard { activity: self.clone(), ended: false }
    }

    /// A request ended `since_accept` after the accept.
    fn end(&self, since_accept: Duration) {
        let ms = u64::try_from(since_accept.as_millis()).unwrap_or(u64::MAX);
        self.last_done_ms.store(ms, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// When to look again, or `None` when the connection has been idle too long: no complete
    /// request head within `timeout` of the accept, or nothing in flight for `timeout`.
    fn next_check(&self, timeout: Duration) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Some(now + timeout);
        }
        let since = if self.started.load(Ordering::Relaxed) == 0 {
            self.accepted
        } else {
            self.accepted + Duration::from_millis(self.last_done_ms.load(Ordering::Relaxed))
        };
        Some(since + timeout).filter(|d| *d > now)
    }
}

impl RequestGuard {
    /// Ends the request as served at `served`: the pipeline's own reading of the clock at the
    /// request's end, so ending it reads the clock no second time.
    fn end_at(mut self, served: std::time::Instant) {
        self.activity.end(served.saturating_duration_since(self.activity.accepted.into_std()));
        self.ended = true;
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if !self.ended {
            self.activity.end(self.activity.accepted.elapsed());
        }
    }
}

/// A connection the watchdog can shut down gracefully (hyper's connections; a test's own).
trait Watched: Future<Output = Result<(), Self::Failure>> {
    type Failure: std::fmt::Display;

    fn shut_down(self: std::pin::Pin<&mut Self>);
}

impl<C> Watched for C
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    type Failure = C::Error;

    fn shut_down(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Wakes a connection's task for its watchdog's side (`stop`, `kill`, the watchdog's timer) and
/// notes that it did: the side is polled only then, not on every wake of the connection (each
/// request wakes it a few times, and polling the two tokens takes their locks). The task's waker
/// is kept (not taken by a wake), and replaced only when the task's waker changes.
struct SideWaker {
    woken: AtomicBool,
    task: parking_lot::Mutex<Option<Waker>>,
}

impl Wake for SideWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(task) = self.task.lock().as_ref() {
            task.wake_by_ref();
        }
    }
}

/// Serves one connection under its watchdog, timed from the accept: a connection that sends no
/// complete request head within `timeout` (nothing at all, a byte, an HTTP/2 preface) is dropped;
/// one idle for `timeout` after its last request (an HTTP/1 connection whose next head has not
/// completed by then included: the slow-client guard) is shut down gracefully (an idle HTTP/1
/// connection closes at once, HTTP/2 gets a GOAWAY) and dropped if it has not closed `timeout`
/// later. `stop` starts a graceful shutdown, `kill` drops the connection.
async fn drive<C>(conn: C, activity: Arc<Activity>, timeout: Duration, stop: CancellationToken, kill: CancellationToken)
where
    C: Watched,
{
    let mut conn = std::pin::pin!(conn);
    let mut killed = std::pin::pin!(kill.cancelled());
    let mut stopped = std::pin::pin!(stop.cancelled());
    let mut timer = std::pin::pin!(tokio::time::sleep_until(activity.accepted + timeout));
    let side = Arc::new(SideWaker { woken: AtomicBool::new(true), task: parking_lot::Mutex::new(None) });
    let side_waker = Waker::from(side.clone());
    let mut registered: Option<Waker> = None;
    let mut closing = false;
    std::future::poll_fn(move |cx| loop {
        if let Poll::Ready(result) = conn.as_mut().poll(cx) {
            if let Err(e) = result {
                tracing::debug!(error = %e, "HTTP connection ended with an error.");
            }
            return Poll::Ready(());
        }
        if !registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *side.task.lock() = Some(cx.waker().clone());
            registered = Some(cx.waker().clone());
        }
        if !side.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let mut side_cx = Context::from_waker(&side_waker);
        if killed.as_mut().poll(&mut side_cx).is_ready() {
            return Poll::Ready(());
        }
        // After each action below the connection and the side are polled again (the timer
        // registers only when polled). A wake that comes while the side is polled sets the flag
        // again, so it is never lost.
        if !closing && stopped.as_mut().poll(&mut side_cx).is_ready() {
            conn.as_mut().shut_down();
            closing = true;
            side.woken.store(true, Ordering::Release);
            continue;
        }
        if timer.as_mut().poll(&mut side_cx).is_pending() {
            return Poll::Pending;
        }
        if closing {
            return Poll::Ready(());
        }
        match activity.next_check(timeout) {
            Some(next) => timer.as_mut().reset(next),
            None if activity.started.load(Ordering::Relaxed) == 0 => {
                tracing::debug!("Connection sent no complete request head in time; closed.");
                return Poll::Ready(());
            }
            None => {
                conn.as_mut().shut_down();
                closing = true;
                timer.as_mut().reset(tokio::time::Instant::now() + timeout);
            }
        }
        side.woken.store(true, Ordering::Release);
    })
    .await;
}

/// The accept loop: serves until cancelled, then lets in-flight requests finish within
/// `options.shutdown_timeout` and drops what is left.
pub(super) async fn serve(
    listener: TcpListener,
    inner: Arc<Inner>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    cancel: CancellationToken,
) {
    let options = inner.settings.options.clone();
    let timeout = Duration::from_millis(options.header_read_timeout.max(1));
    let head_limit = options.max_header_size.max(MIN_HEADER_SIZE);
    let mut builder = ConnBuilder::new(TokioExecutor::new());
    // No hyper timer for HTTP/1: the connection's watchdog guards against slow heads (an idle
    // connection, whether or not part of a next head came, is shut down `timeout` after its last
    // request), so no timer is armed and cancelled per request.
    builder.http1().header_read_timeout(None).max_buf_size(head_limit);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(timeout)
        .keep_alive_timeout(timeout)
        .max_header_list_size(u32::try_from(head_limit).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let tracker = TaskTracker::new();
    let kill = CancellationToken::new();
    let permits = Arc::new(Semaphore::new(connection_cap(options.max_connections)));
    let mut accept_errors = AcceptErrors::new("HTTP");
    while let Some((stream, permit)) = net::accept(&listener, &permits, &cancel, &mut accept_errors).await {
        let activity = Activity::new();
        let watched = activity.clone();
        let state = inner.clone();
        let service = hyper::service::service_fn(move |request| {
            let guard = watched.begin();
            Dispatch::new(state.clone(), request).map(move |(response, served)| {
                guard.end_at(served);
                Ok::<_, std::convert::Infallible>(response)
            })
        });
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let (stop, kill) = (cancel.clone(), kill.clone());
        tracker.spawn(async move {
            let _permit = permit;
            match acceptor {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    drive(conn, activity, timeout, stop, kill).await;
                }
                Some(acceptor) => {
                    let Some(tls) = net::handshake(&acceptor, stream, timeout).await else { return };
                    let conn = builder.serve_connection(TokioIo::new(tls), service);
                    drive(conn, activity, timeout, stop, kill).await;
                }
            }
        });
    }
    drop(listener);
    net::drain(tracker, kill, options.shutdown_timeout, "HTTP").await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_open_files_limit(limits), Some(1024));
        assert_eq!(parse_open_files_limit("Max open files unlimited unlimited files"), None);
    }

    /// A connection that never finishes by itself; once shut down it ends at its next poll.
    struct Idle {
        shut: Arc<AtomicBool>,
    }

    impl Future for Idle {
        type Output = Result<(), String>;

        fn poll(self: std::pin::Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
            if self.shut.load(Ordering::Acquire) {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }
    }

    impl Watched for Idle {
        type Failure = String;

        fn shut_down(self: std::pin::Pin<&mut Self>) {
            self.shut.store(true, Ordering::Release);
        }
    }

    /// The watchdog's timer fires again and again while a request is in flight (each time only
    /// its own waker wakes the task), then shuts the connection down `timeout` after the request
    /// ended. On tokio's paused clock: no waiting, no dependence on the machine's speed.
    #[tokio::test(start_paused = true)]
    async fn the_watchdog_closes_a_connection_idle_after_its_last_request() {
        let timeout = Duration::from_millis(100);
        let activity = Activity::new();
        let shut = Arc::new(AtomicBool::new(false));
        let request = activity.begin();
        let started = tokio::time::Instant::now();
        let watched = tokio::spawn(drive(
            Idle { shut: shut.clone() },
            activity.clone(),
            timeout,
            CancellationToken::new(),
            CancellationToken::new(),
        ));
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert!(!shut.load(Ordering::Acquire), "not shut down while a request is in flight");
        drop(request);
        assert!(watched.await.is_ok());
        assert!(shut.load(Ordering::Acquire));
        let idle_for = started.elapsed() - Duration::from_millis(450);
        assert!(idle_for >= timeout && idle_for <= timeout * 2, "{idle_for:?}");
    }

    /// `stop` shuts the connection down gracefully; `kill` ends it at once.
    #[tokio::test(start_paused = true)]
    async fn stop_and_kill_reach_the_connection() {
        let timeout = Duration::from_secs(60);
        let activity = Activity::new();
        let _request = activity.begin();
        let (stop, kill) = (CancellationToken::new(), CancellationToken::new());
        let shut = Arc::new(AtomicBool::new(false));
        let watched = tokio::spawn(drive(Idle { shut: shut.clone() }, activity.clone(), timeout, stop.clone(), kill));
        tokio::task::yield_now().await;
        stop.cancel();
        assert!(watched.await.is_ok());
        assert!(shut.load(Ordering::Acquire));

        let (stop, kill) = (CancellationToken::new(), CancellationToken::new());
        let shut = Arc::new(AtomicBool::new(false));
        let watched = tokio::spawn(drive(Idle { shut: shut.clone() }, activity, timeout, stop, kill.clone()));
        tokio::task::yield_now().await;
        kill.cancel();
        assert!(watched.await.is_ok());
        assert!(!shut.load(Ordering::Acquire), "killed, not shut down");
    }
}
