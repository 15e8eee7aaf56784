//! Business logic: the [`SessionsController`] and its command set.

mod commands;
mod controller;
pub mod metrics;

pub use commands::{open_session_request, open_session_schema, sessions_command_set};
pub use controller::{
    is_session_id_shape, ControllerOptions, OpenSessionRequest, SessionValidity, SessionsController,
    MAX_SESSION_ID_LENGTH, MERGE_ATTEMPTS,
};
