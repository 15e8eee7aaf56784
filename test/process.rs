//! The `service-sessions` binary as a process: help, start-up failures, signals and exit codes.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_service-sessions");

fn free_port() -> u16 {
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

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "service did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_and_signal(signal: &str) {
    let port = free_port();
    let mut child = Command::new(BIN)
        .args([
            "-c",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/config.yml"),
            "-p",
            &format!("HTTP_PORT={port};LOG_LEVEL=warn"),
        ])
        .env_remove("HTTP_PORT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port);
    let reply = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
        use std::io::Read;
        s.write_all(b"GET /heartbeat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    });
    assert!(reply.unwrap().starts_with("HTTP/1.1 200"));
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
