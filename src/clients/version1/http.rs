//! `SessionsHttpClientV1` (`service-sessions:client:commandable-http:*:1.0`): the sessions
//! client over Pip's commandable HTTP protocol (`POST <base_route>/<command>`, parameters as a
//! JSON object, 204 → `None`, failures as an ErrorDescription rebuilt by category).
//!
//! It runs on one pooled `reqwest` client (keep-alive connections, a connect timeout and a
//! per-request timeout; https through rustls). Configuration follows Pip's `RestClient`:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `connection.uri` | — | the service's base URL; else `protocol://host:port` |
//! | `connection.protocol` / `host` / `port` | `http` / `localhost` / `8080` | |
//! | `base_route` | `v1/sessions` | route prefix of the commands |
//! | `options.timeout` | 10 000 ms | whole-request timeout (0 = none) |
//! | `options.connect_timeout` | 10 000 ms | connection timeout (0 = none) |
//! | `options.retries` | 3 | extra attempts of a retryable call |
//! | `options.retry_delay` / `retry_max_delay` | 100 / 3 000 ms | first backoff, doubled up to the cap |
//! | `options.keep_alive_timeout` | 5 000 ms | idle pooled connections are dropped after this (0 = none kept): keep it below the service's `header_read_timeout`, after which the service closes an idle connection |
//! | `options.correlation_id_place` (or `options.correlation_id`) | `query` | `query`, `headers` or `both` |
//! | `credential.api_key` | — | sent as `x-api-key`; never shown in `Debug` or logs |
//!
//! Retries (with exponential backoff) happen only when the service was unavailable: the
//! connection failed or timed out, the answer was 502/503/504, or the category was
//! `NoResponse`. Idempotent calls are retried on all of these: `get_sessions`,
//! `get_session_by_id`, `validate_session`, `close_session` (closing twice changes nothing),
//! `close_expired_sessions`, `delete_session_by_id` (a retry of a delete that did land reports
//! `None`), `close_user_sessions` and `purge_sessions` (their counts are those of the last
//! attempt). The other calls (`open_session`, `store_session_data`, `update_session_user`,
//! `touch_session`, `rotate_session_id`) could apply twice or report a conflict for their own
//! write, so they are retried only when the connection could not be made (nothing was sent).

use super::client::{ClientResult, ErrorInfo, SessionsClientError};
use super::commandable::commandable_client;
use crate::data::version1::BASE_ROUTE;
use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::errors::{ApplicationError, ErrorCategory, ErrorDescription};
use crate::toolkit::route::join_route;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// Code of a connection that could not be made (nothing was sent).
pub const CANNOT_CONNECT: &str = "CANNOT_CONNECT";
/// Code of a call that got no answer in time.
pub const TIMEOUT: &str = "TIMEOUT";
/// Code of a call whose connection broke before the answer was read.
pub const NO_RESPONSE: &str = "NO_RESPONSE";
/// Code of an answer that could not be decoded.
pub const BAD_RESPONSE: &str = "BAD_RESPONSE";

/// Where the correlation id goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CorrelationIdPlace {
    /// `?correlation_id=` in the query string (Pip's default).
    #[default]
    Query,
    /// A `correlation_id` header.
    Headers,
    /// Both.
    Both,
}

/// `connection.*` of the HTTP client.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpClientConnection {
    /// The whole base URL (`http://host:8080`); overrides protocol, host and port.
    pub uri: Option<String>,
    /// `http` or `https`.
    pub protocol: String,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Default for HttpClientConnection {
    fn default() -> Self {
        Self { uri: None, protocol: "http".to_string(), host: "localhost".to_string(), port: 8080 }
    }
}

/// `options.*` of the HTTP client. Durations are in milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpClientOptions {
    /// Whole-request timeout (default 10 000; 0 = none).
    pub timeout: u64,
    /// Connection timeout (default 10 000; 0 = none).
    pub connect_timeout: u64,
    /// Extra attempts of a retryable call (default 3).
    pub retries: u32,
    /// First backoff before a retry (default 100), doubled after each retry.
    pub retry_delay: u64,
    /// Largest backoff (default 3 000).
    pub retry_max_delay: u64,
    /// Where the correlation id goes (default `query`).
    pub correlation_id_place: CorrelationIdPlace,
    /// Pip's other name for `correlation_id_place`; wins when both are set.
    pub correlation_id: Option<CorrelationIdPlace>,
    /// How long an idle pooled connection is kept for reuse, ms (default 5 000; 0 = none is
    /// kept). The service closes a keep-alive connection that stays idle for its
    /// `header_read_timeout` (10 s by default); a client that keeps connections longer can send a
    /// request just as the service closes one, and that request fails with "connection closed".
    pub keep_alive_timeout: u64,
}

impl Default for HttpClientOptions {
    fn default() -> Self {
        Self {
            timeout: 10_000,
            connect_timeout: 10_000,
            retries: 3,
            retry_delay: 100,
            retry_max_delay: 3_000,
            correlation_id_place: CorrelationIdPlace::Query,
            correlation_id: None,
            keep_alive_timeout: 5_000,
        }
    }
}

/// `credential.*` of the HTTP client.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct HttpClientCredential {
    /// API key sent as `x-api-key`.
    pub api_key: Option<String>,
}

impl std::fmt::Debug for HttpClientCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClientCredential").field("api_key", &self.api_key.as_ref().map(|_| "***")).finish()
    }
}

/// Settings of the HTTP client (its config entry).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpClientSettings {
    /// Where the service is.
    pub connection: HttpClientConnection,
    /// Route prefix of the commands (default `v1/sessions`).
    pub base_route: String,
    /// Timeouts, retries, correlation id placement.
    pub options: HttpClientOptions,
    /// The API key.
    pub credential: HttpClientCredential,
}

impl Default for HttpClientSettings {
    fn default() -> Self {
        Self {
            connection: HttpClientConnection::default(),
            base_route: BASE_ROUTE.to_string(),
            options: HttpClientOptions::default(),
            credential: HttpClientCredential::default(),
        }
    }
}

impl HttpClientSettings {
    /// Settings for a base URL with every other value at its default.
    pub fn for_uri(uri: &str) -> Self {
        Self {
            connection: HttpClientConnection { uri: Some(uri.to_string()), ..HttpClientConnection::default() },
            ..Self::default()
        }
    }

    fn origin(&self) -> Result<String, ApplicationError> {
        let c = &self.connection;
        let text = match c.uri.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            Some(u) => u.to_string(),
            None => {
                let protocol = c.protocol.trim().to_ascii_lowercase();
                if protocol != "http" && protocol != "https" {
                    return Err(ApplicationError::config(
                        "WRONG_PROTOCOL",
                        format!("Protocol \"{protocol}\" is not supported by the sessions client: use http or https"),
                    ));
                }
                if c.host.trim().is_empty() {
                    return Err(ApplicationError::config("NO_HOST", "Connection host is not set"));
                }
                format!("{protocol}://{}:{}", c.host.trim(), c.port)
            }
        };
        // The URI may embed credentials, so it never appears in the error.
        let url = reqwest::Url::parse(&text)
            .map_err(|e| ApplicationError::config("BAD_URI", "connection.uri is not a valid URL").with_cause(e))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ApplicationError::config("BAD_URI", "connection.uri must be an http or https URL with a host"));
        }
        Ok(text.trim_end_matches('/').to_string())
    }
}

/// The sessions client over commandable HTTP.
///
/// ```no_run
/// use service_sessions::clients::version1::{SessionsClientV1, SessionsHttpClientV1};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = SessionsHttpClientV1::from_uri("http://localhost:8080")?;
/// match client.get_session_by_id(Some("req-1"), "0123456789abcdef0123456789abcdef").await? {
///     Some(s) => println!("{} is {}", s.id, if s.active { "open" } else { "closed" }),
///     None => println!("no such session"),
/// }
/// # Ok(())
/// # }
/// ```
pub struct SessionsHttpClientV1 {
    http: reqwest::Client,
    /// `<origin>/<base_route>`, without a trailing slash.
    base_url: String,
    options: HttpClientOptions,
    place: CorrelationIdPlace,
}

impl std::fmt::Debug for SessionsHttpClientV1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The base URL may embed user info and the default headers hold the API key: neither
        // is shown.
        f.debug_struct("SessionsHttpClientV1").field("options", &self.options).finish_non_exhaustive()
    }
}

impl SessionsHttpClientV1 {
    /// Builds the client from its config entry.
    ///
    /// # Errors
    /// `BAD_CONFIG`, `WRONG_PROTOCOL`, `NO_HOST`, `BAD_URI` or `BAD_API_KEY` for invalid
    /// settings; `CANNOT_CREATE` if the HTTP stack cannot start.
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        Self::new(config.section()?)
    }

    /// Builds the client for a base URL (`http://localhost:8080`) with default options.
    ///
    /// # Errors
    /// As [`SessionsHttpClientV1::from_config`].
    pub fn from_uri(uri: &str) -> Result<Self, ApplicationError> {
        Self::new(HttpClientSettings::for_uri(uri))
    }

    /// Builds the client from settings.
    ///
    /// # Errors
    /// As [`SessionsHttpClientV1::from_config`].
    pub fn new(settings: HttpClientSettings) -> Result<Self, ApplicationError> {
        let origin = settings.origin()?;
        let base_url = format!("{origin}{}", join_route(&settings.base_route, ""));
        let base_url = base_url.trim_end_matches('/').to_string();
        let mut headers = HeaderMap::new();
        if let Some(key) = settings.credential.api_key.as_deref().filter(|k| !k.is_empty()) {
            let mut value = HeaderValue::from_str(key).map_err(|_| {
                ApplicationError::config("BAD_API_KEY", "credential.api_key is not a valid header value")
            })?;
            value.set_sensitive(true);
            headers.insert("x-api-key", value);
        }
        let o = &settings.options;
        let mut builder = reqwest::Client::builder().default_headers(headers).tcp_nodelay(true);
        if o.timeout > 0 {
            builder = builder.timeout(Duration::from_millis(o.timeout));
        }
        if o.connect_timeout > 0 {
            builder = builder.connect_timeout(Duration::from_millis(o.connect_timeout));
        }
        builder = match o.keep_alive_timeout {
            0 => builder.pool_max_idle_per_host(0),
            ms => builder.pool_idle_timeout(Duration::from_millis(ms)),
        };
        let http = builder
            .build()
            .map_err(|e| ApplicationError::internal("CANNOT_CREATE", "Cannot create the HTTP client").with_cause(e))?;
        let place = o.correlation_id.unwrap_or(o.correlation_id_place);
        Ok(Self { http, base_url, options: settings.options, place })
    }

    /// The URL of the commands' base route, e.g. `http://localhost:8080/v1/sessions`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Calls a command: POSTs `body` and decodes the answer (`None` for 204), retrying as the
    /// module doc says.
    async fn call<T: DeserializeOwned>(
        &self,
        cid: Option<&str>,
        command: &str,
        body: &Value,
        idempotent: bool,
    ) -> ClientResult<Option<T>> {
        let url = format!("{}/{command}", self.base_url);
        let body = Bytes::from(serde_json::to_vec(body).map_err(|e| {
            SessionsClientError::Internal(ErrorInfo {
                cause: Some(e.to_string()),
                ..ErrorInfo::new(ErrorCategory::Internal, "SERIALIZATION_FAILED", "Cannot encode the request")
            })
        })?);
        let mut delay = Duration::from_millis(self.options.retry_delay);
        let max_delay = Duration::from_millis(self.options.retry_max_delay);
        let mut attempt = 0u32;
        loop {
            match self.send(cid, &url, body.clone()).await {
                Err(e) if attempt < self.options.retries && retryable(&e, idempotent) => {
                    attempt += 1;
                    tracing::debug!(
                        command,
                        attempt,
                        code = e.code(),
                        correlation_id = cid.unwrap_or(""),
                        "Sessions service unavailable; retrying."
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(max_delay);
                }
                other => return other.map_err(|e| e.with_correlation_id(cid)),
            }
        }
    }

    /// One POST and its decoded answer.
    async fn send<T: DeserializeOwned>(&self, cid: Option<&str>, url: &str, body: Bytes) -> ClientResult<Option<T>> {
        let mut request = self.http.post(url).header(CONTENT_TYPE, "application/json").body(body);
        if let Some(cid) = cid {
            if matches!(self.place, CorrelationIdPlace::Query | CorrelationIdPlace::Both) {
                request = request.query(&[("correlation_id", cid)]);
            }
            if matches!(self.place, CorrelationIdPlace::Headers | CorrelationIdPlace::Both) {
                request = request.header("correlation_id", cid);
            }
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(transport_error)?;
        if status == 204 || ((200..300).contains(&status) && bytes.is_empty()) {
            return Ok(None);
        }
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map(Some).map_err(|e| bad_response(status, &e));
        }
        Err(match serde_json::from_slice::<ErrorDescription>(&bytes) {
            Ok(d) => {
                let mut e = ApplicationError::from_description(&d);
                e.status = status;
                SessionsClientError::from(e)
            }
            Err(_) => SessionsClientError::from_status(
                status,
                ErrorInfo {
                    category: category_of_status(status),
                    status: Some(status),
                    ..ErrorInfo::new(
                        category_of_status(status),
                        format!("HTTP_{status}"),
                        format!("The sessions service answered HTTP {status}"),
                    )
                },
            ),
        })
    }

    async fn required<T: DeserializeOwned>(
        &self,
        cid: Option<&str>,
        command: &str,
        body: &Value,
        idempotent: bool,
    ) -> ClientResult<T> {
        self.call(cid, command, body, idempotent).await?.ok_or_else(|| {
            SessionsClientError::Internal(ErrorInfo {
                correlation_id: cid.map(str::to_string),
                status: Some(204),
                ..ErrorInfo::new(ErrorCategory::Internal, BAD_RESPONSE, format!("{command} answered with no value"))
            })
        })
    }
}

/// Whether a failed attempt may be repeated.
fn retryable(e: &SessionsClientError, idempotent: bool) -> bool {
    e.is_unavailable() && (idempotent || e.code() == CANNOT_CONNECT)
}

fn category_of_status(status: u16) -> ErrorCategory {
    match status {
        401 | 403 => ErrorCategory::Unauthorized,
        404 => ErrorCategory::NotFound,
        409 => ErrorCategory::Conflict,
        502..=504 => ErrorCategory::NoResponse,
        400..=499 => ErrorCategory::BadRequest,
        _ => ErrorCategory::Unknown,
    }
}

fn transport_error(e: reqwest::Error) -> SessionsClientError {
    let (code, message) = if e.is_connect() {
        (CANNOT_CONNECT, "Cannot connect to the sessions service")
    } else if e.is_timeout() {
        (TIMEOUT, "The sessions service did not answer in time")
    } else {
        (NO_RESPONSE, "The connection to the sessions service failed")
    };
    let mut info = ErrorInfo::new(ErrorCategory::NoResponse, code, message);
    info.cause = Some(e.without_url().to_string());
    SessionsClientError::Unavailable(info)
}

fn bad_response(status: u16, e: &serde_json::Error) -> SessionsClientError {
    let mut info = ErrorInfo::new(ErrorCategory::Internal, BAD_RESPONSE, "The sessions service answer is not valid");
    info.status = Some(status);
    info.cause = Some(e.to_string());
    SessionsClientError::Internal(info)
}

commandable_client!(SessionsHttpClientV1, call, required);

/// The client holds no task or connection of its own beyond the pool, which is released when
/// the client is dropped; the lifecycle is the default no-op.
impl Component for SessionsHttpClientV1 {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolkit::descriptor::Descriptor;
    use serde_json::json;

    fn entry(v: Value) -> ComponentConfig {
        ComponentConfig::new(Descriptor::new("service-sessions", "client", "commandable-http", "default", "1.0"), v)
    }

    #[test]
    fn reads_pip_style_settings() {
        let c = SessionsHttpClientV1::from_config(&entry(json!({
            "connection": {"protocol": "http", "host": "sessions.local", "port": "9000"},
            "base_route": "/api/v1/sessions/",
            "options": {"timeout": "500", "retries": "0", "correlation_id": "headers", "keep_alive_timeout": "2000"},
            "credential": {"api_key": "k-123"}
        })))
        .unwrap();
        assert_eq!(c.base_url(), "http://sessions.local:9000/api/v1/sessions");
        assert_eq!(c.place, CorrelationIdPlace::Headers);
        assert_eq!((c.options.timeout, c.options.retries, c.options.connect_timeout), (500, 0, 10_000));
        assert_eq!(c.options.keep_alive_timeout, 2_000);
        let debug = format!("{c:?}");
        assert!(!debug.contains("k-123"), "{debug}");
        let settings: HttpClientSettings = entry(json!({"credential": {"api_key": "k-123"}})).section().unwrap();
        assert!(!format!("{settings:?}").contains("k-123"));

        let u = SessionsHttpClientV1::from_uri("https://example.org:8443/").unwrap();
        assert_eq!(u.base_url(), "https://example.org:8443/v1/sessions");
        assert_eq!(u.place, CorrelationIdPlace::Query);
        let d = SessionsHttpClientV1::from_config(&entry(json!({}))).unwrap();
        assert_eq!(d.base_url(), "http://localhost:8080/v1/sessions");
        assert_eq!(d.options.keep_alive_timeout, 5_000, "below the service's 10 s idle close");
    }

    #[test]
    fn rejects_unusable_settings() {
        let code = |v: Value| SessionsHttpClientV1::from_config(&entry(v)).err().map(|e| e.code);
        assert_eq!(code(json!({"connection": {"protocol": "ftp"}})).as_deref(), Some("WRONG_PROTOCOL"));
        assert_eq!(code(json!({"connection": {"uri": "ftp://h"}})).as_deref(), Some("BAD_URI"));
        assert_eq!(code(json!({"connection": {"uri": "not a url"}})).as_deref(), Some("BAD_URI"));
        assert_eq!(code(json!({"options": {"correlation_id_place": "body"}})).as_deref(), Some("BAD_CONFIG"));
        assert_eq!(code(json!({"credential": {"api_key": "a\nb"}})).as_deref(), Some("BAD_API_KEY"));
        let secret =
            SessionsHttpClientV1::from_config(&entry(json!({"connection": {"uri": "http://u:pw@:1"}}))).err().unwrap();
        assert!(!secret.message.contains("pw"));
    }

    #[test]
    fn only_unavailable_errors_are_retried() {
        let e = |code: &str| SessionsClientError::Unavailable(ErrorInfo::new(ErrorCategory::NoResponse, code, "m"));
        assert!(retryable(&e(TIMEOUT), true));
        assert!(!retryable(&e(TIMEOUT), false));
        assert!(retryable(&e(CANNOT_CONNECT), false));
        let internal = SessionsClientError::Internal(ErrorInfo::new(ErrorCategory::Internal, "X", "m"));
        assert!(!retryable(&internal, true));
    }
}
