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
//!
//! The module is split by concern: [`settings`] (the config entry), `routing` (one request:
//! checks, timeout, metrics), `connection` (one HTTP/2 connection and its streams) and `accept`
//! (listener, TLS, connection cap, drain).

mod accept;
mod connection;
mod routing;
pub mod settings;

use crate::toolkit::component::{Component, ComponentHealth};
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::http::auth::ApiKeyVerifier;
use crate::toolkit::net::{self, Listening};
use crate::toolkit::references::References;
use accept::serve;
use async_trait::async_trait;
use http::{Request, Response};
use parking_lot::Mutex;
use routing::{MethodMetrics, Shared};
use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;
use tower_service::Service;

pub use settings::{GrpcEndpointOptions, GrpcEndpointSettings};

/// The gRPC endpoint component.
pub struct GrpcEndpoint {
    settings: GrpcEndpointSettings,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    routes: Mutex<Option<Routes>>,
    methods: Mutex<HashSet<String>>,
    verifier: OnceLock<Arc<dyn ApiKeyVerifier>>,
    running: Mutex<Option<Listening>>,
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
        let tls = net::server_tls(&settings.connection, &settings.credential, &[b"h2"], "gRPC")?;
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
        let (listener, address) = net::bind(&s.connection, "gRPC").await?;
        let routes = self.routes.lock().clone().unwrap_or_default().prepare();
        let shared = Arc::new(Shared {
            routes,
            methods: self.methods.lock().iter().map(|m| (m.clone(), MethodMetrics::new(m))).collect(),
            unmatched: MethodMetrics::new("unmatched"),
            verifier: self.verifier.get().cloned(),
            request_timeout: Duration::from_millis(s.options.request_timeout.max(1)),
        });
        let (options, tls) = (s.options.clone(), self.tls.clone());
        let running = Listening::start(address, "gRPC", &s.connection.protocol, |cancel| {
            serve(listener, shared, options, tls, cancel)
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
    fn rejects_bad_limits_and_tls_errors() {
        let mut s = GrpcEndpointSettings::default();
        s.connection.protocol = "https".into();
        assert_eq!(GrpcEndpoint::new(s.clone()).err().map(|e| e.code).as_deref(), Some("NO_SSL_KEY_FILE"));
        s.connection.protocol = "http".into();
        s.options.max_concurrent_streams = 0;
        assert_eq!(GrpcEndpoint::new(s).err().map(|e| e.code).as_deref(), Some("BAD_CONFIG"));
        let d = GrpcEndpoint::new(GrpcEndpointSettings::default()).map(|e| e.max_message_size()).ok();
        assert_eq!(d, Some(1024 * 1024));
    }
}
