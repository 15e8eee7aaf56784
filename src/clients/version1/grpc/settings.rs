//! The configuration of the gRPC clients (Pip's `GrpcClient` keys, see the module doc).

use crate::toolkit::errors::ApplicationError;
use serde::Deserialize;

/// `connection.*` of the gRPC clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GrpcClientConnection {
    /// The whole address (`http://host:8090`); overrides protocol, host and port.
    pub uri: Option<String>,
    /// `http` (plain HTTP/2).
    pub protocol: String,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Default for GrpcClientConnection {
    fn default() -> Self {
        Self { uri: None, protocol: "http".to_string(), host: "localhost".to_string(), port: 8090 }
    }
}

/// `options.*` of the gRPC clients (milliseconds).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GrpcClientOptions {
    /// Per-call deadline (default 10 000; 0 = none).
    pub timeout: u64,
    /// Connection timeout (default 10 000; 0 = none).
    pub connect_timeout: u64,
}

impl Default for GrpcClientOptions {
    fn default() -> Self {
        Self { timeout: 10_000, connect_timeout: 10_000 }
    }
}

/// `credential.*` of the gRPC clients.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct GrpcClientCredential {
    /// API key sent as `x-api-key` metadata.
    pub api_key: Option<String>,
}

impl std::fmt::Debug for GrpcClientCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcClientCredential").field("api_key", &self.api_key.as_ref().map(|_| "***")).finish()
    }
}

/// Settings of the gRPC clients (their config entry).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GrpcClientSettings {
    /// Where the service's gRPC endpoint is.
    pub connection: GrpcClientConnection,
    /// Timeouts.
    pub options: GrpcClientOptions,
    /// The API key.
    pub credential: GrpcClientCredential,
    /// The commandable service name (default `v1/sessions`).
    pub name: Option<String>,
}

impl GrpcClientSettings {
    /// Settings for an address (`http://localhost:8090`) with every other value at its default.
    pub fn for_uri(uri: &str) -> Self {
        Self {
            connection: GrpcClientConnection { uri: Some(uri.to_string()), ..GrpcClientConnection::default() },
            ..Self::default()
        }
    }

    pub(super) fn origin(&self) -> Result<String, ApplicationError> {
        let c = &self.connection;
        let text = match c.uri.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            Some(u) => u.to_string(),
            None => {
                if c.host.trim().is_empty() {
                    return Err(ApplicationError::config("NO_HOST", "Connection host is not set"));
                }
                format!("{}://{}:{}", c.protocol.trim().to_ascii_lowercase(), c.host.trim(), c.port)
            }
        };
        if !text.starts_with("http://") {
            return Err(ApplicationError::config(
                "WRONG_PROTOCOL",
                "The sessions gRPC clients connect over plain HTTP/2: use an http:// address",
            ));
        }
        Ok(text.trim_end_matches('/').to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http2_addresses_are_accepted() {
        let mut s = GrpcClientSettings::default();
        assert_eq!(s.origin().unwrap(), "http://localhost:8090");
        s.connection.protocol = "https".into();
        assert_eq!(s.origin().unwrap_err().code, "WRONG_PROTOCOL");
        assert_eq!(GrpcClientSettings::for_uri("http://h:1/").origin().unwrap(), "http://h:1");
    }
}
