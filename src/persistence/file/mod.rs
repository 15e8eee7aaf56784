//! The file backend (`service-sessions:persistence:file:*:1.0`): a small durable storage engine.
//!
//! # Layout
//! `path` names a folder (created if missing) holding:
//! - `LOCK` — held with an exclusive `flock` while the store is open, so a second process (or a
//!   second component in the same process) fails to open it with `FILE_LOCKED`;
//! - `sessions.snapshot` — every session as of the end of log generation *G* (its header);
//! - `sessions.<N>.log` — the changes of generation *N*, for every *N* > *G*; the highest is the
//!   active log, appended to.
//!
//! Both files are sequences of checksummed frames (see `format.rs`); a frame holds one record, a
//! whole session state (`put`), a `delete` or a `clear`: fixed fields in a byte layout, `user`
//! and `data` as JSON. Whole states make replay "last record wins": start-up keeps the newest
//! record of each session from the snapshot and the newer logs and builds a [`SessionsIndex`]
//! (the same engine, and so the same semantics and query paths, as the memory backend). Each
//! kept frame becomes its index record straight from its bytes, on the decoding threads: the
//! texts are copied, and so are `user` and `data` when they are the canonical JSON text the
//! service writes (anything else, from an older build, is parsed and written anew).
//!
//! # Writes
//! A write takes the state lock only to check its condition, apply it to the index and hand its
//! record to the writer thread (see `writer.rs`), so the log order is the order of application.
//! The writer appends everything queued with one `write` and, under `sync: always`, one
//! `fdatasync` (group commit), then acknowledges. A step that changes several sessions (the
//! expiry sweep, a per-user limit closing older sessions, closing a user's sessions, a purge, an
//! id rotation) is planned and applied under the lock at once, and its records are queued
//! together in the order they apply and acknowledged once all of them are written. A crash in
//! the middle of such an append, before its acknowledgement, can leave a prefix of the step's
//! records in the log; replay then applies that prefix. A write costs O(log n) in memory and O(1) on
//! disk, whatever the number of stored sessions.
//!
//! # Durability (`options.sync`)
//! A write is acknowledged only after its record was handed to the OS (`write`), in every mode,
//! so killing the process never loses an acknowledged write. What an OS crash or power loss can
//! lose:
//! - `always` (default): nothing acknowledged — the call returns after the fsync. Concurrent
//!   writes share one fsync.
//! - `interval`: the acknowledged writes of the last `options.sync_interval` ms (default 1000).
//! - `never`: whatever the OS had not yet written back on its own (on Linux typically up to
//!   about 30 s).
//!
//! Reads see a write as soon as it is applied, which is a few milliseconds before its fsync
//! completes; a crash in that window loses a write that was never acknowledged but may have been
//! read. Closing the store (graceful shutdown) always writes and fsyncs everything.
//!
//! # Compaction
//! When the logs outgrow both `options.compact_threshold` bytes (default 64 MiB) and half the
//! snapshot, a background task owned by the component compacts: the writer closes the active
//! log *N* (fsynced) and continues in *N*+1; then the index is walked in short steps under the
//! read lock (512 sessions each, so a write waits about a millisecond at most) into
//! `sessions.snapshot.tmp`, which is fsynced, renamed over `sessions.snapshot` (header *G* = *N*),
//! and the folder fsynced; then the logs ≤ *N* are removed. Writes go on during all of it and
//! land in *N*+1. The walk is not a point-in-time copy, but every session that changes during it
//! has its new state in log *N*+1, which replay applies after the snapshot, so nothing is lost.
//! A crash at any step leaves a consistent set of files: start-up removes a leftover temp file
//! and any log ≤ *G*. The compaction work is proportional to the writes since the previous one
//! (each write pays for rewriting about two sessions), and start-up never replays more than about
//! one and a half times the live data.
//!
//! # Start-up and corruption
//! A frame cut short at the end of the last log (a crash during an append, possibly followed by
//! zeros) is a torn tail: it was never acknowledged under `sync: always`, so it is cut off with a
//! warning (see [`RecoveryReport`]). A damaged last frame ending exactly at the end of the file is
//! treated the same way, since it cannot be told apart from a partly written one. Any other
//! damage — a bad frame with data after it, a bad header, a truncated snapshot, a missing log
//! generation — stops start-up with `CORRUPT_STORE` naming the file and the offset, and nothing on
//! disk is changed.
//!
//! # Migration from the Node service
//! If `path` ends in `.json`, the store folder is that path without the extension
//! (`/data/sessions.json` → `/data/sessions/`); when that folder holds no store yet and the JSON
//! file exists, the file (the Node service's format: a JSON array of SessionV1, without
//! `version`, possibly without `user`/`data`) is imported into a first snapshot. The JSON file is
//! left untouched and is not read again once the store exists.
//!
//! # Failures
//! A failed write or fsync of the active log answers `WRITE_FAILED` (500 `FileError`) to the
//! writes waiting for it, and the store then refuses every write while still serving reads;
//! `/ready` reports it not ready. Every second the writer probes: it reopens the active log, cuts
//! it back to its last good length and fsyncs it; when that works, the store takes writes again.
//! Changes already applied in memory by the failed writes stay visible until restart, which
//! loses them. A failed rotation or snapshot (creating the next log or the snapshot: no
//! descriptors, no permission, no space) is not a failure of the active log: appends continue,
//! and the compaction is tried again after `options.compact_retry` ms.
//!
//! Before every write the writer checks that the active log is still the file it opened (same
//! device and inode): a removed folder or a deleted or replaced log makes the store *lost* —
//! writes are refused and readiness fails until restarted, rather than acknowledging writes that
//! cannot be kept. At start-up a compaction snapshot *G* without log *G*+1 is corruption (the
//! active log was lost), as is any missing generation; the folder must take new files (checked
//! with a probe file). Errors and logs name files and offsets, never session data.
//!
//! Hand-written rather than an embedded database crate: the semantics (conditional whole-record
//! writes, list order, expiry sweep) live in [`SessionsIndex`]; what this module adds is only the
//! durable log of its changes, which needs group commit and the recovery rules above.

mod compaction;
mod format;
mod load;
mod settings;
mod snapshot;
pub mod verify;
mod writer;

pub use self::compaction::CompactionStats;
use self::compaction::{compact, run_compactor};
use self::format::{encode_frame, encode_put_frame, Record};
use self::load::open_store;
pub use self::settings::{store_dir, FileOptions, SyncMode};
use self::settings::{store_paths, FileSettings, PageSettings};
use self::writer::{write_failed, Command, IoStatus, LogWriter};
use super::index::SessionsIndex;
use super::memory::BULK_BATCH;
use super::{
    in_batches, MustAct, OpenLimits, PageOptions, SessionAnswer, SessionLimit, SessionUpdate, SessionsPersistence,
    UpdateOutcome, WriteCondition,
};
use crate::data::version1::{SessionV1, SessionsFilter};
use crate::toolkit::component::{Component, ComponentHealth};
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::json::JsonText;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Error code when the store directory is locked by another process (another service, or an
/// offline tool, holds it open).
pub const FILE_LOCKED: &str = "FILE_LOCKED";

/// Error code of `verify` when a file vanished while being read: a running service compacted the
/// store, and a second run sees the new files.
pub const STORE_CHANGED: &str = "STORE_CHANGED";

/// What start-up found in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Sessions loaded.
    pub sessions: usize,
    /// The log generation the snapshot covers (0 without a snapshot).
    pub snapshot_generation: u64,
    /// Log records replayed after the snapshot.
    pub log_records: u64,
    /// The incomplete record cut off the end of the last log, if any.
    pub torn_tail: Option<TornTail>,
    /// Sessions imported from a Node service JSON file, if that happened.
    pub imported: Option<usize>,
}

/// An incomplete record cut off the end of the last log at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The log file name.
    pub file: String,
    /// Where the incomplete record began (the new end of the file).
    pub offset: u64,
    /// How many bytes were cut off.
    pub dropped_bytes: u64,
}

#[derive(Debug, Default)]
struct State {
    index: SessionsIndex,
    /// The writer's queue; `Some` exactly while the store is open.
    writer: Option<mpsc::Sender<Command>>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    state: RwLock<State>,
    status: Arc<IoStatus>,
    /// Tells a running compaction to give up (closing).
    stopping: AtomicBool,
    /// One compaction at a time.
    compaction: tokio::sync::Mutex<()>,
    /// Pause after a failed compaction.
    compact_retry: Duration,
}

#[derive(Debug)]
struct Running {
    _lock: File,
    writer: std::thread::JoinHandle<Result<(), ApplicationError>>,
    compactor: JoinHandle<()>,
    cancel: CancellationToken,
}

/// The file persistence component.
#[derive(Debug)]
pub struct SessionsFilePersistence {
    import: Option<PathBuf>,
    options: FileOptions,
    page: PageOptions,
    shared: Arc<Shared>,
    running: tokio::sync::Mutex<Option<Running>>,
    report: Mutex<Option<RecoveryReport>>,
}

fn not_opened() -> ApplicationError {
    ApplicationError::invalid_state("NOT_OPENED", "The sessions file store is not open")
}

impl SessionsFilePersistence {
    /// A store in the folder `path` (or migrating the Node JSON file `path`, see the module doc).
    pub fn new(path: impl Into<PathBuf>, options: FileOptions, page: PageOptions) -> Self {
        let (dir, import) = store_paths(&path.into());
        let status = Arc::new(IoStatus::new(options.compact_threshold));
        let shared = Arc::new(Shared {
            dir,
            state: RwLock::new(State::default()),
            status,
            stopping: AtomicBool::new(false),
            compaction: tokio::sync::Mutex::new(()),
            compact_retry: Duration::from_millis(options.compact_retry.max(1)),
        });
        Self { import, options, page, shared, running: tokio::sync::Mutex::new(None), report: Mutex::new(None) }
    }

    /// Builds the store from its entry: `path` (required), `options.sync` (`always` | `interval`
    /// | `never`), `options.sync_interval` (ms), `options.compact_threshold` (bytes),
    /// `options.compact_retry` (ms), `options.max_page_size`.
    ///
    /// # Errors
    /// `NO_PATH` without a path; `BAD_CONFIG` for invalid settings.
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let s: FileSettings = config.section()?;
        let page: PageSettings = config.section()?;
        let path = s.path.filter(|p| !p.trim().is_empty()).ok_or_else(|| {
            ApplicationError::config(
                "NO_PATH",
                format!("Component #{} ({}): path is required", config.index + 1, config.descriptor),
            )
        })?;
        if s.options.sync == SyncMode::Interval && s.options.sync_interval == 0 {
            return Err(ApplicationError::config(
                "BAD_CONFIG",
                format!(
                    "Component #{} ({}): options.sync_interval must be positive",
                    config.index + 1,
                    config.descriptor
                ),
            ));
        }
        Ok(Self::new(path, s.options, page.options))
    }

    /// The store folder.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// What the last start-up found (`None` before the first open).
    pub fn recovery(&self) -> Option<RecoveryReport> {
        self.report.lock().clone()
    }

    /// Compacts now (the background task does it on its own when the logs grow).
    ///
    /// # Errors
    /// `NOT_OPENED`, `WRITE_FAILED`, or a `FileError` when the snapshot cannot be written.
    pub async fn compact(&self) -> Result<CompactionStats, ApplicationError> {
        compact(&self.shared).await
    }

    /// Test hook: the next `n` log writes fail as a full or failing disk would make them fail
    /// (half of the batch reaches the file).
    #[doc(hidden)]
    pub fn inject_write_failures(&self, n: u32) {
        self.shared.status.injected_write_failures.store(n, Ordering::Release);
    }

    /// Writes and fsyncs everything written so far, whatever the sync mode.
    ///
    /// # Errors
    /// `NOT_OPENED` or `WRITE_FAILED`.
    pub async fn flush(&self) -> Result<(), ApplicationError> {
        let (ack, done) = oneshot::channel();
        send(&self.shared, Command::Flush { ack })?;
        done.await.map_err(|_| write_failed())?
    }

    /// Applies a change under the state lock, queues its records in the same step, and waits
    /// until the writer has written them (and fsynced them under `sync: always`).
    async fn commit<T>(
        &self,
        change: impl FnOnce(&mut SessionsIndex) -> Result<(T, Vec<Record>), ApplicationError>,
    ) -> Result<T, ApplicationError> {
        let (out, done, records) = self.locked(|index, writer| {
            let (out, records) = change(index)?;
            let done = if records.is_empty() { None } else { Some(self.queue(writer, &records)?) };
            Ok((out, done, records))
        })?;
        // Freed outside the lock, by the thread that made them.
        drop(records);
        acknowledged(out, done).await
    }

    /// As [`Self::commit`], for a change whose only record is the new state of the session it
    /// returns (`logged` picks it, `None` if nothing changed): encoded from that session itself,
    /// without a copy of it.
    async fn commit_one<T>(
        &self,
        change: impl FnOnce(&mut SessionsIndex) -> Result<T, ApplicationError>,
        logged: impl FnOnce(&T) -> Option<&SessionV1>,
    ) -> Result<T, ApplicationError> {
        let (out, done) = self.locked(|index, writer| {
            let out = change(index)?;
            let done = logged(&out).map(|s| self.queue(writer, &[Record::Put(s)])).transpose()?;
            Ok((out, done))
        })?;
        acknowledged(out, done).await
    }

    /// Runs `f` on the index and the writer's queue under the state lock; refused while the store
    /// has failed or is not open.
    fn locked<T>(
        &self,
        f: impl FnOnce(&mut SessionsIndex, &mpsc::Sender<Command>) -> Result<T, ApplicationError>,
    ) -> Result<T, ApplicationError> {
        if self.shared.status.failed.load(Ordering::Acquire) {
            return Err(write_failed());
        }
        let mut state = self.shared.state.write();
        let State { index, writer } = &mut *state;
        let Some(writer) = writer else { return Err(not_opened()) };
        f(index, writer)
    }

    /// Encodes records into frames and hands them to the writer; called under the state lock, so
    /// the channel order is the order of application. Encoded here, so the writer thread only
    /// copies bytes.
    fn queue<S: std::borrow::Borrow<SessionV1>>(
        &self,
        writer: &mpsc::Sender<Command>,
        records: &[Record<S>],
    ) -> Result<oneshot::Receiver<bool>, ApplicationError> {
        let mut frames = Vec::with_capacity(FRAME_ESTIMATE * records.len());
        for r in records {
            self.encoded(encode_frame(&mut frames, r))?;
        }
        self.send(writer, frames)
    }

    /// The outcome of encoding a record: a record applied in memory but not loggable (not
    /// expected for sessions) fails the store as a failed write does.
    fn encoded(&self, result: Result<(), serde_json::Error>) -> Result<(), ApplicationError> {
        result.map_err(|e| {
            tracing::error!(error = %e, "Cannot encode a record for the sessions log; the store refuses writes until it can write again.");
            self.shared.status.failed.store(true, Ordering::Release);
            write_failed()
        })
    }

    /// Hands encoded frames to the writer (under the state lock: see [`Self::queue`]).
    fn send(
        &self,
        writer: &mpsc::Sender<Command>,
        frames: Vec<u8>,
    ) -> Result<oneshot::Receiver<bool>, ApplicationError> {
        let (ack, done) = oneshot::channel();
        writer.send(Command::Append { frames, ack }).map_err(|_| write_failed())?;
        Ok(done)
    }

    fn read<T>(&self, f: impl FnOnce(&SessionsIndex) -> T) -> Result<T, ApplicationError> {
        let state = self.shared.state.read();
        if state.writer.is_none() {
            return Err(not_opened());
        }
        Ok(f(&state.index))
    }
}

/// About the size of one encoded session record, to size a change's frames at once.
const FRAME_ESTIMATE: usize = 320;

/// `out` once the writer acknowledges its records (at once when there were none);
/// `WRITE_FAILED` if it refuses them.
async fn acknowledged<T>(out: T, done: Option<oneshot::Receiver<bool>>) -> Result<T, ApplicationError> {
    match done {
        None => Ok(out),
        Some(done) => match done.await {
            Ok(true) => Ok(out),
            _ => Err(write_failed()),
        },
    }
}

fn send(shared: &Shared, command: Command) -> Result<(), ApplicationError> {
    let state = shared.state.read();
    let writer = state.writer.as_ref().ok_or_else(not_opened)?;
    writer.send(command).map_err(|_| write_failed())
}

/// Start-up check that the folder takes new files (the next log, a snapshot), not only appends.
fn check_writable(dir: &Path) -> Result<(), ApplicationError> {
    let probe = dir.join("write-probe.tmp");
    let result = File::create(&probe).and_then(|f| f.sync_all()).and_then(|()| fs::remove_file(&probe));
    result.map_err(|e| {
        ApplicationError::file_error(
            "NOT_WRITABLE",
            format!("The sessions store folder {} cannot be written: {e}", dir.display()),
        )
        .with_cause(e)
    })
}

#[async_trait]
impl Component for SessionsFilePersistence {
    async fn open(&self, _cid: Option<&str>) -> Result<(), ApplicationError> {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return Ok(());
        }
        let dir = self.shared.dir.clone();
        let import = self.import.clone();
        let opened =
            tokio::task::spawn_blocking(move || open_store(&dir, import.as_deref())).await.map_err(|e| {
                ApplicationError::internal("OPEN_FAILED", "Opening the sessions store stopped").with_cause(e)
            })??;
        let dir = self.shared.dir.clone();
        tokio::task::spawn_blocking(move || check_writable(&dir)).await.map_err(|e| {
            ApplicationError::internal("OPEN_FAILED", "Opening the sessions store stopped").with_cause(e)
        })??;
        let status = &self.shared.status;
        status.failed.store(false, Ordering::Release);
        status.lost.store(false, Ordering::Release);
        status.log_bytes.store(opened.log_bytes, Ordering::Relaxed);
        status.snapshot_bytes.store(opened.snapshot_bytes, Ordering::Relaxed);
        self.shared.stopping.store(false, Ordering::Release);
        let (tx, rx) = mpsc::channel();
        let writer = LogWriter::new(
            self.shared.dir.clone(),
            opened.log,
            opened.generation,
            self.options.sync,
            Duration::from_millis(self.options.sync_interval.max(1)),
            status.clone(),
        );
        let writer = writer::spawn(writer, rx).map_err(|e| {
            ApplicationError::internal("OPEN_FAILED", "Cannot start the sessions log writer").with_cause(e)
        })?;
        *self.shared.state.write() = State { index: opened.index, writer: Some(tx) };
        let cancel = CancellationToken::new();
        let compactor = tokio::spawn(run_compactor(self.shared.clone(), cancel.clone()));
        if status.wants_compaction() {
            status.compact_wanted.notify_one();
        }
        tracing::info!(
            folder = %self.shared.dir.display(), sessions = opened.report.sessions,
            log_records = opened.report.log_records, "Opened the sessions file store."
        );
        *self.report.lock() = Some(opened.report);
        *running = Some(Running { _lock: opened.lock, writer, compactor, cancel });
        Ok(())
    }

    async fn close(&self, _cid: Option<&str>) -> Result<(), ApplicationError> {
        let Some(run) = self.running.lock().await.take() else { return Ok(()) };
        self.shared.stopping.store(true, Ordering::Release);
        run.cancel.cancel();
        let _ = run.compactor.await;
        // Dropping the queue lets the writer write and fsync what is left, then stop.
        let writer = self.shared.state.write().writer.take();
        drop(writer);
        let result = tokio::task::spawn_blocking(move || run.writer.join())
            .await
            .map_err(|e| {
                ApplicationError::internal("CLOSE_FAILED", "Closing the sessions store stopped").with_cause(e)
            })?
            .unwrap_or_else(|_| Err(write_failed()));
        self.shared.state.write().index = SessionsIndex::new();
        result
    }

    async fn health(&self) -> ComponentHealth {
        if self.shared.state.read().writer.is_none() {
            ComponentHealth::not_ready("the sessions file store is not open")
        } else if self.shared.status.lost.load(Ordering::Acquire) {
            ComponentHealth::not_ready(
                "the sessions store folder or its active log was removed or replaced; writes are refused until restarted",
            )
        } else if self.shared.status.failed.load(Ordering::Acquire) {
            ComponentHealth::not_ready(
                "a write to the sessions file store failed; it serves reads only until it can write again",
            )
        } else {
            ComponentHealth::ready()
        }
    }
}

#[async_trait]
impl SessionsPersistence for SessionsFilePersistence {
    async fn get_page_by_filter(
        &self,
        _cid: Option<&str>,
        filter: &SessionsFilter,
        paging: &PagingParams,
    ) -> Result<DataPage<SessionV1>, ApplicationError> {
        let max = self.page.max_page_size;
        self.read(|index| index.page(filter, paging, max))
    }

    async fn get_page_json(
        &self,
        _cid: Option<&str>,
        filter: &SessionsFilter,
        paging: &PagingParams,
    ) -> Result<JsonText, ApplicationError> {
        let max = self.page.max_page_size;
        self.read(|index| index.page_json(filter, paging, max))
    }

    async fn get_one_by_id(&self, _cid: Option<&str>, id: &str) -> Result<Option<SessionV1>, ApplicationError> {
        self.read(|index| index.get(id))
    }

    async fn get_one_json(
        &self,
        _cid: Option<&str>,
        id: &str,
        must_act: MustAct<'_>,
    ) -> Result<Option<SessionAnswer>, ApplicationError> {
        self.read(|index| index.get_json(id, must_act))
    }

    async fn create(&self, _cid: Option<&str>, session: SessionV1) -> Result<SessionV1, ApplicationError> {
        self.commit_one(|index| index.create(session), |s: &SessionV1| Some(s)).await
    }

    /// The new session's text and log record are encoded before the lock, from the session as it
    /// will be stored; then it moves into the index (no copy of it is kept for the log).
    async fn create_json(
        &self,
        _cid: Option<&str>,
        session: SessionV1,
        limits: &OpenLimits,
    ) -> Result<JsonText, ApplicationError> {
        let text = JsonText::write(&session);
        let mut put = Vec::with_capacity(FRAME_ESTIMATE);
        self.encoded(encode_frame(&mut put, &Record::Put(&session)))?;
        let done = self.locked(|index, writer| {
            // The sessions closed to make room come first, as they apply to the index.
            let closed = index.create_within(session, limits)?;
            if closed.is_empty() {
                return self.send(writer, put);
            }
            let mut frames = Vec::with_capacity(FRAME_ESTIMATE * closed.len() + put.len());
            for c in &closed {
                self.encoded(encode_frame(&mut frames, &Record::Put(c)))?;
            }
            frames.extend_from_slice(&put);
            self.send(writer, frames)
        })?;
        acknowledged(text, Some(done)).await
    }

    async fn update(
        &self,
        _cid: Option<&str>,
        id: &str,
        update: SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError> {
        self.commit_one(
            |index| Ok(index.update(id, update)),
            |outcome| match outcome {
                UpdateOutcome::Updated(s) => Some(s),
                _ => None,
            },
        )
        .await
    }

    /// The change applied to the record in place, logged and answered from the record itself:
    /// no session is built, its payload not copied.
    async fn update_json(
        &self,
        _cid: Option<&str>,
        id: &str,
        update: SessionUpdate,
    ) -> Result<UpdateOutcome<JsonText>, ApplicationError> {
        let (out, done) = self.locked(|index, writer| {
            let mut frames = Vec::with_capacity(FRAME_ESTIMATE);
            Ok(match index.update_json_logged(id, update, |s| encode_put_frame(&mut frames, s)) {
                UpdateOutcome::Updated((text, encoded)) => {
                    self.encoded(encoded)?;
                    (UpdateOutcome::Updated(text), Some(self.send(writer, frames)?))
                }
                UpdateOutcome::NotFound => (UpdateOutcome::NotFound, None),
                UpdateOutcome::ConditionFailed(s) => (UpdateOutcome::ConditionFailed(s), None),
            })
        })?;
        acknowledged(out, done).await
    }

    async fn close_expired(
        &self,
        _cid: Option<&str>,
        idle_cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, ApplicationError> {
        if self.shared.status.failed.load(Ordering::Acquire)
            && self.read(|index| index.plan_close_expired_limited(now, Some(idle_cutoff), 1).is_empty())?
        {
            // Nothing to close: reads that sweep first keep working on a failed store.
            return Ok(0);
        }
        in_batches(|| {
            self.commit(|index| {
                let closed = index.plan_close_expired_limited(now, Some(idle_cutoff), BULK_BATCH);
                closed.iter().for_each(|s| index.put(s.clone()));
                Ok((closed.len(), closed.into_iter().map(Record::Put).collect()))
            })
        })
        .await
    }

    async fn delete_by_id(&self, _cid: Option<&str>, id: &str) -> Result<Option<SessionV1>, ApplicationError> {
        self.commit(|index| {
            let removed = index.remove(id);
            let records = removed.iter().map(|s| Record::Delete(s.id.clone())).collect();
            Ok((removed, records))
        })
        .await
    }

    async fn delete_if(
        &self,
        _cid: Option<&str>,
        id: &str,
        condition: &WriteCondition,
    ) -> Result<UpdateOutcome, ApplicationError> {
        self.commit(|index| {
            let outcome = index.delete_if(id, condition);
            let records = match &outcome {
                UpdateOutcome::Updated(s) => vec![Record::Delete(s.id.clone())],
                _ => Vec::new(),
            };
            Ok((outcome, records))
        })
        .await
    }

    async fn create_limited(
        &self,
        cid: Option<&str>,
        session: SessionV1,
        limit: &SessionLimit,
    ) -> Result<SessionV1, ApplicationError> {
        self.create_within(cid, session, &OpenLimits { per_user: Some(*limit), max_open: None }).await
    }

    async fn create_within(
        &self,
        _cid: Option<&str>,
        session: SessionV1,
        limits: &OpenLimits,
    ) -> Result<SessionV1, ApplicationError> {
        self.commit(|index| {
            // The sessions closed to make room come first, as they apply to the index.
            let closed = index.create_within(session.clone(), limits)?;
            let mut records: Vec<Record> = closed.into_iter().map(Record::Put).collect();
            records.push(Record::Put(session.clone()));
            Ok((session, records))
        })
        .await
    }

    async fn close_user_sessions(
        &self,
        _cid: Option<&str>,
        user_id: &str,
        except_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<u64, ApplicationError> {
        in_batches(|| {
            self.commit(|index| {
                let closed = index.close_user_sessions_limited(user_id, except_id, now, BULK_BATCH);
                Ok((closed.len(), closed.into_iter().map(Record::Put).collect()))
            })
        })
        .await
    }

    async fn purge_closed(
        &self,
        _cid: Option<&str>,
        closed_before: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, ApplicationError> {
        if self.shared.status.failed.load(Ordering::Acquire)
            && self.read(|index| index.purgeable(closed_before, 1).is_empty())?
        {
            // Nothing to purge: a failed store keeps serving the sweeps that find nothing.
            return Ok(0);
        }
        self.commit(|index| {
            let ids = index.purgeable(closed_before, limit);
            ids.iter().for_each(|id| {
                index.remove(id);
            });
            Ok((ids.len() as u64, ids.into_iter().map(Record::Delete).collect()))
        })
        .await
    }

    async fn rotate_id(
        &self,
        _cid: Option<&str>,
        id: &str,
        new_id: &str,
        update: &SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError> {
        self.commit(|index| {
            let outcome = index.rotate_id(id, new_id, update)?;
            // The moved session is logged before the old id's delete (the ids differ, so replay
            // reaches the same state): if power fails between the two records, the session
            // survives under both ids instead of being lost.
            let records = match &outcome {
                UpdateOutcome::Updated(moved) => vec![Record::Put(moved.clone()), Record::Delete(id.to_string())],
                _ => Vec::new(),
            };
            Ok((outcome, records))
        })
        .await
    }

    async fn scan(
        &self,
        _cid: Option<&str>,
        after: Option<(DateTime<Utc>, &str)>,
        limit: u64,
    ) -> Result<Vec<SessionV1>, ApplicationError> {
        self.read(|index| index.scan(after, usize::try_from(limit).unwrap_or(usize::MAX)))
    }

    async fn clear(&self, _cid: Option<&str>) -> Result<(), ApplicationError> {
        self.commit(|index| {
            index.clear();
            Ok(((), vec![Record::Clear]))
        })
        .await
    }
}
