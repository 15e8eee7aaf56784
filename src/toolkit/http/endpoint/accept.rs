//! The accept loop: the listener, TLS, the connection cap, each connection's watchdog, and
//! HTTP/1 + HTTP/2 serving through hyper-util, each request handed to the pipeline as hyper
//! parsed it.

use super::settings::MIN_HEADER_SIZE;
use super::Inner;
use crate::toolkit::net::{self, AcceptErrors};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulConnection;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
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

/// Ends a request's part in its connection's [`Activity`].
struct RequestGuard(Arc<Activity>);

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
        RequestGuard(self.clone())
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

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_done_ms.store(ms, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one connection under its watchdog, timed from the accept: a connection that sends no
/// complete request head within `timeout` (nothing at all, a byte, an HTTP/2 preface) is dropped;
/// one idle for `timeout` after its last request is shut down gracefully (HTTP/2 gets a GOAWAY)
/// and dropped if it has not closed `timeout` later. `stop` starts a graceful shutdown, `kill`
/// drops the connection.
async fn drive<C>(conn: C, activity: Arc<Activity>, timeout: Duration, stop: CancellationToken, kill: CancellationToken)
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    let mut check = activity.accepted + timeout;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "HTTP connection ended with an error.");
                }
                return;
            }
            () = kill.cancelled() => return,
            () = stop.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = tokio::time::sleep_until(check) => {
                if closing {
                    return;
                }
                match activity.next_check(timeout) {
                    Some(next) => check = next,
                    None if activity.started.load(Ordering::Relaxed) == 0 => {
                        tracing::debug!("Connection sent no complete request head in time; closed.");
                        return;
                    }
                    None => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                        check = tokio::time::Instant::now() + timeout;
                    }
                }
            }
        }
    }
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
    builder.http1().timer(TokioTimer::new()).header_read_timeout(timeout).max_buf_size(head_limit);
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
            let answer = state.clone().dispatch(request);
            async move {
                let response = answer.await;
                drop(guard);
                Ok::<_, std::convert::Infallible>(response)
            }
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
}
