//! The shared gRPC endpoint (`pip-services:endpoint:grpc:*:1.0`).
//!
//! Owns the listener and every HTTP/2 connection; services add their tonic servers during
//! `set_references` ([`GrpcEndpoint::register_service`]) and the endpoint serves them all on one
//! port from `open`. Each connection is served by hyper's HTTP/2 server directly (HTTP/2 only: a
//! plain HTTP/1 request is answered by closing the connection), with TLS through rustls when
//! `connection.protocol` is `https`, like the HTTP endpoint.
//!
//! Guards against clients that pin resources: at most `options.max_concurrent_streams` streams
//! per connection (more are refused by HTTP/2 itself), a request must be answered within
//! `options.request_timeout` (a stream that stalls before sending its message gets
//! `DEADLINE_EXCEEDED`), connections with no stream for `options.idle_timeout` are closed
//! gracefully, keep-alive pings drop dead peers, TLS handshakes are time-limited and the number
//! of connections is capped. Messages are capped at `options.request_max_size` (1 MiB, as HTTP)
//! by the services' decoders.
//!
//! Before a request reaches a service the endpoint checks its content type (`application/grpc*`,
//! else HTTP 415), its method (POST), and, when an API-key authenticator is configured, its
//! `x-api-key` (or `x-auth-key`) metadata (`UNAUTHENTICATED` otherwise). Every request is counted
//! in `grpc_requests_total{method,code}` and `grpc_request_duration_seconds{method}` and logged
//! with its correlation id (`correlation_id` / `trace_id` metadata).

use crate::toolkit::component::{Component, ComponentHealth};
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::http::auth::{ApiKeyVerifier, API_KEY_HEADERS};
use crate::toolkit::http::endpoint::{tls_config, ConnectionSettings, CredentialSettings};
use crate::toolkit::references::References;
use async_trait::async_trait;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;
use tower_service::Service;
use tracing::Instrument;

/// gRPC endpoint settings (the component's config entry).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GrpcEndpointSettings {
    /// Where to listen (`protocol` `http` or `https`, `host`, `port`; default port 3000).
    pub connection: ConnectionSettings,
    /// TLS material for `https` (`ssl_key_file`, `ssl_crt_file`).
    pub credential: CredentialSettings,
    /// Limits and timeouts.
    pub options: GrpcEndpointOptions,
}

/// `options.*` keys of the gRPC endpoint (times in milliseconds).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GrpcEndpointOptions {
    /// Largest accepted (and sent) message in bytes (default 1 MiB); larger → `RESOURCE_EXHAUSTED`.
    pub request_max_size: u64,
    /// How long close waits for in-flight requests (default 10 000).
    pub shutdown_timeout: u64,
    /// Time a request may take from its headers to its reply (default 30 000).
    pub request_timeout: u64,
    /// A connection without streams for this long is closed (default 300 000; 0 = never).
    pub idle_timeout: u64,
    /// Interval of HTTP/2 keep-alive pings (default 60 000; 0 = none).
    pub keep_alive_interval: u64,
    /// How long a ping may stay unanswered before the connection is dropped (default 20 000).
    pub keep_alive_timeout: u64,
    /// Time allowed for the TLS handshake (default 10 000).
    pub handshake_timeout: u64,
    /// Most concurrent streams per connection (default 100).
    pub max_concurrent_streams: u32,
    /// Most simultaneous connections; more wait in the accept queue (default 10 000).
    pub max_connections: usize,
}

impl Default for GrpcEndpointOptions {
    fn default() -> Self {
        Self {
            request_max_size: 1024 * 1024,
            shutdown_timeout: 10_000,
            request_timeout: 30_000,
            idle_timeout: 300_000,
            keep_alive_interval: 60_000,
            keep_alive_timeout: 20_000,
            handshake_timeout: 10_000,
            max_concurrent_streams: 100,
            max_connections: 10_000,
        }
    }
}

struct Running {
    address: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// The metric handles of one method, resolved once instead of hashing labels per call.
struct MethodMetrics {
    label: String,
    duration: Option<prometheus::Histogram>,
    requests: parking_lot::RwLock<Vec<(String, prometheus::IntCounter)>>,
}

impl MethodMetrics {
    fn new(label: &str) -> Self {
        let duration = crate::toolkit::metrics::grpc().map(|m| m.duration.with_label_values(&[label]));
        Self { label: label.to_string(), duration, requests: parking_lot::RwLock::new(Vec::new()) }
    }

    fn record(&self, code: &str, seconds: f64) {
        if let Some(h) = &self.duration {
            h.observe(seconds);
        }
        if let Some((_, c)) = self.requests.read().iter().find(|(c, _)| c == code) {
            c.inc();
            return;
        }
        if let Some(m) = crate::toolkit::metrics::grpc() {
            let c = m.requests.with_label_values(&[self.label.as_str(), code]);
            c.inc();
            self.requests.write().push((code.to_string(), c));
        }
    }
}

/// What every request handler shares.
struct Shared {
    routes: Routes,
    /// Registered method paths and their metrics; anything else is counted as `unmatched`.
    methods: HashMap<String, MethodMetrics>,
    unmatched: MethodMetrics,
    verifier: Option<Arc<dyn ApiKeyVerifier>>,
    request_timeout: Duration,
}

/// The gRPC endpoint component.
pub struct GrpcEndpoint {
    settings: GrpcEndpointSettings,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    routes: Mutex<Option<Routes>>,
    methods: Mutex<HashSet<String>>,
    verifier: OnceLock<Arc<dyn ApiKeyVerifier>>,
    running: Mutex<Option<Running>>,
}

impl std::fmt::Debug for GrpcEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcEndpoint").field("settings", &self.settings).finish()
    }
}

impl GrpcEndpoint {
    /// Builds the endpoint from its config entry, validating it (protocol, host, TLS files).
    ///
    /// # Errors
    /// `WRONG_PROTOCOL`, `NO_HOST`, `NO_SSL_KEY_FILE`, `NO_SSL_CRT_FILE`, `BAD_CONFIG`, or a TLS
    /// file error.
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        Self::new(config.section()?)
    }

    /// Builds the endpoint from settings.
    ///
    /// # Errors
    /// See [`GrpcEndpoint::from_config`].
    pub fn new(settings: GrpcEndpointSettings) -> Result<Self, ApplicationError> {
        let tls = match settings.connection.protocol.to_ascii_lowercase().as_str() {
            "http" => None,
            "https" => {
                let mut cfg = tls_config(&settings.credential)?;
                cfg.alpn_protocols = vec![b"h2".to_vec()];
                Some(Arc::new(cfg))
            }
            other => {
                return Err(ApplicationError::config(
                    "WRONG_PROTOCOL",
                    format!("Protocol \"{other}\" is not supported by the gRPC endpoint: use http or https"),
                ))
            }
        };
        if settings.connection.host.trim().is_empty() {
            return Err(ApplicationError::config("NO_HOST", "Connection host is not set"));
        }
        if settings.options.request_max_size == 0 || settings.options.max_concurrent_streams == 0 {
            return Err(ApplicationError::config(
                "BAD_CONFIG",
                "options.request_max_size and options.max_concurrent_streams must be positive",
            ));
        }
        Ok(Self {
            settings,
            tls,
            routes: Mutex::new(Some(Routes::default())),
            methods: Mutex::new(HashSet::new()),
            verifier: OnceLock::new(),
            running: Mutex::new(None),
        })
    }

    /// The largest message a service may decode or encode (`options.request_max_size`).
    pub fn max_message_size(&self) -> usize {
        usize::try_from(self.settings.options.request_max_size).unwrap_or(usize::MAX)
    }

    /// Adds a tonic service; `methods` are its rpc names (metrics label only these paths).
    /// Services register during `set_references`, before the endpoint opens.
    pub fn register_service<S>(&self, service: S, methods: &[&str])
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let mut routes = self.routes.lock();
        if let Some(r) = routes.take() {
            *routes = Some(r.add_service(service));
        }
        self.methods.lock().extend(methods.iter().map(|m| format!("/{}/{m}", S::NAME)));
    }

    /// The bound address once open (with the real port when configured with 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.running.lock().as_ref().map(|r| r.address)
    }

    /// The settings the endpoint runs with.
    pub fn settings(&self) -> &GrpcEndpointSettings {
        &self.settings
    }
}

#[async_trait]
impl Component for GrpcEndpoint {
    fn set_references(&self, references: &References) -> Result<(), ApplicationError> {
        if let Some(v) = references.get_one_optional::<dyn ApiKeyVerifier>(&Descriptor::new("*", "*", "*", "*", "*")) {
            let _ = self.verifier.set(v);
        }
        Ok(())
    }

    async fn open(&self, _correlation_id: Option<&str>) -> Result<(), ApplicationError> {
        if self.running.lock().is_some() {
            return Ok(());
        }
        let s = &self.settings;
        let bind = format!("{}:{}", s.connection.host, s.connection.port);
        let listener = TcpListener::bind(&bind).await.map_err(|e| {
            ApplicationError::no_response("CANNOT_CONNECT", format!("Opening gRPC endpoint on {bind} failed"))
                .with_status(500)
                .with_cause(e)
                .with_details("url", bind.clone())
        })?;
        let address = listener
            .local_addr()
            .map_err(|e| ApplicationError::internal("CANNOT_CONNECT", "Cannot read the bound address").with_cause(e))?;
        let routes = self.routes.lock().clone().unwrap_or_default().prepare();
        let shared = Arc::new(Shared {
            routes,
            methods: self.methods.lock().iter().map(|m| (m.clone(), MethodMetrics::new(m))).collect(),
            unmatched: MethodMetrics::new("unmatched"),
            verifier: self.verifier.get().cloned(),
            request_timeout: Duration::from_millis(s.options.request_timeout.max(1)),
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve(listener, shared, s.options.clone(), self.tls.clone(), cancel.clone()));
        tracing::info!(address = %address, protocol = %s.connection.protocol, "gRPC endpoint listening.");
        *self.running.lock() = Some(Running { address, cancel, task });
        Ok(())
    }

    async fn close(&self, _correlation_id: Option<&str>) -> Result<(), ApplicationError> {
        let running = self.running.lock().take();
        if let Some(r) = running {
            r.cancel.cancel();
            if let Err(e) = r.task.await {
                tracing::warn!(error = %e, "gRPC endpoint task ended abnormally.");
            }
            tracing::info!(address = %r.address, "gRPC endpoint closed.");
        }
        Ok(())
    }

    async fn health(&self) -> ComponentHealth {
        match self.local_addr() {
            Some(a) => ComponentHealth { ready: true, message: format!("listening on {a}") },
            None => ComponentHealth::not_ready("not listening"),
        }
    }
}

/// Streams in progress on one connection and when the last one ended.
struct Activity {
    started: Instant,
    active: AtomicUsize,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self { started: Instant::now(), active: AtomicUsize::new(0), last_ms: AtomicU64::new(0) }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long the connection has had no stream (zero while one is active).
    fn idle_for(&self) -> Duration {
        if self.active.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.now_ms().saturating_sub(self.last_ms.load(Ordering::Acquire)))
    }
}

/// Marks a stream active while it lives, and counts it in `grpc_requests_in_flight`.
struct StreamGuard(Arc<Activity>);

impl StreamGuard {
    fn enter(activity: &Arc<Activity>) -> Self {
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

/// The per-connection request handler.
#[derive(Clone)]
struct Dispatch {
    shared: Arc<Shared>,
    activity: Arc<Activity>,
}

type DispatchFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Dispatch {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = DispatchFuture;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let shared = self.shared.clone();
        let guard = StreamGuard::enter(&self.activity);
        Box::pin(async move {
            let _guard = guard;
            Ok(handle(&shared, request).await)
        })
    }
}

/// A trailers-only gRPC reply carrying `status` with an HTTP status (200 for gRPC errors).
fn status_reply(http_status: StatusCode, status: &tonic::Status) -> Response<Body> {
    let mut response: Response<Body> = status.clone().into_http();
    *response.status_mut() = http_status;
    response
}

fn metadata_text<'r>(request: &'r Request<Incoming>, name: &str) -> Option<&'r str> {
    request.headers().get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let metrics = shared.methods.get(request.uri().path()).unwrap_or(&shared.unmatched);
    let cid = metadata_text(&request, "correlation_id").or_else(|| metadata_text(&request, "trace_id"));
    let span = tracing::info_span!("grpc", method = %metrics.label, correlation_id = cid.unwrap_or(""));
    let response = serve_request(shared, request).instrument(span.clone()).await;
    let code = match response.headers().get("grpc-status").and_then(|v| v.to_str().ok()) {
        Some(code) => code,
        None if response.status() == StatusCode::OK => "0",
        None => "2",
    };
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::debug!(
            code,
            elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "gRPC request served."
        );
    });
    metrics.record(code, elapsed.as_secs_f64());
    response
}

async fn serve_request(shared: &Shared, request: Request<Incoming>) -> Response<Body> {
    let content_type = request.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/grpc") {
        let status = tonic::Status::invalid_argument(format!(
            "Content type \"{}\" is not gRPC: send application/grpc",
            content_type.chars().take(64).collect::<String>()
        ));
        return status_reply(StatusCode::UNSUPPORTED_MEDIA_TYPE, &status);
    }
    if request.method() != Method::POST {
        let status =
            tonic::Status::unimplemented(format!("Method {} is not allowed: gRPC uses POST", request.method()));
        return status_reply(StatusCode::METHOD_NOT_ALLOWED, &status);
    }
    if let Some(verifier) = &shared.verifier {
        let presented = API_KEY_HEADERS.iter().find_map(|h| request.headers().get(*h)).map(HeaderValue::as_bytes);
        if presented.and_then(|k| verifier.verify_key(k)).is_none() {
            tracing::debug!(
                reason = if presented.is_some() { "invalid" } else { "missing" },
                "gRPC request refused: no valid API key."
            );
            return status_reply(StatusCode::OK, &tonic::Status::unauthenticated("Missing or invalid API key"));
        }
    }
    let mut routes = shared.routes.clone();
    match tokio::time::timeout(shared.request_timeout, routes.call(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(_) => status_reply(
            StatusCode::OK,
            &tonic::Status::deadline_exceeded("The request was not received and answered in time"),
        ),
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
async fn serve_connection<I>(
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

/// The HTTP/2 connection preface every gRPC client sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Looks at a plain-text connection's first bytes: anything but the HTTP/2 preface (a plain
/// HTTP/1 request) gets `505 HTTP Version Not Supported` and a clean close instead of a reset.
/// True when the connection was refused (or sent nothing in time).
async fn refused_http1(stream: &mut tokio::net::TcpStream, timeout: Duration) -> bool {
    use tokio::io::AsyncWriteExt;
    let mut buf = [0u8; 24];
    let sniff = async {
        loop {
            let n = stream.peek(&mut buf).await.unwrap_or(0);
            let seen = buf.get(..n).unwrap_or_default();
            if n == 0 || !H2_PREFACE.starts_with(seen) {
                return n > 0;
            }
            if n >= H2_PREFACE.len() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let http1 = match tokio::time::timeout(timeout, sniff).await {
        Ok(http1) => http1,
        Err(_) => return true,
    };
    if !http1 {
        return false;
    }
    let body = "gRPC requires HTTP/2\n";
    let reply = format!(
        "HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(timeout, async {
        let _ = stream.write_all(reply.as_bytes()).await;
        // Read what the client sent before closing, so the close is a FIN, not a reset.
        let mut sink = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            match stream.try_read(&mut sink) {
                Ok(0) => break,
                Ok(n) => drained += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        let _ = stream.shutdown().await;
    })
    .await;
    true
}

/// The accept loop: serves until cancelled, then lets in-flight requests finish within
/// `options.shutdown_timeout` and drops what is left.
async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    options: GrpcEndpointOptions,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    cancel: CancellationToken,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let tracker = TaskTracker::new();
    let kill = CancellationToken::new();
    loop {
        let permit = tokio::select! {
            () = cancel.cancelled() => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, _peer) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "Accepting a gRPC connection failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (shared, options, drain, kill) = (shared.clone(), options.clone(), cancel.clone(), kill.clone());
        let acceptor = acceptor.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let mut stream = stream;
            match acceptor {
                None => {
                    let handshake = Duration::from_millis(options.handshake_timeout.max(1));
                    if !refused_http1(&mut stream, handshake).await {
                        serve_connection(stream, shared, options, drain, kill).await;
                    }
                }
                Some(acceptor) => {
                    let handshake = Duration::from_millis(options.handshake_timeout.max(1));
                    let tls = tokio::select! {
                        () = kill.cancelled() => return,
                        accepted = tokio::time::timeout(handshake, acceptor.accept(stream)) => match accepted {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed.");
                                return;
                            }
                            Err(_) => return,
                        },
                    };
                    serve_connection(tls, shared, options, drain, kill).await;
                }
            }
        });
    }
    drop(listener);
    tracker.close();
    let timeout = Duration::from_millis(options.shutdown_timeout);
    if tokio::time::timeout(timeout, tracker.wait()).await.is_err() {
        tracing::warn!(
            timeout_ms = options.shutdown_timeout,
            "In-flight gRPC requests did not finish in time; closing them."
        );
        kill.cancel();
        tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_protocols_and_missing_tls_files() {
        let mut s = GrpcEndpointSettings::default();
        s.connection.protocol = "ftp".into();
        assert_eq!(GrpcEndpoint::new(s.clone()).err().map(|e| e.code).as_deref(), Some("WRONG_PROTOCOL"));
        s.connection.protocol = "https".into();
        assert_eq!(GrpcEndpoint::new(s.clone()).err().map(|e| e.code).as_deref(), Some("NO_SSL_KEY_FILE"));
        s.connection.protocol = "http".into();
        s.options.max_concurrent_streams = 0;
        assert_eq!(GrpcEndpoint::new(s).err().map(|e| e.code).as_deref(), Some("BAD_CONFIG"));
        let d = GrpcEndpoint::new(GrpcEndpointSettings::default()).map(|e| e.max_message_size()).ok();
        assert_eq!(d, Some(1024 * 1024));
    }

    #[test]
    fn idle_time_counts_only_without_streams() {
        let a = Arc::new(Activity::new());
        let g = StreamGuard::enter(&a);
        assert_eq!(a.idle_for(), Duration::ZERO);
        drop(g);
        assert!(a.idle_for() < Duration::from_secs(1));
    }
}
