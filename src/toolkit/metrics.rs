//! Prometheus metrics: the process-wide registry, the metric families every endpoint records,
//! and the text rendering. The `/metrics` route is served by
//! `toolkit::http::prometheus::PrometheusService`; this module knows nothing of HTTP.
//!
//! Components that own gauges which must be read from a store export the [`MetricsSource`]
//! facet; the service refreshes every source before it renders the text format, so a scrape
//! always shows current values without a polling task.

use async_trait::async_trait;
use bytes::Bytes;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::LazyLock;

/// Latency buckets in seconds, from 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The registry every metric of the process is registered in.
pub fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let _ = r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
        }
        if let Ok(info) = IntGaugeVec::new(Opts::new("build_info", "Build information (always 1)"), &["version"]) {
            info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
            let _ = r.register(Box::new(info));
        }
        r
    });
    &REGISTRY
}

/// Registers a metric (a duplicate name is logged and the unregistered metric still works).
pub fn register<M: prometheus::core::Collector + Clone + 'static>(metric: M) -> M {
    if let Err(e) = registry().register(Box::new(metric.clone())) {
        tracing::warn!(error = %e, "Metric could not be registered.");
    }
    metric
}

/// HTTP request metrics, labelled by method, route pattern (never the raw path) and status.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    /// `http_requests_total{method, route, status}`.
    pub requests: IntCounterVec,
    /// `http_request_duration_seconds{method, route}`.
    pub duration: HistogramVec,
    /// `http_requests_in_flight`.
    pub in_flight: IntGauge,
}

/// A counter family registered in [`registry`]; `None` only for an invalid definition.
pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> Option<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), labels).ok().map(register)
}

/// A latency histogram family (seconds, [`LATENCY_BUCKETS`]) registered in [`registry`].
pub fn histogram_vec(name: &str, help: &str, labels: &[&str]) -> Option<HistogramVec> {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()), labels).ok().map(register)
}

/// A gauge family registered in [`registry`].
pub fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> Option<IntGaugeVec> {
    IntGaugeVec::new(Opts::new(name, help), labels).ok().map(register)
}

/// A gauge without labels registered in [`registry`].
pub fn gauge(name: &str, help: &str) -> Option<IntGauge> {
    IntGauge::new(name, help).ok().map(register)
}

/// The HTTP metrics (registered on first use). Metrics are best-effort: `None` never happens
/// with the constant definitions below, and callers simply skip recording if it did.
pub fn http() -> Option<&'static HttpMetrics> {
    static HTTP: LazyLock<Option<HttpMetrics>> = LazyLock::new(|| {
        Some(HttpMetrics {
            requests: counter_vec("http_requests_total", "HTTP requests", &["method", "route", "status"])?,
            duration: histogram_vec("http_request_duration_seconds", "HTTP request latency", &["method", "route"])?,
            in_flight: gauge("http_requests_in_flight", "HTTP requests being served")?,
        })
    });
    HTTP.as_ref()
}

/// gRPC request metrics, labelled by method path (only registered methods; anything else is
/// `unmatched`) and gRPC status code.
#[derive(Debug, Clone)]
pub struct GrpcMetrics {
    /// `grpc_requests_total{method, code}`.
    pub requests: IntCounterVec,
    /// `grpc_request_duration_seconds{method}`.
    pub duration: HistogramVec,
    /// `grpc_requests_in_flight`.
    pub in_flight: IntGauge,
}

/// The gRPC metrics (registered on first use), best-effort like [`http`].
pub fn grpc() -> Option<&'static GrpcMetrics> {
    static GRPC: LazyLock<Option<GrpcMetrics>> = LazyLock::new(|| {
        Some(GrpcMetrics {
            requests: counter_vec("grpc_requests_total", "gRPC requests", &["method", "code"])?,
            duration: histogram_vec("grpc_request_duration_seconds", "gRPC request latency", &["method"])?,
            in_flight: gauge("grpc_requests_in_flight", "gRPC requests being served")?,
        })
    });
    GRPC.as_ref()
}

/// A component whose gauges are refreshed before every scrape.
#[async_trait]
pub trait MetricsSource: Send + Sync {
    /// Updates the component's gauges.
    async fn refresh_metrics(&self);
}

/// Renders the registry in the Prometheus text format.
pub fn render() -> Bytes {
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry().gather(), &mut out) {
        tracing::warn!(error = %e, "Metrics could not be encoded.");
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_text_format() {
        let m = http().map(|m| m.requests.clone());
        assert!(m.is_some());
        if let Some(m) = m {
            m.with_label_values(&["GET", "/unit-test", "200"]).inc();
        }
        let text = String::from_utf8_lossy(&render()).to_string();
        assert!(text.contains(r#"http_requests_total{method="GET",route="/unit-test",status="200"} 1"#), "{text}");
        assert!(text.contains("build_info{version=\""));
        assert!(counter_vec("bad name!", "x", &[]).is_none());
    }
}
