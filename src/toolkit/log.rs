//! Logging through `tracing`: the console logger component (`pip-services:logger:console:*:1.0`).
//!
//! The first logger that is configured installs the process-wide subscriber (text or JSON lines on
//! stderr, `options.format`); its level can be changed later through a reload handle. Levels
//! take Pip's names (`none`/`nothing`, `fatal`, `error`, `warn`/`warning`, `info`, `debug`,
//! `trace`) or digits 0–6.

use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::errors::ApplicationError;
use serde::Deserialize;
use std::sync::OnceLock;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

static RELOAD: OnceLock<reload::Handle<LevelFilter, tracing_subscriber::Registry>> = OnceLock::new();

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// Parses a Pip log level.
///
/// # Errors
/// `BAD_CONFIG` for an unknown level.
pub fn parse_level(s: &str) -> Result<LevelFilter, ApplicationError> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "0" | "none" | "nothing" | "off" => LevelFilter::OFF,
        "1" | "2" | "fatal" | "error" => LevelFilter::ERROR,
        "3" | "warn" | "warning" => LevelFilter::WARN,
        "4" | "info" | "" => LevelFilter::INFO,
        "5" | "debug" => LevelFilter::DEBUG,
        "6" | "trace" => LevelFilter::TRACE,
        other => {
            return Err(ApplicationError::config("BAD_CONFIG", format!("Unknown log level \"{other}\""))
                .with_details("level", other.to_string()))
        }
    })
}

/// Installs the process-wide subscriber, or changes the level when one is installed already.
pub fn install(level: LevelFilter, format: LogFormat) {
    if let Some(h) = RELOAD.get() {
        let _ = h.modify(|f| *f = level);
        return;
    }
    let (filter, handle) = reload::Layer::new(level);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_current_span(true))
            .try_init(),
    };
    if installed.is_ok() {
        let _ = RELOAD.set(handle);
    }
}

/// A log-safe stand-in for a secret identifier (a session id): the first 12 hex characters of
/// SHA-256 over a per-process random salt and the id. Stable within a process, so log lines
/// about one session can be correlated, and useless to anyone reading the logs.
pub fn redact_id(id: &str) -> String {
    use sha2::{Digest, Sha256};
    static SALT: OnceLock<[u8; 16]> = OnceLock::new();
    let salt = SALT.get_or_init(|| {
        let mut s = [0u8; 16];
        let _ = getrandom::fill(&mut s);
        s
    });
    let digest = Sha256::new().chain_update(salt).chain_update(id.as_bytes()).finalize();
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Whether a subscriber was installed by [`install`].
pub fn is_installed() -> bool {
    RELOAD.get().is_some()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoggerSettings {
    level: Option<String>,
    options: LoggerOptions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoggerOptions {
    format: LogFormat,
}

/// The console logger component.
#[derive(Debug)]
pub struct ConsoleLogger {
    level: LevelFilter,
    format: LogFormat,
}

impl ConsoleLogger {
    /// Builds the logger from its entry (`level`, `options.format`) and installs it at once, so
    /// the rest of start-up (the effective configuration, open failures) is logged.
    ///
    /// # Errors
    /// `BAD_CONFIG` for an unknown level or format.
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let s: LoggerSettings = config.section()?;
        let logger = Self { level: parse_level(s.level.as_deref().unwrap_or("info"))?, format: s.options.format };
        install(logger.level, logger.format);
        Ok(logger)
    }
}

impl Component for ConsoleLogger {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_ids_are_stable_short_and_not_the_id() {
        let a = redact_id("0123456789abcdef0123456789abcdef");
        assert_eq!(a.len(), 12);
        assert_eq!(a, redact_id("0123456789abcdef0123456789abcdef"));
        assert_ne!(a, redact_id("0123456789abcdef0123456789abcdee"));
        assert!(!"0123456789abcdef0123456789abcdef".contains(&a));
    }

    #[test]
    fn parses_pip_levels() {
        assert_eq!(parse_level("nothing").unwrap(), LevelFilter::OFF);
        assert_eq!(parse_level("FATAL").unwrap(), LevelFilter::ERROR);
        assert_eq!(parse_level("warning").unwrap(), LevelFilter::WARN);
        assert_eq!(parse_level("4").unwrap(), LevelFilter::INFO);
        assert_eq!(parse_level("6").unwrap(), LevelFilter::TRACE);
        assert_eq!(parse_level("loud").unwrap_err().code, "BAD_CONFIG");
    }
}
