//! The sessions client over gRPC, in the two shapes the service offers:
//!
//! - [`SessionsCommandableGrpcClientV1`] (`service-sessions:client:commandable-grpc:*:1.0`): every
//!   operation over Pip's `commandable.proto` (`invoke` of `v1/sessions.<command>` with JSON
//!   arguments) — the same commands, results and errors as commandable HTTP, extensions included.
//! - [`SessionsGrpcClientV1`] (`service-sessions:client:grpc:*:1.0`): the original eight
//!   operations over the typed `sessions_v1.proto`. That proto has no `version`, `expire_time` or
//!   `ttl`: sessions it returns carry `version` 0 and neither of the others, list items carry no
//!   `user`/`data`, and a page whose total was not asked for has `total` `None`. What the proto
//!   cannot express — the extension operations, `ttl` on open, any write with a `version` and the
//!   concurrency helpers (`update_data`, `update_user`, `modify_data`), which read versions —
//!   goes over commandable gRPC on the same connection (both services share the service's gRPC
//!   endpoint).
//!
//! Configuration (Pip's `GrpcClient` keys):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `connection.uri` | — | `http://host:port`; else `protocol://host:port` |
//! | `connection.protocol` / `host` / `port` | `http` / `localhost` / `8090` | plain HTTP/2 only |
//! | `options.timeout` | 10 000 ms | per-call deadline (0 = none) |
//! | `options.connect_timeout` | 10 000 ms | connection timeout (0 = none) |
//! | `credential.api_key` | — | sent as `x-api-key` metadata; never shown in `Debug` |
//!
//! Failures map to [`SessionsClientError`] like the HTTP client's: an `ErrorDescription` in the
//! reply by its category (its string `details` are read back as JSON where they parse, so
//! `details.version` of a version conflict is a number again), a gRPC status by its code
//! (`UNAVAILABLE`, `DEADLINE_EXCEEDED` → `Unavailable`; `UNAUTHENTICATED` → `Unauthorized`;
//! `UNIMPLEMENTED` → `NotFound`; `INVALID_ARGUMENT`, `OUT_OF_RANGE`, `RESOURCE_EXHAUSTED` →
//! `BadRequest`; the rest → `Internal`). Calls are not retried.

use super::client::{ClientResult, ConcurrencyControl, ErrorInfo, SessionsClientError, SessionsClientV1};
use super::http::{by_id, paging_value, BAD_RESPONSE, CANNOT_CONNECT, NO_RESPONSE, TIMEOUT};
use crate::data::version1::{OpenSessionRequest, SessionV1, SessionValidity, SessionsFilter, BASE_ROUTE};
use crate::protos::sessions_v1 as pb;
use crate::protos::sessions_v1::sessions_client::SessionsClient;
use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::errors::{ApplicationError, ErrorCategory};
use crate::toolkit::grpc::commandable_proto::commandable_client::CommandableClient;
use crate::toolkit::grpc::commandable_proto::{ErrorDescription as CmdError, InvokeRequest};
use crate::toolkit::time::parse_time;
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::Duration;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

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

    fn origin(&self) -> Result<String, ApplicationError> {
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

/// The channel and what every call carries.
struct Core {
    channel: Channel,
    api_key: Option<MetadataValue<tonic::metadata::Ascii>>,
    name: String,
}

impl Core {
    fn new(settings: &GrpcClientSettings) -> Result<Self, ApplicationError> {
        let origin = settings.origin()?;
        let mut endpoint = Endpoint::from_shared(origin)
            .map_err(|e| ApplicationError::config("BAD_URI", "connection.uri is not a valid address").with_cause(e))?
            .tcp_nodelay(true);
        let o = &settings.options;
        if o.timeout > 0 {
            endpoint = endpoint.timeout(Duration::from_millis(o.timeout));
        }
        if o.connect_timeout > 0 {
            endpoint = endpoint.connect_timeout(Duration::from_millis(o.connect_timeout));
        }
        let api_key = match settings.credential.api_key.as_deref().filter(|k| !k.is_empty()) {
            Some(k) => Some(
                MetadataValue::try_from(k)
                    .map_err(|_| ApplicationError::config("BAD_API_KEY", "credential.api_key is not valid metadata"))?,
            ),
            None => None,
        };
        let name = settings.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| BASE_ROUTE.to_string());
        Ok(Self { channel: endpoint.connect_lazy(), api_key, name })
    }

    fn request<T>(&self, message: T, cid: Option<&str>) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        if let Some(k) = &self.api_key {
            r.metadata_mut().insert("x-api-key", k.clone());
        }
        if let Some(v) = cid.and_then(|c| MetadataValue::try_from(c).ok()) {
            r.metadata_mut().insert("correlation_id", v);
        }
        r
    }

    /// `invoke` of a command: its JSON result (`None` for no value).
    async fn invoke<T: DeserializeOwned>(
        &self,
        cid: Option<&str>,
        command: &str,
        args: &Value,
    ) -> ClientResult<Option<T>> {
        let message = InvokeRequest {
            method: format!("{}.{command}", self.name),
            correlation_id: cid.unwrap_or_default().to_string(),
            args_empty: false,
            args_json: args.to_string(),
        };
        let mut client = CommandableClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX);
        let reply = client.invoke(self.request(message, cid)).await.map_err(status_error)?.into_inner();
        if let Some(e) = reply.error {
            return Err(commandable_error(e).with_correlation_id(cid));
        }
        if reply.result_empty || reply.result_json.is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&reply.result_json).map(Some).map_err(|e| bad_response(&e.to_string()))
    }

    async fn invoke_required<T: DeserializeOwned>(
        &self,
        cid: Option<&str>,
        command: &str,
        args: &Value,
    ) -> ClientResult<T> {
        self.invoke(cid, command, args).await?.ok_or_else(|| bad_response(&format!("{command} answered with no value")))
    }
}

fn bad_response(cause: &str) -> SessionsClientError {
    let mut info = ErrorInfo::new(ErrorCategory::Internal, BAD_RESPONSE, "The sessions service answer is not valid");
    info.cause = Some(cause.to_string());
    SessionsClientError::Internal(info)
}

/// A gRPC status (no reply) as a client error.
fn status_error(s: tonic::Status) -> SessionsClientError {
    use tonic::Code;
    let (category, code) = match s.code() {
        Code::Unavailable => {
            let transport = s.message().contains("connect") || s.message().contains("transport");
            (ErrorCategory::NoResponse, if transport { CANNOT_CONNECT } else { NO_RESPONSE })
        }
        Code::DeadlineExceeded | Code::Cancelled => (ErrorCategory::NoResponse, TIMEOUT),
        Code::Unauthenticated | Code::PermissionDenied => (ErrorCategory::Unauthorized, "UNAUTHORIZED"),
        Code::Unimplemented => (ErrorCategory::NotFound, "METHOD_NOT_FOUND"),
        Code::InvalidArgument | Code::OutOfRange | Code::ResourceExhausted => {
            (ErrorCategory::BadRequest, "BAD_REQUEST")
        }
        _ => (ErrorCategory::Internal, "GRPC_FAILED"),
    };
    let mut info = ErrorInfo::new(category, code, s.message().to_string());
    info.cause = Some(format!("gRPC status {:?}", s.code()));
    info.status = None;
    match category {
        ErrorCategory::NoResponse => SessionsClientError::Unavailable(info),
        _ => SessionsClientError::from_status(category.default_status(), info),
    }
}

/// String details back to JSON where they parse (`"3"` → 3), else kept as strings.
fn json_details(details: HashMap<String, String>) -> Map<String, Value> {
    details
        .into_iter()
        .map(|(k, v)| {
            let value = serde_json::from_str::<Value>(&v).ok().filter(|j| !j.is_string()).unwrap_or(Value::String(v));
            (k, value)
        })
        .collect()
}

fn described_error(
    category: &str,
    status: Option<u16>,
    code: String,
    message: String,
    details: HashMap<String, String>,
    correlation_id: String,
    cause: String,
) -> SessionsClientError {
    let category = ErrorCategory::parse(category);
    SessionsClientError::from(ApplicationError {
        category,
        status: status.unwrap_or_else(|| category.default_status()),
        code,
        message,
        details: json_details(details),
        correlation_id: Some(correlation_id).filter(|c| !c.is_empty()),
        cause: Some(cause).filter(|c| !c.is_empty()),
    })
}

fn commandable_error(e: CmdError) -> SessionsClientError {
    let status = u16::try_from(e.status).ok().filter(|s| *s > 0);
    described_error(&e.category, status, e.code, e.message, e.details, e.correlation_id, e.cause)
}

fn typed_error(e: pb::ErrorDescription) -> SessionsClientError {
    let status = e.status.parse::<u16>().ok();
    described_error(&e.category, status, e.code, e.message, e.details, e.correlation_id, e.cause)
}

/// The sessions client over Pip's commandable gRPC.
pub struct SessionsCommandableGrpcClientV1 {
    core: Core,
}

impl std::fmt::Debug for SessionsCommandableGrpcClientV1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionsCommandableGrpcClientV1").field("name", &self.core.name).finish_non_exhaustive()
    }
}

impl SessionsCommandableGrpcClientV1 {
    /// Builds the client from its config entry. No connection is made until the first call.
    ///
    /// # Errors
    /// `BAD_CONFIG`, `WRONG_PROTOCOL`, `NO_HOST`, `BAD_URI` or `BAD_API_KEY`.
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        Self::new(&config.section()?)
    }

    /// Builds the client from settings (inside a tokio runtime).
    ///
    /// # Errors
    /// As [`SessionsCommandableGrpcClientV1::from_config`].
    pub fn new(settings: &GrpcClientSettings) -> Result<Self, ApplicationError> {
        Ok(Self { core: Core::new(settings)? })
    }
}

#[derive(Deserialize)]
struct Count {
    count: u64,
}

fn with(mut body: Value, key: &str, value: Value) -> Value {
    if let Some(m) = body.as_object_mut() {
        m.insert(key.to_string(), value);
    }
    body
}

#[async_trait]
impl SessionsClientV1 for SessionsCommandableGrpcClientV1 {
    async fn get_sessions(
        &self,
        correlation_id: Option<&str>,
        filter: &SessionsFilter,
        paging: &PagingParams,
    ) -> ClientResult<DataPage<SessionV1>> {
        let args = json!({"filter": filter.to_value(), "paging": paging_value(paging)});
        self.core.invoke_required(correlation_id, "get_sessions", &args).await
    }

    async fn get_session_by_id(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
    ) -> ClientResult<Option<SessionV1>> {
        self.core.invoke(correlation_id, "get_session_by_id", &by_id(session_id, None)).await
    }

    async fn open_session(&self, correlation_id: Option<&str>, request: OpenSessionRequest) -> ClientResult<SessionV1> {
        self.core.invoke_required(correlation_id, "open_session", &request.to_args()).await
    }

    async fn store_session_data(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        data: Value,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        self.core.invoke(correlation_id, "store_session_data", &with(by_id(session_id, version), "data", data)).await
    }

    async fn update_session_user(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        user: Value,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        self.core.invoke(correlation_id, "update_session_user", &with(by_id(session_id, version), "user", user)).await
    }

    async fn close_session(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        self.core.invoke(correlation_id, "close_session", &by_id(session_id, version)).await
    }

    async fn close_expired_sessions(&self, correlation_id: Option<&str>) -> ClientResult<()> {
        self.core.invoke::<Value>(correlation_id, "close_expired_sessions", &json!({})).await.map(|_| ())
    }

    async fn delete_session_by_id(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        self.core.invoke(correlation_id, "delete_session_by_id", &by_id(session_id, version)).await
    }

    async fn touch_session(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        self.core.invoke(correlation_id, "touch_session", &by_id(session_id, version)).await
    }

    async fn validate_session(&self, correlation_id: Option<&str>, session_id: &str) -> ClientResult<SessionValidity> {
        self.core.invoke_required(correlation_id, "validate_session", &by_id(session_id, None)).await
    }

    async fn close_user_sessions(
        &self,
        correlation_id: Option<&str>,
        user_id: &str,
        except_session_id: Option<&str>,
    ) -> ClientResult<u64> {
        let mut args = json!({"user_id": user_id});
        if let Some(except) = except_session_id {
            args = with(args, "except_session_id", Value::from(except));
        }
        let c: Count = self.core.invoke_required(correlation_id, "close_user_sessions", &args).await?;
        Ok(c.count)
    }

    async fn rotate_session_id(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        self.core.invoke(correlation_id, "rotate_session_id", &by_id(session_id, version)).await
    }

    async fn purge_sessions(&self, correlation_id: Option<&str>) -> ClientResult<u64> {
        let c: Count = self.core.invoke_required(correlation_id, "purge_sessions", &json!({})).await?;
        Ok(c.count)
    }
}

/// The client holds only a lazily connected channel, released when dropped.
impl Component for SessionsCommandableGrpcClientV1 {}

/// The sessions client over the typed `sessions_v1.proto` (see the module doc for what that
/// proto does not carry).
pub struct SessionsGrpcClientV1 {
    typed: SessionsClient<Channel>,
    commandable: SessionsCommandableGrpcClientV1,
}

impl std::fmt::Debug for SessionsGrpcClientV1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionsGrpcClientV1").finish_non_exhaustive()
    }
}

impl SessionsGrpcClientV1 {
    /// Builds the client from its config entry. No connection is made until the first call.
    ///
    /// # Errors
    /// As [`SessionsCommandableGrpcClientV1::from_config`].
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        Self::new(&config.section()?)
    }

    /// Builds the client from settings (inside a tokio runtime).
    ///
    /// # Errors
    /// As [`SessionsCommandableGrpcClientV1::from_config`].
    pub fn new(settings: &GrpcClientSettings) -> Result<Self, ApplicationError> {
        let commandable = SessionsCommandableGrpcClientV1::new(settings)?;
        let typed = SessionsClient::new(commandable.core.channel.clone()).max_decoding_message_size(usize::MAX);
        Ok(Self { typed, commandable })
    }

    fn core(&self) -> &Core {
        &self.commandable.core
    }

    async fn session_reply(
        &self,
        cid: Option<&str>,
        reply: Result<tonic::Response<pb::SessionObjectReply>, tonic::Status>,
    ) -> ClientResult<Option<SessionV1>> {
        let reply = reply.map_err(status_error)?.into_inner();
        if let Some(e) = reply.error {
            return Err(typed_error(e).with_correlation_id(cid));
        }
        reply.session.map(|s| from_proto(s, true)).transpose()
    }
}

/// A `sessions_v1.Session` as a [`SessionV1`]; `full` for single sessions (whose `""` user and
/// data are JSON `null`), not for list items (which carry neither).
fn from_proto(s: pb::Session, full: bool) -> ClientResult<SessionV1> {
    let time = |t: &str| parse_time(t).ok_or_else(|| bad_response(&format!("\"{t}\" is not a date-time")));
    let opt = |t: String| Some(t).filter(|t| !t.is_empty());
    let json = |t: &str| -> ClientResult<Option<Value>> {
        if t.is_empty() {
            return Ok(full.then_some(Value::Null));
        }
        serde_json::from_str(t).map(Some).map_err(|e| bad_response(&e.to_string()))
    };
    Ok(SessionV1 {
        open_time: time(&s.open_time)?,
        request_time: time(&s.request_time)?,
        close_time: if s.close_time.is_empty() { None } else { Some(time(&s.close_time)?) },
        user: json(&s.user)?,
        data: json(&s.data)?,
        id: s.id,
        user_id: s.user_id,
        user_name: opt(s.user_name),
        address: opt(s.address),
        client: opt(s.client),
        active: s.active,
        version: 0,
        expire_time: None,
        ttl: None,
    })
}

fn id_request(cid: Option<&str>, session_id: &str) -> pb::SessionIdRequest {
    pb::SessionIdRequest { correlation_id: cid.unwrap_or_default().to_string(), session_id: session_id.to_string() }
}

/// JSON text of a value for `sessions_v1.proto` (`null` travels as `""`).
fn json_text(v: &Value) -> String {
    if v.is_null() {
        String::new()
    } else {
        v.to_string()
    }
}

#[async_trait]
impl SessionsClientV1 for SessionsGrpcClientV1 {
    async fn get_sessions(
        &self,
        correlation_id: Option<&str>,
        filter: &SessionsFilter,
        paging: &PagingParams,
    ) -> ClientResult<DataPage<SessionV1>> {
        let filter = match filter.to_value() {
            Value::Object(m) => m.into_iter().filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string()))).collect(),
            _ => HashMap::new(),
        };
        let too_large = |name: &str| {
            SessionsClientError::from(ApplicationError::bad_request(
                "INVALID_DATA",
                format!("paging.{name} is too large"),
            ))
        };
        let take = paging.take.map(i32::try_from).transpose().map_err(|_| too_large("take"))?;
        let skip = paging.skip.map(i64::try_from).transpose().map_err(|_| too_large("skip"))?;
        let request = pb::SessionPageRequest {
            correlation_id: correlation_id.unwrap_or_default().to_string(),
            filter,
            paging: Some(pb::PagingParams { skip: skip.unwrap_or(0), take: take.unwrap_or(0), total: paging.total }),
        };
        let reply = self.typed.clone().get_sessions(self.core().request(request, correlation_id)).await;
        let reply = reply.map_err(status_error)?.into_inner();
        if let Some(e) = reply.error {
            return Err(typed_error(e).with_correlation_id(correlation_id));
        }
        let page = reply.page.unwrap_or_default();
        let data = page.data.into_iter().map(|s| from_proto(s, false)).collect::<ClientResult<Vec<_>>>()?;
        let total = u64::try_from(page.total).ok();
        Ok(DataPage { data, total: total.filter(|_| paging.total) })
    }

    async fn get_session_by_id(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
    ) -> ClientResult<Option<SessionV1>> {
        let request = self.core().request(id_request(correlation_id, session_id), correlation_id);
        let reply = self.typed.clone().get_session_by_id(request).await;
        self.session_reply(correlation_id, reply).await
    }

    async fn open_session(&self, correlation_id: Option<&str>, request: OpenSessionRequest) -> ClientResult<SessionV1> {
        if request.ttl.is_some() {
            return self.commandable.open_session(correlation_id, request).await;
        }
        let message = pb::SessionOpenRequest {
            correlation_id: correlation_id.unwrap_or_default().to_string(),
            user_id: request.user_id,
            user_name: request.user_name.unwrap_or_default(),
            address: request.address.unwrap_or_default(),
            client: request.client.unwrap_or_default(),
            user: json_text(&request.user),
            data: json_text(&request.data),
        };
        let reply = self.typed.clone().open_session(self.core().request(message, correlation_id)).await;
        self.session_reply(correlation_id, reply)
            .await?
            .ok_or_else(|| bad_response("open_session answered with no session"))
    }

    async fn store_session_data(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        data: Value,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        if version.is_some() {
            return self.commandable.store_session_data(correlation_id, session_id, data, version).await;
        }
        let message = pb::SessionStoreDataRequest {
            correlation_id: correlation_id.unwrap_or_default().to_string(),
            session_id: session_id.to_string(),
            data: json_text(&data),
        };
        let reply = self.typed.clone().store_session_data(self.core().request(message, correlation_id)).await;
        self.session_reply(correlation_id, reply).await
    }

    async fn update_session_user(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        user: Value,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        if version.is_some() {
            return self.commandable.update_session_user(correlation_id, session_id, user, version).await;
        }
        let message = pb::SessionUpdateUserRequest {
            correlation_id: correlation_id.unwrap_or_default().to_string(),
            session_id: session_id.to_string(),
            user: json_text(&user),
        };
        let reply = self.typed.clone().update_session_user(self.core().request(message, correlation_id)).await;
        self.session_reply(correlation_id, reply).await
    }

    async fn close_session(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        if version.is_some() {
            return self.commandable.close_session(correlation_id, session_id, version).await;
        }
        let request = self.core().request(id_request(correlation_id, session_id), correlation_id);
        let reply = self.typed.clone().close_session(request).await;
        self.session_reply(correlation_id, reply).await
    }

    async fn close_expired_sessions(&self, correlation_id: Option<&str>) -> ClientResult<()> {
        let message = pb::SessionEmptyRequest { correlation_id: correlation_id.unwrap_or_default().to_string() };
        let reply = self.typed.clone().close_expired_sessions(self.core().request(message, correlation_id)).await;
        match reply.map_err(status_error)?.into_inner().error {
            Some(e) => Err(typed_error(e).with_correlation_id(correlation_id)),
            None => Ok(()),
        }
    }

    async fn delete_session_by_id(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        if version.is_some() {
            return self.commandable.delete_session_by_id(correlation_id, session_id, version).await;
        }
        let request = self.core().request(id_request(correlation_id, session_id), correlation_id);
        let reply = self.typed.clone().delete_session_by_id(request).await;
        self.session_reply(correlation_id, reply).await
    }

    async fn touch_session(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        self.commandable.touch_session(correlation_id, session_id, version).await
    }

    async fn validate_session(&self, correlation_id: Option<&str>, session_id: &str) -> ClientResult<SessionValidity> {
        self.commandable.validate_session(correlation_id, session_id).await
    }

    async fn close_user_sessions(
        &self,
        correlation_id: Option<&str>,
        user_id: &str,
        except_session_id: Option<&str>,
    ) -> ClientResult<u64> {
        self.commandable.close_user_sessions(correlation_id, user_id, except_session_id).await
    }

    async fn rotate_session_id(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        self.commandable.rotate_session_id(correlation_id, session_id, version).await
    }

    async fn purge_sessions(&self, correlation_id: Option<&str>) -> ClientResult<u64> {
        self.commandable.purge_sessions(correlation_id).await
    }

    // The concurrency helpers read versions, which sessions_v1.proto does not carry.

    async fn update_data(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        data: Value,
        control: ConcurrencyControl,
    ) -> ClientResult<Option<SessionV1>> {
        self.commandable.update_data(correlation_id, session_id, data, control).await
    }

    async fn update_user(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        user: Value,
        control: ConcurrencyControl,
    ) -> ClientResult<Option<SessionV1>> {
        self.commandable.update_user(correlation_id, session_id, user, control).await
    }

    async fn modify_data(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        attempts: u32,
        modify: &(dyn for<'v> Fn(&'v Value) -> Value + Send + Sync),
    ) -> ClientResult<Option<SessionV1>> {
        self.commandable.modify_data(correlation_id, session_id, attempts, modify).await
    }
}

/// The client holds only a lazily connected channel, released when dropped.
impl Component for SessionsGrpcClientV1 {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_come_back_as_json_where_they_parse() {
        let d = json_details(HashMap::from([
            ("version".to_string(), "3".to_string()),
            ("results".to_string(), r#"[{"path":"x"}]"#.to_string()),
            ("field".to_string(), "session_id".to_string()),
        ]));
        assert_eq!(Value::Object(d), json!({"version": 3, "results": [{"path": "x"}], "field": "session_id"}));
    }

    #[test]
    fn statuses_map_to_client_errors() {
        let e = status_error(tonic::Status::unauthenticated("Missing or invalid API key"));
        assert!(matches!(e, SessionsClientError::Unauthorized(_)), "{e:?}");
        let e = status_error(tonic::Status::deadline_exceeded("late"));
        assert!(e.is_unavailable() && e.code() == TIMEOUT, "{e:?}");
        assert!(matches!(status_error(tonic::Status::unimplemented("")), SessionsClientError::NotFound(_)));
        assert!(matches!(status_error(tonic::Status::out_of_range("big")), SessionsClientError::BadRequest(_)));
        assert!(matches!(status_error(tonic::Status::internal("x")), SessionsClientError::Internal(_)));
    }

    #[test]
    fn only_plain_http2_addresses_are_accepted() {
        let mut s = GrpcClientSettings::default();
        assert_eq!(s.origin().unwrap(), "http://localhost:8090");
        s.connection.protocol = "https".into();
        assert_eq!(s.origin().unwrap_err().code, "WRONG_PROTOCOL");
        assert_eq!(GrpcClientSettings::for_uri("http://h:1/").origin().unwrap(), "http://h:1");
    }
}
