//! The shared HTTP endpoint (`pip-services:endpoint:http:*:1.0`).
//!
//! Owns the listener, the route table and every connection task. Each request enters as hyper
//! parsed it (method, URI, headers and the body stream are taken apart, not copied); the endpoint then
//! answers CORS preflights, routes (404 for an unknown path, 405 with `Allow` for a wrong
//! method), runs the interceptors on the request head (a refused request's body is never read),
//! reads the body under `options.request_max_size` (413 beyond it, checked on `Content-Length`
//! first and while streaming), extracts the correlation id and calls the handler. Every response
//! gets the no-cache and CORS headers, and the correlation id in `X-Request-Id`.
//!
//! Connections are served by hyper-util directly, because warp 0.4 has no TLS and no public
//! acceptor trait: this keeps TLS (`connection.protocol: https`), header-read timeouts against
//! slow clients, a connection cap and graceful shutdown in one place. Requests skip warp's
//! filter chain too: the pipeline needs the whole request, and extracting it through filters
//! cloned the header map and cost about a microsecond per request.
//!
//! The module is split by concern: [`settings`] (the config entry), `router` (route table and
//! matching), `pipeline` (one request: limits, interceptors, metrics, correlation) and `accept`
//! (listener, TLS, connection watchdog, HTTP/1 + HTTP/2 serving).

mod accept;
mod pipeline;
mod router;
pub mod settings;

use super::{HttpRequest, RouteHandler};
use crate::toolkit::component::{Component, ComponentHealth};
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::net::{self, Listening};
use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use router::{split_path, Route, RouteMetrics, RouteTable};
use std::net::SocketAddr;
use std::sync::Arc;
use warp::http::{HeaderValue, Method};

pub use pipeline::{percent_decode, RequestInterceptor};
use settings::MIN_HEADER_SIZE;
pub use settings::{ConnectionSettings, CorsSettings, CredentialSettings, EndpointOptions, EndpointSettings};

struct Inner {
    settings: EndpointSettings,
    /// Replaced whole on registration, so a request takes one `Arc` clone, not one per route.
    routes: RwLock<Arc<RouteTable>>,
    interceptors: RwLock<Arc<Vec<Arc<dyn RequestInterceptor>>>>,
    allow_headers: HeaderValue,
    expose_headers: HeaderValue,
}

/// The HTTP endpoint component.
pub struct HttpEndpoint {
    inner: Arc<Inner>,
    running: Mutex<Option<Listening>>,
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
        let tls = net::server_tls(&settings.connection, &settings.credential, &[b"h2", b"http/1.1"], "HTTP")?;
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
        let allow_headers = header(format!(
            "Content-Type, Authorization, x-api-key, x-auth-key, If-Match, If-None-Match, X-Request-Id, traceparent, {list}"
        ))?;
        let expose_headers = header(format!("ETag, Location, X-Request-Id, {list}"))?;
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

#[async_trait]
impl Component for HttpEndpoint {
    async fn open(&self, _correlation_id: Option<&str>) -> Result<(), ApplicationError> {
        if self.running.lock().is_some() {
            return Ok(());
        }
        let s = &self.inner.settings;
        let (listener, address) = net::bind(&s.connection, "HTTP").await?;
        let authenticated = self.inner.interceptors.read().iter().any(|i| i.authenticates());
        if !authenticated && !address.ip().is_loopback() {
            tracing::warn!(
                address = %address,
                "Listening on a non-loopback address without API keys: anyone who can reach it can read and close sessions. Configure pip-services:authenticator:api-key or bind 127.0.0.1."
            );
        }
        let (inner, tls) = (self.inner.clone(), self.tls.clone());
        let running = Listening::start(address, "HTTP", &s.connection.protocol, |cancel| {
            accept::serve(listener, inner, tls, cancel)
        });
        *self.running.lock() = Some(running);
        Ok(())
    }

    async fn close(&self, _correlation_id: Option<&str>) -> Result<(), ApplicationError> {
        Listening::stop(&self.running).await;
        Ok(())
    }

    async fn health(&self) -> ComponentHealth {
        Listening::health(self.local_addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_header_limits_and_tls_errors() {
        let mut s = EndpointSettings::default();
        s.connection.protocol = "https".into();
        assert_eq!(HttpEndpoint::new(s).err().map(|e| e.code).as_deref(), Some("NO_SSL_KEY_FILE"));
        let mut s = EndpointSettings::default();
        s.options.max_header_size = 100;
        assert_eq!(HttpEndpoint::new(s).err().map(|e| e.code).as_deref(), Some("BAD_CONFIG"));
    }
}
