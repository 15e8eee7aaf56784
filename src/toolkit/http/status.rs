//! `GET /status`: identity, uptime, the registered components and their health (readiness).
//!
//! The response keeps Pip's fields (`id`, `name`, `description`, `start_time`, `current_time`,
//! `uptime`, `properties`, `components`) and adds `ready` and `health` (per component); it always
//! answers 200. The host name (`id`) and the endpoint's bind address appear only when the request
//! carries a valid API key; otherwise `id` is null and the address reads `(hidden)`.
//! `GET /ready` is the readiness probe: 200 when every component is ready, else 503.

use super::endpoint::HttpEndpoint;
use super::heartbeat::RouteSettings;
use super::{HttpRequest, HttpResponse};
use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::info::ContextInfo;
use crate::toolkit::references::{References, Registration};
use crate::toolkit::time::format_time;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use warp::http::{Method, StatusCode};

/// The status service.
#[derive(Debug)]
pub struct StatusService {
    route: String,
    ready_route: String,
}

impl StatusService {
    /// Builds the service from its entry.
    ///
    /// # Errors
    /// `BAD_CONFIG` for invalid settings.
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let s: RouteSettings = config.section()?;
        Ok(Self { route: s.full_route("status"), ready_route: super::join_route(&s.base_route, "ready") })
    }
}

async fn health(components: &[Arc<Registration>]) -> (bool, Map<String, Value>) {
    let mut health = Map::new();
    let mut ready = true;
    for r in components {
        let h = r.component().health().await;
        ready &= h.ready;
        health.insert(r.locator().to_string(), json!({"ready": h.ready, "message": h.message}));
    }
    (ready, health)
}

async fn readiness(components: Arc<Vec<Arc<Registration>>>) -> HttpResponse {
    let (ready, health) = health(&components).await;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    HttpResponse::json_with_status(status, &json!({"ready": ready, "health": health}))
}

/// `text` with every occurrence of the hidden values replaced.
fn redact(text: &str, hidden: &[String]) -> String {
    // Any endpoint's bind address (the HTTP one's, and others' such as gRPC's) is hidden whole.
    if let Some((before, _)) = text.split_once("listening on ") {
        return format!("{before}listening on (hidden)");
    }
    hidden.iter().filter(|h| !h.is_empty()).fold(text.to_string(), |t, h| t.replace(h.as_str(), "(hidden)"))
}

async fn status(
    info: Arc<ContextInfo>,
    components: Arc<Vec<Arc<Registration>>>,
    endpoint: Arc<HttpEndpoint>,
    request: HttpRequest,
) -> HttpResponse {
    let now = chrono::Utc::now();
    let (ready, mut health) = health(&components).await;
    // The host name and the bind address are shown only to a caller with a key.
    let revealed = endpoint.is_authenticated(&request);
    let mut id = Value::String(info.context_id.clone());
    if !revealed {
        id = Value::Null;
        let mut hidden = vec![info.context_id.clone()];
        if let Some(a) = endpoint.local_addr() {
            hidden.extend([a.to_string(), a.ip().to_string()]);
        }
        for h in health.values_mut() {
            if let Some(Value::String(m)) = h.get_mut("message") {
                *m = redact(m, &hidden);
            }
        }
    }
    let body = json!({
        "id": id,
        "name": info.name,
        "description": info.description,
        "start_time": format_time(info.start_time),
        "current_time": format_time(now),
        "uptime": (now - info.start_time).num_milliseconds(),
        "properties": info.properties,
        "components": components.iter().map(|r| Value::String(r.locator().to_string())).collect::<Vec<_>>(),
        "ready": ready,
        "health": health,
    });
    HttpResponse::json(&body)
}

impl Component for StatusService {
    fn set_references(&self, references: &References) -> Result<(), ApplicationError> {
        let endpoint =
            references.get_one_required::<HttpEndpoint>(&Descriptor::new("*", "endpoint", "http", "*", "1.0"))?;
        let info = crate::toolkit::info::find(references);
        let components = Arc::new(references.all());
        endpoint.register_route(
            Method::GET,
            &self.route,
            Arc::new({
                let (components, endpoint) = (components.clone(), endpoint.clone());
                move |r: HttpRequest| status(info.clone(), components.clone(), endpoint.clone(), r)
            }),
        );
        endpoint.register_route(
            Method::GET,
            &self.ready_route,
            Arc::new(move |_r: HttpRequest| readiness(components.clone())),
        );
        Ok(())
    }
}
