//! `get_session_by_id`'s answer written straight from the raw BSON the driver returns: the
//! session's fields are borrowed from the document's bytes and `user`/`data` are written as the
//! codec converts them ([`raw_to_json`]), without building a [`SessionV1`] or its JSON values.
//! The text is the one [`decode_raw`]'s session encodes to; a document this path does not cover
//! (any field the codec would refuse or convert some other way, a `user`/`data` key the codec
//! unescapes, a key repeated in one document — the codec keeps the last value at the first
//! place) gets no text here, and the caller decodes it with the codec.
//!
//! [`SessionV1`]: crate::data::version1::SessionV1
//! [`decode_raw`]: super::codec::decode_raw

use super::codec::{raw_to_json, read_optional_integer, read_optional_time, read_time, Fields};
use crate::data::version1::{session_size_hint, write_session, SessionView};
use crate::persistence::{MustAct, SessionState};
use crate::toolkit::json::{write_i64, write_str, write_value, JsonText, WriteJson};
use chrono::{DateTime, Utc};
use mongodb::bson::{RawBsonRef, RawDocument};
use serde_json::Value;
use std::cell::Cell;

/// The fields of a stored session as borrowed from its document.
struct RawSession<'a> {
    id: &'a str,
    user_id: &'a str,
    user_name: Option<&'a str>,
    address: Option<&'a str>,
    client: Option<&'a str>,
    active: bool,
    open_time: DateTime<Utc>,
    request_time: DateTime<Utc>,
    close_time: Option<DateTime<Utc>>,
    user: Option<RawBsonRef<'a>>,
    data: Option<RawBsonRef<'a>>,
    version: i64,
    expire_time: Option<DateTime<Utc>>,
    ttl: Option<i64>,
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
    /// The session of `d` as the codec reads it, or `None` for any field it would refuse.
    fn of(d: &'a RawDocument) -> Option<Self> {
        let f = Fields::of(d).ok()?;
        let (Some(RawBsonRef::String(id)), Some(RawBsonRef::String(user_id)), Some(RawBsonRef::Boolean(active))) =
            (f.id, f.user_id, f.active)
        else {
            return None;
        };
        let version = read_optional_integer(f.version, "version").ok()?;
        if version.is_some_and(|v| v < 1) {
            return None;
        }
        Some(Self {
            id,
            user_id,
            user_name: optional_text(f.user_name)?,
            address: optional_text(f.address)?,
            client: optional_text(f.client)?,
            active,
            open_time: read_time(f.open_time, "open_time").ok()?,
            request_time: read_time(f.request_time, "request_time").ok()?,
            close_time: read_optional_time(f.close_time, "close_time").ok()?,
            user: f.user,
            data: f.data,
            version: version.unwrap_or(1),
            expire_time: read_optional_time(f.expire_time, "expire_time").ok()?,
            ttl: read_optional_integer(f.ttl, "ttl").ok()?,
            size: d.as_bytes().len(),
            declined: Cell::new(false),
        })
    }

    fn state(&self) -> SessionState {
        SessionState {
            active: self.active,
            expire_time: self.expire_time,
            request_time: self.request_time,
            version: self.version,
        }
    }
}

/// The view without `user` and `data`: [`write_session`] leaves their keys out, and
/// [`RawSession::write_json`] puts them in their place.
impl SessionView for RawSession<'_> {
    fn id(&self) -> &str {
        self.id
    }
    fn user_id(&self) -> &str {
        self.user_id
    }
    fn user_name(&self) -> Option<&str> {
        self.user_name
    }
    fn address(&self) -> Option<&str> {
        self.address
    }
    fn client(&self) -> Option<&str> {
        self.client
    }
    fn active(&self) -> bool {
        self.active
    }
    fn open_ms(&self) -> i64 {
        self.open_time.timestamp_millis()
    }
    fn request_ms(&self) -> i64 {
        self.request_time.timestamp_millis()
    }
    fn close_ms(&self) -> Option<i64> {
        self.close_time.map(|t| t.timestamp_millis())
    }
    fn user(&self) -> Option<&Value> {
        None
    }
    fn data(&self) -> Option<&Value> {
        None
    }
    fn version(&self) -> i64 {
        self.version
    }
    fn expire_ms(&self) -> Option<i64> {
        self.expire_time.map(|t| t.timestamp_millis())
    }
    fn ttl(&self) -> Option<i64> {
        self.ttl
    }
}

/// Where `"version"` starts in a session's text: `user` and `data` go right before it. The last
/// `,"version":` is that key — a string value never holds a quote after a comma unescaped, and
/// only numbers and times follow the key.
fn version_key(text: &[u8]) -> Option<usize> {
    const KEY: &[u8] = b",\"version\":";
    text.windows(KEY.len()).rposition(|w| w == KEY)
}

impl WriteJson for RawSession<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let start = out.len();
        write_session(self, out);
        let Some(at) = version_key(&out[start..]).map(|i| start + i) else {
            self.declined.set(true);
            return;
        };
        let tail = out.len() - at;
        out.extend_from_slice(b",\"user\":");
        let mut written = write_payload(out, self.user);
        out.extend_from_slice(b",\"data\":");
        written = written && write_payload(out, self.data);
        if written {
            out[at..].rotate_left(tail);
        } else {
            self.declined.set(true);
        }
    }

    fn size_hint(&self) -> usize {
        session_size_hint(self) + self.size
    }
}

/// `user` or `data` as the codec reads it (absent: `null`).
fn write_payload(out: &mut Vec<u8>, v: Option<RawBsonRef<'_>>) -> bool {
    match v {
        Some(v) => write_raw(out, v),
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
            Ok(value) => write_value(out, &value),
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

    /// The raw path answers `d`, with the codec's text.
    fn answered(d: &Document) {
        let (fast, codec) = both(d);
        assert_eq!(fast.as_deref(), Some(codec.as_str()), "{d}");
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
                "max": Bson::MaxKey, "re": Bson::RegularExpression(mongodb::bson::Regex {
                    pattern: "a+".into(), options: "i".into() }) },
        });
        // A repeated top-level field: the last one counts, as in the codec.
        let mut raw = RawDocumentBuf::from_document(&doc! { "_id": "x", "user_id": "u", "active": true,
        "open_time": t, "request_time": t })
        .unwrap();
        raw.append("user_id", "v");
        let fast = session_text(&raw, NEVER).unwrap().into_string();
        assert_eq!(fast, JsonText::write(&decode_raw(&raw, true).unwrap().session).into_string());
        assert!(fast.contains("\"user_id\":\"v\""));
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
        #[test]
        fn any_payload_gives_the_codec_text_or_none(user in json_value(), data in json_value(), name in ".*") {
            let t = BsonDateTime::from_millis(1_764_437_434_604);
            let d = doc! {
                "_id": "x", "user_id": "u", "user_name": name, "active": true, "open_time": t, "request_time": t,
                "user": json_to_bson(&user), "data": json_to_bson(&data), "version": 2_i64,
            };
            let (fast, codec) = both(&d);
            if let Some(fast) = fast {
                prop_assert_eq!(fast, codec);
            } else {
                // Only escaped keys are left to the codec here.
                prop_assert!(d.to_string().contains('%'));
            }
        }
    }
}
