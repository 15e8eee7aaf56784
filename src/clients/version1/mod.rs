//! Version 1 of the sessions client SDK.
//!
//! - [`SessionsClientV1`]: the operations (the eight Pip commands and the lifecycle
//!   extensions), with [`ConcurrencyControl`] helpers for optimistic concurrency.
//! - [`SessionsHttpClientV1`]: over commandable HTTP (`service-sessions:client:commandable-http:*:1.0`).
//! - `SessionsDirectClientV1`: in-process calls to a controller (`service-sessions:client:direct:*:1.0`;
//!   `server` feature only).
//! - [`SessionsCommandableGrpcClientV1`]: over Pip's commandable gRPC
//!   (`service-sessions:client:commandable-grpc:*:1.0`), and [`SessionsGrpcClientV1`]: over the
//!   typed `sessions_v1.proto` (`service-sessions:client:grpc:*:1.0`).
//! - [`SessionsClientError`]: the typed failure every client reports, mapped from the service's
//!   ErrorDescription / `ApplicationError` by category and code; [`SessionsClientError::kind`]
//!   gives the [`SessionsErrorKind`] to branch on. The codes are in
//!   [`data::version1::errors`](crate::data::version1::errors).

mod args;
mod client;
mod commandable;
#[cfg(feature = "server")]
mod direct;
mod grpc;
mod http;

pub use client::{
    ClientResult, ConcurrencyControl, ErrorInfo, SessionsClientError, SessionsClientV1, SessionsErrorKind,
};
#[cfg(feature = "server")]
pub use direct::SessionsDirectClientV1;
pub use grpc::{
    GrpcClientConnection, GrpcClientCredential, GrpcClientOptions, GrpcClientSettings, SessionsCommandableGrpcClientV1,
    SessionsGrpcClientV1,
};
pub use http::{
    CorrelationIdPlace, HttpClientConnection, HttpClientCredential, HttpClientOptions, HttpClientSettings,
    SessionsHttpClientV1, BAD_RESPONSE, CANNOT_CONNECT, NO_RESPONSE, TIMEOUT,
};
