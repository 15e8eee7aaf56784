//! `export` and `import`: moving sessions between this service's store and the original
//! service's formats, in both directions.
//!
//! **export** walks the configured store with the persistence's resumable `scan` (whole
//! sessions, in list order) and writes the original's JSON file layout
//! ([`crate::persistence::node_json`]) to a temp file beside the target, fsyncs it, renames it
//! into place and fsyncs the folder, so the target is either the old file or the whole new one.
//! The file backend's lock makes it refuse a store a running service has open; on MongoDB the
//! services writing to the collection must be stopped first, or sessions changed during the
//! walk may be missing from the file.
//!
//! **import** reads the original's JSON file, or a MongoDB collection in the original's format
//! (read-only: no index is created, nothing written), and stores every session as it is — id,
//! times, version, payload — with the persistence's `create`. Re-running is safe: a session whose
//! id the store already holds is compared with it; an identical one counts as unchanged, another
//! state is kept and reported as skipped (the store may have changed it since the first import),
//! unless `--replace` overwrites it (delete, then create). Items that are not sessions, and ids
//! the service could never serve, are counted as unreadable and reported by position and a
//! shortened id. Importing a collection into itself is refused.

use super::{short_id, ConfiguredStore, EXIT_DATA_PROBLEM};
use crate::build::mongodb_persistence_descriptor;
use crate::data::version1::errors::SESSION_EXISTS;
use crate::data::version1::is_session_id_shape;
use crate::data::version1::SessionV1;
use crate::persistence::mongodb::{DocumentReader, SessionsMongoDbPersistence};
use crate::persistence::{node_json, SessionsPersistence};
use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::process::{ProcessArgs, ProcessContainer};
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Sessions read from the store per `scan` step.
const EXPORT_STEP: u64 = 1000;
/// Sessions handled per import step.
const IMPORT_STEP: usize = 512;
/// Writes in flight during an import (the file backend shares one fsync among them).
const IMPORT_CONCURRENCY: usize = 256;
/// Detail lines printed per kind (skipped, unreadable) before "… and N more".
const DETAIL_LINES: usize = 20;

/// `export` options.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The file to write, or `-` for stdout. Written to a temp file beside it, fsynced and
    /// renamed into place.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: String,
    /// Replace the file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `import` options.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The original's JSON file, or a MongoDB connection string naming the database
    /// (`mongodb://host:27017/app`).
    #[arg(long = "from", value_name = "FILE|URI")]
    pub from: String,
    /// The MongoDB collection to read (default `sessions`, the original's default).
    #[arg(long, value_name = "NAME")]
    pub collection: Option<String>,
    /// Overwrite the sessions the store holds in another state (default: keep the store's and
    /// report them as skipped).
    #[arg(long)]
    pub replace: bool,
    /// Read and compare, but change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What an export wrote.
#[derive(Debug, Default)]
struct ExportStats {
    sessions: u64,
    open: u64,
    bytes: u64,
}

/// Runs `export`.
///
/// # Errors
/// Configuration, store and I/O failures (nothing is left at the target then).
pub async fn export(process: &ProcessContainer, args: &ProcessArgs, a: &ExportArgs) -> Result<i32, ApplicationError> {
    let to_stdout = a.out == "-";
    let out = PathBuf::from(&a.out);
    if !to_stdout {
        if out.is_dir() {
            return Err(ApplicationError::config("BAD_OUT", format!("{} is a folder; name a file", out.display())));
        }
        if out.exists() && !a.force {
            return Err(ApplicationError::config(
                "OUT_EXISTS",
                format!("{} exists; pass --force to replace it", out.display()),
            ));
        }
    }
    let store = ConfiguredStore::open(process, args).await?;
    if store.is_memory() {
        eprintln!("{}: warning: the configured store is the memory backend, empty in a new process", process.name());
    }
    let started = Instant::now();
    let persistence = store.persistence.clone();
    let result = if to_stdout {
        let mut w = io::BufWriter::with_capacity(1 << 20, io::stdout());
        let r = write_sessions(&*persistence, &mut w).await;
        r.and_then(|s| w.flush().map(|()| s).map_err(|e| write_failed(Path::new("stdout"), &e)))
    } else {
        write_atomically(&*persistence, &out).await
    };
    let what = store.describe();
    // Exported over the JSON file a `.json` path names: the folder of that path would shadow it.
    let shadowing = store.file_dir().filter(|dir| !to_stdout && crate::persistence::file::store_dir(&out) == *dir);
    store.close().await;
    let stats = result?;
    let summary = format!(
        "Exported {} sessions ({} open, {} closed) from the {what} to {} in the original's JSON format: {} bytes, {:.2} s",
        stats.sessions,
        stats.open,
        stats.sessions - stats.open,
        if to_stdout { "stdout".to_string() } else { out.display().to_string() },
        stats.bytes,
        started.elapsed().as_secs_f64()
    );
    if to_stdout {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    if let Some(dir) = shadowing {
        println!(
            "note: {} still holds this service's store. Move it aside before this service starts again with this \
             path, so that it imports {} afresh instead of serving the store as it is now.",
            dir.display(),
            out.display()
        );
    }
    Ok(0)
}

fn write_failed(path: &Path, e: &io::Error) -> ApplicationError {
    ApplicationError::file_error("WRITE_FAILED", format!("Cannot write {}: {e}", path.display()))
}

/// Writes the file through a temp file beside it: written, fsynced, renamed, folder fsynced.
async fn write_atomically(p: &dyn SessionsPersistence, out: &Path) -> Result<ExportStats, ApplicationError> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let file =
        OpenOptions::new().write(true).create(true).truncate(true).open(&temp).map_err(|e| write_failed(&temp, &e))?;
    let mut w = io::BufWriter::with_capacity(1 << 20, file);
    let written = async {
        let stats = write_sessions(p, &mut w).await?;
        let file = w.into_inner().map_err(|e| write_failed(&temp, e.error()))?;
        file.sync_all().map_err(|e| write_failed(&temp, &e))?;
        drop(file);
        fs::rename(&temp, out).map_err(|e| write_failed(out, &e))?;
        File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| write_failed(&dir, &e))?;
        Ok(stats)
    }
    .await;
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

/// Writes `[`, every session of the store in the original's layout, `]`.
async fn write_sessions<W: Write>(p: &dyn SessionsPersistence, w: &mut W) -> Result<ExportStats, ApplicationError> {
    let mut stats = ExportStats::default();
    let mut buf = Vec::with_capacity(1 << 20);
    buf.push(b'[');
    let mut cursor: Option<(DateTime<Utc>, String)> = None;
    loop {
        let batch = p.scan(None, cursor.as_ref().map(|(t, id)| (*t, id.as_str())), EXPORT_STEP).await?;
        for s in &batch {
            if stats.sessions > 0 {
                buf.push(b',');
            }
            node_json::write_session(&mut buf, s);
            stats.sessions += 1;
            stats.open += u64::from(s.active);
        }
        cursor = batch.last().map(|s| (s.request_time, s.id.clone()));
        if batch.len() < EXPORT_STEP as usize {
            buf.push(b']');
        }
        w.write_all(&buf).map_err(|e| write_failed(Path::new("the export"), &e))?;
        stats.bytes += buf.len() as u64;
        buf.clear();
        if batch.len() < EXPORT_STEP as usize {
            return Ok(stats);
        }
    }
}

/// What became of one source session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Imported,
    Unchanged,
    Replaced,
    /// Kept the store's state: its version.
    Skipped(i64),
}

/// The counts an import prints.
#[derive(Debug, Default)]
struct ImportReport {
    read: u64,
    imported: u64,
    unchanged: u64,
    skipped: u64,
    replaced: u64,
    unreadable: u64,
    skipped_lines: Vec<String>,
    unreadable_lines: Vec<String>,
}

impl ImportReport {
    fn skip(&mut self, line: String) {
        self.skipped += 1;
        if self.skipped_lines.len() < DETAIL_LINES {
            self.skipped_lines.push(line);
        }
    }

    fn unreadable(&mut self, line: String) {
        self.unreadable += 1;
        if self.unreadable_lines.len() < DETAIL_LINES {
            self.unreadable_lines.push(line);
        }
    }

    fn print(&self, header: &str, dry_run: bool) {
        println!("{header}");
        let more = |shown: usize, total: u64| {
            if total > shown as u64 {
                println!("  … and {} more", total - shown as u64);
            }
        };
        for l in &self.skipped_lines {
            println!("  {l}");
        }
        more(self.skipped_lines.len(), self.skipped);
        for l in &self.unreadable_lines {
            println!("  {l}");
        }
        more(self.unreadable_lines.len(), self.unreadable);
        println!("read: {}", self.read);
        println!("imported: {}", self.imported);
        println!("unchanged: {}", self.unchanged);
        println!("replaced: {}", self.replaced);
        println!("skipped: {}", self.skipped);
        println!("unreadable: {}", self.unreadable);
        if dry_run {
            println!("dry run: nothing was changed");
        }
    }
}

/// Where an import reads from.
enum Source {
    Json(PathBuf),
    Mongo(SessionsMongoDbPersistence),
}

impl Source {
    fn from_args(a: &ImportArgs) -> Result<Self, ApplicationError> {
        let is_uri = a.from.starts_with("mongodb://") || a.from.starts_with("mongodb+srv://");
        if !is_uri {
            if a.collection.is_some() {
                return Err(ApplicationError::config("BAD_ARGS", "--collection is for a MongoDB source"));
            }
            return Ok(Self::Json(PathBuf::from(&a.from)));
        }
        let entry = ComponentConfig::new(
            mongodb_persistence_descriptor(),
            serde_json::json!({
                "connection": {"uri": a.from},
                "collection": a.collection.as_deref().unwrap_or(crate::persistence::mongodb::DEFAULT_COLLECTION),
            }),
        );
        Ok(Self::Mongo(SessionsMongoDbPersistence::from_config(&entry)?))
    }

    fn describe(&self) -> String {
        match self {
            Self::Json(p) => p.display().to_string(),
            Self::Mongo(m) => format!("mongodb {}", m.target()),
        }
    }
}

/// Runs `import`.
///
/// # Errors
/// Configuration, source and store failures; what was imported before a failure stays (running
/// the import again completes it).
pub async fn import(process: &ProcessContainer, args: &ProcessArgs, a: &ImportArgs) -> Result<i32, ApplicationError> {
    let source = Source::from_args(a)?;
    // The source is read (a file) or reached (a collection) before the store opens, so a bad
    // source leaves the store untouched.
    let mut json = None;
    let mut documents = None;
    match &source {
        Source::Json(path) => json = Some(read_json(path)?),
        Source::Mongo(m) => {
            if ConfiguredStore::mongodb_target(process, args).await?.as_deref() == Some(m.target()) {
                return Err(ApplicationError::config(
                    "SAME_STORE",
                    format!("The source {} is the configured store itself; nothing to import", m.target()),
                ));
            }
            documents = Some(m.read_documents(None).await.map_err(|e| source_failed(m, e))?);
        }
    }
    let store = ConfiguredStore::open(process, args).await?;
    if store.is_memory() {
        eprintln!(
            "{}: warning: the configured store is the memory backend; what is imported is gone when this command ends",
            process.name()
        );
    }
    let started = Instant::now();
    let mut report = ImportReport::default();
    let result = match (&source, json, documents) {
        (_, Some(items), _) => import_json(&*store.persistence, items, a, &mut report).await,
        (Source::Mongo(m), _, Some(reader)) => import_mongo(&*store.persistence, m, reader, a, &mut report).await,
        _ => Ok(()),
    };
    let what = store.describe();
    store.close().await;
    if let Source::Mongo(m) = &source {
        let _ = m.close(None).await;
    }
    let header = format!(
        "Import from {} into the {what}{} ({:.2} s):",
        source.describe(),
        if a.replace { " with --replace" } else { "" },
        started.elapsed().as_secs_f64()
    );
    report.print(&header, a.dry_run);
    result?;
    Ok(if report.unreadable > 0 { EXIT_DATA_PROBLEM } else { 0 })
}

/// A failure of a MongoDB source, named as such.
fn source_failed(source: &SessionsMongoDbPersistence, e: ApplicationError) -> ApplicationError {
    ApplicationError { message: format!("Cannot read the source {}: {}", source.target(), e.message), ..e }
}

/// The items of the original's JSON file.
fn read_json(path: &Path) -> Result<Vec<Result<SessionV1, node_json::Unreadable>>, ApplicationError> {
    let bytes = fs::read(path)
        .map_err(|e| ApplicationError::file_error("READ_FAILED", format!("Cannot read {}: {e}", path.display())))?;
    node_json::parse_file(&bytes).map_err(|e| {
        ApplicationError::file_error(
            "READ_FAILED",
            format!("{} is not a JSON array of sessions (line {}, column {})", path.display(), e.line(), e.column()),
        )
    })
}

async fn import_json(
    p: &dyn SessionsPersistence,
    items: Vec<Result<SessionV1, node_json::Unreadable>>,
    a: &ImportArgs,
    report: &mut ImportReport,
) -> Result<(), ApplicationError> {
    let mut seen = HashSet::with_capacity(items.len());
    let mut batch = Vec::with_capacity(IMPORT_STEP);
    for item in items {
        report.read += 1;
        match item {
            Err(u) => report.unreadable(format!(
                "unreadable item #{}{}: {}",
                u.index + 1,
                u.id.map(|id| format!(" (id {})", short_id(&id))).unwrap_or_default(),
                u.reason
            )),
            Ok(s) => {
                if let Err(line) = servable(&s) {
                    report.unreadable(line);
                } else if !seen.insert(s.id.clone()) {
                    report
                        .skip(format!("skipped {}: its id is in the source twice; the first is kept", short_id(&s.id)));
                } else {
                    batch.push(s);
                }
            }
        }
        if batch.len() == IMPORT_STEP {
            put_all(p, std::mem::take(&mut batch), a, report).await?;
        }
    }
    put_all(p, batch, a, report).await
}

async fn import_mongo(
    p: &dyn SessionsPersistence,
    source: &SessionsMongoDbPersistence,
    mut reader: DocumentReader<'_>,
    a: &ImportArgs,
    report: &mut ImportReport,
) -> Result<(), ApplicationError> {
    let mut batch = Vec::with_capacity(IMPORT_STEP);
    while let Some((id, decoded)) = reader.next().await.map_err(|e| source_failed(source, e))? {
        report.read += 1;
        match decoded {
            Err(e) => report.unreadable(format!("unreadable document {}: {} {}", short_id(&id), e.field, e.reason)),
            Ok(s) => match servable(&s) {
                Err(line) => report.unreadable(line),
                Ok(()) => batch.push(s),
            },
        }
        if batch.len() == IMPORT_STEP {
            put_all(p, std::mem::take(&mut batch), a, report).await?;
        }
    }
    put_all(p, batch, a, report).await
}

/// A session whose id no command could reach is not imported.
fn servable(s: &SessionV1) -> Result<(), String> {
    if is_session_id_shape(&s.id) {
        Ok(())
    } else {
        Err(format!(
            "unreadable session {}: an id the service cannot serve (1 to 64 letters, digits, '_' or '-')",
            short_id(&s.id)
        ))
    }
}

/// Stores a batch (several writes in flight) and counts the outcomes.
async fn put_all(
    p: &dyn SessionsPersistence,
    batch: Vec<SessionV1>,
    a: &ImportArgs,
    report: &mut ImportReport,
) -> Result<(), ApplicationError> {
    let outcomes: Vec<(String, i64, Outcome)> = stream::iter(batch.into_iter().map(|s| async move {
        let (id, version) = (s.id.clone(), s.version);
        put(p, s, a.replace, a.dry_run).await.map(|o| (id, version, o))
    }))
    .buffer_unordered(IMPORT_CONCURRENCY)
    .try_collect()
    .await?;
    for (id, version, outcome) in outcomes {
        match outcome {
            Outcome::Imported => report.imported += 1,
            Outcome::Unchanged => report.unchanged += 1,
            Outcome::Replaced => report.replaced += 1,
            Outcome::Skipped(store_version) => report.skip(format!(
                "skipped {}: the store holds another state of it (store version {store_version}, source version {version}); --replace overwrites it",
                short_id(&id)
            )),
        }
    }
    Ok(())
}

/// Stores one session as it is, or compares it with the store's (see the module doc).
async fn put(
    p: &dyn SessionsPersistence,
    s: SessionV1,
    replace: bool,
    dry_run: bool,
) -> Result<Outcome, ApplicationError> {
    if !dry_run {
        match p.create(None, s.clone()).await {
            Ok(_) => return Ok(Outcome::Imported),
            Err(e) if e.code == SESSION_EXISTS => {}
            Err(e) => return Err(e),
        }
    }
    let outcome = match p.get_one_by_id(None, &s.id).await? {
        None => Outcome::Imported,
        Some(held) if held == s => return Ok(Outcome::Unchanged),
        Some(held) if !replace => return Ok(Outcome::Skipped(held.version)),
        Some(_) => Outcome::Replaced,
    };
    if !dry_run {
        if outcome == Outcome::Replaced {
            p.delete_by_id(None, &s.id).await?;
        }
        p.create(None, s).await?;
    }
    Ok(outcome)
}
