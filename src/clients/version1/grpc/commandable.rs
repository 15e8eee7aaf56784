//! [`SessionsCommandableGrpcClientV1`]: every operation over Pip's `commandable.proto`.

use super::core::Core;
use super::settings::GrpcClientSettings;
use crate::clients::version1::args::{self, Count};
use crate::clients::version1::client::{ClientResult, SessionsClientV1};
use crate::data::version1::{OpenSessionRequest, SessionV1, SessionValidity, SessionsFilter};
use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::errors::ApplicationError;
use async_trait::async_trait;
use serde_json::{json, Value};

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

#[async_trait]
impl SessionsClientV1 for SessionsCommandableGrpcClientV1 {
    async fn get_sessions(
        &self,
        correlation_id: Option<&str>,
        filter: &SessionsFilter,
        paging: &PagingParams,
    ) -> ClientResult<DataPage<SessionV1>> {
        self.core.invoke_required(correlation_id, "get_sessions", &args::get_sessions(filter, paging)).await
    }

    async fn get_session_by_id(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
    ) -> ClientResult<Option<SessionV1>> {
        self.core.invoke(correlation_id, "get_session_by_id", &args::by_id(session_id, None)).await
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
        self.core
            .invoke(correlation_id, "store_session_data", &args::by_id_with(session_id, version, "data", data))
            .await
    }

    async fn update_session_user(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        user: Value,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        self.core
            .invoke(correlation_id, "update_session_user", &args::by_id_with(session_id, version, "user", user))
            .await
    }

    async fn close_session(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        self.core.invoke(correlation_id, "close_session", &args::by_id(session_id, version)).await
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
        self.core.invoke(correlation_id, "delete_session_by_id", &args::by_id(session_id, version)).await
    }

    async fn touch_session(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        self.core.invoke(correlation_id, "touch_session", &args::by_id(session_id, version)).await
    }

    async fn validate_session(&self, correlation_id: Option<&str>, session_id: &str) -> ClientResult<SessionValidity> {
        self.core.invoke_required(correlation_id, "validate_session", &args::by_id(session_id, None)).await
    }

    async fn close_user_sessions(
        &self,
        correlation_id: Option<&str>,
        user_id: &str,
        except_session_id: Option<&str>,
    ) -> ClientResult<u64> {
        let args = args::close_user_sessions(user_id, except_session_id);
        let c: Count = self.core.invoke_required(correlation_id, "close_user_sessions", &args).await?;
        Ok(c.count)
    }

    async fn rotate_session_id(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        self.core.invoke(correlation_id, "rotate_session_id", &args::by_id(session_id, version)).await
    }

    async fn purge_sessions(&self, correlation_id: Option<&str>) -> ClientResult<u64> {
        let c: Count = self.core.invoke_required(correlation_id, "purge_sessions", &json!({})).await?;
        Ok(c.count)
    }
}

/// The client holds only a lazily connected channel, released when dropped.
impl Component for SessionsCommandableGrpcClientV1 {}
