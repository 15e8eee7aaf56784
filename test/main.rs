//! Integration tests: one binary. `helpers` boots the real container from YAML on port 0;
//! `persistence` holds the conformance fixture every backend runs; `crash` kills the real binary
//! on the file backend under load and checks that no acknowledged write is lost.
// clippy.toml's allow-*-in-tests covers `#[test]` functions and `#[cfg(test)]` modules only, not
// the fixtures and helpers of this crate, so the crate allows them itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bad_input;
mod cli;
mod clients;
mod controller;
mod crash;
mod edge;
mod fleet;
mod fuzz;
mod grpc;
#[allow(dead_code)] // shared by every test module; each uses only part of it
mod helpers;
mod kernel;
mod lifecycle_http;
mod migration;
mod migration_mongo;
mod model;
mod openapi;
#[allow(dead_code)] // shared by the compatibility tests
mod original;
mod original_config;
mod persistence;
mod process;
mod requires;
mod rest_http;
mod sessions_http;
