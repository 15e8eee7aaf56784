//! HTTP building blocks: the shared endpoint, the generic commandable service, heartbeat,
//! status, Prometheus and swagger services, API-key authentication, and the single error renderer.
//!
//! The endpoint owns the listener and a route table; services register routes during
//! `set_references` and never see warp's rejections: a handler receives an [`HttpRequest`] with
//! its body already read (and capped) and returns an [`HttpResponse`]. Every failure, from a
//! malformed body to an unknown route, is rendered by [`error_response`].

pub mod auth;
pub mod commandable;
pub mod endpoint;
pub mod heartbeat;
pub mod prometheus;
pub mod status;
pub mod swagger;

use super::commands::{CommandOutput, CommandResult};
use super::errors::ApplicationError;
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::future::Future;
use std::sync::LazyLock;
use tracing::Instrument;
use warp::http::header::{AsHeaderName, CACHE_CONTROL, CONTENT_TYPE, EXPIRES, PRAGMA};
use warp::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

pub use super::route::join_route;
pub use endpoint::HttpEndpoint;

/// A request as handlers see it: routed, body read and capped, correlation id extracted.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// The HTTP method.
    pub method: Method,
    /// The request path (without the query).
    pub path: String,
    /// Values of `{name}` segments of the matched route.
    pub params: HashMap<String, String>,
    /// Decoded query pairs in order.
    pub query: Vec<(String, String)>,
    /// The request headers.
    pub headers: HeaderMap,
    /// The whole body (at most `request_max_size` bytes).
    pub body: Bytes,
    /// The correlation id: query `correlation_id`/`trace_id`, else the same-named header, else
    /// `X-Request-Id`, else the trace-id of a W3C `traceparent` (both checked; echoed in the
    /// response's `X-Request-Id`).
    pub correlation_id: Option<String>,
}

impl HttpRequest {
    /// The first query value named `name`.
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A header value as text.
    pub fn header(&self, name: impl AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A response built by a handler.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: StatusCode,
    /// Extra headers (the endpoint adds no-cache and CORS headers itself).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl HttpResponse {
    /// A response with a status and no body.
    pub fn empty(status: StatusCode) -> Self {
        Self { status, headers: response_headers(None), body: Bytes::new() }
    }

    /// A 200 JSON response.
    pub fn json(value: &serde_json::Value) -> Self {
        Self::json_with_status(StatusCode::OK, value)
    }

    /// A JSON response with a status.
    pub fn json_with_status(status: StatusCode, value: &serde_json::Value) -> Self {
        Self::json_text(status, Bytes::from(value.to_string()))
    }

    /// A response with a content type and body.
    pub fn with_body(status: StatusCode, content_type: &'static str, body: Bytes) -> Self {
        Self::with_content_type(status, HeaderValue::from_static(content_type), body)
    }

    /// A response whose body is JSON text already encoded.
    pub fn json_text(status: StatusCode, body: Bytes) -> Self {
        Self::with_content_type(status, JSON_CONTENT_TYPE, body)
    }

    fn with_content_type(status: StatusCode, content_type: HeaderValue, body: Bytes) -> Self {
        Self { status, headers: response_headers(Some(content_type)), body }
    }

    /// Pip's result mapping: `None` → 204 with an empty body, `Some(json)` → 200 JSON.
    pub fn from_result(result: Result<CommandOutput, ApplicationError>, correlation_id: Option<&str>) -> Self {
        match result {
            // Trimmed to its length first: `Bytes` takes a buffer whose length is its capacity
            // as it is, where a longer one costs an allocation of its own (the writers size the
            // buffer a little over the text, so the allocator trims it in place).
            Ok(Some(text)) => Self::json_text(StatusCode::OK, Bytes::from(text.into_bytes().into_boxed_slice())),
            Ok(None) => Self::empty(StatusCode::NO_CONTENT),
            Err(e) => error_response(&e.with_correlation_id(correlation_id)),
        }
    }

    /// Adds a header (ignored if the value is not a valid header value).
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }
}

/// `application/json`, checked once at compile time.
const JSON_CONTENT_TYPE: HeaderValue = HeaderValue::from_static("application/json");

/// The headers the endpoint gives every response (no caching anywhere on the way), in this order.
pub(crate) static NO_CACHE_HEADERS: [(HeaderName, HeaderValue); 3] = [
    (CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, must-revalidate")),
    (PRAGMA, HeaderValue::from_static("no-cache")),
    (EXPIRES, HeaderValue::from_static("0")),
];

/// Whether a response's headers begin with [`NO_CACHE_HEADERS`], each with that one value (as
/// every map [`HttpResponse`]'s constructors build does, unless a handler changed them): the
/// endpoint then has nothing to insert.
pub(crate) fn has_no_cache_headers(headers: &HeaderMap) -> bool {
    let mut values = headers.iter();
    NO_CACHE_HEADERS.iter().all(|(name, value)| values.next() == Some((name, value)))
        && values.next().is_none_or(|(name, _)| name != EXPIRES)
}

/// A response's header map: a copy of a map built once with [`NO_CACHE_HEADERS`] (and the JSON
/// content type, which most responses have) and room for the endpoint's CORS headers, so no
/// header is hashed and inserted per response for these.
fn response_headers(content_type: Option<HeaderValue>) -> HeaderMap {
    fn template(content_type: Option<HeaderValue>) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(16);
        for (name, value) in NO_CACHE_HEADERS.iter().cloned() {
            headers.insert(name, value);
        }
        if let Some(content_type) = content_type {
            headers.insert(CONTENT_TYPE, content_type);
        }
        headers
    }
    static PLAIN: LazyLock<HeaderMap> = LazyLock::new(|| template(None));
    static JSON: LazyLock<HeaderMap> = LazyLock::new(|| template(Some(JSON_CONTENT_TYPE)));
    match content_type {
        None => PLAIN.clone(),
        Some(c) if c == JSON_CONTENT_TYPE => JSON.clone(),
        Some(c) => {
            let mut headers = PLAIN.clone();
            headers.insert(CONTENT_TYPE, c);
            headers
        }
    }
}

/// Renders any error as an ErrorDescription response: the one error renderer of the product.
///
/// Server errors (5xx) are logged here with their cause; the body carries only the category,
/// code and message.
pub fn error_response(error: &ApplicationError) -> HttpResponse {
    error.log_if_server_error();
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&error.to_description()).unwrap_or_default();
    let response = HttpResponse::json_text(status, Bytes::from(body));
    // An error that knows when to come back (`details.retry_after`, seconds) says so.
    match error.details.get(RETRY_AFTER_DETAIL).and_then(serde_json::Value::as_u64) {
        Some(seconds) => response.with_header("retry-after", &seconds.to_string()),
        None => response,
    }
}

/// The `details` key of an error that tells the client when to retry, in seconds; the renderer
/// turns it into a `Retry-After` header.
pub const RETRY_AFTER_DETAIL: &str = "retry_after";

/// A route handler.
#[async_trait]
pub trait RouteHandler: Send + Sync {
    /// Handles one routed request.
    async fn handle(&self, request: HttpRequest) -> HttpResponse;

    /// Starts a request without a future of this handler's own, when the handler can: its
    /// answer at once, or the command it started (whose action's future is boxed already). The
    /// endpoint then needs to box nothing for the request. `Err(request)` (the default): the
    /// endpoint awaits [`RouteHandler::handle`].
    ///
    /// # Errors
    /// The request given back, when the handler has no such start.
    fn start(&self, request: HttpRequest) -> Result<Started, HttpRequest> {
        Err(request)
    }
}

/// What [`RouteHandler::start`] made of a request.
#[derive(Debug)]
pub enum Started {
    /// The answer.
    Ready(HttpResponse),
    /// A command's result to come, answered by Pip's result mapping.
    Command(CommandCall),
}

/// A command started by a handler: its action's future, polled in the handler's span (entered
/// while it runs, while it is dropped and while its answer is made), and the correlation id its
/// answer carries.
pub struct CommandCall {
    result: tracing::instrument::Instrumented<CommandResult>,
    correlation_id: Option<String>,
}

impl std::fmt::Debug for CommandCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandCall").field("correlation_id", &self.correlation_id).finish()
    }
}

impl CommandCall {
    /// A started command, answered in `span`.
    pub fn new(result: CommandResult, correlation_id: Option<String>, span: tracing::Span) -> Self {
        Self { result: result.instrument(span), correlation_id }
    }

    /// The answer: [`HttpResponse::from_result`] of the command's result.
    pub async fn response(mut self) -> HttpResponse {
        std::future::poll_fn(|cx| self.poll_response(cx)).await
    }

    /// Polls for the answer (see [`CommandCall::response`]).
    pub fn poll_response(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<HttpResponse> {
        let result = std::task::ready!(std::pin::Pin::new(&mut self.result).poll(cx));
        let cid = self.correlation_id.as_deref();
        std::task::Poll::Ready(self.result.span().in_scope(|| HttpResponse::from_result(result, cid)))
    }
}

/// A handler that answers at once: no future is made or boxed for it.
pub struct Immediate<F>(pub F);

impl<F> std::fmt::Debug for Immediate<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Immediate")
    }
}

#[async_trait]
impl<F> RouteHandler for Immediate<F>
where
    F: Fn(HttpRequest) -> HttpResponse + Send + Sync,
{
    async fn handle(&self, request: HttpRequest) -> HttpResponse {
        (self.0)(request)
    }

    fn start(&self, request: HttpRequest) -> Result<Started, HttpRequest> {
        Ok(Started::Ready((self.0)(request)))
    }
}

/// A closure's future boxed as it is (no `async` wrapper around it: the request would be moved
/// into a second future and the closure's future into it).
impl<F, Fut> RouteHandler for F
where
    F: Fn(HttpRequest) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = HttpResponse> + Send + 'static,
{
    fn handle<'a, 'b>(
        &'a self,
        request: HttpRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = HttpResponse> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(self(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_mapping() {
        assert_eq!(HttpResponse::from_result(Ok(None), None).status, StatusCode::NO_CONTENT);
        let ok = HttpResponse::from_result(crate::toolkit::commands::output(&serde_json::json!({"a": 1})), None);
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(&ok.body[..], br#"{"a":1}"#);
        let err = HttpResponse::from_result(Err(ApplicationError::conflict("X", "no")), Some("c9"));
        assert_eq!(err.status, StatusCode::CONFLICT);
        let v: serde_json::Value = serde_json::from_slice(&err.body).unwrap_or_default();
        assert_eq!(v["correlation_id"], "c9");
        assert_eq!(v["code"], "X");
    }

    #[test]
    fn responses_carry_the_no_cache_headers_unless_a_handler_changed_them() {
        let no_cache: Vec<_> = NO_CACHE_HEADERS.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        for response in [
            HttpResponse::empty(StatusCode::NO_CONTENT),
            HttpResponse::json(&serde_json::json!({"a": 1})),
            HttpResponse::with_body(StatusCode::OK, "text/plain", Bytes::from_static(b"x")),
            error_response(&ApplicationError::conflict("X", "no")).with_header("retry-after", "1"),
        ] {
            assert!(has_no_cache_headers(&response.headers));
            let first: Vec<_> = response.headers.iter().take(3).map(|(n, v)| (n.clone(), v.clone())).collect();
            assert_eq!(first, no_cache);
        }
        let json = HttpResponse::json_text(StatusCode::OK, Bytes::new());
        assert_eq!(json.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()), Some("application/json"));
        let text = HttpResponse::with_body(StatusCode::OK, "text/plain", Bytes::new());
        assert_eq!(text.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()), Some("text/plain"));
        // A handler's own value, a second value or a removed header: the endpoint inserts them.
        let mut changed = HttpResponse::empty(StatusCode::OK);
        changed.headers.insert(PRAGMA, HeaderValue::from_static("other"));
        assert!(!has_no_cache_headers(&changed.headers));
        for name in [CACHE_CONTROL, PRAGMA, EXPIRES] {
            let mut doubled = HttpResponse::empty(StatusCode::OK);
            doubled.headers.append(name.clone(), HeaderValue::from_static("1"));
            assert!(!has_no_cache_headers(&doubled.headers), "{name}");
            let mut removed = HttpResponse::empty(StatusCode::OK);
            removed.headers.remove(name.clone());
            assert!(!has_no_cache_headers(&removed.headers), "{name}");
        }
        assert!(!has_no_cache_headers(&HeaderMap::new()));
    }
}
