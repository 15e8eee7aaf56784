//! Version 1 of the sessions data contract: [`SessionV1`] and the typed [`SessionsFilter`].

pub mod openapi;
mod session_v1;
mod sessions_filter;

pub use session_v1::{new_session_id, SessionV1};
pub use sessions_filter::SessionsFilter;
