//! The argument objects of the sessions commands, built in one place for every client that sends
//! them (commandable HTTP, commandable gRPC) or checks them against the commands' schemas
//! (direct), and the `{count}` answer of the counting commands.

use crate::data::version1::SessionsFilter;
use crate::toolkit::data::PagingParams;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The `{count}` answer of `close_user_sessions` and `purge_sessions`.
#[derive(Deserialize)]
pub(super) struct Count {
    pub(super) count: u64,
}

/// `{filter, paging}` of `get_sessions`.
pub(super) fn get_sessions(filter: &SessionsFilter, paging: &PagingParams) -> Value {
    json!({"filter": filter.to_value(), "paging": paging_value(paging)})
}

/// `{session_id, version?}` of the commands on one session.
pub(super) fn by_id(session_id: &str, version: Option<i64>) -> Value {
    let mut m = Map::new();
    m.insert("session_id".to_string(), Value::from(session_id));
    if let Some(v) = version {
        m.insert("version".to_string(), Value::from(v));
    }
    Value::Object(m)
}

/// `{session_id, version?, <key>: value}` of the writes that carry a payload (`data`, `user`).
pub(super) fn by_id_with(session_id: &str, version: Option<i64>, key: &str, value: Value) -> Value {
    with(by_id(session_id, version), key, value)
}

/// `{user_id, except_session_id?}` of `close_user_sessions`.
pub(super) fn close_user_sessions(user_id: &str, except_session_id: Option<&str>) -> Value {
    let args = json!({"user_id": user_id});
    match except_session_id {
        Some(except) => with(args, "except_session_id", Value::from(except)),
        None => args,
    }
}

fn with(mut args: Value, key: &str, value: Value) -> Value {
    if let Some(m) = args.as_object_mut() {
        m.insert(key.to_string(), value);
    }
    args
}

fn paging_value(p: &PagingParams) -> Value {
    let mut m = Map::new();
    if let Some(skip) = p.skip {
        m.insert("skip".to_string(), Value::from(skip));
    }
    if let Some(take) = p.take {
        m.insert("take".to_string(), Value::from(take));
    }
    m.insert("total".to_string(), Value::from(p.total));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_command_arguments() {
        assert_eq!(paging_value(&PagingParams::default()), json!({"total": false}));
        assert_eq!(paging_value(&PagingParams::new(1, 2, true)), json!({"skip": 1, "take": 2, "total": true}));
        assert_eq!(by_id("a", Some(3)), json!({"session_id": "a", "version": 3}));
        assert_eq!(by_id("a", None), json!({"session_id": "a"}));
        assert_eq!(by_id_with("a", None, "data", json!({"x": 1})), json!({"session_id": "a", "data": {"x": 1}}));
        assert_eq!(close_user_sessions("u", None), json!({"user_id": "u"}));
        assert_eq!(close_user_sessions("u", Some("s")), json!({"user_id": "u", "except_session_id": "s"}));
    }
}
