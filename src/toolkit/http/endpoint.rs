//! The shared HTTP endpoint (`pip-services:endpoint:http:*:1.0`).
//!
//! Owns the listener, the route table and every connection task. Requests enter through one warp
//! filter that extracts method, path, query, headers and the body stream; the endpoint then
//! answers CORS preflights, routes (404 for an unknown path, 405 with `Allow` for a wrong
//! method), runs the interceptors on the request head (a refused request's body is never read),
//! reads the body under `options.request_max_size` (413 beyond it, checked on `Content-Length`
//! first and while streaming), extracts the correlation id and calls the handler. Every response gets the no-cache and CORS headers.
//!
//! Connections are served by hyper-util directly over `warp::service`, because warp 0.4 has no
//! TLS and no public acceptor trait: this keeps TLS (`connection.protocol: https`), header-read
//! timeouts against slow clients, a connection cap and graceful shutdown in one place.

use super::{error_response, HttpRequest, HttpResponse, RouteHandler};
use crate::toolkit::component::{Component, ComponentHealth};
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::errors::ApplicationError;
use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulConnection;
use hyper_util::service::TowerToHyperService;
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use warp::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use warp::Filter;

/// Endpoint settings (the component's config entry).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EndpointSettings {
    /// Where to listen.
    pub connection: ConnectionSettings,
    /// TLS material for `https`.
    pub credential: CredentialSettings,
    /// Limits and switches.
    pub options: EndpointOptions,
    /// CORS: no CORS headers at all unless `cors.allowed_origins` is set.
    pub cors: CorsSettings,
    /// The old name of `cors.allowed_origins` (comma list), honoured when set explicitly.
    pub cors_origins: Option<Vec<String>>,
    /// Extra headers allowed and exposed by CORS (added to `correlation_id`, `trace_id`).
    pub cors_headers: Vec<String>,
    /// Host names (optionally `host:port`) requests may name in `Host`; empty = any. Guards
    /// against DNS rebinding.
    pub allowed_hosts: Vec<String>,
}

/// `cors.*` keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CorsSettings {
    /// Origins a browser may call from (comma list; `*` = any). Empty: no CORS headers, so a
    /// web page of another origin cannot read an answer.
    pub allowed_origins: Vec<String>,
}

impl EndpointSettings {
    /// The CORS origins in effect: `cors.allowed_origins`, else the old `cors_origins`.
    pub fn cors_origins(&self) -> &[String] {
        match (&self.cors.allowed_origins, &self.cors_origins) {
            (configured, _) if !configured.is_empty() => configured,
            (_, Some(old)) => old,
            _ => &[],
        }
    }
}

/// `connection.*` keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ConnectionSettings {
    /// `http` (default) or `https`.
    pub protocol: String,
    /// Interface to bind, default `0.0.0.0`.
    pub host: String,
    /// Port, default 3000; 0 picks any free port.
    pub port: u16,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self { protocol: "http".to_string(), host: "0.0.0.0".to_string(), port: 3000 }
    }
}

/// `credential.*` keys (PEM file paths for https).
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct CredentialSettings {
    /// Private key file (PEM).
    pub ssl_key_file: Option<String>,
    /// Certificate chain file (PEM).
    pub ssl_crt_file: Option<String>,
}

impl std::fmt::Debug for CredentialSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSettings")
            .field("ssl_key_file", &self.ssl_key_file.as_ref().map(|_| "***"))
            .field("ssl_crt_file", &self.ssl_crt_file)
            .finish()
    }
}

/// `options.*` keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct EndpointOptions {
    /// Largest accepted request body in bytes (default 1 MiB); larger → 413.
    pub request_max_size: u64,
    /// When true every request gets 503 with `Retry-After: 3600`.
    pub maintenance_enabled: bool,
    /// How long close waits for in-flight requests, ms (default 10 000).
    pub shutdown_timeout: u64,
    /// How long a client may take to send the request head, ms (default 10 000).
    pub header_read_timeout: u64,
    /// How long a client may take to send the body, ms (default 30 000).
    pub body_read_timeout: u64,
    /// Most simultaneous connections; more wait in the accept queue (default 20 000). Lowered at
    /// start-up, with a warning, to stay under the process's open-file limit.
    pub max_connections: usize,
    /// Largest request head in bytes: the HTTP/1 read buffer and the HTTP/2 header list
    /// (default 64 KiB, at least 8 KiB). A larger head is refused (431) or the connection closed.
    pub max_header_size: usize,
}

impl Default for EndpointOptions {
    fn default() -> Self {
        Self {
            request_max_size: 1024 * 1024,
            maintenance_enabled: false,
            shutdown_timeout: 10_000,
            header_read_timeout: 10_000,
            body_read_timeout: 30_000,
            max_connections: 20_000,
            max_header_size: 64 * 1024,
        }
    }
}

struct Route {
    /// The route as registered (`/api/v1/sessions/{id}`): the metrics label.
    pattern: Arc<str>,
    method: Method,
    segments: Vec<String>,
    handler: Arc<dyn RouteHandler>,
    metrics: RouteMetrics,
}

impl Route {
    fn matches(&self, path: &[&str]) -> Option<HashMap<String, String>> {
        if path.len() != self.segments.len() {
            return None;
        }
        let mut params = HashMap::new();
        for (pattern, actual) in self.segments.iter().zip(path) {
            if let Some(name) = pattern.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                params.insert(name.to_string(), (*actual).to_string());
            } else if pattern != actual {
                return None;
            }
        }
        Some(params)
    }
}

/// The metric handles of one route, resolved when first needed instead of hashing the labels on
/// every request.
struct RouteMetrics {
    duration: Option<prometheus::Histogram>,
    requests: RwLock<Vec<(u16, prometheus::IntCounter)>>,
}

impl RouteMetrics {
    fn new(method: &Method, pattern: &str) -> Self {
        let duration =
            crate::toolkit::metrics::http().map(|m| m.duration.with_label_values(&[method_label(method), pattern]));
        Self { duration, requests: RwLock::new(Vec::new()) }
    }

    fn record(&self, method: &Method, pattern: &str, status: u16, seconds: f64) {
        if let Some(h) = &self.duration {
            h.observe(seconds);
        }
        if let Some((_, c)) = self.requests.read().iter().find(|(s, _)| *s == status) {
            c.inc();
            return;
        }
        if let Some(m) = crate::toolkit::metrics::http() {
            let c = m.requests.with_label_values(&[method_label(method), pattern, status_label(status)]);
            c.inc();
            self.requests.write().push((status, c));
        }
    }
}

/// Records a request that matched no route (or a HEAD served by a GET route).
fn record_unrouted(method: &Method, pattern: &str, status: u16, seconds: f64) {
    if let Some(m) = crate::toolkit::metrics::http() {
        let method = method_label(method);
        m.requests.with_label_values(&[method, pattern, status_label(status)]).inc();
        m.duration.with_label_values(&[method, pattern]).observe(seconds);
    }
}

/// The metric and log label of a method: one of the standard methods, else `other`, so nothing
/// a client sends can create a series.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    const LABELS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"];
    STANDARD.iter().position(|m| m == method).and_then(|i| LABELS.get(i).copied()).unwrap_or("other")
}

/// Longest piece of a client's path or method repeated in an error message.
const ECHO_LIMIT: usize = 128;

/// `text` cut to [`ECHO_LIMIT`] characters, marked with `...` when cut: an error never echoes a
/// huge method or path back.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(ECHO_LIMIT) {
        None => text.to_string(),
        Some((i, _)) => format!("{}...", &text[..i]),
    }
}

/// The routes in registration order, plus a map from (method, path) to the route that the
/// in-order scan would find first, for routes without `{param}` segments: the common request is
/// routed by one hash lookup instead of comparing it with every route.
#[derive(Default)]
struct RouteTable {
    routes: Vec<Arc<Route>>,
    exact: HashMap<String, Vec<(Method, usize)>>,
}

impl RouteTable {
    fn with(&self, route: Route) -> Self {
        let mut routes = self.routes.clone();
        let mut exact = self.exact.clone();
        if !route.segments.iter().any(|s| s.starts_with('{')) {
            let path: Vec<&str> = route.segments.iter().map(String::as_str).collect();
            let shadowed = routes.iter().any(|r| r.method == route.method && r.matches(&path).is_some());
            if !shadowed {
                exact.entry(route.segments.join("/")).or_default().push((route.method.clone(), routes.len()));
            }
        }
        routes.push(Arc::new(route));
        Self { routes, exact }
    }

    /// The route the in-order scan would pick, found by one hash lookup, for a request whose
    /// path has no empty segments and whose route has no `{param}` segments.
    fn exact(&self, method: &Method, path: &str) -> Option<&Arc<Route>> {
        let key = path.strip_prefix('/')?;
        if key.is_empty() || key.ends_with('/') || key.contains("//") {
            return None;
        }
        let (_, i) = self.exact.get(key)?.iter().find(|(m, _)| m == method)?;
        self.routes.get(*i)
    }

    /// The first route matching the path and method in registration order (a GET route serves
    /// HEAD), with its parameters; else the methods the path allows (empty: no such path).
    fn scan(&self, method: &Method, path: &str) -> Result<Matched, Vec<String>> {
        let segments = split_path(path);
        let mut allowed: Vec<String> = Vec::new();
        for route in &self.routes {
            if let Some(params) = route.matches(&segments) {
                if route.method == method || (method == Method::HEAD && route.method == Method::GET) {
                    return Ok((route.clone(), params));
                }
                allowed.push(route.method.to_string());
            }
        }
        Err(allowed)
    }
}

/// 404 `ROUTE_NOT_FOUND` for an unknown path, 405 `METHOD_NOT_ALLOWED` with `Allow` for a known
/// path and another method.
/// Neither the method nor the path is echoed beyond [`ECHO_LIMIT`] characters.
fn no_route(method: &Method, path: &str, allowed: &[String], cid: Option<&str>) -> HttpResponse {
    let (method, path) = (shorten(method.as_str()), shorten(path));
    if allowed.is_empty() {
        let e = ApplicationError::not_found("ROUTE_NOT_FOUND", format!("Route {method} {path} was not found"))
            .with_details("route", path.clone());
        return error_response(&e.with_correlation_id(cid));
    }
    let mut allowed = allowed.to_vec();
    allowed.dedup();
    let list = allowed.join(", ");
    let e = ApplicationError::unsupported("METHOD_NOT_ALLOWED", format!("Method {method} is not allowed on {path}"))
        .with_details("allowed", list.clone());
    error_response(&e.with_correlation_id(cid)).with_header("allow", &list)
}

/// The CORS answer of one request.
struct Cors {
    /// `Access-Control-Allow-Origin`, when the origin is allowed.
    origin: Option<HeaderValue>,
    /// Whether the answer depends on `Origin` (`Vary: Origin`).
    varies: bool,
}

/// A matched route with the values of its `{param}` segments.
type Matched = (Arc<Route>, HashMap<String, String>);

/// What a request was routed to, for metrics and logs.
enum Routed {
    Route(Arc<Route>),
    Other(&'static str),
}

impl Routed {
    fn label(&self) -> &str {
        match self {
            Self::Route(r) => &r.pattern,
            Self::Other(label) => label,
        }
    }
}

fn split_path(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// An interceptor runs before every routed handler and may answer instead of it, in two phases:
/// [`RequestInterceptor::intercept`] sees the head before the body is read (authentication: a
/// refused request is never read), [`RequestInterceptor::inspect`] sees the whole request.
#[async_trait]
pub trait RequestInterceptor: Send + Sync {
    /// Before the body is read (the request's body is empty). `Some(response)` stops the request.
    async fn intercept(&self, _head: &HttpRequest) -> Option<HttpResponse> {
        None
    }

    /// After the body is read. `Some(response)` stops the request.
    async fn inspect(&self, _request: &HttpRequest) -> Option<HttpResponse> {
        None
    }

    /// Whether this interceptor authenticates callers (the endpoint warns when it listens on a
    /// non-loopback address with none).
    fn authenticates(&self) -> bool {
        false
    }

    /// Whether the head carries a valid credential (what only authenticated callers may see).
    fn authenticated(&self, _head: &HttpRequest) -> bool {
        false
    }
}

struct Inner {
    settings: EndpointSettings,
    /// Replaced whole on registration, so a request takes one `Arc` clone, not one per route.
    routes: RwLock<Arc<RouteTable>>,
    interceptors: RwLock<Arc<Vec<Arc<dyn RequestInterceptor>>>>,
    allow_headers: HeaderValue,
    expose_headers: HeaderValue,
}

struct Running {
    address: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// The HTTP endpoint component.
pub struct HttpEndpoint {
    inner: Arc<Inner>,
    running: Mutex<Option<Running>>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl std::fmt::Debug for HttpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpEndpoint").field("settings", &self.inner.settings).finish()
    }
}

impl HttpEndpoint {
    /// Builds the endpoint from its config entry, validating it (protocol, TLS files).
    ///
    /// # Errors
    /// `WRONG_PROTOCOL`, `NO_SSL_KEY_FILE`, `NO_SSL_CRT_FILE`, `BAD_CONFIG`, or a TLS file error.
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let settings: EndpointSettings = config.section()?;
        Self::new(settings)
    }

    /// Builds the endpoint from settings.
    ///
    /// # Errors
    /// See [`HttpEndpoint::from_config`].
    pub fn new(settings: EndpointSettings) -> Result<Self, ApplicationError> {
        let tls = match settings.connection.protocol.to_ascii_lowercase().as_str() {
            "http" => None,
            "https" => Some(Arc::new(tls_config(&settings.credential)?)),
            other => {
                return Err(ApplicationError::config(
                    "WRONG_PROTOCOL",
                    format!("Protocol \"{other}\" is not supported by the HTTP endpoint: use http or https"),
                ))
            }
        };
        if settings.connection.host.trim().is_empty() {
            return Err(ApplicationError::config("NO_HOST", "Connection host is not set"));
        }
        if settings.options.max_header_size < MIN_HEADER_SIZE
            || u32::try_from(settings.options.max_header_size).is_err()
        {
            return Err(ApplicationError::config(
                "BAD_CONFIG",
                format!("options.max_header_size must be between {MIN_HEADER_SIZE} and {} bytes", u32::MAX),
            ));
        }
        let mut names = vec!["correlation_id".to_string(), "trace_id".to_string()];
        names.extend(settings.cors_headers.iter().cloned());
        let list = names.join(", ");
        let header = |text: String| {
            HeaderValue::from_str(&text)
                .map_err(|_| ApplicationError::config("BAD_CONFIG", "cors_headers must be valid header names"))
        };
        let allow_headers =
            header(format!("Content-Type, Authorization, x-api-key, x-auth-key, If-Match, If-None-Match, {list}"))?;
        let expose_headers = header(format!("ETag, Location, {list}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                routes: RwLock::new(Arc::new(RouteTable::default())),
                interceptors: RwLock::new(Arc::new(Vec::new())),
                allow_headers,
                expose_headers,
            }),
            running: Mutex::new(None),
            tls,
        })
    }

    /// Registers a route; `path` segments like `{id}` capture parameters.
    pub fn register_route(&self, method: Method, path: &str, handler: Arc<dyn RouteHandler>) {
        let segments = split_path(path).into_iter().map(str::to_string).collect();
        let pattern: Arc<str> = Arc::from(super::join_route("", path).as_str());
        let metrics = RouteMetrics::new(&method, &pattern);
        let mut routes = self.inner.routes.write();
        *routes = Arc::new(routes.with(Route { pattern, method, segments, handler, metrics }));
    }

    /// Adds an interceptor that runs before every routed handler.
    pub fn add_interceptor(&self, interceptor: Arc<dyn RequestInterceptor>) {
        let mut interceptors = self.inner.interceptors.write();
        let mut next: Vec<Arc<dyn RequestInterceptor>> = interceptors.iter().cloned().collect();
        next.push(interceptor);
        *interceptors = Arc::new(next);
    }

    /// The bound address once open (with the real port when configured with 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.running.lock().as_ref().map(|r| r.address)
    }

    /// The settings the endpoint runs with.
    pub fn settings(&self) -> &EndpointSettings {
        &self.inner.settings
    }

    /// Whether a request carries a credential some interceptor accepts.
    pub fn is_authenticated(&self, request: &HttpRequest) -> bool {
        self.inner.interceptors.read().iter().any(|i| i.authenticated(request))
    }
}

pub(crate) fn tls_config(c: &CredentialSettings) -> Result<tokio_rustls::rustls::ServerConfig, ApplicationError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let key_file = c
        .ssl_key_file
        .as_deref()
        .ok_or_else(|| ApplicationError::config("NO_SSL_KEY_FILE", "SSL key file is not configured in credentials"))?;
    let crt_file = c
        .ssl_crt_file
        .as_deref()
        .ok_or_else(|| ApplicationError::config("NO_SSL_CRT_FILE", "SSL crt file is not configured in credentials"))?;
    let certs =
        CertificateDer::pem_file_iter(crt_file).and_then(|it| it.collect::<Result<Vec<_>, _>>()).map_err(|e| {
            ApplicationError::file_error("READ_FAILED", "Cannot read the SSL certificate file").with_cause(e)
        })?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| ApplicationError::file_error("READ_FAILED", "Cannot read the SSL key file").with_cause(e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map(|mut cfg| {
            cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            cfg
        })
        .map_err(|e| ApplicationError::config("BAD_SSL", "The SSL key and certificate cannot be used").with_cause(e))
}

const CORRELATION_ID_HEADER: HeaderName = HeaderName::from_static("correlation_id");
const TRACE_ID_HEADER: HeaderName = HeaderName::from_static("trace_id");

fn correlation_id(query: &[(String, String)], headers: &HeaderMap) -> Option<String> {
    for name in ["correlation_id", "trace_id"] {
        if let Some((_, v)) = query.iter().find(|(k, v)| k == name && !v.is_empty()) {
            return Some(v.clone());
        }
    }
    for name in [CORRELATION_ID_HEADER, TRACE_ID_HEADER] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()) {
            return Some(v.to_string());
        }
    }
    None
}

fn decode_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Counts a request in `http_requests_in_flight` while it lives.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        if let Some(m) = crate::toolkit::metrics::http() {
            m.in_flight.inc();
        }
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(m) = crate::toolkit::metrics::http() {
            m.in_flight.dec();
        }
    }
}

/// A static label for a status code (no allocation per request).
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        304 => "304",
        400 => "400",
        401 => "401",
        404 => "404",
        405 => "405",
        408 => "408",
        409 => "409",
        412 => "412",
        413 => "413",
        415 => "415",
        500 => "500",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Decodes `%XX` escapes and `+` as space; invalid escapes are kept as text.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi * 16 + lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Inner {
    fn finish(&self, mut response: HttpResponse, cors: Option<Cors>) -> warp::reply::Response {
        let h = &mut response.headers;
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, must-revalidate"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        h.insert(header::EXPIRES, HeaderValue::from_static("0"));
        if let Some(cors) = cors {
            if cors.varies {
                h.insert(header::VARY, HeaderValue::from_static("Origin"));
            }
            if let Some(origin) = cors.origin {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, self.allow_headers.clone());
                h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, self.expose_headers.clone());
            }
        }
        let mut out = warp::reply::Response::new(response.body.into());
        *out.status_mut() = response.status;
        *out.headers_mut() = response.headers;
        out
    }

    /// The CORS answer for a request: `None` when CORS is not configured (no CORS headers at
    /// all); else the allowed origin (`*`, or the request's `Origin` when listed; none for an
    /// unlisted one) and whether the answer depends on `Origin`.
    fn cors(&self, request_headers: &HeaderMap) -> Option<Cors> {
        let origins = self.settings.cors_origins();
        if origins.is_empty() {
            return None;
        }
        if origins.iter().any(|o| o == "*") {
            return Some(Cors { origin: Some(HeaderValue::from_static("*")), varies: false });
        }
        let origin = request_headers.get(header::ORIGIN).filter(|o| {
            let o = o.to_str().unwrap_or("");
            origins.iter().any(|allowed| allowed.eq_ignore_ascii_case(o))
        });
        Some(Cors { origin: origin.cloned(), varies: true })
    }

    /// Whether the request's `Host` (HTTP/2: the authority) is allowed by `allowed_hosts`.
    fn host_allowed(&self, uri_host: Option<&str>, headers: &HeaderMap) -> bool {
        let allowed = &self.settings.allowed_hosts;
        if allowed.is_empty() {
            return true;
        }
        let Some(host) = uri_host.or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok())) else {
            return false;
        };
        let host = host.trim().to_ascii_lowercase();
        let name = match host.rsplit_once(':') {
            Some((name, port)) if !name.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host.as_str(),
        };
        allowed.iter().any(|a| {
            let a = a.trim();
            a.eq_ignore_ascii_case(&host) || a.eq_ignore_ascii_case(name)
        })
    }

    async fn dispatch<S, B>(
        self: Arc<Self>,
        method: Method,
        path: String,
        raw_query: String,
        authority: Option<String>,
        headers: HeaderMap,
        body: S,
    ) -> warp::reply::Response
    where
        S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
        B: Buf,
    {
        let started = std::time::Instant::now();
        let _in_flight = InFlight::enter();
        let query = decode_query(&raw_query);
        let cid = correlation_id(&query, &headers);
        let span = tracing::info_span!(
            "request",
            method = method_label(&method),
            correlation_id = cid.as_deref().unwrap_or("")
        );
        let method_label = method.clone();
        let cors = self.cors(&headers);
        let (response, routed) = if self.host_allowed(authority.as_deref(), &headers) {
            self.route(method, path, query, headers, body, cid).instrument(span.clone()).await
        } else {
            let e = ApplicationError::bad_request("HOST_NOT_ALLOWED", "The Host of the request is not served here")
                .with_status(421);
            (error_response(&e.with_correlation_id(cid.as_deref())), Routed::Other("unmatched"))
        };
        let status = response.status.as_u16();
        let elapsed = started.elapsed();
        span.in_scope(|| tracing::debug!(route = %routed.label(), status, elapsed_us = elapsed.as_micros() as u64, "Request served."));
        match &routed {
            Routed::Route(r) if r.method == method_label => {
                r.metrics.record(&method_label, &r.pattern, status, elapsed.as_secs_f64());
            }
            other => record_unrouted(&method_label, other.label(), status, elapsed.as_secs_f64()),
        }
        self.finish(response, cors)
    }

    async fn route<S, B>(
        &self,
        method: Method,
        path: String,
        query: Vec<(String, String)>,
        headers: HeaderMap,
        body: S,
        cid: Option<String>,
    ) -> (HttpResponse, Routed)
    where
        S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
        B: Buf,
    {
        let unmatched = Routed::Other("unmatched");
        let fail = |e: ApplicationError| error_response(&e.with_correlation_id(cid.as_deref()));
        if self.settings.options.maintenance_enabled {
            let r = fail(ApplicationError::no_response("MAINTENANCE", "The service is under maintenance"))
                .with_header("retry-after", "3600");
            return (r, unmatched);
        }
        if method == Method::OPTIONS && !self.settings.cors_origins().is_empty() {
            let mut r = HttpResponse::empty(StatusCode::NO_CONTENT);
            r.headers.insert(
                "access-control-allow-methods",
                HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
            return (r, Routed::Other("preflight"));
        }
        let routes = self.routes.read().clone();
        let (route, params) = match routes.exact(&method, &path) {
            Some(route) => (route.clone(), HashMap::new()),
            None => match routes.scan(&method, &path) {
                Ok(found) => found,
                Err(allowed) => {
                    // With authentication configured, an unauthenticated caller cannot probe
                    // which routes and methods exist: 401 comes before 404 and 405.
                    let head = HttpRequest {
                        method,
                        path,
                        params: HashMap::new(),
                        query,
                        headers,
                        body: Bytes::new(),
                        correlation_id: cid.clone(),
                    };
                    let interceptors = self.interceptors.read().clone();
                    for i in interceptors.iter() {
                        if let Some(r) = i.intercept(&head).await {
                            return (r, unmatched);
                        }
                    }
                    return (no_route(&head.method, &head.path, &allowed, cid.as_deref()), unmatched);
                }
            },
        };
        // Interceptors see the head only, so a refused request is never read.
        let mut request =
            HttpRequest { method, path, params, query, headers, body: Bytes::new(), correlation_id: cid.clone() };
        let interceptors = self.interceptors.read().clone();
        for i in interceptors.iter() {
            if let Some(r) = i.intercept(&request).await {
                return (r, Routed::Route(route));
            }
        }
        request.body = match self.read_body(&request.headers, body).await {
            Ok(b) => b,
            Err(e) => return (fail(e), Routed::Route(route)),
        };
        for i in interceptors.iter() {
            if let Some(r) = i.inspect(&request).await {
                return (r, Routed::Route(route));
            }
        }
        let response = route.handler.handle(request).await;
        (response, Routed::Route(route))
    }

    async fn read_body<S, B>(&self, headers: &HeaderMap, mut body: S) -> Result<Bytes, ApplicationError>
    where
        S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
        B: Buf,
    {
        let max = self.settings.options.request_max_size;
        let too_large = || {
            ApplicationError::bad_request("PAYLOAD_TOO_LARGE", format!("Request body exceeds the limit of {max} bytes"))
                .with_status(413)
                .with_details("limit", max)
        };
        let declared =
            headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err(too_large());
        }
        let timeout = Duration::from_millis(self.settings.options.body_read_timeout);
        let read = async {
            // A body that arrives in one chunk (the usual case) is passed on without a copy.
            let mut first: Option<Bytes> = None;
            let mut buf = BytesMut::new();
            let mut length = 0u64;
            while let Some(chunk) = body.next().await {
                let mut chunk = chunk.map_err(|e| {
                    ApplicationError::bad_request("BAD_BODY", "The request body could not be read").with_cause(e)
                })?;
                length += chunk.remaining() as u64;
                if length > max {
                    return Err(too_large());
                }
                let part = chunk.copy_to_bytes(chunk.remaining());
                match first.take() {
                    None if buf.is_empty() => first = Some(part),
                    earlier => {
                        if let Some(earlier) = earlier {
                            buf.extend_from_slice(&earlier);
                        }
                        buf.extend_from_slice(&part);
                    }
                }
            }
            Ok(first.unwrap_or_else(|| buf.freeze()))
        };
        tokio::time::timeout(timeout, read).await.unwrap_or_else(|_| {
            Err(ApplicationError::bad_request("REQUEST_TIMEOUT", "The request body was not received in time")
                .with_status(408))
        })
    }
}

#[async_trait]
impl Component for HttpEndpoint {
    async fn open(&self, _correlation_id: Option<&str>) -> Result<(), ApplicationError> {
        if self.running.lock().is_some() {
            return Ok(());
        }
        let s = &self.inner.settings;
        let bind = format!("{}:{}", s.connection.host, s.connection.port);
        let listener = TcpListener::bind(&bind).await.map_err(|e| {
            ApplicationError::no_response("CANNOT_CONNECT", format!("Opening HTTP endpoint on {bind} failed"))
                .with_status(500)
                .with_cause(e)
                .with_details("url", bind.clone())
        })?;
        let address = listener
            .local_addr()
            .map_err(|e| ApplicationError::internal("CANNOT_CONNECT", "Cannot read the bound address").with_cause(e))?;
        let authenticated = self.inner.interceptors.read().iter().any(|i| i.authenticates());
        if !authenticated && !address.ip().is_loopback() {
            tracing::warn!(
                address = %address,
                "Listening on a non-loopback address without API keys: anyone who can reach it can read and close sessions. Configure pip-services:authenticator:api-key or bind 127.0.0.1."
            );
        }
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve(listener, self.inner.clone(), self.tls.clone(), cancel.clone()));
        tracing::info!(address = %address, protocol = %s.connection.protocol, "HTTP endpoint listening.");
        *self.running.lock() = Some(Running { address, cancel, task });
        Ok(())
    }

    async fn close(&self, _correlation_id: Option<&str>) -> Result<(), ApplicationError> {
        let running = self.running.lock().take();
        if let Some(r) = running {
            r.cancel.cancel();
            if let Err(e) = r.task.await {
                tracing::warn!(error = %e, "HTTP endpoint task ended abnormally.");
            }
            tracing::info!(address = %r.address, "HTTP endpoint closed.");
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

/// Smallest `options.max_header_size` (hyper's smallest HTTP/1 read buffer).
const MIN_HEADER_SIZE: usize = 8 * 1024;

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
async fn serve(
    listener: TcpListener,
    inner: Arc<Inner>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    cancel: CancellationToken,
) {
    let state = inner.clone();
    let filter = warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::host::optional().or(warp::any().map(|| None)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method,
                  path: warp::path::FullPath,
                  query,
                  authority: Option<warp::host::Authority>,
                  headers,
                  body| {
                let state = state.clone();
                let authority = authority.map(|a| a.as_str().to_string());
                async move {
                    state.dispatch(method, path.as_str().to_string(), query, authority, headers, Box::pin(body)).await
                }
            },
        );
    let service = warp::service(filter);
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
    let mut accept_errors = AcceptErrors::default();
    loop {
        let permit: OwnedSemaphorePermit = tokio::select! {
            () = cancel.cancelled() => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, _peer) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_errors.failed(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let activity = Activity::new();
        let _ = stream.set_nodelay(true);
        let hyper_service = TowerToHyperService::new(service.clone());
        let watched = activity.clone();
        let service = hyper::service::service_fn(move |request| {
            let guard = watched.begin();
            let answer = hyper::service::Service::call(&hyper_service, request);
            async move {
                let response = answer.await;
                drop(guard);
                response
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
                    let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed.");
                            return;
                        }
                        Err(_) => return,
                    };
                    let conn = builder.serve_connection(TokioIo::new(tls), service);
                    drive(conn, activity, timeout, stop, kill).await;
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
            "In-flight requests did not finish in time; closing them."
        );
        kill.cancel();
        tracker.wait().await;
    }
}

/// Failed accepts (out of descriptors, mostly) logged at most once every 10 s with a count, so a
/// flood cannot fill the log.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<std::time::Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    fn failed(&mut self, e: &std::io::Error) {
        if self.last_logged.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(error = %e, suppressed = self.suppressed, "Accepting a connection failed.");
        self.last_logged = Some(std::time::Instant::now());
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries_and_correlation_ids() {
        let q = decode_query("correlation_id=a%20b&x=1+2&flag&bad=%zz&end=%4");
        assert_eq!(
            q,
            vec![
                ("correlation_id".to_string(), "a b".to_string()),
                ("x".to_string(), "1 2".to_string()),
                ("flag".to_string(), String::new()),
                ("bad".to_string(), "%zz".to_string()),
                ("end".to_string(), "%4".to_string()),
            ]
        );
        let mut h = HeaderMap::new();
        h.insert("correlation_id", HeaderValue::from_static("from-header"));
        assert_eq!(correlation_id(&q, &h).as_deref(), Some("a b"));
        assert_eq!(correlation_id(&[], &h).as_deref(), Some("from-header"));
        let t = decode_query("trace_id=t1");
        assert_eq!(correlation_id(&t, &HeaderMap::new()).as_deref(), Some("t1"));
        assert_eq!(correlation_id(&[], &HeaderMap::new()), None);
    }

    fn test_route(method: Method, path: &str) -> Route {
        let handler: Arc<dyn RouteHandler> = Arc::new(|_r: HttpRequest| async { HttpResponse::empty(StatusCode::OK) });
        Route {
            pattern: Arc::from(path),
            metrics: RouteMetrics::new(&method, path),
            method,
            segments: split_path(path).into_iter().map(str::to_string).collect(),
            handler,
        }
    }

    #[test]
    fn routes_match_segments_and_params() {
        let r = test_route(Method::GET, "/api/{id}");
        assert_eq!(r.matches(&["api", "x1"]).map(|p| p["id"].clone()).as_deref(), Some("x1"));
        assert!(r.matches(&["api"]).is_none());
        assert!(r.matches(&["other", "x"]).is_none());
    }

    #[test]
    fn exact_lookup_finds_what_the_ordered_scan_finds() {
        let table = [
            test_route(Method::GET, "/api/{id}"),
            test_route(Method::GET, "/api/status"), // shadowed by the parameter route above
            test_route(Method::POST, "/api/status"),
            test_route(Method::POST, "/v1/run"),
            test_route(Method::GET, "/v1/run"),
        ]
        .into_iter()
        .fold(RouteTable::default(), |t, r| t.with(r));
        let requests = [
            (Method::GET, "/api/status"),
            (Method::POST, "/api/status"),
            (Method::POST, "/v1/run"),
            (Method::GET, "/v1/run"),
            (Method::HEAD, "/v1/run"),
            (Method::PUT, "/v1/run"),
            (Method::POST, "//v1//run/"),
            (Method::POST, "/v1/other"),
            (Method::GET, "/"),
        ];
        for (method, path) in requests {
            let scanned = table.scan(&method, path).map(|(r, _)| Arc::as_ptr(&r)).ok();
            if let Some(r) = table.exact(&method, path) {
                assert_eq!(Some(Arc::as_ptr(r)), scanned, "{method} {path}");
            }
        }
        assert!(table.exact(&Method::GET, "/api/status").is_none());
        assert!(table.exact(&Method::POST, "/v1/run").is_some());
        assert_eq!(table.scan(&Method::PUT, "/v1/run").err(), Some(vec!["POST".to_string(), "GET".to_string()]));
        assert_eq!(table.scan(&Method::GET, "/nowhere").err(), Some(Vec::new()));
    }

    #[test]
    fn method_labels_are_bounded_and_echoes_short() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let odd = Method::from_bytes(b"FOOBAR").unwrap_or(Method::GET);
        assert_eq!(method_label(&odd), "other");
        assert_eq!(shorten("abc"), "abc");
        assert_eq!(shorten(&"é".repeat(1000)).chars().count(), ECHO_LIMIT + 3);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_open_files_limit(limits), Some(1024));
        assert_eq!(parse_open_files_limit("Max open files unlimited unlimited files"), None);
    }

    #[test]
    fn rejects_unknown_protocols_and_missing_tls_files() {
        let mut s = EndpointSettings::default();
        s.connection.protocol = "ftp".into();
        assert_eq!(HttpEndpoint::new(s.clone()).err().map(|e| e.code).as_deref(), Some("WRONG_PROTOCOL"));
        s.connection.protocol = "https".into();
        assert_eq!(HttpEndpoint::new(s).err().map(|e| e.code).as_deref(), Some("NO_SSL_KEY_FILE"));
        let mut s = EndpointSettings::default();
        s.options.max_header_size = 100;
        assert_eq!(HttpEndpoint::new(s).err().map(|e| e.code).as_deref(), Some("BAD_CONFIG"));
    }
}
