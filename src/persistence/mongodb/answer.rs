//! `get_session_by_id`'s answer written straight from the raw BSON the driver returns: the
//! session's fields are borrowed from the document's bytes and `user`/`data` are written as the
//! codec converts them ([`raw_to_json`]), without building a [`SessionV1`] or its JSON values.
//! The text is the one [`decode_raw`]'s session encodes to.
//!
//! The document is read by [`walk`] first, straight from its bytes in one pass; what that reader
//! leaves (see its documentation) is read through the bson crate's iterator ([`Fields::of`],
//! [`write_raw`]), and a document that path does not cover either (any field the codec would
//! refuse or convert some other way, a `user`/`data` key the codec unescapes, a key repeated in
//! one document — the codec keeps the last value at the first place) gets no text here, and the
//! caller decodes it with the codec.
//!
//! [`SessionV1`]: crate::data::version1::SessionV1
//! [`decode_raw`]: super::codec::decode_raw

mod walk;

use super::codec::{raw_to_json, read_optional_integer, read_optional_time, read_time, Fields};
use crate::data::version1::{
    borrowed_session_accessors, session_size_hint, write_session, BorrowedSession, SessionView,
};
use crate::persistence::{MustAct, SessionState};
use crate::toolkit::json::{write_i64, write_json_value, write_str, JsonRef, JsonText, WriteJson};
use mongodb::bson::{RawBsonRef, RawDocument};
use std::cell::Cell;

/// `user` or `data` as one of the two readers found it.
#[derive(Clone, Copy)]
enum Payload<'a> {
    /// From the bytes ([`walk`]).
    Bytes(walk::Value<'a>),
    /// From the bson crate's iterator.
    Crate(RawBsonRef<'a>),
}

/// The fields of a stored session as borrowed from its document.
struct RawSession<'a> {
    session: BorrowedSession<'a, Payload<'a>>,
    /// The document's size: a bound of the payload's text, for the size hint.
    size: usize,
    /// Set when `user` or `data` has a shape left to the codec: the text written is not used.
    declined: Cell<bool>,
}

/// A string field as the codec reads an optional text; `None` where it would refuse it.
fn optional_text(v: Option<RawBsonRef<'_>>) -> Option<Option<&str>> {
    match v {
        Some(RawBsonRef::String(s)) => Some(Some(s)),
        None | Some(RawBsonRef::Null | RawBsonRef::Undefined) => Some(None),
        Some(_) => None,
    }
}

impl<'a> RawSession<'a> {
    /// The session of `d` read from its bytes ([`walk`]), or through the bson crate where that
    /// reader stops; `None` for any field the codec would refuse.
    fn of(d: &'a RawDocument) -> Option<Self> {
        if let Ok(walk::Session { fields, user, data }) = walk::session(d) {
            if let Some(s) = Self::with(&fields, user.map(Payload::Bytes), data.map(Payload::Bytes), d) {
                return Some(s);
            }
        }
        Self::through_the_crate(d)
    }

    /// The session of `d` read through the bson crate's iterator.
    fn through_the_crate(d: &'a RawDocument) -> Option<Self> {
        let f = Fields::of(d).ok()?;
        Self::with(&f, f.user.map(Payload::Crate), f.data.map(Payload::Crate), d)
    }

    /// The session of the fields `f` of `d` as the codec reads them, or `None` for any field it
    /// would refuse.
    fn with(f: &Fields<'a>, user: Option<Payload<'a>>, data: Option<Payload<'a>>, d: &RawDocument) -> Option<Self> {
        let (Some(RawBsonRef::String(id)), Some(RawBsonRef::String(user_id)), Some(RawBsonRef::Boolean(active))) =
            (f.id, f.user_id, f.active)
        else {
            return None;
        };
        let version = read_optional_integer(f.version, "version").ok()?;
        if version.is_some_and(|v| v < 1) {
            return None;
        }
        let session = BorrowedSession {
            id,
            user_id,
            user_name: optional_text(f.user_name)?,
            address: optional_text(f.address)?,
            client: optional_text(f.client)?,
            active,
            open_time: read_time(f.open_time, "open_time").ok()?,
            request_time: read_time(f.request_time, "request_time").ok()?,
            close_time: read_optional_time(f.close_time, "close_time").ok()?,
            version: version.unwrap_or(1),
            user,
            data,
            expire_time: read_optional_time(f.expire_time, "expire_time").ok()?,
            ttl: read_optional_integer(f.ttl, "ttl").ok()?,
        };
        Some(Self { session, size: d.as_bytes().len(), declined: Cell::new(false) })
    }

    fn state(&self) -> SessionState {
        SessionState {
            active: self.session.active,
            expire_time: self.session.expire_time,
            request_time: self.session.request_time,
            version: self.session.version,
        }
    }
}

/// The view whose `user` and `data` are raw BSON: it writes them itself
/// ([`SessionView::write_payloads`]), as the codec converts them.
impl SessionView for RawSession<'_> {
    borrowed_session_accessors!(session);
    fn user(&self) -> Option<JsonRef<'_>> {
        None
    }
    fn data(&self) -> Option<JsonRef<'_>> {
        None
    }

    /// Both keys always (the codec reads an absent payload as `null`); a payload of a shape left
    /// to the codec declines the text.
    fn write_payloads(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b",\"user\":");
        let mut written = write_payload(out, self.session.user);
        out.extend_from_slice(b",\"data\":");
        written = written && write_payload(out, self.session.data);
        if !written {
            self.declined.set(true);
        }
    }
}

impl WriteJson for RawSession<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_session(self, out);
    }

    fn size_hint(&self) -> usize {
        session_size_hint(self) + self.size
    }
}

/// `user` or `data` as the codec reads it (absent: `null`).
fn write_payload(out: &mut Vec<u8>, v: Option<Payload<'_>>) -> bool {
    match v {
        Some(Payload::Bytes(v)) => walk::write_json(out, v, walk::MAX_DEPTH).is_ok(),
        Some(Payload::Crate(v)) => write_raw(out, v),
        None => {
            out.extend_from_slice(b"null");
            true
        }
    }
}

/// Writes the JSON text of [`raw_to_json`]'s value of `v`; false where `v` holds a shape left
/// to the codec (see the module documentation) or bytes that are not BSON.
fn write_raw(out: &mut Vec<u8>, v: RawBsonRef<'_>) -> bool {
    match v {
        RawBsonRef::Null | RawBsonRef::Undefined | RawBsonRef::MinKey | RawBsonRef::MaxKey => {
            out.extend_from_slice(b"null");
        }
        RawBsonRef::Boolean(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        RawBsonRef::Int32(n) => write_i64(out, i64::from(n)),
        RawBsonRef::Int64(n) => write_i64(out, n),
        RawBsonRef::String(s) => write_str(out, s),
        RawBsonRef::Array(a) => {
            out.push(b'[');
            for (i, item) in a.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if !item.is_ok_and(|item| write_raw(out, item)) {
                    return false;
                }
            }
            out.push(b']');
        }
        RawBsonRef::Document(d) => {
            if !plain_distinct_keys(d) {
                return false;
            }
            out.push(b'{');
            for (i, element) in d.into_iter().enumerate() {
                let Ok((key, value)) = element else { return false };
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                if !write_raw(out, value) {
                    return false;
                }
            }
            out.push(b'}');
        }
        // Doubles, decimals, dates, ids and the foreign types: a leaf, converted by the codec.
        other => match raw_to_json(other) {
            Ok(value) => write_json_value(out, &value),
            Err(_) => return false,
        },
    }
    true
}

/// Whether every key of `d` is stored as it is (no `%`: nothing for the codec to unescape) and
/// none repeats.
fn plain_distinct_keys(d: &RawDocument) -> bool {
    const SMALL: usize = 16;
    let mut small = [""; SMALL];
    let mut more: Vec<&str> = Vec::new();
    for (n, element) in d.into_iter().enumerate() {
        let Ok((key, _)) = element else { return false };
        if key.starts_with('%') {
            return false;
        }
        if n < SMALL {
            if small[..n].contains(&key) {
                return false;
            }
            small[n] = key;
        } else {
            more.push(key);
        }
    }
    if more.is_empty() {
        return true;
    }
    more.extend_from_slice(&small);
    more.sort_unstable();
    more.windows(2).all(|w| w[0] != w[1])
}

/// The text of the session in `d` when `must_act` does not hold for it and this path covers
/// the document; `None` otherwise (the caller decodes the document with the codec).
pub(super) fn session_text(d: &RawDocument, must_act: MustAct<'_>) -> Option<JsonText> {
    let s = RawSession::of(d)?;
    if must_act(&s.state()) {
        return None;
    }
    let text = JsonText::write(&s);
    if !s.declined.get() {
        return Some(text);
    }
    if !matches!((s.session.user, s.session.data), (Some(Payload::Bytes(_)), _) | (_, Some(Payload::Bytes(_)))) {
        return None;
    }
    // A payload the byte reader leaves: through the crate.
    let s = RawSession::through_the_crate(d)?;
    let text = JsonText::write(&s);
    (!s.declined.get()).then_some(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::codec::tests::json_value;
    use super::super::codec::{decode_raw, json_to_bson, session_document};
    use super::*;
    use crate::data::version1::SessionV1;
    use crate::toolkit::time::parse_time;
    use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime as BsonDateTime, Decimal128, Document, RawDocumentBuf};
    use proptest::prelude::*;
    use serde_json::json;

    const NEVER: &(dyn Fn(&SessionState) -> bool + Sync) = &|_| false;

    /// The text of the raw path (`None`: left to the codec) and of the codec's session encoded.
    fn both(d: &Document) -> (Option<String>, String) {
        let raw = RawDocumentBuf::from_document(d).unwrap();
        let fast = session_text(&raw, NEVER).map(JsonText::into_string);
        (fast, JsonText::write(&decode_raw(&raw, true).unwrap().session).into_string())
    }

    /// The text of the byte reader alone ([`walk`]; `None`: it stops or declines).
    fn walked(d: &RawDocument) -> Option<String> {
        let walk::Session { fields, user, data } = walk::session(d).ok()?;
        let s = RawSession::with(&fields, user.map(Payload::Bytes), data.map(Payload::Bytes), d)?;
        let text = JsonText::write(&s);
        (!s.declined.get()).then(|| text.into_string())
    }

    /// The raw path answers `d` with the codec's text, read from the bytes.
    fn answered(d: &Document) {
        let (fast, codec) = both(d);
        assert_eq!(fast.as_deref(), Some(codec.as_str()), "{d}");
        assert_eq!(walked(&RawDocumentBuf::from_document(d).unwrap()).as_deref(), Some(codec.as_str()), "{d}");
    }

    /// The raw path answers `d` with the codec's text, through the crate: the byte reader leaves it.
    fn answered_through_the_crate(d: &Document) {
        let (fast, codec) = both(d);
        assert_eq!(fast.as_deref(), Some(codec.as_str()), "{d}");
        assert_eq!(walked(&RawDocumentBuf::from_document(d).unwrap()), None, "{d}");
    }

    fn original(active: bool) -> Document {
        let t = BsonDateTime::from_millis(1_764_437_434_604);
        let mut d = doc! {
            "_id": "fcae8d4fb4af434ba552422d6c852802", "user_id": "u1", "user_name": "Bob", "active": active,
            "open_time": t, "request_time": t, "address": "1.2.3.4", "client": Bson::Null,
            "user": { "a": 1, "n": 12345678901.0, "list": [1, 2.5, "x", Bson::Null, true], "big": 9007199254740992.0 },
            "data": { "k": "v", "nested": { "q\"": "\u{1}é", "e": [], "o": {} } },
        };
        if !active {
            d.insert("close_time", t);
            d.insert("user", Bson::Null);
            d.insert("data", Bson::Null);
        }
        d
    }

    #[test]
    fn the_original_records_give_the_codec_text() {
        answered(&original(true));
        answered(&original(false));
        // Without the optional strings and the payload, `undefined` for null, fields reordered.
        let t = BsonDateTime::from_millis(0);
        answered(&doc! { "request_time": t, "active": true, "open_time": t, "user_id": "u", "_id": "x" });
        answered(&doc! {
            "_id": "x", "user_id": "u", "user_name": Bson::Undefined, "active": true, "open_time": t,
            "request_time": t, "close_time": Bson::Null, "expire_time": Bson::Undefined, "ttl": Bson::Null,
            "version": Bson::Null, "user": Bson::Undefined, "data": "text",
        });
        // Numbers as other writers store them: Int32 version and ttl, integral doubles.
        answered(&doc! {
            "_id": "x", "user_id": "u", "active": true, "open_time": t, "request_time": t,
            "version": 3_i32, "ttl": 5000.0, "expire_time": t, "data": [1.5, -3.0, f64::NAN, 1e300, -0.0],
        });
        // Types only foreign writers produce, converted by the codec.
        answered(&doc! {
            "_id": "x", "user_id": "u", "active": true, "open_time": t, "request_time": t,
            "data": { "o": ObjectId::new(), "t": t, "dec": Bson::Decimal128("12.50".parse::<Decimal128>().unwrap()),
                "max": Bson::MaxKey, "min": Bson::MinKey },
        });
        // Those the byte reader leaves to the crate's iterator.
        let regex = Bson::RegularExpression(mongodb::bson::Regex { pattern: "a+".into(), options: "i".into() });
        let binary = Bson::Binary(mongodb::bson::Binary {
            subtype: mongodb::bson::spec::BinarySubtype::Generic,
            bytes: vec![1, 2],
        });
        let timestamp = Bson::Timestamp(mongodb::bson::Timestamp { time: 7, increment: 9 });
        for foreign in [regex, binary, timestamp, Bson::Symbol("s".into()), Bson::JavaScriptCode("f()".into())] {
            answered_through_the_crate(&doc! {
                "_id": "x", "user_id": "u", "active": true, "open_time": t, "request_time": t,
                "data": { "a": 1, "f": foreign.clone() },
            });
            // Beside the session's fields: the crate reads the document, the codec ignores it.
            answered_through_the_crate(&doc! {
                "_id": "x", "user_id": "u", "active": true, "open_time": t, "request_time": t,
                "extra": foreign, "data": { "a": 1 },
            });
        }
        // A repeated top-level field: the last one counts, as in the codec.
        let mut raw = RawDocumentBuf::from_document(&doc! { "_id": "x", "user_id": "u", "active": true,
        "open_time": t, "request_time": t })
        .unwrap();
        raw.append("user_id", "v");
        raw.append("data", "first");
        raw.append("data", RawDocumentBuf::from_document(&doc! { "second": 2 }).unwrap());
        let fast = session_text(&raw, NEVER).unwrap().into_string();
        assert_eq!(fast, JsonText::write(&decode_raw(&raw, true).unwrap().session).into_string());
        assert!(fast.contains("\"user_id\":\"v\"") && fast.contains("\"data\":{\"second\":2}"));
        assert_eq!(walked(&raw), Some(fast));
    }

    #[test]
    fn the_records_this_service_writes_give_the_codec_text() {
        let t = parse_time("2026-11-21T10:15:30.123Z").unwrap();
        let mut s = SessionV1::open("ab".into(), "u\"1".into(), t);
        s.user_name = Some("Ann\n".into());
        s.data = Some(json!({"cart": [1, 2, 3], "n": 5_000_000_000_i64, "f": 0.1, "u": u64::MAX}));
        s.user = Some(json!({"roles": ["a"], "x": null}));
        s.expire_time = Some(t + chrono::Duration::seconds(5));
        s.ttl = Some(5000);
        answered(&session_document(&s));
        s.active = false;
        s.close_time = Some(t);
        s.version = 7;
        answered(&session_document(&s));
    }

    #[test]
    fn shapes_left_to_the_codec_get_no_text_here() {
        let t = BsonDateTime::from_millis(0);
        let base = doc! { "_id": "x", "user_id": "u", "active": true, "open_time": t, "request_time": t };
        let declined = |field: &str, v: Bson| {
            let mut d = base.clone();
            d.insert(field, v);
            let raw = RawDocumentBuf::from_document(&d).unwrap();
            assert_eq!(session_text(&raw, NEVER), None, "{d}");
            raw
        };
        // Escaped keys (the codec unescapes them): the same text once decoded.
        let escaped = declined("data", json_to_bson(&json!({"$set": {"a.b": 1}, "%": 2})));
        let s = decode_raw(&escaped, true).unwrap().session;
        assert_eq!(s.data, Some(json!({"$set": {"a.b": 1}, "%": 2})));
        // Fields the codec refuses: answered by the codec (its error).
        for (field, v) in [
            ("_id", Bson::Int32(7)),
            ("user_id", Bson::Null),
            ("user_name", Bson::Int32(5)),
            ("active", Bson::Int32(1)),
            ("open_time", Bson::String("2026".into())),
            ("version", Bson::Int64(0)),
            ("ttl", Bson::String("5".into())),
            ("expire_time", Bson::Boolean(true)),
        ] {
            let raw = declined(field, v);
            assert!(decode_raw(&raw, true).is_err(), "{field}");
        }
        // A key repeated inside `user`: the codec keeps the last value at the first place.
        let mut user = RawDocumentBuf::new();
        user.append("a", 1);
        user.append("b", 2);
        user.append("a", 3);
        let mut raw = RawDocumentBuf::from_document(&base).unwrap();
        raw.append("user", user);
        assert_eq!(session_text(&raw, NEVER), None);
        assert_eq!(decode_raw(&raw, true).unwrap().session.user, Some(json!({"a": 3, "b": 2})));
        // Bytes that are not BSON inside `data`: the codec's error.
        let mut bytes = raw.into_bytes();
        let at = bytes.windows(2).rposition(|w| w == [0x10, b'a']).unwrap();
        bytes[at] = 0x7f;
        let broken = RawDocument::from_bytes(&bytes).unwrap();
        assert_eq!(session_text(broken, NEVER), None);
        assert!(decode_raw(broken, true).is_err());
    }

    #[test]
    fn many_keys_are_checked_for_repeats_too() {
        let t = BsonDateTime::from_millis(0);
        let mut data = Document::new();
        for i in 0..40 {
            data.insert(format!("k{i}"), i);
        }
        let d = doc! { "_id": "x", "user_id": "u", "active": true, "open_time": t, "request_time": t, "data": data.clone() };
        answered(&d);
        let mut repeated = RawDocumentBuf::from_document(&data).unwrap();
        repeated.append("k3", "again");
        let mut raw = RawDocumentBuf::from_document(&d).unwrap();
        raw.append("data", repeated);
        assert_eq!(session_text(&raw, NEVER), None);
        assert_eq!(walked(&raw), None);
    }

    /// A session document with `data` set to `v`.
    fn with_data(v: impl Into<Bson>) -> Document {
        let t = BsonDateTime::from_millis(1_764_437_434_604);
        doc! { "_id": "x", "user_id": "u", "active": true, "open_time": t, "request_time": t, "data": v.into() }
    }

    #[test]
    fn every_type_the_originals_records_hold_is_read_from_the_bytes() {
        let t = BsonDateTime::from_millis(1_764_437_434_604);
        let mut nested = Bson::Int32(0);
        for _ in 0..walk::MAX_DEPTH - 1 {
            nested = Bson::Array(vec![nested]);
        }
        answered(&with_data(doc! {
            "doc": { "inner": { "deeper": { "k": "v" } }, "empty": {} },
            "arrays": [[], [1, [2, [3]]], [{ "a": 1 }, { "a": 2 }]],
            "int32": i32::MIN, "int64": i64::MAX, "small64": 5_i64, "neg32": -1,
            "doubles": [0.5, -0.0, 1e300, -3.0, 12345678901.0, 9007199254740993.0, 1e19, -1e19, f64::NAN,
                f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE, 2.5e-308],
            "bool": [true, false], "null": Bson::Null, "undefined": Bson::Undefined,
            "dates": [t, BsonDateTime::from_millis(0), BsonDateTime::from_millis(-1),
                BsonDateTime::from_millis(253_402_300_800_000), BsonDateTime::MAX, BsonDateTime::MIN],
            "strings": ["", "plain", "q\"\\/\u{0}\u{1f}\n\t\r\u{8}\u{c}\u{7f}", "é ü 日本 🎉", "\u{2028}\u{2029}"],
            "keys": { "q\"": 1, "back\\": 2, "ctl\u{1}\n": 3, "日本": 4, "é": 5, " ": 6, "-": 7, "$": 8 },
            "nested": nested.clone(),
        }));
        // `user` and `data` as any single value, and absent.
        for v in [
            Bson::Int32(7),
            Bson::Int64(-7),
            Bson::Double(2.5),
            Bson::Boolean(true),
            Bson::Null,
            Bson::String("just \"text\" é".into()),
            Bson::DateTime(t),
            Bson::Array(vec![]),
            Bson::Document(doc! {}),
        ] {
            let mut d = with_data(v.clone());
            d.insert("user", v);
            answered(&d);
        }
        answered(&doc! { "_id": "x", "user_id": "u", "active": false, "open_time": t, "request_time": t });
        // Fields the codec ignores, of every type the reader knows, beside the session's.
        answered(&doc! {
            "_id": "x", "user_id": "u", "active": true, "open_time": t, "request_time": t,
            "s": "é", "n": 1, "l": 2_i64, "f": 0.5, "o": ObjectId::new(), "b": false, "t": t, "z": Bson::Null,
            "doc": { "a": 1 }, "arr": [1], "dec": Bson::Decimal128("1".parse::<Decimal128>().unwrap()),
            "日本": Bson::MinKey, "": Bson::MaxKey,
        });
        // Nested deeper than the reader goes: through the crate.
        answered_through_the_crate(&with_data(Bson::Array(vec![Bson::Array(vec![nested])])));
    }

    /// `d`'s bytes with the first occurrence of `from` replaced by `to` (of the same length).
    fn corrupted(d: &Document, from: &[u8], to: &[u8]) -> RawDocumentBuf {
        let mut bytes = RawDocumentBuf::from_document(d).unwrap().into_bytes();
        let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
        bytes[at..at + to.len()].copy_from_slice(to);
        RawDocumentBuf::from_bytes(bytes).unwrap()
    }

    /// Neither the byte reader nor the raw path answers `d`, and the codec refuses it.
    fn refused(d: &RawDocument) {
        assert_eq!(walked(d), None, "{d:?}");
        assert_eq!(session_text(d, NEVER), None, "{d:?}");
        assert!(decode_raw(d, true).is_err(), "{d:?}");
    }

    #[test]
    fn bytes_that_are_not_bson_get_no_text() {
        let extra = |v: Bson| {
            let mut d = with_data(doc! { "a": [1] });
            d.insert("extra", v);
            d
        };
        // Not UTF-8: a string or key anywhere the crate reads (the codec's error), written or not.
        refused(&corrupted(&extra(Bson::String("a~b".into())), b"a~b", &[b'a', 0xff, b'b']));
        refused(&corrupted(&extra(Bson::Int32(1)), b"extra", &[b'e', 0xc3, b'(', b'r', b'a']));
        refused(&corrupted(&with_data(doc! { "k~": 1 }), b"k~", &[b'k', 0xff]));
        refused(&corrupted(&with_data(doc! { "k": "v~" }), b"v~", &[b'v', 0xe2]));
        refused(&corrupted(&with_data(vec![Bson::Int32(1)]), b"0\0", &[0xff, 0]));
        refused(&corrupted(&with_data("é"), "é".as_bytes(), &[0xc3, 0xc3]));
        refused(&corrupted(&with_data(doc! {}), b"u\0", &[0xff, 0]));
        // A boolean other than 0 or 1, in `data` and beside the fields.
        refused(&corrupted(&with_data(doc! { "b": true }), &[0x08, b'b', 0, 1], &[0x08, b'b', 0, 2]));
        refused(&corrupted(&extra(Bson::Boolean(false)), &[b'a', 0, 0, 0], &[b'a', 0, 7, 0]));
        // Lengths that leave their document, or do not end on a NUL; an unknown type byte.
        let inner = with_data(doc! { "k": "vvvv" });
        refused(&corrupted(&inner, &[5, 0, 0, 0, b'v'], &[50, 0, 0, 0, b'v']));
        refused(&corrupted(&inner, &[5, 0, 0, 0, b'v'], &[3, 0, 0, 0, b'v']));
        refused(&corrupted(&inner, &[5, 0, 0, 0, b'v'], &[0, 0, 0, 0x80, b'v']));
        refused(&corrupted(&inner, &[0x02, b'k'], &[0x42, b'k']));
        let mut bytes = RawDocumentBuf::from_document(&inner).unwrap().into_bytes();
        let data_len = bytes.windows(5).position(|w| w == b"data\0").unwrap() + 5;
        bytes[data_len] += 1;
        refused(RawDocument::from_bytes(&bytes).unwrap());
    }

    /// A session document's bytes with `edits` (position, byte) applied and, with `cut`, cut
    /// short and closed again (the outer length and NUL kept right, as the driver checks them).
    fn mangled(
        user: &serde_json::Value,
        data: &serde_json::Value,
        edits: &[(usize, u8)],
        cut: Option<usize>,
    ) -> Vec<u8> {
        let t = BsonDateTime::from_millis(1_764_437_434_604);
        let d = doc! {
            "_id": "x", "user_id": "u", "user_name": "é", "active": true, "open_time": t, "request_time": t,
            "user": json_to_bson(user), "data": json_to_bson(data), "version": 2_i64, "ttl": 5,
        };
        let mut bytes = RawDocumentBuf::from_document(&d).unwrap().into_bytes();
        let inside = bytes.len() - 5;
        for &(at, byte) in edits {
            bytes[4 + at % inside] = byte;
        }
        if let Some(cut) = cut {
            bytes.truncate(4 + cut % inside);
            bytes.push(0);
            let len = i32::try_from(bytes.len()).unwrap().to_le_bytes();
            bytes[..4].copy_from_slice(&len);
        }
        bytes
    }

    /// What the reader answers for `bytes` (nothing, or the codec's text) — and no panic.
    fn the_codec_text_or_nothing(bytes: &[u8]) -> Result<(), TestCaseError> {
        let Ok(d) = RawDocument::from_bytes(bytes) else { return Ok(()) };
        let codec = decode_raw(d, true).ok().map(|s| JsonText::write(&s.session).into_string());
        if let Some(text) = walked(d) {
            prop_assert_eq!(Some(text), codec.clone());
        }
        if let Some(text) = session_text(d, NEVER) {
            prop_assert_eq!(Some(text.into_string()), codec);
        }
        Ok(())
    }

    #[test]
    fn a_session_to_act_on_gets_no_text_and_is_judged_on_its_state() {
        let d = RawDocumentBuf::from_document(&original(true)).unwrap();
        let expected = SessionState::of(&decode_raw(&d, true).unwrap().session);
        let seen = std::sync::Mutex::new(None);
        let always = |s: &SessionState| {
            *seen.lock().unwrap() = Some(*s);
            true
        };
        assert_eq!(session_text(&d, &always), None);
        assert_eq!(*seen.lock().unwrap(), Some(expected));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn corrupted_documents_give_the_codec_text_or_none(
            user in json_value(), data in json_value(),
            edits in prop::collection::vec((any::<usize>(), prop_oneof![any::<u8>(), 0..20_u8]), 0..4),
            cut in prop::option::of(any::<usize>()),
        ) {
            the_codec_text_or_nothing(&mangled(&user, &data, &edits, cut))?;
        }

        #[test]
        fn arbitrary_bytes_give_the_codec_text_or_none(body in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = i32::try_from(body.len() + 5).unwrap().to_le_bytes().to_vec();
            bytes.extend_from_slice(&body);
            bytes.push(0);
            the_codec_text_or_nothing(&bytes)?;
        }
    }

    proptest! {
        #[test]
        fn any_payload_gives_the_codec_text_or_none(user in json_value(), data in json_value(), name in ".*") {
            let t = BsonDateTime::from_millis(1_764_437_434_604);
            let d = doc! {
                "_id": "x", "user_id": "u", "user_name": name, "active": true, "open_time": t, "request_time": t,
                "user": json_to_bson(&user), "data": json_to_bson(&data), "version": 2_i64,
            };
            let (fast, codec) = both(&d);
            let bytes = walked(&RawDocumentBuf::from_document(&d).unwrap());
            if let Some(fast) = fast {
                prop_assert_eq!(bytes.as_ref().unwrap_or(&fast), &fast);
                prop_assert_eq!(fast, codec);
            } else {
                // Only escaped keys are left to the codec here.
                prop_assert!(d.to_string().contains('%'));
            }
            // The byte reader leaves nothing else of these to the crate.
            prop_assert!(bytes.is_some() || d.to_string().contains('%'));
        }
    }
}
