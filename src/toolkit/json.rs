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
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        write_value(out, &s);
    }
}

/// Whether any byte is a control character, `"` or `\\` (what JSON escapes), eight bytes at a
/// time: a byte below `n` (for `n` <= 128) sets its high bit in `(x - n * ONES) & !x`, and a
/// zero byte (of `x` xor the character) does so in `(y - ONES) & !y`; neither borrow makes a
/// false hit when no byte qualifies.
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let x = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).unwrap_or([0; 8]));
        let (quote, backslash) = (x ^ (ONES * u64::from(b'"')), x ^ (ONES * u64::from(b'\\')));
        let hit = (x.wrapping_sub(ONES * 0x20) & !x)
            | (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash);
        if hit & HIGH != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Appends an optional string (`null` for none).
pub fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
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
/// straight from the number (the same text as [`write_time`] of that time).
pub fn write_time_ms(out: &mut Vec<u8>, ms: i64) {
    match TimeText::from_millis(ms) {
        Some(text) => {
            out.push(b'"');
            out.extend_from_slice(text.as_bytes());
            out.push(b'"');
        }
        None => match DateTime::from_timestamp_millis(ms) {
            Some(t) => write_str(out, &super::time::format_time(t)),
            // Beyond chrono's range: no stored time can be there.
            None => out.extend_from_slice(b"null"),
        },
    }
}

/// Appends an integer.
pub fn write_i64(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends any serialisable value through serde (`null` if it cannot be encoded, which a JSON
/// value or a string never fails to be).
pub fn write_value<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}

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
}
