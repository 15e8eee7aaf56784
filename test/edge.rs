//! The HTTP endpoint at the edge of a deployment, over real sockets: correlation ids taken from
//! `X-Request-Id` and W3C `traceparent` and echoed on every response; HTTP/2 idle connections
//! closed by the server; HTTP/2 header lists over the cap refused.

use crate::helpers::{sessions_yaml, spawn_app, Answer, TestApp};
use serde_json::json;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn app() -> TestApp {
    spawn_app(&format!("{}- descriptor: \"service-sessions:service:rest:default:1.0\"\n", sessions_yaml(""))).await
}

/// `POST /v1/sessions/<command>` with extra headers and a query string.
async fn command(
    app: &TestApp,
    command: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: serde_json::Value,
) -> Answer {
    let mut req = app.client.post(app.url(&format!("/v1/sessions/{command}{query}"))).json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    Answer { status, headers, body: r.text().await.unwrap() }
}

#[tokio::test]
async fn x_request_id_is_the_correlation_id_and_is_echoed() {
    let app = app().await;
    let a = command(&app, "open_session", "", &[("x-request-id", "edge-req-1")], json!({"user_id": "u1"})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-request-id"), Some("edge-req-1"));
    // An error carries it in the body and the header.
    let a = command(&app, "open_session", "", &[("x-request-id", "edge-req-2")], json!({})).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["correlation_id"], "edge-req-2");
    assert_eq!(a.header("x-request-id"), Some("edge-req-2"));
    // So does an answer the endpoint gives itself (no such route), and a 204.
    let a = command(&app, "no_such_command", "", &[("x-request-id", "edge-req-3")], json!({})).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["correlation_id"], "edge-req-3");
    assert_eq!(a.header("x-request-id"), Some("edge-req-3"));
    let a = command(&app, "get_session_by_id", "", &[("x-request-id", "edge-req-4")], json!({"session_id": "x"})).await;
    assert_eq!(a.status, 204);
    assert_eq!(a.header("x-request-id"), Some("edge-req-4"));
    // The REST service reads the same id.
    let r = app
        .client
        .get(app.url("/api/v1/sessions/unknown-id"))
        .header("x-request-id", "edge-rest")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("edge-rest"));
    app.stop().await;
}

#[tokio::test]
async fn traceparent_gives_its_trace_id_and_pip_sources_come_first() {
    let app = app().await;
    let a = command(&app, "open_session", "", &[("traceparent", TRACEPARENT)], json!({})).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["correlation_id"], TRACE_ID);
    assert_eq!(a.header("x-request-id"), Some(TRACE_ID));
    // X-Request-Id before traceparent; Pip's query and header before both.
    let both = [("x-request-id", "edge-first"), ("traceparent", TRACEPARENT)];
    let a = command(&app, "open_session", "", &both, json!({})).await;
    assert_eq!(a.json()["correlation_id"], "edge-first");
    let a = command(&app, "open_session", "?correlation_id=pip-query", &both, json!({})).await;
    assert_eq!(a.json()["correlation_id"], "pip-query");
    assert_eq!(a.header("x-request-id"), Some("pip-query"));
    let mut with_header = both.to_vec();
    with_header.push(("correlation_id", "pip-header"));
    let a = command(&app, "open_session", "", &with_header, json!({})).await;
    assert_eq!(a.json()["correlation_id"], "pip-header");
    assert_eq!(a.header("x-request-id"), Some("pip-header"));
    app.stop().await;
}

#[tokio::test]
async fn bad_edge_ids_are_ignored_and_never_echoed() {
    let app = app().await;
    let long = "r".repeat(129);
    for bad in [long.as_str(), "two words", "tab\there"] {
        let a = command(&app, "open_session", "", &[("x-request-id", bad)], json!({})).await;
        assert_eq!(a.status, 400);
        assert!(a.json().get("correlation_id").is_none_or(serde_json::Value::is_null), "{bad}: {}", a.body);
        assert_eq!(a.header("x-request-id"), None, "{bad}");
    }
    // A bad X-Request-Id falls through to a good traceparent.
    let a =
        command(&app, "open_session", "", &[("x-request-id", "two words"), ("traceparent", TRACEPARENT)], json!({}))
            .await;
    assert_eq!(a.json()["correlation_id"], TRACE_ID);
    let zero = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    let a = command(&app, "open_session", "", &[("traceparent", zero)], json!({})).await;
    assert_eq!(a.header("x-request-id"), None);
    // A query correlation id that cannot be a header value is still used, but not echoed.
    let a = command(&app, "open_session", "?correlation_id=a%20b", &[], json!({})).await;
    assert_eq!(a.json()["correlation_id"], "a b");
    assert_eq!(a.header("x-request-id"), None);
    // No id at all: none is made up.
    let a = command(&app, "open_session", "", &[], json!({"user_id": "u"})).await;
    assert_eq!(a.header("x-request-id"), None);
    app.stop().await;
}

/// The real binary with JSON logs at debug level: the request's log line carries the id taken
/// from `X-Request-Id`.
#[tokio::test]
async fn the_request_log_line_carries_the_edge_id() {
    use std::process::{Command, Stdio};
    let port = crate::process::free_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_service-sessions"))
        .args(["-c", concat!(env!("CARGO_MANIFEST_DIR"), "/config/config.yml")])
        .args(["-p", &format!("HTTP_PORT={port};LOG_LEVEL=debug;LOG_FORMAT=json")])
        .env_remove("HTTP_PORT")
        .env_remove("LOG_LEVEL")
        .env_remove("LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    crate::process::wait_listening(port);
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/sessions/get_session_by_id"))
        .header("x-request-id", "edge-log-7")
        .json(&json!({"session_id": "nobody"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("edge-log-7"));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let text = std::fs::read_to_string(log.path()).unwrap();
    let served: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.to_string().contains("Request served."))
        .collect();
    assert_eq!(served.len(), 1, "{text}");
    assert!(served[0].to_string().contains(r#""correlation_id":"edge-log-7""#), "{}", served[0]);
}
