//! Opening a store folder: the lock, replay of snapshot and logs, torn-tail repair, and the
//! import of a Node service JSON file.
//!
//! Nothing is changed on disk until every file has been read and checked, so a store that fails
//! to open with `CORRUPT_STORE` is left exactly as it was for an operator to inspect.

use super::format::{
    decode_record, log_path, parse_log_file_name, parse_snapshot_header, Damage, Frames, Record, LOCK_FILE, LOG_MAGIC,
    SNAPSHOT_FILE, SNAPSHOT_HEADER, SNAPSHOT_TEMP_FILE,
};
use super::snapshot::{sync_dir, SnapshotWriter};
use super::{RecoveryReport, TornTail};
use crate::data::version1::SessionV1;
use crate::persistence::index::{IndexBuilder, SessionsIndex};
use crate::toolkit::errors::ApplicationError;
use serde_json::Value;
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
pub struct Opened {
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
pub fn corrupt(path: &Path, offset: u64, reason: &str) -> ApplicationError {
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
                "FILE_LOCKED",
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
pub fn open_store(dir: &Path, import: Option<&Path>) -> Result<Opened, ApplicationError> {
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
    let (snapshot_generation, snapshot_bytes) = if has_snapshot {
        load_snapshot(&dir.join(SNAPSHOT_FILE), &mut index)?
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
    for (i, g) in live.iter().enumerate() {
        let expected = snapshot_generation + 1 + i as u64;
        if *g != expected {
            return Err(corrupt(&log_path(dir, expected), 0, "missing log file"));
        }
    }
    let mut log_bytes = 0;
    let mut torn = None;
    for (i, g) in live.iter().enumerate() {
        let path = log_path(dir, *g);
        let last = i + 1 == live.len();
        let (valid, records, damage) = replay_log(&path, last, &mut index)?;
        report.log_records += records;
        log_bytes += valid;
        if let Some(t) = damage {
            torn = Some((path, t));
        }
    }
    // Every file checked: now repair and tidy.
    if let Some((path, t)) = &torn {
        repair_tail(path, t.offset)?;
        tracing::warn!(
            file = %path.display(), offset = t.offset, dropped_bytes = t.dropped_bytes,
            "The sessions log ended with an incomplete record (a crash during an append); it was cut off. \
             Writes acknowledged under sync=always are never in such a record."
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
pub fn create_log(dir: &Path, generation: u64) -> io::Result<File> {
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

/// Loads the snapshot into `index`; returns its generation and size.
fn load_snapshot(path: &Path, index: &mut IndexBuilder) -> Result<(u64, u64), ApplicationError> {
    let bytes = read_file(path)?;
    let generation = parse_snapshot_header(&bytes).ok_or_else(|| corrupt(path, 0, "bad snapshot header"))?;
    let mut puts = 0u64;
    let mut end = None;
    let frames = Frames::new(&bytes[SNAPSHOT_HEADER..], SNAPSHOT_HEADER as u64);
    // About 300 bytes a session; reserving saves rehashing a map of large entries while loading.
    index.reserve(bytes.len() / 300);
    replay_frames(path, frames, |offset, record| {
        if end.is_some() {
            return Err(corrupt(path, offset, "data after the snapshot trailer"));
        }
        match record {
            Record::Put(s) => {
                puts += 1;
                index.put(s);
            }
            Record::End(n) if n == puts => end = Some(n),
            _ => return Err(corrupt(path, offset, "unexpected record in a snapshot")),
        }
        Ok(())
    })
    .and_then(|damage| match damage {
        None => Ok(()),
        // A snapshot is complete by construction (written aside, synced, renamed).
        Some(Damage::Torn { offset }) => Err(corrupt(path, offset, "truncated snapshot")),
        Some(Damage::Corrupt { offset, reason }) => Err(corrupt(path, offset, reason)),
    })?;
    if end.is_none() {
        return Err(corrupt(path, bytes.len() as u64, "snapshot without its trailer"));
    }
    Ok((generation, bytes.len() as u64))
}

/// Replays one log into `index`; returns the valid length, the records applied and, for the last
/// log only, a torn tail to cut off.
fn replay_log(
    path: &Path,
    last: bool,
    index: &mut IndexBuilder,
) -> Result<(u64, u64, Option<TornTail>), ApplicationError> {
    let bytes = read_file(path)?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let len = bytes.len() as u64;
    let magic = LOG_MAGIC.len();
    if bytes.len() < magic && last && LOG_MAGIC.starts_with(&bytes) {
        // Created but its header never reached the disk.
        return Ok((magic as u64, 0, Some(TornTail { file: file_name, offset: 0, dropped_bytes: len })));
    }
    if bytes.get(..magic) != Some(&LOG_MAGIC[..]) {
        return Err(corrupt(path, 0, "not a sessions log (bad header)"));
    }
    let mut records = 0u64;
    let frames = Frames::new(&bytes[magic..], magic as u64);
    let damage = replay_frames(path, frames, |offset, record| {
        match record {
            Record::Put(s) => index.put(s),
            Record::Delete(id) => index.remove(&id),
            Record::Clear => index.clear(),
            Record::End(_) => return Err(corrupt(path, offset, "unexpected record in a log")),
        }
        records += 1;
        Ok(())
    })?;
    match damage {
        None => Ok((len, records, None)),
        Some(Damage::Torn { offset }) if last => {
            Ok((offset, records, Some(TornTail { file: file_name, offset, dropped_bytes: len - offset })))
        }
        Some(Damage::Torn { offset }) => Err(corrupt(path, offset, "incomplete record in a log that is not the last")),
        Some(Damage::Corrupt { offset, reason }) => Err(corrupt(path, offset, reason)),
    }
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

/// Checks every frame, then decodes them on worker threads while this thread applies them in
/// order; returns where the frames stopped being valid, if they did. Decoding (JSON) costs about
/// twice as much as applying, so on two cores this roughly halves start-up.
fn replay_frames(
    path: &Path,
    frames: Frames<'_>,
    mut apply: impl FnMut(u64, Record) -> Result<(), ApplicationError>,
) -> Result<Option<Damage>, ApplicationError> {
    let mut list = Vec::new();
    let mut damage = None;
    for f in frames {
        match f {
            Ok(frame) => list.push(frame),
            Err(d) => {
                damage = Some(d);
                break;
            }
        }
    }
    let mut apply_all = |decoded: Vec<(u64, Result<Record, ()>)>| -> Result<(), ApplicationError> {
        decoded.into_iter().try_for_each(|(offset, record)| {
            apply(offset, record.map_err(|()| corrupt(path, offset, "undecodable record"))?)
        })
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    if workers < 2 || list.len() < 2 * CHUNK {
        apply_all(decode(&list))?;
        return Ok(damage);
    }
    let chunks: Vec<&[(u64, &[u8])]> = list.chunks(CHUNK).collect();
    std::thread::scope(|scope| {
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = mpsc::sync_channel(2);
            let mine: Vec<&[(u64, &[u8])]> = chunks.iter().skip(w).step_by(workers).copied().collect();
            handles.push(scope.spawn(move || {
                for chunk in mine {
                    if tx.send(decode(chunk)).is_err() {
                        return;
                    }
                }
            }));
            receivers.push(rx);
        }
        let result = chunks.iter().enumerate().try_for_each(|(i, chunk)| {
            // A worker that stopped early (it cannot, on any input) leaves its chunks to us.
            let decoded = receivers[i % workers].recv().unwrap_or_else(|_| decode(chunk));
            apply_all(decoded)
        });
        drop(receivers);
        for h in handles {
            let _ = h.join();
        }
        result
    })?;
    Ok(damage)
}

/// Decodes payloads (a failure carries no detail: it could only quote stored values).
fn decode(frames: &[(u64, &[u8])]) -> Vec<(u64, Result<Record, ()>)> {
    frames.iter().map(|(o, p)| (*o, decode_record(p).ok_or(()))).collect()
}

/// Reads a Node service JSON file: a JSON array of SessionV1 (without `version`; `user` and
/// `data` may be absent).
fn read_node_json(path: &Path) -> Result<Vec<SessionV1>, ApplicationError> {
    let bytes = read_file(path)?;
    let import_failed = |what: String| {
        ApplicationError::file_error("IMPORT_FAILED", format!("Cannot import {}: {what}", path.display()))
            .with_details("file", path.display().to_string())
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let items: Vec<Value> = serde_json::from_slice(&bytes).map_err(|e| {
        import_failed(format!("not a JSON array of sessions (line {}, column {})", e.line(), e.column()))
    })?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| node_session(item).ok_or_else(|| import_failed(format!("item #{} is not a session", i + 1))))
        .collect()
}

/// One Node session as a SessionV1: absent `user`/`data` become `null`, an absent `active`
/// follows `close_time`, an absent `request_time` is `open_time`, `version` defaults to 1.
fn node_session(mut item: Value) -> Option<SessionV1> {
    let obj = item.as_object_mut()?;
    for key in ["user", "data"] {
        obj.entry(key).or_insert(Value::Null);
    }
    let closed = obj.get("close_time").is_some_and(|t| !t.is_null());
    obj.entry("active").or_insert(Value::Bool(!closed));
    if !obj.contains_key("request_time") {
        let open = obj.get("open_time")?.clone();
        obj.insert("request_time".into(), open);
    }
    serde_json::from_value(item).ok()
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
