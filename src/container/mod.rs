//! `SessionsProcess`: the process container of the sessions microservice, and its maintenance
//! commands.
//!
//! `service-sessions [-c <config>] [-p k=v]…` runs the service. The subcommands work on the
//! store the same configuration names, opened exactly as the service opens it (the `-p` pairs
//! and the environment applied, through the same factory), but without any endpoint:
//! - `export` writes the store as the original service's JSON file ([`migrate`]);
//! - `import` loads such a file, or a MongoDB collection in the original's format, into it;
//! - `verify` checks the file backend's folder without opening it ([`verify`]);
//! - `healthcheck` asks the running service's `/heartbeat` ([`healthcheck`]).
//!
//! `--check` validates the configuration (template, descriptors, every component's settings and
//! references; every problem listed) without opening anything, and exits 0 or 1. The
//! configuration is `-c`, else the `CONFIG_PATH` environment variable, else
//! `./config/config.yml`.
//!
//! Exit codes: 0 done; 1 could not be done (bad arguments, configuration, a store that cannot be
//! opened or read); 2 done, but the data has a problem (`verify` found damage, `import` met items
//! that are not sessions).

pub mod healthcheck;
pub mod migrate;
pub mod verify;

use crate::build::SessionsServiceFactory;
use crate::persistence::file::FILE_LOCKED;
use crate::persistence::SessionsPersistence;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::container::Container;
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::process::{ProcessArgs, ProcessContainer};
use clap::{Parser, Subcommand};
use std::sync::Arc;

/// The process name used in messages.
const NAME: &str = "service-sessions";

/// Exit code: the command could not be done.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: done, but the data has a problem.
pub const EXIT_DATA_PROBLEM: i32 = 2;

/// The command line of the `service-sessions` binary.
#[derive(Debug, Parser)]
#[command(name = "service-sessions", about, version)]
pub struct SessionsArgs {
    /// The configuration (`-c`) and its parameters (`-p`).
    #[command(flatten)]
    pub process: ProcessArgs,
    /// Validate the configuration (template, descriptors, settings, references: every problem
    /// listed) and exit 0 if it is valid, 1 if not, without opening anything.
    #[arg(long)]
    pub check: bool,
    /// A maintenance command; without one the service runs.
    #[command(subcommand)]
    pub command: Option<SessionsCommand>,
}

/// The maintenance commands.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Write the configured store as the original service's JSON file (service-sessions-node's
    /// file persistence), which the original loads.
    Export(migrate::ExportArgs),
    /// Load sessions from the original's JSON file or MongoDB collection into the configured
    /// store, keeping ids, times and versions. Safe to run again.
    Import(migrate::ImportArgs),
    /// Check the file backend's folder (every frame of the snapshot and the logs) without
    /// opening it or changing anything.
    Verify(verify::VerifyArgs),
    /// Ask the running service of this configuration for its heartbeat (`GET /heartbeat` on the
    /// HTTP endpoint's port): exit 0 when it answers 200, 1 otherwise.
    Healthcheck(healthcheck::HealthcheckArgs),
}

/// The sessions microservice process.
#[derive(Debug, Default)]
pub struct SessionsProcess;

impl SessionsProcess {
    /// Runs the service until SIGINT/SIGTERM; returns the exit code.
    pub async fn run(args: ProcessArgs) -> i32 {
        Self::process().run(args).await
    }

    /// Runs what the command line asks: a maintenance command, or the service; returns the exit
    /// code.
    pub async fn main(args: SessionsArgs) -> i32 {
        let process = Self::process();
        if args.check {
            if args.command.is_some() {
                eprintln!("{NAME}: --check validates the configuration of the service; it takes no command");
                return EXIT_FAILED;
            }
            return Self::check(&process, &args.process);
        }
        let Some(command) = args.command else { return process.run(args.process).await };
        // Warnings of the components (a repaired torn tail, a skipped document) go to stderr;
        // stdout carries the command's report (or the exported file).
        crate::toolkit::log::install(
            tracing_subscriber::filter::LevelFilter::WARN,
            crate::toolkit::log::LogFormat::Text,
        );
        let result = match command {
            SessionsCommand::Export(a) => migrate::export(&process, &args.process, &a).await,
            SessionsCommand::Import(a) => migrate::import(&process, &args.process, &a).await,
            SessionsCommand::Verify(a) => verify::verify(&process, &args.process, &a).await,
            SessionsCommand::Healthcheck(a) => healthcheck::healthcheck(&process, &args.process, &a).await,
        };
        match result {
            Ok(code) => code,
            Err(e) => {
                process.report("failed", &e);
                EXIT_FAILED
            }
        }
    }

    /// `--check`: every problem of the configuration on stderr (exit 1), or a one-line summary
    /// on stdout (exit 0).
    fn check(process: &ProcessContainer, args: &ProcessArgs) -> i32 {
        match process.check(args) {
            Ok(n) => {
                println!("{NAME}: configuration {} is valid ({n} components)", args.config);
                0
            }
            Err(e) => {
                process.report(&format!("configuration {} is not valid", args.config), &e);
                EXIT_FAILED
            }
        }
    }

    fn process() -> ProcessContainer {
        ProcessContainer::new(NAME, Arc::new(SessionsServiceFactory::composite()))
    }
}

/// Builds the configured persistence component without opening it and, when it is a `T`, reads
/// `inspect` of it; also the configured persistence entries (for messages).
async fn inspect_configured_store<T: Send + Sync + 'static, R>(
    process: &ProcessContainer,
    args: &ProcessArgs,
    inspect: impl FnOnce(&T) -> R,
) -> Result<(Option<R>, Vec<ComponentConfig>), ApplicationError> {
    let (built, configs) = process.build_selected(args, &persistence_locator())?;
    let found = built.references().get_one_optional::<T>(&persistence_locator()).map(|t| inspect(&t));
    built.close(None).await;
    Ok((found, configs))
}

/// `service-sessions:persistence:*:*:1.0`: every persistence component.
fn persistence_locator() -> Descriptor {
    Descriptor::new("service-sessions", "persistence", "*", "*", "1.0")
}

/// The configured store, opened as the service opens it (and nothing else of the configuration).
pub(crate) struct ConfiguredStore {
    /// The container holding only the store (close it when done).
    pub container: Container,
    /// The store's descriptor as configured.
    pub descriptor: Descriptor,
    /// The store.
    pub persistence: Arc<dyn SessionsPersistence>,
}

impl ConfiguredStore {
    /// Opens the one persistence component of the configuration.
    pub(crate) async fn open(process: &ProcessContainer, args: &ProcessArgs) -> Result<Self, ApplicationError> {
        // A configuration naming no store, or several, is refused before anything opens.
        let configured: Vec<Descriptor> = process
            .read_config(args)?
            .into_iter()
            .map(|c| c.descriptor)
            .filter(|d| d.matches(&persistence_locator()))
            .collect();
        let descriptor = single_store(&configured)?;
        let (container, _) = process.open_selected(args, &persistence_locator()).await.map_err(|e| {
            if e.code == FILE_LOCKED {
                let m = format!("{}; stop the service first", e.message);
                ApplicationError { message: m, ..e }
            } else {
                e
            }
        })?;
        let persistence = container.references().get_one_required::<dyn SessionsPersistence>(&persistence_locator())?;
        Ok(Self { container, descriptor, persistence })
    }

    /// `host:port/database.collection` when the configured store is MongoDB (built, not opened).
    pub(crate) async fn mongodb_target(
        process: &ProcessContainer,
        args: &ProcessArgs,
    ) -> Result<Option<String>, ApplicationError> {
        use crate::persistence::mongodb::SessionsMongoDbPersistence;
        let (target, _) =
            inspect_configured_store(process, args, |m: &SessionsMongoDbPersistence| m.target().to_string()).await?;
        Ok(target)
    }

    /// A name for messages: `file store /data/sessions`, `mongodb store host:27017/app.sessions`.
    pub(crate) fn describe(&self) -> String {
        use crate::persistence::file::SessionsFilePersistence;
        use crate::persistence::mongodb::SessionsMongoDbPersistence;
        let refs = self.container.references();
        if let Some(f) = refs.get_one_optional::<SessionsFilePersistence>(&persistence_locator()) {
            format!("file store {}", f.dir().display())
        } else if let Some(m) = refs.get_one_optional::<SessionsMongoDbPersistence>(&persistence_locator()) {
            format!("mongodb store {}", m.target())
        } else {
            format!("{} store", self.descriptor.kind().unwrap_or("?"))
        }
    }

    /// The folder of a file store.
    pub(crate) fn file_dir(&self) -> Option<std::path::PathBuf> {
        use crate::persistence::file::SessionsFilePersistence;
        self.container
            .references()
            .get_one_optional::<SessionsFilePersistence>(&persistence_locator())
            .map(|f| f.dir().to_path_buf())
    }

    /// Whether the store lives only in this process (the memory backend).
    pub(crate) fn is_memory(&self) -> bool {
        self.descriptor.kind() == Some("memory")
    }

    /// Closes the store (a file store writes and fsyncs everything first).
    pub(crate) async fn close(self) {
        self.container.close(None).await;
    }
}

/// The one store descriptor, or why there is not exactly one.
fn single_store(descriptors: &[Descriptor]) -> Result<Descriptor, ApplicationError> {
    match descriptors {
        [one] => Ok(one.clone()),
        [] => Err(ApplicationError::config("NO_STORE", "The configuration enables no persistence component")),
        many => Err(ApplicationError::config(
            "SEVERAL_STORES",
            format!(
                "The configuration enables {} persistence components ({}); enable exactly one",
                many.len(),
                many.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// A session id shortened for reports: ids are bearer secrets, so only the first 8 characters.
pub(crate) fn short_id(id: &str) -> String {
    let head: String = id.chars().take(8).collect();
    if head.len() < id.len() {
        format!("{head}…")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommands_take_the_process_options_before_or_after() {
        let a = SessionsArgs::try_parse_from(["x", "-c", "a.yml", "export", "--out", "-", "-p", "K=V"]).unwrap();
        assert_eq!((a.process.config.as_str(), a.process.params.as_slice()), ("a.yml", &["K=V".to_string()][..]));
        assert!(matches!(a.command, Some(SessionsCommand::Export(_))));
        let a = SessionsArgs::try_parse_from(["x", "import", "--from", "f.json", "--config", "b.yml"]).unwrap();
        assert_eq!(a.process.config, "b.yml");
        let a = SessionsArgs::try_parse_from(["x", "-p", "A=1"]).unwrap();
        assert!(a.command.is_none());
        assert_eq!(a.process.config, "./config/config.yml");
    }

    #[test]
    fn ids_are_shortened_and_one_store_is_required() {
        assert_eq!(short_id("0123456789abcdef"), "01234567…");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(single_store(&[]).unwrap_err().code, "NO_STORE");
        let d = persistence_locator();
        assert_eq!(single_store(&[d.clone(), d]).unwrap_err().code, "SEVERAL_STORES");
    }
}
