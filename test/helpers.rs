//! Test helpers: boot a real container from a YAML string on port 0 and talk HTTP to it.

use serde_json::Value;
use service_sessions::build::SessionsServiceFactory;
use service_sessions::toolkit::config::ConfigParameters;
use service_sessions::toolkit::container::Container;
use service_sessions::toolkit::descriptor::Descriptor;
use service_sessions::toolkit::http::HttpEndpoint;
use service_sessions::toolkit::time::ManualClock;
use std::net::SocketAddr;
use std::sync::Arc;

/// A running container and an HTTP client for it.
pub(crate) struct TestApp {
    pub container: Container,
    pub address: SocketAddr,
    pub client: reqwest::Client,
}

/// A parsed HTTP answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    /// The body as JSON (`Value::Null` when empty).
    pub(crate) fn json(&self) -> Value {
        if self.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
        }
    }

    /// A header as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Boots a container with the product factory from `yaml`.
pub(crate) async fn spawn_app(yaml: &str) -> TestApp {
    spawn_with(yaml, &ConfigParameters::new()).await
}

/// Boots a container with template parameters.
pub(crate) async fn spawn_with(yaml: &str, params: &ConfigParameters) -> TestApp {
    let container = Container::new(Arc::new(SessionsServiceFactory::composite()));
    container.open_text(yaml, params, Some("test")).await.unwrap_or_else(|e| panic!("container did not open: {e:?}"));
    let endpoint = container
        .references()
        .get_one_required::<HttpEndpoint>(&Descriptor::new("*", "endpoint", "http", "*", "1.0"))
        .expect("endpoint");
    let address = endpoint.local_addr().expect("listening");
    TestApp { container, address, client: reqwest::Client::new() }
}

/// The standard sessions service on the memory backend with a manual clock at
/// 2026-01-01T00:00:00Z, an idle timeout of one hour and no background sweep.
pub(crate) fn sessions_yaml(extra_controller_options: &str) -> String {
    format!(
        r#"
- descriptor: "pip-services:clock:manual:default:1.0"
  start: "2026-01-01T00:00:00.000Z"
- descriptor: "service-sessions:persistence:memory:default:1.0"
- descriptor: "service-sessions:controller:default:default:1.0"
  options:
    expire_timeout: 3600000
    cleanup_interval: 0
{extra_controller_options}
- descriptor: "pip-services:endpoint:http:default:1.0"
  connection: {{ protocol: http, host: 127.0.0.1, port: 0 }}
- descriptor: "service-sessions:service:commandable-http:default:1.0"
- descriptor: "pip-services:heartbeat-service:http:default:1.0"
- descriptor: "pip-services:status-service:http:default:1.0"
- descriptor: "pip-services:swagger-service:http:default:1.0"
- descriptor: "pip-services:prometheus-service:http:default:1.0"
"#
    )
}

impl TestApp {
    /// The base URL.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// `POST /v1/sessions/<command>` with a JSON body.
    pub(crate) async fn command(&self, command: &str, body: Value) -> Answer {
        self.post_raw(&format!("/v1/sessions/{command}"), body.to_string(), Some("application/json")).await
    }

    /// A POST with a raw body.
    pub(crate) async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        content_type: Option<&str>,
    ) -> Answer {
        let mut req = self.client.post(self.url(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        answer(req.send().await.expect("request")).await
    }

    /// A request with any method.
    pub(crate) async fn request(&self, method: reqwest::Method, path: &str) -> Answer {
        answer(self.client.request(method, self.url(path)).send().await.expect("request")).await
    }

    /// The manual clock of the container.
    pub(crate) fn clock(&self) -> Arc<ManualClock> {
        self.container
            .references()
            .get_one_required::<ManualClock>(&Descriptor::new("*", "clock", "manual", "*", "1.0"))
            .expect("manual clock")
    }

    /// Opens a session for `user_id` and returns it.
    pub(crate) async fn open(&self, user_id: &str) -> Value {
        let a = self.command("open_session", serde_json::json!({"user_id": user_id})).await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.json()
    }

    /// Closes the container.
    pub(crate) async fn stop(self) {
        self.container.close(None).await;
    }
}

async fn answer(r: reqwest::Response) -> Answer {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await.expect("body");
    Answer { status, headers, body }
}

/// Readiness as `/ready` reports it.
pub(crate) async fn ready(app: &TestApp) -> bool {
    app.request(reqwest::Method::GET, "/ready").await.status == 200
}

/// A command while the store is down: answered 503 `NoResponse`/`STORE_UNAVAILABLE` within the
/// store's `call_timeout` plus a margin.
pub(crate) async fn assert_store_unavailable(
    app: &TestApp,
    call_timeout: std::time::Duration,
    command: &str,
    body: Value,
) {
    let start = std::time::Instant::now();
    let a = app.command(command, body).await;
    let took = start.elapsed();
    assert_eq!(a.status, 503, "{command}: {}", a.body);
    let e = a.json();
    assert_eq!((e["category"].as_str(), e["code"].as_str()), (Some("NoResponse"), Some("STORE_UNAVAILABLE")));
    assert!(took < call_timeout + std::time::Duration::from_millis(1500), "{command} took {took:?}");
}
