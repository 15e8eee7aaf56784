//! [`SessionsGrpcClientV1`]: the original eight operations over the typed `sessions_v1.proto`,
//! the rest over commandable gRPC on the same channel.

use super::commandable::SessionsCommandableGrpcClientV1;
use super::core::{bad_response, status_error, typed_error, Core};
use super::settings::GrpcClientSettings;
use crate::clients::version1::client::{ClientResult, ConcurrencyControl, SessionsClientError, SessionsClientV1};
use crate::data::version1::{OpenSessionRequest, SessionV1, SessionValidity, SessionsFilter};
use crate::protos::sessions_v1 as pb;
use crate::protos::sessions_v1::sessions_client::SessionsClient;
use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::time::parse_time;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::HashMap;
use tonic::transport::Channel;

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
