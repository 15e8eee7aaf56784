//! The generic commandable gRPC service: Pip's `commandable.proto` (`commandable.Commandable`,
//! one `invoke` rpc) over the commands of a [`Commandable`] dependency.
//!
//! As Pip's `CommandableGrpcService` names them, a command is invoked as `<name>.<command>`
//! (`v1/sessions.get_session_by_id`); the arguments are one JSON object in `args_json` (none, or
//! `args_empty`, is `{}`), the result is JSON text in `result_json` with `result_empty` set when
//! there is no value (HTTP's 204), and a failure is an `ErrorDescription` in `error` — rendered
//! from [`ApplicationError::to_description`], the one wire form of every error, with `details`
//! flattened to the proto's string map (non-strings as JSON text). The gRPC status itself is OK
//! for every command outcome, as Pip's clients expect. Arguments are validated by the command
//! exactly as over commandable HTTP (`INVALID_JSON`, `INVALID_DATA`, the schema's messages); an
//! unknown method is `METHOD_NOT_FOUND` (Pip's code) with category `NotFound` like an unknown
//! HTTP command.

use super::commandable_proto::commandable_server::{Commandable as CommandableRpc, CommandableServer};
use super::commandable_proto::{ErrorDescription as ProtoError, InvokeReply, InvokeRequest};
use super::endpoint::GrpcEndpoint;
use crate::toolkit::commands::{CommandOutput, CommandSet, Commandable, Parameters};
use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::http::commandable::parse_body_parameters;
use crate::toolkit::references::References;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use tracing::Instrument;

/// Settings of a commandable gRPC service.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CommandableGrpcSettings {
    /// The service name that prefixes command names (`v1/sessions`).
    pub name: Option<String>,
    /// Dependency locators.
    pub dependencies: CommandableGrpcDependencies,
}

/// `dependencies.*` keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CommandableGrpcDependencies {
    /// Locator of the commandable business component.
    pub controller: Option<String>,
    /// Locator of the gRPC endpoint (default `*:endpoint:grpc:*:1.0`).
    pub endpoint: Option<String>,
}

/// A commandable gRPC service component.
#[derive(Debug)]
pub struct CommandableGrpcService {
    name: String,
    controller_locator: Descriptor,
    endpoint_locator: Descriptor,
    commands: OnceLock<Arc<CommandSet>>,
}

impl CommandableGrpcService {
    /// Builds the service from its entry, with the defaults a concrete service supplies.
    ///
    /// # Errors
    /// `BAD_CONFIG` / `BAD_DESCRIPTOR` for invalid settings.
    pub fn from_config(
        config: &ComponentConfig,
        default_name: &str,
        default_controller: &Descriptor,
    ) -> Result<Self, ApplicationError> {
        let s: CommandableGrpcSettings = config.section()?;
        let controller_locator =
            Descriptor::configured_or(s.dependencies.controller.as_deref(), || default_controller.clone())?;
        let endpoint_locator = Descriptor::configured_or(s.dependencies.endpoint.as_deref(), grpc_endpoint_locator)?;
        let name = s.name.filter(|n| !n.is_empty()).unwrap_or_else(|| default_name.to_string());
        Ok(Self { name, controller_locator, endpoint_locator, commands: OnceLock::new() })
    }

    /// The name that prefixes command names.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The resolved command set (after `set_references`).
    pub fn command_set(&self) -> Option<Arc<CommandSet>> {
        self.commands.get().cloned()
    }
}

/// `*:endpoint:grpc:*:1.0`.
pub fn grpc_endpoint_locator() -> Descriptor {
    Descriptor::new("*", "endpoint", "grpc", "*", "1.0")
}

impl Component for CommandableGrpcService {
    fn set_references(&self, references: &References) -> Result<(), ApplicationError> {
        let controller = references.get_one_required::<dyn Commandable>(&self.controller_locator)?;
        let endpoint = references.get_one_required::<GrpcEndpoint>(&self.endpoint_locator)?;
        let commands = controller.command_set();
        let _ = self.commands.set(commands.clone());
        let methods =
            commands.commands().map(|c| (format!("{}.{}", self.name, c.name()), c.name().to_string())).collect();
        let invoker = Invoker { commands, methods };
        let limit = endpoint.max_message_size();
        let server = CommandableServer::new(invoker).max_decoding_message_size(limit).max_encoding_message_size(limit);
        endpoint.register_service(server, &["invoke"]);
        Ok(())
    }
}

struct Invoker {
    commands: Arc<CommandSet>,
    /// `<name>.<command>` → command name.
    methods: HashMap<String, String>,
}

#[tonic::async_trait]
impl CommandableRpc for Invoker {
    async fn invoke(
        &self,
        request: tonic::Request<InvokeRequest>,
    ) -> Result<tonic::Response<InvokeReply>, tonic::Status> {
        let metadata_cid = request
            .metadata()
            .get("correlation_id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        let r = request.into_inner();
        let cid = Some(r.correlation_id).filter(|c| !c.is_empty()).or(metadata_cid);
        let Some(command) = self.methods.get(&r.method).and_then(|name| self.commands.find(name)) else {
            let e = ApplicationError::not_found("METHOD_NOT_FOUND", format!("Method {} was not found", r.method))
                .with_details("method", r.method.chars().take(256).collect::<String>())
                .with_correlation_id(cid.as_deref());
            return Ok(tonic::Response::new(reply(Err(e), cid.as_deref())));
        };
        let span = tracing::info_span!("command", name = command.name(), correlation_id = cid.as_deref().unwrap_or(""));
        let result = async {
            let args =
                if r.args_empty { Parameters::default() } else { parse_body_parameters(r.args_json.as_bytes())? };
            command.execute(cid.as_deref(), args).await
        }
        .instrument(span)
        .await;
        Ok(tonic::Response::new(reply(result, cid.as_deref())))
    }
}

/// Pip's reply mapping: a value → `result_json`, none → `result_empty`, an error → `error`.
fn reply(result: Result<CommandOutput, ApplicationError>, cid: Option<&str>) -> InvokeReply {
    match result {
        Ok(Some(text)) => InvokeReply { error: None, result_empty: false, result_json: text.into_string() },
        Ok(None) => InvokeReply { error: None, result_empty: true, result_json: String::new() },
        Err(e) => InvokeReply {
            error: Some(proto_error(&e.with_correlation_id(cid))),
            result_empty: true,
            result_json: String::new(),
        },
    }
}

/// Renders an error as `commandable.ErrorDescription` (logging server errors first).
pub fn proto_error(error: &ApplicationError) -> ProtoError {
    error.log_if_server_error();
    let d = error.to_description();
    ProtoError {
        category: d.category,
        code: d.code,
        correlation_id: d.correlation_id.unwrap_or_default(),
        status: i32::from(d.status),
        message: d.message,
        cause: d.cause.unwrap_or_default(),
        stack_trace: String::new(),
        details: string_details(d.details.as_ref()),
    }
}

/// Flattens error details to the proto's `map<string, string>`: strings as they are, other
/// values as JSON text.
pub fn string_details(details: Option<&serde_json::Map<String, Value>>) -> HashMap<String, String> {
    details
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_render_in_pips_shape() {
        let e = ApplicationError::bad_request("INVALID_DATA", "Validation failed: x must not be null")
            .with_details("results", json!([{"path": "x"}]))
            .with_details("name", "x");
        let r = reply(Err(e), Some("c1"));
        let p = r.error.unwrap();
        assert_eq!((p.category.as_str(), p.code.as_str(), p.status), ("BadRequest", "INVALID_DATA", 400));
        assert_eq!(p.correlation_id, "c1");
        assert_eq!(p.details["name"], "x");
        assert_eq!(p.details["results"], r#"[{"path":"x"}]"#);
        assert!(r.result_empty);
        let ok = reply(crate::toolkit::commands::output(&json!({"a": 1})), None);
        assert_eq!((ok.result_empty, ok.result_json.as_str()), (false, r#"{"a":1}"#));
        assert!(reply(Ok(None), None).result_empty);
    }
}
