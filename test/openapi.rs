//! The OpenAPI documents generate usable clients (every answer typed, every reference resolved),
//! and the swagger page works offline (every asset it loads is served by the service).

use crate::helpers::{sessions_yaml, spawn_app, TestApp};
use openapiv3::{OpenAPI, ReferenceOr, Response, Schema};
use serde_json::Value;

async fn app() -> TestApp {
    spawn_app(&format!("{}- descriptor: \"service-sessions:service:rest:default:1.0\"\n", sessions_yaml(""))).await
}

async fn document(app: &TestApp, path: &str) -> (OpenAPI, Value) {
    let doc = app.request(reqwest::Method::GET, path).await;
    assert_eq!(doc.status, 200, "{path}");
    let spec: OpenAPI = serde_yaml::from_str(&doc.body).unwrap_or_else(|e| panic!("{path}: {e}"));
    (spec, serde_yaml::from_str(&doc.body).unwrap())
}

/// The name of a `#/components/schemas/<name>` reference.
fn schema_name(schema: &ReferenceOr<Schema>) -> Option<&str> {
    match schema {
        ReferenceOr::Reference { reference } => reference.strip_prefix("#/components/schemas/"),
        ReferenceOr::Item(_) => None,
    }
}

/// Every operation's responses: `(operation id, status, named result schema per media type)`;
/// asserts that every response with content has a schema that refers to a defined component.
fn typed_responses(spec: &OpenAPI) -> Vec<(String, String, Vec<String>)> {
    let components = spec.components.as_ref().expect("components");
    let mut out = Vec::new();
    for (path, method, op) in spec.operations() {
        let id = op.operation_id.clone().unwrap_or_else(|| format!("{method} {path}"));
        assert!(!op.responses.responses.is_empty(), "{id} has responses");
        for (status, response) in &op.responses.responses {
            let response: &Response = match response {
                ReferenceOr::Item(r) => r,
                ReferenceOr::Reference { reference } => {
                    let name = reference.strip_prefix("#/components/responses/").expect("a response reference");
                    match components.responses.get(name) {
                        Some(ReferenceOr::Item(r)) => r,
                        _ => panic!("{id} {status}: dangling {reference}"),
                    }
                }
            };
            let mut names = Vec::new();
            for (media, content) in &response.content {
                let schema = content.schema.as_ref().unwrap_or_else(|| panic!("{id} {status} {media}: no schema"));
                let name = schema_name(schema).unwrap_or_else(|| panic!("{id} {status} {media}: an untyped schema"));
                assert!(components.schemas.contains_key(name), "{id} {status}: {name} is not defined");
                names.push(name.to_string());
            }
            out.push((id.clone(), status.to_string(), names));
        }
    }
    out
}

/// Every `$ref` in the document points at something defined.
fn assert_refs_resolve(doc: &Value) {
    fn walk(v: &Value, doc: &Value) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    let path = r.strip_prefix("#/").unwrap_or_else(|| panic!("external $ref {r}"));
                    assert!(!path.split('/').fold(doc, |v, k| &v[k]).is_null(), "dangling $ref {r}");
                }
                m.values().for_each(|x| walk(x, doc));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, doc)),
            _ => {}
        }
    }
    walk(doc, doc);
}

fn result_of<'a>(responses: &'a [(String, String, Vec<String>)], id: &str, status: &str) -> Option<&'a [String]> {
    responses.iter().find(|(i, s, _)| i == id && s == status).map(|(_, _, n)| n.as_slice())
}

#[tokio::test]
async fn both_documents_type_every_answer() {
    let app = app().await;
    for path in ["/v1/sessions/swagger", "/api/v1/sessions/swagger"] {
        let (spec, raw) = document(&app, path).await;
        assert_refs_resolve(&raw);
        let responses = typed_responses(&spec);
        for (id, status, names) in &responses {
            match status.as_bytes()[0] {
                b'2' if status != "204" => assert!(!names.is_empty(), "{path}: {id} {status} has a typed body"),
                b'4' | b'5' => assert_eq!(names, &["ErrorDescription"], "{path}: {id} {status}"),
                _ => {}
            }
        }
        let typed = |id: &str, status: &str| result_of(&responses, id, status).map(<[String]>::to_vec);
        let one = |name: &str| Some(vec![name.to_string()]);
        if path.starts_with("/v1") {
            assert_eq!(typed("get_sessions", "200"), one("DataPage"));
            assert_eq!(typed("get_session_by_id", "200"), one("SessionV1"));
            assert_eq!(typed("open_session", "200"), one("SessionV1"));
            assert_eq!(typed("validate_session", "200"), one("SessionValidity"));
            assert_eq!(typed("close_user_sessions", "200"), one("Count"));
            assert_eq!(typed("purge_sessions", "200"), one("Count"));
            assert_eq!(typed("close_expired_sessions", "200"), None, "it never answers 200");
            assert_eq!(typed("close_expired_sessions", "204"), Some(vec![]));
        } else {
            assert_eq!(typed("get_sessions", "200"), one("DataPage"));
            assert_eq!(typed("open_session", "201"), one("SessionV1"));
            assert_eq!(typed("get_session", "200"), one("SessionV1"));
            assert_eq!(typed("validate_session", "200"), one("SessionValidity"));
        }
        let schemas = &spec.components.as_ref().unwrap().schemas;
        for name in ["SessionV1", "DataPage", "SessionValidity", "ErrorDescription"] {
            assert!(schemas.contains_key(name), "{path}: {name}");
        }
    }
    app.stop().await;
}

/// The attribute values `href="…"` and `src="…"` of a page.
fn asset_urls(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        let mut rest = page;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap();
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

#[tokio::test]
async fn the_swagger_page_loads_only_what_the_service_serves() {
    let app = app().await;
    let page = app.request(reqwest::Method::GET, "/swagger").await;
    assert_eq!((page.status, page.header("content-type")), (200, Some("text/html; charset=utf-8")));
    let urls = asset_urls(&page.body);
    let css = urls.iter().filter(|u| u.ends_with(".css")).count();
    let js = urls.iter().filter(|u| u.ends_with(".js")).count();
    assert_eq!((css, js), (1, 1), "{urls:?}");
    for url in &urls {
        assert!(url.starts_with('/') && !url.starts_with("//"), "{url} is not served by the service");
        let a = app.request(reqwest::Method::GET, url).await;
        assert_eq!(a.status, 200, "{url}");
        let want = if url.ends_with(".css") {
            "text/css; charset=utf-8"
        } else if url.ends_with(".js") {
            "application/javascript; charset=utf-8"
        } else {
            "application/x-yaml"
        };
        assert_eq!(a.header("content-type"), Some(want), "{url}");
        assert!(a.body.len() > if url.ends_with(".js") { 100_000 } else { 100 }, "{url} is served whole");
    }
    assert!(
        urls.contains(&"/v1/sessions/swagger".to_string()) && urls.contains(&"/api/v1/sessions/swagger".to_string())
    );
    assert!(!page.body.contains("http://") && !page.body.contains("https://"), "{}", page.body);
    app.stop().await;
}
