//! service-sessions: the user-sessions microservice of the Pip.Services ecosystem, in Rust.
//!
//! Layout (dependencies point inward):
//! - [`toolkit`]: the generic Pip-style kernel (container, registry, config, commands, HTTP).
pub mod toolkit;
