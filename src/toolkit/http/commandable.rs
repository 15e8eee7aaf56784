//! The generic commandable HTTP service: every command of a [`Commandable`] dependency becomes
//! `POST /<base_route>/<command>`, plus its OpenAPI document at `GET /<base_route>/swagger`.
//!
//! The body is one JSON object of parameters (an empty body is `{}`); a body that is not JSON is
//! 400 `INVALID_JSON`, valid JSON that is not an object is 400 `INVALID_DATA`, and a non-empty
//! body not declared `application/json` (`text/plain`, forms, none) is 415. Results follow Pip: a value → 200 JSON, none →
//! 204 with an empty body, an error → its ErrorDescription.

use super::endpoint::HttpEndpoint;
use super::swagger::{commands_openapi, ServedDocument, ServesDocument};
use super::{join_route, CommandCall, HttpRequest, HttpResponse, RouteHandler, Started};
use crate::toolkit::commands::{Command, CommandSet, Commandable, Parameters};
use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::references::References;
use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use std::sync::{Arc, OnceLock};
use warp::http::Method;

/// Settings of a commandable HTTP service.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CommandableSettings {
    /// Route prefix of the commands, e.g. `v1/sessions`.
    pub base_route: String,
    /// OpenAPI document switches.
    pub swagger: SwaggerSettings,
    /// Dependency locators.
    pub dependencies: CommandableDependencies,
}

/// `swagger.*` keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SwaggerSettings {
    /// Serve the generated OpenAPI document (default true; Pip's default is false).
    pub enable: bool,
    /// Generate the document from the commands (default true, as in Pip). Pip serves no document
    /// when it is false (a service would register one of its own); so does this service.
    pub auto: bool,
    /// Sub-route of the document (default `swagger`).
    pub route: String,
    /// Title of the document.
    pub name: Option<String>,
    /// Description of the document.
    pub description: Option<String>,
}

impl Default for SwaggerSettings {
    fn default() -> Self {
        Self { enable: true, auto: true, route: "swagger".to_string(), name: None, description: None }
    }
}

impl SwaggerSettings {
    /// Whether the document is served: `enable` and `auto`.
    pub fn serves(&self) -> bool {
        self.enable && self.auto
    }
}

/// `dependencies.*` keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CommandableDependencies {
    /// Locator of the commandable business component.
    pub controller: Option<String>,
    /// Locator of the HTTP endpoint (default `*:endpoint:http:*:1.0`).
    pub endpoint: Option<String>,
}

/// A commandable HTTP service.
pub struct CommandableHttpService {
    settings: CommandableSettings,
    controller_locator: Descriptor,
    endpoint_locator: Descriptor,
    commands: OnceLock<Arc<CommandSet>>,
    document: ServedDocument,
}

impl std::fmt::Debug for CommandableHttpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandableHttpService").field("base_route", &self.settings.base_route).finish()
    }
}

impl CommandableHttpService {
    /// Builds the service from its entry, with the defaults a concrete service supplies.
    ///
    /// # Errors
    /// `BAD_CONFIG` / `BAD_DESCRIPTOR` for invalid settings.
    pub fn from_config(
        config: &ComponentConfig,
        default_base_route: &str,
        default_controller: &Descriptor,
        title: &str,
    ) -> Result<Self, ApplicationError> {
        let mut settings: CommandableSettings = config.section()?;
        if settings.base_route.is_empty() {
            settings.base_route = default_base_route.to_string();
        }
        let controller_locator =
            Descriptor::configured_or(settings.dependencies.controller.as_deref(), || default_controller.clone())?;
        let endpoint_locator = Descriptor::configured_or(settings.dependencies.endpoint.as_deref(), || {
            Descriptor::new("*", "endpoint", "http", "*", "1.0")
        })?;
        let document = ServedDocument::new(settings.base_route.trim_matches('/'), &settings.swagger, title);
        Ok(Self { settings, controller_locator, endpoint_locator, commands: OnceLock::new(), document })
    }

    /// The base route (without slashes at the ends).
    pub fn base_route(&self) -> &str {
        self.settings.base_route.trim_matches('/')
    }

    /// The resolved command set (after `set_references`).
    pub fn command_set(&self) -> Option<Arc<CommandSet>> {
        self.commands.get().cloned()
    }

    fn document(&self) -> Option<Value> {
        let commands = self.commands.get()?;
        Some(commands_openapi(
            self.document.name(),
            self.settings.swagger.description.as_deref(),
            self.base_route(),
            commands,
        ))
    }
}

/// Decodes a command body into parameters.
///
/// # Errors
/// `INVALID_JSON` for text that is not JSON (never echoed), `INVALID_DATA` for non-objects,
/// 415 `UNSUPPORTED_MEDIA_TYPE` for content types that cannot carry JSON.
pub fn parse_parameters(request: &HttpRequest) -> Result<Parameters, ApplicationError> {
    check_json_content_type(request)?;
    parse_body_parameters(&request.body)
}

/// Parses a command body (HTTP or commandable gRPC) as one JSON object; empty (or blank) means
/// no parameters. Straight into the fields: no map of the top level is built and hashed for the
/// few names a command reads.
///
/// # Errors
/// `INVALID_JSON` for text that is not JSON (never echoed), `INVALID_DATA` for non-objects.
pub fn parse_body_parameters(body: &[u8]) -> Result<Parameters, ApplicationError> {
    if is_blank(body) {
        return Ok(Parameters::default());
    }
    match Parameters::from_json(body) {
        Ok(Some(parameters)) => Ok(parameters),
        Ok(None) => Err(not_an_object()),
        Err(e) => Err(invalid_json(&e)),
    }
}

fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

fn invalid_json(e: &serde_json::Error) -> ApplicationError {
    ApplicationError::bad_request(
        "INVALID_JSON",
        format!("Request body is not valid JSON (line {}, column {})", e.line(), e.column()),
    )
}

fn not_an_object() -> ApplicationError {
    ApplicationError::bad_request("INVALID_DATA", "Request body must be a JSON object")
}

/// Checks that a non-empty body is declared JSON: `application/json` (with or without a
/// charset) or `*+json` (e.g. `application/merge-patch+json`). `text/plain`, forms and a missing
/// content type are refused, so a browser's simple cross-origin request (which can send only
/// those) never reaches a command. An empty body needs no content type.
///
/// # Errors
/// 415 `UNSUPPORTED_MEDIA_TYPE` otherwise.
pub fn check_json_content_type(request: &HttpRequest) -> Result<(), ApplicationError> {
    if is_blank(&request.body) {
        return Ok(());
    }
    let ct = request.headers.get(warp::http::header::CONTENT_TYPE);
    // What clients send, accepted without splitting and comparing.
    if ct.is_some_and(|v| v.as_bytes() == b"application/json") {
        return Ok(());
    }
    let ct = ct.and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    // Compared without lowercasing a copy: this runs on every command.
    let starts = |prefix: &str| media.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix));
    let ends = |suffix: &str| {
        media
            .len()
            .checked_sub(suffix.len())
            .and_then(|i| media.get(i..))
            .is_some_and(|s| s.eq_ignore_ascii_case(suffix))
    };
    if media.eq_ignore_ascii_case("application/json") || (starts("application/") && ends("+json")) {
        return Ok(());
    }
    let media = media.to_ascii_lowercase();
    let shown = if media.is_empty() { "(none)".to_string() } else { media.chars().take(64).collect() };
    Err(ApplicationError::unsupported(
        "UNSUPPORTED_MEDIA_TYPE",
        format!("Content type {shown} is not supported: send application/json"),
    )
    .with_status(415))
}

/// Parses a body as any JSON value; empty (or blank) is `None`.
///
/// # Errors
/// `INVALID_JSON` for text that is not JSON (the body is never echoed).
pub fn parse_json_value(body: &Bytes) -> Result<Option<Value>, ApplicationError> {
    if is_blank(body) {
        return Ok(None);
    }
    serde_json::from_slice::<Value>(body).map(Some).map_err(|e| invalid_json(&e))
}

impl Component for CommandableHttpService {
    fn set_references(&self, references: &References) -> Result<(), ApplicationError> {
        let controller = references.get_one_required::<dyn Commandable>(&self.controller_locator)?;
        let endpoint = references.get_one_required::<HttpEndpoint>(&self.endpoint_locator)?;
        let commands = controller.command_set();
        let _ = self.commands.set(commands.clone());
        for command in commands.commands() {
            let route = join_route(self.base_route(), command.name());
            endpoint.register_route(Method::POST, &route, Arc::new(CommandRoute { command: command.clone() }));
        }
        self.document.register(&endpoint, || self.document().unwrap_or(Value::Null));
        Ok(())
    }
}

/// The route of one command: the body parsed and validated, and the action started, when the
/// request arrives; the endpoint then awaits the action's own future (no future of the route's
/// wraps it) and answers its result by Pip's mapping. All of it runs in the `command` span.
struct CommandRoute {
    command: Arc<Command>,
}

#[async_trait]
impl RouteHandler for CommandRoute {
    async fn handle(&self, request: HttpRequest) -> HttpResponse {
        match self.command_call(request) {
            Started::Ready(response) => response,
            Started::Command(call) => call.response().await,
        }
    }

    fn start(&self, request: HttpRequest) -> Result<Started, HttpRequest> {
        Ok(self.command_call(request))
    }
}

impl CommandRoute {
    /// Parses and validates the body and starts the action, in the `command` span; a refused
    /// body is answered at once.
    fn command_call(&self, mut request: HttpRequest) -> Started {
        let cid = request.correlation_id.take();
        let span =
            tracing::info_span!("command", name = self.command.name(), correlation_id = cid.as_deref().unwrap_or(""));
        let started =
            span.in_scope(|| parse_parameters(&request).and_then(|args| self.command.start(cid.as_deref(), args)));
        match started {
            Ok(result) => Started::Command(CommandCall::new(result, cid, span)),
            Err(e) => Started::Ready(span.in_scope(|| HttpResponse::from_result(Err(e), cid.as_deref()))),
        }
    }
}

impl ServesDocument for CommandableHttpService {
    fn served_document(&self) -> &ServedDocument {
        &self.document
    }
}
