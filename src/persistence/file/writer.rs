//! The log writer: one OS thread that owns the active log file, appends records in the order
//! they were applied, and fsyncs them (group commit).
//!
//! Requests encode their records and hand the frames over a channel while holding the state lock,
//! so the channel order is the order of application; the thread only copies them into its batch.
//! It takes everything queued, writes it with one `write`, fsyncs once (`sync: always`), and only
//! then answers every waiter: concurrent writes share one fsync, and the more there are, the
//! larger the batch.
//!
//! A failed write or fsync of the active log puts the store in the failed state: every later
//! append is refused and every waiter is told so. The thread then probes every
//! [`RECOVER_INTERVAL`]: it reopens the active log, cuts it back to its last good length (the
//! failed batch was never acknowledged) and fsyncs it; when that works the store writes again.
//! Before each write it also checks that the active log is still the file it opened (same device
//! and inode, folder still there): a removed folder or a deleted or replaced log makes the store
//! *lost* — writes are refused and readiness fails until an operator restarts it, because what
//! it would acknowledge could not be kept. A failed rotation (creating the next log) is not a
//! failure of the active log: appends continue and the compaction is tried again later.

use super::format::log_path;
use super::load::create_log;
use super::SyncMode;
use crate::toolkit::errors::ApplicationError;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// A batch is written out once it grows past this many bytes, even if more is queued.
const MAX_BATCH_BYTES: usize = 8 << 20;

/// How often a failed store probes whether it can write again, and an idle one checks that its
/// files are still there.
pub(super) const RECOVER_INTERVAL: Duration = Duration::from_millis(1000);

/// What the writer is asked to do.
#[derive(Debug)]
pub(super) enum Command {
    /// Append records; `ack` gets `true` once they are written (and fsynced under `always`).
    Append {
        /// The records, in order, encoded as frames.
        frames: Vec<u8>,
        /// Answered after the write (and fsync).
        ack: oneshot::Sender<bool>,
    },
    /// Close the active log and continue in a new generation; answers the closed one.
    Rotate {
        /// Answered with the generation that was closed.
        ack: oneshot::Sender<Result<Rotated, ApplicationError>>,
    },
    /// Write and fsync everything queued before it.
    Flush {
        /// Answered after the fsync.
        ack: oneshot::Sender<Result<(), ApplicationError>>,
    },
}

/// A log the writer has closed by a rotation.
#[derive(Debug)]
pub(super) struct Rotated {
    /// Its generation.
    pub generation: u64,
    /// The closed log itself when it holds writes not fsynced yet (`sync: interval` or `never`):
    /// the compaction fsyncs it off the writer's thread, so appends to the next log never wait
    /// for that (with `never`, possibly all of a log's hundreds of MB).
    pub unsynced: Option<UnsyncedLog>,
}

/// A closed log holding writes not fsynced yet. Dropped without [`UnsyncedLog::sync`] (a
/// compaction stopped between its rotation and its snapshot, as the store closes), it is
/// fsynced then, so its writes never depend on the OS's write-back alone.
#[derive(Debug)]
pub(super) struct UnsyncedLog(Option<File>);

impl UnsyncedLog {
    /// Fsyncs the log.
    ///
    /// # Errors
    /// The fsync's.
    pub(super) fn sync(mut self) -> io::Result<()> {
        self.0.take().map_or(Ok(()), |f| f.sync_data())
    }
}

impl Drop for UnsyncedLog {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            let _ = f.sync_data();
        }
    }
}

/// Counters and signals shared by the writer, the compactor and the component.
#[derive(Debug)]
pub(super) struct IoStatus {
    /// Set after a failed write; the store refuses writes until the writer recovers.
    pub failed: AtomicBool,
    /// Set when the folder or the active log disappeared or was replaced: writes are refused and
    /// the store is not ready until restarted.
    pub lost: AtomicBool,
    /// Bytes in the logs the snapshot does not cover.
    pub log_bytes: AtomicU64,
    /// Size of the current snapshot.
    pub snapshot_bytes: AtomicU64,
    /// The configured compaction threshold in bytes.
    pub compact_threshold: u64,
    /// Signalled when the logs have grown enough to compact.
    pub compact_wanted: Notify,
    /// Test hook: how many of the next writes fail as if the disk refused them.
    pub injected_write_failures: AtomicU32,
}

impl IoStatus {
    /// Fresh counters.
    pub(super) fn new(compact_threshold: u64) -> Self {
        Self {
            failed: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            log_bytes: AtomicU64::new(0),
            snapshot_bytes: AtomicU64::new(0),
            compact_threshold,
            compact_wanted: Notify::new(),
            injected_write_failures: AtomicU32::new(0),
        }
    }

    /// Whether the logs outgrew both the threshold and half the snapshot: compaction work stays
    /// proportional to the writes that caused it, and start-up replays at most about 1.5 times
    /// the live data.
    pub(super) fn wants_compaction(&self) -> bool {
        let limit = self.compact_threshold.max(self.snapshot_bytes.load(Ordering::Relaxed) / 2);
        !self.failed.load(Ordering::Relaxed) && self.log_bytes.load(Ordering::Relaxed) >= limit
    }
}

/// The `WRITE_FAILED` error (no paths or data: it reaches clients).
pub(super) fn write_failed() -> ApplicationError {
    ApplicationError::file_error("WRITE_FAILED", "The sessions store cannot write now; it serves reads only")
}

/// The device and inode of a file, to tell whether a path still names the file that is open.
#[cfg(unix)]
fn identity(m: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn identity(_m: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// How the log is made durable: `File::sync_data`, or a test's wrapper around it.
pub(super) type SyncFn = Arc<dyn Fn(&File) -> io::Result<()> + Send + Sync>;

/// The writer thread's state.
pub(super) struct LogWriter {
    dir: PathBuf,
    file: File,
    generation: u64,
    /// The path of the active log (of `generation`), made once per generation: the check that
    /// the log is still there runs once per group commit.
    path: PathBuf,
    sync: SyncMode,
    interval: Duration,
    status: Arc<IoStatus>,
    buf: Vec<u8>,
    waiters: Vec<oneshot::Sender<bool>>,
    dirty: bool,
    last_sync: Instant,
    /// Length of the active log up to its last good write.
    len: u64,
    /// Device and inode of the active log when opened.
    identity: Option<(u64, u64)>,
    /// How the log is fsynced.
    sync_fn: SyncFn,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("dir", &self.dir)
            .field("generation", &self.generation)
            .field("sync", &self.sync)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl LogWriter {
    /// A writer appending to `file`, the log of `generation` in `dir`.
    pub(super) fn new(
        dir: PathBuf,
        file: File,
        generation: u64,
        sync: SyncMode,
        interval: Duration,
        status: Arc<IoStatus>,
    ) -> Self {
        let meta = file.metadata().ok();
        let len = meta.as_ref().map_or(0, std::fs::Metadata::len);
        let identity = meta.as_ref().and_then(identity);
        Self {
            len,
            identity,
            path: log_path(&dir, generation),
            dir,
            file,
            generation,
            sync,
            interval,
            status,
            buf: Vec::with_capacity(1 << 16),
            waiters: Vec::new(),
            dirty: false,
            last_sync: Instant::now(),
            sync_fn: Arc::new(File::sync_data),
        }
    }

    fn failed(&self) -> bool {
        self.status.failed.load(Ordering::Acquire)
    }

    fn fail(&mut self, what: &str, e: &dyn std::fmt::Display) {
        tracing::error!(
            file = %self.path.display(), error = %e,
            "Cannot {what} the sessions log; the store refuses writes until it can write again."
        );
        self.status.failed.store(true, Ordering::Release);
    }

    /// Whether the active log is still the file that is open (the folder still there, the log
    /// neither deleted nor replaced). If not, the store is lost: writes are refused for good.
    fn still_there(&mut self) -> bool {
        if self.status.lost.load(Ordering::Acquire) {
            return false;
        }
        let now = match std::fs::metadata(&self.path) {
            Ok(m) => identity(&m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            // Cannot tell (a permission problem): the write itself will say.
            Err(_) => return true,
        };
        if self.identity.is_some() && now == self.identity {
            return true;
        }
        if self.identity.is_none() && now.is_some() {
            return true;
        }
        tracing::error!(
            file = %self.path.display(),
            "The active sessions log (or its folder) was removed or replaced while open; the store \
             refuses writes and is not ready. Restore the folder from a backup or restart to start over."
        );
        self.status.lost.store(true, Ordering::Release);
        self.status.failed.store(true, Ordering::Release);
        false
    }

    /// After a failed write: reopens the active log, cuts it back to its last good length and
    /// fsyncs it. On success the store writes again.
    fn try_recover(&mut self) {
        if !self.failed() || !self.still_there() {
            return;
        }
        let reopened = std::fs::OpenOptions::new().append(true).open(&self.path).and_then(|f| {
            f.set_len(self.len)?;
            f.sync_all()?;
            Ok(f)
        });
        match reopened {
            Ok(file) => {
                self.file = file;
                self.buf.clear();
                self.dirty = false;
                self.status.failed.store(false, Ordering::Release);
                tracing::warn!(file = %self.path.display(), "The sessions log can be written again; the store accepts writes.");
            }
            Err(e) => {
                tracing::debug!(file = %self.path.display(), error = %e, "The sessions log still cannot be written.")
            }
        }
    }

    /// Runs until every sender is gone, then writes and fsyncs what is left.
    ///
    /// # Errors
    /// `WRITE_FAILED` if any write failed while open or the final fsync fails.
    pub(super) fn run(mut self, rx: &Receiver<Command>) -> Result<(), ApplicationError> {
        loop {
            if self.failed() && !self.status.lost.load(Ordering::Acquire) {
                match rx.recv_timeout(RECOVER_INTERVAL) {
                    Ok(c) => {
                        self.handle(c);
                        self.commit();
                    }
                    Err(RecvTimeoutError::Timeout) => self.try_recover(),
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                continue;
            }
            let first = if self.sync == SyncMode::Interval && self.dirty {
                match rx.recv_timeout(self.interval.saturating_sub(self.last_sync.elapsed())) {
                    Ok(c) => c,
                    Err(RecvTimeoutError::Timeout) => {
                        self.sync_now();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                // Idle: look at the files now and then, so a removed folder or log fails
                // readiness even when nobody writes.
                match rx.recv_timeout(RECOVER_INTERVAL) {
                    Ok(c) => c,
                    Err(RecvTimeoutError::Timeout) => {
                        self.still_there();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            self.handle(first);
            while let Ok(c) = rx.try_recv() {
                self.handle(c);
                if self.buf.len() >= MAX_BATCH_BYTES {
                    self.commit();
                }
            }
            self.commit();
        }
        self.commit();
        if self.dirty {
            self.sync_now();
        }
        if self.failed() {
            Err(write_failed())
        } else {
            Ok(())
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Append { frames, ack } => {
                if self.failed() {
                    let _ = ack.send(false);
                    return;
                }
                self.buf.extend_from_slice(&frames);
                self.waiters.push(ack);
            }
            Command::Rotate { ack } => {
                self.commit();
                let _ = ack.send(self.rotate());
            }
            Command::Flush { ack } => {
                self.commit();
                if self.dirty {
                    self.sync_now();
                }
                let _ = ack.send(if self.failed() { Err(write_failed()) } else { Ok(()) });
            }
        }
    }

    /// Writes the buffer, fsyncs as the mode asks, answers the waiters.
    fn commit(&mut self) {
        if self.buf.is_empty() && self.waiters.is_empty() {
            return;
        }
        let mut ok = !self.failed();
        if ok && !self.buf.is_empty() && !self.still_there() {
            ok = false;
        }
        if ok && !self.buf.is_empty() {
            let injected = self
                .status
                .injected_write_failures
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok();
            let written = if injected {
                // Half the batch reaches the file, as when a disk fills up mid-write.
                let _ = self.file.write_all(&self.buf[..self.buf.len() / 2]);
                Err(io::Error::other("injected write failure"))
            } else {
                self.file.write_all(&self.buf)
            };
            match written {
                Ok(()) => {
                    self.status.log_bytes.fetch_add(self.buf.len() as u64, Ordering::Relaxed);
                    self.dirty = true;
                    let due = match self.sync {
                        SyncMode::Always => true,
                        SyncMode::Interval => self.last_sync.elapsed() >= self.interval,
                        SyncMode::Never => false,
                    };
                    if due {
                        ok = self.sync_now();
                    }
                    if ok {
                        self.len += self.buf.len() as u64;
                    }
                }
                Err(e) => {
                    self.fail("write", &e);
                    ok = false;
                }
            }
        }
        self.buf.clear();
        for w in self.waiters.drain(..) {
            let _ = w.send(ok);
        }
        if ok && self.status.wants_compaction() {
            self.status.compact_wanted.notify_one();
        }
    }

    fn sync_now(&mut self) -> bool {
        if self.failed() {
            return false;
        }
        match (self.sync_fn)(&self.file) {
            Ok(()) => {
                self.dirty = false;
                self.last_sync = Instant::now();
                true
            }
            Err(e) => {
                self.fail("fsync", &e);
                false
            }
        }
    }

    /// Closes the active log and opens the next generation; the closed log goes to the
    /// compaction, to be fsynced there if it holds writes not fsynced yet. A failure to create
    /// the next log (no descriptors, no permission, no space) leaves the active log in use: it is
    /// reported to the compaction, which tries again later; a partly created next log is removed.
    fn rotate(&mut self) -> Result<Rotated, ApplicationError> {
        if self.failed() || !self.still_there() {
            return Err(write_failed());
        }
        let next = self.generation + 1;
        let path = log_path(&self.dir, next);
        match create_log(&self.dir, next) {
            Ok(file) => {
                let meta = file.metadata().ok();
                self.len = meta.as_ref().map_or(super::format::LOG_MAGIC.len() as u64, std::fs::Metadata::len);
                self.identity = meta.as_ref().and_then(identity);
                let closed = std::mem::replace(&mut self.file, file);
                let unsynced = std::mem::take(&mut self.dirty).then(|| UnsyncedLog(Some(closed)));
                self.status.log_bytes.fetch_add(super::format::LOG_MAGIC.len() as u64, Ordering::Relaxed);
                let generation = self.generation;
                self.generation = next;
                self.path = path;
                Ok(Rotated { generation, unsynced })
            }
            Err(e) => {
                // Only a file this attempt may have made; never a directory or anything else.
                if e.kind() != io::ErrorKind::AlreadyExists && path.is_file() {
                    let _ = std::fs::remove_file(&path);
                }
                tracing::warn!(
                    file = %path.display(), error = %e,
                    "Cannot start the next sessions log; writes continue in the current one and the compaction is tried again later."
                );
                Err(ApplicationError::file_error("ROTATE_FAILED", "Cannot start the next sessions log").with_cause(e))
            }
        }
    }
}

/// Starts the writer thread.
///
/// # Errors
/// When the OS cannot start a thread.
pub(super) fn spawn(
    writer: LogWriter,
    rx: Receiver<Command>,
) -> io::Result<std::thread::JoinHandle<Result<(), ApplicationError>>> {
    std::thread::Builder::new().name("sessions-log-writer".into()).spawn(move || writer.run(&rx))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::data::version1::SessionV1;
    use crate::persistence::file::format::{encode_frame, Record, LOG_MAGIC};
    use std::sync::mpsc;

    const LOG_MAGIC_LEN: u64 = LOG_MAGIC.len() as u64;

    /// A writer on a fresh log in `dir` whose fsyncs go through `sync_fn`.
    fn writer(dir: &std::path::Path, sync_fn: SyncFn) -> (LogWriter, Arc<IoStatus>) {
        writer_in(dir, SyncMode::Always, sync_fn)
    }

    fn writer_in(dir: &std::path::Path, sync: SyncMode, sync_fn: SyncFn) -> (LogWriter, Arc<IoStatus>) {
        let file = create_log(dir, 1).unwrap();
        let status = Arc::new(IoStatus::new(u64::MAX));
        let mut w = LogWriter::new(dir.to_path_buf(), file, 1, sync, Duration::from_millis(1000), status.clone());
        w.sync_fn = sync_fn;
        (w, status)
    }

    fn rotate(tx: &mpsc::Sender<Command>) -> Rotated {
        let (ack, done) = oneshot::channel();
        tx.send(Command::Rotate { ack }).unwrap();
        done.blocking_recv().unwrap().unwrap()
    }

    /// A rotation never fsyncs on the writer's thread (every append would wait for it): a log
    /// with writes not fsynced yet (`sync: never`) is handed over with them, for the
    /// compaction to fsync; appends go on in the next log at once. A log with nothing left to
    /// fsync is handed over as nothing.
    #[test]
    fn a_rotation_hands_the_closed_log_over_unsynced_and_appends_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let syncs = Arc::new(AtomicU64::new(0));
        let hook: SyncFn = {
            let syncs = syncs.clone();
            Arc::new(move |f: &File| {
                syncs.fetch_add(1, Ordering::SeqCst);
                f.sync_data()
            })
        };
        let (w, status) = writer_in(dir.path(), SyncMode::Never, hook);
        let (tx, rx) = mpsc::channel();
        let thread = spawn(w, rx).unwrap();
        for i in 0..100 {
            assert!(append(&tx, &format!("before-{i}")).blocking_recv().unwrap());
        }
        let rotated = rotate(&tx);
        assert_eq!(rotated.generation, 1);
        let closed = rotated.unsynced.expect("the closed log holds writes not fsynced yet");
        assert_eq!(syncs.load(Ordering::SeqCst), 0, "the writer fsynced at the rotation");
        assert!(append(&tx, "after").blocking_recv().unwrap());
        assert!(std::fs::metadata(log_path(dir.path(), 2)).unwrap().len() > LOG_MAGIC_LEN);
        // Nothing written since: the next rotation has nothing to hand over.
        let (ack, done) = oneshot::channel();
        tx.send(Command::Flush { ack }).unwrap();
        done.blocking_recv().unwrap().unwrap();
        let rotated = rotate(&tx);
        assert_eq!(rotated.generation, 2);
        assert!(rotated.unsynced.is_none());
        closed.sync().unwrap();
        drop(tx);
        thread.join().unwrap().unwrap();
        assert!(!status.failed.load(Ordering::SeqCst));
    }

    fn append(tx: &mpsc::Sender<Command>, id: &str) -> oneshot::Receiver<bool> {
        let (ack, done) = oneshot::channel();
        let mut frames = Vec::new();
        encode_frame(&mut frames, &Record::<SessionV1>::Delete(id.to_owned())).unwrap();
        tx.send(Command::Append { frames, ack }).unwrap();
        done
    }

    /// Under `sync: always` a write is acknowledged only after an fsync that started once it was
    /// in the log: the fsync hook records how long the log was when each fsync began, and every
    /// acknowledgement must find its record's end within that length.
    #[test]
    fn an_append_is_acknowledged_only_after_an_fsync_that_covers_it() {
        let dir = tempfile::tempdir().unwrap();
        let durable = Arc::new(AtomicU64::new(0));
        let syncs = Arc::new(AtomicU64::new(0));
        let hook: SyncFn = {
            let (durable, syncs) = (durable.clone(), syncs.clone());
            Arc::new(move |f: &File| {
                let covered = f.metadata()?.len();
                f.sync_data()?;
                durable.fetch_max(covered, Ordering::SeqCst);
                syncs.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        };
        let (w, status) = writer(dir.path(), hook);
        let mut end = w.len;
        let (tx, rx) = mpsc::channel();
        let thread = spawn(w, rx).unwrap();
        let mut pending = Vec::new();
        for i in 0..2000 {
            let id = format!("session-{i}");
            let mut frame = Vec::new();
            let record: Record = Record::Delete(id.clone());
            encode_frame(&mut frame, &record).unwrap();
            end += frame.len() as u64;
            pending.push((append(&tx, &id), end));
        }
        for (done, end) in pending {
            assert!(done.blocking_recv().unwrap(), "the append was refused");
            let covered = durable.load(Ordering::SeqCst);
            assert!(covered >= end, "acknowledged a write ending at {end} when only {covered} bytes were fsynced");
        }
        drop(tx);
        thread.join().unwrap().unwrap();
        assert!(!status.failed.load(Ordering::SeqCst));
        let n = syncs.load(Ordering::SeqCst);
        assert!((1..=2000).contains(&n), "{n} fsyncs for 2000 appends");
        assert_eq!(std::fs::metadata(log_path(dir.path(), 1)).unwrap().len(), end);
    }

    /// A failed fsync refuses the writes waiting for it and fails the store; a write after it is
    /// refused as well (its own fsync fails too, should the store have recovered meanwhile).
    #[test]
    fn a_failed_fsync_refuses_its_writes_and_fails_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let hook: SyncFn = Arc::new(|_: &File| Err(io::Error::other("injected fsync failure")));
        let (w, status) = writer(dir.path(), hook);
        let (tx, rx) = mpsc::channel();
        let thread = spawn(w, rx).unwrap();
        assert!(!append(&tx, "a").blocking_recv().unwrap());
        assert!(status.failed.load(Ordering::SeqCst));
        assert!(!append(&tx, "b").blocking_recv().unwrap());
        drop(tx);
        let _ = thread.join().unwrap();
    }
}
