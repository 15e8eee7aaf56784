//! The `/metrics` service (`pip-services:prometheus-service:http:*:1.0`): renders the
//! process-wide registry of [`crate::toolkit::metrics`] in the Prometheus text format, after
//! refreshing every [`MetricsSource`].

use super::endpoint::HttpEndpoint;
use super::{HttpRequest, HttpResponse};
use crate::toolkit::component::Component;
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::metrics::{render, MetricsSource};
use crate::toolkit::references::References;
use std::sync::Arc;
use warp::http::{Method, StatusCode};

/// The `/metrics` service.
#[derive(Debug)]
pub struct PrometheusService {
    route: String,
}

impl PrometheusService {
    /// A service at `/metrics` (or `route`).
    pub fn new(route: Option<&str>) -> Self {
        Self { route: super::join_route("", route.unwrap_or("metrics")) }
    }
}

impl Component for PrometheusService {
    fn set_references(&self, references: &References) -> Result<(), ApplicationError> {
        let endpoint =
            references.get_one_required::<HttpEndpoint>(&Descriptor::new("*", "endpoint", "http", "*", "1.0"))?;
        let sources: Arc<Vec<Arc<dyn MetricsSource>>> =
            Arc::new(references.get_optional::<dyn MetricsSource>(&Descriptor::new("*", "*", "*", "*", "*")));
        endpoint.register_route(
            Method::GET,
            &self.route,
            Arc::new(move |_r: HttpRequest| {
                let sources = sources.clone();
                async move {
                    for s in sources.iter() {
                        s.refresh_metrics().await;
                    }
                    HttpResponse::with_body(StatusCode::OK, "text/plain; version=0.0.4", render())
                }
            }),
        );
        Ok(())
    }
}
