//! Pip's performance counters components, over the process's Prometheus registry.
//!
//! Pip components count into `ICounters` (`exec_count`, `exec_time`, …) and a counters component
//! decides where the numbers go. Here every component records into the Prometheus registry of
//! [`super::metrics`] instead (HTTP requests by route and status, store operations, session
//! events), so the counters components only decide where that registry is *reported*:
//!
//! * [`LogCounters`] (`pip-services:counters:log:*:1.0`) logs every counter at Info, one line
//!   each in Pip's shape (`Counter <name> { "type": n, "count": … }`), every `interval`
//!   (`options.interval` wins; default 300 000 ms) when something changed since the last dump,
//!   and once more on close. Pip dumps lazily on the next update after the interval; here an
//!   owned task does it (cancelled and joined on close).
//! * [`PrometheusCounters`] (`pip-services:counters:prometheus:*:1.0`) is passive (the registry
//!   is what `GET /metrics` shows) unless `connection.uri` or `connection.host`/`port` is set:
//!   then it PUTs the registry in the Prometheus text format to a Pushgateway at
//!   `/metrics/job/<source>/instance/<instance>` every `interval`, as Pip does (`source`
//!   defaults to the context info name, `instance` to the host name; `push_enabled: false`
//!   turns pushing off). A failed push is logged and the next interval pushes again.
//!
//! Counter names are the Prometheus names with their labels
//! (`http_requests_total{method="POST",route="/v1/sessions/open_session",status="200"}`), not
//! Pip's dotted names. Prometheus counters are cumulative, so `reset_timeout` is accepted and
//! has no effect (a scraper computes rates itself). The process collector's `process_*` metrics
//! and `build_info` are not logged: they are not request or operation counters. An `interval` of
//! 0 (Pip: dump on every update) is taken as one second.

use super::component::{Component, OwnedTask};
use super::config::ComponentConfig;
use super::descriptor::Descriptor;
use super::errors::ApplicationError;
use super::metrics::{registry, render, MetricsSource};
use super::references::References;
use async_trait::async_trait;
use parking_lot::Mutex;
use prometheus::proto::{MetricFamily, MetricType};
use serde::Deserialize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Pip's default dump interval (ms).
pub const DEFAULT_INTERVAL_MS: u64 = 300_000;
/// The shortest dump interval (ms); 0 is taken as this.
pub const MIN_INTERVAL_MS: u64 = 1_000;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CountersOptions {
    interval: Option<u64>,
    reset_timeout: Option<u64>,
    connect_timeout: Option<u64>,
    timeout: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PushConnection {
    uri: Option<String>,
    protocol: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    discovery_key: Option<String>,
}

/// Keys shared by the counters components (`level` and `reset_timeout` are accepted and unused).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CountersSettings {
    interval: Option<u64>,
    reset_timeout: Option<u64>,
    options: CountersOptions,
    connection: PushConnection,
    source: Option<String>,
    instance: Option<String>,
    push_enabled: Option<bool>,
}

impl CountersSettings {
    fn interval(&self) -> Duration {
        let ms = self.options.interval.or(self.interval).unwrap_or(DEFAULT_INTERVAL_MS);
        Duration::from_millis(if ms == 0 { MIN_INTERVAL_MS } else { ms })
    }
}

/// Whether a metric family is a request or operation counter worth logging.
fn is_reported(name: &str) -> bool {
    !name.starts_with("process_") && name != "build_info"
}

fn counter_name(family: &str, labels: &[prometheus::proto::LabelPair]) -> String {
    if labels.is_empty() {
        return family.to_string();
    }
    let labels: Vec<String> = labels.iter().map(|l| format!("{}={:?}", l.name(), l.value())).collect();
    format!("{family}{{{}}}", labels.join(","))
}

/// Milliseconds with at most three decimals (`0.25`, `12`).
fn millis(seconds: f64) -> f64 {
    (seconds * 1_000_000.0).round() / 1_000.0
}

/// The log lines of a registry snapshot, in Pip's `LogCounters` shape, sorted by name.
///
/// Types are Pip's: a counter is an Increment (4) with its `count`, a gauge a LastValue (1)
/// with its `last`, a histogram or summary an Interval (0) with its `count` and its `avg` in
/// milliseconds (Pip times intervals in ms; Prometheus in seconds). Counters still at zero and
/// timings without a sample are left out.
pub fn counter_lines(families: &[MetricFamily]) -> Vec<String> {
    let mut lines: Vec<(String, String)> = Vec::new();
    for family in families.iter().filter(|f| is_reported(f.name())) {
        for metric in family.get_metric() {
            let name = counter_name(family.name(), metric.get_label());
            // Counters and timings never touched are left out, as Pip has only those it was given.
            let fields = match family.get_field_type() {
                MetricType::COUNTER => {
                    let v = metric.get_counter().get_value();
                    if v <= 0.0 {
                        continue;
                    }
                    format!("\"type\": 4, \"count\": {v}")
                }
                MetricType::GAUGE => format!("\"type\": 1, \"last\": {}", metric.get_gauge().get_value()),
                MetricType::HISTOGRAM => {
                    let h = metric.get_histogram();
                    match interval_fields(h.get_sample_count(), h.get_sample_sum()) {
                        Some(f) => f,
                        None => continue,
                    }
                }
                MetricType::SUMMARY => {
                    let s = metric.get_summary();
                    match interval_fields(s.sample_count(), s.sample_sum()) {
                        Some(f) => f,
                        None => continue,
                    }
                }
                // Nothing here registers untyped metrics (the type is deprecated in the crate).
                MetricType::UNTYPED => continue,
            };
            lines.push((name.clone(), format!("Counter {name} {{ {fields} }}")));
        }
    }
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    lines.into_iter().map(|(_, line)| line).collect()
}

fn interval_fields(count: u64, sum: f64) -> Option<String> {
    if count == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)] // an average; exact beyond 2^53 samples is not needed
    let avg = millis(sum / count as f64);
    Some(format!("\"type\": 0, \"count\": {count}, \"avg\": {avg}"))
}

/// The metric sources of a container (their gauges are refreshed before a dump).
fn metric_sources(references: &References) -> Vec<Arc<dyn MetricsSource>> {
    references.get_optional::<dyn MetricsSource>(&Descriptor::new("*", "*", "*", "*", "*"))
}

async fn refresh(sources: &[Arc<dyn MetricsSource>]) {
    for s in sources {
        s.refresh_metrics().await;
    }
}

/// What a [`LogCounters`] dumps and remembers between dumps.
#[derive(Default)]
struct LogState {
    sources: OnceLock<Vec<Arc<dyn MetricsSource>>>,
    last: Mutex<Vec<String>>,
}

impl LogState {
    /// Logs the counters if they changed since the last dump; returns the lines logged.
    async fn dump(&self, refresh_sources: bool) -> Vec<String> {
        if refresh_sources {
            if let Some(sources) = self.sources.get() {
                refresh(sources).await;
            }
        }
        let lines = counter_lines(&registry().gather());
        let mut last = self.last.lock();
        if lines.is_empty() || *last == lines {
            return Vec::new();
        }
        for line in &lines {
            tracing::info!("{line}");
        }
        last.clone_from(&lines);
        lines
    }
}

/// `pip-services:counters:log:*:1.0`: logs the counters periodically (see the module doc).
pub struct LogCounters {
    interval: Duration,
    state: Arc<LogState>,
    task: OwnedTask,
}

impl std::fmt::Debug for LogCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogCounters").field("interval", &self.interval).finish()
    }
}

impl LogCounters {
    /// Builds the component from its entry (`interval` / `options.interval` in ms).
    ///
    /// # Errors
    /// `BAD_CONFIG` for a value that is not a number.
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let s: CountersSettings = config.section()?;
        Ok(Self::new(s.interval()))
    }

    /// A component dumping every `interval`.
    pub fn new(interval: Duration) -> Self {
        Self { interval, state: Arc::new(LogState::default()), task: OwnedTask::new() }
    }

    /// The dump period.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Dumps now (refreshing the metric sources first) if anything changed since the last dump;
    /// returns the lines logged (empty when nothing changed).
    pub async fn dump(&self) -> Vec<String> {
        self.state.dump(true).await
    }
}

#[async_trait]
impl Component for LogCounters {
    fn set_references(&self, references: &References) -> Result<(), ApplicationError> {
        let _ = self.state.sources.set(metric_sources(references));
        Ok(())
    }

    async fn open(&self, _correlation_id: Option<&str>) -> Result<(), ApplicationError> {
        let state = self.state.clone();
        self.task.start_periodic(self.interval, move || {
            let state = state.clone();
            async move {
                state.dump(true).await;
            }
        });
        Ok(())
    }

    async fn close(&self, _correlation_id: Option<&str>) -> Result<(), ApplicationError> {
        self.task.stop().await;
        // A last dump, so a short run is reported too; the sources may be closed by now, so
        // their gauges keep the values of the last refresh.
        self.state.dump(false).await;
        Ok(())
    }
}

/// Where [`PrometheusCounters`] pushes to.
#[derive(Debug, Clone)]
struct PushTarget {
    base: reqwest::Url,
    connect_timeout: Duration,
    timeout: Duration,
}

fn push_target(s: &CountersSettings) -> Result<Option<PushTarget>, ApplicationError> {
    let c = &s.connection;
    if c.discovery_key.is_some() && c.uri.is_none() && c.host.is_none() {
        return Err(ApplicationError::config(
            "BAD_CONFIG",
            "connection.discovery_key is not supported: give connection.uri, or connection.host and port",
        ));
    }
    let text = match (&c.uri, &c.host) {
        (Some(uri), _) => uri.clone(),
        (None, Some(host)) => {
            let protocol = c.protocol.as_deref().unwrap_or("http");
            if protocol != "http" && protocol != "https" {
                return Err(ApplicationError::config(
                    "WRONG_PROTOCOL",
                    format!("Protocol \"{protocol}\" is not supported: use http or https"),
                ));
            }
            let port = c.port.ok_or_else(|| ApplicationError::config("NO_PORT", "connection.port is missing"))?;
            format!("{protocol}://{host}:{port}")
        }
        (None, None) if c.port.is_some() || c.protocol.is_some() => {
            return Err(ApplicationError::config("NO_HOST", "connection.host is missing"));
        }
        (None, None) => return Ok(None),
    };
    let base = reqwest::Url::parse(&text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        .ok_or_else(|| {
            ApplicationError::config("BAD_CONFIG", "connection.uri is not an http(s) URL").with_details("uri", "***")
        })?;
    Ok(Some(PushTarget {
        base,
        connect_timeout: Duration::from_millis(s.options.connect_timeout.unwrap_or(10_000)),
        timeout: Duration::from_millis(s.options.timeout.unwrap_or(10_000)),
    }))
}

/// The Pushgateway URL of a job and instance: `<base>/metrics/job/<job>/instance/<instance>`,
/// each segment escaped.
fn push_url(base: &reqwest::Url, job: &str, instance: &str) -> Option<reqwest::Url> {
    let mut url = base.clone();
    url.path_segments_mut().ok()?.pop_if_empty().extend(["metrics", "job", job, "instance", instance]);
    Some(url)
}

#[derive(Default)]
struct PushState {
    sources: OnceLock<Vec<Arc<dyn MetricsSource>>>,
    url: OnceLock<reqwest::Url>,
}

/// `pip-services:counters:prometheus:*:1.0`: passive, or a Pushgateway pusher (see the module doc).
pub struct PrometheusCounters {
    interval: Duration,
    target: Option<PushTarget>,
    source: Option<String>,
    instance: Option<String>,
    state: Arc<PushState>,
    client: OnceLock<reqwest::Client>,
    task: OwnedTask,
}

impl std::fmt::Debug for PrometheusCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusCounters").field("pushes", &self.target.is_some()).finish()
    }
}

impl PrometheusCounters {
    /// Builds the component from its entry.
    ///
    /// # Errors
    /// `BAD_CONFIG`, `WRONG_PROTOCOL`, `NO_HOST`, `NO_PORT` for an unusable connection.
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let s: CountersSettings = config.section()?;
        let target = if s.push_enabled.unwrap_or(true) { push_target(&s)? } else { None };
        Ok(Self {
            interval: s.interval(),
            target,
            source: s.source.clone(),
            instance: s.instance.clone(),
            state: Arc::new(PushState::default()),
            client: OnceLock::new(),
            task: OwnedTask::new(),
        })
    }

    /// The URL pushed to (after `set_references`), if pushing is configured.
    pub fn push_url(&self) -> Option<&reqwest::Url> {
        self.state.url.get()
    }

    /// Pushes the registry now (refreshing the metric sources first).
    ///
    /// # Errors
    /// `NO_RESPONSE` when the gateway cannot be reached or answers an error status;
    /// `INVALID_STATE` before `open` or without a connection.
    pub async fn push(&self) -> Result<(), ApplicationError> {
        let client = self
            .client
            .get()
            .ok_or_else(|| ApplicationError::invalid_state("NOT_OPENED", "Prometheus counters push nothing"))?;
        push_once(client, &self.state).await
    }
}

async fn push_once(client: &reqwest::Client, state: &PushState) -> Result<(), ApplicationError> {
    let url = state
        .url
        .get()
        .ok_or_else(|| ApplicationError::invalid_state("NOT_OPENED", "Prometheus counters push nothing"))?;
    if let Some(sources) = state.sources.get() {
        refresh(sources).await;
    }
    let failed = |e: &dyn std::fmt::Display| {
        ApplicationError::no_response("NO_RESPONSE", format!("Failed to push metrics to Prometheus: {e}"))
    };
    let response = client
        .put(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(render())
        .send()
        .await
        .map_err(|e| failed(&e))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(failed(&format!("status {}", response.status())))
    }
}

#[async_trait]
impl Component for PrometheusCounters {
    fn set_references(&self, references: &References) -> Result<(), ApplicationError> {
        let _ = self.state.sources.set(metric_sources(references));
        if let Some(target) = &self.target {
            let info = super::info::find(references);
            let job = self.source.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| info.name.clone());
            let instance = self.instance.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| info.context_id.clone());
            let url = push_url(&target.base, &job, &instance).ok_or_else(|| {
                ApplicationError::config("BAD_CONFIG", "connection.uri cannot take a path").with_details("uri", "***")
            })?;
            let _ = self.state.url.set(url);
        }
        Ok(())
    }

    async fn open(&self, _correlation_id: Option<&str>) -> Result<(), ApplicationError> {
        let Some(target) = &self.target else { return Ok(()) };
        if self.task.is_running() {
            return Ok(());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(target.connect_timeout)
            .timeout(target.timeout)
            .build()
            .map_err(|e| ApplicationError::internal("CANNOT_CONNECT", "Cannot build an HTTP client").with_cause(e))?;
        let client = self.client.get_or_init(|| client).clone();
        let state = self.state.clone();
        self.task.start_periodic(self.interval, move || {
            let (client, state) = (client.clone(), state.clone());
            async move {
                if let Err(e) = push_once(&client, &state).await {
                    tracing::warn!(error = %e, "Prometheus push failed; the next interval pushes again.");
                }
            }
        });
        Ok(())
    }

    async fn close(&self, _correlation_id: Option<&str>) -> Result<(), ApplicationError> {
        self.task.stop().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
    use serde_json::json;

    fn entry(descriptor: &str, v: serde_json::Value) -> ComponentConfig {
        ComponentConfig::new(descriptor.parse().unwrap(), v)
    }

    #[test]
    fn lines_take_pips_shape_sorted_by_name() {
        let r = Registry::new();
        let requests = IntCounterVec::new(Opts::new("reqs_total", "r"), &["route", "status"]).unwrap();
        let latency =
            HistogramVec::new(HistogramOpts::new("op_seconds", "l").buckets(vec![0.1, 1.0]), &["op"]).unwrap();
        let gauge = IntGauge::new("active", "a").unwrap();
        let process = IntGauge::new("process_open_fds", "p").unwrap();
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(gauge.clone()),
            Box::new(process.clone()),
        ] {
            r.register(c).unwrap();
        }
        requests.with_label_values(&["/b", "200"]).inc_by(3);
        requests.with_label_values(&["/a", "404"]).inc();
        latency.with_label_values(&["get"]).observe(0.002);
        latency.with_label_values(&["get"]).observe(0.0005);
        latency.with_label_values(&["put"]);
        requests.with_label_values(&["/c", "200"]);
        gauge.set(7);
        process.set(9);
        assert_eq!(
            counter_lines(&r.gather()),
            vec![
                r#"Counter active { "type": 1, "last": 7 }"#,
                r#"Counter op_seconds{op="get"} { "type": 0, "count": 2, "avg": 1.25 }"#,
                r#"Counter reqs_total{route="/a",status="404"} { "type": 4, "count": 1 }"#,
                r#"Counter reqs_total{route="/b",status="200"} { "type": 4, "count": 3 }"#,
            ]
        );
    }

    #[test]
    fn intervals_follow_pip_keys() {
        let c = |v| LogCounters::from_config(&entry("pip-services:counters:log:default:1.0", v)).unwrap().interval();
        assert_eq!(c(json!({})), Duration::from_millis(300_000));
        assert_eq!(c(json!({"level": "trace", "interval": "5000"})), Duration::from_millis(5_000));
        assert_eq!(c(json!({"interval": 5000, "options": {"interval": 2000}})), Duration::from_millis(2_000));
        assert_eq!(c(json!({"interval": 0, "reset_timeout": 60000})), Duration::from_millis(1_000));
        let bad =
            LogCounters::from_config(&entry("pip-services:counters:log:default:1.0", json!({"interval": "soon"})));
        assert_eq!(bad.unwrap_err().code, "BAD_CONFIG");
    }

    #[tokio::test]
    async fn log_counters_dump_only_what_changed_and_stop_on_close() {
        let c = LogCounters::new(Duration::from_millis(20));
        c.set_references(&References::new()).unwrap();
        c.open(None).await.unwrap();
        let counter = super::super::metrics::counter_vec("counters_unit_test_total", "t", &["k"]).unwrap();
        counter.with_label_values(&["x"]).inc();
        // The periodic task dumps the change (the registry is shared: other lines may come too).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !c
            .state
            .last
            .lock()
            .iter()
            .any(|l| l.contains("counters_unit_test_total{k=\"x\"} { \"type\": 4, \"count\": 1 }"))
        {
            assert!(std::time::Instant::now() < deadline, "the task never dumped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        c.close(None).await.unwrap();
        assert!(!c.task.is_running(), "the task is joined on close");
        counter.with_label_values(&["x"]).inc();
        let lines = c.dump().await;
        assert!(lines.iter().any(|l| l.contains("counters_unit_test_total{k=\"x\"} { \"type\": 4, \"count\": 2 }")));
        // Dumping again without a change logs nothing, unless another test counted meanwhile.
        let again = c.dump().await;
        assert!(again.is_empty() || again != lines);
    }

    #[test]
    fn push_targets_follow_pips_connection_keys() {
        let target = |v| {
            let s: CountersSettings = entry("pip-services:counters:prometheus:default:1.0", v).section().unwrap();
            push_target(&s)
        };
        assert!(target(json!({})).unwrap().is_none());
        let t = target(json!({"connection": {"host": "gw", "port": "9091"}})).unwrap().unwrap();
        assert_eq!(t.base.as_str(), "http://gw:9091/");
        let t = target(json!({"connection": {"uri": "https://gw.example/base/"}, "options": {"timeout": 500}}))
            .unwrap()
            .unwrap();
        assert_eq!(t.timeout, Duration::from_millis(500));
        assert_eq!(
            push_url(&t.base, "service sessions", "host/1").unwrap().as_str(),
            "https://gw.example/base/metrics/job/service%20sessions/instance/host%2F1"
        );
        assert_eq!(target(json!({"connection": {"host": "gw"}})).unwrap_err().code, "NO_PORT");
        assert_eq!(target(json!({"connection": {"port": 1}})).unwrap_err().code, "NO_HOST");
        assert_eq!(
            target(json!({"connection": {"host": "gw", "port": 1, "protocol": "tcp"}})).unwrap_err().code,
            "WRONG_PROTOCOL"
        );
        assert_eq!(target(json!({"connection": {"discovery_key": "gw"}})).unwrap_err().code, "BAD_CONFIG");
        assert_eq!(target(json!({"connection": {"uri": "not a url"}})).unwrap_err().code, "BAD_CONFIG");
        let off = PrometheusCounters::from_config(&entry(
            "pip-services:counters:prometheus:default:1.0",
            json!({"push_enabled": false, "connection": {"host": "gw", "port": 1}}),
        ))
        .unwrap();
        assert!(off.target.is_none());
    }

    /// A one-shot Pushgateway: answers 200 to the first request and hands back its head and body.
    async fn gateway() -> (u16, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len || n == 0 {
                        break;
                    }
                }
            }
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await.unwrap();
            String::from_utf8_lossy(&buf).to_string()
        });
        (port, task)
    }

    #[tokio::test]
    async fn prometheus_counters_push_the_registry_to_the_gateway() {
        let (port, request) = gateway().await;
        let c = PrometheusCounters::from_config(&entry(
            "pip-services:counters:prometheus:default:1.0",
            json!({"connection": {"protocol": "http", "host": "127.0.0.1", "port": port}, "instance": "i-1"}),
        ))
        .unwrap();
        let refs = References::new();
        let info = Arc::new(super::super::info::ContextInfo { name: "svc".into(), ..Default::default() });
        refs.put(super::super::references::Registration::new(
            Descriptor::new("pip-services", "context-info", "default", "default", "1.0"),
            info,
        ));
        c.set_references(&refs).unwrap();
        assert_eq!(c.push_url().unwrap().as_str(), format!("http://127.0.0.1:{port}/metrics/job/svc/instance/i-1"));
        assert_eq!(c.push().await.unwrap_err().code, "NOT_OPENED");
        c.open(None).await.unwrap();
        super::super::metrics::counter_vec("counters_push_test_total", "t", &[])
            .unwrap()
            .with_label_values(&[] as &[&str])
            .inc();
        c.push().await.unwrap();
        let text = request.await.unwrap();
        assert!(text.starts_with("PUT /metrics/job/svc/instance/i-1 HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("counters_push_test_total 1"), "{text}");
        c.close(None).await.unwrap();
        assert!(!c.task.is_running());
        // A gateway that is gone is a NO_RESPONSE, not a panic.
        assert_eq!(c.push().await.unwrap_err().code, "NO_RESPONSE");
    }

    #[tokio::test]
    async fn passive_prometheus_counters_do_nothing() {
        let c =
            PrometheusCounters::from_config(&entry("pip-services:counters:prometheus:default:1.0", json!({}))).unwrap();
        c.set_references(&References::new()).unwrap();
        c.open(None).await.unwrap();
        assert!(c.push_url().is_none());
        assert!(!c.task.is_running());
        c.close(None).await.unwrap();
    }
}
