//! The sessions client over gRPC, in the two shapes the service offers:
//!
//! - [`SessionsCommandableGrpcClientV1`] (`service-sessions:client:commandable-grpc:*:1.0`): every
//!   operation over Pip's `commandable.proto` (`invoke` of `v1/sessions.<command>` with JSON
//!   arguments) — the same commands, results and errors as commandable HTTP, extensions included.
//! - [`SessionsGrpcClientV1`] (`service-sessions:client:grpc:*:1.0`): the original eight
//!   operations over the typed `sessions_v1.proto`. That proto has no `version`, `expire_time` or
//!   `ttl`: sessions it returns carry `version` 0 and neither of the others, list items carry no
//!   `user`/`data`, and a page whose total was not asked for has `total` `None`. What the proto
//!   cannot express — the extension operations, `ttl` on open, any write with a `version` and the
//!   concurrency helpers (`update_data`, `update_user`, `modify_data`), which read versions —
//!   goes over commandable gRPC on the same connection (both services share the service's gRPC
//!   endpoint).
//!
//! Configuration (Pip's `GrpcClient` keys):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `connection.uri` | — | `http://host:port`; else `protocol://host:port` |
//! | `connection.protocol` / `host` / `port` | `http` / `localhost` / `8090` | plain HTTP/2 only |
//! | `options.timeout` | 10 000 ms | per-call deadline (0 = none) |
//! | `options.connect_timeout` | 10 000 ms | connection timeout (0 = none) |
//! | `credential.api_key` | — | sent as `x-api-key` metadata; never shown in `Debug` |
//!
//! Failures map to [`SessionsClientError`] like the HTTP client's: an `ErrorDescription` in the
//! reply by its category (its string `details` are read back as JSON where they parse, so
//! `details.version` of a version conflict is a number again), a gRPC status by its code
//! (`UNAVAILABLE`, `DEADLINE_EXCEEDED` → `Unavailable`; `UNAUTHENTICATED` → `Unauthorized`;
//! `UNIMPLEMENTED` → `NotFound`; `INVALID_ARGUMENT`, `OUT_OF_RANGE`, `RESOURCE_EXHAUSTED` →
//! `BadRequest`; the rest → `Internal`). Calls are not retried.

mod commandable;
mod core;
mod settings;
mod typed;

pub use commandable::SessionsCommandableGrpcClientV1;
pub use settings::{GrpcClientConnection, GrpcClientCredential, GrpcClientOptions, GrpcClientSettings};
pub use typed::SessionsGrpcClientV1;
