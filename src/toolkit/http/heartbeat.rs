//! `GET /heartbeat`: the current UTC time as a JSON string (Pip's liveness probe).

use super::endpoint::HttpEndpoint;
use super::{join_route, HttpRequest, HttpResponse, Immediate};
use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::json::write_time;
use crate::toolkit::references::References;
use bytes::Bytes;
use serde::Deserialize;
use std::sync::Arc;
use warp::http::{Method, StatusCode};

/// Route settings shared by the heartbeat and status services.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RouteSettings {
    /// Optional prefix.
    pub base_route: String,
    /// The route (default `heartbeat` / `status`).
    pub route: Option<String>,
}

impl RouteSettings {
    /// The full route with `default` as the route name when none is configured.
    pub fn full_route(&self, default: &str) -> String {
        join_route(&self.base_route, self.route.as_deref().unwrap_or(default))
    }
}

/// The heartbeat service.
#[derive(Debug)]
pub struct HeartbeatService {
    route: String,
}

impl HeartbeatService {
    /// Builds the service from its entry.
    ///
    /// # Errors
    /// `BAD_CONFIG` for invalid settings.
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let s: RouteSettings = config.section()?;
        Ok(Self { route: s.full_route("heartbeat") })
    }
}

impl Component for HeartbeatService {
    fn set_references(&self, references: &References) -> Result<(), ApplicationError> {
        let endpoint =
            references.get_one_required::<HttpEndpoint>(&Descriptor::new("*", "endpoint", "http", "*", "1.0"))?;
        endpoint.register_route(
            Method::GET,
            &self.route,
            Arc::new(Immediate(|_r: HttpRequest| {
                // The time's JSON string written straight into the body (no `Value`, no escaping
                // pass: the text is digits and separators).
                let mut body = Vec::with_capacity(32);
                write_time(&mut body, &chrono::Utc::now());
                HttpResponse::json_text(StatusCode::OK, Bytes::from(body))
            })),
        );
        Ok(())
    }
}
