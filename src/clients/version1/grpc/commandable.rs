//! [`SessionsCommandableGrpcClientV1`]: every operation over Pip's `commandable.proto`.

use super::core::Core;
use super::settings::GrpcClientSettings;
use crate::clients::version1::client::ClientResult;
use crate::clients::version1::commandable::commandable_client;
use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::errors::ApplicationError;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The sessions client over Pip's commandable gRPC.
pub struct SessionsCommandableGrpcClientV1 {
    pub(super) core: Core,
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

impl SessionsCommandableGrpcClientV1 {
    /// Invokes `command`; every call is sent once (`idempotent` steers only the HTTP client's
    /// retries).
    async fn call<T: DeserializeOwned>(
        &self,
        cid: Option<&str>,
        command: &str,
        args: &Value,
        _idempotent: bool,
    ) -> ClientResult<Option<T>> {
        self.core.invoke(cid, command, args).await
    }

    /// As [`Self::call`], for an answer that must be there.
    async fn required<T: DeserializeOwned>(
        &self,
        cid: Option<&str>,
        command: &str,
        args: &Value,
        _idempotent: bool,
    ) -> ClientResult<T> {
        self.core.invoke_required(cid, command, args).await
    }
}

commandable_client!(SessionsCommandableGrpcClientV1, call, required);

/// The client holds only a lazily connected channel, released when dropped.
impl Component for SessionsCommandableGrpcClientV1 {}
