//! Checking a store folder without opening it: every frame of the snapshot and of the logs start-up
//! would replay (checksums, record decoding, the snapshot's trailer, the log generations), and the
//! state they add up to.
//!
//! Strictly read-only: the files are only read, nothing is created, cut or removed, and the `LOCK`
//! file is neither created nor locked (opening a store takes an exclusive `flock` on it and writes
//! its process id into it; taking any lock here, even a shared one, would make a service starting
//! at that moment fail with `FILE_LOCKED`). Whether a service holds the lock is read from
//! `/proc/locks` (Linux), which takes no lock; with a service running, the active log may grow
//! while it is read, so an incomplete last frame is then an append in flight. A file that vanishes
//! while being read (a compaction removed it) fails the check with `STORE_CHANGED`; a second run
//! reads the new files.

use super::format::{
    decode_record, parse_log_file_name, parse_snapshot_header, Damage, Frames, Record, LOCK_FILE, LOG_MAGIC,
    SNAPSHOT_FILE, SNAPSHOT_HEADER, SNAPSHOT_TEMP_FILE,
};
use super::STORE_CHANGED;
use crate::toolkit::errors::ApplicationError;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// What one file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    /// The file name in the folder.
    pub name: String,
    /// Its size.
    pub bytes: u64,
    /// Whole, valid frames (a snapshot's trailer included).
    pub frames: u64,
    /// For the snapshot: the log generation it covers.
    pub generation: Option<u64>,
    /// An incomplete last frame (only at the end of the last log): its offset and size.
    pub torn_tail: Option<(u64, u64)>,
    /// The first damage found: offset and what is wrong (start-up would stop there).
    pub corruption: Option<(u64, String)>,
}

/// Whether a service holds the store's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// No process holds it (or there is no `LOCK` file: never opened).
    Free,
    /// A process holds it (its id as the kernel reports it).
    Held(u32),
    /// Cannot tell (no `/proc/locks`).
    Unknown,
}

/// What [`verify_store`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The store folder.
    pub dir: PathBuf,
    /// The lock.
    pub lock: LockState,
    /// The snapshot (if any), then the logs start-up replays, oldest first.
    pub files: Vec<FileCheck>,
    /// Log files the snapshot already covers (start-up removes them) and an interrupted
    /// snapshot (`sessions.snapshot.tmp`); not checked.
    pub leftovers: Vec<String>,
    /// Every damage: the file and what [`FileCheck::corruption`] says (a missing log generation
    /// too).
    pub problems: Vec<String>,
    /// The sessions the files add up to, and how many of them are open (only without problems).
    pub sessions: Option<(u64, u64)>,
}

impl VerifyReport {
    /// Whether start-up would refuse the store.
    pub fn is_corrupt(&self) -> bool {
        !self.problems.is_empty()
    }

    /// Whole frames in every checked file.
    pub fn frames(&self) -> u64 {
        self.files.iter().map(|f| f.frames).sum()
    }

    /// Bytes of every checked file.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// The incomplete last frame, if any: file, offset and size.
    pub fn torn_tail(&self) -> Option<(&str, u64, u64)> {
        self.files.iter().find_map(|f| f.torn_tail.map(|(o, n)| (f.name.as_str(), o, n)))
    }
}

/// Checks the store in `dir` (see the module doc).
///
/// # Errors
/// `NOT_FOUND` when `dir` holds no store; `READ_FAILED` / `STORE_CHANGED` when a file cannot be
/// read. Damage is not an error: it is in [`VerifyReport::problems`].
pub fn verify_store(dir: &Path) -> Result<VerifyReport, ApplicationError> {
    let read_failed = |path: &Path, e: &io::Error| {
        let (code, hint) = if e.kind() == io::ErrorKind::NotFound {
            (STORE_CHANGED, " (a running service compacted the store; check again)")
        } else {
            ("READ_FAILED", "")
        };
        ApplicationError::file_error(code, format!("Cannot read {}: {e}{hint}", path.display()))
            .with_details("file", path.display().to_string())
    };
    let entries = fs::read_dir(dir).map_err(|e| {
        ApplicationError::not_found("NOT_FOUND", format!("No sessions store in {}: {e}", dir.display()))
    })?;
    let mut logs = Vec::new();
    let mut has_snapshot = false;
    let mut leftovers = Vec::new();
    for entry in entries {
        let name = entry.map_err(|e| read_failed(dir, &e))?.file_name().to_string_lossy().into_owned();
        if name == SNAPSHOT_FILE {
            has_snapshot = true;
        } else if name == SNAPSHOT_TEMP_FILE {
            leftovers.push(name);
        } else if let Some(g) = parse_log_file_name(&name) {
            logs.push(g);
        }
    }
    if !has_snapshot && logs.is_empty() {
        return Err(ApplicationError::not_found(
            "NOT_FOUND",
            format!("No sessions store in {} (no snapshot and no log)", dir.display()),
        ));
    }
    logs.sort_unstable();
    let mut report = VerifyReport {
        dir: dir.to_path_buf(),
        lock: lock_state(&dir.join(LOCK_FILE)),
        files: Vec::new(),
        leftovers,
        problems: Vec::new(),
        sessions: None,
    };
    let mut state: HashMap<String, bool> = HashMap::new();
    let mut generation = 0;
    if has_snapshot {
        let path = dir.join(SNAPSHOT_FILE);
        let bytes = fs::read(&path).map_err(|e| read_failed(&path, &e))?;
        let check = check_snapshot(&bytes, &mut state);
        generation = check.generation.unwrap_or(0);
        report.files.push(named(check, SNAPSHOT_FILE));
    }
    let live: Vec<u64> = logs.iter().copied().filter(|g| *g > generation).collect();
    for g in logs.iter().filter(|g| **g <= generation) {
        report.leftovers.push(super::format::log_file_name(*g));
    }
    for (i, g) in live.iter().enumerate() {
        let expected = generation + 1 + i as u64;
        if *g != expected {
            let missing = super::format::log_file_name(expected);
            report.problems.push(damage(&dir.join(&missing), 0, "missing log file"));
            break;
        }
    }
    for (i, g) in live.iter().enumerate() {
        let name = super::format::log_file_name(*g);
        let path = dir.join(&name);
        let bytes = fs::read(&path).map_err(|e| read_failed(&path, &e))?;
        report.files.push(named(check_log(&bytes, i + 1 == live.len(), &mut state), &name));
    }
    for f in &report.files {
        if let Some((offset, reason)) = &f.corruption {
            report.problems.push(damage(&dir.join(&f.name), *offset, reason));
        }
    }
    if report.problems.is_empty() {
        let open = state.values().filter(|active| **active).count() as u64;
        report.sessions = Some((state.len() as u64, open));
    }
    Ok(report)
}

/// The words start-up would use: `<reason> in <file> at offset <n>`.
fn damage(path: &Path, offset: u64, reason: &str) -> String {
    format!("{reason} in {} at offset {offset}", path.display())
}

fn named(mut check: FileCheck, name: &str) -> FileCheck {
    check.name = name.to_string();
    check
}

fn empty_check(bytes: &[u8]) -> FileCheck {
    FileCheck {
        name: String::new(),
        bytes: bytes.len() as u64,
        frames: 0,
        generation: None,
        torn_tail: None,
        corruption: None,
    }
}

/// A snapshot: header, then only session frames, then a trailer with their count; nothing torn.
fn check_snapshot(bytes: &[u8], state: &mut HashMap<String, bool>) -> FileCheck {
    let mut check = empty_check(bytes);
    let Some(generation) = parse_snapshot_header(bytes) else {
        check.corruption = Some((0, "bad snapshot header".to_string()));
        return check;
    };
    check.generation = Some(generation);
    let mut puts = 0u64;
    let mut trailer: Option<(u64, u64)> = None;
    for frame in Frames::new(&bytes[SNAPSHOT_HEADER..], SNAPSHOT_HEADER as u64) {
        let (offset, payload) = match frame {
            Ok(f) => f,
            Err(Damage::Torn { offset }) => {
                check.corruption = Some((offset, "truncated snapshot".to_string()));
                return check;
            }
            Err(Damage::Corrupt { offset, reason }) => {
                check.corruption = Some((offset, reason.to_string()));
                return check;
            }
        };
        check.frames += 1;
        if trailer.is_some() {
            check.corruption = Some((offset, "data after the snapshot trailer".to_string()));
            return check;
        }
        match decode_record(payload) {
            Some(Record::Put(s)) => {
                puts += 1;
                state.insert(s.id, s.active);
            }
            Some(Record::End(n)) => trailer = Some((offset, n)),
            Some(_) => {
                check.corruption = Some((offset, "unexpected record in a snapshot".to_string()));
                return check;
            }
            None => {
                check.corruption = Some((offset, "undecodable record".to_string()));
                return check;
            }
        }
    }
    match trailer {
        None => check.corruption = Some((bytes.len() as u64, "snapshot without its trailer".to_string())),
        Some((offset, n)) if n != puts => {
            check.corruption = Some((offset, "snapshot trailer count mismatch".to_string()));
        }
        Some(_) => {}
    }
    check
}

/// A log: its header, then change records; an incomplete frame may end the last log only.
fn check_log(bytes: &[u8], last: bool, state: &mut HashMap<String, bool>) -> FileCheck {
    let mut check = empty_check(bytes);
    let magic = LOG_MAGIC.len();
    if bytes.len() < magic && last && LOG_MAGIC.starts_with(bytes) {
        check.torn_tail = Some((0, bytes.len() as u64));
        return check;
    }
    if bytes.get(..magic) != Some(&LOG_MAGIC[..]) {
        check.corruption = Some((0, "not a sessions log (bad header)".to_string()));
        return check;
    }
    for frame in Frames::new(&bytes[magic..], magic as u64) {
        let (offset, payload) = match frame {
            Ok(f) => f,
            Err(Damage::Torn { offset }) if last => {
                check.torn_tail = Some((offset, bytes.len() as u64 - offset));
                return check;
            }
            Err(Damage::Torn { offset }) => {
                check.corruption = Some((offset, "incomplete record in a log that is not the last".to_string()));
                return check;
            }
            Err(Damage::Corrupt { offset, reason }) => {
                check.corruption = Some((offset, reason.to_string()));
                return check;
            }
        };
        check.frames += 1;
        match decode_record(payload) {
            Some(Record::Put(s)) => {
                state.insert(s.id, s.active);
            }
            Some(Record::Delete(id)) => {
                state.remove(&id);
            }
            Some(Record::Clear) => state.clear(),
            Some(Record::End(_)) => {
                check.corruption = Some((offset, "unexpected record in a log".to_string()));
                return check;
            }
            None => {
                check.corruption = Some((offset, "undecodable record".to_string()));
                return check;
            }
        }
    }
    check
}

/// Who holds the `flock` on `lock` (see the module doc), read from `/proc/locks`: each line there
/// is `N: FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> 0 EOF` (major and minor in hex).
fn lock_state(lock: &Path) -> LockState {
    let Ok(meta) = fs::metadata(lock) else { return LockState::Free };
    let Ok(table) = fs::read_to_string("/proc/locks") else { return LockState::Unknown };
    let (major, minor, inode) = device_and_inode(&meta);
    for line in table.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Waiters are listed as `N: -> FLOCK ...`; only holders count.
        if fields.len() < 6 || fields[1] != "FLOCK" {
            continue;
        }
        let mut id = fields[5].split(':');
        let (Some(maj), Some(min), Some(ino)) = (id.next(), id.next(), id.next()) else { continue };
        let same = u64::from_str_radix(maj, 16).ok() == Some(major)
            && u64::from_str_radix(min, 16).ok() == Some(minor)
            && ino.parse::<u64>().ok() == Some(inode);
        if same {
            return fields[4].parse().map_or(LockState::Unknown, LockState::Held);
        }
    }
    LockState::Free
}

#[cfg(unix)]
fn device_and_inode(meta: &fs::Metadata) -> (u64, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    // Linux's `dev_t` layout (glibc `gnu_dev_major` / `gnu_dev_minor`).
    let dev = meta.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xffff_f000);
    let minor = (dev & 0xff) | ((dev >> 12) & 0xffff_ff00);
    (major, minor, meta.ino())
}

#[cfg(not(unix))]
fn device_and_inode(_meta: &fs::Metadata) -> (u64, u64, u64) {
    (u64::MAX, u64::MAX, u64::MAX)
}
