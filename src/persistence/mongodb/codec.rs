//! Sessions as the original service's MongoDB documents, and back.
//!
//! **The document** is what `service-sessions-node` writes: `_id` = the session id, the SessionV1
//! field names, times as BSON dates, absent optional strings as `null`, and `user` / `data` as
//! native BSON values (documents, arrays, scalars, `null`). The extension fields sit beside them:
//! `version` (Int64), `expire_time` (date, only on open sessions that expire), `ttl` (Int64, only
//! when set). All three are optional on read: a document without `version` is a legacy session at
//! version 1 (see [`Decoded::legacy_version`]); one without `expire_time` expires by the idle
//! cutoff. The original reads these documents and ignores the extension fields.
//!
//! **JSON ↔ BSON.** Integers go in as Int32 when they fit (as the original's driver writes them),
//! else Int64, and integers above `i64::MAX` as Decimal128, so every integer comes back exact;
//! floats as doubles. A double with an integral value within the Int64 range reads back as an
//! integer — the way the original (JavaScript) renders the numbers it stored as doubles, such as
//! `12345678901` — so a float like `2.0` sent by a client reads back as `2` (the same JSON number).
//! Non-finite doubles (which JSON cannot carry) read as `null`. Other BSON types that only
//! foreign writers produce read as the original would show them: dates as RFC 3339 strings,
//! ObjectIds as hex strings, the rest as relaxed extended JSON. Key order is kept.
//!
//! **Keys.** MongoDB gives `$`-prefixed and dotted field names special meaning (and BSON keys
//! cannot hold NUL), so a key inside `user`/`data` that starts with `$` or `%`, contains `.` or
//! NUL, or is empty is stored escaped: `%` followed by the key with `%` → `%25`, `.` → `%2E`,
//! `$` → `%24` and NUL → `%00`. Every escaped key starts with `%` and every key starting with `%` is
//! escaped, so the mapping is reversible; ordinary keys are stored as they are.

use crate::data::version1::SessionV1;
use chrono::{DateTime, TimeZone, Utc};
use mongodb::bson::raw::Error as RawError;
use mongodb::bson::{
    doc, Bson, DateTime as BsonDateTime, Decimal128, Document, RawBsonRef, RawDocument, RawDocumentBuf,
};
use serde_json::{Map, Number, Value};

/// The largest magnitude below which an integral double reads back as an integer (2^63).
const INTEGRAL_LIMIT: f64 = 9_223_372_036_854_775_808.0;

/// A BSON date from a time (milliseconds, as every time is kept).
pub fn bson_time(t: DateTime<Utc>) -> BsonDateTime {
    BsonDateTime::from_millis(t.timestamp_millis())
}

pub use crate::persistence::DecodeError;

/// A decoded document.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The session.
    pub session: SessionV1,
    /// The document has no `version` field (written by the original): the session counts as
    /// version 1, and the first write sets `version` instead of incrementing it.
    pub legacy_version: bool,
}

/// The whole document of a session (for inserts).
pub fn session_document(s: &SessionV1) -> Document {
    let mut d = Document::new();
    d.insert("_id", s.id.as_str());
    d.insert("user_id", s.user_id.as_str());
    d.insert("user_name", optional_text(s.user_name.as_deref()));
    d.insert("active", s.active);
    d.insert("open_time", bson_time(s.open_time));
    d.insert("request_time", bson_time(s.request_time));
    d.insert("address", optional_text(s.address.as_deref()));
    d.insert("client", optional_text(s.client.as_deref()));
    d.insert("user", s.user.as_ref().map_or(Bson::Null, json_to_bson));
    d.insert("data", s.data.as_ref().map_or(Bson::Null, json_to_bson));
    if let Some(t) = s.close_time {
        d.insert("close_time", bson_time(t));
    }
    d.insert("version", s.version);
    if let Some(t) = s.expire_time {
        d.insert("expire_time", bson_time(t));
    }
    if let Some(ttl) = s.ttl {
        d.insert("ttl", ttl);
    }
    d
}

fn optional_text(v: Option<&str>) -> Bson {
    v.map_or(Bson::Null, |s| Bson::String(s.to_string()))
}

/// Reads a stored document; with `payload` false (list projection) `user`/`data` stay `None`.
/// (Converts to raw BSON first: [`decode_raw`] is the one decoder.)
///
/// # Errors
/// The first field that is missing or of the wrong type.
pub fn decode_session(d: &Document, payload: bool) -> Result<Decoded, DecodeError> {
    let raw = RawDocumentBuf::from_document(d).map_err(|_| DecodeError::new("document", "is not valid BSON"))?;
    decode_raw(&raw, payload)
}

/// The fields of a stored session, as found in one pass over its raw bytes.
#[derive(Default)]
pub(super) struct Fields<'a> {
    pub(super) id: Option<RawBsonRef<'a>>,
    pub(super) user_id: Option<RawBsonRef<'a>>,
    pub(super) user_name: Option<RawBsonRef<'a>>,
    pub(super) address: Option<RawBsonRef<'a>>,
    pub(super) client: Option<RawBsonRef<'a>>,
    pub(super) active: Option<RawBsonRef<'a>>,
    pub(super) open_time: Option<RawBsonRef<'a>>,
    pub(super) request_time: Option<RawBsonRef<'a>>,
    pub(super) close_time: Option<RawBsonRef<'a>>,
    pub(super) user: Option<RawBsonRef<'a>>,
    pub(super) data: Option<RawBsonRef<'a>>,
    pub(super) version: Option<RawBsonRef<'a>>,
    pub(super) expire_time: Option<RawBsonRef<'a>>,
    pub(super) ttl: Option<RawBsonRef<'a>>,
}

impl<'a> Fields<'a> {
    /// One pass over the elements (a repeated key: the last one counts, as in a [`Document`]).
    pub(super) fn of(d: &'a RawDocument) -> Result<Self, DecodeError> {
        let mut f = Fields::default();
        for element in d {
            let (key, value) = element.map_err(|_| DecodeError::new("document", "is not valid BSON"))?;
            if let Some(slot) = f.slot(key.as_bytes()) {
                *slot = Some(value);
            }
        }
        Ok(f)
    }

    /// Where the value of the field named `key` goes (`None`: not a field of a session).
    pub(super) fn slot(&mut self, key: &[u8]) -> Option<&mut Option<RawBsonRef<'a>>> {
        Some(match key {
            b"_id" => &mut self.id,
            b"user_id" => &mut self.user_id,
            b"user_name" => &mut self.user_name,
            b"address" => &mut self.address,
            b"client" => &mut self.client,
            b"active" => &mut self.active,
            b"open_time" => &mut self.open_time,
            b"request_time" => &mut self.request_time,
            b"close_time" => &mut self.close_time,
            b"user" => &mut self.user,
            b"data" => &mut self.data,
            b"version" => &mut self.version,
            b"expire_time" => &mut self.expire_time,
            b"ttl" => &mut self.ttl,
            _ => return None,
        })
    }
}

fn read_text(v: Option<RawBsonRef<'_>>, field: &'static str) -> Result<String, DecodeError> {
    match v {
        Some(RawBsonRef::String(s)) => Ok(s.to_string()),
        None | Some(RawBsonRef::Null) => Err(DecodeError::new(field, "missing")),
        Some(_) => Err(DecodeError::new(field, "must be a string")),
    }
}

fn read_optional_text(v: Option<RawBsonRef<'_>>, field: &'static str) -> Result<Option<String>, DecodeError> {
    match v {
        Some(RawBsonRef::String(s)) => Ok(Some(s.to_string())),
        None | Some(RawBsonRef::Null | RawBsonRef::Undefined) => Ok(None),
        Some(_) => Err(DecodeError::new(field, "must be a string or null")),
    }
}

pub(super) fn read_time(v: Option<RawBsonRef<'_>>, field: &'static str) -> Result<DateTime<Utc>, DecodeError> {
    match v {
        Some(RawBsonRef::DateTime(t)) => chrono_time(t).ok_or(DecodeError::new(field, "is out of range")),
        None | Some(RawBsonRef::Null) => Err(DecodeError::new(field, "missing")),
        Some(_) => Err(DecodeError::new(field, "must be a date")),
    }
}

pub(super) fn read_optional_time(
    v: Option<RawBsonRef<'_>>,
    field: &'static str,
) -> Result<Option<DateTime<Utc>>, DecodeError> {
    match v {
        Some(RawBsonRef::DateTime(t)) => chrono_time(t).map(Some).ok_or(DecodeError::new(field, "is out of range")),
        None | Some(RawBsonRef::Null | RawBsonRef::Undefined) => Ok(None),
        Some(_) => Err(DecodeError::new(field, "must be a date or null")),
    }
}

pub(super) fn read_optional_integer(
    v: Option<RawBsonRef<'_>>,
    field: &'static str,
) -> Result<Option<i64>, DecodeError> {
    match v {
        Some(RawBsonRef::Int64(v)) => Ok(Some(v)),
        Some(RawBsonRef::Int32(v)) => Ok(Some(i64::from(v))),
        Some(RawBsonRef::Double(v)) if v.fract() == 0.0 && v.abs() < INTEGRAL_LIMIT => {
            #[allow(clippy::cast_possible_truncation)] // integral and within range: exact
            Ok(Some(v as i64))
        }
        None | Some(RawBsonRef::Null | RawBsonRef::Undefined) => Ok(None),
        Some(_) => Err(DecodeError::new(field, "must be an integer or null")),
    }
}

/// Reads a stored document from its raw bytes as the driver returns them, without building a
/// [`Document`] first; with `payload` false (list projection) `user`/`data` stay `None`.
///
/// # Errors
/// The first field that is missing or of the wrong type (checked in a fixed order, whatever the
/// order of the fields in the document).
pub fn decode_raw(d: &RawDocument, payload: bool) -> Result<Decoded, DecodeError> {
    let f = Fields::of(d)?;
    let id = match f.id {
        Some(RawBsonRef::String(s)) => s.to_string(),
        None => return Err(DecodeError::new("_id", "missing")),
        Some(_) => return Err(DecodeError::new("_id", "must be a string")),
    };
    let active = match f.active {
        Some(RawBsonRef::Boolean(b)) => b,
        None | Some(RawBsonRef::Null) => return Err(DecodeError::new("active", "missing")),
        Some(_) => return Err(DecodeError::new("active", "must be a boolean")),
    };
    let version = read_optional_integer(f.version, "version")?;
    if version.is_some_and(|v| v < 1) {
        return Err(DecodeError::new("version", "must be positive"));
    }
    let payload_of = |v: Option<RawBsonRef<'_>>, field: &'static str| {
        payload
            .then(|| v.map_or(Ok(Value::Null), raw_to_json).map_err(|_| DecodeError::new(field, "is not valid BSON")))
            .transpose()
    };
    let session = SessionV1 {
        id,
        user_id: read_text(f.user_id, "user_id")?,
        user_name: read_optional_text(f.user_name, "user_name")?,
        address: read_optional_text(f.address, "address")?,
        client: read_optional_text(f.client, "client")?,
        active,
        open_time: read_time(f.open_time, "open_time")?,
        request_time: read_time(f.request_time, "request_time")?,
        close_time: read_optional_time(f.close_time, "close_time")?,
        user: payload_of(f.user, "user")?,
        data: payload_of(f.data, "data")?,
        version: version.unwrap_or(1),
        expire_time: read_optional_time(f.expire_time, "expire_time")?,
        ttl: read_optional_integer(f.ttl, "ttl")?,
    };
    Ok(Decoded { session, legacy_version: version.is_none() })
}

fn chrono_time(t: BsonDateTime) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(t.timestamp_millis()).single()
}

/// A JSON value as BSON (see the module documentation).
pub fn json_to_bson(v: &Value) -> Bson {
    match v {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => number_to_bson(n),
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(a) => Bson::Array(a.iter().map(json_to_bson).collect()),
        Value::Object(m) => {
            let mut d = Document::new();
            for (k, v) in m {
                d.insert(escape_key(k), json_to_bson(v));
            }
            Bson::Document(d)
        }
    }
}

fn number_to_bson(n: &Number) -> Bson {
    if let Some(i) = n.as_i64() {
        return i32::try_from(i).map_or(Bson::Int64(i), Bson::Int32);
    }
    if let Some(u) = n.as_u64() {
        // Above i64::MAX: Decimal128 holds every u64 exactly.
        if let Ok(d) = u.to_string().parse::<Decimal128>() {
            return Bson::Decimal128(d);
        }
    }
    Bson::Double(n.as_f64().unwrap_or(f64::NAN))
}

/// A BSON value as JSON (see the module documentation).
pub fn bson_to_json(b: &Bson) -> Value {
    let wrapped = RawDocumentBuf::from_document(&doc! { "v": b.clone() });
    match wrapped.as_ref().map(|d| d.get("v")) {
        Ok(Ok(Some(v))) => raw_to_json(v).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// A raw BSON value as JSON (see the module documentation), straight from the driver's bytes.
///
/// # Errors
/// Bytes that are not valid BSON.
pub fn raw_to_json(b: RawBsonRef<'_>) -> Result<Value, RawError> {
    Ok(match b {
        RawBsonRef::Null | RawBsonRef::Undefined | RawBsonRef::MinKey | RawBsonRef::MaxKey => Value::Null,
        RawBsonRef::Boolean(v) => Value::Bool(v),
        RawBsonRef::Int32(v) => Value::from(v),
        RawBsonRef::Int64(v) => Value::from(v),
        RawBsonRef::Double(v) => double_to_json(v),
        RawBsonRef::Decimal128(d) => decimal_to_json(&d),
        RawBsonRef::String(s) => Value::String(s.to_string()),
        RawBsonRef::Array(a) => Value::Array(a.into_iter().map(|v| v.and_then(raw_to_json)).collect::<Result<_, _>>()?),
        RawBsonRef::Document(d) => {
            let mut m = Map::new();
            for element in d {
                let (k, v) = element?;
                m.insert(unescape_key(k), raw_to_json(v)?);
            }
            Value::Object(m)
        }
        RawBsonRef::DateTime(t) => {
            chrono_time(t).map_or(Value::Null, |t| Value::String(crate::toolkit::time::format_time(t)))
        }
        RawBsonRef::ObjectId(o) => Value::String(o.to_hex()),
        other => Bson::try_from(other.to_raw_bson())?.into_relaxed_extjson(),
    })
}

fn double_to_json(v: f64) -> Value {
    if !v.is_finite() {
        return Value::Null;
    }
    if v.fract() == 0.0 && v.abs() < INTEGRAL_LIMIT {
        #[allow(clippy::cast_possible_truncation)] // integral and within range: exact
        return Value::from(v as i64);
    }
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

fn decimal_to_json(d: &Decimal128) -> Value {
    let text = d.to_string();
    if let Ok(i) = text.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(u) = text.parse::<u64>() {
        return Value::from(u);
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => double_to_json(f),
        _ => Value::String(text),
    }
}

/// Whether a key must be escaped to be stored (see the module documentation).
fn needs_escape(k: &str) -> bool {
    k.is_empty() || k.starts_with('$') || k.starts_with('%') || k.contains(['.', '\0'])
}

/// A `user`/`data` key as stored.
pub fn escape_key(k: &str) -> String {
    if !needs_escape(k) {
        return k.to_string();
    }
    let mut out = String::with_capacity(k.len() + 4);
    out.push('%');
    for c in k.chars() {
        match c {
            '%' => out.push_str("%25"),
            '.' => out.push_str("%2E"),
            '$' => out.push_str("%24"),
            '\0' => out.push_str("%00"),
            c => out.push(c),
        }
    }
    out
}

/// A stored key as the client wrote it.
pub fn unescape_key(k: &str) -> String {
    let Some(rest) = k.strip_prefix('%') else { return k.to_string() };
    let mut out = String::with_capacity(rest.len());
    let mut i = 0;
    while i < rest.len() {
        let tail = &rest[i..];
        let decoded = match tail.get(..3) {
            Some("%25") => Some('%'),
            Some("%2E") => Some('.'),
            Some("%24") => Some('$'),
            Some("%00") => Some('\0'),
            _ => None,
        };
        if let Some(c) = decoded {
            out.push(c);
            i += 3;
        } else if let Some(c) = tail.chars().next() {
            // Not produced by `escape_key` (a foreign key starting with `%`): kept as it is.
            out.push(c);
            i += c.len_utf8();
        } else {
            break;
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) mod tests {
    use super::*;
    use crate::toolkit::time::parse_time;
    use mongodb::bson::{doc, oid::ObjectId};
    use proptest::prelude::*;
    use serde_json::json;

    fn sample() -> SessionV1 {
        let t = parse_time("2026-11-21T10:15:30.123Z").unwrap();
        let mut s = SessionV1::open("ab".into(), "u1".into(), t);
        s.data = Some(json!({"$dollar": 1, "dot.key": [9007199254740993_i64, 1.5, false, ""], "%p": {"": null}}));
        s.expire_time = Some(t + chrono::Duration::milliseconds(5));
        s.ttl = Some(5);
        s.user = Some(json!(0));
        s
    }

    #[test]
    fn documents_have_the_original_layout_and_round_trip() {
        let s = sample();
        let d = session_document(&s);
        let keys: Vec<&str> = d.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "_id",
                "user_id",
                "user_name",
                "active",
                "open_time",
                "request_time",
                "address",
                "client",
                "user",
                "data",
                "version",
                "expire_time",
                "ttl"
            ]
        );
        assert_eq!(d.get("user_name"), Some(&Bson::Null));
        assert_eq!(d.get("user"), Some(&Bson::Int32(0)));
        assert_eq!(d.get_datetime("open_time").unwrap().timestamp_millis(), s.open_time.timestamp_millis());
        let data = d.get_document("data").unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), ["%%24dollar", "%dot%2Ekey", "%%25p"]);
        assert_eq!(data.get_array("%dot%2Ekey").unwrap()[0], Bson::Int64(9007199254740993));
        let back = decode_session(&d, true).unwrap();
        assert_eq!(back, Decoded { session: s.clone(), legacy_version: false });
        assert_eq!(decode_session(&d, false).unwrap().session, s.without_payload());
    }

    #[test]
    fn documents_the_original_wrote_are_legacy_sessions() {
        let t = BsonDateTime::from_millis(1_764_437_434_604);
        let d = doc! {
            "_id": "fcae8d4fb4af434ba552422d6c852802", "user_id": "u1", "user_name": "Bob", "active": true,
            "open_time": t, "request_time": t, "address": "1.2.3.4", "client": "c",
            "user": { "a": 1, "b": [1, 2.5, "x", Bson::Null, true], "n": 12345678901.0 },
            "data": { "k": "v", "big": 9007199254740992.0 },
        };
        let s = decode_session(&d, true).unwrap();
        assert!(s.legacy_version);
        assert_eq!(s.session.version, 1);
        assert_eq!((s.session.expire_time, s.session.ttl, s.session.close_time), (None, None, None));
        assert_eq!(s.session.user, Some(json!({"a": 1, "b": [1, 2.5, "x", null, true], "n": 12345678901_i64})));
        assert_eq!(s.session.data.unwrap().to_string(), r#"{"k":"v","big":9007199254740992}"#);
        // Closed by the original: absent optional strings are null, payload null.
        let d = doc! {
            "_id": "x", "user_id": "u3", "user_name": Bson::Null, "active": false, "open_time": t,
            "request_time": t, "address": Bson::Null, "client": Bson::Null, "user": Bson::Null,
            "data": Bson::Null, "close_time": t,
        };
        let s = decode_session(&d, true).unwrap().session;
        assert_eq!(
            (s.user_name, s.user, s.data, s.close_time.is_some()),
            (None, Some(json!(null)), Some(json!(null)), true)
        );
    }

    #[test]
    fn bad_documents_name_the_field() {
        let t = BsonDateTime::from_millis(0);
        let good = doc! { "_id": "x", "user_id": "u", "active": true, "open_time": t, "request_time": t };
        assert!(decode_session(&good, true).is_ok());
        let case = |f: &dyn Fn(&mut Document)| {
            let mut d = good.clone();
            f(&mut d);
            decode_session(&d, true).unwrap_err()
        };
        assert_eq!(
            case(&|d| d.insert("_id", ObjectId::new()).map(drop).unwrap_or(())),
            DecodeError::new("_id", "must be a string")
        );
        assert_eq!(case(&|d| d.remove("user_id").map(drop).unwrap_or(())), DecodeError::new("user_id", "missing"));
        assert_eq!(
            case(&|d| d.insert("active", 1).map(drop).unwrap_or(())),
            DecodeError::new("active", "must be a boolean")
        );
        assert_eq!(
            case(&|d| d.insert("open_time", "2026").map(drop).unwrap_or(())),
            DecodeError::new("open_time", "must be a date")
        );
        assert_eq!(
            case(&|d| d.insert("user_name", 5).map(drop).unwrap_or(())),
            DecodeError::new("user_name", "must be a string or null")
        );
        assert_eq!(
            case(&|d| d.insert("version", "2").map(drop).unwrap_or(())),
            DecodeError::new("version", "must be an integer or null")
        );
        assert_eq!(
            case(&|d| d.insert("version", 0_i64).map(drop).unwrap_or(())),
            DecodeError::new("version", "must be positive")
        );
        // A string `user` is a JSON string, not a fault.
        let mut d = good.clone();
        d.insert("user", "text");
        assert_eq!(decode_session(&d, true).unwrap().session.user, Some(json!("text")));
        assert_eq!(DecodeError::new("x", "y").to_error().status, 500);
    }

    #[test]
    fn bytes_that_are_not_bson_are_a_bad_document() {
        let mut bytes = RawDocumentBuf::from_document(&doc! { "_id": "x" }).unwrap().into_bytes();
        // The length of the `_id` string (after the 4-byte size, the type byte and "_id\0").
        bytes[9] = 0x7f;
        let raw = RawDocument::from_bytes(&bytes).unwrap();
        assert_eq!(decode_raw(raw, true).unwrap_err(), DecodeError::new("document", "is not valid BSON"));
    }

    #[test]
    fn foreign_bson_types_read_as_the_original_shows_them() {
        let o = ObjectId::new();
        let t = BsonDateTime::from_millis(1_764_437_434_604);
        let v = bson_to_json(&Bson::Document(
            doc! { "o": o, "t": t, "nan": f64::NAN, "big": 1e300, "neg": -3.0, "d": Bson::Undefined },
        ));
        assert_eq!(
            v,
            json!({"o": o.to_hex(), "t": "2025-11-29T17:30:34.604Z", "nan": null, "big": 1e300, "neg": -3, "d": null})
        );
        assert_eq!(json_to_bson(&json!(u64::MAX)), Bson::Decimal128("18446744073709551615".parse().unwrap()));
        assert_eq!(bson_to_json(&json_to_bson(&json!(u64::MAX))), json!(u64::MAX));
        assert_eq!(json_to_bson(&json!(5_000_000_000_i64)), Bson::Int64(5_000_000_000));
        assert_eq!(json_to_bson(&json!(-5)), Bson::Int32(-5));
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            // Floats with a fraction (integral doubles read back as integers, by design).
            any::<f64>().prop_filter("finite, fractional", |f| f.is_finite() && f.fract() != 0.0).prop_map(Value::from),
            ".*".prop_map(Value::String),
        ]
    }

    /// Any JSON value, keys that need escaping included (also the raw answer's property test).
    pub(in crate::persistence::mongodb) fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((prop_oneof![".*", "[$%.]{0,3}[a-z.%$]{0,4}"], inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_round_trips(v in json_value()) {
            prop_assert_eq!(bson_to_json(&json_to_bson(&v)), v);
        }

        #[test]
        fn escaped_keys_are_storable_and_reversible(k in ".*") {
            let e = escape_key(&k);
            prop_assert!(!e.starts_with('$') && !e.contains('.') && !e.contains('\0') && !e.is_empty());
            prop_assert_eq!(unescape_key(&e), k);
        }
    }
}
