//! Compaction: rotate the log, walk the index into a snapshot covering the logs before the new
//! one, remove them; and the background task that runs it when the logs grew enough.

use super::format::{log_path, parse_log_file_name};
use super::snapshot::{sync_dir, SnapshotWriter};
use super::writer::{write_failed, Command, Rotated, UnsyncedLog};
use super::{send, Shared};
use crate::persistence::index::ScanPosition;
use crate::toolkit::errors::ApplicationError;
use std::fs::{self};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Sessions written per step of a compaction walk (the longest the read lock is held).
pub(super) const COMPACT_STEP: usize = 512;

/// What one compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionStats {
    /// The log generation the new snapshot covers.
    pub generation: u64,
    /// Session states written (a session changed during the walk may count twice).
    pub sessions: u64,
    /// Size of the new snapshot.
    pub bytes: u64,
    /// Time taken.
    pub elapsed: Duration,
}

/// One compaction (see the module doc).
pub(super) async fn compact(shared: &Arc<Shared>) -> Result<CompactionStats, ApplicationError> {
    let _one = shared.compaction.lock().await;
    let started = Instant::now();
    if shared.status.failed.load(Ordering::Acquire) {
        return Err(write_failed());
    }
    let (ack, done) = oneshot::channel();
    send(shared, Command::Rotate { ack })?;
    let Rotated { generation, unsynced } = done.await.map_err(|_| write_failed())??;
    let sh = shared.clone();
    let (sessions, bytes) = tokio::task::spawn_blocking(move || {
        if let Some(closed) = unsynced {
            sync_closed_log(&sh, generation, closed);
        }
        write_snapshot(&sh, generation)
    })
    .await
    .map_err(|e| ApplicationError::internal("COMPACTION_FAILED", "Compaction stopped").with_cause(e))??;
    Ok(CompactionStats { generation, sessions, bytes, elapsed: started.elapsed() })
}

/// Fsyncs a log the writer closed with writes not fsynced yet (`sync: interval` or `never`),
/// before the snapshot that covers it is written. The writer did this at the rotation, where
/// every append waited for it; appends to the next log go on meanwhile now (under those modes an
/// OS crash may lose writes not fsynced yet, in either log). A failure is only reported: the
/// snapshot, written from the index, holds every write the closed log does, and the compaction
/// fails if the snapshot cannot be written.
fn sync_closed_log(shared: &Shared, generation: u64, closed: UnsyncedLog) {
    if let Err(e) = closed.sync() {
        let file = log_path(&shared.dir, generation);
        tracing::warn!(
            file = %file.display(), error = %e,
            "Cannot fsync the closed sessions log; the snapshot that replaces it is written next."
        );
    }
}

/// Walks the index into a new snapshot covering the logs up to `generation`, then removes them.
pub(super) fn write_snapshot(shared: &Shared, generation: u64) -> Result<(u64, u64), ApplicationError> {
    let dir = &shared.dir;
    let fail = |e: std::io::Error| {
        tracing::warn!(folder = %dir.display(), error = %e, "Cannot write a sessions snapshot; the logs are kept.");
        ApplicationError::file_error("COMPACTION_FAILED", "Cannot write a sessions snapshot").with_cause(e)
    };
    let mut w = SnapshotWriter::create(dir, generation).map_err(fail)?;
    let mut cursor: Option<ScanPosition> = None;
    loop {
        if shared.stopping.load(Ordering::Acquire) {
            w.abandon();
            return Err(ApplicationError::invalid_state("NOT_OPENED", "Compaction stopped: the store is closing"));
        }
        let step = {
            let state = shared.state.read();
            let after = cursor.as_ref().map(|(t, id)| (*t, id.as_str()));
            // Each record is written as it is held (its payloads' bytes copied), so the read
            // lock holds writers up no longer than the copying takes.
            match state.index.scan_each(after, COMPACT_STEP, |s| w.encode(s)) {
                Ok((count, last)) => {
                    cursor = last;
                    count
                }
                Err(e) => {
                    drop(state);
                    w.abandon();
                    return Err(fail(e));
                }
            }
        };
        if let Err(e) = w.write_out() {
            w.abandon();
            return Err(fail(e));
        }
        if step < COMPACT_STEP {
            break;
        }
    }
    let count = w.count();
    let bytes = w.finish().map_err(fail)?;
    shared.status.snapshot_bytes.store(bytes, Ordering::Relaxed);
    // The snapshot covers the logs up to `generation`: remove them.
    let mut removed = 0u64;
    let entries = fs::read_dir(dir).map_err(fail)?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if parse_log_file_name(&name.to_string_lossy()).is_some_and(|g| g <= generation) {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(entry.path()).map_err(fail)?;
            removed += size;
        }
    }
    sync_dir(dir).map_err(fail)?;
    let _ =
        shared.status.log_bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(removed)));
    tracing::info!(generation, sessions = count, bytes, "Compacted the sessions store.");
    Ok((count, bytes))
}

/// The background compactor: compacts whenever the writer says the logs grew enough.
pub(super) async fn run_compactor(shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = shared.status.compact_wanted.notified() => {}
        }
        if !shared.status.wants_compaction() {
            continue;
        }
        if let Err(e) = compact(&shared).await {
            if cancel.is_cancelled() {
                return;
            }
            tracing::warn!(error = %e, code = %e.code, "Compaction failed; it will be tried again.");
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(shared.compact_retry) => {}
            }
        }
    }
}
