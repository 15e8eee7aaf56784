//! The generic Pip.Services-style kernel: descriptors, templated configuration, the reference
//! registry, factories, the component lifecycle, the container and process, errors, commands,
//! schemas and the HTTP layer. Nothing here knows about sessions.
//!
//! Without the `server` feature only the core the clients need is built: errors, data, JSON,
//! time, schemas, commands, configuration, components and references, routes and the generated
//! `commandable.proto` client.

pub mod commands;
pub mod component;
pub mod config;
#[cfg(feature = "server")]
pub mod container;
#[cfg(feature = "server")]
pub mod counters;
pub mod data;
#[cfg(feature = "server")]
pub mod defaults;
pub mod descriptor;
pub mod errors;
#[cfg(feature = "server")]
pub mod factory;
#[cfg(feature = "client")]
pub mod grpc;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod info;
pub mod json;
#[cfg(feature = "server")]
pub mod log;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod net;
#[cfg(feature = "server")]
pub mod process;
pub mod references;
pub mod route;
pub mod schema;
#[cfg(feature = "server")]
pub mod standard;
pub mod template;
pub mod time;
