//! The original service's file store format: what `SessionsFilePersistence` of
//! `service-sessions-node` reads and writes through `JsonFilePersister` (pip-services3-data-nodex).
//!
//! The file is one JSON array of sessions, written whole by `JSON.stringify` (no spaces) after
//! every change and parsed whole at start-up. Each session is the object the original built, so
//! its keys come in this order: `id`, `user_id`, `user_name`, `active`, `open_time`,
//! `request_time`, `address`, `client`, `user`, `data`, and `close_time` appended when the
//! session is closed (absent while open). Dates are ISO strings with milliseconds and `Z`
//! (`Date.toJSON`); the original keeps them as strings after loading and returns them as they are.
//! `user` and `data` are JSON values (`null` when unset); a key whose value was `undefined` is
//! left out, so `user_name`, `address`, `client`, `user` or `data` may be missing.
//!
//! The original keeps every key of a loaded object (unknown ones too) and writes them back on its
//! next save. [`write_session`] writes the original's keys in its order plus `ttl` when the
//! session has one; `version` and `expire_time` are left out on purpose: the original would keep
//! them frozen while it changes the session, so on the way back they would be stale (an
//! `expire_time` in the past would expire a session in use, a `version` that did not move would
//! let a conditional write pass over the original's changes). A session read back without them is
//! a legacy session: version 1, expiry by the idle timeout on `request_time`, exactly like a
//! session the original wrote itself.

use crate::data::version1::SessionV1;
use crate::toolkit::json::{write_i64, write_json_value, write_opt_str, write_str, write_time};
use serde_json::Value;

/// Why an item of a file is not a session. Never quotes a stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// Position of the item in the array (0-based).
    pub index: usize,
    /// The item's `id` when it has a string one.
    pub id: Option<String>,
    /// What is wrong ("open_time: missing or not a date", ...).
    pub reason: String,
}

/// The items of a file: each a session or why it is not one. Empty (or blank) text is an empty
/// store, as for the original.
///
/// # Errors
/// When the text is not a JSON array (the `serde_json` error carries line and column).
pub fn parse_file(bytes: &[u8]) -> Result<Vec<Result<SessionV1, Unreadable>>, serde_json::Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let items: Vec<Value> = serde_json::from_slice(bytes)?;
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let id = item.get("id").and_then(Value::as_str).map(str::to_string);
            node_session(item).map_err(|reason| Unreadable { index, id, reason })
        })
        .collect())
}

/// One item of the original's file as a session. What the original may leave out is filled in:
/// absent `user`/`data` become `null`, an absent `active` follows `close_time`, an absent
/// `request_time` is `open_time`, and `version` is 1 unless the item carries one.
///
/// # Errors
/// The first field that is missing or of the wrong type (without its value).
pub fn node_session(mut item: Value) -> Result<SessionV1, String> {
    let Some(obj) = item.as_object_mut() else { return Err("not a JSON object".to_string()) };
    for key in ["user", "data"] {
        obj.entry(key).or_insert(Value::Null);
    }
    let closed = obj.get("close_time").is_some_and(|t| !t.is_null());
    obj.entry("active").or_insert(Value::Bool(!closed));
    if !obj.contains_key("request_time") {
        if let Some(open) = obj.get("open_time").cloned() {
            obj.insert("request_time".into(), open);
        }
    }
    let reason = diagnose(obj);
    serde_json::from_value(item).map_err(|_| reason.unwrap_or_else(|| "not a session".to_string()))
}

/// How a field of a session must look.
#[derive(Clone, Copy)]
enum Shape {
    Text,
    OptionalText,
    Flag,
    Time,
    OptionalTime,
    Integer,
    OptionalInteger,
}

/// The first field of an object that cannot be read as a session field.
fn diagnose(obj: &serde_json::Map<String, Value>) -> Option<String> {
    use Shape::*;
    let time = |v: &Value| v.as_str().is_some_and(|s| crate::toolkit::time::parse_time(s).is_some());
    let fields = [
        ("id", Text),
        ("user_id", Text),
        ("user_name", OptionalText),
        ("address", OptionalText),
        ("client", OptionalText),
        ("active", Flag),
        ("open_time", Time),
        ("request_time", Time),
        ("close_time", OptionalTime),
        ("version", Integer),
        ("expire_time", OptionalTime),
        ("ttl", OptionalInteger),
    ];
    for (field, shape) in fields {
        let required = matches!(shape, Text | Flag | Time);
        let Some(v) = obj.get(field) else {
            if required {
                return Some(format!("{field}: missing"));
            }
            continue;
        };
        let good = match shape {
            Text => v.is_string(),
            OptionalText => v.is_string() || v.is_null(),
            Flag => v.is_boolean(),
            Time => time(v),
            OptionalTime => v.is_null() || time(v),
            Integer => v.is_i64(),
            OptionalInteger => v.is_i64() || v.is_null(),
        };
        if !good {
            return Some(format!("{field}: wrong type or format"));
        }
    }
    None
}

/// Appends one session in the original's layout (see the module doc): its ten keys in its order,
/// `close_time` only when closed, then `ttl` when set.
pub fn write_session(out: &mut Vec<u8>, s: &SessionV1) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, &s.id);
    out.extend_from_slice(b",\"user_id\":");
    write_str(out, &s.user_id);
    out.extend_from_slice(b",\"user_name\":");
    write_opt_str(out, s.user_name.as_deref());
    out.extend_from_slice(if s.active { b",\"active\":true" } else { b",\"active\":false" });
    out.extend_from_slice(b",\"open_time\":");
    write_time(out, &s.open_time);
    out.extend_from_slice(b",\"request_time\":");
    write_time(out, &s.request_time);
    out.extend_from_slice(b",\"address\":");
    write_opt_str(out, s.address.as_deref());
    out.extend_from_slice(b",\"client\":");
    write_opt_str(out, s.client.as_deref());
    out.extend_from_slice(b",\"user\":");
    write_json_value(out, s.user.as_ref().unwrap_or(&Value::Null));
    out.extend_from_slice(b",\"data\":");
    write_json_value(out, s.data.as_ref().unwrap_or(&Value::Null));
    if let Some(t) = &s.close_time {
        out.extend_from_slice(b",\"close_time\":");
        write_time(out, t);
    }
    if let Some(ttl) = s.ttl {
        out.extend_from_slice(b",\"ttl\":");
        write_i64(out, ttl);
    }
    out.push(b'}');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::toolkit::time::parse_time;
    use serde_json::json;

    #[test]
    fn writes_the_original_layout_and_reads_it_back() {
        let t = parse_time("2026-11-21T10:15:30.123Z").unwrap();
        let mut s = SessionV1::open("ab12".into(), "u1".into(), t);
        s.user_name = Some("Ann \"A\"".into());
        s.data = Some(json!({"k": [1, 2.5, null]}));
        s.version = 7;
        s.expire_time = Some(t);
        let mut out = Vec::new();
        write_session(&mut out, &s);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            r#"{"id":"ab12","user_id":"u1","user_name":"Ann \"A\"","active":true,"open_time":"2026-11-21T10:15:30.123Z","request_time":"2026-11-21T10:15:30.123Z","address":null,"client":null,"user":null,"data":{"k":[1,2.5,null]}}"#
        );
        let mut back = node_session(serde_json::from_slice(&out).unwrap()).unwrap();
        assert_eq!((back.version, back.expire_time), (1, None), "a legacy session again");
        back.version = 7;
        back.expire_time = Some(t);
        assert_eq!(back, s);

        s.active = false;
        s.close_time = Some(t);
        s.ttl = Some(60_000);
        out.clear();
        write_session(&mut out, &s);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(r#""data":{"k":[1,2.5,null]},"close_time":"2026-11-21T10:15:30.123Z","ttl":60000}"#));
    }

    #[test]
    fn reads_what_the_original_may_leave_out_and_names_bad_fields() {
        let items = parse_file(
            br#"[{"id":"a","user_id":"u","active":true,"open_time":"2026-01-01T00:00:00.000Z"},
                 {"id":"b","user_id":"u","open_time":"2026-01-01T00:00:00.000Z","close_time":"2026-01-01T00:00:01.000Z"},
                 {"id":"c","user_id":5,"open_time":"2026-01-01T00:00:00.000Z"},
                 {"id":"d","user_id":"secret","open_time":"never"},
                 7]"#,
        )
        .unwrap();
        let a = items[0].as_ref().unwrap();
        assert_eq!(
            (a.request_time, a.user.clone(), a.data.clone()),
            (a.open_time, Some(Value::Null), Some(Value::Null))
        );
        assert!(!items[1].as_ref().unwrap().active, "closed when it has a close_time");
        let bad: Vec<(usize, Option<&str>, &str)> = items
            .iter()
            .filter_map(|i| i.as_ref().err())
            .map(|u| (u.index, u.id.as_deref(), u.reason.as_str()))
            .collect();
        assert_eq!(
            bad,
            [
                (2, Some("c"), "user_id: wrong type or format"),
                (3, Some("d"), "open_time: wrong type or format"),
                (4, None, "not a JSON object")
            ]
        );
        assert!(parse_file(b" \n").unwrap().is_empty());
        assert!(parse_file(b"{\"id\":1}").is_err());
    }
}
