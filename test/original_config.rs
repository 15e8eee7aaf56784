//! The original service's own `config/config.yml`, unchanged, run by this service's binary under
//! each of its switches (`MEMORY_ENABLED`, `FILE_ENABLED`, `MONGO_ENABLED`, `HTTP_ENABLED`,
//! `GRPC_ENABLED`, and none), checking that it really serves: the drop-in promise of contract §9.
//!
//! The file comes from the installed original (`SESSIONS_NODE_DIR`, see `original.rs`). Every
//! switch variable is removed from the child's environment first, so only the test's own
//! settings reach the template.

use crate::original::{config_path, free_port};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_service-sessions");

/// Every variable the original's config reads.
const SWITCHES: &[&str] = &[
    "MEMORY_ENABLED",
    "FILE_ENABLED",
    "FILE_PATH",
    "MONGO_ENABLED",
    "MONGO_COLLECTION",
    "MONGO_SERVICE_URI",
    "MONGO_SERVICE_HOST",
    "MONGO_SERVICE_PORT",
    "MONGO_DB",
    "MONGO_USER",
    "MONGO_PASS",
    "HTTP_ENABLED",
    "HTTP_PORT",
    "GRPC_ENABLED",
    "GRPC_PORT",
];

/// The binary running the original's config; its stderr lines are collected as they come.
struct Service {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    port: Option<u16>,
    client: reqwest::Client,
}

impl Service {
    /// Starts the binary on the original's config with `env` (plus `HTTP_PORT` on a free port
    /// when `HTTP_ENABLED` is among them), in `cwd` if given.
    fn spawn(env: &[(&str, &str)], cwd: Option<&Path>) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.arg("-c").arg(config_path()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        for k in SWITCHES {
            cmd.env_remove(k);
        }
        cmd.env_remove("LOG_LEVEL").env_remove("LOG_FORMAT");
        let port = env.iter().any(|(k, _)| *k == "HTTP_ENABLED").then(free_port);
        if let Some(port) = port {
            cmd.env("HTTP_PORT", port.to_string());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines, reader: Some(reader), port, client: reqwest::Client::new() }
    }

    /// Starts the binary and waits until its container has started.
    fn start(env: &[(&str, &str)], cwd: Option<&Path>) -> Self {
        let mut s = Self::spawn(env, cwd);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !s.logged("Container started.") {
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("the service exited ({status}): {}", s.stderr());
            }
            assert!(Instant::now() < deadline, "the service did not start: {}", s.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn logged(&self, needle: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    fn stderr(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port.expect("HTTP_ENABLED"))
    }

    /// `POST /v1/sessions/<command>`: status and JSON body (`Null` when empty).
    async fn command(&self, command: &str, body: Value) -> (u16, Value) {
        let r = self.client.post(self.url(&format!("/v1/sessions/{command}"))).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// SIGTERM, then waits for the exit; returns the status and every stderr line.
    fn stop(mut self) -> (ExitStatus, String) {
        assert!(Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success());
        let status = self.wait(Duration::from_secs(30));
        (status, self.stderr())
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "the service did not exit: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        status
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens a session and reads it back; returns it.
async fn open_and_read(s: &Service, user_id: &str) -> Value {
    let (status, opened) = s.command("open_session", json!({"user_id": user_id, "data": {"n": 1}})).await;
    assert_eq!(status, 200, "{opened}");
    assert_eq!((opened["user_id"].as_str(), opened["active"].as_bool()), (Some(user_id), Some(true)));
    let (status, read) = s.command("get_session_by_id", json!({"session_id": opened["id"]})).await;
    assert_eq!((status, &read), (200, &opened));
    opened
}

#[tokio::test]
async fn http_enabled_serves_the_pip_api_and_logs_counters() {
    crate::requires!("SESSIONS_NODE_DIR");
    let s = Service::start(&[("HTTP_ENABLED", "true")], None);
    let (status, body) = s.get("/heartbeat").await;
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<String>(&body).is_ok(), "{body}");
    let opened = open_and_read(&s, "u-http").await;
    let (status, _) = s.command("get_session_by_id", json!({"session_id": ""})).await;
    assert_eq!(status, 204, "an empty id is an unknown id, as in the original");
    let (status, status_body) = s.get("/status").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&status_body).unwrap();
    assert_eq!(v["name"], "service-sessions");
    let components: Vec<&str> = v["components"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for c in [
        "pip-services:counters:log:default:1.0",
        "service-sessions:persistence:memory:default:1.0",
        "service-sessions:service:commandable-http:default:1.0",
        "pip-services:swagger-service:http:default:1.0",
    ] {
        assert!(components.contains(&c), "{c} in {components:?}");
    }
    // `swagger: {enable: true, auto: true}`: the generated document, and the swagger page.
    let (status, doc) = s.get("/v1/sessions/swagger").await;
    assert_eq!(status, 200);
    assert!(doc.contains("/v1/sessions/open_session"), "{doc}");
    let (status, page) = s.get("/swagger").await;
    assert_eq!(status, 200);
    assert!(page.contains("/v1/sessions/swagger"), "{page}");

    let (status, stderr) = s.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
    // `counters:log` reports the request counters (a last dump on close).
    let line = r#"Counter http_requests_total{method="POST",route="/v1/sessions/open_session",status="200"} { "type": 4, "count": 1 }"#;
    assert!(stderr.contains(line), "{stderr}");
    assert!(!stderr.contains(opened["id"].as_str().unwrap()), "session ids never reach the logs");
}

#[tokio::test]
async fn memory_enabled_uses_the_memory_store() {
    crate::requires!("SESSIONS_NODE_DIR");
    let s = Service::start(&[("MEMORY_ENABLED", "1"), ("HTTP_ENABLED", "1")], None);
    open_and_read(&s, "u-memory").await;
    let (_, status_body) = s.get("/status").await;
    let v: Value = serde_json::from_str(&status_body).unwrap();
    let persistence: Vec<&str> = v["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|c| c.contains(":persistence:"))
        .collect();
    assert_eq!(persistence, vec!["service-sessions:persistence:memory:default:1.0"]);
    let (status, stderr) = s.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
}

#[test]
fn no_switch_runs_the_controller_alone_and_stops_on_sigterm() {
    crate::requires!("SESSIONS_NODE_DIR");
    let s = Service::start(&[], None);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!s.logged("HTTP endpoint listening"), "no HTTP without HTTP_ENABLED");
    let (status, stderr) = s.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("Goodbye!"), "{stderr}");
}

#[tokio::test]
async fn file_enabled_persists_across_a_restart() {
    crate::requires!("SESSIONS_NODE_DIR");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store").join("sessions.json");
    let path = path.to_str().unwrap();
    let env = [("FILE_ENABLED", "true"), ("FILE_PATH", path), ("HTTP_ENABLED", "true")];
    let s = Service::start(&env, None);
    let opened = open_and_read(&s, "u-file").await;
    let (status, stderr) = s.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(tmp.path().join("store").join("sessions").is_dir(), "a `.json` path names the store folder beside it");

    let s = Service::start(&env, None);
    let (status, read) = s.command("get_session_by_id", json!({"session_id": opened["id"]})).await;
    assert_eq!((status, read), (200, opened));
    let (status, stderr) = s.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
}

/// Without `FILE_PATH` the original's default `../data/sessions.json` is used, relative to the
/// working directory; a JSON file the original wrote there is imported.
#[tokio::test]
async fn file_enabled_imports_the_originals_json_file_at_its_default_path() {
    crate::requires!("SESSIONS_NODE_DIR");
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let now = service_sessions::toolkit::time::format_time(chrono::Utc::now());
    let node = json!([{"id": "0123456789abcdef0123456789abcdef", "user_id": "u-node", "user_name": null,
        "address": null, "client": null, "active": true, "open_time": now, "request_time": now,
        "user": null, "data": {"cart": [1, 2]}}]);
    std::fs::write(data.join("sessions.json"), node.to_string()).unwrap();
    let s = Service::start(&[("FILE_ENABLED", "true"), ("HTTP_ENABLED", "true")], Some(&work));
    let (status, read) =
        s.command("get_session_by_id", json!({"session_id": "0123456789abcdef0123456789abcdef"})).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!((read["user_id"].as_str(), &read["data"]), (Some("u-node"), &json!({"cart": [1, 2]})));
    let (status, stderr) = s.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(data.join("sessions").is_dir());
}

/// `GRPC_ENABLED` (with `HTTP_ENABLED`): the original's config serves all three transports —
/// commandable HTTP, `sessions_v1.proto` and commandable gRPC on `GRPC_PORT` — over one store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_enabled_serves_all_three_transports() {
    crate::requires!("SESSIONS_NODE_DIR");
    use service_sessions::clients::version1::{
        GrpcClientSettings, SessionsClientV1, SessionsCommandableGrpcClientV1, SessionsGrpcClientV1,
    };
    use service_sessions::data::version1::OpenSessionRequest;
    let grpc_port = free_port().to_string();
    let s = Service::start(&[("GRPC_ENABLED", "true"), ("GRPC_PORT", &grpc_port), ("HTTP_ENABLED", "true")], None);
    let settings = GrpcClientSettings::for_uri(&format!("http://127.0.0.1:{grpc_port}"));
    let typed = SessionsGrpcClientV1::new(&settings).unwrap();
    let commandable = SessionsCommandableGrpcClientV1::new(&settings).unwrap();
    let opened =
        typed.open_session(None, OpenSessionRequest { user_id: "u1".into(), ..Default::default() }).await.unwrap();
    let over_grpc = commandable.get_session_by_id(None, &opened.id).await.unwrap().unwrap();
    assert_eq!((over_grpc.user_id.as_str(), over_grpc.open_time), ("u1", opened.open_time));
    let (status, over_http) = s.command("get_session_by_id", json!({"session_id": opened.id})).await;
    assert_eq!((status, over_http["user_id"].as_str()), (200, Some("u1")));
    let (status, stderr) = s.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
}

/// Every descriptor of Pip's standard factories that a Pip config may carry is accepted, and the
/// ones that do something here do it: the Prometheus metrics service serves `/metrics`,
/// `swagger.auto: false` serves no document, a `container-info` names the service.
#[tokio::test]
async fn pip_standard_descriptors_are_accepted() {
    let yaml = r#"
- descriptor: "pip-services:container-info:default:default:1.0"
  name: "sessions-from-container-info"
- descriptor: "pip-services:logger:null:default:1.0"
- descriptor: "pip-services:logger:composite:default:1.0"
- descriptor: "pip-services:counters:log:default:1.0"
  level: trace
  options: { interval: 60000, reset_timeout: 0 }
- descriptor: "pip-services:counters:prometheus:default:1.0"
- descriptor: "pip-services:counters:null:default:1.0"
- descriptor: "pip-services:counters:composite:default:1.0"
- descriptor: "pip-services:tracer:null:default:1.0"
- descriptor: "pip-services:tracer:log:default:1.0"
  options: { log_level: debug }
- descriptor: "pip-services:tracer:composite:default:1.0"
- descriptor: "pip-services:cache:null:default:1.0"
- descriptor: "pip-services:cache:memory:default:1.0"
  options: { timeout: 60000, max_size: 1000 }
- descriptor: "pip-services:credential-store:memory:default:1.0"
  key1: { username: "u", password: "p" }
- descriptor: "pip-services:discovery:memory:default:1.0"
  key2: "host=localhost;port=8080"
- descriptor: "pip-services:config-reader:yaml:default:1.0"
  path: "./config/config.yml"
- descriptor: "service-sessions:persistence:memory:default:1.0"
- descriptor: "service-sessions:controller:default:default:1.0"
- descriptor: "pip-services:endpoint:http:default:1.0"
  connection: { protocol: http, host: 127.0.0.1, port: 0 }
- descriptor: "service-sessions:service:commandable-http:default:1.0"
  swagger: { enable: true, auto: false }
- descriptor: "pip-services:heartbeat-service:http:default:1.0"
- descriptor: "pip-services:status-service:http:default:1.0"
- descriptor: "pip-services:swagger-service:http:default:1.0"
- descriptor: "pip-services:metrics-service:prometheus:default:1.0"
"#;
    let app = crate::helpers::spawn_app(yaml).await;
    let s = app.open("u-standard").await;
    let metrics = app.request(reqwest::Method::GET, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains(r#"sessions_events_total{event="opened"}"#), "{}", metrics.body);
    let doc = app.request(reqwest::Method::GET, "/v1/sessions/swagger").await;
    assert_eq!(doc.status, 404, "swagger.auto: false serves no document");
    let status = app.request(reqwest::Method::GET, "/status").await.json();
    assert_eq!(status["name"], "sessions-from-container-info");
    assert_eq!(status["components"].as_array().unwrap().len(), 23, "{status}");
    let a = app.command("get_session_by_id", json!({"session_id": s["id"]})).await;
    assert_eq!(a.status, 200);
    app.stop().await;
}
