//! The request pipeline: what happens to one request between the accept loop and its handler —
//! host check, maintenance, CORS, routing, interceptors, the capped body read, the correlation
//! id, the request log line and metrics, and the headers every response gets.

use super::super::{error_response, has_no_cache_headers, HttpRequest, HttpResponse, NO_CACHE_HEADERS};
use super::router::{method_label, no_route, record_unrouted, Routed};
use super::Inner;
use crate::toolkit::errors::ApplicationError;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use http_body::Body;
use http_body_util::{BodyExt, Full};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;
use warp::http::uri::Authority;
use warp::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};

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

/// The CORS answer of one request.
struct Cors {
    /// `Access-Control-Allow-Origin`, when the origin is allowed.
    origin: Option<HeaderValue>,
    /// Whether the answer depends on `Origin` (`Vary: Origin`).
    varies: bool,
}

const CORRELATION_ID_HEADER: HeaderName = HeaderName::from_static("correlation_id");
const TRACE_ID_HEADER: HeaderName = HeaderName::from_static("trace_id");
/// The edge's request id: read when the request names no correlation id, and echoed on every
/// response whose correlation id is safe to echo.
pub(super) const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static("traceparent");

/// Longest correlation id echoed in `X-Request-Id` or taken from it.
const EDGE_ID_LIMIT: usize = 128;

/// The correlation id of a request: query `correlation_id`, query `trace_id`, the same-named
/// headers (Pip's own sources, as the original reads them), else the edge's `X-Request-Id`, else
/// the trace-id of a W3C `traceparent`. The edge's values are checked ([`edge_id`],
/// [`traceparent_trace_id`]); a bad one is ignored.
fn correlation_id(query: &[(String, String)], headers: &HeaderMap) -> Option<String> {
    for name in ["correlation_id", "trace_id"] {
        if let Some((_, v)) = query.iter().find(|(k, v)| k == name && !v.is_empty()) {
            return Some(v.clone());
        }
    }
    // The first value of each of the four headers, found in one pass over the request's few
    // headers instead of four hashed lookups (what `HeaderMap::get` returns for each).
    let names = [CORRELATION_ID_HEADER, TRACE_ID_HEADER, REQUEST_ID_HEADER, TRACEPARENT_HEADER];
    let mut first: [Option<&HeaderValue>; 4] = [None; 4];
    for (name, value) in headers {
        if let Some(i) = names.iter().position(|n| n == name) {
            if let Some(slot @ None) = first.get_mut(i) {
                *slot = Some(value);
            }
        }
    }
    let [correlation, trace, request, traceparent] = first;
    for v in [correlation, trace] {
        if let Some(v) = v.and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()) {
            return Some(v.to_string());
        }
    }
    if let Some(id) = request.and_then(|v| edge_id(v.as_bytes())) {
        return Some(id.to_string());
    }
    traceparent.and_then(|v| traceparent_trace_id(v.as_bytes())).map(str::to_string)
}

/// `id` when it may serve as (and be echoed as) a correlation id: 1 to [`EDGE_ID_LIMIT`]
/// printable ASCII characters, no spaces.
pub(super) fn edge_id(id: &[u8]) -> Option<&str> {
    let fits = !id.is_empty() && id.len() <= EDGE_ID_LIMIT && id.iter().all(|b| b.is_ascii_graphic());
    fits.then(|| std::str::from_utf8(id).ok()).flatten()
}

/// The trace-id of a W3C `traceparent` (`version-traceid-parentid-flags`): 32 lowercase hex
/// digits, not all zero, under a known version (`00`: exactly four fields; a later version may
/// append fields; `ff` is invalid).
fn traceparent_trace_id(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let mut fields = text.split('-');
    let (version, trace, parent, flags) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
    let lower_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let valid = lower_hex(version, 2)
        && version != "ff"
        && (version != "00" || fields.next().is_none())
        && lower_hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && lower_hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && lower_hex(flags, 2);
    valid.then_some(trace)
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

/// The authority a request names, as warp's `host::optional` reads it: the target URI's (HTTP/2
/// `:authority`, HTTP/1 absolute form) and the `Host` header's, which must agree; `None` when
/// neither is given, they differ or the header does not parse.
fn request_authority(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let from_header = headers.get(header::HOST).map(|v| v.to_str().ok().and_then(|s| s.parse::<Authority>().ok()));
    match (uri.authority(), from_header) {
        (Some(a), None) => Some(a.as_str().to_string()),
        (None, Some(Some(b))) => Some(b.as_str().to_string()),
        (Some(a), Some(Some(b))) if *a == b => Some(b.as_str().to_string()),
        _ => None,
    }
}

impl Inner {
    fn finish(
        &self,
        mut response: HttpResponse,
        cors: Option<Cors>,
        echo: Option<HeaderValue>,
    ) -> Response<Full<Bytes>> {
        let h = &mut response.headers;
        if let Some(id) = echo {
            h.insert(REQUEST_ID_HEADER, id);
        }
        // Responses built by `HttpResponse`'s constructors carry them already.
        if !has_no_cache_headers(h) {
            for (name, value) in NO_CACHE_HEADERS.iter().cloned() {
                h.insert(name, value);
            }
        }
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
        let mut out = Response::new(Full::new(response.body));
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
    fn host_allowed(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        let allowed = &self.settings.allowed_hosts;
        if allowed.is_empty() {
            return true;
        }
        let authority = request_authority(uri, headers);
        let Some(host) = authority.as_deref().or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
        else {
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

    /// Serves one request from hyper: the whole pipeline, then the headers every response gets.
    /// Also returns when it was served (the clock read that timed it).
    pub(super) async fn dispatch<B>(self: Arc<Self>, request: Request<B>) -> (Response<Full<Bytes>>, Instant)
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let _in_flight = InFlight::enter();
        let (parts, mut body) = request.into_parts();
        let (method, headers) = (parts.method, parts.headers);
        let path = parts.uri.path().to_string();
        let query = decode_query(parts.uri.query().unwrap_or(""));
        let cid = correlation_id(&query, &headers);
        // The id used is echoed when it is safe in a header; an odd one from the query is not.
        let echo = cid.as_deref().and_then(|c| edge_id(c.as_bytes())).and_then(|c| HeaderValue::from_str(c).ok());
        let span = tracing::info_span!(
            "request",
            method = method_label(&method),
            correlation_id = cid.as_deref().unwrap_or("")
        );
        let method_label = method.clone();
        let cors = self.cors(&headers);
        let (response, routed) = if self.host_allowed(&parts.uri, &headers) {
            // Boxed: the routing future (the request, the body read, the handler's box) is over
            // a kilobyte, and this one is moved several times before it runs; the box is moved
            // instead.
            Box::pin(self.route(method, path, query, headers, &mut body, cid)).instrument(span.clone()).await
        } else {
            let e = ApplicationError::bad_request("HOST_NOT_ALLOWED", "The Host of the request is not served here")
                .with_status(421);
            (error_response(&e.with_correlation_id(cid.as_deref())), Routed::Other("unmatched"))
        };
        if !body.is_end_stream() {
            self.drain_in_background(body);
        }
        let status = response.status.as_u16();
        let served = Instant::now();
        let elapsed = served.saturating_duration_since(started);
        span.in_scope(|| tracing::debug!(route = %routed.label(), status, elapsed_us = elapsed.as_micros() as u64, "Request served."));
        match &routed {
            Routed::Route(r) if r.method == method_label => {
                r.metrics.record(&method_label, &r.pattern, status, elapsed.as_secs_f64());
            }
            other => record_unrouted(&method_label, other.label(), status, elapsed.as_secs_f64()),
        }
        (self.finish(response, cors, echo), served)
    }

    async fn route<B>(
        &self,
        method: Method,
        path: String,
        query: Vec<(String, String)>,
        headers: HeaderMap,
        body: &mut B,
        cid: Option<String>,
    ) -> (HttpResponse, Routed)
    where
        B: Body<Data = Bytes> + Send + Unpin,
        B::Error: std::error::Error + Send + Sync + 'static,
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

    /// Reads and drops, in a task of its own, what is left of a body the pipeline refused before
    /// reading it all (401, 413, ...): a client still sending then reads the refusal, where closing
    /// the connection under it would make its kernel answer with a reset that can destroy the
    /// reply. Bounded by four times `request_max_size` and by `body_read_timeout`.
    fn drain_in_background<B>(&self, mut body: B)
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
    {
        let cap = self.settings.options.request_max_size.saturating_mul(4);
        if body.size_hint().lower() > cap {
            return;
        }
        let timeout = Duration::from_millis(self.settings.options.body_read_timeout);
        tokio::spawn(async move {
            let drain = async {
                let mut seen = 0u64;
                while let Some(Ok(frame)) = body.frame().await {
                    seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                    if seen > cap {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(timeout, drain).await;
        });
    }

    async fn read_body<B>(&self, headers: &HeaderMap, body: &mut B) -> Result<Bytes, ApplicationError>
    where
        B: Body<Data = Bytes> + Send + Unpin,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let max = self.settings.options.request_max_size;
        let declared =
            headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err(too_large(max));
        }
        let mut collected = Collected { max, first: None, buf: BytesMut::new(), length: 0 };
        // What arrived with the head (often the whole body, or none) is taken without arming the
        // timer; the rest is awaited under `body_read_timeout`.
        loop {
            if body.is_end_stream() {
                return Ok(collected.finish());
            }
            match body.frame().now_or_never() {
                Some(Some(frame)) => collected.add(frame)?,
                Some(None) => return Ok(collected.finish()),
                None => break,
            }
        }
        let timeout = Duration::from_millis(self.settings.options.body_read_timeout);
        let read = async {
            while let Some(frame) = body.frame().await {
                collected.add(frame)?;
            }
            Ok(collected.finish())
        };
        tokio::time::timeout(timeout, read).await.unwrap_or_else(|_| {
            Err(ApplicationError::bad_request("REQUEST_TIMEOUT", "The request body was not received in time")
                .with_status(408))
        })
    }
}

/// A request body as its frames arrive, capped at `max` bytes.
struct Collected {
    max: u64,
    /// A body that arrives in one chunk (the usual case) is passed on without a copy.
    first: Option<Bytes>,
    buf: BytesMut,
    length: u64,
}

impl Collected {
    fn add<E>(&mut self, frame: Result<http_body::Frame<Bytes>, E>) -> Result<(), ApplicationError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let frame = frame.map_err(|e| {
            ApplicationError::bad_request("BAD_BODY", "The request body could not be read").with_cause(e)
        })?;
        // Trailers carry no body bytes.
        let Ok(part) = frame.into_data() else { return Ok(()) };
        self.length += part.len() as u64;
        if self.length > self.max {
            return Err(too_large(self.max));
        }
        match self.first.take() {
            None if self.buf.is_empty() => self.first = Some(part),
            earlier => {
                if let Some(earlier) = earlier {
                    self.buf.extend_from_slice(&earlier);
                }
                self.buf.extend_from_slice(&part);
            }
        }
        Ok(())
    }

    fn finish(self) -> Bytes {
        self.first.unwrap_or_else(|| self.buf.freeze())
    }
}

/// 413 `PAYLOAD_TOO_LARGE` for a body over `max` bytes.
fn too_large(max: u64) -> ApplicationError {
    ApplicationError::bad_request("PAYLOAD_TOO_LARGE", format!("Request body exceeds the limit of {max} bytes"))
        .with_status(413)
        .with_details("limit", max)
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
        // The first value of a repeated header counts, as `HeaderMap::get` reads it.
        let mut h = HeaderMap::new();
        h.append("correlation_id", HeaderValue::from_static(""));
        h.append("correlation_id", HeaderValue::from_static("second"));
        h.append("x-request-id", HeaderValue::from_static("edge-1"));
        h.append("x-request-id", HeaderValue::from_static("edge-2"));
        assert_eq!(correlation_id(&[], &h).as_deref(), Some("edge-1"));
    }

    #[test]
    fn edge_ids_are_checked_before_use() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("req-42"));
        h.insert("traceparent", HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert_eq!(correlation_id(&[], &h).as_deref(), Some("req-42"));
        assert_eq!(correlation_id(&decode_query("trace_id=q"), &h).as_deref(), Some("q"));
        h.insert("x-request-id", HeaderValue::from_static("has space"));
        assert_eq!(correlation_id(&[], &h).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        h.insert(
            "x-request-id",
            HeaderValue::from_str(&"a".repeat(EDGE_ID_LIMIT + 1)).unwrap_or(HeaderValue::from_static("")),
        );
        assert_eq!(correlation_id(&[], &h).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(edge_id("a".repeat(EDGE_ID_LIMIT).as_bytes()).map(str::len), Some(EDGE_ID_LIMIT));
        assert_eq!(edge_id("é".as_bytes()), None);
        assert_eq!(edge_id(b""), None);
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ] {
            assert_eq!(traceparent_trace_id(bad.as_bytes()), None, "{bad}");
        }
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert_eq!(traceparent_trace_id(later.as_bytes()), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    }
}
