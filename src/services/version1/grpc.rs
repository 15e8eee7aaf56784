//! `SessionsGrpcServiceV1` (`service-sessions:service:grpc:*:1.0`): the original's typed
//! `sessions_v1.proto` service (`sessions_v1.Sessions`, eight rpcs) on the shared gRPC endpoint.
//!
//! Every rpc runs the controller's command of the same name, so validation, error codes, expiry
//! and the closed-session rules are exactly those of commandable HTTP. The conversion follows the
//! original's `SessionsGrpcConverterV1`:
//! - requests: proto3 cannot tell an absent string from `""`, so an empty string is a missing
//!   parameter (`open_session` with `user_id` `""` fails validation as a null `user_id` does over
//!   HTTP — the original opened a session for user `""`); `user` and `data` are JSON text (empty:
//!   none); the filter is Pip's string map; paging `skip`/`take` 0 mean "not given".
//! - replies: dates as RFC 3339 text with milliseconds, `user`/`data` as JSON text (`""` for
//!   null), absent optional strings as `""`, a page's `total` 0 when it was not counted; "no
//!   value" (an unknown id) is a reply without `session`; a failure is an `ErrorDescription` in
//!   `error` (status as text, details as a string map) with gRPC status OK, as the original does.

use crate::protos::sessions_v1::sessions_server::{Sessions, SessionsServer};
use crate::protos::sessions_v1::{
    ErrorDescription, PagingParams, Session, SessionEmptyReply, SessionEmptyRequest, SessionIdRequest,
    SessionObjectReply, SessionOpenRequest, SessionPage, SessionPageReply, SessionPageRequest, SessionStoreDataRequest,
    SessionUpdateUserRequest,
};
use crate::toolkit::commands::{CommandOutput, CommandSet, Commandable, Parameters};
use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::grpc::commandable::{grpc_endpoint_locator, string_details};
use crate::toolkit::grpc::GrpcEndpoint;
use crate::toolkit::references::References;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Request, Response, Status};
use tracing::Instrument;

/// The rpc names of `sessions_v1.Sessions`.
pub const SESSIONS_RPCS: [&str; 8] = [
    "get_sessions",
    "get_session_by_id",
    "open_session",
    "store_session_data",
    "update_session_user",
    "close_session",
    "close_expired_sessions",
    "delete_session_by_id",
];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Settings {
    dependencies: Dependencies,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Dependencies {
    controller: Option<String>,
    endpoint: Option<String>,
}

/// The typed sessions gRPC service component.
#[derive(Debug)]
pub struct SessionsGrpcServiceV1 {
    controller_locator: Descriptor,
    endpoint_locator: Descriptor,
}

impl SessionsGrpcServiceV1 {
    /// Builds the service from its entry: controller `service-sessions:controller:*:*:1.0` and
    /// endpoint `*:endpoint:grpc:*:1.0` unless `dependencies.*` say otherwise.
    ///
    /// # Errors
    /// `BAD_CONFIG` / `BAD_DESCRIPTOR` for invalid settings.
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let s: Settings = config.section()?;
        let controller_locator = Descriptor::configured_or(s.dependencies.controller.as_deref(), || {
            Descriptor::new("service-sessions", "controller", "*", "*", "1.0")
        })?;
        let endpoint_locator = Descriptor::configured_or(s.dependencies.endpoint.as_deref(), grpc_endpoint_locator)?;
        Ok(Self { controller_locator, endpoint_locator })
    }
}

impl Component for SessionsGrpcServiceV1 {
    fn set_references(&self, references: &References) -> Result<(), ApplicationError> {
        let controller = references.get_one_required::<dyn Commandable>(&self.controller_locator)?;
        let endpoint = references.get_one_required::<GrpcEndpoint>(&self.endpoint_locator)?;
        let limit = endpoint.max_message_size();
        let handler = Handler { commands: controller.command_set() };
        let server = SessionsServer::new(handler).max_decoding_message_size(limit).max_encoding_message_size(limit);
        endpoint.register_service(server, &SESSIONS_RPCS);
        Ok(())
    }
}

struct Handler {
    commands: Arc<CommandSet>,
}

/// The request's `correlation_id` field, else its `correlation_id` metadata.
fn correlation_id<T>(request: &Request<T>, field: &str) -> Option<String> {
    if !field.is_empty() {
        return Some(field.to_string());
    }
    request.metadata().get("correlation_id").and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()).map(str::to_string)
}

/// Adds a string parameter unless it is `""` (proto3's null).
/// Adds `session_id` as given, `""` included: proto3 cannot tell an empty id from an absent one,
/// and an empty id is an unknown id (null result), as the original and commandable HTTP answer it.
fn put_id(args: &mut Map<String, Value>, value: String) {
    args.insert("session_id".to_string(), Value::String(value));
}

fn put_str(args: &mut Map<String, Value>, key: &str, value: String) {
    if !value.is_empty() {
        args.insert(key.to_string(), Value::String(value));
    }
}

/// Adds a JSON-text parameter unless it is `""` (the original's converter: empty is null).
fn put_json(args: &mut Map<String, Value>, key: &str, text: &str) -> Result<(), ApplicationError> {
    if text.is_empty() {
        return Ok(());
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        ApplicationError::bad_request(
            "INVALID_JSON",
            format!("{key} is not valid JSON (line {}, column {})", e.line(), e.column()),
        )
        .with_details("field", key)
    })?;
    args.insert(key.to_string(), value);
    Ok(())
}

fn page_args(filter: HashMap<String, String>, paging: Option<PagingParams>) -> Map<String, Value> {
    let mut args = Map::new();
    if !filter.is_empty() {
        let filter: Map<String, Value> = filter.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        args.insert("filter".to_string(), Value::Object(filter));
    }
    if let Some(p) = paging {
        let mut paging = Map::new();
        if p.skip != 0 {
            paging.insert("skip".to_string(), Value::from(p.skip));
        }
        if p.take != 0 {
            paging.insert("take".to_string(), Value::from(p.take));
        }
        if p.total {
            paging.insert("total".to_string(), Value::Bool(true));
        }
        args.insert("paging".to_string(), Value::Object(paging));
    }
    args
}

/// A session as the commands write it (only what `sessions_v1.Session` carries).
#[derive(Deserialize)]
struct WireSession<'a> {
    id: String,
    user_id: String,
    #[serde(default)]
    user_name: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    client: Option<String>,
    active: bool,
    #[serde(default)]
    open_time: Option<String>,
    #[serde(default)]
    request_time: Option<String>,
    #[serde(default)]
    close_time: Option<String>,
    #[serde(default, borrow)]
    user: Option<&'a RawValue>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

impl From<WireSession<'_>> for Session {
    fn from(s: WireSession<'_>) -> Self {
        let json = |v: Option<&RawValue>| v.map(|r| r.get().to_string()).unwrap_or_default();
        Session {
            id: s.id,
            user_id: s.user_id,
            user_name: s.user_name.unwrap_or_default(),
            active: s.active,
            open_time: s.open_time.unwrap_or_default(),
            close_time: s.close_time.unwrap_or_default(),
            request_time: s.request_time.unwrap_or_default(),
            address: s.address.unwrap_or_default(),
            client: s.client.unwrap_or_default(),
            user: json(s.user),
            data: json(s.data),
        }
    }
}

#[derive(Deserialize)]
struct WirePage<'a> {
    #[serde(default)]
    total: Option<i64>,
    #[serde(borrow)]
    data: Vec<WireSession<'a>>,
}

fn bad_result(e: &serde_json::Error) -> ApplicationError {
    ApplicationError::internal("BAD_RESULT", "A command result could not be converted").with_cause(e)
}

fn to_session(output: CommandOutput) -> Result<Option<Session>, ApplicationError> {
    match output {
        None => Ok(None),
        Some(text) => serde_json::from_str::<WireSession<'_>>(text.as_str())
            .map(|s| Some(Session::from(s)))
            .map_err(|e| bad_result(&e)),
    }
}

fn to_page(output: CommandOutput) -> Result<Option<SessionPage>, ApplicationError> {
    match output {
        None => Ok(None),
        Some(text) => serde_json::from_str::<WirePage<'_>>(text.as_str())
            .map(|p| {
                Some(SessionPage { total: p.total.unwrap_or(0), data: p.data.into_iter().map(Session::from).collect() })
            })
            .map_err(|e| bad_result(&e)),
    }
}

/// Renders an error as `sessions_v1.ErrorDescription` (logging server errors first).
pub fn error_description(error: &ApplicationError) -> ErrorDescription {
    error.log_if_server_error();
    let d = error.to_description();
    ErrorDescription {
        r#type: d.r#type.unwrap_or_default(),
        category: d.category,
        code: d.code,
        correlation_id: d.correlation_id.unwrap_or_default(),
        status: d.status.to_string(),
        message: d.message,
        cause: d.cause.unwrap_or_default(),
        stack_trace: String::new(),
        details: string_details(d.details.as_ref()),
    }
}

impl Handler {
    /// Runs a command with the given arguments (or the error met while building them).
    async fn run(
        &self,
        name: &'static str,
        cid: Option<String>,
        args: Result<Map<String, Value>, ApplicationError>,
    ) -> Result<CommandOutput, ErrorDescription> {
        let span = tracing::info_span!("command", name, correlation_id = cid.as_deref().unwrap_or(""));
        let result = async {
            match args {
                Ok(args) => self.commands.execute(cid.as_deref(), name, Parameters::new(args)).await,
                Err(e) => Err(e),
            }
        }
        .instrument(span)
        .await;
        result.map_err(|e| error_description(&e.with_correlation_id(cid.as_deref())))
    }

    async fn session_reply(
        &self,
        name: &'static str,
        cid: Option<String>,
        args: Result<Map<String, Value>, ApplicationError>,
    ) -> Result<Response<SessionObjectReply>, Status> {
        let cid_copy = cid.clone();
        let reply =
            match self.run(name, cid, args).await.and_then(|out| {
                to_session(out).map_err(|e| error_description(&e.with_correlation_id(cid_copy.as_deref())))
            }) {
                Ok(session) => SessionObjectReply { error: None, session },
                Err(error) => SessionObjectReply { error: Some(error), session: None },
            };
        Ok(Response::new(reply))
    }

    async fn by_id(
        &self,
        name: &'static str,
        request: Request<SessionIdRequest>,
    ) -> Result<Response<SessionObjectReply>, Status> {
        let cid = correlation_id(&request, &request.get_ref().correlation_id);
        let mut args = Map::new();
        put_id(&mut args, request.into_inner().session_id);
        self.session_reply(name, cid, Ok(args)).await
    }
}

#[tonic::async_trait]
impl Sessions for Handler {
    async fn get_sessions(&self, request: Request<SessionPageRequest>) -> Result<Response<SessionPageReply>, Status> {
        let cid = correlation_id(&request, &request.get_ref().correlation_id);
        let r = request.into_inner();
        let args = page_args(r.filter, r.paging);
        let cid_copy = cid.clone();
        let reply =
            match self.run("get_sessions", cid, Ok(args)).await.and_then(|out| {
                to_page(out).map_err(|e| error_description(&e.with_correlation_id(cid_copy.as_deref())))
            }) {
                Ok(page) => SessionPageReply { error: None, page },
                Err(error) => SessionPageReply { error: Some(error), page: None },
            };
        Ok(Response::new(reply))
    }

    async fn get_session_by_id(
        &self,
        request: Request<SessionIdRequest>,
    ) -> Result<Response<SessionObjectReply>, Status> {
        self.by_id("get_session_by_id", request).await
    }

    async fn open_session(&self, request: Request<SessionOpenRequest>) -> Result<Response<SessionObjectReply>, Status> {
        let cid = correlation_id(&request, &request.get_ref().correlation_id);
        let r = request.into_inner();
        let mut args = Map::new();
        put_str(&mut args, "user_id", r.user_id);
        put_str(&mut args, "user_name", r.user_name);
        put_str(&mut args, "address", r.address);
        put_str(&mut args, "client", r.client);
        let args =
            put_json(&mut args, "user", &r.user).and_then(|()| put_json(&mut args, "data", &r.data)).map(|()| args);
        self.session_reply("open_session", cid, args).await
    }

    async fn store_session_data(
        &self,
        request: Request<SessionStoreDataRequest>,
    ) -> Result<Response<SessionObjectReply>, Status> {
        let cid = correlation_id(&request, &request.get_ref().correlation_id);
        let r = request.into_inner();
        let mut args = Map::new();
        put_id(&mut args, r.session_id);
        let args = put_json(&mut args, "data", &r.data).map(|()| args);
        self.session_reply("store_session_data", cid, args).await
    }

    async fn update_session_user(
        &self,
        request: Request<SessionUpdateUserRequest>,
    ) -> Result<Response<SessionObjectReply>, Status> {
        let cid = correlation_id(&request, &request.get_ref().correlation_id);
        let r = request.into_inner();
        let mut args = Map::new();
        put_id(&mut args, r.session_id);
        let args = put_json(&mut args, "user", &r.user).map(|()| args);
        self.session_reply("update_session_user", cid, args).await
    }

    async fn close_session(&self, request: Request<SessionIdRequest>) -> Result<Response<SessionObjectReply>, Status> {
        self.by_id("close_session", request).await
    }

    async fn close_expired_sessions(
        &self,
        request: Request<SessionEmptyRequest>,
    ) -> Result<Response<SessionEmptyReply>, Status> {
        let cid = correlation_id(&request, &request.get_ref().correlation_id);
        let error = self.run("close_expired_sessions", cid, Ok(Map::new())).await.err();
        Ok(Response::new(SessionEmptyReply { error }))
    }

    async fn delete_session_by_id(
        &self,
        request: Request<SessionIdRequest>,
    ) -> Result<Response<SessionObjectReply>, Status> {
        self.by_id("delete_session_by_id", request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::version1::errors::SESSION_CLOSED;
    use crate::toolkit::commands::output;
    use serde_json::json;

    #[test]
    fn sessions_convert_like_the_original() {
        let out = output(&json!({"id": "a1", "user_id": "u1", "user_name": null, "address": "10.0.0.1",
            "client": null, "active": false, "open_time": "2026-11-21T10:15:30.123Z",
            "request_time": "2026-11-21T10:15:31.000Z", "close_time": "2026-11-21T10:15:31.000Z",
            "user": {"name": "Ann", "roles": ["a"]}, "data": null, "version": 3}))
        .unwrap();
        let s = to_session(out).unwrap().unwrap();
        assert_eq!((s.id.as_str(), s.user_id.as_str(), s.user_name.as_str()), ("a1", "u1", ""));
        assert_eq!((s.address.as_str(), s.client.as_str(), s.active), ("10.0.0.1", "", false));
        assert_eq!(s.open_time, "2026-11-21T10:15:30.123Z");
        assert_eq!(s.close_time, "2026-11-21T10:15:31.000Z");
        assert_eq!(s.user, r#"{"name":"Ann","roles":["a"]}"#);
        assert_eq!(s.data, "");
        let falsy = output(&json!({"id": "a", "user_id": "u", "active": true, "open_time": "x",
            "request_time": "x", "user": false, "data": 0}))
        .unwrap();
        let s = to_session(falsy).unwrap().unwrap();
        assert_eq!((s.user.as_str(), s.data.as_str(), s.close_time.as_str()), ("false", "0", ""));
        assert_eq!(to_session(None).unwrap(), None);
        let page = output(&json!({"total": null, "data": [{"id": "a", "user_id": "u", "active": true,
            "open_time": "t", "request_time": "t"}]}))
        .unwrap();
        let p = to_page(page).unwrap().unwrap();
        assert_eq!((p.total, p.data.len(), p.data[0].user.as_str()), (0, 1, ""));
    }

    #[test]
    fn requests_convert_empty_strings_to_missing_parameters() {
        let mut args = Map::new();
        put_str(&mut args, "user_id", String::new());
        put_str(&mut args, "client", "web".to_string());
        put_json(&mut args, "user", "").unwrap();
        put_json(&mut args, "data", r#"{"a":[1]}"#).unwrap();
        assert_eq!(Value::Object(args.clone()), json!({"client": "web", "data": {"a": [1]}}));
        let e = put_json(&mut args, "user", "{nope").unwrap_err();
        assert_eq!((e.code.as_str(), e.status), ("INVALID_JSON", 400));
        let filter = HashMap::from([("active".to_string(), "true".to_string())]);
        let args = page_args(filter, Some(PagingParams { skip: 0, take: 5, total: true }));
        assert_eq!(Value::Object(args), json!({"filter": {"active": "true"}, "paging": {"take": 5, "total": true}}));
        assert_eq!(Value::Object(page_args(HashMap::new(), None)), json!({}));
    }

    #[test]
    fn errors_carry_status_as_text_and_string_details() {
        let e = ApplicationError::conflict(SESSION_CLOSED, "Session is closed")
            .with_details("version", 3)
            .with_correlation_id(Some("c1"));
        let d = error_description(&e);
        assert_eq!((d.category.as_str(), d.code.as_str(), d.status.as_str()), ("Conflict", "SESSION_CLOSED", "409"));
        assert_eq!((d.correlation_id.as_str(), d.details["version"].as_str()), ("c1", "3"));
    }
}
