//! What the network stores (MongoDB, Redis) have in common: in their settings the `credential.*`
//! section, the connection timeouts and their defaults, and the `BAD_CONFIG` error listing every
//! problem of an entry; at run time the readiness their background connector maintains and the
//! errors of a store that does not answer, refuses the credentials or fails.

use super::{connect_in_background, redact};
use crate::toolkit::component::ComponentHealth;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::errors::ApplicationError;
use parking_lot::Mutex;
use serde::Deserialize;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Default `options.connect_timeout` in milliseconds.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Default `options.socket_timeout` in milliseconds.
pub const DEFAULT_SOCKET_TIMEOUT_MS: u64 = 5_000;

/// `credential.username` / `credential.password` as written; empty text counts as absent.
#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct CredentialSettings {
    username: Option<String>,
    password: Option<String>,
}

impl CredentialSettings {
    /// The username, unless absent or empty.
    pub(crate) fn username(&self) -> Option<String> {
        self.username.clone().filter(|u| !u.is_empty())
    }

    /// The password, unless absent or empty.
    pub(crate) fn password(&self) -> Option<String> {
        self.password.clone().filter(|p| !p.is_empty())
    }
}

/// Checks the options every network store has (`connect_timeout`, `max_page_size`), adding
/// what is wrong to `problems`.
pub(crate) fn check_common_options(connect_timeout_ms: u64, max_page_size: u64, problems: &mut Vec<String>) {
    if connect_timeout_ms == 0 {
        problems.push("options.connect_timeout must be positive".to_string());
    }
    if max_page_size == 0 {
        problems.push("options.max_page_size must be positive".to_string());
    }
}

/// How long one call may take: connecting, then the socket timeout.
pub(crate) fn call_timeout(connect_timeout_ms: u64, socket_timeout_ms: u64) -> Duration {
    Duration::from_millis(connect_timeout_ms.saturating_add(socket_timeout_ms))
}

/// The `BAD_CONFIG` error of an entry: every problem in the message and in `details.errors`.
pub(crate) fn bad_config(config: &ComponentConfig, problems: Vec<String>) -> ApplicationError {
    ApplicationError::config(
        "BAD_CONFIG",
        format!("Component #{} ({}): {}", config.index + 1, config.descriptor, problems.join("; ")),
    )
    .with_details("descriptor", config.descriptor.to_string())
    .with_details("errors", problems)
}

/// Whether a network store is ready: its background connector prepared it (it answered at least
/// once), and otherwise the latest connection problem (redacted), for `health`.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    prepared: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Readiness {
    /// Runs the background connector (see [`connect_in_background`]) with `attempt`, recording
    /// each failure, and marks the store prepared when an attempt succeeds.
    pub(crate) async fn connect<F, Fut>(&self, store: &str, target: &str, stop: CancellationToken, attempt: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), ApplicationError>>,
    {
        let ready =
            connect_in_background(store, target, stop, attempt, |message| *self.last_error.lock() = Some(message))
                .await;
        if ready {
            self.prepared.store(true, Ordering::Relaxed);
            *self.last_error.lock() = None;
        }
    }

    /// Forgets the preparation (the store was closed).
    pub(crate) fn reset(&self) {
        self.prepared.store(false, Ordering::Relaxed);
    }

    /// `None` once prepared; before that the not-ready health naming the store and why.
    pub(crate) fn not_prepared(&self, store: &str, target: &str) -> Option<ComponentHealth> {
        if self.prepared.load(Ordering::Relaxed) {
            return None;
        }
        let why = self.last_error.lock().clone().unwrap_or_else(|| "connecting".to_string());
        Some(ComponentHealth::not_ready(format!("{store} {target}: {why}")))
    }
}

/// `STORE_UNAVAILABLE` (503): the store did not answer; `cause` is redacted of `secrets`.
pub(crate) fn store_unavailable(cause: &str, secrets: &[String]) -> ApplicationError {
    ApplicationError::no_response("STORE_UNAVAILABLE", "The sessions store is not reachable")
        .with_cause(redact(cause, secrets))
}

/// `STORE_AUTH_FAILED`: the store refused the credentials; `cause` is redacted of `secrets`.
pub(crate) fn store_auth_failed(cause: &str, secrets: &[String]) -> ApplicationError {
    ApplicationError::config("STORE_AUTH_FAILED", "The sessions store refused the credentials")
        .with_cause(redact(cause, secrets))
}

/// `STORE_FAILED` (500): any other store failure; `cause` must hold no secret or stored value.
pub(crate) fn store_failed(cause: String) -> ApplicationError {
    ApplicationError::internal("STORE_FAILED", "The sessions store failed").with_cause(cause)
}

/// The persistence entries of the shipped configuration template under `params`.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn shipped_persistences(params: &[(&str, &str)]) -> Vec<ComponentConfig> {
    use crate::toolkit::config::{parse_config, ConfigParameters};
    let template = include_str!("../../config/config.yml");
    let params: ConfigParameters = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    parse_config(template, &params).unwrap().into_iter().filter(|c| c.descriptor.typ() == Some("persistence")).collect()
}
