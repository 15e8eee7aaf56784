//! Business logic: the [`SessionsController`] and its command set.

mod commands;
mod controller;
pub mod metrics;

pub use commands::sessions_command_set;
pub use controller::{ControllerOptions, SessionsController, MERGE_ATTEMPTS};
