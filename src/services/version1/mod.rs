//! `SessionsCommandableHttpServiceV1` (`service-sessions:service:commandable-http:*:1.0`): the
//! Pip commandable HTTP API at `POST /v1/sessions/<command>`, a configuration of the toolkit's
//! generic commandable service; [`SessionsRestServiceV1`]
//! (`service-sessions:service:rest:*:1.0`), the REST resource API at `/api/v1/sessions`;
//! [`SessionsGrpcServiceV1`] (`service-sessions:service:grpc:*:1.0`), the typed
//! `sessions_v1.proto` service; and [`SessionsCommandableGrpcServiceV1`]
//! (`service-sessions:service:commandable-grpc:*:1.0`), every command over Pip's
//! `commandable.proto` as `v1/sessions.<command>`.

pub mod grpc;
pub mod rest;
mod rest_openapi;

pub use grpc::SessionsGrpcServiceV1;
pub use rest::SessionsRestServiceV1;

use crate::data::version1::BASE_ROUTE;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::grpc::CommandableGrpcService;
use crate::toolkit::http::commandable::CommandableHttpService;

/// The sessions commandable HTTP service.
#[derive(Debug)]
pub struct SessionsCommandableHttpServiceV1;

impl SessionsCommandableHttpServiceV1 {
    /// Builds the service from its entry: base route `v1/sessions`, controller
    /// `service-sessions:controller:*:*:1.0` unless configured otherwise.
    ///
    /// # Errors
    /// `BAD_CONFIG` for invalid settings.
    pub fn from_config(config: &ComponentConfig) -> Result<CommandableHttpService, ApplicationError> {
        CommandableHttpService::from_config(
            config,
            BASE_ROUTE,
            &Descriptor::new("service-sessions", "controller", "*", "*", "1.0"),
            "Sessions microservice V1",
        )
    }
}

/// The sessions commandable gRPC service.
#[derive(Debug)]
pub struct SessionsCommandableGrpcServiceV1;

impl SessionsCommandableGrpcServiceV1 {
    /// Builds the service from its entry: commands named `v1/sessions.<command>` (as the
    /// original's `SessionsCommandableGrpcServiceV1` names them), controller
    /// `service-sessions:controller:*:*:1.0` unless configured otherwise.
    ///
    /// # Errors
    /// `BAD_CONFIG` for invalid settings.
    pub fn from_config(config: &ComponentConfig) -> Result<CommandableGrpcService, ApplicationError> {
        CommandableGrpcService::from_config(
            config,
            BASE_ROUTE,
            &Descriptor::new("service-sessions", "controller", "*", "*", "1.0"),
        )
    }
}
