//! Sessions as Redis hashes, and back.
//!
//! A record is one hash with the [`FIELDS`]: strings as they are, `active` as `1`/`0`, times as
//! Unix milliseconds, `ttl` and `version` as decimal integers, and `user` / `data` as their JSON
//! text (so any JSON value round-trips byte for byte through the scripts, which never parse it).
//! An absent optional field (`user_name`, `close_time`, `expire_time`, ...) is an absent hash
//! field; an empty string is a present one.

use crate::data::version1::SessionV1;
use crate::persistence::DecodeError;
use chrono::{DateTime, TimeZone, Utc};
use redis::Value;
use serde_json::Value as Json;

/// The hash fields, in the order the scripts return them (`HMGET`); the first
/// [`LIST_FIELDS`] are the list projection.
pub const FIELDS: [&str; 14] = [
    "id",
    "user_id",
    "user_name",
    "address",
    "client",
    "active",
    "open_time",
    "request_time",
    "close_time",
    "expire_time",
    "ttl",
    "version",
    "user",
    "data",
];

/// How many leading [`FIELDS`] a list item holds (no `user`, no `data`).
pub const LIST_FIELDS: usize = 12;

/// Unix milliseconds.
pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The script arguments of a whole record: the presence mask of the [`FIELDS`], then their
/// values (an absent field's value is `""` and ignored).
pub fn record_args(s: &SessionV1) -> Vec<Vec<u8>> {
    let text = |v: &str| Some(v.as_bytes().to_vec());
    let num = |n: i64| Some(n.to_string().into_bytes());
    let json = |v: &Option<Json>| v.as_ref().map(|v| serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec()));
    let values: [Option<Vec<u8>>; 14] = [
        text(&s.id),
        text(&s.user_id),
        s.user_name.as_deref().and_then(text),
        s.address.as_deref().and_then(text),
        s.client.as_deref().and_then(text),
        Some(if s.active { b"1".to_vec() } else { b"0".to_vec() }),
        num(ms(s.open_time)),
        num(ms(s.request_time)),
        s.close_time.map(ms).and_then(num),
        s.expire_time.map(ms).and_then(num),
        s.ttl.and_then(num),
        num(s.version),
        json(&s.user),
        json(&s.data),
    ];
    let mask: String = values.iter().map(|v| if v.is_some() { '1' } else { '0' }).collect();
    let mut args = Vec::with_capacity(15);
    args.push(mask.into_bytes());
    args.extend(values.into_iter().map(Option::unwrap_or_default));
    args
}

/// A reply value as bytes (`None` for nil).
pub fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// A reply value as an integer.
pub fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => bytes(other).and_then(|b| std::str::from_utf8(b).ok()).and_then(|s| s.parse().ok()),
    }
}

/// A reply value as text.
pub fn text(v: &Value) -> Option<String> {
    bytes(v).and_then(|b| std::str::from_utf8(b).ok()).map(str::to_string)
}

/// The id of a reply record (its first field), for logs.
pub fn record_id(fields: &[Value]) -> Option<String> {
    fields.first().and_then(text)
}

/// Reads a record from its `HMGET` fields (12 for a list item, 14 for a whole session); a
/// record the scripts found not to be a hash comes as its id alone.
///
/// # Errors
/// The first field that is missing or malformed.
pub fn decode(fields: &[Value], payload: bool) -> Result<SessionV1, DecodeError> {
    if fields.len() < LIST_FIELDS {
        return Err(DecodeError::new("record", "is not a hash"));
    }
    let field = |i: usize| fields.get(i).and_then(bytes);
    let required = |i: usize, name: &'static str| {
        field(i)
            .ok_or(DecodeError::new(name, "missing"))
            .and_then(|b| String::from_utf8(b.to_vec()).map_err(|_| DecodeError::new(name, "must be UTF-8 text")))
    };
    let optional = |i: usize, name: &'static str| match field(i) {
        None => Ok(None),
        Some(b) => String::from_utf8(b.to_vec()).map(Some).map_err(|_| DecodeError::new(name, "must be UTF-8 text")),
    };
    let number = |i: usize, name: &'static str| -> Result<Option<i64>, DecodeError> {
        match field(i) {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .map(Some)
                .ok_or(DecodeError::new(name, "must be an integer")),
        }
    };
    let time = |i: usize, name: &'static str| -> Result<Option<DateTime<Utc>>, DecodeError> {
        number(i, name)?
            .map(|n| Utc.timestamp_millis_opt(n).single().ok_or(DecodeError::new(name, "is out of range")))
            .transpose()
    };
    let json = |i: usize, name: &'static str| -> Result<Option<Json>, DecodeError> {
        if !payload {
            return Ok(None);
        }
        match field(i) {
            None => Ok(Some(Json::Null)),
            Some(b) => serde_json::from_slice(b).map(Some).map_err(|_| DecodeError::new(name, "must be JSON")),
        }
    };
    let active = match field(5) {
        Some(b"1") => true,
        Some(b"0") => false,
        Some(_) => return Err(DecodeError::new("active", "must be 1 or 0")),
        None => return Err(DecodeError::new("active", "missing")),
    };
    Ok(SessionV1 {
        id: required(0, "id")?,
        user_id: required(1, "user_id")?,
        user_name: optional(2, "user_name")?,
        address: optional(3, "address")?,
        client: optional(4, "client")?,
        active,
        open_time: time(6, "open_time")?.ok_or(DecodeError::new("open_time", "missing"))?,
        request_time: time(7, "request_time")?.ok_or(DecodeError::new("request_time", "missing"))?,
        close_time: time(8, "close_time")?,
        expire_time: time(9, "expire_time")?,
        ttl: number(10, "ttl")?,
        version: number(11, "version")?.ok_or(DecodeError::new("version", "missing"))?,
        user: json(12, "user")?,
        data: json(13, "data")?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::toolkit::time::parse_time;
    use serde_json::json;

    fn reply(args: &[Vec<u8>]) -> Vec<Value> {
        let mask = &args[0];
        args[1..]
            .iter()
            .zip(mask.iter())
            .map(|(v, m)| if *m == b'1' { Value::BulkString(v.clone()) } else { Value::Nil })
            .collect()
    }

    #[test]
    fn records_round_trip_and_bad_ones_name_the_field() {
        let t = parse_time("2026-01-01T00:00:00.123Z").unwrap();
        let mut s = SessionV1::open("a1".into(), "".into(), t);
        s.user_name = Some(String::new());
        s.data = Some(json!({"big": 18446744073709551615_u64, "f": 0.1, "k": [{}, []]}));
        s.expire_time = Some(t);
        s.ttl = Some(5);
        let args = record_args(&s);
        assert_eq!(args[0], b"11100111011111".to_vec());
        let fields = reply(&args);
        assert_eq!(decode(&fields, true).unwrap(), s);
        assert_eq!(decode(&fields[..LIST_FIELDS], false).unwrap(), s.without_payload());
        let mut bad = fields.clone();
        bad[11] = Value::BulkString(b"x".to_vec());
        assert_eq!(decode(&bad, true).unwrap_err(), DecodeError::new("version", "must be an integer"));
        assert_eq!(decode(&[Value::BulkString(b"a1".to_vec())], true).unwrap_err().field, "record");
    }
}
