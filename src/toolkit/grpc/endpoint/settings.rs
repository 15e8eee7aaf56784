//! The gRPC endpoint's config entry.

use crate::toolkit::http::endpoint::{ConnectionSettings, CredentialSettings};
use serde::Deserialize;

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
