//! Hostile and malformed input, black-box over HTTP: every case gets the documented 4xx
//! ErrorDescription (or a closed connection for transport abuse), never a 5xx, a panic, a stack
//! trace or an echo of the input; the service keeps answering afterwards.

use crate::helpers::{spawn_app, Answer, TestApp};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const YAML: &str = r#"
- descriptor: "service-sessions:persistence:memory:default:1.0"
- descriptor: "service-sessions:controller:default:default:1.0"
  options: { cleanup_interval: 0 }
- descriptor: "pip-services:endpoint:http:default:1.0"
  connection: { protocol: http, host: 127.0.0.1, port: 0 }
  options: { header_read_timeout: 300, body_read_timeout: 300 }
- descriptor: "service-sessions:service:commandable-http:default:1.0"
- descriptor: "pip-services:heartbeat-service:http:default:1.0"
"#;

async fn app() -> TestApp {
    spawn_app(YAML).await
}

/// A documented client error: exact status and code, the ErrorDescription shape, nothing leaked.
fn client_error(a: &Answer, status: u16, code: &str) -> Value {
    assert_eq!(a.status, status, "{}", &a.body[..a.body.len().min(300)]);
    let v = a.json();
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["status"], status);
    for key in ["type", "category", "message", "details", "correlation_id", "cause"] {
        assert!(v.get(key).is_some(), "{key} missing in {v}");
    }
    let text = v.to_string();
    for leak in ["stack", "src/", ".rs:", "panicked", "/root", "/home"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    v
}

async fn alive(app: &TestApp) {
    assert_eq!(app.request(reqwest::Method::GET, "/heartbeat").await.status, 200);
}

#[tokio::test]
async fn malformed_bodies() {
    let app = app().await;
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (br#"{"user_id": "#.to_vec(), 400, "INVALID_JSON"),
        (b"{user_id: 1}".to_vec(), 400, "INVALID_JSON"),
        (b"[]".to_vec(), 400, "INVALID_DATA"),
        (br#""text""#.to_vec(), 400, "INVALID_DATA"),
        (b"17".to_vec(), 400, "INVALID_DATA"),
        (b"true".to_vec(), 400, "INVALID_DATA"),
        (b"null".to_vec(), 400, "INVALID_DATA"),
        (vec![b'{', b'"', 0xc3, 0x28, b'"', b':', b'1', b'}'], 400, "INVALID_JSON"),
        (b"{} trailing".to_vec(), 400, "INVALID_JSON"),
        (b"".to_vec(), 400, "INVALID_DATA"),
    ];
    assert!(!cases.is_empty());
    for (body, status, code) in cases {
        let a = app.post_raw("/v1/sessions/open_session", body.clone(), Some("application/json")).await;
        let v = client_error(&a, status, code);
        if code == "INVALID_JSON" {
            assert!(!v["message"].as_str().unwrap().contains("user_id"), "the body is not echoed");
        }
    }
    let empty = app.post_raw("/v1/sessions/get_sessions", "", None).await;
    assert_eq!(empty.status, 200, "an empty body is {{}} for commands without required parameters");
    client_error(
        &app.post_raw("/v1/sessions/open_session", "<a/>", Some("text/xml")).await,
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    );
    client_error(
        &app.post_raw("/v1/sessions/open_session", "{}", Some("multipart/form-data")).await,
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    );
    // What a browser's simple cross-origin request can send never reaches a command.
    let body = r#"{"user_id": "u"}"#;
    for ct in [Some("text/plain"), Some("text/plain;charset=UTF-8"), Some("application/x-www-form-urlencoded"), None] {
        for cmd in ["open_session", "get_sessions"] {
            let a = app.post_raw(&format!("/v1/sessions/{cmd}"), body, ct).await;
            client_error(&a, 415, "UNSUPPORTED_MEDIA_TYPE");
        }
    }
    let charset = app.post_raw("/v1/sessions/get_sessions", "{}", Some("application/json; charset=utf-8")).await;
    assert_eq!(charset.status, 200);
    assert_eq!(app.post_raw("/v1/sessions/get_sessions", " \n", Some("text/plain")).await.status, 200);
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    client_error(&app.post_raw("/v1/sessions/open_session", deep, Some("application/json")).await, 400, "INVALID_JSON");
    let deep_obj = format!(r#"{{"user_id":"u","data":{}1{}}}"#, r#"{"a":"#.repeat(5_000), "}".repeat(5_000));
    client_error(
        &app.post_raw("/v1/sessions/open_session", deep_obj, Some("application/json")).await,
        400,
        "INVALID_JSON",
    );
    alive(&app).await;
}

#[tokio::test]
async fn missing_null_and_wrong_typed_parameters() {
    let app = app().await;
    let id = "0123456789abcdef0123456789abcdef";
    let cases = [
        ("open_session", json!({"user_id": null}), "user_id must not be null"),
        ("open_session", json!({"user_id": ["u"]}), "user_id type must be string but found array"),
        ("open_session", json!({"user_id": {"a": 1}}), "user_id type must be string but found map"),
        ("open_session", json!({"user_id": true}), "user_id type must be string but found boolean"),
        ("open_session", json!({"user_id": 1.5}), "user_id type must be string but found double"),
        ("open_session", json!({"user_id": "u", "client": 1}), "client type must be string but found long"),
        ("open_session", json!({"user_id": "u", "ttl": "1000"}), "ttl type must be integer but found string"),
        ("get_session_by_id", json!({"session_id": null}), "session_id must not be null"),
        ("get_session_by_id", json!({"session_id": 5}), "session_id type must be string but found long"),
        ("store_session_data", json!({"session_id": id}), "data must not be null"),
        ("store_session_data", json!({"data": 1}), "session_id must not be null"),
        ("store_session_data", json!({"session_id": id, "data": 1, "version": 0}), "version must be at least 1"),
        ("update_session_user", json!({"session_id": id, "user": null}), "user must not be null"),
        ("close_session", json!({"session_id": []}), "session_id type must be string but found array"),
        ("delete_session_by_id", json!({}), "session_id must not be null"),
        ("get_sessions", json!({"filter": 5}), "filter type must be map but found long"),
        ("get_sessions", json!({"paging": "all"}), "paging type must be map but found string"),
        ("get_sessions", json!({"paging": {"skip": -1}}), "paging.skip must be at least 0"),
        ("get_sessions", json!({"paging": {"take": -5}}), "paging.take must be at least 0"),
        ("get_sessions", json!({"paging": {"take": 1e300}}), "paging.take type must be integer but found double"),
        ("get_sessions", json!({"paging": {"take": "10"}}), "paging.take type must be integer but found string"),
        ("close_user_sessions", json!({"user_id": 7}), "user_id type must be string but found long"),
    ];
    for (cmd, body, message) in cases {
        let v = client_error(&app.command(cmd, body.clone()).await, 400, "INVALID_DATA");
        assert_eq!(v["message"], format!("Validation failed: {message}"), "{cmd} {body}");
        assert!(v["details"]["results"].as_array().is_some_and(|r| !r.is_empty()));
    }
    for date in ["yesterday", "2026-13-45", "", "1700000000", "2026-01-01T25:00:00Z"] {
        let a = app.command("get_sessions", json!({"filter": {"from_time": date}})).await;
        client_error(&a, 400, "INVALID_DATA");
    }
    let huge =
        app.command("get_sessions", json!({"paging": {"skip": i64::MAX, "take": i64::MAX, "total": true}})).await;
    assert_eq!((huge.status, huge.json()["data"].clone(), huge.json()["total"].clone()), (200, json!([]), json!(0)));
    alive(&app).await;
}

/// Items 7–9 of the hardening round: filters fail closed, blank users are refused, integers
/// beyond int64 are out of range (never read as "absent").
#[tokio::test]
async fn filters_fail_closed_and_integers_stay_in_range() {
    let app = app().await;
    let mine = app.open("alice").await;
    app.open("bob").await;
    let ids = |a: &Answer| -> Vec<String> {
        assert_eq!(a.status, 200, "{}", a.body);
        a.json()["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
    };
    for empty in [json!({"user_id": ""}), json!({"id": ""}), json!({"user_id": "", "active": true})] {
        let a = app.command("get_sessions", json!({"filter": empty})).await;
        assert_eq!(ids(&a), Vec::<String>::new(), "{empty} is a value, not a dropped filter");
    }
    let nulls = json!({"filter": {"user_id": null, "id": null, "active": null, "from_time": null, "to_time": null}});
    assert_eq!(ids(&app.command("get_sessions", nulls).await).len(), 2, "null is no filter");
    let alice = app.command("get_sessions", json!({"filter": {"user_id": "alice", "unknown": {"$ne": 1}}})).await;
    assert_eq!(ids(&alice), vec![mine["id"].as_str().unwrap().to_string()], "unknown keys stay ignored");
    for bad in [
        json!({"user_id": {"$ne": null}}),
        json!({"user_id": [1]}),
        json!({"user_id": 1}),
        json!({"user_id": true}),
        json!({"id": {}}),
        json!({"id": ["x"]}),
        json!({"from_time": {}}),
        json!({"to_time": [1]}),
        json!({"from_time": 0}),
        json!({"active": 2}),
        json!({"active": -1}),
        json!({"active": {}}),
        json!({"active": [true]}),
    ] {
        let v = client_error(&app.command("get_sessions", json!({"filter": bad.clone()})).await, 400, "INVALID_DATA");
        assert!(v["message"].as_str().unwrap().starts_with("Validation failed: filter."), "{bad}: {v}");
    }
    for blank in ["", " ", "\t \n"] {
        let v = client_error(&app.command("open_session", json!({"user_id": blank})).await, 400, "INVALID_DATA");
        assert_eq!(v["message"], "Validation failed: user_id must not be empty or blank");
    }
    let id = mine["id"].as_str().unwrap();
    let beyond = u64::MAX;
    for (cmd, body) in [
        ("store_session_data", json!({"session_id": id, "data": 1, "version": beyond})),
        ("update_session_user", json!({"session_id": id, "user": 1, "version": beyond})),
        ("close_session", json!({"session_id": id, "version": beyond})),
        ("delete_session_by_id", json!({"session_id": id, "version": beyond})),
        ("open_session", json!({"user_id": "u", "ttl": beyond})),
    ] {
        let v = client_error(&app.command(cmd, body.clone()).await, 400, "INVALID_DATA");
        assert_eq!(v["details"]["results"][0]["code"], "VALUE_TOO_LARGE", "{cmd} {body}");
    }
    let same = app.command("get_session_by_id", json!({"session_id": id})).await.json();
    assert_eq!((same["active"].clone(), same["version"].clone()), (json!(true), mine["version"].clone()));
    alive(&app).await;
}

#[tokio::test]
async fn huge_values_and_bodies() {
    let app = app().await;
    let v = client_error(
        &app.command("open_session", json!({"user_id": "u", "user_name": "n".repeat(1_000_000)})).await,
        400,
        "INVALID_DATA",
    );
    assert_eq!(v["details"]["results"][0]["code"], "VALUE_TOO_LONG");
    assert!(v.to_string().len() < 2_000, "the huge value is not echoed");
    client_error(&app.command("open_session", json!({"user_id": "u".repeat(257)})).await, 400, "INVALID_DATA");
    let big = json!({"user_id": "u", "data": {"blob": "x".repeat(900_000)}});
    let ok = app.command("open_session", big).await;
    assert_eq!(ok.status, 200, "data up to the body limit is stored");
    assert_eq!(ok.json()["data"]["blob"].as_str().unwrap().len(), 900_000);
    let too_big = app.command("open_session", json!({"user_id": "u", "data": "x".repeat(2 * 1024 * 1024)})).await;
    client_error(&too_big, 413, "PAYLOAD_TOO_LARGE");
    alive(&app).await;
}

/// A client that sends a body over the limit reads the 413, not a reset: the server answers as
/// soon as the head declares too much, then reads the rest of the body before it lets the
/// connection go (closing under a sender makes its kernel reset the connection, which can destroy
/// the reply before the client reads it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_body_is_read_so_the_sender_reads_the_refusal() {
    let app = app().await;
    let length = 3 * 1024 * 1024;
    let head = format!(
        "POST /v1/sessions/open_session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    );
    let mut s = raw(&app, head.as_bytes());
    let reply = tokio::task::spawn_blocking(move || {
        let chunk = vec![b' '; 64 * 1024];
        s.write_all(&chunk).unwrap();
        // The refusal arrives while the body is still being sent.
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        while !reply.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed before the reply");
            reply.extend_from_slice(&buf[..n]);
        }
        // The rest of the body still goes through: the server reads it, nobody resets.
        for _ in 1..length / chunk.len() {
            s.write_all(&chunk).expect("the server keeps reading the refused body");
        }
        String::from_utf8_lossy(&reply).into_owned()
    })
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    alive(&app).await;
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let app = app().await;
    client_error(&app.command("drop_database", json!({})).await, 404, "ROUTE_NOT_FOUND");
    client_error(&app.post_raw("/v1/sessions", "{}", None).await, 404, "ROUTE_NOT_FOUND");
    client_error(&app.post_raw("/v2/sessions/get_sessions", "{}", None).await, 404, "ROUTE_NOT_FOUND");
    client_error(&app.post_raw("/v1/sessions/get_sessions/extra", "{}", None).await, 404, "ROUTE_NOT_FOUND");
    client_error(&app.post_raw("/%00%ff/..%2f..%2fetc/passwd", "{}", None).await, 404, "ROUTE_NOT_FOUND");
    for m in [reqwest::Method::GET, reqwest::Method::PUT, reqwest::Method::DELETE, reqwest::Method::PATCH] {
        client_error(&app.request(m, "/v1/sessions/get_sessions").await, 405, "METHOD_NOT_ALLOWED");
    }
    alive(&app).await;
}

fn raw(app: &TestApp, bytes: &[u8]) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(app.address).unwrap();
    s.write_all(bytes).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let app = app().await;
    // Slow loris: the request head never completes. The server closes within header_read_timeout.
    let started = Instant::now();
    let mut s = raw(&app, b"POST /v1/sessions/get_sessions HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    let mut out = Vec::new();
    let _ = tokio::task::spawn_blocking(move || s.read_to_end(&mut out).map(|_| out)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(8), "connection closed by the server");
    // The same after a request on a kept-alive connection: the next head never completes.
    let started = Instant::now();
    let mut s = raw(&app, b"GET /heartbeat HTTP/1.1\r\nHost: x\r\n\r\nGET /heartbeat HTTP/1.1\r\nX-Slow: ");
    let reply = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(reply.matches("HTTP/1.1").count(), 1, "{reply}");
    assert!(started.elapsed() < Duration::from_secs(8), "kept-alive connection closed by the server");
    // A body that stops arriving: 408 ErrorDescription after body_read_timeout.
    let mut s = raw(&app, b"POST /v1/sessions/get_sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":");
    let reply = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains(r#""code":"REQUEST_TIMEOUT""#), "{reply}");
    // Oversized headers are refused at the transport level.
    let mut s =
        raw(&app, format!("GET /heartbeat HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20)).as_bytes());
    let reply = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .await
    .unwrap();
    assert!(reply.is_empty() || reply.starts_with("HTTP/1.1 431"), "{reply}");
    alive(&app).await;
}

/// No CORS headers unless `cors.allowed_origins` is configured (the old `cors_origins` key still
/// works when set); a configured list answers only its own origins.
#[tokio::test]
async fn cors_only_when_configured() {
    let app = app().await;
    let a = app.client.get(app.url("/heartbeat")).header("origin", "https://evil.example").send().await.unwrap();
    assert!(a.headers().keys().all(|k| !k.as_str().starts_with("access-control-")), "{:?}", a.headers());
    let preflight = app.request(reqwest::Method::OPTIONS, "/v1/sessions/get_sessions").await;
    client_error(&preflight, 405, "METHOD_NOT_ALLOWED");
    app.stop().await;

    let listed = YAML.replace(
        "body_read_timeout: 300 }",
        "body_read_timeout: 300 }\n  cors: { allowed_origins: \"https://app.example, https://b.example\" }",
    );
    let app = spawn_app(&listed).await;
    let ask = |origin: &'static str| app.client.get(app.url("/heartbeat")).header("origin", origin).send();
    let ok = ask("https://b.example").await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://b.example");
    assert_eq!(ok.headers()["vary"], "Origin");
    assert!(ok.headers()["access-control-expose-headers"].to_str().unwrap().contains("correlation_id"));
    let other = ask("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    assert_eq!(app.request(reqwest::Method::OPTIONS, "/v1/sessions/get_sessions").await.status, 204);
    app.stop().await;

    let old = YAML.replace("body_read_timeout: 300 }", "body_read_timeout: 300 }\n  cors_origins: \"*\"");
    let app = spawn_app(&old).await;
    let star = app.request(reqwest::Method::GET, "/heartbeat").await;
    assert_eq!(star.header("access-control-allow-origin"), Some("*"));
    app.stop().await;
}

/// With `allowed_hosts`, a request naming another host (DNS rebinding) is refused with 421.
#[tokio::test]
async fn allowed_hosts_refuse_other_host_names() {
    let app = spawn_app(
        &YAML
            .replace("body_read_timeout: 300 }", "body_read_timeout: 300 }\n  allowed_hosts: \"localhost, 127.0.0.1\""),
    )
    .await;
    let port = app.address.port();
    assert_eq!(app.request(reqwest::Method::GET, "/heartbeat").await.status, 200, "127.0.0.1:port is allowed");
    for host in ["evil.example", "evil.example:80", "localhost.evil.example"] {
        let a = app.client.get(app.url("/heartbeat")).header("host", host).send().await.unwrap();
        assert_eq!(a.status().as_u16(), 421, "{host}");
        let v: Value = serde_json::from_str(&a.text().await.unwrap()).unwrap();
        assert_eq!(v["code"], "HOST_NOT_ALLOWED");
    }
    let a = app.client.get(app.url("/heartbeat")).header("host", format!("LOCALHOST:{port}")).send().await.unwrap();
    assert_eq!(a.status().as_u16(), 200);
    app.stop().await;
}
