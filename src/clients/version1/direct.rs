//! `SessionsDirectClientV1` (`service-sessions:client:direct:*:1.0`): the sessions client as
//! in-process calls to a [`SessionsController`], for services that embed sessions as a library
//! (memory or file backend) and for tests.
//!
//! The controller is resolved in `set_references` (`dependencies.controller`, default
//! `service-sessions:controller:*:*:1.0`) or given to [`SessionsDirectClientV1::with_controller`].
//! To behave exactly like the HTTP client, every call first checks its parameters against the
//! schema of the command the HTTP service would run (an id no session can have is unknown:
//! `None`, as over HTTP), and the controller's errors go through the same mapping to
//! [`SessionsClientError`], with the correlation id filled in as the HTTP layer does.

use super::args;
use super::client::{ClientResult, SessionsClientError, SessionsClientV1};
use crate::data::version1::{OpenSessionRequest, SessionV1, SessionValidity, SessionsFilter};
use crate::logic::SessionsController;
use crate::toolkit::commands::Commandable;
use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::references::References;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::{Arc, OnceLock};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DirectClientSettings {
    dependencies: DirectClientDependencies,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DirectClientDependencies {
    controller: Option<String>,
}

/// The in-process sessions client.
///
/// ```
/// use service_sessions::clients::version1::{SessionsClientV1, SessionsDirectClientV1};
/// use service_sessions::data::version1::OpenSessionRequest;
/// use service_sessions::logic::{ControllerOptions, SessionsController};
/// use service_sessions::persistence::memory::SessionsMemoryPersistence;
/// use service_sessions::toolkit::time::SystemClock;
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let controller = SessionsController::with(
///     ControllerOptions::default(),
///     Arc::new(SessionsMemoryPersistence::new()),
///     Arc::new(SystemClock),
/// );
/// let client = SessionsDirectClientV1::with_controller(controller);
/// let request = OpenSessionRequest { user_id: "u1".into(), ..Default::default() };
/// let session = client.open_session(None, request).await?;
/// let stored = client.store_session_data(None, &session.id, serde_json::json!({"n": 1}), None).await?;
/// assert_eq!(stored.map(|s| s.version), Some(2));
/// assert!(client.get_session_by_id(None, "0123456789abcdef0123456789abcdef").await?.is_none());
/// # Ok(())
/// # }
/// ```
pub struct SessionsDirectClientV1 {
    locator: Descriptor,
    controller: OnceLock<Arc<SessionsController>>,
}

impl std::fmt::Debug for SessionsDirectClientV1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionsDirectClientV1")
            .field("locator", &self.locator.to_string())
            .field("resolved", &self.controller.get().is_some())
            .finish()
    }
}

impl Default for SessionsDirectClientV1 {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionsDirectClientV1 {
    /// A client that resolves `service-sessions:controller:*:*:1.0` in `set_references`.
    pub fn new() -> Self {
        Self {
            locator: Descriptor::new("service-sessions", "controller", "*", "*", "1.0"),
            controller: OnceLock::new(),
        }
    }

    /// A client calling this controller.
    pub fn with_controller(controller: Arc<SessionsController>) -> Self {
        let c = Self::new();
        let _ = c.controller.set(controller);
        c
    }

    /// Builds the client from its config entry (`dependencies.controller` optional).
    ///
    /// # Errors
    /// `BAD_CONFIG` / `BAD_DESCRIPTOR` for invalid settings.
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let s: DirectClientSettings = config.section()?;
        let mut c = Self::new();
        if let Some(l) = &s.dependencies.controller {
            c.locator = l.parse()?;
        }
        Ok(c)
    }

    fn controller(&self, cid: Option<&str>) -> ClientResult<&Arc<SessionsController>> {
        self.controller.get().ok_or_else(|| {
            SessionsClientError::from(
                ApplicationError::invalid_state("NOT_REFERENCED", "The direct sessions client has no controller")
                    .with_details("locator", self.locator.to_string())
                    .with_correlation_id(cid),
            )
        })
    }

    /// Checks `args` against the schema of `command` (as the HTTP service would) and gives
    /// them back, so large payloads are moved through the check rather than copied.
    fn check(
        ctl: &SessionsController,
        cid: Option<&str>,
        command: &str,
        args: Value,
    ) -> ClientResult<Map<String, Value>> {
        if let Some(c) = ctl.command_set().find(command) {
            c.schema().validate_and_throw(cid, &args).map_err(|e| fail(e, cid))?;
        }
        match args {
            Value::Object(m) => Ok(m),
            _ => Ok(Map::new()),
        }
    }

    /// Checks a by-id call (`{session_id, version?}` plus one payload) and returns the payload.
    fn check_by_id(
        &self,
        cid: Option<&str>,
        command: &str,
        session_id: &str,
        version: Option<i64>,
        payload: Option<(&str, Value)>,
    ) -> ClientResult<(&Arc<SessionsController>, Value)> {
        let ctl = self.controller(cid)?;
        let key = payload.as_ref().map(|(k, _)| (*k).to_string());
        let args = match payload {
            Some((k, v)) => args::by_id_with(session_id, version, k, v),
            None => args::by_id(session_id, version),
        };
        let mut args = Self::check(ctl, cid, command, args)?;
        let value = key.and_then(|k| args.remove(&k)).unwrap_or(Value::Null);
        Ok((ctl, value))
    }
}

/// The controller's error as the HTTP layer would report it.
fn fail(e: ApplicationError, cid: Option<&str>) -> SessionsClientError {
    SessionsClientError::from(e.with_correlation_id(cid))
}

#[async_trait]
impl SessionsClientV1 for SessionsDirectClientV1 {
    async fn get_sessions(
        &self,
        correlation_id: Option<&str>,
        filter: &SessionsFilter,
        paging: &PagingParams,
    ) -> ClientResult<DataPage<SessionV1>> {
        let ctl = self.controller(correlation_id)?;
        ctl.get_sessions(correlation_id, filter, paging).await.map_err(|e| fail(e, correlation_id))
    }

    async fn get_session_by_id(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
    ) -> ClientResult<Option<SessionV1>> {
        let (ctl, _) = self.check_by_id(correlation_id, "get_session_by_id", session_id, None, None)?;
        ctl.get_session_by_id(correlation_id, session_id).await.map_err(|e| fail(e, correlation_id))
    }

    async fn open_session(&self, correlation_id: Option<&str>, request: OpenSessionRequest) -> ClientResult<SessionV1> {
        let ctl = self.controller(correlation_id)?;
        if let args @ Value::Object(_) = request.to_args() {
            Self::check(ctl, correlation_id, "open_session", args)?;
        }
        ctl.open_session(correlation_id, request).await.map_err(|e| fail(e, correlation_id))
    }

    async fn store_session_data(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        data: Value,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        let (ctl, data) =
            self.check_by_id(correlation_id, "store_session_data", session_id, version, Some(("data", data)))?;
        ctl.store_session_data(correlation_id, session_id, data, version).await.map_err(|e| fail(e, correlation_id))
    }

    async fn update_session_user(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        user: Value,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        let (ctl, user) =
            self.check_by_id(correlation_id, "update_session_user", session_id, version, Some(("user", user)))?;
        ctl.update_session_user(correlation_id, session_id, user, version).await.map_err(|e| fail(e, correlation_id))
    }

    async fn close_session(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        let (ctl, _) = self.check_by_id(correlation_id, "close_session", session_id, version, None)?;
        ctl.close_session(correlation_id, session_id, version).await.map_err(|e| fail(e, correlation_id))
    }

    async fn close_expired_sessions(&self, correlation_id: Option<&str>) -> ClientResult<()> {
        let ctl = self.controller(correlation_id)?;
        ctl.close_expired_sessions(correlation_id).await.map(|_| ()).map_err(|e| fail(e, correlation_id))
    }

    async fn delete_session_by_id(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        let (ctl, _) = self.check_by_id(correlation_id, "delete_session_by_id", session_id, version, None)?;
        ctl.delete_session_by_id(correlation_id, session_id, version).await.map_err(|e| fail(e, correlation_id))
    }

    async fn touch_session(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        let (ctl, _) = self.check_by_id(correlation_id, "touch_session", session_id, version, None)?;
        ctl.touch_session(correlation_id, session_id, version).await.map_err(|e| fail(e, correlation_id))
    }

    async fn validate_session(&self, correlation_id: Option<&str>, session_id: &str) -> ClientResult<SessionValidity> {
        let (ctl, _) = self.check_by_id(correlation_id, "validate_session", session_id, None, None)?;
        ctl.validate_session(correlation_id, session_id).await.map_err(|e| fail(e, correlation_id))
    }

    async fn close_user_sessions(
        &self,
        correlation_id: Option<&str>,
        user_id: &str,
        except_session_id: Option<&str>,
    ) -> ClientResult<u64> {
        let ctl = self.controller(correlation_id)?;
        let args = args::close_user_sessions(user_id, except_session_id);
        Self::check(ctl, correlation_id, "close_user_sessions", args)?;
        ctl.close_user_sessions(correlation_id, user_id, except_session_id).await.map_err(|e| fail(e, correlation_id))
    }

    async fn rotate_session_id(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        let (ctl, _) = self.check_by_id(correlation_id, "rotate_session_id", session_id, version, None)?;
        ctl.rotate_session_id(correlation_id, session_id, version).await.map_err(|e| fail(e, correlation_id))
    }

    async fn purge_sessions(&self, correlation_id: Option<&str>) -> ClientResult<u64> {
        let ctl = self.controller(correlation_id)?;
        ctl.purge_sessions(correlation_id).await.map_err(|e| fail(e, correlation_id))
    }
}

#[async_trait]
impl Component for SessionsDirectClientV1 {
    fn set_references(&self, references: &References) -> Result<(), ApplicationError> {
        if self.controller.get().is_none() {
            let c = references.get_one_required::<SessionsController>(&self.locator)?;
            let _ = self.controller.set(c);
        }
        Ok(())
    }
}
