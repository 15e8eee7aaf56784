//! The request pipeline: what happens to one request between the accept loop and its handler —
//! host check, maintenance, CORS, routing, interceptors, the capped body read, the correlation
//! id, the request log line and metrics, and the headers every response gets.

use super::super::{
    error_response, has_no_cache_headers, CommandCall, HttpRequest, HttpResponse, Started, NO_CACHE_HEADERS,
};
use super::router::{method_label, no_route, record_unrouted, Route, Routed};
use super::Inner;
use crate::toolkit::errors::ApplicationError;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use http_body::Body;
use http_body_util::{BodyExt, Full};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
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

/// The first value of each header the pipeline reads, found in one pass over the request's few
/// headers instead of a hashed lookup each (what `HeaderMap::get` returns for each).
struct HeadFields<'a> {
    correlation_id: Option<&'a HeaderValue>,
    trace_id: Option<&'a HeaderValue>,
    request_id: Option<&'a HeaderValue>,
    traceparent: Option<&'a HeaderValue>,
    content_length: Option<&'a HeaderValue>,
}

impl<'a> HeadFields<'a> {
    fn of(headers: &'a HeaderMap) -> Self {
        // A static: a local array of names would be made and dropped per request.
        static NAMES: [HeaderName; 5] =
            [CORRELATION_ID_HEADER, TRACE_ID_HEADER, REQUEST_ID_HEADER, TRACEPARENT_HEADER, header::CONTENT_LENGTH];
        let mut first: [Option<&HeaderValue>; 5] = [None; 5];
        for (name, value) in headers {
            if let Some(i) = NAMES.iter().position(|n| n == name) {
                if let Some(slot @ None) = first.get_mut(i) {
                    *slot = Some(value);
                }
            }
        }
        let [correlation_id, trace_id, request_id, traceparent, content_length] = first;
        Self { correlation_id, trace_id, request_id, traceparent, content_length }
    }

    /// The body's length as `Content-Length` declares it (`None` when absent or not a number).
    fn content_length(&self) -> Option<u64> {
        self.content_length.and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
    }
}

/// The correlation id of a request: query `correlation_id`, query `trace_id`, the same-named
/// headers (Pip's own sources, as the original reads them), else the edge's `X-Request-Id`, else
/// the trace-id of a W3C `traceparent`. The edge's values are checked ([`edge_id`],
/// [`traceparent_trace_id`]); a bad one is ignored.
fn correlation_id(query: &[(String, String)], head: &HeadFields<'_>) -> Option<String> {
    for name in ["correlation_id", "trace_id"] {
        if let Some((_, v)) = query.iter().find(|(k, v)| k == name && !v.is_empty()) {
            return Some(v.clone());
        }
    }
    for v in [head.correlation_id, head.trace_id] {
        if let Some(v) = v.and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()) {
            return Some(v.to_string());
        }
    }
    if let Some(id) = head.request_id.and_then(|v| edge_id(v.as_bytes())) {
        return Some(id.to_string());
    }
    head.traceparent.and_then(|v| traceparent_trace_id(v.as_bytes())).map(str::to_string)
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
    // Most requests have none: no splitting and collecting of nothing.
    if raw.is_empty() {
        return Vec::new();
    }
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

/// What a request needs once it is answered: its log line, metrics and response headers.
struct RequestEnd {
    started: Instant,
    _in_flight: InFlight,
    span: tracing::Span,
    method: Method,
    cors: Option<Cors>,
    echo: Option<HeaderValue>,
}

/// What routing made of a request before anything was awaited.
enum Step<B> {
    /// Answered, with the body (to drain what is left of it).
    Done(HttpResponse, Routed, B),
    /// Something to await, with the body when the waiting does not own it.
    Wait(Wait<B>, Option<B>),
}

/// What a request awaits.
enum Wait<B> {
    /// A started command: its action's own future (boxed by the command).
    Command(CommandCall, Arc<Route>),
    /// The rest of the pipeline, boxed: interceptors, a body still arriving, a handler's own
    /// future. It owns the body and gives it back.
    Later(Pin<Box<dyn Future<Output = (HttpResponse, Routed, B)> + Send>>),
}

impl<B: Unpin> Future for Wait<B> {
    type Output = (HttpResponse, Routed, Option<B>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Wait::Command(call, route) => call.poll_response(cx).map(|r| (r, Routed::Route(route.clone()), None)),
            Wait::Later(rest) => rest.as_mut().poll(cx).map(|(r, routed, body)| (r, routed, Some(body))),
        }
    }
}

/// Where a boxed rest of a request starts.
enum Stage {
    /// At the interceptors (then the whole body, of the declared length, the inspections and
    /// the handler).
    Intercept(Arc<Vec<Arc<dyn RequestInterceptor>>>, Option<u64>),
    /// At the rest of the body (then the handler).
    ReadRest(Collected),
    /// At the handler's own future.
    Handle,
}

/// The future of one request, as hyper holds it: the request until first polled, then only what
/// it awaits and what its end needs (a few hundred bytes, where an `async` function would keep
/// the request beside them for its whole life).
pub(super) struct Dispatch<B> {
    state: DispatchState<B>,
}

enum DispatchState<B> {
    /// Not polled yet (the body arrives after the head, so routing waits for the first poll).
    Start(Option<(Arc<Inner>, Request<B>)>),
    /// Routed; waiting for the answer.
    Awaiting { inner: Arc<Inner>, wait: tracing::instrument::Instrumented<Wait<B>>, body: Option<B>, end: RequestEnd },
    /// Answered.
    Done,
}

impl<B> Dispatch<B> {
    /// The future that serves `request` (see [`Inner::begin`] and [`Inner::end`]).
    pub(super) fn new(inner: Arc<Inner>, request: Request<B>) -> Self {
        Self { state: DispatchState::Start(Some((inner, request))) }
    }
}

impl<B> Future for Dispatch<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Output = (Response<Full<Bytes>>, Instant);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let DispatchState::Start(start) = &mut this.state {
            if let Some((inner, request)) = start.take() {
                let (step, end) = inner.begin(request);
                match step {
                    Step::Done(response, routed, body) => {
                        this.state = DispatchState::Done;
                        return Poll::Ready(inner.end(response, routed, Some(body), end));
                    }
                    Step::Wait(wait, body) => {
                        // Polled in the request's span, as the whole request was.
                        let wait = wait.instrument(end.span.clone());
                        this.state = DispatchState::Awaiting { inner, wait, body, end };
                    }
                }
            }
        }
        let DispatchState::Awaiting { wait, .. } = &mut this.state else { return Poll::Pending };
        let (response, routed, returned) = std::task::ready!(Pin::new(wait).poll(cx));
        match std::mem::replace(&mut this.state, DispatchState::Done) {
            DispatchState::Awaiting { inner, body, end, .. } => {
                Poll::Ready(inner.end(response, routed, body.or(returned), end))
            }
            _ => Poll::Pending,
        }
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

    /// Everything a request needs before anything is awaited: the head's checks, the
    /// correlation id, CORS, routing, the body when it came with the head, and the handler's
    /// start when it has one ([`RouteHandler::start`]). What is left to await comes back as a
    /// [`Step::Wait`].
    fn begin<B>(self: &Arc<Self>, request: Request<B>) -> (Step<B>, RequestEnd)
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let in_flight = InFlight::enter();
        let (parts, body) = request.into_parts();
        let (method, headers) = (parts.method, parts.headers);
        let path = parts.uri.path().to_string();
        let query = decode_query(parts.uri.query().unwrap_or(""));
        let head = HeadFields::of(&headers);
        let cid = correlation_id(&query, &head);
        let declared = head.content_length();
        // The id used is echoed when it is safe in a header; an odd one from the query is not.
        let echo = cid.as_deref().and_then(|c| edge_id(c.as_bytes())).and_then(|c| HeaderValue::from_str(c).ok());
        let span = tracing::info_span!(
            "request",
            method = method_label(&method),
            correlation_id = cid.as_deref().unwrap_or("")
        );
        let method_label = method.clone();
        let cors = self.cors(&headers);
        let step = if self.host_allowed(&parts.uri, &headers) {
            let request = HttpRequest {
                method,
                path,
                params: HashMap::new(),
                query,
                headers,
                body: Bytes::new(),
                correlation_id: cid,
            };
            span.in_scope(|| self.route(request, declared, body))
        } else {
            let e = ApplicationError::bad_request("HOST_NOT_ALLOWED", "The Host of the request is not served here")
                .with_status(421);
            Step::Done(error_response(&e.with_correlation_id(cid.as_deref())), Routed::Other("unmatched"), body)
        };
        (step, RequestEnd { started, _in_flight: in_flight, span, method: method_label, cors, echo })
    }

    /// The end of a request: what is left of its body drained, its log line and metrics, and
    /// the headers every response gets. Also returns when it was served (the clock read that
    /// timed it).
    fn end<B>(
        &self,
        response: HttpResponse,
        routed: Routed,
        body: Option<B>,
        end: RequestEnd,
    ) -> (Response<Full<Bytes>>, Instant)
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
    {
        if let Some(body) = body.filter(|b| !b.is_end_stream()) {
            self.drain_in_background(body);
        }
        let RequestEnd { started, _in_flight, span, method, cors, echo } = end;
        let status = response.status.as_u16();
        let served = Instant::now();
        let elapsed = served.saturating_duration_since(started);
        span.in_scope(|| tracing::debug!(route = %routed.label(), status, elapsed_us = elapsed.as_micros() as u64, "Request served."));
        match &routed {
            Routed::Route(r) if r.method == method => {
                r.metrics.record(&method, &r.pattern, status, elapsed.as_secs_f64());
            }
            other => record_unrouted(&method, other.label(), status, elapsed.as_secs_f64()),
        }
        (self.finish(response, cors, echo), served)
    }

    /// Routes a request and goes as far as it can without awaiting: maintenance, a CORS
    /// preflight, 404/405, a refused body and a handler that answers at once are answered here;
    /// a started command is awaited by the request's own future; anything else (interceptors,
    /// a body still arriving, a handler's own future) is boxed.
    fn route<B>(self: &Arc<Self>, mut request: HttpRequest, declared: Option<u64>, mut body: B) -> Step<B>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let unmatched = || Routed::Other("unmatched");
        if self.settings.options.maintenance_enabled {
            let e = ApplicationError::no_response("MAINTENANCE", "The service is under maintenance");
            let r = error_response(&e.with_correlation_id(request.correlation_id.as_deref()))
                .with_header("retry-after", "3600");
            return Step::Done(r, unmatched(), body);
        }
        if request.method == Method::OPTIONS && !self.settings.cors_origins().is_empty() {
            let mut r = HttpResponse::empty(StatusCode::NO_CONTENT);
            r.headers.insert(
                "access-control-allow-methods",
                HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
            return Step::Done(r, Routed::Other("preflight"), body);
        }
        let routes = self.routes.read().clone();
        let interceptors = self.interceptors.read().clone();
        let route = match routes.exact(&request.method, &request.path) {
            Some(route) => route.clone(),
            None => match routes.scan(&request.method, &request.path) {
                Ok((route, params)) => {
                    request.params = params;
                    route
                }
                Err(allowed) => {
                    let head = request;
                    if interceptors.is_empty() {
                        let r = no_route(&head.method, &head.path, &allowed, head.correlation_id.as_deref());
                        return Step::Done(r, unmatched(), body);
                    }
                    // With authentication configured, an unauthenticated caller cannot probe
                    // which routes and methods exist: 401 comes before 404 and 405.
                    return Step::Wait(
                        Wait::Later(Box::pin(async move {
                            for i in interceptors.iter() {
                                if let Some(r) = i.intercept(&head).await {
                                    return (r, unmatched(), body);
                                }
                            }
                            let r = no_route(&head.method, &head.path, &allowed, head.correlation_id.as_deref());
                            (r, unmatched(), body)
                        })),
                        None,
                    );
                }
            },
        };
        if !interceptors.is_empty() {
            return self.later(route, request, body, Stage::Intercept(interceptors, declared));
        }
        match self.body_now(declared, &mut body) {
            Ok(BodyNow::Whole(bytes)) => request.body = bytes,
            Ok(BodyNow::Partial(collected)) => return self.later(route, request, body, Stage::ReadRest(collected)),
            Err(e) => {
                let r = error_response(&e.with_correlation_id(request.correlation_id.as_deref()));
                return Step::Done(r, Routed::Route(route), body);
            }
        }
        match route.handler.start(request) {
            Ok(Started::Ready(r)) => Step::Done(r, Routed::Route(route), body),
            Ok(Started::Command(call)) => Step::Wait(Wait::Command(call, route), Some(body)),
            Err(request) => self.later(route, request, body, Stage::Handle),
        }
    }

    /// The rest of a routed request, boxed: it owns the request and its body until answered.
    fn later<B>(self: &Arc<Self>, route: Arc<Route>, request: HttpRequest, mut body: B, stage: Stage) -> Step<B>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let this = self.clone();
        Step::Wait(
            Wait::Later(Box::pin(async move {
                let response = this.finish_route(&route, request, &mut body, stage).await;
                (response, Routed::Route(route), body)
            })),
            None,
        )
    }

    async fn finish_route<B>(&self, route: &Route, mut request: HttpRequest, body: &mut B, stage: Stage) -> HttpResponse
    where
        B: Body<Data = Bytes> + Send + Unpin,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let read = match stage {
            Stage::Handle => return route.handler.handle(request).await,
            Stage::ReadRest(collected) => (self.read_rest(collected, body).await, None),
            Stage::Intercept(interceptors, declared) => {
                // Interceptors see the head only, so a refused request is never read.
                for i in interceptors.iter() {
                    if let Some(r) = i.intercept(&request).await {
                        return r;
                    }
                }
                (self.read_body(declared, body).await, Some(interceptors))
            }
        };
        request.body = match read.0 {
            Ok(b) => b,
            Err(e) => return error_response(&e.with_correlation_id(request.correlation_id.as_deref())),
        };
        for i in read.1.iter().flat_map(|i| i.iter()) {
            if let Some(r) = i.inspect(&request).await {
                return r;
            }
        }
        match route.handler.start(request) {
            Ok(Started::Ready(r)) => r,
            Ok(Started::Command(call)) => call.response().await,
            Err(request) => route.handler.handle(request).await,
        }
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

    /// The whole body, `declared` long by its `Content-Length` if it says.
    async fn read_body<B>(&self, declared: Option<u64>, body: &mut B) -> Result<Bytes, ApplicationError>
    where
        B: Body<Data = Bytes> + Send + Unpin,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        match self.body_now(declared, body)? {
            BodyNow::Whole(bytes) => Ok(bytes),
            BodyNow::Partial(collected) => self.read_rest(collected, body).await,
        }
    }

    /// The body as far as it has arrived (often all of it, or none, with the head), taken
    /// without arming the timer; a body over `request_max_size` is refused, by its declared
    /// length (`Content-Length`) first.
    fn body_now<B>(&self, declared: Option<u64>, body: &mut B) -> Result<BodyNow, ApplicationError>
    where
        B: Body<Data = Bytes> + Send + Unpin,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let max = self.settings.options.request_max_size;
        if declared.is_some_and(|n| n > max) {
            return Err(too_large(max));
        }
        let mut collected = Collected { max, first: None, buf: BytesMut::new(), length: 0 };
        loop {
            if body.is_end_stream() {
                return Ok(BodyNow::Whole(collected.finish()));
            }
            match body.frame().now_or_never() {
                Some(Some(frame)) => collected.add(frame)?,
                Some(None) => return Ok(BodyNow::Whole(collected.finish())),
                None => return Ok(BodyNow::Partial(collected)),
            }
        }
    }

    /// The rest of a body, awaited under `body_read_timeout`.
    async fn read_rest<B>(&self, mut collected: Collected, body: &mut B) -> Result<Bytes, ApplicationError>
    where
        B: Body<Data = Bytes> + Send + Unpin,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
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

/// A body as far as it has arrived without waiting.
enum BodyNow {
    /// All of it.
    Whole(Bytes),
    /// Some of it; the rest is still to come.
    Partial(Collected),
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
        assert_eq!(correlation_id(&q, &HeadFields::of(&h)).as_deref(), Some("a b"));
        assert_eq!(correlation_id(&[], &HeadFields::of(&h)).as_deref(), Some("from-header"));
        let t = decode_query("trace_id=t1");
        assert_eq!(correlation_id(&t, &HeadFields::of(&HeaderMap::new())).as_deref(), Some("t1"));
        assert_eq!(correlation_id(&[], &HeadFields::of(&HeaderMap::new())), None);
        // The first value of a repeated header counts, as `HeaderMap::get` reads it.
        let mut h = HeaderMap::new();
        h.append("correlation_id", HeaderValue::from_static(""));
        h.append("correlation_id", HeaderValue::from_static("second"));
        h.append("x-request-id", HeaderValue::from_static("edge-1"));
        h.append("x-request-id", HeaderValue::from_static("edge-2"));
        assert_eq!(correlation_id(&[], &HeadFields::of(&h)).as_deref(), Some("edge-1"));
        // The declared length is the first `Content-Length`, as `HeaderMap::get` reads it.
        assert_eq!(HeadFields::of(&h).content_length(), None);
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("7"));
        assert_eq!(HeadFields::of(&h).content_length(), Some(12));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("x"));
        assert_eq!(HeadFields::of(&h).content_length(), None);
    }

    #[test]
    fn edge_ids_are_checked_before_use() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("req-42"));
        h.insert("traceparent", HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert_eq!(correlation_id(&[], &HeadFields::of(&h)).as_deref(), Some("req-42"));
        assert_eq!(correlation_id(&decode_query("trace_id=q"), &HeadFields::of(&h)).as_deref(), Some("q"));
        h.insert("x-request-id", HeaderValue::from_static("has space"));
        assert_eq!(correlation_id(&[], &HeadFields::of(&h)).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        h.insert(
            "x-request-id",
            HeaderValue::from_str(&"a".repeat(EDGE_ID_LIMIT + 1)).unwrap_or(HeaderValue::from_static("")),
        );
        assert_eq!(correlation_id(&[], &HeadFields::of(&h)).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
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
