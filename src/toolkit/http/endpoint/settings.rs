//! The endpoint's settings: its config entry (`connection`, `credential`, `options`, `cors`).

use serde::Deserialize;

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
    /// How long a client may take to send the request head, ms (default 10 000): timed from the
    /// accept, and on a kept-alive connection from the end of its previous request (the
    /// connection's watchdog enforces it, so no timer is armed per request).
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

/// Smallest `options.max_header_size` (hyper's smallest HTTP/1 read buffer).
pub(super) const MIN_HEADER_SIZE: usize = 8 * 1024;
