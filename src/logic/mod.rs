//! Business logic: the [`SessionsController`] and its command set.

mod commands;
mod controller;
pub mod metrics;

pub use commands::{open_session_request, open_session_schema, sessions_command_set, validate_session_id};
pub use controller::{ControllerOptions, OpenSessionRequest, SessionValidity, SessionsController, MERGE_ATTEMPTS};
