//! OpenAPI documents: generation from command schemas and the `/swagger` page.
//!
//! A service that has a document exports the [`OpenApiDocument`] facet; the swagger service
//! (`pip-services:swagger-service:http:*:1.0`) collects them all and serves `GET /swagger`, a
//! page that renders each document with Swagger UI and links the raw YAML. Swagger UI's files are
//! embedded in the binary and served under `/swagger/`, never loaded from elsewhere.

use super::commandable::SwaggerSettings;
use super::endpoint::HttpEndpoint;
use super::join_route;
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

/// Where a service's OpenAPI document is served and under which title, from the service's base
/// route and its `swagger.*` settings: the [`OpenApiDocument`] facet the service provides, and
/// the registration of the YAML route.
#[derive(Debug, Clone)]
pub struct ServedDocument {
    url: String,
    name: String,
    enabled: bool,
}

impl ServedDocument {
    /// The document of a service under `base_route`, titled `swagger.name` or `default_name`.
    pub fn new(base_route: &str, swagger: &SwaggerSettings, default_name: &str) -> Self {
        Self {
            url: join_route(base_route, &swagger.route),
            name: swagger.name.clone().unwrap_or_else(|| default_name.to_string()),
            enabled: swagger.serves(),
        }
    }

    /// The document's title.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the document is served, builds it with `document` and registers its YAML at its route.
    pub fn register(&self, endpoint: &HttpEndpoint, document: impl FnOnce() -> Value) {
        if !self.enabled {
            return;
        }
        let body = Bytes::from(openapi_yaml(&document(), &self.name));
        endpoint.register_route(
            Method::GET,
            &self.url,
            Arc::new(move |_request: HttpRequest| {
                let body = body.clone();
                async move { HttpResponse::with_body(StatusCode::OK, "application/x-yaml", body) }
            }),
        );
    }
}

impl OpenApiDocument for ServedDocument {
    fn document_url(&self) -> String {
        self.url.clone()
    }
    fn document_name(&self) -> String {
        self.name.clone()
    }
    fn enabled(&self) -> bool {
        self.enabled
    }
}

/// A service whose OpenAPI document is a [`ServedDocument`]; such a service is an
/// [`OpenApiDocument`].
pub trait ServesDocument: Send + Sync {
    /// Where the document is served and its title.
    fn served_document(&self) -> &ServedDocument;
}

impl<S: ServesDocument> OpenApiDocument for S {
    fn document_url(&self) -> String {
        self.served_document().document_url()
    }
    fn document_name(&self) -> String {
        self.served_document().document_name()
    }
    fn enabled(&self) -> bool {
        self.served_document().enabled()
    }
}

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

/// The responses of a command: 200 with its documented result (any JSON when undocumented, none
/// when it never answers 200), 204 no value, 4xx/5xx an ErrorDescription.
fn command_responses(result: Option<&Option<Value>>) -> Value {
    let error = json!({"$ref": "#/components/responses/Error"});
    let mut responses = Map::new();
    match result {
        Some(Some(schema)) => {
            responses.insert(
                "200".into(),
                json!({"description": "The result", "content": {"application/json": {"schema": schema}}}),
            );
        }
        Some(None) => {}
        None => {
            responses.insert(
                "200".into(),
                json!({"description": "The result (any JSON)", "content": {"application/json": {"schema": {}}}}),
            );
        }
    }
    responses.insert("204".into(), json!({"description": "No result"}));
    for status in ["400", "401", "404", "409", "413", "415", "500", "503"] {
        responses.insert(status.into(), error.clone());
    }
    Value::Object(responses)
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
                "responses": command_responses(commands.result(c.name()))
            }}),
        );
    }
    let mut components = error_components();
    if let Some(Value::Object(named)) = components.get_mut("schemas") {
        named.extend(commands.schemas().map(|(name, schema)| (name.to_string(), schema.clone())));
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": title, "description": description.unwrap_or(title), "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": components
    })
}

/// An OpenAPI document as YAML. A document that cannot be written (never expected: it is built
/// from JSON values) is served empty, and the error is logged with the document's title.
pub fn openapi_yaml(doc: &Value, title: &str) -> String {
    serde_yaml::to_string(doc).unwrap_or_else(|e| {
        tracing::error!(document = title, error = %e, "Cannot write the OpenAPI document as YAML; serving it empty.");
        String::new()
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

/// The Swagger UI files the page loads, vendored from the npm package `swagger-ui-dist` (see
/// `assets/swagger-ui/README.md`) and served by the service itself, so the page needs no network.
const ASSETS: [(&str, &str, &[u8]); 2] = [
    ("swagger-ui.css", "text/css; charset=utf-8", include_bytes!("../../../assets/swagger-ui/swagger-ui.css")),
    (
        "swagger-ui-bundle.js",
        "application/javascript; charset=utf-8",
        include_bytes!("../../../assets/swagger-ui/swagger-ui-bundle.js"),
    ),
];

/// The page: Swagger UI over every document (its assets under `<route>/`), with plain links to
/// the documents when scripts do not run. `validatorUrl: null` keeps Swagger UI from sending the
/// documents to its public validator.
fn page(route: &str, docs: &[(String, String)]) -> String {
    let urls: Vec<Value> = docs.iter().map(|(name, url)| json!({"name": name, "url": url})).collect();
    let links: String = docs.iter().map(|(name, url)| format!("<li><a href=\"{url}\">{name}</a></li>")).collect();
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>API documentation</title>\
<link rel=\"stylesheet\" href=\"{route}/swagger-ui.css\"></head><body>\
<noscript><ul>{links}</ul></noscript><ul id=\"links\">{links}</ul><div id=\"swagger-ui\"></div>\
<script src=\"{route}/swagger-ui-bundle.js\"></script>\
<script>if (window.SwaggerUIBundle) {{ document.getElementById('links').style.display='none'; \
SwaggerUIBundle({{urls: {urls}, dom_id: '#swagger-ui', validatorUrl: null}}); }}</script></body></html>",
        urls = Value::Array(urls)
    )
}

/// A route answering `GET` with fixed bytes.
fn register_static(endpoint: &HttpEndpoint, route: &str, content_type: &'static str, body: Bytes) {
    endpoint.register_route(
        Method::GET,
        route,
        Arc::new(move |_r: HttpRequest| {
            let body = body.clone();
            async move { HttpResponse::with_body(StatusCode::OK, content_type, body) }
        }),
    );
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
        register_static(&endpoint, &self.route, "text/html; charset=utf-8", Bytes::from(page(&self.route, &docs)));
        for (name, content_type, bytes) in ASSETS {
            register_static(&endpoint, &format!("{}/{name}", self.route), content_type, Bytes::from_static(bytes));
        }
        Ok(())
    }
}
