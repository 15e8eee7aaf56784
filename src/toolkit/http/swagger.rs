//! OpenAPI documents: generation from command schemas and the `/swagger` page.
//!
//! A service that has a document exports the [`OpenApiDocument`] facet; the swagger service
//! (`pip-services:swagger-service:http:*:1.0`) collects them all and serves `GET /swagger`, a
//! page that renders each document with Swagger UI and links the raw YAML.

use super::endpoint::HttpEndpoint;
use super::{HttpRequest, HttpResponse};
use crate::toolkit::commands::CommandSet;
use crate::toolkit::component::Component;
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::references::References;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use warp::http::{Method, StatusCode};

/// A component that serves an OpenAPI document.
pub trait OpenApiDocument: Send + Sync {
    /// The route of the YAML document, e.g. `/v1/sessions/swagger`.
    fn document_url(&self) -> String;
    /// The document's title.
    fn document_name(&self) -> String;
    /// Whether the document is served.
    fn enabled(&self) -> bool;
}

/// The reusable ErrorDescription schema and the error responses every operation may give.
pub fn error_components() -> Value {
    json!({
        "schemas": {
            "ErrorDescription": {
                "type": "object",
                "required": ["category", "status", "code", "message"],
                "properties": {
                    "type": {"type": "string", "nullable": true},
                    "category": {"type": "string", "enum": ["Unknown", "Internal", "Misconfiguration", "NoResponse",
                        "FailedInvocation", "FileError", "BadRequest", "Unauthorized", "Conflict", "NotFound",
                        "InvalidState", "Unsupported"]},
                    "status": {"type": "integer"},
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "object", "nullable": true, "additionalProperties": {}},
                    "correlation_id": {"type": "string", "nullable": true},
                    "cause": {"type": "string", "nullable": true}
                }
            }
        },
        "responses": {
            "Error": {
                "description": "An error, as an ErrorDescription",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorDescription"}}}
            }
        }
    })
}

/// The responses shared by every command: 200 value, 204 none, 4xx/5xx ErrorDescription.
fn command_responses() -> Value {
    let error = json!({"$ref": "#/components/responses/Error"});
    json!({
        "200": {"description": "The result", "content": {"application/json": {"schema": {}}}},
        "204": {"description": "No result (unknown id)"},
        "400": error, "401": error, "404": error, "409": error, "413": error, "500": error, "503": error
    })
}

/// Generates the OpenAPI 3.0 document of a command set served under `base_route`.
pub fn commands_openapi(title: &str, description: Option<&str>, base_route: &str, commands: &CommandSet) -> Value {
    let mut paths = Map::new();
    for c in commands.commands() {
        paths.insert(
            super::join_route(base_route, c.name()),
            json!({"post": {
                "tags": [base_route],
                "operationId": c.name(),
                "summary": c.description(),
                "parameters": [{"name": "correlation_id", "in": "query", "required": false, "schema": {"type": "string"}}],
                "requestBody": {"content": {"application/json": {"schema": c.schema().to_openapi()}}},
                "responses": command_responses()
            }}),
        );
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": title, "description": description.unwrap_or(title), "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": error_components()
    })
}

/// The swagger page service.
#[derive(Debug, Default)]
pub struct SwaggerService {
    route: String,
}

impl SwaggerService {
    /// A swagger service at `/swagger`.
    pub fn new() -> Self {
        Self { route: "/swagger".to_string() }
    }
}

fn page(docs: &[(String, String)]) -> String {
    let urls: Vec<Value> = docs.iter().map(|(name, url)| json!({"name": name, "url": url})).collect();
    let links: String = docs.iter().map(|(name, url)| format!("<li><a href=\"{url}\">{name}</a></li>")).collect();
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>API documentation</title>\
<link rel=\"stylesheet\" href=\"https://unpkg.com/swagger-ui-dist@5/swagger-ui.css\"></head><body>\
<noscript><ul>{links}</ul></noscript><ul id=\"links\">{links}</ul><div id=\"swagger-ui\"></div>\
<script src=\"https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js\"></script>\
<script>if (window.SwaggerUIBundle) {{ document.getElementById('links').style.display='none'; \
SwaggerUIBundle({{urls: {urls}, dom_id: '#swagger-ui'}}); }}</script></body></html>",
        urls = Value::Array(urls)
    )
}

impl Component for SwaggerService {
    fn set_references(&self, references: &References) -> Result<(), ApplicationError> {
        let endpoint =
            references.get_one_required::<HttpEndpoint>(&Descriptor::new("*", "endpoint", "http", "*", "1.0"))?;
        let any = Descriptor::new("*", "*", "*", "*", "*");
        let mut docs: Vec<(String, String)> = references
            .get_optional::<dyn OpenApiDocument>(&any)
            .iter()
            .filter(|d| d.enabled())
            .map(|d| (d.document_name(), d.document_url()))
            .collect();
        docs.reverse();
        let body = Bytes::from(page(&docs));
        endpoint.register_route(
            Method::GET,
            &self.route,
            Arc::new(move |_r: HttpRequest| {
                let body = body.clone();
                async move { HttpResponse::with_body(StatusCode::OK, "text/html; charset=utf-8", body) }
            }),
        );
        Ok(())
    }
}
