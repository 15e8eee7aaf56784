//! A stored session's document read straight from its bytes, in one pass, for the read's
//! answer ([`super`]), instead of through the bson crate's element iterator (which checks each
//! key as a UTF-8 C string and builds a result per element, and which the answer needed twice
//! for `user`/`data`: once for the repeated/escaped-key check, once for the text).
//!
//! The BSON element format: a type byte, a NUL-terminated key, then a value whose extent the
//! type gives — a fixed size, or a little-endian length prefix (strings: the length of the text
//! and its NUL; documents and arrays: the whole, prefix and final NUL included). Every length is
//! checked against the buffer (every slice is taken with `get`), never trusted.
//!
//! **Exactness.** Whatever this reader accepts, the crate's iterator accepts with the same
//! values, so the codec ([`raw_to_json`], [`decode_raw`]) reads the same document: the same
//! length, terminator, boolean (0 or 1) and UTF-8 checks, the same last-one-counts for a
//! repeated field. Where it is not sure it stops with [`Unread`], and the caller takes the
//! crate's path (which falls back to the codec): a type it does not read (binary, timestamps,
//! regular expressions, code, symbols, db pointers, anything unknown), a session field of a type
//! the codec refuses anyway, a `user`/`data` key the codec unescapes (`%…`) or that repeats in
//! one document, nesting deeper than [`MAX_DEPTH`], any malformed byte.
//!
//! What it spares: a key that equals a session field's name is matched by its bytes (ASCII, no
//! UTF-8 check needed), and `user`/`data` are written as JSON in the same pass that checks their
//! keys for repeats and escapes. UTF-8 is checked for the strings and keys written into the
//! answer, and for the other top-level strings and keys (the crate's iterator checks them all,
//! and a document with an invalid one is the codec's error, not an answer).
//!
//! [`raw_to_json`]: super::super::codec::raw_to_json
//! [`decode_raw`]: super::super::codec::decode_raw

use super::super::codec::{raw_to_json, Fields};
use crate::toolkit::json::{write_i64, write_json_value, write_str};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime as BsonDateTime, Decimal128, RawBsonRef, RawDocument};

/// The reader stopped: bytes it does not read, or a shape left to the crate's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unread;

// Element types (bsonspec.org); the others stop the reader.
const DOUBLE: u8 = 0x01;
const STRING: u8 = 0x02;
const DOCUMENT: u8 = 0x03;
const ARRAY: u8 = 0x04;
const UNDEFINED: u8 = 0x06;
const OBJECT_ID: u8 = 0x07;
const BOOLEAN: u8 = 0x08;
const DATE: u8 = 0x09;
const NULL: u8 = 0x0a;
const INT32: u8 = 0x10;
const INT64: u8 = 0x12;
const DECIMAL128: u8 = 0x13;
const MAX_KEY: u8 = 0x7f;
const MIN_KEY: u8 = 0xff;

/// How deep `user`/`data` may nest here (MongoDB itself stores at most 100 levels); deeper
/// values are left to the crate's path.
pub(super) const MAX_DEPTH: usize = 100;

/// A value: its type byte and its bytes (exactly its extent, length prefix included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Value<'a> {
    kind: u8,
    bytes: &'a [u8],
}

/// One element of a document.
struct Element<'a> {
    key: &'a [u8],
    value: Value<'a>,
}

/// The elements of one document, in order.
struct Elements<'a> {
    doc: &'a [u8],
    at: usize,
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], Unread> {
    bytes.get(at..at.checked_add(N).ok_or(Unread)?).and_then(|b| b.try_into().ok()).ok_or(Unread)
}

/// A length prefix (negative: not a length).
fn length(bytes: &[u8]) -> Result<usize, Unread> {
    usize::try_from(i32::from_le_bytes(array(bytes, 0)?)).map_err(|_| Unread)
}

/// The extent of a length-prefixed value at the start of `tail` whose size counts from the
/// start (`extra` 0: documents, arrays) or from after the prefix (`extra` 4: strings); at least
/// five bytes, within `tail`, ending in NUL.
fn extent(tail: &[u8], extra: usize) -> Result<usize, Unread> {
    let size = length(tail)?.checked_add(extra).ok_or(Unread)?;
    if size < 5 || size.checked_sub(1).and_then(|last| tail.get(last)) != Some(&0) {
        return Err(Unread);
    }
    Ok(size)
}

impl<'a> Elements<'a> {
    /// The elements of the document `doc`: its length prefix equal to its size, at least five
    /// bytes, the last one NUL.
    fn of(doc: &'a [u8]) -> Result<Self, Unread> {
        if doc.len() < 5 || length(doc)? != doc.len() || doc.last() != Some(&0) {
            return Err(Unread);
        }
        Ok(Self { doc, at: 4 })
    }

    /// The next element; `None` at the document's final NUL.
    fn next(&mut self) -> Result<Option<Element<'a>>, Unread> {
        if self.at + 1 == self.doc.len() {
            return Ok(None);
        }
        let kind = *self.doc.get(self.at).ok_or(Unread)?;
        let rest = self.doc.get(self.at + 1..).ok_or(Unread)?;
        let key_len = rest.iter().position(|&b| b == 0).ok_or(Unread)?;
        let key = rest.get(..key_len).ok_or(Unread)?;
        let start = self.at + 1 + key_len + 1;
        let tail = self.doc.get(start..).ok_or(Unread)?;
        let size = match kind {
            DOUBLE | DATE | INT64 => 8,
            INT32 => 4,
            OBJECT_ID => 12,
            DECIMAL128 => 16,
            NULL | UNDEFINED | MIN_KEY | MAX_KEY => 0,
            BOOLEAN if tail.first().is_some_and(|&b| b <= 1) => 1,
            STRING => extent(tail, 4)?,
            DOCUMENT | ARRAY => extent(tail, 0)?,
            _ => return Err(Unread),
        };
        let bytes = tail.get(..size).ok_or(Unread)?;
        self.at = start + size;
        Ok(Some(Element { key, value: Value { kind, bytes } }))
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, Unread> {
    std::str::from_utf8(bytes).map_err(|_| Unread)
}

/// A string's text (between its length prefix and its NUL).
fn text(v: Value<'_>) -> Result<&str, Unread> {
    utf8(v.bytes.get(4..v.bytes.len().saturating_sub(1)).ok_or(Unread)?)
}

/// A leaf value as the crate reads it; documents, arrays and the types this reader leaves to
/// the crate stop it.
fn scalar(v: Value<'_>) -> Result<RawBsonRef<'_>, Unread> {
    Ok(match v.kind {
        STRING => RawBsonRef::String(text(v)?),
        BOOLEAN => RawBsonRef::Boolean(v.bytes == [1]),
        INT32 => RawBsonRef::Int32(i32::from_le_bytes(array(v.bytes, 0)?)),
        INT64 => RawBsonRef::Int64(i64::from_le_bytes(array(v.bytes, 0)?)),
        DOUBLE => RawBsonRef::Double(f64::from_le_bytes(array(v.bytes, 0)?)),
        DATE => RawBsonRef::DateTime(BsonDateTime::from_millis(i64::from_le_bytes(array(v.bytes, 0)?))),
        OBJECT_ID => RawBsonRef::ObjectId(ObjectId::from_bytes(array(v.bytes, 0)?)),
        DECIMAL128 => RawBsonRef::Decimal128(Decimal128::from_bytes(array(v.bytes, 0)?)),
        NULL => RawBsonRef::Null,
        UNDEFINED => RawBsonRef::Undefined,
        MIN_KEY => RawBsonRef::MinKey,
        MAX_KEY => RawBsonRef::MaxKey,
        _ => return Err(Unread),
    })
}

/// A stored session's fields as [`Fields::of`] finds them (`user` and `data` left `None`),
/// and its `user` and `data` values.
pub(super) struct Session<'a> {
    pub(super) fields: Fields<'a>,
    pub(super) user: Option<Value<'a>>,
    pub(super) data: Option<Value<'a>>,
}

/// Reads the session fields of `d` in one pass.
pub(super) fn session(d: &RawDocument) -> Result<Session<'_>, Unread> {
    let mut s = Session { fields: Fields::default(), user: None, data: None };
    let mut elements = Elements::of(d.as_bytes())?;
    while let Some(Element { key, value }) = elements.next()? {
        let payload = match key {
            b"user" => &mut s.user,
            b"data" => &mut s.data,
            _ => {
                if let Some(slot) = s.fields.slot(key) {
                    *slot = Some(scalar(value)?);
                } else {
                    utf8(key)?;
                    if value.kind == STRING {
                        text(value)?;
                    }
                }
                continue;
            }
        };
        if value.kind == STRING {
            text(value)?;
        }
        *payload = Some(value);
    }
    Ok(s)
}

/// The keys of one `user`/`data` document so far, to find a repeat.
struct Keys<'a> {
    first: [&'a [u8]; Keys::FIRST],
    count: usize,
    more: Vec<&'a [u8]>,
}

impl<'a> Keys<'a> {
    /// Compared as they come; the rest sorted once at the end.
    const FIRST: usize = 16;

    fn new() -> Self {
        Self { first: [&[]; Self::FIRST], count: 0, more: Vec::new() }
    }

    fn add(&mut self, key: &'a [u8]) -> Result<(), Unread> {
        match self.first.split_at_mut_checked(self.count) {
            Some((seen, [slot, ..])) => {
                if seen.contains(&key) {
                    return Err(Unread);
                }
                *slot = key;
            }
            _ => self.more.push(key),
        }
        self.count += 1;
        Ok(())
    }

    fn all_distinct(mut self) -> Result<(), Unread> {
        if self.more.is_empty() {
            return Ok(());
        }
        self.more.extend_from_slice(&self.first);
        self.more.sort_unstable();
        if self.more.windows(2).any(|w| w[0] == w[1]) {
            return Err(Unread);
        }
        Ok(())
    }
}

/// Appends the JSON text of the codec's value of `v` ([`raw_to_json`] encoded), `depth` levels
/// of nesting still allowed. On `Unread` what was appended is to be dropped.
pub(super) fn write_json(out: &mut Vec<u8>, v: Value<'_>, depth: usize) -> Result<(), Unread> {
    match v.kind {
        NULL | UNDEFINED | MIN_KEY | MAX_KEY => out.extend_from_slice(b"null"),
        BOOLEAN => out.extend_from_slice(if v.bytes == [1] { b"true" } else { b"false" }),
        INT32 => write_i64(out, i64::from(i32::from_le_bytes(array(v.bytes, 0)?))),
        INT64 => write_i64(out, i64::from_le_bytes(array(v.bytes, 0)?)),
        STRING => write_str(out, text(v)?),
        DOCUMENT => write_document(out, v.bytes, depth.checked_sub(1).ok_or(Unread)?)?,
        ARRAY => write_array(out, v.bytes, depth.checked_sub(1).ok_or(Unread)?)?,
        // Doubles, dates, ids, decimals: converted by the codec (no allocation for a number).
        _ => write_json_value(out, &raw_to_json(scalar(v)?).map_err(|_| Unread)?),
    }
    Ok(())
}

/// A document as a JSON object, its keys in order; a key the codec unescapes or a repeated key
/// stops the reader.
fn write_document(out: &mut Vec<u8>, doc: &[u8], depth: usize) -> Result<(), Unread> {
    let mut elements = Elements::of(doc)?;
    let mut keys = Keys::new();
    out.push(b'{');
    while let Some(Element { key, value }) = elements.next()? {
        if key.first() == Some(&b'%') {
            return Err(Unread);
        }
        if keys.count > 0 {
            out.push(b',');
        }
        keys.add(key)?;
        write_str(out, utf8(key)?);
        out.push(b':');
        write_json(out, value, depth)?;
    }
    keys.all_distinct()?;
    out.push(b'}');
    Ok(())
}

/// An array as a JSON array: its values in order, its keys (which the codec ignores) checked
/// as the crate's iterator checks them.
fn write_array(out: &mut Vec<u8>, doc: &[u8], depth: usize) -> Result<(), Unread> {
    let mut elements = Elements::of(doc)?;
    out.push(b'[');
    let mut first = true;
    while let Some(Element { key, value }) = elements.next()? {
        utf8(key)?;
        if !first {
            out.push(b',');
        }
        first = false;
        write_json(out, value, depth)?;
    }
    out.push(b']');
    Ok(())
}
