//! The toolkit's own factory: context info, loggers, counters, clocks, the HTTP components
//! (endpoint, heartbeat, status, swagger, metrics, API-key authenticator), the gRPC endpoint, and
//! the rest of what Pip's standard factories register (tracers, caches, discovery, credential
//! stores, config readers; see [`super::standard`]), so a Pip configuration starts unchanged.
//! Product factories are added after it and override it.

use super::component::Component;
use super::config::ComponentConfig;
use super::counters::{LogCounters, PrometheusCounters};
use super::descriptor::Descriptor;
use super::errors::ApplicationError;
use super::factory::TableFactory;
use super::grpc::GrpcEndpoint;
use super::http::auth::{ApiKeyAuthenticator, ApiKeyVerifier};
use super::http::heartbeat::HeartbeatService;
use super::http::prometheus::PrometheusService;
use super::http::status::StatusService;
use super::http::swagger::SwaggerService;
use super::http::HttpEndpoint;
use super::info::ContextInfo;
use super::log::ConsoleLogger;
use super::references::Registration;
use super::standard::Inert;
use super::time::{parse_time, Clock, ManualClock, SystemClock};
use std::sync::Arc;

fn d(group: &str, typ: &str, kind: &str) -> Descriptor {
    Descriptor::new(group, typ, kind, "*", "1.0")
}

fn plain<T: Component>(c: T) -> Result<Registration, ApplicationError> {
    Ok(Registration::new(Descriptor::new("*", "*", "*", "*", "*"), Arc::new(c)))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ManualClockSettings {
    start: Option<String>,
}

fn manual_clock(c: &ComponentConfig) -> Result<Registration, ApplicationError> {
    let s: ManualClockSettings = c.section()?;
    let start = match s.start {
        Some(t) => parse_time(&t)
            .ok_or_else(|| ApplicationError::config("BAD_CONFIG", format!("Clock start \"{t}\" is not a date-time")))?,
        None => chrono::Utc::now(),
    };
    let clock = Arc::new(ManualClock::new(start));
    Ok(Registration::new(Descriptor::new("*", "*", "*", "*", "*"), clock.clone()).provide::<dyn Clock>(clock))
}

fn inert(role: &'static str) -> impl Fn(&ComponentConfig) -> Result<Registration, ApplicationError> {
    move |_| plain(Inert::new(role))
}

fn metrics_service(c: &ComponentConfig) -> Result<Registration, ApplicationError> {
    let s: super::http::heartbeat::RouteSettings = c.section()?;
    plain(PrometheusService::new(Some(&s.full_route("metrics"))))
}

/// The default toolkit factory.
pub fn default_factory() -> TableFactory {
    TableFactory::new()
        .register(d("pip-services", "context-info", "default"), |c| plain(ContextInfo::from_config(c)?))
        .register(d("pip-services", "container-info", "default"), |c| plain(ContextInfo::from_config(c)?))
        .register(d("pip-services", "logger", "console"), |c| plain(ConsoleLogger::from_config(c)?))
        .register(d("pip-services", "logger", "null"), inert("discards log messages"))
        .register(d("pip-services", "logger", "composite"), inert("fans log messages out to every logger"))
        .register(d("pip-services", "counters", "log"), |c| plain(LogCounters::from_config(c)?))
        .register(d("pip-services", "counters", "prometheus"), |c| plain(PrometheusCounters::from_config(c)?))
        .register(d("pip-services", "counters", "null"), inert("discards counters"))
        .register(d("pip-services", "counters", "composite"), inert("fans counters out to every counters component"))
        .register(d("pip-services", "tracer", "null"), inert("discards traces"))
        .register(d("pip-services", "tracer", "log"), inert("logs traced operations"))
        .register(d("pip-services", "tracer", "composite"), inert("fans traces out to every tracer"))
        .register(d("pip-services", "cache", "null"), inert("a cache that keeps nothing"))
        .register(d("pip-services", "cache", "memory"), inert("an in-memory cache"))
        .register(d("pip-services", "credential-store", "memory"), inert("credentials by store key"))
        .register(d("pip-services", "discovery", "memory"), inert("connections by discovery key"))
        .register(d("pip-services", "config-reader", "memory"), inert("a configuration reader"))
        .register(d("pip-services", "config-reader", "json"), inert("a configuration reader"))
        .register(d("pip-services", "config-reader", "yaml"), inert("a configuration reader"))
        .register(d("pip-services", "clock", "system"), |_| {
            let clock = Arc::new(SystemClock);
            Ok(Registration::new(Descriptor::new("*", "*", "*", "*", "*"), clock.clone()).provide::<dyn Clock>(clock))
        })
        .register(d("pip-services", "clock", "manual"), manual_clock)
        .register(d("pip-services", "endpoint", "http"), |c| plain(HttpEndpoint::from_config(c)?))
        .register(d("pip-services", "heartbeat-service", "http"), |c| plain(HeartbeatService::from_config(c)?))
        .register(d("pip-services", "status-service", "http"), |c| plain(StatusService::from_config(c)?))
        .register(d("pip-services", "swagger-service", "http"), |_| plain(SwaggerService::new()))
        .register(d("pip-services", "prometheus-service", "http"), metrics_service)
        .register(d("pip-services", "metrics-service", "prometheus"), metrics_service)
        .register(d("pip-services", "authenticator", "api-key"), |c| {
            let a = Arc::new(ApiKeyAuthenticator::from_config(c)?);
            Ok(Registration::new(Descriptor::new("*", "*", "*", "*", "*"), a.clone()).provide::<dyn ApiKeyVerifier>(a))
        })
        .register(d("pip-services", "endpoint", "grpc"), |c| plain(GrpcEndpoint::from_config(c)?))
}
