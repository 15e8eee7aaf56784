//! Client SDKs of the sessions service: the [`version1`] client contract with its HTTP and
//! direct (in-process) implementations, so Rust services never hand-roll the protocol.

pub mod version1;
