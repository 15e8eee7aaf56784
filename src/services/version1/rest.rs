//! `SessionsRestServiceV1` (`service-sessions:service:rest:*:1.0`): a plain REST resource API over
//! the same `SessionsController` as the commandable API, for clients of the REST seed systems.
//!
//! Routes under `base_route` (default `api/v1/sessions`):
//!
//! | route | operation |
//! |---|---|
//! | `POST /` | open (201, `Location`, `ETag`) — body as `open_session`, plus `ttl` |
//! | `GET /?user_id=&active=&from_time=&to_time=&skip=&take=&total=` | a DataPage |
//! | `GET /{id}` | the session (200 + `ETag`, or 304 for a matching `If-None-Match`) |
//! | `PUT /{id}/data`, `PATCH /{id}/data`, `PUT /{id}/user` | replace data, RFC 7396 merge into data, replace user; the body is the value itself |
//! | `POST /{id}/close`, `POST /{id}/touch` | close (idempotent), refresh expiry |
//! | `GET /{id}/validate` | `{is_valid, expire_time, ttl}` without touching |
//! | `DELETE /{id}` | 200 with the deleted session as it was |
//! | `GET /swagger` | the OpenAPI document (YAML) |
//!
//! Concurrency: the `ETag` of a session is its version, `"<version>"`. `If-Match` on a write is
//! the controller's expected version, checked in the same atomic store step as the write; a stale
//! one is 412 `PRECONDITION_FAILED` with `details.version` the current version. `If-Match` must be
//! `*` (no check) or exactly one strong tag this service issued; weak tags (`W/"3"`), lists and
//! anything else are 400 (a weak tag can never pass the strong comparison RFC 9110 asks for, and a
//! 412 would send a client into a retry loop it cannot leave). `If-None-Match` on `GET /{id}`
//! (weak comparison, `*`, lists) gives 304 with the `ETag` and no body.
//!
//! Unlike the commandable API (204), an unknown id is 404 `SESSION_NOT_FOUND` on every by-id
//! route; writes to a closed session are 409 `SESSION_CLOSED`. Bodies follow the commandable rules
//! (415 for a content type that cannot carry JSON, 400 for bad JSON, 413 from the endpoint).

use super::rest_openapi::rest_openapi;
use crate::data::version1::errors::{SESSION_NOT_FOUND, SESSION_VERSION_CONFLICT};
use crate::data::version1::{open_session_schema, OpenSessionRequest, SessionV1, SessionsFilter};
use crate::logic::SessionsController;
use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::data::{boolean_word, PagingParams};
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::http::commandable::{
    check_json_content_type, parse_json_value, parse_parameters, CommandableDependencies, SwaggerSettings,
};
use crate::toolkit::http::endpoint::HttpEndpoint;
use crate::toolkit::http::swagger::{ServedDocument, ServesDocument};
use crate::toolkit::http::{error_response, HttpRequest, HttpResponse};
use crate::toolkit::json::{JsonText, WriteJson};
use crate::toolkit::references::References;
use crate::toolkit::route::join_route;
use crate::toolkit::schema::ObjectSchema;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::future::Future;
use std::sync::Arc;
use tracing::Instrument;
use warp::http::{Method, StatusCode};

/// Default base route of the REST API.
pub const REST_BASE_ROUTE: &str = "api/v1/sessions";

/// The filter keys read from the list query string.
const FILTER_KEYS: [&str; 5] = ["id", "user_id", "active", "from_time", "to_time"];

/// Settings of the REST service.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RestSettings {
    /// Route prefix, default `api/v1/sessions`.
    pub base_route: String,
    /// OpenAPI document switches (`swagger.enable`, `swagger.auto`, `swagger.route`, `swagger.name`).
    pub swagger: SwaggerSettings,
    /// `dependencies.controller` (default `service-sessions:controller:*:*:1.0`) and
    /// `dependencies.endpoint` (default `*:endpoint:http:*:1.0`).
    pub dependencies: CommandableDependencies,
}

/// The sessions REST service.
pub struct SessionsRestServiceV1 {
    settings: RestSettings,
    controller_locator: Descriptor,
    endpoint_locator: Descriptor,
    document: ServedDocument,
}

impl std::fmt::Debug for SessionsRestServiceV1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionsRestServiceV1").field("base_route", &self.base_route()).finish()
    }
}

impl SessionsRestServiceV1 {
    /// Builds the service from its entry.
    ///
    /// # Errors
    /// `BAD_CONFIG` / `BAD_DESCRIPTOR` for invalid settings.
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let mut settings: RestSettings = config.section()?;
        if settings.base_route.trim_matches('/').is_empty() {
            settings.base_route = REST_BASE_ROUTE.to_string();
        }
        let controller_locator = Descriptor::configured_or(settings.dependencies.controller.as_deref(), || {
            Descriptor::new("service-sessions", "controller", "*", "*", "1.0")
        })?;
        let endpoint_locator = Descriptor::configured_or(settings.dependencies.endpoint.as_deref(), || {
            Descriptor::new("*", "endpoint", "http", "*", "1.0")
        })?;
        let document =
            ServedDocument::new(settings.base_route.trim_matches('/'), &settings.swagger, "Sessions REST API V1");
        Ok(Self { settings, controller_locator, endpoint_locator, document })
    }

    /// The base route (without slashes at the ends).
    pub fn base_route(&self) -> &str {
        self.settings.base_route.trim_matches('/')
    }
}

/// What every handler shares: the controller, the base route and the create schema.
struct Rest {
    controller: Arc<SessionsController>,
    base_route: String,
    open_schema: ObjectSchema,
}

type Reply = Result<HttpResponse, ApplicationError>;

/// Registers one route whose handler turns any error into its ErrorDescription response.
fn route<F, Fut>(endpoint: &HttpEndpoint, method: Method, path: &str, rest: &Arc<Rest>, handler: F)
where
    F: Fn(Arc<Rest>, HttpRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let rest = rest.clone();
    let operation = format!("{method} {path}");
    endpoint.register_route(
        method,
        path,
        Arc::new(move |request: HttpRequest| {
            let cid = request.correlation_id.clone();
            let span = tracing::info_span!(
                "rest",
                operation = %operation,
                correlation_id = cid.as_deref().unwrap_or("")
            );
            let reply = handler(rest.clone(), request);
            async move { reply.await.unwrap_or_else(|e| error_response(&e.with_correlation_id(cid.as_deref()))) }
                .instrument(span)
        }),
    );
}

/// The `ETag` of a session version.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

fn json_reply<T: serde::Serialize>(status: StatusCode, value: &T) -> Reply {
    let body = serde_json::to_vec(value)
        .map_err(|e| ApplicationError::internal("SERIALIZATION_FAILED", "Cannot encode the result").with_cause(e))?;
    Ok(HttpResponse::with_body(status, "application/json", Bytes::from(body)))
}

/// A reply with a result that writes its own JSON (a session, a page of sessions).
fn written_reply<T: WriteJson>(status: StatusCode, value: &T) -> Reply {
    Ok(HttpResponse::with_body(status, "application/json", Bytes::from(JsonText::write(value).into_bytes())))
}

fn session_reply(status: StatusCode, s: &SessionV1) -> Reply {
    Ok(written_reply(status, s)?.with_header("etag", &etag(s.version)))
}

fn not_found(id: &str) -> ApplicationError {
    ApplicationError::not_found(SESSION_NOT_FOUND, "Session was not found").with_details("session_id", id)
}

fn found(id: &str, session: Option<SessionV1>) -> Result<SessionV1, ApplicationError> {
    session.ok_or_else(|| not_found(id))
}

/// The `{id}` of the route: any text (an id no session can have is unknown to the controller,
/// so it is a 404 like any unknown id).
fn session_id(request: &HttpRequest) -> String {
    request.params.get("id").cloned().unwrap_or_default()
}

fn bad_if_match() -> ApplicationError {
    ApplicationError::bad_request(
        "INVALID_DATA",
        "Validation failed: If-Match must be * or one strong entity tag \"<version>\" as sent in ETag",
    )
    .with_details("header", "If-Match")
}

/// The expected version from `If-Match`: `None` when absent or `*`.
///
/// # Errors
/// 400 `INVALID_DATA` for anything but `*` or one strong tag `"<n>"` with `n` a version this
/// service issues (a positive integer without leading zeros).
pub fn if_match(request: &HttpRequest) -> Result<Option<i64>, ApplicationError> {
    let mut values = request.headers.get_all("if-match").iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(bad_if_match());
    }
    let text = value.to_str().map_err(|_| bad_if_match())?.trim();
    if text == "*" {
        return Ok(None);
    }
    let digits = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).ok_or_else(bad_if_match)?;
    let canonical = !digits.is_empty() && !digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit());
    if !canonical {
        return Err(bad_if_match());
    }
    digits.parse::<i64>().map(Some).map_err(|_| bad_if_match())
}

/// Whether `If-None-Match` matches `version` (weak comparison; `*` matches any session).
pub fn none_match(request: &HttpRequest, version: i64) -> bool {
    let tag = etag(version);
    request
        .headers
        .get_all("if-none-match")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
}

/// A stale `If-Match` is 412 `PRECONDITION_FAILED` (with the controller's details: `session_id`,
/// the current `version`); without `If-Match` a version conflict stays 409.
fn precondition(guarded: bool) -> impl Fn(ApplicationError) -> ApplicationError {
    move |e| {
        if guarded && e.code == SESSION_VERSION_CONFLICT {
            let mut p = ApplicationError::conflict(
                "PRECONDITION_FAILED",
                "Session was changed by another request: If-Match does not match its version",
            )
            .with_status(412);
            p.details = e.details;
            p
        } else {
            e
        }
    }
}

/// The whole body as one JSON value (the new data, user or merge patch).
fn json_body(request: &HttpRequest) -> Result<Value, ApplicationError> {
    check_json_content_type(request)?;
    parse_json_value(&request.body)?.ok_or_else(|| {
        ApplicationError::bad_request("INVALID_DATA", "Validation failed: the request body must be a JSON value")
    })
}

/// Builds `filter` and `paging` objects from the query and parses them with the same code as
/// `get_sessions`: a value that is not a non-negative integer (`skip`, `take`) or a boolean word
/// (`total`) is passed through as text, which that parser refuses with 400.
fn list_query(query: &[(String, String)]) -> Result<(SessionsFilter, PagingParams), ApplicationError> {
    let first = |key: &str| query.iter().find(|(k, v)| k == key && !v.is_empty()).map(|(_, v)| v.as_str());
    let mut filter = Map::new();
    // An empty filter value is a value (`?user_id=` lists the sessions of user ""), never a
    // dropped filter: filters fail closed (contract §9).
    for key in FILTER_KEYS {
        if let Some((_, v)) = query.iter().find(|(k, _)| k == key) {
            filter.insert(key.to_string(), Value::String(v.to_string()));
        }
    }
    let mut paging = Map::new();
    for key in ["skip", "take"] {
        if let Some(v) = first(key) {
            paging.insert(key.to_string(), v.parse::<u64>().map_or_else(|_| Value::String(v.to_string()), Value::from));
        }
    }
    if let Some(v) = first("total") {
        paging.insert("total".to_string(), boolean_word(v).map_or_else(|| Value::String(v.to_string()), Value::Bool));
    }
    Ok((
        SessionsFilter::from_value(Some(&Value::Object(filter)))?,
        PagingParams::from_value(Some(&Value::Object(paging)))?,
    ))
}

impl Rest {
    async fn create(self: Arc<Self>, request: HttpRequest) -> Reply {
        let cid = request.correlation_id.as_deref();
        let args = parse_parameters(&request)?;
        args.validate(&self.open_schema, cid)?;
        let s = self.controller.open_session(cid, OpenSessionRequest::from_args(args)?).await?;
        Ok(session_reply(StatusCode::CREATED, &s)?.with_header("location", &join_route(&self.base_route, &s.id)))
    }

    async fn list(self: Arc<Self>, request: HttpRequest) -> Reply {
        let (filter, paging) = list_query(&request.query)?;
        let page = self.controller.get_sessions(request.correlation_id.as_deref(), &filter, &paging).await?;
        json_reply(StatusCode::OK, &page)
    }

    async fn get(self: Arc<Self>, request: HttpRequest) -> Reply {
        let id = session_id(&request);
        let s = found(&id, self.controller.get_session_by_id(request.correlation_id.as_deref(), &id).await?)?;
        if none_match(&request, s.version) {
            return Ok(HttpResponse::empty(StatusCode::NOT_MODIFIED).with_header("etag", &etag(s.version)));
        }
        session_reply(StatusCode::OK, &s)
    }

    async fn put_data(self: Arc<Self>, request: HttpRequest) -> Reply {
        let (id, version) = (session_id(&request), if_match(&request)?);
        let data = json_body(&request)?;
        let cid = request.correlation_id.as_deref();
        let s = self
            .controller
            .store_session_data(cid, &id, data, version)
            .await
            .map_err(precondition(version.is_some()))?;
        session_reply(StatusCode::OK, &found(&id, s)?)
    }

    async fn patch_data(self: Arc<Self>, request: HttpRequest) -> Reply {
        let (id, version) = (session_id(&request), if_match(&request)?);
        let patch = json_body(&request)?;
        let cid = request.correlation_id.as_deref();
        let s = self
            .controller
            .merge_session_data(cid, &id, &patch, version)
            .await
            .map_err(precondition(version.is_some()))?;
        session_reply(StatusCode::OK, &found(&id, s)?)
    }

    async fn put_user(self: Arc<Self>, request: HttpRequest) -> Reply {
        let (id, version) = (session_id(&request), if_match(&request)?);
        let user = json_body(&request)?;
        let cid = request.correlation_id.as_deref();
        let s = self
            .controller
            .update_session_user(cid, &id, user, version)
            .await
            .map_err(precondition(version.is_some()))?;
        session_reply(StatusCode::OK, &found(&id, s)?)
    }

    async fn close(self: Arc<Self>, request: HttpRequest) -> Reply {
        let (id, version) = (session_id(&request), if_match(&request)?);
        let cid = request.correlation_id.as_deref();
        let s = self.controller.close_session(cid, &id, version).await.map_err(precondition(version.is_some()))?;
        session_reply(StatusCode::OK, &found(&id, s)?)
    }

    async fn touch(self: Arc<Self>, request: HttpRequest) -> Reply {
        let (id, version) = (session_id(&request), if_match(&request)?);
        let cid = request.correlation_id.as_deref();
        let s = self.controller.touch_session(cid, &id, version).await.map_err(precondition(version.is_some()))?;
        session_reply(StatusCode::OK, &found(&id, s)?)
    }

    async fn validate(self: Arc<Self>, request: HttpRequest) -> Reply {
        let id = session_id(&request);
        let cid = request.correlation_id.as_deref();
        let validity = self.controller.validate_session(cid, &id).await?;
        // An invalid answer may be an unknown id: tell it apart (expired sessions get closed by
        // this read, as by any read; unknown ids stay unknown).
        if !validity.is_valid && self.controller.get_session_by_id(cid, &id).await?.is_none() {
            return Err(not_found(&id));
        }
        json_reply(StatusCode::OK, &validity)
    }

    async fn delete(self: Arc<Self>, request: HttpRequest) -> Reply {
        let (id, version) = (session_id(&request), if_match(&request)?);
        let cid = request.correlation_id.as_deref();
        let s =
            self.controller.delete_session_by_id(cid, &id, version).await.map_err(precondition(version.is_some()))?;
        session_reply(StatusCode::OK, &found(&id, s)?)
    }
}

impl Component for SessionsRestServiceV1 {
    fn set_references(&self, references: &References) -> Result<(), ApplicationError> {
        let controller = references.get_one_required::<SessionsController>(&self.controller_locator)?;
        let endpoint = references.get_one_required::<HttpEndpoint>(&self.endpoint_locator)?;
        let base = self.base_route().to_string();
        let at = |sub: &str| join_route(&base, sub);
        // The document route first: it would otherwise be taken for `GET /{id}`.
        self.document.register(&endpoint, || {
            rest_openapi(self.document.name(), self.settings.swagger.description.as_deref(), &base)
        });
        let rest = Arc::new(Rest { controller, base_route: base.clone(), open_schema: open_session_schema() });
        route(&endpoint, Method::POST, &at(""), &rest, Rest::create);
        route(&endpoint, Method::GET, &at(""), &rest, Rest::list);
        route(&endpoint, Method::GET, &at("{id}"), &rest, Rest::get);
        route(&endpoint, Method::DELETE, &at("{id}"), &rest, Rest::delete);
        route(&endpoint, Method::PUT, &at("{id}/data"), &rest, Rest::put_data);
        route(&endpoint, Method::PATCH, &at("{id}/data"), &rest, Rest::patch_data);
        route(&endpoint, Method::PUT, &at("{id}/user"), &rest, Rest::put_user);
        route(&endpoint, Method::POST, &at("{id}/close"), &rest, Rest::close);
        route(&endpoint, Method::POST, &at("{id}/touch"), &rest, Rest::touch);
        route(&endpoint, Method::GET, &at("{id}/validate"), &rest, Rest::validate);
        Ok(())
    }
}

impl ServesDocument for SessionsRestServiceV1 {
    fn served_document(&self) -> &ServedDocument {
        &self.document
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use warp::http::{HeaderMap, HeaderValue};

    fn request(headers: &[(&'static str, &'static str)]) -> HttpRequest {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(*k, HeaderValue::from_static(v));
        }
        HttpRequest {
            method: Method::GET,
            path: "/".into(),
            params: HashMap::new(),
            query: Vec::new(),
            headers: h,
            body: Bytes::new(),
            correlation_id: None,
        }
    }

    #[test]
    fn if_match_takes_star_or_one_strong_issued_tag() {
        assert_eq!(if_match(&request(&[])).unwrap(), None);
        assert_eq!(if_match(&request(&[("if-match", "*")])).unwrap(), None);
        assert_eq!(if_match(&request(&[("if-match", " \"12\" ")])).unwrap(), Some(12));
        for bad in ["W/\"1\"", "1", "\"\"", "\"01\"", "\"1\", \"2\"", "\"-1\"", "\"a\"", "\"99999999999999999999\""] {
            let e = if_match(&request(&[("if-match", bad)])).unwrap_err();
            assert_eq!((e.status, e.details["header"].as_str()), (400, Some("If-Match")), "{bad}");
        }
        assert!(if_match(&request(&[("if-match", "\"1\""), ("if-match", "\"2\"")])).is_err());
    }

    #[test]
    fn if_none_match_uses_weak_comparison() {
        assert!(none_match(&request(&[("if-none-match", "\"3\"")]), 3));
        assert!(none_match(&request(&[("if-none-match", "W/\"3\"")]), 3));
        assert!(none_match(&request(&[("if-none-match", "\"1\", \"3\"")]), 3));
        assert!(none_match(&request(&[("if-none-match", "*")]), 3));
        assert!(!none_match(&request(&[("if-none-match", "\"2\"")]), 3));
        assert!(!none_match(&request(&[]), 3));
    }

    #[test]
    fn list_query_reuses_the_get_sessions_parsers() {
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
        };
        let (f, p) =
            list_query(&q(&[("user_id", "u1"), ("active", "yes"), ("skip", "2"), ("take", "5"), ("total", "1")]))
                .unwrap();
        assert_eq!((f.user_id.as_deref(), f.active), (Some("u1"), Some(true)));
        assert_eq!(p, PagingParams { skip: Some(2), take: Some(5), total: true });
        assert_eq!(list_query(&q(&[("skip", ""), ("correlation_id", "c")])).unwrap().1, PagingParams::default());
        for bad in [("skip", "-1"), ("take", "x"), ("take", "1.5"), ("total", "maybe"), ("from_time", "soon")] {
            assert_eq!(list_query(&q(&[bad])).unwrap_err().status, 400, "{bad:?}");
        }
    }
}
