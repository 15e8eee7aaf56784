//! Business logic: the [`SessionsController`] and its command set.

mod commands;
mod controller;
pub mod metrics;

pub use commands::{sessions_command_set, validate_session_id};
pub use controller::{ControllerOptions, OpenSessionRequest, SessionValidity, SessionsController};
