//! Network services of the sessions microservice.

pub mod version1;
