//! The `service-sessions` binary as a process: help, start-up failures, signals and exit codes.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_service-sessions");

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn help_prints_usage_and_exits_zero() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--config") && text.contains("--param"), "{text}");
}

#[test]
fn a_missing_or_bad_config_exits_one_with_every_reason() {
    let out = Command::new(BIN).args(["-c", "/nonexistent/config.yml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the configuration file"));
    let bad = config_file("- descriptor: \"service-sessions:persistence:nosuch:default:1.0\"\n- descriptor: \"pip-services:endpoint:http:default:1.0\"\n  connection: { port: \"x\" }\n");
    let out = Command::new(BIN).args(["-c", bad.path().to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Configuration has 2 problem(s)"), "{err}");
    assert!(err.contains("  - Component #1 (service-sessions:persistence:nosuch:default:1.0)"), "{err}");
    assert!(err.contains("  - Component #2 (pip-services:endpoint:http:default:1.0)"), "{err}");
}

/// A malformed descriptor, an unknown one and a bad setting of another component: all three are
/// listed at once (file order), each on its own stderr line, and the process exits 1.
#[test]
fn every_configuration_problem_is_listed_at_once() {
    let bad = config_file(
        r#"
- descriptor: "pip-services:logger:console:default:1.0"
  level: info
- descriptor: "service-sessions:persistence"
- descriptor: "service-sessions:persistence:nosuch:default:1.0"
- descriptor: "service-sessions:controller:default:default:1.0"
  options: { expire_timeout: "soon" }
- descriptor: "pip-services:counters:log:default:1.0"
  interval: 1000
"#,
    );
    let out = Command::new(BIN).args(["-c", bad.path().to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed to start: Configuration has 3 problem(s)"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("  - ")).collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines[0].starts_with("  - Component #2: Descriptor \"service-sessions:persistence\""), "{err}");
    assert_eq!(
        lines[1],
        "  - Component #3 (service-sessions:persistence:nosuch:default:1.0): No factory can create component service-sessions:persistence:nosuch:default:1.0"
    );
    assert!(
        lines[2]
            .starts_with("  - Component #4 (service-sessions:controller:default:default:1.0): invalid value \"soon\""),
        "{err}"
    );
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "service did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Starts the real binary with the shipped config on `port` and waits until it listens.
fn start_service(port: u16, log_level: &str) -> std::process::Child {
    let child = Command::new(BIN)
        .args(["-c", concat!(env!("CARGO_MANIFEST_DIR"), "/config/config.yml")])
        .args(["-p", &format!("HTTP_PORT={port};LOG_LEVEL={log_level}")])
        .env_remove("HTTP_PORT")
        .env_remove("LOG_LEVEL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port);
    child
}

fn run_and_signal(signal: &str) {
    let port = free_port();
    let mut child = start_service(port, "warn");
    assert!(http_get(port, "/heartbeat").starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    assert!(Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap().success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "did not exit after {signal}");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0), "{signal} exits 0");
}

#[test]
fn sigterm_closes_and_exits_zero() {
    run_and_signal("-TERM");
}

#[test]
fn sigint_closes_and_exits_zero() {
    run_and_signal("-INT");
}

/// Loggers configured but no console logger among them (Pip's null logger): the process logs
/// nothing at all.
#[test]
fn a_null_logger_silences_the_process() {
    let port = free_port();
    let cfg = config_file(&format!(
        "- descriptor: \"pip-services:logger:null:default:1.0\"\n\
         - descriptor: \"pip-services:endpoint:http:default:1.0\"\n  connection: {{ host: 127.0.0.1, port: {port} }}\n\
         - descriptor: \"pip-services:heartbeat-service:http:default:1.0\"\n"
    ));
    let mut child = Command::new(BIN)
        .args(["-c", cfg.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_listening(port);
    assert!(http_get(port, "/heartbeat").starts_with("HTTP/1.1 200"));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let _ = child.try_wait();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
}

/// Starts the real binary with the shipped config on `port`, JSON logs at `level` written to `log`,
/// and waits until it listens.
pub(crate) fn start_json_logging(port: u16, level: &str, log: &tempfile::NamedTempFile) -> std::process::Child {
    let child = Command::new(BIN)
        .args(["-c", concat!(env!("CARGO_MANIFEST_DIR"), "/config/config.yml")])
        .args(["-p", &format!("HTTP_PORT={port};LOG_LEVEL={level};LOG_FORMAT=json")])
        .env_remove("HTTP_PORT")
        .env_remove("LOG_LEVEL")
        .env_remove("LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    wait_listening(port);
    child
}

/// Runs the real binary at trace level with JSON logs, exercises every command with marked
/// values, and checks that no session id, `user` or `data` value reaches any log line.
#[tokio::test]
async fn logs_never_carry_session_ids_or_payloads() {
    let port = free_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = start_json_logging(port, "trace", &log);
    let client = reqwest::Client::new();
    let call = |cmd: &str, body: serde_json::Value| {
        let req = client.post(format!("http://127.0.0.1:{port}/v1/sessions/{cmd}?correlation_id=corr-1")).json(&body);
        async move {
            let r = req.send().await.unwrap();
            let text = r.text().await.unwrap();
            serde_json::from_str::<serde_json::Value>(&text).unwrap_or(serde_json::Value::Null)
        }
    };
    let s = call("open_session", serde_json::json!({"user_id": "user-marker-7", "user": {"pw": "USER-SECRET-1"}, "data": {"k": "DATA-SECRET-2"}})).await;
    let id = s["id"].as_str().unwrap().to_string();
    call("store_session_data", serde_json::json!({"session_id": id, "data": "DATA-SECRET-3"})).await;
    call("update_session_user", serde_json::json!({"session_id": id, "user": "USER-SECRET-4"})).await;
    call("get_session_by_id", serde_json::json!({"session_id": id})).await;
    call("get_sessions", serde_json::json!({"filter": {"user_id": "user-marker-7"}})).await;
    let rotated = call("rotate_session_id", serde_json::json!({"session_id": id})).await;
    let new_id = rotated["id"].as_str().unwrap().to_string();
    call("close_session", serde_json::json!({"session_id": new_id})).await;
    call("store_session_data", serde_json::json!({"session_id": new_id, "data": "DATA-SECRET-5"})).await;
    call("delete_session_by_id", serde_json::json!({"session_id": new_id})).await;
    call("get_session_by_id", serde_json::json!({"session_id": "bad id!"})).await;
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert_eq!(child.wait().unwrap().code(), Some(0));

    let text = std::fs::read_to_string(log.path()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 10, "trace logs were written");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        assert!(v.get("level").is_some());
    }
    for secret in [id.as_str(), new_id.as_str(), "USER-SECRET", "DATA-SECRET"] {
        assert!(!text.contains(secret), "{secret} leaked into the logs");
    }
    assert!(text.contains("Effective configuration."));
    assert!(text.contains("corr-1"), "request spans carry the correlation id");
    assert!(text.contains("\"session\":\""), "session events are logged with a hashed id");
}

/// A request in flight when SIGTERM arrives completes; the listener closes first; exit 0.
#[test]
fn sigterm_lets_in_flight_requests_finish() {
    use std::io::Read;
    let port = free_port();
    let mut child = start_service(port, "warn");
    let body = br#"{"user_id":"in-flight","data":{"n":1}}"#;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST /v1/sessions/open_session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..10]).unwrap();
    stream.flush().unwrap();
    // Wait until the server is inside that request (it waits for the rest of the body): the
    // in-flight gauge counts it plus the scrape itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(port, "/metrics").lines().all(|l| !l.starts_with("http_requests_in_flight 2")) {
        assert!(Instant::now() < deadline, "the request never got in flight");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "the listener did not close");
        std::thread::sleep(Duration::from_millis(10));
    }
    stream.write_all(&body[10..]).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(r#""user_id":"in-flight""#), "{reply}");
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
}

/// Ten thousand simultaneous connections to the real binary: all are held open at once, each
/// then gets its answer, and the service keeps serving. (A connection that sends no request head
/// is closed `header_read_timeout` after its accept; opening ten thousand takes longer than the
/// default 10 s on a busy machine, so this test allows two minutes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = free_port();
    let cfg = small_endpoint(port, "header_read_timeout: 120000");
    let mut child = start_with_config(&cfg, port);
    let mut streams = Vec::with_capacity(10_000);
    for batch in 0..20 {
        let connects = (0..500).map(|_| tokio::net::TcpStream::connect(("127.0.0.1", port)));
        for s in futures::future::join_all(connects).await {
            streams.push(s.unwrap_or_else(|e| panic!("connection in batch {batch} failed: {e}")));
        }
    }
    assert_eq!(streams.len(), 10_000);
    let requests = streams.into_iter().map(|mut s| async move {
        s.write_all(b"GET /heartbeat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out.starts_with(b"HTTP/1.1 200"))
    });
    let results = futures::future::join_all(requests).await;
    let ok = results.iter().filter(|r| matches!(r, Ok(true))).count();
    assert_eq!(ok, 10_000, "every connection was answered");
    assert!(http_get(port, "/heartbeat").starts_with("HTTP/1.1 200"));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// Starts the binary on `config` (a YAML text) and waits until it listens on `port`.
fn start_with_config(config: &tempfile::NamedTempFile, port: u16) -> std::process::Child {
    let child = Command::new(BIN)
        .args(["-c", config.path().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port);
    child
}

fn small_endpoint(port: u16, options: &str) -> tempfile::NamedTempFile {
    config_file(&format!(
        "- descriptor: \"pip-services:logger:console:default:1.0\"\n  level: error\n\
         - descriptor: \"service-sessions:persistence:memory:default:1.0\"\n\
         - descriptor: \"service-sessions:controller:default:default:1.0\"\n\
         - descriptor: \"pip-services:endpoint:http:default:1.0\"\n  connection: {{ host: 127.0.0.1, port: {port} }}\n  options: {{ {options} }}\n\
         - descriptor: \"service-sessions:service:commandable-http:default:1.0\"\n\
         - descriptor: \"pip-services:heartbeat-service:http:default:1.0\"\n\
         - descriptor: \"pip-services:prometheus-service:http:default:1.0\"\n"
    ))
}

/// Whether the server closed the socket (EOF or reset) before the client gave up (30 s): the
/// server's deadline is 300 ms, so only a connection that is never closed reaches the limit.
fn closed_by_server(mut s: std::net::TcpStream) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => true,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

/// Connections that never send a complete request head — nothing, one byte, an HTTP/2 preface
/// with or without SETTINGS — are closed, timed from the accept; with `max_connections: 4`, eight
/// of them cannot keep the service from answering.
#[test]
fn silent_connections_are_closed_from_accept() {
    let port = free_port();
    let cfg = small_endpoint(port, "header_read_timeout: 300, max_connections: 4");
    let mut child = start_with_config(&cfg, port);
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let settings: Vec<u8> = [PREFACE, &[0, 0, 0, 4, 0, 0, 0, 0, 0][..]].concat();
    let sends: [&[u8]; 8] = [b"", b"P", PREFACE, &settings, b"", b"G", PREFACE, &settings];
    let sockets: Vec<std::net::TcpStream> = sends
        .iter()
        .map(|bytes| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(bytes).unwrap();
            s
        })
        .collect();
    let closed: Vec<bool> = sockets
        .into_iter()
        .map(|s| std::thread::spawn(move || closed_by_server(s)))
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(closed, vec![true; 8], "every silent connection was closed by the server");
    assert!(http_get(port, "/heartbeat").starts_with("HTTP/1.1 200"));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

fn raw_request(port: u16, head: &str) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Made-up methods on unrouted paths (404) and on routed ones (405) become one `other` label:
/// no request creates a metric series; a long method or path is not echoed in the error body; a
/// request head beyond `max_header_size` is refused.
#[test]
fn made_up_methods_share_one_metric_label() {
    let port = free_port();
    let cfg = small_endpoint(port, "max_header_size: 16384");
    let mut child = start_with_config(&cfg, port);
    for i in 0..50 {
        let a = raw_request(port, &format!("XMETHOD{i} /nowhere/{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
        assert!(a.starts_with("HTTP/1.1 404"), "{a}");
        let b = raw_request(
            port,
            &format!("YMETHOD{i} /v1/sessions/get_sessions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        assert!(b.starts_with("HTTP/1.1 405"), "{b}");
    }
    let long_method = "Z".repeat(5_000);
    let long_path = format!("/{}", "p".repeat(5_000));
    let a = raw_request(port, &format!("{long_method} {long_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    assert!(a.starts_with("HTTP/1.1 404"), "{}", &a[..a.len().min(300)]);
    assert!(a.len() < 2_000, "the 404 body does not echo the method or path: {} bytes", a.len());
    let big =
        raw_request(port, &format!("GET /heartbeat HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(20_000)));
    assert!(big.is_empty() || big.starts_with("HTTP/1.1 431"), "{}", &big[..big.len().min(300)]);
    let metrics = http_get(port, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"));
    assert!(!metrics.contains("METHOD") && !metrics.contains("ZZZZ"), "a client's method became a label");
    assert!(metrics.contains(r#"http_requests_total{method="other",route="unmatched",status="404"} 51"#), "{metrics}");
    assert!(metrics.contains(r#"method="other",route="unmatched",status="405"} 50"#), "{metrics}");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// Listening on a non-loopback address with no API keys logs a warning at start-up; on loopback
/// it does not.
#[test]
fn a_public_bind_without_keys_warns() {
    for (host, warned) in [("0.0.0.0", true), ("127.0.0.1", false)] {
        let port = free_port();
        let cfg = config_file(&format!(
            "- descriptor: \"pip-services:logger:console:default:1.0\"\n  level: warn\n\
             - descriptor: \"pip-services:endpoint:http:default:1.0\"\n  connection: {{ host: {host}, port: {port} }}\n\
             - descriptor: \"pip-services:heartbeat-service:http:default:1.0\"\n"
        ));
        let mut child = Command::new(BIN)
            .args(["-c", cfg.path().to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_listening(port);
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
        let _ = child.try_wait();
        let out = child.wait_with_output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(text.contains("without API keys"), warned, "{host}: {text}");
    }
}

/// `max_connections` above what the open-file limit allows is lowered at start-up, with a
/// warning naming both numbers (the limit set here with `prlimit`).
#[test]
fn max_connections_stay_under_the_open_file_limit() {
    let Ok(status) = Command::new("prlimit").arg("--version").output() else { return };
    assert!(status.status.success());
    let port = free_port();
    let cfg = config_file(&format!(
        "- descriptor: \"pip-services:logger:console:default:1.0\"\n  level: warn\n\
         - descriptor: \"pip-services:endpoint:http:default:1.0\"\n  connection: {{ host: 127.0.0.1, port: {port} }}\n  options: {{ max_connections: 20000 }}\n\
         - descriptor: \"pip-services:heartbeat-service:http:default:1.0\"\n"
    ));
    let mut child = Command::new("prlimit")
        .args(["--nofile=1024:1024", "--", BIN, "-c", cfg.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_listening(port);
    assert!(http_get(port, "/heartbeat").starts_with("HTTP/1.1 200"));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let _ = child.try_wait();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("open-file limit") && text.contains("768"), "{text}");
}
