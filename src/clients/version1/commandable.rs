//! [`SessionsClientV1`](super::SessionsClientV1) for the clients that send the sessions commands
//! with JSON arguments (commandable HTTP, commandable gRPC): which command each operation sends,
//! with which arguments, and whether it may be retried, written once.

/// Implements `SessionsClientV1` for `$client`, whose `$call(cid, command, args, idempotent)`
/// sends a command and decodes its answer (`None` for an empty one) and whose
/// `$required(...)` does the same for an answer that must be there.
macro_rules! commandable_client {
    ($client:ty, $call:ident, $required:ident) => {
        #[async_trait::async_trait]
        impl $crate::clients::version1::SessionsClientV1 for $client {
            async fn get_sessions(
                &self,
                correlation_id: Option<&str>,
                filter: &$crate::data::version1::SessionsFilter,
                paging: &$crate::toolkit::data::PagingParams,
            ) -> $crate::clients::version1::ClientResult<
                $crate::toolkit::data::DataPage<$crate::data::version1::SessionV1>,
            > {
                let args = $crate::clients::version1::args::get_sessions(filter, paging);
                self.$required(correlation_id, "get_sessions", &args, true).await
            }

            async fn get_session_by_id(
                &self,
                correlation_id: Option<&str>,
                session_id: &str,
            ) -> $crate::clients::version1::ClientResult<Option<$crate::data::version1::SessionV1>> {
                let args = $crate::clients::version1::args::by_id(session_id, None);
                self.$call(correlation_id, "get_session_by_id", &args, true).await
            }

            async fn open_session(
                &self,
                correlation_id: Option<&str>,
                request: $crate::data::version1::OpenSessionRequest,
            ) -> $crate::clients::version1::ClientResult<$crate::data::version1::SessionV1> {
                self.$required(correlation_id, "open_session", &request.to_args(), false).await
            }

            async fn store_session_data(
                &self,
                correlation_id: Option<&str>,
                session_id: &str,
                data: serde_json::Value,
                version: Option<i64>,
            ) -> $crate::clients::version1::ClientResult<Option<$crate::data::version1::SessionV1>> {
                let args = $crate::clients::version1::args::by_id_with(session_id, version, "data", data);
                self.$call(correlation_id, "store_session_data", &args, false).await
            }

            async fn update_session_user(
                &self,
                correlation_id: Option<&str>,
                session_id: &str,
                user: serde_json::Value,
                version: Option<i64>,
            ) -> $crate::clients::version1::ClientResult<Option<$crate::data::version1::SessionV1>> {
                let args = $crate::clients::version1::args::by_id_with(session_id, version, "user", user);
                self.$call(correlation_id, "update_session_user", &args, false).await
            }

            async fn close_session(
                &self,
                correlation_id: Option<&str>,
                session_id: &str,
                version: Option<i64>,
            ) -> $crate::clients::version1::ClientResult<Option<$crate::data::version1::SessionV1>> {
                let args = $crate::clients::version1::args::by_id(session_id, version);
                self.$call(correlation_id, "close_session", &args, true).await
            }

            async fn close_expired_sessions(
                &self,
                correlation_id: Option<&str>,
            ) -> $crate::clients::version1::ClientResult<()> {
                let args = serde_json::json!({});
                self.$call::<serde_json::Value>(correlation_id, "close_expired_sessions", &args, true).await.map(|_| ())
            }

            async fn delete_session_by_id(
                &self,
                correlation_id: Option<&str>,
                session_id: &str,
                version: Option<i64>,
            ) -> $crate::clients::version1::ClientResult<Option<$crate::data::version1::SessionV1>> {
                let args = $crate::clients::version1::args::by_id(session_id, version);
                self.$call(correlation_id, "delete_session_by_id", &args, true).await
            }

            async fn touch_session(
                &self,
                correlation_id: Option<&str>,
                session_id: &str,
                version: Option<i64>,
            ) -> $crate::clients::version1::ClientResult<Option<$crate::data::version1::SessionV1>> {
                let args = $crate::clients::version1::args::by_id(session_id, version);
                self.$call(correlation_id, "touch_session", &args, false).await
            }

            async fn validate_session(
                &self,
                correlation_id: Option<&str>,
                session_id: &str,
            ) -> $crate::clients::version1::ClientResult<$crate::data::version1::SessionValidity> {
                let args = $crate::clients::version1::args::by_id(session_id, None);
                self.$required(correlation_id, "validate_session", &args, true).await
            }

            async fn close_user_sessions(
                &self,
                correlation_id: Option<&str>,
                user_id: &str,
                except_session_id: Option<&str>,
            ) -> $crate::clients::version1::ClientResult<u64> {
                let args = $crate::clients::version1::args::close_user_sessions(user_id, except_session_id);
                let c: $crate::clients::version1::args::Count =
                    self.$required(correlation_id, "close_user_sessions", &args, true).await?;
                Ok(c.count)
            }

            async fn rotate_session_id(
                &self,
                correlation_id: Option<&str>,
                session_id: &str,
                version: Option<i64>,
            ) -> $crate::clients::version1::ClientResult<Option<$crate::data::version1::SessionV1>> {
                let args = $crate::clients::version1::args::by_id(session_id, version);
                self.$call(correlation_id, "rotate_session_id", &args, false).await
            }

            async fn purge_sessions(
                &self,
                correlation_id: Option<&str>,
            ) -> $crate::clients::version1::ClientResult<u64> {
                let args = serde_json::json!({});
                let c: $crate::clients::version1::args::Count =
                    self.$required(correlation_id, "purge_sessions", &args, true).await?;
                Ok(c.count)
            }
        }
    };
}

pub(super) use commandable_client;
