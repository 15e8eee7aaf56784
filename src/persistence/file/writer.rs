//! The log writer: one OS thread that owns the active log file, appends records in the order
//! they were applied, and fsyncs them (group commit).
//!
//! Requests hand their records over a channel while holding the state lock, so the channel order
//! is the order of application. The thread takes everything queued, writes it with one `write`,
//! fsyncs once (`sync: always`), and only then answers every waiter: concurrent writes share one
//! fsync, and the more there are, the larger the batch. A failed write or fsync puts the store in
//! the failed state: every later append is refused and every waiter is told so.

use super::format::{encode_frame, log_path, Record};
use super::load::create_log;
use super::SyncMode;
use crate::toolkit::errors::ApplicationError;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// A batch is written out once it grows past this many bytes, even if more is queued.
const MAX_BATCH_BYTES: usize = 8 << 20;

/// What the writer is asked to do.
#[derive(Debug)]
pub enum Command {
    /// Append records; `ack` gets `true` once they are written (and fsynced under `always`).
    Append {
        /// The records, in order.
        records: Vec<Record>,
        /// Answered after the write (and fsync).
        ack: oneshot::Sender<bool>,
    },
    /// Close the active log (fsynced) and continue in a new generation; answers the closed one.
    Rotate {
        /// Answered with the generation that was closed.
        ack: oneshot::Sender<Result<u64, ApplicationError>>,
    },
    /// Write and fsync everything queued before it.
    Flush {
        /// Answered after the fsync.
        ack: oneshot::Sender<Result<(), ApplicationError>>,
    },
}

/// Counters and signals shared by the writer, the compactor and the component.
#[derive(Debug)]
pub struct IoStatus {
    /// Set after a failed write; the store then refuses writes until reopened.
    pub failed: AtomicBool,
    /// Bytes in the logs the snapshot does not cover.
    pub log_bytes: AtomicU64,
    /// Size of the current snapshot.
    pub snapshot_bytes: AtomicU64,
    /// The configured compaction threshold in bytes.
    pub compact_threshold: u64,
    /// Signalled when the logs have grown enough to compact.
    pub compact_wanted: Notify,
}

impl IoStatus {
    /// Fresh counters.
    pub fn new(compact_threshold: u64) -> Self {
        Self {
            failed: AtomicBool::new(false),
            log_bytes: AtomicU64::new(0),
            snapshot_bytes: AtomicU64::new(0),
            compact_threshold,
            compact_wanted: Notify::new(),
        }
    }

    /// Whether the logs outgrew both the threshold and half the snapshot: compaction work stays
    /// proportional to the writes that caused it, and start-up replays at most about 1.5 times
    /// the live data.
    pub fn wants_compaction(&self) -> bool {
        let limit = self.compact_threshold.max(self.snapshot_bytes.load(Ordering::Relaxed) / 2);
        !self.failed.load(Ordering::Relaxed) && self.log_bytes.load(Ordering::Relaxed) >= limit
    }
}

/// The `WRITE_FAILED` error (no paths or data: it reaches clients).
pub fn write_failed() -> ApplicationError {
    ApplicationError::file_error(
        "WRITE_FAILED",
        "The sessions store cannot write; it serves reads only until restarted",
    )
}

/// The writer thread's state.
#[derive(Debug)]
pub struct LogWriter {
    dir: PathBuf,
    file: File,
    generation: u64,
    sync: SyncMode,
    interval: Duration,
    status: std::sync::Arc<IoStatus>,
    buf: Vec<u8>,
    waiters: Vec<oneshot::Sender<bool>>,
    dirty: bool,
    last_sync: Instant,
}

impl LogWriter {
    /// A writer appending to `file`, the log of `generation` in `dir`.
    pub fn new(
        dir: PathBuf,
        file: File,
        generation: u64,
        sync: SyncMode,
        interval: Duration,
        status: std::sync::Arc<IoStatus>,
    ) -> Self {
        Self {
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
        }
    }

    fn failed(&self) -> bool {
        self.status.failed.load(Ordering::Acquire)
    }

    fn fail(&mut self, what: &str, e: &dyn std::fmt::Display) {
        tracing::error!(
            file = %log_path(&self.dir, self.generation).display(), error = %e,
            "Cannot {what} the sessions log; the store now refuses writes until restarted."
        );
        self.status.failed.store(true, Ordering::Release);
    }

    /// Runs until every sender is gone, then writes and fsyncs what is left.
    ///
    /// # Errors
    /// `WRITE_FAILED` if any write failed while open or the final fsync fails.
    pub fn run(mut self, rx: &Receiver<Command>) -> Result<(), ApplicationError> {
        loop {
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
                match rx.recv() {
                    Ok(c) => c,
                    Err(_) => break,
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
            Command::Append { records, ack } => {
                if self.failed() {
                    let _ = ack.send(false);
                    return;
                }
                for r in &records {
                    if let Err(e) = encode_frame(&mut self.buf, r) {
                        self.fail("encode a record for", &e);
                        break;
                    }
                }
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
        if ok && !self.buf.is_empty() {
            match self.file.write_all(&self.buf) {
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
        match self.file.sync_data() {
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

    /// Closes the active log durably and opens the next generation.
    fn rotate(&mut self) -> Result<u64, ApplicationError> {
        if self.failed() || (self.dirty && !self.sync_now()) {
            return Err(write_failed());
        }
        let next = self.generation + 1;
        match create_log(&self.dir, next) {
            Ok(file) => {
                self.file = file;
                self.status.log_bytes.fetch_add(super::format::LOG_MAGIC.len() as u64, Ordering::Relaxed);
                let closed = self.generation;
                self.generation = next;
                Ok(closed)
            }
            Err(e) => {
                self.fail("start a new generation of", &e as &dyn std::fmt::Display);
                Err(write_failed())
            }
        }
    }
}

/// Starts the writer thread.
///
/// # Errors
/// When the OS cannot start a thread.
pub fn spawn(
    writer: LogWriter,
    rx: Receiver<Command>,
) -> io::Result<std::thread::JoinHandle<Result<(), ApplicationError>>> {
    std::thread::Builder::new().name("sessions-log-writer".into()).spawn(move || writer.run(&rx))
}
