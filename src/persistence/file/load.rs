//! Opening a store folder: the lock, replay of snapshot and logs, torn-tail repair, and the
//! import of a Node service JSON file.
//!
//! Nothing is changed on disk (beyond removing an interrupted temp snapshot) until every file has
//! been read and checked, so a store that fails to open with `CORRUPT_STORE` is left as it was
//! for an operator to inspect. Replay decodes only the newest record of each session (see
//! `replay`), so start-up costs about the same whatever the length of the logs.

use super::format::{
    decode_put, decode_record, log_path, parse_log_file_name, parse_snapshot_header, peek_record, Damage, Frames, Peek,
    Record, LOCK_FILE, LOG_MAGIC, SNAPSHOT_FILE, SNAPSHOT_HEADER, SNAPSHOT_TEMP_FILE,
};
use super::snapshot::{sync_dir, SnapshotWriter};
use super::{RecoveryReport, TornTail, FILE_LOCKED};
use crate::data::version1::SessionV1;
use crate::persistence::index::{IndexBuilder, SessionsIndex};
use crate::persistence::node_json;
use crate::toolkit::errors::ApplicationError;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// Files at least this large are read on two threads.
const PARALLEL_READ: usize = 64 << 20;
/// Frames decoded per step of the start-up pipeline.
const CHUNK: usize = 4096;

/// A store opened for writing.
#[derive(Debug)]
pub(super) struct Opened {
    /// The locked `LOCK` file (the lock lives as long as the handle).
    pub lock: File,
    /// The replayed state.
    pub index: SessionsIndex,
    /// The active log, positioned for appending.
    pub log: File,
    /// The generation of the active log.
    pub generation: u64,
    /// Bytes in the logs the snapshot does not cover.
    pub log_bytes: u64,
    /// Bytes of the snapshot (0 without one).
    pub snapshot_bytes: u64,
    /// What start-up found.
    pub report: RecoveryReport,
}

/// An I/O failure while opening, naming the file.
fn open_failed(path: &Path, what: &str, e: &io::Error) -> ApplicationError {
    ApplicationError::file_error("OPEN_FAILED", format!("Cannot {what} {}: {e}", path.display()))
        .with_details("file", path.display().to_string())
}

/// The `CORRUPT_STORE` error for a file and offset.
pub(super) fn corrupt(path: &Path, offset: u64, reason: &str) -> ApplicationError {
    ApplicationError::file_error(
        "CORRUPT_STORE",
        format!(
            "Sessions store is corrupt: {reason} in {} at offset {offset}; start-up stopped and nothing was changed",
            path.display()
        ),
    )
    .with_details("file", path.display().to_string())
    .with_details("offset", offset)
}

/// Takes the exclusive lock on the folder's `LOCK` file.
fn lock(dir: &Path) -> Result<File, ApplicationError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| open_failed(&path, "open the lock file", &e))?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let by = if holder.chars().all(|c| c.is_ascii_digit()) && !holder.is_empty() {
                format!(" (held by process {holder})")
            } else {
                String::new()
            };
            return Err(ApplicationError::file_error(
                FILE_LOCKED,
                format!("Sessions store {} is open in another process{by}", dir.display()),
            )
            .with_details("file", path.display().to_string()));
        }
        Err(fs4::TryLockError::Error(e)) => return Err(open_failed(&path, "lock", &e)),
    }
    // The process id helps an operator; the lock itself is the flock, not the content.
    let _ = file.set_len(0).and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()));
    Ok(file)
}

/// Opens (or creates) the store in `dir`, importing `import` into a brand-new store.
///
/// # Errors
/// `FILE_LOCKED`, `CORRUPT_STORE`, `IMPORT_FAILED` or `OPEN_FAILED`.
pub(super) fn open_store(dir: &Path, import: Option<&Path>) -> Result<Opened, ApplicationError> {
    fs::create_dir_all(dir).map_err(|e| open_failed(dir, "create the store folder", &e))?;
    let lock = lock(dir)?;
    let mut logs = Vec::new();
    let mut has_snapshot = false;
    let mut has_temp = false;
    for entry in fs::read_dir(dir).map_err(|e| open_failed(dir, "list", &e))? {
        let entry = entry.map_err(|e| open_failed(dir, "list", &e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == SNAPSHOT_FILE {
            has_snapshot = true;
        } else if name == SNAPSHOT_TEMP_FILE {
            // A snapshot a crash interrupted: never valid data.
            has_temp = true;
        } else if let Some(g) = parse_log_file_name(&name) {
            logs.push(g);
        }
    }
    logs.sort_unstable();
    if has_temp {
        let p = dir.join(SNAPSHOT_TEMP_FILE);
        fs::remove_file(&p).map_err(|e| open_failed(&p, "remove", &e))?;
    }
    let mut report = RecoveryReport::default();
    let mut index = IndexBuilder::new();
    // Every file is read whole, then checked, before anything is applied or changed.
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let (snapshot_generation, snapshot_bytes) = if has_snapshot {
        let path = dir.join(SNAPSHOT_FILE);
        let bytes = read_file(&path)?;
        let generation = parse_snapshot_header(&bytes).ok_or_else(|| corrupt(&path, 0, "bad snapshot header"))?;
        let size = bytes.len() as u64;
        files.push((path, bytes));
        (generation, size)
    } else if logs.is_empty() {
        match import.filter(|p| p.exists()) {
            Some(json) => {
                let sessions = read_node_json(json)?;
                report.imported = Some(sessions.len());
                let bytes = write_import(dir, &sessions)?;
                tracing::info!(
                    file = %json.display(), sessions = sessions.len(),
                    "Imported the sessions of a Node service JSON file; that file is no longer read."
                );
                sessions.into_iter().for_each(|s| index.put(s));
                (0, bytes)
            }
            None => (0, 0),
        }
    } else {
        (0, 0)
    };
    report.snapshot_generation = snapshot_generation;
    let stale: Vec<u64> = logs.iter().copied().filter(|g| *g <= snapshot_generation).collect();
    let live: Vec<u64> = logs.iter().copied().filter(|g| *g > snapshot_generation).collect();
    // A compaction snapshot G (G > 0; an import is generation 0) is written only after log G+1
    // was created: without it, the active log was lost and an older state would load quietly.
    if has_snapshot && snapshot_generation > 0 && live.is_empty() {
        return Err(corrupt(&log_path(dir, snapshot_generation + 1), 0, "missing log file (the snapshot's next log)"));
    }
    for (i, g) in live.iter().enumerate() {
        let expected = snapshot_generation + 1 + i as u64;
        if *g != expected {
            return Err(corrupt(&log_path(dir, expected), 0, "missing log file"));
        }
    }
    for g in &live {
        let path = log_path(dir, *g);
        let bytes = read_file(&path)?;
        files.push((path, bytes));
    }
    let mut lists: Vec<FrameList<'_>> = Vec::with_capacity(files.len());
    let mut log_bytes = 0;
    let mut torn = None;
    for (i, (path, bytes)) in files.iter().enumerate() {
        if i == 0 && has_snapshot {
            lists.push(snapshot_frames(path, bytes)?);
            continue;
        }
        let (frames, valid, damage) = log_frames(path, bytes, i + 1 == files.len())?;
        report.log_records += frames.len() as u64;
        log_bytes += valid;
        lists.push(frames);
        if let Some(t) = damage {
            torn = Some((path.clone(), t));
        }
    }
    replay(&files, &lists, &mut index)?;
    // Every file checked: now repair and tidy.
    if let Some((path, t)) = &torn {
        repair_tail(path, t.offset)?;
        tracing::warn!(
            file = %path.display(), offset = t.offset, dropped_bytes = t.dropped_bytes,
            "The sessions log ended with an incomplete record; it was cut off. Either a crash \
             interrupted an append (that write was never acknowledged) or the end of the file was \
             damaged after it was written (then the writes in the dropped bytes are lost)."
        );
        report.torn_tail = Some(t.clone());
    }
    for g in &stale {
        let p = log_path(dir, *g);
        fs::remove_file(&p).map_err(|e| open_failed(&p, "remove", &e))?;
    }
    let (generation, log) = match live.last() {
        Some(g) => {
            let p = log_path(dir, *g);
            let file = OpenOptions::new().append(true).open(&p).map_err(|e| open_failed(&p, "open", &e))?;
            (*g, file)
        }
        None => {
            let g = snapshot_generation + 1;
            log_bytes = LOG_MAGIC.len() as u64;
            (g, create_log(dir, g).map_err(|e| open_failed(&log_path(dir, g), "create", &e))?)
        }
    };
    if has_temp || !stale.is_empty() || live.is_empty() {
        sync_dir(dir).map_err(|e| open_failed(dir, "sync", &e))?;
    }
    report.sessions = index.len();
    Ok(Opened { lock, index: index.build(), log, generation, log_bytes, snapshot_bytes, report })
}

/// Creates the log file of a generation with its header, durably.
///
/// # Errors
/// I/O failures (the file may exist; a new one is never overwritten).
pub(super) fn create_log(dir: &Path, generation: u64) -> io::Result<File> {
    let path = log_path(dir, generation);
    let mut file = OpenOptions::new().append(true).create_new(true).open(path)?;
    file.write_all(LOG_MAGIC)?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(file)
}

/// Reads a whole file. A large one is read in two halves on two threads: most of the time goes
/// to faulting in the fresh buffer's pages, which then happens on both cores.
fn read_file(path: &Path) -> Result<Vec<u8>, ApplicationError> {
    let fail = |e: io::Error| open_failed(path, "read", &e);
    let file = File::open(path).map_err(fail)?;
    let len = usize::try_from(file.metadata().map_err(fail)?.len()).map_err(|e| fail(io::Error::other(e)))?;
    if len < PARALLEL_READ {
        return fs::read(path).map_err(fail);
    }
    let mut buf = vec![0u8; len];
    let (first, second) = buf.split_at_mut(len / 2);
    let read_at =
        |part: &mut [u8], offset: usize| std::os::unix::fs::FileExt::read_exact_at(&file, part, offset as u64);
    std::thread::scope(|scope| {
        let other = scope.spawn(|| read_at(second, len / 2));
        let mine = read_at(first, 0);
        mine.and(other.join().unwrap_or_else(|_| Err(io::Error::other("reader thread failed"))))
    })
    .map_err(fail)?;
    Ok(buf)
}

/// The frames of a snapshot, without its trailer, after checking that it is whole: every frame
/// valid, all sessions, and the trailer's count right.
fn snapshot_frames<'a>(path: &Path, bytes: &'a [u8]) -> Result<FrameList<'a>, ApplicationError> {
    let mut frames = Vec::with_capacity(bytes.len() / 300);
    for f in Frames::new(&bytes[SNAPSHOT_HEADER..], SNAPSHOT_HEADER as u64) {
        match f {
            Ok(frame) => frames.push(frame),
            // A snapshot is complete by construction (written aside, synced, renamed).
            Err(Damage::Torn { offset }) => return Err(corrupt(path, offset, "truncated snapshot")),
            Err(Damage::Corrupt { offset, reason }) => return Err(corrupt(path, offset, reason)),
        }
    }
    let Some((end_offset, end)) = frames.pop() else {
        return Err(corrupt(path, bytes.len() as u64, "snapshot without its trailer"));
    };
    match decode_record(end) {
        Some(Record::End(n)) if n == frames.len() as u64 => {}
        Some(Record::End(_)) => return Err(corrupt(path, end_offset, "snapshot trailer count mismatch")),
        _ => return Err(corrupt(path, bytes.len() as u64, "snapshot without its trailer")),
    }
    if let Some((offset, _)) = frames.iter().find(|(_, p)| !matches!(peek_record(p), Some(Peek::Put(_)))) {
        return Err(corrupt(path, *offset, "unexpected record in a snapshot"));
    }
    Ok(frames)
}

/// Checked frames of a file: `(offset, payload)`.
type FrameList<'a> = Vec<(u64, &'a [u8])>;

/// The frames of a log, its valid length and, for the last log only, a torn tail to cut off.
fn log_frames<'a>(
    path: &Path,
    bytes: &'a [u8],
    last: bool,
) -> Result<(FrameList<'a>, u64, Option<TornTail>), ApplicationError> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let len = bytes.len() as u64;
    let magic = LOG_MAGIC.len();
    if bytes.len() < magic && last && LOG_MAGIC.starts_with(bytes) {
        // Created but its header never reached the disk.
        return Ok((Vec::new(), magic as u64, Some(TornTail { file: file_name, offset: 0, dropped_bytes: len })));
    }
    if bytes.get(..magic) != Some(&LOG_MAGIC[..]) {
        return Err(corrupt(path, 0, "not a sessions log (bad header)"));
    }
    let mut frames = Vec::new();
    for f in Frames::new(&bytes[magic..], magic as u64) {
        match f {
            Ok(frame) => frames.push(frame),
            Err(Damage::Torn { offset }) if last => {
                let torn = TornTail { file: file_name, offset, dropped_bytes: len - offset };
                return Ok((frames, offset, Some(torn)));
            }
            Err(Damage::Torn { offset }) => {
                return Err(corrupt(path, offset, "incomplete record in a log that is not the last"))
            }
            Err(Damage::Corrupt { offset, reason }) => return Err(corrupt(path, offset, reason)),
        }
    }
    Ok((frames, len, None))
}

/// Applies checked frames (snapshot first, then logs, oldest first) to `index`.
///
/// Records are whole states, so only the newest record of each session matters: a walk from the
/// newest frame back reads just the tag and id of each, stops at a `clear`, and picks the frames
/// to decode — one per live session, however long the logs. Those are decoded on worker threads
/// while this thread adds them to the index.
fn replay(
    files: &[(PathBuf, Vec<u8>)],
    lists: &[FrameList<'_>],
    index: &mut IndexBuilder,
) -> Result<(), ApplicationError> {
    let mut seen: HashSet<&[u8]> = HashSet::with_capacity(lists.first().map_or(0, Vec::len));
    let mut picked: Vec<(usize, u64, &[u8])> = Vec::with_capacity(seen.capacity());
    'walk: for (file, frames) in lists.iter().enumerate().rev() {
        for (offset, payload) in frames.iter().rev() {
            match peek_record(payload) {
                Some(Peek::Put(id)) => {
                    if seen.insert(id) {
                        picked.push((file, *offset, payload));
                    }
                }
                Some(Peek::Delete(id)) => {
                    seen.insert(id);
                }
                Some(Peek::Clear) => break 'walk,
                Some(Peek::End) => return Err(corrupt(&files[file].0, *offset, "unexpected record in a log")),
                None => return Err(corrupt(&files[file].0, *offset, "undecodable record")),
            }
        }
    }
    drop(seen);
    index.reserve(picked.len());
    // Each picked frame is a session's state (its peek said so): made into its record on the
    // decoding threads, straight from the frame's bytes.
    let prepare = |payload: &[u8]| decode_put(payload).map(|s| IndexBuilder::prepare(&s));
    decode_parallel(&picked, prepare, |file, offset, record| match record {
        Some(record) => {
            index.put_prepared(record);
            Ok(())
        }
        None => Err(corrupt(&files[file].0, offset, "undecodable record")),
    })
}
/// Cuts a log at `offset` (keeping its header) and syncs it.
fn repair_tail(path: &Path, offset: u64) -> Result<(), ApplicationError> {
    let fail = |e: io::Error| open_failed(path, "repair", &e);
    let mut file = OpenOptions::new().write(true).open(path).map_err(fail)?;
    if offset == 0 {
        file.set_len(0).map_err(fail)?;
        file.write_all(LOG_MAGIC).map_err(fail)?;
    } else {
        file.set_len(offset).map_err(fail)?;
    }
    file.sync_all().map_err(fail)
}

/// Decodes the frames on worker threads (bounded channels keep the order and the memory) while
/// this thread applies them in order.
fn decode_parallel<T: Send>(
    frames: &[(usize, u64, &[u8])],
    decode: impl Fn(&[u8]) -> Option<T> + Sync,
    mut apply: impl FnMut(usize, u64, Option<T>) -> Result<(), ApplicationError>,
) -> Result<(), ApplicationError> {
    let decode_all = |frames: &[(usize, u64, &[u8])]| -> Vec<(usize, u64, Option<T>)> {
        frames.iter().map(|(file, offset, payload)| (*file, *offset, decode(payload))).collect()
    };
    let mut apply_all = |decoded: Vec<(usize, u64, Option<T>)>| {
        decoded.into_iter().try_for_each(|(file, offset, record)| apply(file, offset, record))
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    if workers < 2 || frames.len() < 2 * CHUNK {
        return apply_all(decode_all(frames));
    }
    let chunks: Vec<&[(usize, u64, &[u8])]> = frames.chunks(CHUNK).collect();
    std::thread::scope(|scope| {
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = mpsc::sync_channel(2);
            let mine: Vec<&[(usize, u64, &[u8])]> = chunks.iter().skip(w).step_by(workers).copied().collect();
            let decode_all = &decode_all;
            handles.push(scope.spawn(move || {
                for chunk in mine {
                    if tx.send(decode_all(chunk)).is_err() {
                        return;
                    }
                }
            }));
            receivers.push(rx);
        }
        let result = chunks.iter().enumerate().try_for_each(|(i, chunk)| {
            // A worker that stopped early (it cannot, on any input) leaves its chunks to us.
            let decoded = receivers[i % workers].recv().unwrap_or_else(|_| decode_all(chunk));
            apply_all(decoded)
        });
        drop(receivers);
        for h in handles {
            let _ = h.join();
        }
        result
    })
}

/// Reads a Node service JSON file: a JSON array of SessionV1 (see
/// [`crate::persistence::node_json`]); any item that is not a session stops the import.
fn read_node_json(path: &Path) -> Result<Vec<SessionV1>, ApplicationError> {
    let bytes = read_file(path)?;
    let import_failed = |what: String| {
        ApplicationError::file_error("IMPORT_FAILED", format!("Cannot import {}: {what}", path.display()))
            .with_details("file", path.display().to_string())
    };
    let items = node_json::parse_file(&bytes).map_err(|e| {
        import_failed(format!("not a JSON array of sessions (line {}, column {})", e.line(), e.column()))
    })?;
    items
        .into_iter()
        .map(|item| item.map_err(|u| import_failed(format!("item #{} is not a session ({})", u.index + 1, u.reason))))
        .collect()
}

/// Writes imported sessions as the first snapshot (generation 0).
fn write_import(dir: &Path, sessions: &[SessionV1]) -> Result<u64, ApplicationError> {
    let temp: PathBuf = dir.join(SNAPSHOT_TEMP_FILE);
    let fail = |e: io::Error| open_failed(&temp, "write", &e);
    let mut w = SnapshotWriter::create(dir, 0).map_err(fail)?;
    for s in sessions {
        w.encode(s).map_err(fail)?;
    }
    w.finish().map_err(fail)
}
