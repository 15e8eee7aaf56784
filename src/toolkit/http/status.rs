//! `GET /status`: identity, uptime, the registered components and their health (readiness).
//!
//! The response keeps Pip's fields (`id`, `name`, `description`, `start_time`, `current_time`,
//! `uptime`, `properties`, `components`) and adds `ready` and `health` (per component); it always
//! answers 200. `GET /ready` is the readiness probe: 200 when every component is ready, else 503.

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

async fn status(info: Arc<ContextInfo>, components: Arc<Vec<Arc<Registration>>>) -> HttpResponse {
    let now = chrono::Utc::now();
    let (ready, health) = health(&components).await;
    let body = json!({
        "id": info.context_id,
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
                let components = components.clone();
                move |_r: HttpRequest| status(info.clone(), components.clone())
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
