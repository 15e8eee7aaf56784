//! The generic Pip.Services-style kernel: descriptors, templated configuration, the reference
//! registry, factories, the component lifecycle, the container and process, errors, commands,
//! schemas and the HTTP layer. Nothing here knows about sessions.

pub mod commands;
pub mod component;
pub mod config;
pub mod container;
pub mod counters;
pub mod data;
pub mod defaults;
pub mod descriptor;
pub mod errors;
pub mod factory;
pub mod grpc;
pub mod http;
pub mod info;
pub mod json;
pub mod log;
pub mod metrics;
pub mod process;
pub mod references;
pub mod route;
pub mod schema;
pub mod standard;
pub mod template;
pub mod time;
