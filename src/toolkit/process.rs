//! The process container: command line, parameters, logging, signals and exit codes.
//!
//! `-c/--config <file>` (else the `CONFIG_PATH` environment variable, as in Pip, else
//! `./config/config.yml`), `-p/--param k=v` (repeatable, and one
//! value may carry `k=v;k2=v2`), `-h/--help`. Template parameters are the `-p` pairs overridden
//! by the process environment, as in Pip. SIGINT and SIGTERM close every component (awaited,
//! bounded) and exit 0; a start-up failure prints every reason on stderr and exits 1.
//!
//! Maintenance commands of a service (export a store, import into it, ...) run on the same
//! configuration without serving: [`ProcessContainer::build_selected`] and
//! [`ProcessContainer::open_selected`] build (and open) only the entries whose descriptors match
//! a locator, through the same factory and container path as the service, so a store is opened
//! exactly as the service would open it. `-c` and `-p` are global options, so a binary that adds
//! subcommands accepts them before or after the subcommand.

use super::config::{parse_config, ComponentConfig, ConfigParameters};
use super::container::Container;
use super::descriptor::Descriptor;
use super::errors::ApplicationError;
use super::factory::Factory;
use clap::Parser;
use std::sync::Arc;
use std::time::Duration;

/// Command-line arguments of a process container.
#[derive(Debug, Parser)]
#[command(about, version)]
pub struct ProcessArgs {
    /// Path of the configuration file.
    #[arg(short = 'c', long = "config", env = "CONFIG_PATH", default_value = "./config/config.yml", global = true)]
    pub config: String,
    /// Template parameter `k=v` (repeatable; `k=v;k2=v2` allowed).
    #[arg(short = 'p', long = "param", visible_alias = "params", global = true)]
    pub params: Vec<String>,
}

/// Parses `k=v;k2=v2` lists (later keys win).
pub fn parse_params(values: &[String]) -> ConfigParameters {
    let mut out = ConfigParameters::new();
    for value in values {
        for pair in value.split(';').filter(|p| !p.trim().is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            out.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    out
}

/// The template parameters: `-p` pairs, then the environment on top (Pip's precedence).
pub fn parameters(args: &ProcessArgs) -> ConfigParameters {
    let mut p = parse_params(&args.params);
    for (k, v) in std::env::vars() {
        p.insert(k, v);
    }
    p
}

/// A process container around a factory.
pub struct ProcessContainer {
    name: String,
    factory: Arc<dyn Factory>,
}

impl std::fmt::Debug for ProcessContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessContainer").field("name", &self.name).finish_non_exhaustive()
    }
}

impl ProcessContainer {
    /// A process named `name` (used in messages) creating components with `factory`.
    pub fn new(name: &str, factory: Arc<dyn Factory>) -> Self {
        Self { name: name.to_string(), factory }
    }

    /// The process name (used in messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs until SIGINT/SIGTERM; returns the process exit code.
    pub async fn run(self, args: ProcessArgs) -> i32 {
        // Listening for the stop signals before anything opens: a SIGTERM that arrives while the
        // components start (an orchestrator giving up on a slow start, a test that stops the
        // process as soon as it listens) stops it gracefully instead of killing it outright.
        let stop = StopSignals::listen();
        let text = match std::fs::read_to_string(&args.config) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: cannot read the configuration file {}: {e}", self.name, args.config);
                return 1;
            }
        };
        let container = Container::new(self.factory.clone());
        if let Err(e) = container.open_text(&text, &parameters(&args), Some(&self.name)).await {
            self.report("failed to start", &e);
            return 1;
        }
        if !super::log::is_installed() {
            // No console logger: Info by default, nothing when loggers are configured (null or
            // composite ones only: Pip's null logger swallows, a composite has no targets).
            let any_logger = container.references().locators().iter().any(|d| d.typ() == Some("logger"));
            let level = if any_logger {
                tracing_subscriber::filter::LevelFilter::OFF
            } else {
                tracing_subscriber::filter::LevelFilter::INFO
            };
            super::log::install(level, super::log::LogFormat::Text);
        }
        tracing::info!("Press Control-C to stop the microservice...");
        stop.wait().await;
        tracing::info!("Stopping the microservice.");
        let _ = tokio::time::timeout(Duration::from_secs(60), container.close(Some(&self.name))).await;
        tracing::info!("Goodbye!");
        0
    }

    /// Checks the configuration of `args` as start-up would (template, descriptors, every
    /// component's settings and references) without opening anything; returns how many
    /// components it has.
    ///
    /// # Errors
    /// As [`ProcessContainer::read_config`], and every problem at once (`details.errors`).
    pub fn check(&self, args: &ProcessArgs) -> Result<usize, ApplicationError> {
        Container::new(self.factory.clone()).check_text(&config_text(args)?, &parameters(args))
    }

    /// Prints an error on stderr: `<name>: <what>: <message>`, then each listed problem
    /// (`details.errors`) on a line of its own, and the cause when there is one.
    pub fn report(&self, what: &str, e: &ApplicationError) {
        eprintln!("{}: {what}: {}", self.name, e.message);
        if let Some(errors) = e.details.get("errors").and_then(|v| v.as_array()) {
            for err in errors {
                eprintln!("  - {}", err.as_str().unwrap_or_default());
            }
        }
        if let Some(cause) = &e.cause {
            eprintln!("  cause: {cause}");
        }
    }

    /// Reads and renders the configuration file of `args` (the `-p` pairs with the process
    /// environment on top, as for the service) into its component entries.
    ///
    /// # Errors
    /// `FileError` / `CONFIG_UNREADABLE` naming the file; template and YAML errors.
    pub fn read_config(&self, args: &ProcessArgs) -> Result<Vec<ComponentConfig>, ApplicationError> {
        parse_config(&config_text(args)?, &parameters(args))
    }

    /// Builds (creates, configures and references) only the configured entries matching
    /// `select`, without opening them. The entries are returned too (in file order).
    ///
    /// # Errors
    /// As [`ProcessContainer::read_config`] and [`Container::build`].
    pub fn build_selected(
        &self,
        args: &ProcessArgs,
        select: &Descriptor,
    ) -> Result<(Container, Vec<ComponentConfig>), ApplicationError> {
        let configs = selected(self.read_config(args)?, select);
        let container = Container::new(self.factory.clone());
        container.build(&configs, Some(&self.name))?;
        Ok((container, configs))
    }

    /// Builds and opens only the configured entries matching `select` (for instance the store
    /// of a service, with no endpoint), exactly as the service opens them. The caller closes the
    /// container. The entries are returned too (in file order).
    ///
    /// # Errors
    /// As [`ProcessContainer::read_config`] and [`Container::open`].
    pub async fn open_selected(
        &self,
        args: &ProcessArgs,
        select: &Descriptor,
    ) -> Result<(Container, Vec<ComponentConfig>), ApplicationError> {
        let configs = selected(self.read_config(args)?, select);
        let container = Container::new(self.factory.clone());
        container.open(configs.clone(), Some(&self.name)).await?;
        Ok((container, configs))
    }
}

/// The text of the configuration file of `args`.
fn config_text(args: &ProcessArgs) -> Result<String, ApplicationError> {
    std::fs::read_to_string(&args.config).map_err(|e| {
        ApplicationError::file_error(
            "CONFIG_UNREADABLE",
            format!("cannot read the configuration file {}: {e}", args.config),
        )
    })
}

/// The entries whose descriptors match `select`, in file order.
fn selected(configs: Vec<ComponentConfig>, select: &Descriptor) -> Vec<ComponentConfig> {
    configs.into_iter().filter(|c| c.descriptor.matches(select)).collect()
}

/// SIGINT and SIGTERM, listened for from the moment this is made (a signal that arrives before
/// [`StopSignals::wait`] is kept, not lost to the default action).
struct StopSignals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Self { terminate: signal(SignalKind::terminate()).ok(), interrupt: signal(SignalKind::interrupt()).ok() }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Until either signal arrives (or came already).
    async fn wait(mut self) {
        #[cfg(unix)]
        {
            if self.terminate.is_none() && self.interrupt.is_none() {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = next(&mut self.terminate) => {},
                _ = next(&mut self.interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_params() {
        let p = parse_params(&["a=1;b=2".to_string(), "c=x=y".to_string(), "a=3".to_string(), "flag".to_string()]);
        assert_eq!(p.get("a").map(String::as_str), Some("3"));
        assert_eq!(p.get("b").map(String::as_str), Some("2"));
        assert_eq!(p.get("c").map(String::as_str), Some("x=y"));
        assert_eq!(p.get("flag").map(String::as_str), Some(""));
    }

    #[test]
    fn cli_accepts_pip_flags() {
        let a = ProcessArgs::try_parse_from(["x", "-c", "cfg.yml", "-p", "A=1", "--param", "B=2"])
            .unwrap_or_else(|_| ProcessArgs { config: String::new(), params: vec![] });
        assert_eq!(a.config, "cfg.yml");
        assert_eq!(a.params, vec!["A=1", "B=2"]);
    }
}
