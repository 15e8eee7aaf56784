//! Version 1 of the sessions data contract, everything a client needs to talk to the service:
//! [`SessionV1`], the typed [`SessionsFilter`], the `open_session` parameters
//! ([`OpenSessionRequest`] and its schema), [`SessionValidity`], the shape of a session id, the
//! error codes ([`errors`]) and the base route of the commands.

pub mod errors;
mod open_session;
pub mod openapi;
mod session_v1;
mod sessions_filter;
mod validity;

pub use open_session::{open_session_schema, OpenSessionRequest, MAX_TEXT_LENGTH, MAX_USER_ID_LENGTH, MIN_TTL};
#[cfg(test)]
pub(crate) use session_v1::written_json::session as arbitrary_session;
#[cfg(feature = "server")]
pub(crate) use session_v1::{borrowed_session_accessors, session_view_times, BorrowedSession};
pub use session_v1::{
    is_session_id_shape, new_session_id, session_size_hint, session_size_hint_of, write_session, write_texts,
    SessionV1, SessionView, MAX_SESSION_ID_LENGTH,
};
pub use sessions_filter::SessionsFilter;
pub use validity::SessionValidity;

/// Default base route of the commands (`POST /v1/sessions/<command>` over commandable HTTP,
/// `v1/sessions.<command>` over commandable gRPC).
pub const BASE_ROUTE: &str = "v1/sessions";
