//! Integration tests: one binary. `helpers` boots the real container from YAML on port 0;
//! `persistence` holds the conformance fixture every backend runs; `crash` kills the real binary
//! on the file backend under load and checks that no acknowledged write is lost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod crash;
mod helpers;
mod persistence;
