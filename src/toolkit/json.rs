//! JSON helpers: RFC 7396 JSON Merge Patch, and [`JsonText`] / [`WriteJson`]: results encoded
//! once, straight into the text that is sent.
//!
//! Merge Patch is hand-written because the algorithm is a dozen lines and the crate that ships it
//! (`json-patch`) brings all of RFC 6902 with it; the RFC's appendix A examples are the unit tests.
//!
//! [`WriteJson`] is for the hot results (a session, a page of sessions): a writer appends the
//! text directly, keys as constants and times formatted in place, which is several times cheaper
//! than serde's generic path. A writer must produce exactly what the type's `Serialize` produces;
//! each implementation is tested against it.

use super::time::TimeText;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// JSON text ready to send, produced by serde or by a [`WriteJson`] writer (never parsed again).
///
/// Kept as bytes: the text is sent as bytes, and both producers write valid UTF-8 (writers
/// append only `str` data, ASCII and serde output), so checking it again on the way out would
/// be pure cost. [`JsonText::as_str`] and [`JsonText::into_string`] check it for the callers that
/// need a `str`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonText(Vec<u8>);

impl JsonText {
    /// Encodes a value with serde.
    ///
    /// # Errors
    /// When the value cannot be encoded (a map with non-string keys, a failing `Serialize`).
    pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<Self> {
        serde_json::to_vec(value).map(Self)
    }

    /// Encodes a value with its own writer.
    pub fn write<T: WriteJson + ?Sized>(value: &T) -> Self {
        let mut out = Vec::with_capacity(value.size_hint());
        value.write_json(&mut out);
        Self(out)
    }

    /// The text as bytes, as it is sent.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text as bytes, owned (no copy, no check).
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The text (checked: empty if it were not UTF-8, which no producer makes).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The text, owned (checked: never lossy in practice, as no producer writes invalid UTF-8).
    pub fn into_string(self) -> String {
        String::from_utf8(self.0).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// A type that writes its own JSON (the same text its `Serialize` would produce).
pub trait WriteJson {
    /// Appends the JSON text of `self`.
    fn write_json(&self, out: &mut Vec<u8>);

    /// A guess of the text's length, to allocate once.
    fn size_hint(&self) -> usize {
        256
    }
}

/// Appends a JSON string: copied as is when nothing needs escaping (the usual case), else
/// escaped exactly as serde_json does.
#[inline(always)]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write_utf8(out, s.as_bytes());
}

/// [`write_str`] of a string's bytes (`s` must be UTF-8: the bytes of a `str`, or of a part of
/// one cut at character boundaries), for text kept as bytes.
#[inline(always)]
pub fn write_utf8(out: &mut Vec<u8>, s: &[u8]) {
    if needs_escape(s) {
        write_escaped(out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `x` set where the byte is a control character, `"` or `\`
/// (what JSON escapes) — and possibly elsewhere too when one is: a byte below `n` (for `n` <=
/// 128) sets its high bit in `(x - n * ONES) & !x`, and a zero byte (of `x` xor the character)
/// does so in `(y - ONES) & !y`; neither borrow makes a false hit when no byte qualifies.
#[inline]
fn escape_bits(x: u64) -> u64 {
    let (quote, backslash) = (x ^ (ONES * u64::from(b'"')), x ^ (ONES * u64::from(b'\\')));
    ((x.wrapping_sub(ONES * 0x20) & !x)
        | (quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash))
        & HIGH
}

/// Eight bytes from `at` as a word.
#[inline]
fn word(s: &[u8], at: usize) -> u64 {
    s.get(at..at + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()).map_or(0, u64::from_le_bytes)
}

/// Four bytes from `at` as a word.
#[inline]
fn half_word(s: &[u8], at: usize) -> u64 {
    s.get(at..at + 4).and_then(|w| <[u8; 4]>::try_from(w).ok()).map_or(0, |w| u64::from(u32::from_le_bytes(w)))
}

/// Whether any byte is a control character, `"` or `\`, a word at a time with no byte-wise
/// tail: the last word overlaps the one before it (a byte seen twice changes nothing), strings
/// of four to seven bytes are two overlapping halves, and shorter ones their first, middle and
/// last bytes (which are all of them) padded with a byte that needs nothing.
#[inline(always)]
fn needs_escape(s: &[u8]) -> bool {
    let n = s.len();
    let x = if n >= 8 {
        let mut hit = 0;
        let mut at = 0;
        while at + 8 < n {
            hit |= escape_bits(word(s, at));
            at += 8;
        }
        return (hit | escape_bits(word(s, n - 8))) != 0;
    } else if n >= 4 {
        half_word(s, 0) | (half_word(s, n - 4) << 32)
    } else if n > 0 {
        let (a, b, c) = (s[0], s[n / 2], s[n - 1]);
        u64::from_le_bytes([a, b, c, b'a', b'a', b'a', b'a', b'a'])
    } else {
        return false;
    };
    escape_bits(x) != 0
}

/// What serde_json writes for each byte: 0 for the byte itself, else the letter of its escape
/// (`u` for `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Appends `s` as a JSON string, escaped as serde_json escapes: the short escapes `\"`, `\\`,
/// `\b`, `\f`, `\n`, `\r`, `\t`, any other control character as `\u00xx` (lowercase hex),
/// everything else as is (DEL and non-ASCII too).
#[cold]
#[inline(never)]
fn write_escaped(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 8);
    out.push(b'"');
    let mut run = 0;
    for (i, &b) in s.iter().enumerate() {
        let escape = ESCAPE[usize::from(b)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(s.get(run..i).unwrap_or_default());
        run = i + 1;
        if escape == b'u' {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
    }
    out.extend_from_slice(s.get(run..).unwrap_or_default());
    out.push(b'"');
}

/// Appends an optional string (`null` for none).
#[inline(always)]
pub fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    write_opt_utf8(out, s.map(str::as_bytes));
}

/// [`write_opt_str`] of a string's bytes (see [`write_utf8`]).
#[inline(always)]
pub fn write_opt_utf8(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => write_utf8(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends a time as its wire string (`"2026-11-21T09:15:30.123Z"`).
pub fn write_time(out: &mut Vec<u8>, t: &DateTime<Utc>) {
    if t.timestamp_subsec_nanos() < 1_000_000_000 {
        write_time_ms(out, t.timestamp_millis());
    } else {
        // Inside a leap second, which only chrono writes.
        write_str(out, &super::time::format_time(*t));
    }
}

/// Appends the time `ms` milliseconds after the Unix epoch as its wire string, formatted
/// straight from the number (the same text as [`write_time`] of that time), quotes included, in
/// one copy.
#[inline(always)]
pub fn write_time_ms(out: &mut Vec<u8>, ms: i64) {
    match TimeText::from_millis(ms) {
        Some(text) => out.extend_from_slice(text.quoted()),
        None => match DateTime::from_timestamp_millis(ms) {
            Some(t) => write_str(out, &super::time::format_time(t)),
            // Beyond chrono's range: no stored time can be there.
            None => out.extend_from_slice(b"null"),
        },
    }
}

/// Appends an integer.
#[inline]
pub fn write_i64(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends a JSON value exactly as `serde_json` writes it (compact; objects in their map's
/// order; integers by `itoa` and floats by the same `Display` serde_json's own formatter uses),
/// without serde's generic serializer.
pub fn write_json_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                write_json_value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// Appends a number as serde_json does: an unsigned or negative integer by `itoa`, a float (a
/// `Value` holds only finite ones) by its `Display`, which is serde_json's float formatter.
fn write_number(out: &mut Vec<u8>, n: &serde_json::Number) {
    if let Some(u) = n.as_u64() {
        out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes());
    } else if let Some(i) = n.as_i64() {
        out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
    } else {
        use std::io::Write as _;
        let mark = out.len();
        if write!(out, "{n}").is_err() {
            out.truncate(mark);
            out.extend_from_slice(b"null");
        }
    }
}

/// A JSON value kept as its text, exactly as [`write_json_value`] writes the value the text
/// parses to: a payload that a service only stores and sends back (a session's `data`) is kept,
/// stored and written as this text, and parsed only where something looks into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalJson(Box<str>);

impl CanonicalJson {
    /// The text [`write_json_value`] writes for the array or object `text` spells, read without
    /// parsing it into a value: `text` itself, or without its whitespace between tokens. `None`
    /// (which says nothing of validity: such a text goes to the parser) for anything whose
    /// value would be written otherwise or that the reader does not vouch for: a string with an
    /// escape or a control character, a number with a fraction or an exponent, with more than
    /// [`CANONICAL_DIGITS`] digits, a leading zero or `-0`, a repeated key (or more than
    /// [`CANONICAL_KEYS`] in one object), the parser's raw-value marker as a key, nesting
    /// deeper than [`CANONICAL_DEPTH`].
    pub fn new(text: &str) -> Option<Self> {
        match Canonical::read(text.as_bytes())? {
            Spacing::Compact => return Some(Self(text.into())),
            Spacing::Spaced => {}
        }
        // Strings hold no escape, so a quote always opens or closes one; the runs between the
        // whitespace outside them are copied whole (cut at ASCII bytes: character boundaries).
        let mut compact = String::with_capacity(text.len());
        let (mut inside, mut run) = (false, 0);
        for (i, b) in text.bytes().enumerate() {
            inside ^= b == b'"';
            if !inside && matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                compact.push_str(text.get(run..i).unwrap_or_default());
                run = i + 1;
            }
        }
        compact.push_str(text.get(run..).unwrap_or_default());
        Some(Self(compact.into_boxed_str()))
    }

    /// Whether `text` is already what [`CanonicalJson::new`] makes of it (vouched for, and
    /// without whitespace): the test for bytes read back from where such a text was stored.
    pub fn is_canonical(text: &str) -> bool {
        Canonical::read(text.as_bytes()) == Some(Spacing::Compact)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value the text stands for.
    pub fn to_value(&self) -> Value {
        JsonRef::Text(self.0.as_bytes()).to_value()
    }
}

/// A JSON value as a service passes it on: parsed, or as its canonical text, which it stores
/// and writes as it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// A parsed value.
    Value(Value),
    /// The canonical text of an array or object.
    Text(CanonicalJson),
}

impl Json {
    /// The value (the text parsed).
    pub fn into_value(self) -> Value {
        match self {
            Self::Value(v) => v,
            Self::Text(t) => t.to_value(),
        }
    }

    /// The value, borrowed when it is one.
    pub fn value(&self) -> std::borrow::Cow<'_, Value> {
        match self {
            Self::Value(v) => std::borrow::Cow::Borrowed(v),
            Self::Text(t) => std::borrow::Cow::Owned(t.to_value()),
        }
    }

    /// Appends the JSON text (the same for either form of the same value).
    pub fn write(&self, out: &mut Vec<u8>) {
        self.as_ref().write(out);
    }

    /// The JSON text.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    /// A borrowed view of either form.
    pub fn as_ref(&self) -> JsonRef<'_> {
        match self {
            Self::Value(v) => JsonRef::Value(v),
            Self::Text(t) => JsonRef::Text(t.as_str().as_bytes()),
        }
    }
}

impl From<Value> for Json {
    fn from(v: Value) -> Self {
        Self::Value(v)
    }
}

/// A borrowed [`Json`]: a parsed value, or a canonical JSON text (UTF-8, kept as bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JsonRef<'a> {
    /// A parsed value.
    Value(&'a Value),
    /// The bytes of a canonical JSON text (see [`CanonicalJson`]).
    Text(&'a [u8]),
}

impl JsonRef<'_> {
    /// Appends the JSON text: a text as it is, a value by [`write_json_value`].
    pub fn write(self, out: &mut Vec<u8>) {
        match self {
            Self::Value(v) => write_json_value(out, v),
            Self::Text(t) => out.extend_from_slice(t),
        }
    }

    /// The value (a text parsed).
    pub fn to_value(self) -> Value {
        match self {
            Self::Value(v) => v.clone(),
            Self::Text(t) => serde_json::from_slice(t).unwrap_or_default(),
        }
    }
}

/// Deepest nesting [`CanonicalJson::new`] vouches for (the parser's own limit is 128).
const CANONICAL_DEPTH: usize = 64;
/// Most keys of one object whose distinctness [`CanonicalJson::new`] checks (by comparing them).
const CANONICAL_KEYS: usize = 32;
/// Most digits of an integer [`CanonicalJson::new`] vouches for: every such integer fits both
/// `i64` and `u64`, so the parser keeps it as the integer it reads and writes the same digits.
const CANONICAL_DIGITS: usize = 18;

/// The reader of [`CanonicalJson::new`].
struct Canonical<'a> {
    text: &'a [u8],
    at: usize,
    depth: usize,
    /// Whether whitespace stood between tokens.
    spaced: bool,
}

/// Whether a text the canonical reader vouches for had whitespace between its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spacing {
    Compact,
    Spaced,
}

impl Canonical<'_> {
    /// Reads a whole array or object: `None` for anything it does not vouch for (see
    /// [`CanonicalJson::new`]).
    fn read(text: &[u8]) -> Option<Spacing> {
        let mut reader = Canonical { text, at: 0, depth: 0, spaced: false };
        let whole = matches!(reader.peek(), Some(b'{' | b'[')) && reader.value() && reader.peek().is_none();
        whole.then_some(if reader.spaced { Spacing::Spaced } else { Spacing::Compact })
    }

    /// The next byte that is not whitespace (skipped).
    fn peek(&mut self) -> Option<u8> {
        let next = skip_json_space(self.text, self.at);
        self.spaced |= next != self.at;
        self.at = next;
        self.text.get(self.at).copied()
    }

    fn value(&mut self) -> bool {
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().is_some(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.integer(),
            _ => false,
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let found = self.text.get(self.at..self.at + word.len()) == Some(word);
        self.at += word.len();
        found
    }

    /// The place of the string's content, from its opening quote on (a string with an escape or
    /// a control character is refused: see [`plain_string`]).
    fn string(&mut self) -> Option<(usize, usize)> {
        self.peek();
        let ((start, end), next) = plain_string(self.text, self.at)?;
        self.at = next;
        Some((start as usize, end as usize))
    }

    fn integer(&mut self) -> bool {
        let negative = self.peek() == Some(b'-');
        let start = self.at + usize::from(negative);
        let digits = self.text.get(start..).map_or(0, |rest| rest.iter().take_while(|b| b.is_ascii_digit()).count());
        self.at = start + digits;
        let first = self.text.get(start).copied();
        let leading_zero = first == Some(b'0') && (digits > 1 || negative);
        (1..=CANONICAL_DIGITS).contains(&digits) && !leading_zero && !matches!(self.peek(), Some(b'.' | b'e' | b'E'))
    }

    /// The items of the array or object that starts here, each read by `item`, up to `close`;
    /// nesting past [`CANONICAL_DEPTH`] is refused.
    fn items(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> bool) -> bool {
        self.depth += 1;
        self.at += 1;
        if self.depth > CANONICAL_DEPTH {
            return false;
        }
        if self.peek() != Some(close) {
            loop {
                if !item(self) {
                    return false;
                }
                match self.peek() {
                    Some(b',') => self.at += 1,
                    Some(b) if b == close => break,
                    _ => return false,
                }
            }
        }
        self.at += 1;
        self.depth -= 1;
        true
    }

    fn array(&mut self) -> bool {
        self.items(b']', Self::value)
    }

    /// An object whose keys are distinct (compared while there are at most [`CANONICAL_KEYS`])
    /// and none the parser's marker.
    fn object(&mut self) -> bool {
        let mut keys = [(0usize, 0usize); CANONICAL_KEYS];
        let mut count = 0;
        self.items(b'}', |r| {
            let Some((from, to)) = r.string() else { return false };
            let key = r.text.get(from..to).unwrap_or_default();
            let seen = |&(a, b): &(usize, usize)| r.text.get(a..b) == Some(key);
            if count == CANONICAL_KEYS
                || key == RAW_VALUE_MARKER.as_bytes()
                || keys.get(..count).is_some_and(|k| k.iter().any(seen))
            {
                return false;
            }
            if let Some(k) = keys.get_mut(count) {
                *k = (from, to);
            }
            count += 1;
            if r.peek() != Some(b':') {
                return false;
            }
            r.at += 1;
            r.value()
        })
    }
}

/// The position of the first byte at or after `at` that is not JSON whitespace.
pub(crate) fn skip_json_space(text: &[u8], mut at: usize) -> usize {
    while matches!(text.get(at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        at += 1;
    }
    at
}

/// Eight copies of a byte.
const fn bytes8(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// The place (from, to) of the string that starts with the quote at `at`, when it has no escape
/// and no control character, and the position after its closing quote. Eight bytes are looked
/// at a time while none of them is a quote, a backslash, a control character or beyond ASCII;
/// from there on, one at a time.
pub(crate) fn plain_string(body: &[u8], at: usize) -> Option<((u32, u32), usize)> {
    if body.get(at) != Some(&b'"') {
        return None;
    }
    let start = at + 1;
    let mut end = start;
    while let Some(chunk) = body.get(end..end + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_ne_bytes(word);
        let zero_in = |x: u64| x.wrapping_sub(bytes8(1)) & !x & bytes8(0x80);
        // Set for a byte under 0x20 (and perhaps for one over 0x7f: both leave the fast way).
        let special = zero_in(w ^ bytes8(b'"')) | zero_in(w ^ bytes8(b'\\')) | (w.wrapping_sub(bytes8(0x20)) & !w);
        if (special | w) & bytes8(0x80) != 0 {
            break;
        }
        end += 8;
    }
    loop {
        match *body.get(end)? {
            b'"' => break,
            b'\\' | 0..=0x1f => return None,
            _ => end += 1,
        }
    }
    Some(((u32::try_from(start).ok()?, u32::try_from(end).ok()?), end + 1))
}

/// The key by which serde_json's parser recognises its `RawValue` in an object: an object with it
/// parses to something else than itself, so [`CanonicalJson::new`] leaves it to the parser.
pub const RAW_VALUE_MARKER: &str = "$serde_json::private::RawValue";

/// Applies `patch` to `target` as RFC 7396 says: an object patch merges key by key (`null`
/// removes a key, an object value merges recursively), anything else replaces the target.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(map) = target {
        for (key, value) in changes {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn needs_escape_finds_every_escaped_byte() {
        let slow = |s: &[u8]| s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        for len in 0..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    assert_eq!(needs_escape(&s), slow(&s), "{s:?}");
                }
            }
        }
        // Neighbouring bytes, whose borrows could meet.
        for at in 0..15 {
            for a in 0..=255u8 {
                for b in 0..=255u8 {
                    let mut s = [0x7fu8; 16];
                    (s[at], s[at + 1]) = (a, b);
                    assert_eq!(needs_escape(&s), slow(&s), "{s:?}");
                }
            }
        }
        let mut out = Vec::new();
        write_str(&mut out, "0123456789abcdef\"\u{1}\u{80}é");
        assert_eq!(out, serde_json::to_vec("0123456789abcdef\"\u{1}\u{80}é").unwrap());
    }

    /// Any JSON value: every number kind (unsigned, negative, floats of any magnitude), strings
    /// of any characters (escapes, controls, non-ASCII), nested arrays and objects.
    fn any_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let text = prop_oneof![any::<String>(), "[\\x00-\\x7f]{0,20}", "[a-z\"\\\\]{0,9}"];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from), // NaN and infinities become null, as in serde_json
            (-1e6f64..1e6).prop_map(Value::from),
            text.clone().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::vec((text.clone(), inner), 0..8)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn value_writer_matches_serde(v in any_value()) {
            let mut out = Vec::new();
            write_json_value(&mut out, &v);
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&v).unwrap());
        }

        #[test]
        fn string_writer_matches_serde(s in proptest::prelude::any::<String>(), prefix in "[ -~]{0,17}") {
            for text in [s.clone(), format!("{prefix}{s}"), format!("{s}{prefix}")] {
                let mut out = Vec::new();
                write_str(&mut out, &text);
                proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&text).unwrap());
            }
        }
    }

    #[test]
    fn value_writer_edge_numbers_and_escapes() {
        let v = json!({
            "u": u64::MAX, "i": i64::MIN, "z": 0, "f": 0.1, "e": 1e300, "t": 5e-324, "n": -0.0, "w": 1.0,
            "s": "\u{0}\u{8}\t\n\u{b}\u{c}\r\u{1f} \"\\ / \u{7f} \u{2028} é", "": [[], {}, [null, true, false]],
        });
        let mut out = Vec::new();
        write_json_value(&mut out, &v);
        assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&v).unwrap());
    }

    #[test]
    fn times_are_written_as_their_wire_strings() {
        use chrono::TimeZone;
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31).unwrap().and_hms_milli_opt(23, 59, 59, 1_500).unwrap();
        let times = [
            Utc.timestamp_millis_opt(1_764_460_800_123).unwrap(),
            Utc.timestamp_millis_opt(-1).unwrap(),
            Utc.timestamp_millis_opt(253_402_300_800_000).unwrap(), // year 10000: chrono's text
            leap.and_utc(),
        ];
        for t in times {
            let (mut by_time, mut by_ms) = (Vec::new(), Vec::new());
            write_time(&mut by_time, &t);
            assert_eq!(by_time, serde_json::to_vec(&super::super::time::format_time(t)).unwrap(), "{t}");
            if t.timestamp_subsec_nanos() < 1_000_000_000 {
                write_time_ms(&mut by_ms, t.timestamp_millis());
                assert_eq!(by_ms, by_time, "{t}");
            }
        }
    }

    #[test]
    fn rfc_7396_appendix_a() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (json!({"a": {"b": "c"}}), json!({"a": {"b": "d", "c": null}}), json!({"a": {"b": "d"}})),
            (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
            (json!([1, 2]), json!({"a": "b", "c": null}), json!({"a": "b"})),
            (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
        ];
        for (target, patch, expected) in cases {
            let mut t = target.clone();
            merge_patch(&mut t, &patch);
            assert_eq!(t, expected, "{target} + {patch}");
        }
    }
    /// What the canonical reader vouches for is what the writer writes for the value the text
    /// parses to; the usual payload shapes (integers, plain strings, distinct keys, any spacing)
    /// are vouched for.
    #[test]
    fn canonical_texts_are_what_the_writer_writes() {
        let canonical = |text: &str| CanonicalJson::new(text).map(|c| c.as_str().to_string());
        let written = |text: &str| {
            let mut out = Vec::new();
            write_json_value(&mut out, &serde_json::from_str(text).unwrap());
            String::from_utf8(out).unwrap()
        };
        let yes = [
            r#"{"n":1,"cart":[1,2,3]}"#,
            r#" { "n" : 1 ,	"cart":[ 1,2 ,3 ]
 } "#,
            "[]",
            "[ ]",
            "{}",
            "[null,true,false,0,-1,123456789012345678,-123456789012345678,\"é \u{7f} /\"]",
            r#"{"a":{"b":[{"c":{}}]},"b":"x y"}"#,
        ];
        for text in yes {
            assert_eq!(canonical(text), Some(written(text)), "{text}");
            assert_eq!(CanonicalJson::is_canonical(text), text == written(text), "{text}");
            assert_eq!(CanonicalJson::new(text).unwrap().to_value(), serde_json::from_str::<Value>(text).unwrap());
        }
        let deep = format!("{}{}", "[".repeat(CANONICAL_DEPTH + 1), "]".repeat(CANONICAL_DEPTH + 1));
        let keys = |n: usize| (0..n).map(|i| format!("\"k{i}\":{i}")).collect::<Vec<_>>().join(",");
        let many = format!("{{{}}}", keys(CANONICAL_KEYS + 1));
        let no = [
            r#"{"a":1.0}"#,
            r#"{"a":1e3}"#,
            r#"{"a":-0}"#,
            r#"{"a":01}"#,
            r#"{"a":1234567890123456789}"#,
            r#"{"a":"\n"}"#,
            r#"{"a":"\u0041"}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":1,"a":2}"#,
            r#"{"a":1, "a":2}"#,
            r#"{"$serde_json::private::RawValue":"1"}"#,
            r#"{"a":tru}"#,
            r#"{"a":1,}"#,
            "[1,]",
            r#"{"a"}"#,
            "[1",
            "[1]]",
            "[1 2]",
            r#""a""#,
            "1",
            "",
            " ",
            &deep,
            &many,
        ];
        for text in no {
            assert_eq!(canonical(text), None, "{text}");
            assert!(!CanonicalJson::is_canonical(text), "{text}");
        }
        let within = format!("{}{}", "[".repeat(CANONICAL_DEPTH), "]".repeat(CANONICAL_DEPTH));
        assert_eq!(canonical(&within), Some(within.clone()));
        let most = format!("{{{}}}", keys(CANONICAL_KEYS));
        assert_eq!(canonical(&most), Some(most.clone()));
    }

    proptest::proptest! {
        /// A text the reader vouches for stands for the value it parses to: its canonical text
        /// is what the writer writes for that value (the written text of any value, with spaces
        /// put in, or cut short).
        #[test]
        fn canonical_texts_round_trip(v in any_value(), cut in 0usize..64) {
            let mut out = Vec::new();
            write_json_value(&mut out, &v);
            let text = String::from_utf8(out).unwrap();
            let short = text.char_indices().map(|(i, _)| i).take_while(|&i| i <= cut).last().unwrap_or(0);
            for t in [text.clone(), text.replacen(',', " ,
    ", 2), text[..short].to_string()] {
                if let Some(canonical) = CanonicalJson::new(&t) {
                    let parsed: Value = serde_json::from_str(&t).unwrap();
                    let mut again = Vec::new();
                    write_json_value(&mut again, &parsed);
                    proptest::prop_assert_eq!(String::from_utf8(again).unwrap(), canonical.as_str());
                }
            }
        }
    }
}
