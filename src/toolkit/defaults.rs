//! The toolkit's own factory: context info, console logger, clocks, the HTTP components
//! (endpoint, heartbeat, status, swagger, API-key authenticator) and the gRPC endpoint. Product factories are added after it and override it.

use super::component::Component;
use super::config::ComponentConfig;
use super::descriptor::Descriptor;
use super::errors::ApplicationError;
use super::factory::TableFactory;
use super::grpc::GrpcEndpoint;
use super::http::auth::{ApiKeyAuthenticator, ApiKeyVerifier};
use super::http::heartbeat::HeartbeatService;
use super::http::status::StatusService;
use super::http::swagger::SwaggerService;
use super::http::HttpEndpoint;
use super::info::ContextInfo;
use super::log::ConsoleLogger;
use super::metrics::PrometheusService;
use super::references::Registration;
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

/// The default toolkit factory.
pub fn default_factory() -> TableFactory {
    TableFactory::new()
        .register(d("pip-services", "context-info", "default"), |c| plain(ContextInfo::from_config(c)?))
        .register(d("pip-services", "container-info", "default"), |c| plain(ContextInfo::from_config(c)?))
        .register(d("pip-services", "logger", "console"), |c| plain(ConsoleLogger::from_config(c)?))
        .register(d("pip-services", "clock", "system"), |_| {
            let clock = Arc::new(SystemClock);
            Ok(Registration::new(Descriptor::new("*", "*", "*", "*", "*"), clock.clone()).provide::<dyn Clock>(clock))
        })
        .register(d("pip-services", "clock", "manual"), manual_clock)
        .register(d("pip-services", "endpoint", "http"), |c| plain(HttpEndpoint::from_config(c)?))
        .register(d("pip-services", "heartbeat-service", "http"), |c| plain(HeartbeatService::from_config(c)?))
        .register(d("pip-services", "status-service", "http"), |c| plain(StatusService::from_config(c)?))
        .register(d("pip-services", "swagger-service", "http"), |_| plain(SwaggerService::new()))
        .register(d("pip-services", "prometheus-service", "http"), |c| {
            let s: super::http::heartbeat::RouteSettings = c.section()?;
            plain(PrometheusService::new(s.route.as_deref()))
        })
        .register(d("pip-services", "authenticator", "api-key"), |c| {
            let a = Arc::new(ApiKeyAuthenticator::from_config(c)?);
            Ok(Registration::new(Descriptor::new("*", "*", "*", "*", "*"), a.clone()).provide::<dyn ApiKeyVerifier>(a))
        })
        .register(d("pip-services", "endpoint", "grpc"), |c| plain(GrpcEndpoint::from_config(c)?))
}
