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
    let port = crate::process::free_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = crate::process::start_json_logging(port, "debug", &log);
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/sessions/get_session_by_id"))
        .header("x-request-id", "edge-log-7")
        .json(&json!({"session_id": "nobody"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("edge-log-7"));
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
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

/// The sessions service with endpoint `options` (a YAML flow mapping body).
async fn app_with_options(options: &str) -> TestApp {
    let yaml = sessions_yaml("").replace(
        "connection: { protocol: http, host: 127.0.0.1, port: 0 }",
        &format!("connection: {{ protocol: http, host: 127.0.0.1, port: 0 }}\n  options: {{ {options} }}"),
    );
    assert!(yaml.contains("options: {"), "the endpoint entry was found");
    spawn_app(&yaml).await
}

/// An HTTP/2 connection (prior knowledge, as gRPC clients and load balancers speak it), its
/// request handle and the task driving it, which ends when the connection does.
async fn h2_connect(
    address: std::net::SocketAddr,
) -> (h2::client::SendRequest<bytes::Bytes>, tokio::task::JoinHandle<Result<(), h2::Error>>) {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    (send, tokio::spawn(connection))
}

/// One HTTP/2 GET with extra headers: the status, or the error that ended the stream.
async fn h2_get(
    send: &mut h2::client::SendRequest<bytes::Bytes>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<u16, h2::Error> {
    let mut request = http::Request::get(format!("http://localhost{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut ready = send.clone().ready().await?;
    let (response, _) = ready.send_request(request.body(()).unwrap(), true)?;
    *send = ready;
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), response).await.expect("no answer")?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        chunk?;
    }
    Ok(status)
}

/// An HTTP/2 connection that served requests and then goes quiet is closed by the server once
/// it has been idle for the configured timeout (200 ms), while the client keeps its side open
/// and answers pings; the upper bound only guards against a connection that is never closed.
#[tokio::test]
async fn an_idle_http2_connection_is_closed_by_the_server() {
    let app = app_with_options("header_read_timeout: 200").await;
    let (mut send, connection) = h2_connect(app.address).await;
    for _ in 0..3 {
        assert_eq!(h2_get(&mut send, "/heartbeat", &[]).await.ok(), Some(200));
    }
    let ended = tokio::time::timeout(std::time::Duration::from_secs(20), connection).await;
    assert!(ended.is_ok(), "the server never closed the idle HTTP/2 connection");
    assert!(h2_get(&mut send, "/heartbeat", &[]).await.is_err(), "the closed connection takes no request");
    drop(send);
    app.stop().await;
}

/// With `max_header_size: 8192`, an HTTP/2 request whose header list is over the cap is refused
/// with 431 while one under it is served (hyper's own default cap, 16 KiB, would serve both), and
/// the server still answers on a new connection.
#[tokio::test]
async fn an_http2_header_list_over_the_cap_is_refused() {
    let app = app_with_options("max_header_size: 8192").await;
    let (mut send, _connection) = h2_connect(app.address).await;
    let under = "u".repeat(6 * 1024);
    assert_eq!(h2_get(&mut send, "/heartbeat", &[("x-filler", &under)]).await.ok(), Some(200));
    let over = "o".repeat(12 * 1024);
    let refused = h2_get(&mut send, "/heartbeat", &[("x-filler", &over)]).await;
    assert_eq!(refused.ok(), Some(431), "the over-size header list is refused with 431");
    let (mut fresh, _connection) = h2_connect(app.address).await;
    assert_eq!(h2_get(&mut fresh, "/heartbeat", &[]).await.ok(), Some(200));
    app.stop().await;
}
