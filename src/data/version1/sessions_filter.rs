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

fn invalid(name: &str, what: &str) -> ApplicationError {
    ApplicationError::bad_request("INVALID_DATA", format!("Validation failed: filter.{name} {what}"))
        .with_details("field", format!("filter.{name}"))
}

/// A text filter value: `null` is "no filter", any string (`""` too) is a value; every other
/// type is refused, so a filter never silently widens (contract §9, "filters fail closed").
fn text(map: &Map<String, Value>, name: &str) -> Result<Option<String>, ApplicationError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(name, "must be a string")),
    }
}

/// Pip's boolean words: `true/1/t/yes/y`, `false/0/f/no/n`; another string is "no value" as
/// contract §3 says. Numbers other than 0 and 1, objects and arrays are refused.
fn boolean(map: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApplicationError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(1) => Ok(Some(true)),
            Some(0) => Ok(Some(false)),
            _ => Err(invalid(name, "must be a boolean")),
        },
        Some(Value::String(s)) => Ok(boolean_word(s)),
        Some(_) => Err(invalid(name, "must be a boolean")),
    }
}

impl SessionsFilter {
    /// Parses the `filter` parameter.
    ///
    /// # Errors
    /// `INVALID_DATA` when `filter` is not an object, a field has the wrong type (an object, an
    /// array, a number for a string) or a date is unparseable. `null` fields are "no filter".
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
            match text(map, name)? {
                None => Ok(None),
                Some(s) => parse_time(&s).map(Some).ok_or_else(|| invalid(name, "is not a valid date-time")),
            }
        };
        Ok(Self {
            id: text(map, "id")?,
            user_id: text(map, "user_id")?,
            active: boolean(map, "active")?,
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

    #[test]
    fn fails_closed() {
        let f = SessionsFilter::from_value(Some(&json!({"user_id": "", "id": ""}))).unwrap();
        assert_eq!((f.user_id.as_deref(), f.id.as_deref()), (Some(""), Some("")));
        let f = SessionsFilter::from_value(Some(&json!({"user_id": null, "id": null, "active": null,
            "from_time": null, "to_time": null})))
        .unwrap();
        assert_eq!(f, SessionsFilter::default());
        for bad in [
            json!({"user_id": {"$ne": null}}),
            json!({"user_id": [1]}),
            json!({"user_id": 1}),
            json!({"id": true}),
            json!({"from_time": {}}),
            json!({"to_time": []}),
            json!({"from_time": ""}),
            json!({"active": 2}),
            json!({"active": -1}),
            json!({"active": 0.5}),
            json!({"active": {}}),
            json!({"active": [true]}),
        ] {
            let e = SessionsFilter::from_value(Some(&bad)).unwrap_err();
            assert_eq!((e.status, e.code.as_str()), (400, "INVALID_DATA"), "{bad}");
        }
        assert_eq!(SessionsFilter::from_value(Some(&json!({"active": 1}))).unwrap().active, Some(true));
    }
}
