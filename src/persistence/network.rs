//! What the settings of the network stores (MongoDB, Redis) have in common: the `credential.*`
//! section, the connection timeouts and their defaults, and the `BAD_CONFIG` error listing every
//! problem of an entry.

use crate::toolkit::config::ComponentConfig;
use crate::toolkit::errors::ApplicationError;
use serde::Deserialize;
use std::time::Duration;

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

/// The persistence entries of the shipped configuration template under `params`.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn shipped_persistences(params: &[(&str, &str)]) -> Vec<ComponentConfig> {
    use crate::toolkit::config::{parse_config, ConfigParameters};
    let template = include_str!("../../config/config.yml");
    let params: ConfigParameters = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    parse_config(template, &params).unwrap().into_iter().filter(|c| c.descriptor.typ() == Some("persistence")).collect()
}
