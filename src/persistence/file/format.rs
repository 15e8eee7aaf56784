//! The on-disk format of the file backend: file names, file headers, checksummed frames and the
//! records they carry.
//!
//! A frame is `len: u32 LE | crc32(len bytes): u32 LE | crc32(payload): u32 LE | payload`. The
//! length has its own checksum so that a damaged length is told apart from a torn append: a
//! frame whose header is complete but wrong is corruption, while a frame cut short by the end of
//! the file is a torn tail. The payload is one [`Record`] as compact JSON.

use crate::data::version1::SessionV1;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// First bytes of every log file.
pub const LOG_MAGIC: &[u8; 8] = b"SSNLOG01";
/// First bytes of every snapshot file; a `u64 LE` generation and a `u32 LE` checksum follow.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"SSNSNP01";
/// Size of the snapshot file header.
pub const SNAPSHOT_HEADER: usize = 20;
/// Size of a frame header.
pub const FRAME_HEADER: usize = 12;
/// The snapshot file.
pub const SNAPSHOT_FILE: &str = "sessions.snapshot";
/// The snapshot being written (removed at start-up if a crash left it).
pub const SNAPSHOT_TEMP_FILE: &str = "sessions.snapshot.tmp";
/// The lock file.
pub const LOCK_FILE: &str = "LOCK";

/// One change (log) or one stored session (snapshot).
///
/// Records carry whole states, so applying one is idempotent and replay is "last record wins".
/// `S` is `SessionV1` when reading and `&SessionV1` when writing from the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record<S = SessionV1> {
    /// The new state of a session (created or changed).
    Put(S),
    /// A session was deleted.
    Delete(String),
    /// Every session was deleted.
    Clear,
    /// Snapshot trailer: how many `Put` frames precede it.
    End(u64),
}

/// The name of the log file of a generation.
pub fn log_file_name(generation: u64) -> String {
    format!("sessions.{generation:08}.log")
}

/// The generation of a log file name, if it is one.
pub fn parse_log_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("sessions.")?.strip_suffix(".log")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The path of the log file of a generation in `dir`.
pub fn log_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(log_file_name(generation))
}

/// Appends one frame holding `record` to `buf`.
///
/// # Errors
/// When the record cannot be serialised (not expected for sessions).
pub fn encode_frame<S: Serialize>(buf: &mut Vec<u8>, record: &Record<S>) -> Result<(), serde_json::Error> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER]);
    if let Err(e) = serde_json::to_writer(&mut *buf, record) {
        buf.truncate(start);
        return Err(e);
    }
    let len = u32::try_from(buf.len() - start - FRAME_HEADER).map_err(serde::ser::Error::custom)?;
    let len_bytes = len.to_le_bytes();
    let payload_crc = crc32fast::hash(&buf[start + FRAME_HEADER..]);
    buf[start..start + 4].copy_from_slice(&len_bytes);
    buf[start + 4..start + 8].copy_from_slice(&crc32fast::hash(&len_bytes).to_le_bytes());
    buf[start + 8..start + 12].copy_from_slice(&payload_crc.to_le_bytes());
    Ok(())
}

/// The snapshot file header for a generation.
pub fn snapshot_header(generation: u64) -> [u8; SNAPSHOT_HEADER] {
    let mut h = [0u8; SNAPSHOT_HEADER];
    h[..8].copy_from_slice(SNAPSHOT_MAGIC);
    h[8..16].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&h[..16]);
    h[16..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The generation in a snapshot file header, if the header is valid.
pub fn parse_snapshot_header(bytes: &[u8]) -> Option<u64> {
    let h = bytes.get(..SNAPSHOT_HEADER)?;
    if &h[..8] != SNAPSHOT_MAGIC || crc32fast::hash(&h[..16]).to_le_bytes() != h[16..20] {
        return None;
    }
    let mut g = [0u8; 8];
    g.copy_from_slice(&h[8..16]);
    Some(u64::from_le_bytes(g))
}

/// Why a scan of frames stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The file ends inside a frame (or in zeros): an append cut short by a crash.
    Torn {
        /// Offset of the first byte of the incomplete frame.
        offset: u64,
    },
    /// A complete frame is wrong.
    Corrupt {
        /// Offset of the first byte of the bad frame.
        offset: u64,
        /// What is wrong (never any content).
        reason: &'static str,
    },
}

/// An iterator over the frames of a buffer, yielding `(offset, payload)` and stopping at the
/// first [`Damage`].
#[derive(Debug)]
pub struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
    done: bool,
}

impl<'a> Frames<'a> {
    /// Frames of `buf`, whose first byte is at file offset `base`.
    pub fn new(buf: &'a [u8], base: u64) -> Self {
        Self { buf, pos: 0, base, done: false }
    }

    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn fail(&mut self, damage: Damage) -> Option<Result<(u64, &'a [u8]), Damage>> {
        self.done = true;
        Some(Err(damage))
    }
}

fn read_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<(u64, &'a [u8]), Damage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return None;
        }
        let offset = self.offset();
        if rest.len() < FRAME_HEADER {
            return self.fail(Damage::Torn { offset });
        }
        let len_bytes = &rest[..4];
        if crc32fast::hash(len_bytes) != read_u32(&rest[4..8]) {
            // A crash can leave zeros after the last append (the size grew before the data
            // reached the disk); anything else in a complete header is damage.
            return if rest.iter().all(|b| *b == 0) {
                self.fail(Damage::Torn { offset })
            } else {
                self.fail(Damage::Corrupt { offset, reason: "bad frame header" })
            };
        }
        let len = read_u32(len_bytes) as usize;
        if len == 0 {
            return self.fail(Damage::Corrupt { offset, reason: "empty frame" });
        }
        let Some(payload) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else {
            return self.fail(Damage::Torn { offset });
        };
        if crc32fast::hash(payload) != read_u32(&rest[8..12]) {
            // The last frame of the file may be partly written; a damaged frame with more data
            // after it is corruption.
            return if FRAME_HEADER + len == rest.len() {
                self.fail(Damage::Torn { offset })
            } else {
                self.fail(Damage::Corrupt { offset, reason: "checksum mismatch" })
            };
        }
        self.pos += FRAME_HEADER + len;
        Some(Ok((offset, payload)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn frames(records: &[Record]) -> Vec<u8> {
        let mut buf = Vec::new();
        records.iter().for_each(|r| encode_frame(&mut buf, r).unwrap());
        buf
    }

    fn scan(buf: &[u8]) -> (Vec<Record>, Option<Damage>) {
        let mut out = Vec::new();
        for f in Frames::new(buf, 8) {
            match f {
                Ok((_, p)) => out.push(serde_json::from_slice(p).unwrap()),
                Err(d) => return (out, Some(d)),
            }
        }
        (out, None)
    }

    #[test]
    fn frames_round_trip() {
        let recs = vec![Record::Delete("a".into()), Record::Clear, Record::End(3)];
        assert_eq!(scan(&frames(&recs)), (recs, None));
        assert_eq!(String::from_utf8(frames(&[Record::Clear])[12..].to_vec()).unwrap(), "\"clear\"");
    }

    #[test]
    fn a_cut_last_frame_is_torn_and_a_damaged_middle_frame_is_corrupt() {
        let recs = vec![Record::Delete("a".into()), Record::Delete("b".into())];
        let buf = frames(&recs);
        let second = buf.len() / 2;
        for cut in second + 1..buf.len() {
            assert_eq!(scan(&buf[..cut]), (recs[..1].to_vec(), Some(Damage::Torn { offset: 8 + second as u64 })));
        }
        let mut zeros = buf.clone();
        zeros.extend_from_slice(&[0; 40]);
        assert_eq!(scan(&zeros).1, Some(Damage::Torn { offset: 8 + buf.len() as u64 }));
        let mut last = buf.clone();
        *last.last_mut().unwrap() ^= 1;
        assert_eq!(scan(&last).1, Some(Damage::Torn { offset: 8 + second as u64 }));
        for at in [0, 2, 5, 9, 14] {
            let mut bad = buf.clone();
            bad[at] ^= 0x10;
            assert_eq!(
                scan(&bad),
                (
                    vec![],
                    Some(Damage::Corrupt {
                        offset: 8,
                        reason: if at < 8 { "bad frame header" } else { "checksum mismatch" }
                    })
                ),
                "byte {at}"
            );
        }
    }

    #[test]
    fn names_and_headers() {
        assert_eq!(log_file_name(7), "sessions.00000007.log");
        assert_eq!(parse_log_file_name("sessions.00000007.log"), Some(7));
        assert_eq!(parse_log_file_name("sessions.123456789.log"), Some(123_456_789));
        assert_eq!(parse_log_file_name("sessions..log"), None);
        assert_eq!(parse_log_file_name("sessions.x.log"), None);
        assert_eq!(parse_snapshot_header(&snapshot_header(42)), Some(42));
        let mut h = snapshot_header(42);
        h[9] ^= 1;
        assert_eq!(parse_snapshot_header(&h), None);
    }
}
