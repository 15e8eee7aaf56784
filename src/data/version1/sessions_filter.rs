//! The typed `get_sessions` filter (contract §3), parsed from Pip's string-valued FilterParams.

use crate::data::version1::SessionV1;
use crate::toolkit::data::boolean_word;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::time::{format_time, parse_time};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// Filter of `get_sessions`. Every field is optional; all given fields must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionsFilter {
    /// Exact session id.
    pub id: Option<String>,
    /// Exact user id.
    pub user_id: Option<String>,
    /// Open (true) or closed (false) sessions.
    pub active: Option<bool>,
    /// `request_time >= from_time`.
    pub from_time: Option<DateTime<Utc>>,
    /// `request_time < to_time`.
    pub to_time: Option<DateTime<Utc>>,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Pip's boolean words: `true/1/t/yes/y`, `false/0/f/no/n`; anything else is "no value".
fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => boolean_word(s),
        _ => None,
    }
}

impl SessionsFilter {
    /// Parses the `filter` parameter.
    ///
    /// # Errors
    /// `INVALID_DATA` when `filter` is not an object or a date is unparseable.
    pub fn from_value(value: Option<&Value>) -> Result<Self, ApplicationError> {
        let Some(v) = value.filter(|v| !v.is_null()) else { return Ok(Self::default()) };
        let empty = Map::new();
        let map = match v {
            Value::Object(m) => m,
            Value::String(s) if s.is_empty() => &empty,
            _ => {
                return Err(ApplicationError::bad_request(
                    "INVALID_DATA",
                    "Validation failed: filter must be an object",
                ))
            }
        };
        let time = |name: &str| -> Result<Option<DateTime<Utc>>, ApplicationError> {
            match map.get(name).and_then(text) {
                None => Ok(None),
                Some(s) => parse_time(&s).map(Some).ok_or_else(|| {
                    ApplicationError::bad_request(
                        "INVALID_DATA",
                        format!("Validation failed: filter.{name} is not a valid date-time"),
                    )
                    .with_details("field", format!("filter.{name}"))
                }),
            }
        };
        Ok(Self {
            id: map.get("id").and_then(text),
            user_id: map.get("user_id").and_then(text),
            active: map.get("active").and_then(boolean),
            from_time: time("from_time")?,
            to_time: time("to_time")?,
        })
    }

    /// Whether a session passes the filter.
    pub fn matches(&self, s: &SessionV1) -> bool {
        self.matches_fields(&s.id, &s.user_id, s.active, s.request_time)
    }

    /// Whether a session with these fields passes the filter.
    pub fn matches_fields(&self, id: &str, user_id: &str, active: bool, request_time: DateTime<Utc>) -> bool {
        self.id.as_deref().is_none_or(|x| x == id)
            && self.user_id.as_deref().is_none_or(|u| u == user_id)
            && self.active.is_none_or(|a| a == active)
            && self.from_time.is_none_or(|t| request_time >= t)
            && self.to_time.is_none_or(|t| request_time < t)
    }

    /// The filter as Pip's string map (used by clients).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                m.insert(k.to_string(), Value::String(v));
            }
        };
        put("id", self.id.clone());
        put("user_id", self.user_id.clone());
        put("active", self.active.map(|a| a.to_string()));
        put("from_time", self.from_time.map(format_time));
        put("to_time", self.to_time.map(format_time));
        Value::Object(m)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_pip_string_maps() {
        let f = SessionsFilter::from_value(Some(&json!({"user_id": "1", "active": "yes",
            "from_time": "2026-01-01T00:00:00Z", "to_time": "2026-01-02", "unknown": "x"})))
        .unwrap();
        assert_eq!(f.user_id.as_deref(), Some("1"));
        assert_eq!(f.active, Some(true));
        assert_eq!(format_time(f.from_time.unwrap()), "2026-01-01T00:00:00.000Z");
        assert_eq!(format_time(f.to_time.unwrap()), "2026-01-02T00:00:00.000Z");
        assert_eq!(SessionsFilter::from_value(Some(&json!({"active": "maybe"}))).unwrap().active, None);
        assert_eq!(SessionsFilter::from_value(Some(&json!({"active": false}))).unwrap().active, Some(false));
        let e = SessionsFilter::from_value(Some(&json!({"from_time": "soon"}))).unwrap_err();
        assert_eq!(e.code, "INVALID_DATA");
        assert!(SessionsFilter::from_value(Some(&json!([1]))).is_err());
        assert_eq!(SessionsFilter::from_value(None).unwrap(), SessionsFilter::default());
        let round = SessionsFilter::from_value(Some(&f.to_value())).unwrap();
        assert_eq!(round, f);
    }
}
