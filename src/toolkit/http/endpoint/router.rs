//! The route table: routes as registered, matching (one hash lookup for fixed paths, else an
//! in-order scan), the 404/405 answers and the per-route metric handles.

use super::super::{error_response, HttpResponse, RouteHandler};
use crate::toolkit::errors::ApplicationError;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use warp::http::Method;

pub(super) struct Route {
    /// The route as registered (`/api/v1/sessions/{id}`): the metrics label.
    pub(super) pattern: Arc<str>,
    pub(super) method: Method,
    pub(super) segments: Vec<String>,
    pub(super) handler: Arc<dyn RouteHandler>,
    pub(super) metrics: RouteMetrics,
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
pub(super) struct RouteMetrics {
    duration: Option<prometheus::Histogram>,
    requests: RwLock<Vec<(u16, prometheus::IntCounter)>>,
}

impl RouteMetrics {
    pub(super) fn new(method: &Method, pattern: &str) -> Self {
        let duration =
            crate::toolkit::metrics::http().map(|m| m.duration.with_label_values(&[method_label(method), pattern]));
        Self { duration, requests: RwLock::new(Vec::new()) }
    }

    pub(super) fn record(&self, method: &Method, pattern: &str, status: u16, seconds: f64) {
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
pub(super) fn record_unrouted(method: &Method, pattern: &str, status: u16, seconds: f64) {
    if let Some(m) = crate::toolkit::metrics::http() {
        let method = method_label(method);
        m.requests.with_label_values(&[method, pattern, status_label(status)]).inc();
        m.duration.with_label_values(&[method, pattern]).observe(seconds);
    }
}

/// The metric and log label of a method: one of the standard methods, else `other`, so nothing
/// a client sends can create a series.
pub(super) fn method_label(method: &Method) -> &'static str {
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
pub(super) struct RouteTable {
    routes: Vec<Arc<Route>>,
    exact: HashMap<String, Vec<(Method, usize)>, BuildHasherDefault<PathHasher>>,
}

/// A multiply-rotate hash over the path eight bytes at a time: the fixed-route map holds only
/// the registered routes (a client cannot add keys, so it cannot pile up collisions, only make
/// its own lookup compare a few more keys), and a route's path hashes in a few instructions per
/// eight bytes instead of SipHash's few hundred per key.
#[derive(Default)]
pub(super) struct PathHasher(u64);

/// The multiplier of [`PathHasher`] (rustc's `FxHasher`'s).
const PATH_HASH_K: u64 = 0xf135_7aea_2e62_a9c5;

impl PathHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(PATH_HASH_K);
    }
}

impl Hasher for PathHasher {
    fn finish(&self) -> u64 {
        // The table takes its bucket from the low bits and its tag from the high ones; the
        // product's best-mixed bits are the high ones.
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
}

impl RouteTable {
    pub(super) fn with(&self, route: Route) -> Self {
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
    /// route has no `{param}` segments. A key is a route's segments joined by `/`: none is
    /// empty, so no key has `//` or a `/` at either end, and a path with empty segments (which
    /// the scan reads without them) finds no key and is left to the scan, as `None`.
    pub(super) fn exact(&self, method: &Method, path: &str) -> Option<&Arc<Route>> {
        let key = path.strip_prefix('/')?;
        let (_, i) = self.exact.get(key)?.iter().find(|(m, _)| m == method)?;
        self.routes.get(*i)
    }

    /// The first route matching the path and method in registration order (a GET route serves
    /// HEAD), with its parameters; else the methods the path allows (empty: no such path).
    pub(super) fn scan(&self, method: &Method, path: &str) -> Result<Matched, Vec<String>> {
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
pub(super) fn no_route(method: &Method, path: &str, allowed: &[String], cid: Option<&str>) -> HttpResponse {
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

/// A matched route with the values of its `{param}` segments.
pub(super) type Matched = (Arc<Route>, HashMap<String, String>);

/// What a request was routed to, for metrics and logs.
pub(super) enum Routed {
    Route(Arc<Route>),
    Other(&'static str),
}

impl Routed {
    pub(super) fn label(&self) -> &str {
        match self {
            Self::Route(r) => &r.pattern,
            Self::Other(label) => label,
        }
    }
}

pub(super) fn split_path(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolkit::http::HttpRequest;
    use warp::http::StatusCode;

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
            test_route(Method::GET, "/"),
            test_route(Method::POST, "/v1/sessions/get_session_by_id"),
            test_route(Method::POST, "/v1/sessions/get_session_by_id_too"),
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
            (Method::GET, "//"),
            (Method::HEAD, "/"),
            (Method::POST, "/v1/run/"),
            (Method::POST, "/v1/sessions/get_session_by_id"),
            (Method::POST, "/v1/sessions/get_session_by_id_too"),
            (Method::POST, "/v1/sessions//get_session_by_id"),
            (Method::POST, "/v1/sessions/get_session_by_i"),
        ];
        for (method, path) in requests {
            let scanned = table.scan(&method, path).map(|(r, _)| Arc::as_ptr(&r)).ok();
            if let Some(r) = table.exact(&method, path) {
                assert_eq!(Some(Arc::as_ptr(r)), scanned, "{method} {path}");
            }
        }
        assert!(table.exact(&Method::GET, "/api/status").is_none());
        assert!(table.exact(&Method::POST, "/v1/run").is_some());
        assert!(table.exact(&Method::GET, "/").is_some());
        assert!(table.exact(&Method::POST, "/v1/sessions/get_session_by_id_too").is_some());
        // Paths with empty segments are left to the scan, which reads them without those.
        for path in ["//v1//run/", "/v1/run/", "//"] {
            assert!(table.exact(&Method::POST, path).is_none(), "{path}");
        }
        assert!(table.scan(&Method::POST, "//v1//run/").is_ok());
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
    }
}
