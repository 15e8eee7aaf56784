//! service-sessions: the user-sessions microservice of the Pip.Services ecosystem, in Rust.
//!
//! Layout (dependencies point inward: toolkit ← data ← persistence ← logic ← services):
//! - [`toolkit`]: the generic Pip-style kernel (container, registry, config, commands, HTTP);
//!   it imports nothing of the sessions modules.
//! - [`data`]: `SessionV1` and the typed filter.
//! - [`persistence`]: the `SessionsPersistence` contract and its backends.
//! - [`logic`]: `SessionsController` (expiry, sweep, clock) and its command set.
//! - [`services`]: the commandable HTTP API, the REST API and the two gRPC services.
//! - [`protos`]: the code generated from `sessions_v1.proto`.
//! - [`clients`]: the Rust client SDK (HTTP, gRPC and direct) other services use to call this one.
//! - [`build`]: `SessionsServiceFactory`, the only place naming concrete types.
//! - [`container`]: `SessionsProcess`, run by the `service-sessions` binary, and its maintenance
//!   commands (`export`, `import`, `verify`).
//!
//! Cargo features: `server` (the default) builds all of it; `client` alone
//! (`default-features = false, features = ["client"]`) builds the SDK only: [`data`], the
//! toolkit's core (errors, configuration, components, schemas) and the HTTP and gRPC
//! [`clients`], without any server dependency.

#[cfg(feature = "server")]
pub mod build;
#[cfg(feature = "client")]
pub mod clients;
#[cfg(feature = "server")]
pub mod container;
pub mod data;
#[cfg(feature = "server")]
pub mod logic;
#[cfg(feature = "server")]
pub mod persistence;
#[cfg(feature = "client")]
pub mod protos;
#[cfg(feature = "server")]
pub mod services;
pub mod toolkit;
