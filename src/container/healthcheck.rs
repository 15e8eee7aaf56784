//! `service-sessions healthcheck`: asks the running service of a configuration whether it is up,
//! for container health checks (Docker's `HEALTHCHECK`) without curl in the image.
//!
//! It reads the same configuration as the service (`-c`/`CONFIG_PATH`, `-p`, the environment),
//! takes the HTTP endpoint's `connection` (protocol, port; a wildcard host is asked on the
//! loopback address) and the heartbeat service's route, and sends `GET /heartbeat`. Exit 0 when
//! the answer is 200, 1 otherwise (no answer within `--timeout`, another status, a configuration
//! without an HTTP endpoint). Over `https` the certificate is not checked: the probe talks to the
//! service on its own machine, often by an address its certificate does not name.

use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::http::endpoint::EndpointSettings;
use crate::toolkit::http::heartbeat::RouteSettings;
use crate::toolkit::process::{ProcessArgs, ProcessContainer};
use clap::Args;
use std::time::Duration;

/// `healthcheck` options.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// How long to wait for the answer, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout: u64,
}

/// Where the heartbeat of a configuration is asked, and the `Host` it must name.
#[derive(Debug, PartialEq, Eq)]
pub struct Probe {
    /// `http://127.0.0.1:8080/heartbeat`.
    pub url: String,
    /// The first of `allowed_hosts`, when the endpoint restricts them.
    pub host: Option<String>,
}

/// The probe of a configuration.
///
/// # Errors
/// As reading the configuration; `NO_HTTP_ENDPOINT` when it has no HTTP endpoint.
pub fn probe(process: &ProcessContainer, args: &ProcessArgs) -> Result<Probe, ApplicationError> {
    let configs = process.read_config(args)?;
    let endpoint = configs
        .iter()
        .find(|c| c.descriptor.matches(&Descriptor::new("*", "endpoint", "http", "*", "1.0")))
        .ok_or_else(|| ApplicationError::config("NO_HTTP_ENDPOINT", "The configuration has no HTTP endpoint"))?;
    let settings: EndpointSettings = endpoint.section()?;
    let route = match configs.iter().find(|c| c.descriptor.typ() == Some("heartbeat-service")) {
        Some(c) => c.section::<RouteSettings>()?.full_route("heartbeat"),
        None => "/heartbeat".to_string(),
    };
    let c = &settings.connection;
    let host = match c.host.trim() {
        "" | "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
        h => h,
    };
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
    let protocol = if c.protocol.eq_ignore_ascii_case("https") { "https" } else { "http" };
    let route = format!("/{}", route.trim_start_matches('/'));
    Ok(Probe { url: format!("{protocol}://{host}:{}{route}", c.port), host: settings.allowed_hosts.first().cloned() })
}

/// Runs the check; the exit code.
///
/// # Errors
/// As [`probe`].
pub async fn healthcheck(
    process: &ProcessContainer,
    args: &ProcessArgs,
    options: &HealthcheckArgs,
) -> Result<i32, ApplicationError> {
    let probe = probe(process, args)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(options.timeout))
        .danger_accept_invalid_certs(true)
        .build()
        .map_err(|e| ApplicationError::internal("CLIENT_FAILED", "Cannot build the HTTP client").with_cause(e))?;
    let mut request = client.get(&probe.url);
    if let Some(host) = &probe.host {
        request = request.header(reqwest::header::HOST, host);
    }
    match request.send().await {
        Ok(r) if r.status() == reqwest::StatusCode::OK => {
            println!("healthy: {} answered 200", probe.url);
            Ok(0)
        }
        Ok(r) => {
            eprintln!("unhealthy: {} answered {}", probe.url, r.status());
            Ok(super::EXIT_FAILED)
        }
        Err(e) => {
            eprintln!("unhealthy: {}: {e}", probe.url);
            Ok(super::EXIT_FAILED)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn probe_of(yaml: &str, params: &[&str]) -> Result<Probe, ApplicationError> {
        let mut f = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
        f.write_all(yaml.as_bytes()).unwrap();
        let args = ProcessArgs {
            config: f.path().to_string_lossy().into_owned(),
            params: params.iter().map(ToString::to_string).collect(),
        };
        probe(&super::super::SessionsProcess::process(), &args)
    }

    #[test]
    fn asks_the_configured_port_route_and_host() {
        let endpoint = |connection: &str| {
            format!("- descriptor: \"pip-services:endpoint:http:default:1.0\"\n  connection: {connection}\n")
        };
        let p = probe_of(&endpoint("{ host: 0.0.0.0, port: 8080 }"), &[]).unwrap();
        assert_eq!(p, Probe { url: "http://127.0.0.1:8080/heartbeat".into(), host: None });
        let p = probe_of(&endpoint("{ protocol: https, host: \"::1\", port: {{PORT}} }"), &["PORT=9443"]).unwrap();
        assert_eq!(p.url, "https://[::1]:9443/heartbeat");
        let yaml = format!(
            "{}  allowed_hosts: [sessions.example, localhost]\n- descriptor: \"pip-services:heartbeat-service:http:default:1.0\"\n  base_route: ops\n  route: alive\n",
            endpoint("{ host: 10.0.0.5, port: 80 }")
        );
        let p = probe_of(&yaml, &[]).unwrap();
        assert_eq!(p, Probe { url: "http://10.0.0.5:80/ops/alive".into(), host: Some("sessions.example".into()) });
        let e = probe_of("- descriptor: \"service-sessions:persistence:memory:default:1.0\"\n", &[]).unwrap_err();
        assert_eq!(e.code, "NO_HTTP_ENDPOINT");
    }
}
