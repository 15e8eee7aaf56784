//! Data contracts of the sessions service.

pub mod version1;
