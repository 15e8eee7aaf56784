//! The on-disk format of the file backend: file names, file headers, checksummed frames and the
//! records they carry.
//!
//! A frame is `len: u32 LE | crc32(len bytes): u32 LE | crc32(payload): u32 LE | payload`. The
//! length has its own checksum so that a damaged length is told apart from a torn append: a
//! frame whose header is complete but wrong is corruption, while a frame cut short by the end of
//! the file is a torn tail.
//!
//! The payload is one [`Record`]: a tag byte, then for a session its fixed fields in a byte
//! layout (strings as `u32 LE` length + UTF-8, optional values behind a `0`/`1` byte, times as
//! `i64 LE` seconds + `u32 LE` nanoseconds — whole milliseconds, as every stored time is —
//! `active` as a byte, `version` as `i64 LE`) and `user` and `data` as JSON text. Hand-written
//! rather than a serde format: the fields are fixed, and decoding a million sessions at start-up
//! is where the time goes — this layout decodes in about half the time of an all-JSON record and
//! is about a third smaller. `user` and `data` are arbitrary JSON, so they stay JSON.
//!
//! Session records are versioned by their tag. Version 2 (written since sessions gained an
//! `expire_time` and a `ttl`) appends both after `data`, each behind a `0`/`1` byte; version 1
//! records (stores written before) still load, with neither set. A store may mix both.

use crate::data::version1::{borrowed_session_accessors, BorrowedSession, SessionV1, SessionView};
use crate::toolkit::json::{CanonicalJson, JsonRef};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::borrow::Borrow;
use std::path::{Path, PathBuf};

/// First bytes of every log file.
pub(super) const LOG_MAGIC: &[u8; 8] = b"SSNLOG01";
/// First bytes of every snapshot file; a `u64 LE` generation and a `u32 LE` checksum follow.
pub(super) const SNAPSHOT_MAGIC: &[u8; 8] = b"SSNSNP01";
/// Size of the snapshot file header.
pub(super) const SNAPSHOT_HEADER: usize = 20;
/// Size of a frame header.
pub(super) const FRAME_HEADER: usize = 12;
/// The snapshot file.
pub(super) const SNAPSHOT_FILE: &str = "sessions.snapshot";
/// The snapshot being written (removed at start-up if a crash left it).
pub(super) const SNAPSHOT_TEMP_FILE: &str = "sessions.snapshot.tmp";
/// The lock file.
pub(super) const LOCK_FILE: &str = "LOCK";

/// One change (log) or one stored session (snapshot).
///
/// Records carry whole states, so applying one is idempotent and replay is "last record wins".
/// `S` is `SessionV1` when reading and `&SessionV1` when writing from the index.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Record<S = SessionV1> {
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
pub(super) fn log_file_name(generation: u64) -> String {
    format!("sessions.{generation:08}.log")
}

/// The generation of a log file name, if it is one.
pub(super) fn parse_log_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("sessions.")?.strip_suffix(".log")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The path of the log file of a generation in `dir`.
pub(super) fn log_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(log_file_name(generation))
}

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_CLEAR: u8 = 3;
const TAG_END: u8 = 4;
/// A session state in the version 2 layout (with `expire_time` and `ttl`); [`TAG_PUT`] is
/// version 1, read only.
const TAG_PUT_V2: u8 = 5;

fn put_str(buf: &mut Vec<u8>, s: &str) -> Result<(), serde_json::Error> {
    let len = u32::try_from(s.len()).map_err(serde::ser::Error::custom)?;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_opt_str(buf: &mut Vec<u8>, s: Option<&str>) -> Result<(), serde_json::Error> {
    match s {
        None => buf.push(0),
        Some(s) => {
            buf.push(1);
            put_str(buf, s)?;
        }
    }
    Ok(())
}

/// A time of whole milliseconds (as every stored time is) in the layout's seconds and nanoseconds.
fn put_time(buf: &mut Vec<u8>, ms: i64) {
    buf.extend_from_slice(&ms.div_euclid(1000).to_le_bytes());
    // In 0..1e9: fits.
    let nanos = u32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0);
    buf.extend_from_slice(&nanos.to_le_bytes());
}

fn put_json(buf: &mut Vec<u8>, v: Option<JsonRef<'_>>) -> Result<(), serde_json::Error> {
    match v {
        None => buf.push(0),
        Some(v) => {
            buf.push(1);
            let at = buf.len();
            buf.extend_from_slice(&[0; 4]);
            match v {
                JsonRef::Value(v) => serde_json::to_writer(&mut *buf, v)?,
                JsonRef::Text(t) => buf.extend_from_slice(t),
            }
            let len = u32::try_from(buf.len() - at - 4).map_err(serde::ser::Error::custom)?;
            buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
        }
    }
    Ok(())
}

/// The fields of a session from any view of it: the session itself, or a record of the index.
fn put_session<S: SessionView + ?Sized>(buf: &mut Vec<u8>, s: &S) -> Result<(), serde_json::Error> {
    put_str(buf, s.id())?;
    put_str(buf, s.user_id())?;
    put_opt_str(buf, s.user_name())?;
    put_opt_str(buf, s.address())?;
    put_opt_str(buf, s.client())?;
    buf.push(u8::from(s.active()));
    put_time(buf, s.open_ms());
    put_time(buf, s.request_ms());
    put_opt_time(buf, s.close_ms());
    buf.extend_from_slice(&s.version().to_le_bytes());
    put_json(buf, s.user())?;
    put_json(buf, s.data())?;
    put_opt_time(buf, s.expire_ms());
    match s.ttl() {
        None => buf.push(0),
        Some(ttl) => {
            buf.push(1);
            buf.extend_from_slice(&ttl.to_le_bytes());
        }
    }
    Ok(())
}

fn put_opt_time(buf: &mut Vec<u8>, ms: Option<i64>) {
    match ms {
        None => buf.push(0),
        Some(ms) => {
            buf.push(1);
            put_time(buf, ms);
        }
    }
}

/// Appends one frame holding `record` to `buf` (nothing on error).
///
/// # Errors
/// When a value cannot be serialised (not expected for sessions) or a field exceeds 4 GiB.
pub(super) fn encode_frame<S: Borrow<SessionV1>>(
    buf: &mut Vec<u8>,
    record: &Record<S>,
) -> Result<(), serde_json::Error> {
    framed(buf, |buf| match record {
        Record::Put(s) => {
            buf.push(TAG_PUT_V2);
            put_session(buf, s.borrow())
        }
        Record::Delete(id) => {
            buf.push(TAG_DELETE);
            put_str(buf, id)
        }
        Record::Clear => {
            buf.push(TAG_CLEAR);
            Ok(())
        }
        Record::End(n) => {
            buf.push(TAG_END);
            buf.extend_from_slice(&n.to_le_bytes());
            Ok(())
        }
    })
}

/// Appends one frame holding the `Put` record of `s`, from any view of the session (the index
/// logs a changed record from the record itself, without building the session).
///
/// # Errors
/// As [`encode_frame`].
pub(super) fn encode_put_frame<S: SessionView + ?Sized>(buf: &mut Vec<u8>, s: &S) -> Result<(), serde_json::Error> {
    framed(buf, |buf| {
        buf.push(TAG_PUT_V2);
        put_session(buf, s)
    })
}

/// Appends the frame whose payload `body` writes: its header, then the payload (nothing on error).
fn framed(
    buf: &mut Vec<u8>,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), serde_json::Error>,
) -> Result<(), serde_json::Error> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER]);
    let len =
        body(buf).and_then(|()| u32::try_from(buf.len() - start - FRAME_HEADER).map_err(serde::ser::Error::custom));
    let len = match len {
        Ok(len) => len,
        Err(e) => {
            buf.truncate(start);
            return Err(e);
        }
    };
    let len_bytes = len.to_le_bytes();
    let payload_crc = crc32fast::hash(&buf[start + FRAME_HEADER..]);
    buf[start..start + 4].copy_from_slice(&len_bytes);
    buf[start + 4..start + 8].copy_from_slice(&crc32fast::hash(&len_bytes).to_le_bytes());
    buf[start + 8..start + 12].copy_from_slice(&payload_crc.to_le_bytes());
    Ok(())
}

/// A cursor over a payload; every read fails (`None`) past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_le_bytes)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(u32::from_le_bytes(self.array()?)).ok()?;
        self.take(len)
    }

    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    fn string(&mut self) -> Option<String> {
        self.str().map(str::to_owned)
    }

    fn option<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.u8()? {
            0 => Some(None),
            1 => read(self).map(Some),
            _ => None,
        }
    }

    fn time(&mut self) -> Option<DateTime<Utc>> {
        let secs = self.i64()?;
        let nanos = u32::from_le_bytes(self.array()?);
        DateTime::from_timestamp(secs, nanos)
    }

    fn json(&mut self) -> Option<LoggedJson<'a>> {
        let text = self.str()?;
        if CanonicalJson::is_canonical(text) {
            Some(LoggedJson::Text(text.as_bytes()))
        } else {
            serde_json::from_str(text).ok().map(LoggedJson::Value)
        }
    }

    /// A session in the layout of record version `v2` (else version 1: no expiry fields).
    fn session(&mut self, v2: bool) -> Option<LoggedSession<'a>> {
        let mut s = LoggedSession {
            id: self.str()?,
            user_id: self.str()?,
            user_name: self.option(Self::str)?,
            address: self.option(Self::str)?,
            client: self.option(Self::str)?,
            active: match self.u8()? {
                0 => false,
                1 => true,
                _ => return None,
            },
            open_time: self.time()?,
            request_time: self.time()?,
            close_time: self.option(Self::time)?,
            version: self.i64()?,
            user: self.option(Self::json)?,
            data: self.option(Self::json)?,
            expire_time: None,
            ttl: None,
        };
        if v2 {
            s.expire_time = self.option(Self::time)?;
            s.ttl = self.option(Self::i64)?;
        }
        Some(s)
    }
}

/// A logged `user` or `data`: its bytes when they are canonical JSON text (as the service
/// writes them), else the value they parse to.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum LoggedJson<'a> {
    Text(&'a [u8]),
    Value(Value),
}

impl LoggedJson<'_> {
    fn as_ref(&self) -> JsonRef<'_> {
        match self {
            Self::Text(t) => JsonRef::Text(t),
            Self::Value(v) => JsonRef::Value(v),
        }
    }

    fn into_value(self) -> Value {
        match self {
            Self::Text(t) => JsonRef::Text(t).to_value(),
            Self::Value(v) => v,
        }
    }
}

/// A session read from a payload without copying it: its texts and canonical payloads are the
/// payload's own bytes. Start-up makes each live session's record of it, with no `SessionV1`
/// and no JSON value in between.
pub(super) type LoggedSession<'a> = BorrowedSession<'a, LoggedJson<'a>>;

impl LoggedSession<'_> {
    /// The session, owning its fields.
    fn into_session(self) -> SessionV1 {
        SessionV1 {
            id: self.id.to_owned(),
            user_id: self.user_id.to_owned(),
            user_name: self.user_name.map(str::to_owned),
            address: self.address.map(str::to_owned),
            client: self.client.map(str::to_owned),
            active: self.active,
            open_time: self.open_time,
            request_time: self.request_time,
            close_time: self.close_time,
            version: self.version,
            user: self.user.map(LoggedJson::into_value),
            data: self.data.map(LoggedJson::into_value),
            expire_time: self.expire_time,
            ttl: self.ttl,
        }
    }
}

impl SessionView for LoggedSession<'_> {
    borrowed_session_accessors!();
    fn user(&self) -> Option<JsonRef<'_>> {
        self.user.as_ref().map(LoggedJson::as_ref)
    }
    fn data(&self) -> Option<JsonRef<'_>> {
        self.data.as_ref().map(LoggedJson::as_ref)
    }
}

/// What a payload is, read from its first bytes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Peek<'a> {
    /// A session state, with the session id.
    Put(&'a [u8]),
    /// A deletion, with the session id.
    Delete(&'a [u8]),
    /// Everything deleted.
    Clear,
    /// A snapshot trailer.
    End,
}

/// The kind of a payload and its session id, without decoding the rest; `None` if even that much
/// is not valid.
pub(super) fn peek_record(payload: &[u8]) -> Option<Peek<'_>> {
    let mut r = Reader(payload);
    Some(match r.u8()? {
        TAG_PUT | TAG_PUT_V2 => Peek::Put(r.bytes()?),
        TAG_DELETE => Peek::Delete(r.bytes()?),
        TAG_CLEAR => Peek::Clear,
        TAG_END => Peek::End,
        _ => return None,
    })
}

/// Decodes a frame's payload; `None` if it is not a whole, valid record.
pub(super) fn decode_record(payload: &[u8]) -> Option<Record> {
    if let Some(&(TAG_PUT | TAG_PUT_V2)) = payload.first() {
        return decode_put(payload).map(|s| Record::Put(s.into_session()));
    }
    let mut r = Reader(payload);
    let record = match r.u8()? {
        TAG_DELETE => Record::Delete(r.string()?),
        TAG_CLEAR => Record::Clear,
        TAG_END => Record::End(u64::from_le_bytes(r.array()?)),
        _ => return None,
    };
    r.0.is_empty().then_some(record)
}

/// Decodes the payload of a session state (a `Put` record) without copying it; `None` if it is
/// not a whole, valid one.
pub(super) fn decode_put(payload: &[u8]) -> Option<LoggedSession<'_>> {
    let mut r = Reader(payload);
    let session = match r.u8()? {
        TAG_PUT => r.session(false)?,
        TAG_PUT_V2 => r.session(true)?,
        _ => return None,
    };
    r.0.is_empty().then_some(session)
}

/// The snapshot file header for a generation.
pub(super) fn snapshot_header(generation: u64) -> [u8; SNAPSHOT_HEADER] {
    let mut h = [0u8; SNAPSHOT_HEADER];
    h[..8].copy_from_slice(SNAPSHOT_MAGIC);
    h[8..16].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&h[..16]);
    h[16..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The generation in a snapshot file header, if the header is valid.
pub(super) fn parse_snapshot_header(bytes: &[u8]) -> Option<u64> {
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
pub(super) enum Damage {
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
pub(super) struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
    done: bool,
}

impl<'a> Frames<'a> {
    /// Frames of `buf`, whose first byte is at file offset `base`.
    pub(super) fn new(buf: &'a [u8], base: u64) -> Self {
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
                Ok((_, p)) => out.push(decode_record(p).unwrap()),
                Err(d) => return (out, Some(d)),
            }
        }
        (out, None)
    }

    #[test]
    fn frames_round_trip() {
        let mut closed =
            SessionV1::open("ab".into(), "u1".into(), DateTime::from_timestamp(1_700_000_000, 123_000_000).unwrap());
        closed.active = false;
        closed.close_time = Some(DateTime::from_timestamp(1_700_000_001, 5_000_000).unwrap());
        closed.user_name = Some("ünï".into());
        closed.client = Some(String::new());
        closed.user = Some(serde_json::json!({"z": 1, "a": [false, null, "x"]}));
        closed.data = None;
        closed.version = 42;
        let mut open = SessionV1::open("cd".into(), "u2".into(), DateTime::from_timestamp(-5, 0).unwrap());
        open.expire_time = Some(DateTime::from_timestamp(1_800_000_000, 7_000_000).unwrap());
        open.ttl = Some(-3);
        let recs =
            vec![Record::Put(closed), Record::Put(open), Record::Delete("a".into()), Record::Clear, Record::End(3)];
        assert_eq!(scan(&frames(&recs)), (recs.clone(), None));
        assert_eq!(frames(&[Record::Clear])[12..], [TAG_CLEAR]);
        assert_eq!(decode_record(&[TAG_CLEAR, 0]), None, "trailing bytes");
        assert_eq!(decode_record(&[9]), None, "unknown tag");
        let put = frames(&recs[..1]);
        for cut in 13..put.len() {
            assert_eq!(decode_record(&put[12..cut]), None, "cut at {cut}");
        }
        assert_eq!(peek_record(&put[12..]), Some(Peek::Put(b"ab")));
        assert_eq!(peek_record(&frames(&recs[2..3])[12..]), Some(Peek::Delete(b"a")));
        assert_eq!(peek_record(&[TAG_PUT, 9, 0, 0, 0, b'x']), None, "id cut short");
    }

    #[test]
    fn logged_payloads_are_kept_as_bytes_only_when_canonical() {
        let read = |text: &[u8]| {
            let mut buf = Vec::new();
            put_json(&mut buf, Some(JsonRef::Text(text))).unwrap();
            Reader(&buf[1..]).json().map(|j| (matches!(j, LoggedJson::Text(t) if t == text), j.into_value()))
        };
        assert_eq!(read(br#"{"a":[1,"x"]}"#), Some((true, serde_json::json!({"a": [1, "x"]}))));
        assert_eq!(read(br#"{ "a": 1 }"#), Some((false, serde_json::json!({"a": 1}))));
        assert_eq!(read(br#"[1.5]"#), Some((false, serde_json::json!([1.5]))));
        assert_eq!(read(br#"["\u0041"]"#), Some((false, serde_json::json!(["A"]))));
        assert_eq!(read(b"7"), Some((false, serde_json::json!(7))));
        assert_eq!(read(br#"{"a":"#), None);
        assert_eq!(read(b"[\"\xff\"]"), None);
    }

    #[test]
    fn version_1_session_records_load_without_expiry_fields() {
        let mut s = SessionV1::open("ab".into(), "u1".into(), DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        s.user = Some(serde_json::json!({"n": 1}));
        let mut v1 = vec![TAG_PUT];
        put_session(&mut v1, &s).unwrap();
        // A version 1 record is the version 2 layout without the two trailing option bytes.
        v1.truncate(v1.len() - 2);
        assert_eq!(decode_record(&v1), Some(Record::Put(s.clone())));
        assert_eq!(peek_record(&v1), Some(Peek::Put(b"ab")));
        s.expire_time = Some(DateTime::from_timestamp(1_700_000_100, 0).unwrap());
        let v2 = frames(&[Record::Put(s.clone())]);
        assert_eq!(v2[12], TAG_PUT_V2);
        assert_eq!(decode_record(&v2[12..]), Some(Record::Put(s)));
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
