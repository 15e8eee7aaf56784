//! Logging through `tracing`: the console logger component (`pip-services:logger:console:*:1.0`).
//!
//! The first logger that is configured installs the process-wide subscriber (text or JSON lines on
//! stderr, `options.format`); its level can be changed later through a reload handle. Levels
//! take Pip's names (`none`/`nothing`, `fatal`, `error`, `warn`/`warning`, `info`, `debug`,
//! `trace`) or digits 0–6.
//!
//! `RUST_LOG` (tracing's `EnvFilter` directives) refines the configured level per target: with
//! `RUST_LOG=service_sessions=debug,mongodb=warn` the service's own lines come at debug and the
//! MongoDB driver's only from warn up, every other target at the configured level. A bare level in
//! `RUST_LOG` (`RUST_LOG=debug`) replaces the configured one. Invalid directives are ignored (and
//! reported on stderr).

use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::errors::ApplicationError;
use serde::Deserialize;
use std::sync::OnceLock;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

static RELOAD: OnceLock<reload::Handle<EnvFilter, tracing_subscriber::Registry>> = OnceLock::new();

/// The filter of a configured level refined by `RUST_LOG`-style directives (`None` or blank: the
/// level alone).
pub fn filter(level: LevelFilter, directives: Option<&str>) -> EnvFilter {
    let Some(d) = directives.map(str::trim).filter(|d| !d.is_empty()) else {
        return EnvFilter::builder().parse_lossy(level.to_string());
    };
    // The configured level first: a bare level in the directives comes later and replaces it.
    let all = format!("{level},{d}");
    EnvFilter::builder().parse(&all).unwrap_or_else(|e| {
        eprintln!("RUST_LOG: {e}; ignoring what cannot be read");
        EnvFilter::builder().parse_lossy(&all)
    })
}

/// [`filter`] with the process's `RUST_LOG`.
fn env_filter(level: LevelFilter) -> EnvFilter {
    filter(level, std::env::var("RUST_LOG").ok().as_deref())
}

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

/// Installs the process-wide subscriber, or changes the level when one is installed already
/// (`RUST_LOG` refining it either way).
pub fn install(level: LevelFilter, format: LogFormat) {
    if let Some(h) = RELOAD.get() {
        let _ = h.modify(|f| *f = env_filter(level));
        return;
    }
    let (filter, handle) = reload::Layer::new(env_filter(level));
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

    /// The lines a subscriber with `filter(level, directives)` writes for one event per target.
    fn written(level: LevelFilter, directives: Option<&str>) -> String {
        use std::sync::{Arc, Mutex};
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let layer = tracing_subscriber::fmt::layer().with_ansi(false).with_writer(move || Writer(sink.clone()));
        let subscriber = tracing_subscriber::registry().with(filter(level, directives)).with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "service_sessions::logic", "own debug");
            tracing::info!(target: "service_sessions::logic", "own info");
            tracing::info!(target: "mongodb::topology", "driver info");
            tracing::warn!(target: "mongodb::topology", "driver warn");
            tracing::debug!(target: "hyper::proto", "other debug");
            tracing::info!(target: "hyper::proto", "other info");
        });
        let bytes = out.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct Writer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Writer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn events(text: &str) -> Vec<&str> {
        ["own debug", "own info", "driver info", "driver warn", "other debug", "other info"]
            .into_iter()
            .filter(|e| text.contains(e))
            .collect()
    }

    #[test]
    fn rust_log_refines_the_configured_level_per_target() {
        let configured = written(LevelFilter::INFO, None);
        assert_eq!(events(&configured), ["own info", "driver info", "driver warn", "other info"]);
        let refined = written(LevelFilter::INFO, Some("service_sessions=debug,mongodb=warn"));
        assert_eq!(events(&refined), ["own debug", "own info", "driver warn", "other info"]);
        let bare = written(LevelFilter::WARN, Some("debug"));
        assert_eq!(events(&bare), ["own debug", "own info", "driver info", "driver warn", "other debug", "other info"]);
        // What cannot be read is left out; the rest still applies.
        let partly = written(LevelFilter::ERROR, Some("service_sessions=debug,=[bad"));
        assert_eq!(events(&partly), ["own debug", "own info"]);
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
