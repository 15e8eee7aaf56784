//! What both gRPC clients share: the lazily connected channel with the metadata every call
//! carries, the commandable `invoke`, and the mapping of gRPC statuses and `ErrorDescription`
//! replies to [`SessionsClientError`].

use super::settings::GrpcClientSettings;
use crate::clients::version1::client::{ClientResult, ErrorInfo, SessionsClientError};
use crate::clients::version1::http::{BAD_RESPONSE, CANNOT_CONNECT, NO_RESPONSE, TIMEOUT};
use crate::data::version1::BASE_ROUTE;
use crate::protos::sessions_v1 as pb;
use crate::toolkit::errors::{ApplicationError, ErrorCategory};
use crate::toolkit::grpc::commandable_proto::commandable_client::CommandableClient;
use crate::toolkit::grpc::commandable_proto::{ErrorDescription as CmdError, InvokeRequest};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::time::Duration;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

/// The channel and what every call carries.
pub(super) struct Core {
    pub(super) channel: Channel,
    api_key: Option<MetadataValue<tonic::metadata::Ascii>>,
    pub(super) name: String,
}

impl Core {
    pub(super) fn new(settings: &GrpcClientSettings) -> Result<Self, ApplicationError> {
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

    pub(super) fn request<T>(&self, message: T, cid: Option<&str>) -> tonic::Request<T> {
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
    pub(super) async fn invoke<T: DeserializeOwned>(
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

    pub(super) async fn invoke_required<T: DeserializeOwned>(
        &self,
        cid: Option<&str>,
        command: &str,
        args: &Value,
    ) -> ClientResult<T> {
        self.invoke(cid, command, args).await?.ok_or_else(|| bad_response(&format!("{command} answered with no value")))
    }
}

pub(super) fn bad_response(cause: &str) -> SessionsClientError {
    let mut info = ErrorInfo::new(ErrorCategory::Internal, BAD_RESPONSE, "The sessions service answer is not valid");
    info.cause = Some(cause.to_string());
    SessionsClientError::Internal(info)
}

/// A gRPC status (no reply) as a client error.
pub(super) fn status_error(s: tonic::Status) -> SessionsClientError {
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

pub(super) fn commandable_error(e: CmdError) -> SessionsClientError {
    let status = u16::try_from(e.status).ok().filter(|s| *s > 0);
    described_error(&e.category, status, e.code, e.message, e.details, e.correlation_id, e.cause)
}

pub(super) fn typed_error(e: pb::ErrorDescription) -> SessionsClientError {
    let status = e.status.parse::<u16>().ok();
    described_error(&e.category, status, e.code, e.message, e.details, e.correlation_id, e.cause)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
