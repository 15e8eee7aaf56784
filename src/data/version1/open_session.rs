//! The `open_session` contract: [`OpenSessionRequest`], its parameter schema and its one mapping
//! to and from the command arguments, shared by the services (which read it) and every client
//! (which write it).

use crate::toolkit::commands::Parameters;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::schema::{ObjectSchema, Schema};
use serde_json::{Map, Value};

/// Longest accepted `user_id`.
pub const MAX_USER_ID_LENGTH: usize = 256;
/// Longest accepted `user_name`, `address`, `client`.
pub const MAX_TEXT_LENGTH: usize = 1024;
/// Shortest `ttl` (ms) a caller may ask for.
pub const MIN_TTL: i64 = 1000;

/// Parameters of `open_session`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenSessionRequest {
    /// The user (required).
    pub user_id: String,
    /// Display name.
    pub user_name: Option<String>,
    /// Client address.
    pub address: Option<String>,
    /// Client description.
    pub client: Option<String>,
    /// Cached user object (any JSON).
    pub user: Value,
    /// Initial session data (any JSON).
    pub data: Value,
    /// The session's own idle timeout in ms (instead of `expire_timeout`).
    pub ttl: Option<i64>,
}

impl OpenSessionRequest {
    /// The command arguments (`open_session` over commandable HTTP or gRPC): every field by its
    /// contract name, `null` for an absent text, `ttl` only when set (the original knows no
    /// `ttl` and rejects nothing it does not know, but an explicit `null` would read as unset).
    pub fn to_args(&self) -> Value {
        let mut args = Map::with_capacity(7);
        args.insert("user_id".into(), Value::from(self.user_id.as_str()));
        args.insert("user_name".into(), self.user_name.as_deref().map_or(Value::Null, Value::from));
        args.insert("address".into(), self.address.as_deref().map_or(Value::Null, Value::from));
        args.insert("client".into(), self.client.as_deref().map_or(Value::Null, Value::from));
        args.insert("user".into(), self.user.clone());
        args.insert("data".into(), self.data.clone());
        if let Some(ttl) = self.ttl {
            args.insert("ttl".into(), Value::from(ttl));
        }
        Value::Object(args)
    }

    /// Reads the command arguments, already validated by [`open_session_schema`].
    ///
    /// # Errors
    /// `INVALID_DATA` when `user_id` is missing (only if the schema was not checked).
    pub fn from_args(mut args: Parameters) -> Result<Self, ApplicationError> {
        let text = |k: &str| args.get_str(k).map(str::to_string);
        let (user_id, user_name, address, client) =
            (args.required_str("user_id")?.to_string(), text("user_name"), text("address"), text("client"));
        let ttl = args.get_i64("ttl");
        // The payloads are moved out, not copied.
        Ok(Self { user_id, user_name, address, client, user: args.take("user"), data: args.take("data"), ttl })
    }
}

/// The parameters of `open_session` (also the body of `POST /api/v1/sessions`).
pub fn open_session_schema() -> ObjectSchema {
    ObjectSchema::new()
        .allow_undefined(true)
        .with_required_property("user_id", Schema::string().max_length(MAX_USER_ID_LENGTH))
        .with_optional_property("user_name", Schema::string().max_length(MAX_TEXT_LENGTH))
        .with_optional_property("address", Schema::string().max_length(MAX_TEXT_LENGTH))
        .with_optional_property("client", Schema::string().max_length(MAX_TEXT_LENGTH))
        .with_optional_property("user", Schema::any().describe("Cached user object"))
        .with_optional_property("data", Schema::any().describe("Session data"))
        .with_optional_property("ttl", Schema::integer().min(MIN_TTL).describe("Own idle timeout in ms"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full() -> OpenSessionRequest {
        OpenSessionRequest {
            user_id: "u1".into(),
            user_name: Some("User 1".into()),
            address: Some("10.0.0.1".into()),
            client: Some("test".into()),
            user: json!({"role": "admin"}),
            data: json!({"cart": []}),
            ttl: Some(60_000),
        }
    }

    #[test]
    fn arguments_round_trip_and_pass_the_schema() {
        for request in [full(), OpenSessionRequest { user_id: "u2".into(), ..Default::default() }] {
            let args = request.to_args();
            assert!(open_session_schema().validate_and_throw(None, &args).is_ok(), "{args}");
            assert_eq!(
                OpenSessionRequest::from_args(Parameters::new(args.as_object().unwrap().clone())).unwrap(),
                request
            );
        }
    }

    #[test]
    fn ttl_is_sent_only_when_set() {
        let args = OpenSessionRequest { user_id: "u1".into(), ..Default::default() }.to_args();
        assert_eq!(
            args,
            json!({"user_id": "u1", "user_name": null, "address": null, "client": null, "user": null, "data": null})
        );
        assert_eq!(full().to_args()["ttl"], json!(60_000));
    }
}
