//! OpenAPI 3.0 schemas of the version 1 data, shared by the commandable and the REST documents
//! (as `#/components/schemas/<name>`), so generated clients get typed results.

use serde_json::{json, Value};

/// A `$ref` to one of these schemas (or any other component schema).
pub fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// `SessionV1` as it is sent.
fn session_schema() -> Value {
    let text = json!({"type": "string", "nullable": true});
    let time = json!({"type": "string", "format": "date-time"});
    json!({
        "type": "object",
        "required": ["id", "user_id", "active", "open_time", "request_time", "version"],
        "properties": {
            "id": {"type": "string", "description": "32 lowercase hex characters"},
            "user_id": {"type": "string"},
            "user_name": text, "address": text, "client": text,
            "active": {"type": "boolean"},
            "open_time": time, "request_time": time,
            "close_time": {"type": "string", "format": "date-time", "description": "Present once closed"},
            "user": {"description": "Cached user object (any JSON); absent in list items", "nullable": true},
            "data": {"description": "Session data (any JSON); absent in list items", "nullable": true},
            "version": {"type": "integer", "description": "1 on open, +1 on every change; the ETag"},
            "expire_time": {"type": "string", "format": "date-time", "description": "When an open session expires unless used"},
            "ttl": {"type": "integer", "description": "The session's own idle timeout, ms"}
        }
    })
}

/// The named schemas: `SessionV1`, `DataPage` (a page of sessions), `SessionValidity` and
/// `Count` (`{count}` of the bulk commands).
pub fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        ("SessionV1", session_schema()),
        (
            "DataPage",
            json!({"type": "object", "required": ["data"], "properties": {
                "total": {"type": "integer", "nullable": true, "description": "All matching items, when asked for"},
                "data": {"type": "array", "items": schema_ref("SessionV1")}
            }}),
        ),
        (
            "SessionValidity",
            json!({"type": "object", "required": ["is_valid"], "properties": {
                "is_valid": {"type": "boolean"},
                "expire_time": {"type": "string", "format": "date-time", "nullable": true},
                "ttl": {"type": "integer", "nullable": true, "description": "Milliseconds left"}
            }}),
        ),
        (
            "Count",
            json!({"type": "object", "required": ["count"], "properties": {
                "count": {"type": "integer", "minimum": 0, "description": "How many sessions the command changed"}
            }}),
        ),
    ]
}
