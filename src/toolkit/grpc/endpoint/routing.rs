//! Routing one request to its service: the gRPC checks (content type, method, API key), the
//! request timeout, and the per-method metrics and log line.

use super::connection::{Activity, StreamGuard};
use crate::toolkit::http::auth::{ApiKeyVerifier, API_KEY_HEADERS};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::body::Body;
use tonic::service::Routes;
use tower_service::Service;
use tracing::Instrument;

/// The metric handles of one method, resolved once instead of hashing labels per call.
pub(super) struct MethodMetrics {
    label: String,
    duration: Option<prometheus::Histogram>,
    requests: parking_lot::RwLock<Vec<(String, prometheus::IntCounter)>>,
}

impl MethodMetrics {
    pub(super) fn new(label: &str) -> Self {
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
pub(super) struct Shared {
    pub(super) routes: Routes,
    /// Registered method paths and their metrics; anything else is counted as `unmatched`.
    pub(super) methods: HashMap<String, MethodMetrics>,
    pub(super) unmatched: MethodMetrics,
    pub(super) verifier: Option<Arc<dyn ApiKeyVerifier>>,
    pub(super) request_timeout: Duration,
}

/// The per-connection request handler.
#[derive(Clone)]
pub(super) struct Dispatch {
    pub(super) shared: Arc<Shared>,
    pub(super) activity: Arc<Activity>,
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
