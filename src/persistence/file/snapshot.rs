//! Writing a snapshot: a temp file, filled in chunks, fsynced, atomically renamed over the old
//! snapshot, and the folder fsynced, so a crash at any point leaves either the old or the new
//! snapshot whole.

use super::format::{encode_frame, encode_put_frame, snapshot_header, Record, SNAPSHOT_FILE, SNAPSHOT_TEMP_FILE};
use crate::data::version1::{SessionV1, SessionView};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Fsyncs a folder, making creations, renames and removals in it durable.
///
/// # Errors
/// I/O failures.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A snapshot being written.
#[derive(Debug)]
pub(super) struct SnapshotWriter {
    dir: PathBuf,
    file: File,
    buf: Vec<u8>,
    count: u64,
    bytes: u64,
}

impl SnapshotWriter {
    /// Starts a snapshot covering the logs up to `generation`.
    ///
    /// # Errors
    /// I/O failures.
    pub(super) fn create(dir: &Path, generation: u64) -> io::Result<Self> {
        let file = OpenOptions::new().write(true).create(true).truncate(true).open(dir.join(SNAPSHOT_TEMP_FILE))?;
        let mut buf = Vec::with_capacity(1 << 20);
        buf.extend_from_slice(&snapshot_header(generation));
        Ok(Self { dir: dir.to_path_buf(), file, buf, count: 0, bytes: 0 })
    }

    /// Encodes one session into the buffer (no I/O, so it may run under the state lock).
    ///
    /// # Errors
    /// When the session cannot be serialised (not expected).
    pub(super) fn encode<S: SessionView + ?Sized>(&mut self, session: &S) -> io::Result<()> {
        encode_put_frame(&mut self.buf, session).map_err(io::Error::other)?;
        self.count += 1;
        Ok(())
    }

    /// Writes the buffer out.
    ///
    /// # Errors
    /// I/O failures.
    pub(super) fn write_out(&mut self) -> io::Result<()> {
        self.file.write_all(&self.buf)?;
        self.bytes += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Sessions encoded so far.
    pub(super) fn count(&self) -> u64 {
        self.count
    }

    /// Writes the trailer, syncs, renames into place and syncs the folder; returns the size.
    ///
    /// # Errors
    /// I/O failures (the temp file is left for start-up to remove).
    pub(super) fn finish(mut self) -> io::Result<u64> {
        encode_frame(&mut self.buf, &Record::<&SessionV1>::End(self.count)).map_err(io::Error::other)?;
        self.write_out()?;
        self.file.sync_all()?;
        fs::rename(self.dir.join(SNAPSHOT_TEMP_FILE), self.dir.join(SNAPSHOT_FILE))?;
        sync_dir(&self.dir)?;
        Ok(self.bytes)
    }

    /// Gives up and removes the temp file.
    pub(super) fn abandon(self) {
        let _ = fs::remove_file(self.dir.join(SNAPSHOT_TEMP_FILE));
    }
}
