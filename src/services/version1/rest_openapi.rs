//! The OpenAPI 3.0 document of the sessions REST API, built by hand: paths with their path, query
//! and header parameters (`If-Match`, `If-None-Match`), request bodies (the create body is the
//! `open_session` schema itself), responses with `ETag`/`Location` headers, and ErrorDescription
//! references shared with the commandable document.

use crate::data::version1::open_session_schema;
use crate::data::version1::openapi::{schema_ref, schemas};
use crate::toolkit::http::swagger::error_components;
use crate::toolkit::route::join_route;
use serde_json::{json, Map, Value};

fn parameter_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/parameters/{name}")})
}

fn error() -> Value {
    json!({"$ref": "#/components/responses/Error"})
}

/// A 200/201 response carrying a session and its `ETag`.
fn session_response(description: &str) -> Value {
    json!({
        "description": description,
        "headers": {"ETag": {"$ref": "#/components/headers/ETag"}},
        "content": {"application/json": {"schema": schema_ref("SessionV1")}}
    })
}

/// Error responses keyed by status.
fn errors(statuses: &[&str]) -> Map<String, Value> {
    statuses.iter().map(|s| ((*s).to_string(), error())).collect()
}

/// An operation on one session: path `id`, the correlation id, optional `If-Match` on writes, an
/// optional JSON body.
fn by_id(summary: &str, operation_id: &str, base: &str, write: bool, body: Option<(&str, Value)>, ok: Value) -> Value {
    let mut parameters = vec![parameter_ref("SessionId"), parameter_ref("CorrelationId")];
    if write {
        parameters.push(parameter_ref("IfMatch"));
    }
    let mut responses = Map::new();
    responses.insert("200".into(), ok);
    let mut statuses = vec!["400", "401", "404"];
    if write {
        statuses.extend(["409", "412"]);
    }
    if body.is_some() {
        statuses.extend(["413", "415"]);
    }
    statuses.push("500");
    responses.extend(errors(&statuses));
    let mut op = json!({
        "tags": [base],
        "summary": summary,
        "operationId": operation_id,
        "parameters": parameters,
        "responses": responses
    });
    if let (Some((description, schema)), Value::Object(m)) = (body, &mut op) {
        m.insert(
            "requestBody".into(),
            json!({"required": true, "description": description, "content": {"application/json": {"schema": schema}}}),
        );
    }
    op
}

/// The OpenAPI document of the REST API under `base_route`.
pub(super) fn rest_openapi(title: &str, description: Option<&str>, base_route: &str) -> Value {
    let base = base_route.trim_matches('/');
    let path = |sub: &str| join_route(base, sub);
    let any = json!({"description": "Any JSON value"});
    let mut list_params = vec![parameter_ref("CorrelationId")];
    for (name, schema, text) in [
        ("id", json!({"type": "string"}), "Exact session id"),
        ("user_id", json!({"type": "string"}), "Exact user id"),
        ("active", json!({"type": "string"}), "true/false (also 1/0, yes/no, t/f, y/n)"),
        ("from_time", json!({"type": "string", "format": "date-time"}), "request_time >= from_time"),
        ("to_time", json!({"type": "string", "format": "date-time"}), "request_time < to_time"),
        ("skip", json!({"type": "integer", "minimum": 0}), "Items to skip"),
        ("take", json!({"type": "integer", "minimum": 0}), "Items to return (0 or absent = the page maximum)"),
        ("total", json!({"type": "boolean"}), "Count all matching items"),
    ] {
        list_params
            .push(json!({"name": name, "in": "query", "required": false, "description": text, "schema": schema}));
    }
    let mut create_responses = Map::new();
    create_responses.insert(
        "201".into(),
        json!({
            "description": "The opened session",
            "headers": {"ETag": {"$ref": "#/components/headers/ETag"}, "Location": {"$ref": "#/components/headers/Location"}},
            "content": {"application/json": {"schema": schema_ref("SessionV1")}}
        }),
    );
    create_responses.extend(errors(&["400", "401", "409", "413", "415", "500"]));
    let mut list_responses = Map::new();
    list_responses.insert(
        "200".into(),
        json!({"description": "A page of sessions", "content": {"application/json": {"schema": schema_ref("DataPage")}}}),
    );
    list_responses.extend(errors(&["400", "401", "500"]));
    let mut get = by_id("Gets a session", "get_session", base, false, None, session_response("The session"));
    if let Some(Value::Array(params)) = get.get_mut("parameters") {
        params.push(parameter_ref("IfNoneMatch"));
    }
    if let Some(Value::Object(responses)) = get.get_mut("responses") {
        responses.insert(
            "304".into(),
            json!({"description": "Not modified (If-None-Match matched)", "headers": {"ETag": {"$ref": "#/components/headers/ETag"}}}),
        );
    }
    let validity = json!({"description": "Whether the session is valid now",
        "content": {"application/json": {"schema": schema_ref("SessionValidity")}}});
    let mut paths = Map::new();
    paths.insert(
        path(""),
        json!({
            "post": {
                "tags": [base], "summary": "Opens a session", "operationId": "open_session",
                "parameters": [parameter_ref("CorrelationId")],
                "requestBody": {"required": true, "content": {"application/json": {"schema": open_session_schema().to_openapi()}}},
                "responses": create_responses
            },
            "get": {
                "tags": [base], "summary": "Gets a page of sessions", "operationId": "get_sessions",
                "parameters": list_params, "responses": list_responses
            }
        }),
    );
    paths.insert(
        path("{id}"),
        json!({
            "get": get,
            "delete": by_id("Deletes a session; returns it as it was", "delete_session", base, true, None,
                session_response("The deleted session"))
        }),
    );
    paths.insert(
        path("{id}/data"),
        json!({
            "put": by_id("Replaces the session's data", "store_session_data", base, true,
                Some(("The new data (any JSON)", any.clone())), session_response("The updated session")),
            "patch": by_id("Merges a JSON Merge Patch (RFC 7396) into the session's data", "merge_session_data", base, true,
                Some(("A JSON Merge Patch: null removes a key, a non-object replaces the data", any.clone())),
                session_response("The updated session"))
        }),
    );
    paths.insert(
        path("{id}/user"),
        json!({"put": by_id("Replaces the session's cached user", "update_session_user", base, true,
            Some(("The new user object (any JSON)", any)), session_response("The updated session"))}),
    );
    paths.insert(
        path("{id}/close"),
        json!({"post": by_id("Closes a session (idempotent)", "close_session", base, true, None,
            session_response("The closed session"))}),
    );
    paths.insert(
        path("{id}/touch"),
        json!({"post": by_id("Refreshes the session's expiry", "touch_session", base, true, None,
            session_response("The touched session"))}),
    );
    paths.insert(
        path("{id}/validate"),
        json!({"get": by_id("Tells whether a session is valid now, without touching it", "validate_session", base,
            false, None, validity)}),
    );
    let mut components = error_components();
    if let Some(Value::Object(named)) = components.get_mut("schemas") {
        named.extend(schemas().into_iter().map(|(name, schema)| (name.to_string(), schema)));
    }
    if let Value::Object(c) = &mut components {
        c.insert(
            "parameters".into(),
            json!({
                "SessionId": {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                "CorrelationId": {"name": "correlation_id", "in": "query", "required": false, "schema": {"type": "string"}},
                "IfMatch": {"name": "If-Match", "in": "header", "required": false,
                    "description": "`\"<version>\"` from ETag: write only if the session is still at that version (else 412); `*` = no check; weak tags are 400",
                    "schema": {"type": "string"}},
                "IfNoneMatch": {"name": "If-None-Match", "in": "header", "required": false,
                    "description": "ETags the client has; a match gives 304", "schema": {"type": "string"}}
            }),
        );
        c.insert(
            "headers".into(),
            json!({
                "ETag": {"description": "The session's version as a strong entity tag, `\"<version>\"`", "schema": {"type": "string"}},
                "Location": {"description": "The new session's URL", "schema": {"type": "string"}}
            }),
        );
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": title, "description": description.unwrap_or(title), "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": components
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_and_reference_is_described() {
        let doc = rest_openapi("T", None, "api/v1/sessions");
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        let keys: Vec<&str> = paths.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "/api/v1/sessions",
                "/api/v1/sessions/{id}",
                "/api/v1/sessions/{id}/data",
                "/api/v1/sessions/{id}/user",
                "/api/v1/sessions/{id}/close",
                "/api/v1/sessions/{id}/touch",
                "/api/v1/sessions/{id}/validate"
            ]
        );
        assert_eq!(paths["/api/v1/sessions/{id}/data"]["patch"]["responses"]["412"], error());
        assert_eq!(
            paths["/api/v1/sessions/{id}"]["get"]["responses"]["304"]["headers"]["ETag"]["$ref"],
            "#/components/headers/ETag"
        );
        assert_eq!(
            paths["/api/v1/sessions"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"][0],
            "user_id"
        );
        // Every $ref points at something defined.
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/").skip(1).filter_map(|t| t.split('"').next()) {
            let target = r.split('/').fold(&doc, |v, k| &v[k]);
            assert!(!target.is_null(), "dangling $ref {r}");
        }
    }
}
