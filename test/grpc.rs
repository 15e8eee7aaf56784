//! The gRPC transports: `sessions_v1.proto` and Pip's commandable gRPC on the gRPC endpoint.
//!
//! The published Node SDK (`client-sessions-node`, both gRPC clients) drives this service and
//! the original through the same scenario (`grpc_scenario.js`); Rust clients generated from the
//! same protos check the extensions, API keys and the endpoint's limits; a raw HTTP/2 client
//! sends what no SDK would.

use crate::helpers::{spawn_app, TestApp};
use crate::original::NodeService;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Value};
use service_sessions::protos::sessions_v1::sessions_client::SessionsClient;
use service_sessions::protos::sessions_v1::{
    PagingParams, SessionEmptyRequest, SessionIdRequest, SessionOpenRequest, SessionPageRequest,
    SessionStoreDataRequest,
};
use service_sessions::toolkit::descriptor::Descriptor;
use service_sessions::toolkit::grpc::commandable_proto::commandable_client::CommandableClient;
use service_sessions::toolkit::grpc::commandable_proto::{InvokeReply, InvokeRequest};
use service_sessions::toolkit::grpc::GrpcEndpoint;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const SCENARIO_JS: &str = include_str!("grpc_scenario.js");

/// Memory store, controller, both gRPC services on a gRPC endpoint (port 0), and the HTTP
/// endpoint with status and metrics.
fn grpc_yaml(endpoint_options: &str, extra: &str) -> String {
    format!(
        r#"
- descriptor: "service-sessions:persistence:memory:default:1.0"
- descriptor: "service-sessions:controller:default:default:1.0"
  options:
    cleanup_interval: 0
- descriptor: "pip-services:endpoint:http:default:1.0"
  connection: {{ protocol: http, host: 127.0.0.1, port: 0 }}
- descriptor: "service-sessions:service:commandable-http:default:1.0"
- descriptor: "pip-services:status-service:http:default:1.0"
- descriptor: "pip-services:prometheus-service:http:default:1.0"
- descriptor: "pip-services:endpoint:grpc:default:1.0"
  connection: {{ protocol: http, host: 127.0.0.1, port: 0 }}
{endpoint_options}
- descriptor: "service-sessions:service:grpc:default:1.0"
- descriptor: "service-sessions:service:commandable-grpc:default:1.0"
{extra}
"#
    )
}

async fn grpc_app(endpoint_options: &str, extra: &str) -> (TestApp, SocketAddr) {
    let app = spawn_app(&grpc_yaml(endpoint_options, extra)).await;
    let endpoint = app
        .container
        .references()
        .get_one_required::<GrpcEndpoint>(&Descriptor::new("*", "endpoint", "grpc", "*", "1.0"))
        .unwrap();
    let address = endpoint.local_addr().unwrap();
    (app, address)
}

async fn channel(address: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap()
}

// ---- the Node SDK ------------------------------------------------------------------------------

/// Runs `grpc_scenario.js` with the published Node SDK against `port`; its JSON report.
async fn node_scenario(port: u16) -> Value {
    let client_dir = crate::requires::value("SESSIONS_NODE_CLIENT_DIR");
    let client_dir = std::path::PathBuf::from(client_dir);
    // npm hoists the SDK's dependencies next to it; older layouts nest them.
    let mut node_path = vec![client_dir.join("node_modules")];
    if let Some(parent) = client_dir.parent() {
        node_path.push(parent.to_path_buf());
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("grpc_scenario.js");
    std::fs::write(&script, SCENARIO_JS).unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("node")
            .arg(&script)
            .arg(&client_dir)
            .arg(port.to_string())
            .env("NODE_PATH", std::env::join_paths(node_path).unwrap())
            .env("NODE_NO_WARNINGS", "1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the Node scenario did not finish in 120 s")
    .expect("cannot run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "node failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("report is not JSON ({e}): {stdout}"))
}

fn is_session_id(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()))
}

/// What both the original and this service answer, for one client's part of the report.
fn check_common(r: &Value, typed: bool) {
    let opened = &r["opened"];
    assert!(is_session_id(&opened["id"]), "{opened}");
    assert_eq!(
        (&opened["user_id"], &opened["user_name"], &opened["address"], &opened["client"], &opened["active"]),
        (&json!("u1"), &json!("Ann"), &json!("10.0.0.1"), &json!("web"), &json!(true)),
    );
    assert_eq!((&opened["user"], &opened["data"]), (&json!({"name": "Ann"}), &json!({"cart": [1]})));
    assert_eq!(opened["open_time"], opened["request_time"]);
    let absent = if typed { json!("") } else { Value::Null };
    assert_eq!((&r["opened_bare"]["user_name"], &r["opened_bare"]["user"]), (&absent, &Value::Null));
    for key in
        ["id", "user_id", "user_name", "address", "client", "active", "open_time", "request_time", "user", "data"]
    {
        assert_eq!(r["got"][key], opened[key], "{key}");
    }
    assert_eq!((&r["page_u1"]["count"], &r["page_u1_skip"]["count"]), (&json!(1), &json!(1)));
    if typed {
        // The typed SDK never sends its filter (it sets properties on the protobuf map object
        // instead of entries), so every listing over sessions_v1.proto sees every session.
        assert_eq!(r["page_nobody"]["count"], 3);
    } else {
        assert_eq!(r["page_u1"]["user_ids"], json!(["u1"]));
        assert_eq!(r["page_nobody"], json!({"total": null, "count": 0}));
    }
    assert_eq!((&r["stored"]["data"], &r["stored"]["user"]), (&json!({"step": 2}), &json!({"name": "Ann"})));
    assert_eq!((&r["updated"]["user"], &r["updated"]["data"]), (&json!({"name": "Bob"}), &json!({"step": 2})));
    assert_eq!(
        (&r["closed"]["active"], &r["closed"]["user"], &r["closed"]["data"]),
        (&json!(false), &Value::Null, &Value::Null)
    );
    assert!(r["closed"]["close_time"].is_string());
    assert_eq!(r["got_closed"]["active"], json!(false));
    assert_eq!(r["close_expired"], if typed { json!({"value": "<undefined>"}) } else { json!({"value": null}) });
    assert_eq!(r["deleted"]["user_id"], "u2");
    assert_eq!(r["got_deleted"], Value::Null);
    assert_eq!(r["unknown"], json!({"get": null, "store": null, "update": null, "close": null, "delete": null}));
}

fn error_of<'a>(r: &'a Value, key: &str) -> &'a Value {
    let e = &r[key]["error"];
    assert!(e.is_object(), "{key}: {}", r[key]);
    e
}

#[tokio::test]
async fn node_sdk_drives_both_grpc_services() {
    crate::requires!("SESSIONS_NODE_CLIENT_DIR");
    let (app, address) = grpc_app("", "").await;
    let report = node_scenario(address.port()).await;
    for (kind, typed) in [("typed", true), ("commandable", false)] {
        check_common(&report[kind], typed);
    }
    // Newest first; a total not asked for is 0 over sessions_v1.proto, null over JSON.
    assert_eq!(report["typed"]["page_u1"], json!({"total": 3, "count": 1, "user_ids": ["u2"]}));
    assert_eq!(report["typed"]["page_nobody"]["total"], 0);
    assert_eq!(report["commandable"]["page_u1"]["total"], 4);
    assert_eq!(report["typed"]["page_active"], json!({"total": 3, "count": 3}));
    assert_eq!(report["commandable"]["page_active"], json!({"total": 4, "count": 4}));
    assert_eq!(report["commandable"]["opened"]["close_time"], Value::Null);

    // sessions_v1.proto: "" is a missing user_id, refused as over HTTP; bad JSON is INVALID_JSON.
    let t = &report["typed_invalid"];
    let e = error_of(t, "open_empty_user");
    assert_eq!(
        (&e["category"], &e["code"], &e["status"], &e["correlation_id"]),
        (&json!("BadRequest"), &json!("INVALID_DATA"), &json!("400"), &json!("cid-bad"))
    );
    assert_eq!(t["open_empty_user"]["session_user_id"], Value::Null);
    assert_eq!(error_of(t, "store_bad_json")["code"], "INVALID_JSON");
    assert_eq!(error_of(t, "open_bad_user_json")["code"], "INVALID_JSON");

    let c = &report["commandable_invalid"];
    let e = error_of(c, "open_null_user");
    assert_eq!((&e["category"], &e["code"], &e["status"]), (&json!("BadRequest"), &json!("INVALID_DATA"), &json!(400)));
    assert_eq!(e["message"], "Validation failed: user_id must not be null");
    assert_eq!(
        error_of(c, "get_number_id")["message"],
        "Validation failed: session_id type must be string but found long"
    );
    let e = error_of(c, "unknown_command");
    assert_eq!(
        (&e["category"], &e["code"], &e["status"]),
        (&json!("NotFound"), &json!("METHOD_NOT_FOUND"), &json!(404))
    );
    assert_eq!(error_of(c, "store_null_data_missing_id")["code"], "INVALID_DATA");
    assert_eq!(error_of(c, "negative_take")["code"], "INVALID_DATA");
    app.stop().await;
}

#[tokio::test]
async fn node_sdk_scenario_passes_against_the_original() {
    crate::requires!("SESSIONS_NODE_DIR", "SESSIONS_NODE_CLIENT_DIR");
    let (node, grpc_port) = NodeService::start_with_grpc(&[]).await;
    let report = node_scenario(grpc_port).await;
    node.stop();
    for (kind, typed) in [("typed", true), ("commandable", false)] {
        check_common(&report[kind], typed);
    }
    // The original lists in insertion order.
    assert_eq!(report["typed"]["page_u1"]["user_ids"], json!(["u1"]));
    // The original's known differences, which this service does not copy.
    let t = &report["typed_invalid"];
    assert_eq!(t["open_empty_user"], json!({"error": null, "session_user_id": ""}));
    assert_eq!(t["store_bad_json"]["grpc_error"]["code"], 2);
    let c = &report["commandable_invalid"];
    assert_eq!(error_of(c, "open_null_user")["code"], "INVALID_DATA");
    assert_eq!(error_of(c, "get_number_id")["code"], "INVALID_DATA");
    assert_eq!(error_of(c, "unknown_command")["code"], "METHOD_NOT_FOUND");
    assert_eq!(error_of(c, "store_null_data_missing_id")["code"], "INVALID_DATA");
    assert!(c["negative_take"]["value"].is_object(), "the original accepts a negative take");
}

// ---- Rust clients of the same protos -----------------------------------------------------------

async fn invoke(client: &mut CommandableClient<Channel>, command: &str, args: Value) -> InvokeReply {
    let request = InvokeRequest {
        method: format!("v1/sessions.{command}"),
        correlation_id: "c-rs".to_string(),
        args_empty: false,
        args_json: args.to_string(),
    };
    client.invoke(request).await.unwrap().into_inner()
}

fn result(reply: &InvokeReply) -> Value {
    assert!(reply.error.is_none(), "{:?}", reply.error);
    if reply.result_empty {
        Value::Null
    } else {
        serde_json::from_str(&reply.result_json).unwrap()
    }
}

#[tokio::test]
async fn commandable_grpc_serves_every_command_with_http_semantics() {
    let (app, address) = grpc_app("", "").await;
    let mut c = CommandableClient::new(channel(address).await);
    let s = result(&invoke(&mut c, "open_session", json!({"user_id": "u1", "ttl": 60000})).await);
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!((s["version"].as_i64(), s["ttl"].as_i64()), (Some(1), Some(60000)));
    // A stale version is a conflict with the current version in the details.
    let conflict = invoke(&mut c, "store_session_data", json!({"session_id": id, "data": 1, "version": 7})).await;
    let e = conflict.error.unwrap();
    assert_eq!((e.category.as_str(), e.code.as_str(), e.status), ("Conflict", "SESSION_VERSION_CONFLICT", 409));
    assert_eq!((e.details["version"].as_str(), e.correlation_id.as_str()), ("1", "c-rs"));
    let touched = result(&invoke(&mut c, "touch_session", json!({"session_id": id, "version": 1})).await);
    assert_eq!(touched["version"], 2);
    assert_eq!(result(&invoke(&mut c, "validate_session", json!({"session_id": id})).await)["is_valid"], true);
    let rotated = result(&invoke(&mut c, "rotate_session_id", json!({"session_id": id})).await);
    let new_id = rotated["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, id);
    assert_eq!(result(&invoke(&mut c, "get_session_by_id", json!({"session_id": id})).await), Value::Null);
    assert_eq!(result(&invoke(&mut c, "close_user_sessions", json!({"user_id": "u1"})).await), json!({"count": 1}));
    let closed = invoke(&mut c, "store_session_data", json!({"session_id": new_id, "data": 1})).await;
    assert_eq!(closed.error.unwrap().code, "SESSION_CLOSED");
    assert_eq!(result(&invoke(&mut c, "purge_sessions", json!({})).await), json!({"count": 0}));
    assert_eq!(result(&invoke(&mut c, "close_expired_sessions", json!({})).await), Value::Null);
    // args_empty means no arguments; arguments that are not a JSON object are refused.
    let empty = c
        .invoke(InvokeRequest { method: "v1/sessions.get_sessions".into(), args_empty: true, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(result(&empty)["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(invoke(&mut c, "get_sessions", json!([1])).await.error.unwrap().code, "INVALID_DATA");
    let bad = c
        .invoke(InvokeRequest {
            method: "v1/sessions.get_sessions".into(),
            args_json: "{x".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bad.error.unwrap().code, "INVALID_JSON");
    app.stop().await;
}

#[tokio::test]
async fn sessions_v1_rpcs_convert_like_the_original() {
    let (app, address) = grpc_app("", "").await;
    let mut c = SessionsClient::new(channel(address).await);
    let open = SessionOpenRequest {
        correlation_id: "c1".into(),
        user_id: "u1".into(),
        user: "false".into(),
        data: r#"{"n":0}"#.into(),
        ..Default::default()
    };
    let reply = c.open_session(open).await.unwrap().into_inner();
    let s = reply.session.unwrap();
    assert!(reply.error.is_none());
    assert_eq!((s.user.as_str(), s.data.as_str(), s.close_time.as_str()), ("false", r#"{"n":0}"#, ""));
    assert!(s.open_time.ends_with('Z') && s.open_time.len() == 24, "{}", s.open_time);
    // The same session over commandable HTTP.
    let http = app.command("get_session_by_id", json!({"session_id": s.id})).await.json();
    assert_eq!((http["open_time"].as_str(), http["user"].clone()), (Some(s.open_time.as_str()), json!(false)));
    let page = c
        .get_sessions(SessionPageRequest {
            correlation_id: String::new(),
            filter: [("user_id".to_string(), "u1".to_string())].into(),
            paging: Some(PagingParams { skip: 0, take: 0, total: true }),
        })
        .await
        .unwrap()
        .into_inner();
    let page = page.page.unwrap();
    assert_eq!((page.total, page.data.len(), page.data[0].user.as_str()), (1, 1, ""));
    let bad_paging = c
        .get_sessions(SessionPageRequest {
            paging: Some(PagingParams { skip: -1, take: 0, total: false }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bad_paging.error.unwrap().code, "INVALID_DATA");
    let unknown = c
        .get_session_by_id(SessionIdRequest { correlation_id: String::new(), session_id: "f".repeat(32) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((unknown.error, unknown.session), (None, None));
    // proto3 cannot tell an empty id from an absent one: `""` is an unknown id (null), as the
    // original and commandable HTTP answer it.
    let empty = c.close_session(SessionIdRequest::default()).await.unwrap().into_inner();
    assert_eq!((empty.error, empty.session), (None, None));
    let store = SessionStoreDataRequest { correlation_id: "c2".into(), session_id: s.id.clone(), data: String::new() };
    let e = c.store_session_data(store).await.unwrap().into_inner().error.unwrap();
    assert_eq!((e.code.as_str(), e.status.as_str(), e.correlation_id.as_str()), ("INVALID_DATA", "400", "c2"));
    assert!(c.close_expired_sessions(SessionEmptyRequest::default()).await.unwrap().into_inner().error.is_none());
    let deleted = c.delete_session_by_id(SessionIdRequest { session_id: s.id.clone(), ..Default::default() }).await;
    assert_eq!(deleted.unwrap().into_inner().session.map(|d| d.id), Some(s.id));
    app.stop().await;
}

#[tokio::test]
async fn api_keys_are_read_from_metadata() {
    let auth = "- descriptor: \"pip-services:authenticator:api-key:default:1.0\"\n  credential:\n    api_keys: \"ops:grpc-Secret-42\"\n";
    let (app, address) = grpc_app("", auth).await;
    let mut c = SessionsClient::new(channel(address).await);
    let denied = c.get_session_by_id(SessionIdRequest::default()).await.unwrap_err();
    assert_eq!((denied.code(), denied.message()), (tonic::Code::Unauthenticated, "Missing or invalid API key"));
    let mut wrong = tonic::Request::new(SessionIdRequest::default());
    wrong.metadata_mut().insert("x-api-key", "grpc-Secret-43".parse().unwrap());
    assert_eq!(c.get_session_by_id(wrong).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    let mut right = tonic::Request::new(SessionIdRequest { session_id: "f".repeat(32), ..Default::default() });
    right.metadata_mut().insert("x-api-key", "grpc-Secret-42".parse().unwrap());
    let reply = c.get_session_by_id(right).await.unwrap().into_inner();
    assert_eq!((reply.error, reply.session), (None, None));
    app.stop().await;
}

#[tokio::test]
async fn status_shows_the_endpoint_and_metrics_count_rpcs() {
    let (app, address) = grpc_app("", "").await;
    let mut c = SessionsClient::new(channel(address).await);
    c.close_expired_sessions(SessionEmptyRequest::default()).await.unwrap();
    let status = app.request(reqwest::Method::GET, "/status").await.json();
    let text = status.to_string();
    assert!(text.contains("pip-services:endpoint:grpc:default:1.0"), "{text}");
    // Without an API key the status hides every bind address (hardening: no probing).
    assert!(text.contains("listening on (hidden)") && !text.contains(&format!(":{}\"", address.port())), "{text}");
    let metrics = app.request(reqwest::Method::GET, "/metrics").await.body;
    assert!(
        metrics.contains(r#"grpc_requests_total{code="0",method="/sessions_v1.Sessions/close_expired_sessions"}"#),
        "{metrics}"
    );
    app.stop().await;
}

// ---- what no SDK sends -------------------------------------------------------------------------

async fn h2_connect(address: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send
}

/// The gRPC status of a raw exchange: from the headers (trailers-only) or the trailers.
async fn raw_call(
    send: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    content_type: &str,
    body: Bytes,
) -> (u16, Option<String>) {
    let request =
        http::Request::post(path).header("content-type", content_type).header("te", "trailers").body(()).unwrap();
    let mut ready = send.clone().ready().await.unwrap();
    let (response, mut stream) = ready.send_request(request, false).unwrap();
    stream.send_data(body, true).unwrap();
    *send = ready;
    let response = tokio::time::timeout(Duration::from_secs(10), response).await.expect("no answer").unwrap();
    let status = response.status().as_u16();
    if let Some(code) = response.headers().get("grpc-status") {
        return (status, code.to_str().ok().map(str::to_string));
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let _ = chunk;
    }
    let trailers = body.trailers().await.ok().flatten();
    (status, trailers.and_then(|t| t.get("grpc-status").and_then(|v| v.to_str().ok().map(str::to_string))))
}

fn frame(message: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(0);
    b.put_u32(u32::try_from(message.len()).unwrap());
    b.put_slice(message);
    b.freeze()
}

#[tokio::test]
async fn bad_frames_methods_and_content_types_get_a_grpc_status() {
    let (app, address) = grpc_app("", "").await;
    let mut send = h2_connect(address).await;
    let get = "/sessions_v1.Sessions/get_session_by_id";
    // A well-formed empty message works (a missing session_id fails validation in the reply).
    assert_eq!(raw_call(&mut send, get, "application/grpc", frame(&[])).await, (200, Some("0".into())));
    // Malformed protobuf: a field header with a truncated length.
    let status = raw_call(&mut send, get, "application/grpc", frame(&[0x12, 0x7f, 0x01])).await;
    assert_eq!(status, (200, Some("13".into())));
    // A truncated frame.
    assert_eq!(raw_call(&mut send, get, "application/grpc", Bytes::from_static(&[0, 0, 0])).await.1, Some("13".into()));
    // A frame announcing more than 1 MiB.
    let mut big = BytesMut::new();
    big.put_u8(0);
    big.put_u32(1024 * 1024 + 1);
    big.put_slice(&[0u8; 1024]);
    let status = raw_call(&mut send, get, "application/grpc", big.freeze()).await;
    assert_eq!(status, (200, Some("11".into())), "OUT_OF_RANGE");
    let invoke = "/commandable.Commandable/invoke";
    let huge = service_sessions::toolkit::grpc::commandable_proto::InvokeRequest {
        method: "v1/sessions.get_sessions".into(),
        args_json: "x".repeat(1024 * 1024 + 10),
        ..Default::default()
    };
    let encoded = prost::Message::encode_to_vec(&huge);
    assert_eq!(raw_call(&mut send, invoke, "application/grpc", frame(&encoded)).await.1, Some("11".into()));
    // Unknown methods and services.
    assert_eq!(
        raw_call(&mut send, "/sessions_v1.Sessions/nope", "application/grpc", frame(&[])).await.1,
        Some("12".into())
    );
    assert_eq!(raw_call(&mut send, "/x.Y/z", "application/grpc+proto", frame(&[])).await.1, Some("12".into()));
    // Not gRPC at all.
    let json = raw_call(&mut send, get, "application/json", Bytes::from_static(b"{}")).await;
    assert_eq!(json, (415, Some("3".into())));
    let none = raw_call(&mut send, get, "", frame(&[])).await;
    assert_eq!(none.0, 415);
    // The connection still serves.
    assert_eq!(raw_call(&mut send, get, "application/grpc", frame(&[])).await.1, Some("0".into()));
    app.stop().await;
}

#[tokio::test]
async fn a_plain_http1_request_is_closed_cleanly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (app, address) = grpc_app("", "").await;
    let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await.expect("not closed");
    assert!(read.is_ok(), "{read:?}");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 505 HTTP Version Not Supported\r\n"), "{text}");
    assert!(text.ends_with("gRPC requires HTTP/2\n"), "{text}");
    // The endpoint is unharmed.
    let mut c = SessionsClient::new(channel(address).await);
    assert!(c.close_expired_sessions(SessionEmptyRequest::default()).await.is_ok());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_stalled_streams_time_out_and_others_are_served() {
    let options = "  options:\n    request_timeout: 1500\n    max_concurrent_streams: 100\n";
    let (app, address) = grpc_app(options, "").await;
    let request = || {
        http::Request::post("/sessions_v1.Sessions/get_session_by_id")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap()
    };
    // Ten connections, each opening 100 streams whose message never comes.
    let mut pending = Vec::new();
    let mut held = Vec::new();
    for _ in 0..10 {
        let send = h2_connect(address).await;
        for _ in 0..100 {
            let mut ready = send.clone().ready().await.unwrap();
            let (response, stream) = ready.send_request(request(), false).unwrap();
            held.push(stream);
            pending.push(response);
        }
    }
    assert_eq!(pending.len(), 1000);
    // Meanwhile a well-behaved client is served at once.
    let started = Instant::now();
    let mut c = SessionsClient::new(channel(address).await);
    c.close_expired_sessions(SessionEmptyRequest::default()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    // Every stalled stream gets DEADLINE_EXCEEDED after the request timeout.
    let mut deadline = 0;
    for response in pending {
        let r =
            tokio::time::timeout(Duration::from_secs(20), response).await.expect("a stalled stream was never answered");
        let code =
            r.ok().and_then(|r| r.headers().get("grpc-status").and_then(|v| v.to_str().ok().map(str::to_string)));
        if code.as_deref() == Some("4") {
            deadline += 1;
        }
    }
    assert_eq!(deadline, 1000);
    drop(held);
    // The container closes promptly (nothing stuck).
    let started = Instant::now();
    app.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test]
async fn rust_grpc_clients_send_the_api_key_and_report_refusals() {
    use service_sessions::clients::version1::{
        GrpcClientSettings, SessionsClientError, SessionsClientV1, SessionsCommandableGrpcClientV1,
        SessionsGrpcClientV1,
    };
    let auth = "- descriptor: \"pip-services:authenticator:api-key:default:1.0\"\n  credential:\n    api_keys: \"ops:grpc-Secret-42\"\n";
    let (app, address) = grpc_app("", auth).await;
    let mut settings = GrpcClientSettings::for_uri(&format!("http://{address}"));
    let refused = SessionsGrpcClientV1::new(&settings).unwrap();
    let e = refused.get_session_by_id(Some("c1"), &"f".repeat(32)).await.unwrap_err();
    assert!(matches!(e, SessionsClientError::Unauthorized(_)), "{e:?}");
    settings.credential.api_key = Some("grpc-Secret-42".into());
    let typed = SessionsGrpcClientV1::new(&settings).unwrap();
    let commandable = SessionsCommandableGrpcClientV1::new(&settings).unwrap();
    let s = typed
        .open_session(
            None,
            service_sessions::data::version1::OpenSessionRequest { user_id: "u1".into(), ..Default::default() },
        )
        .await
        .unwrap();
    let same = commandable.get_session_by_id(None, &s.id).await.unwrap().unwrap();
    assert_eq!((same.user_id.as_str(), same.version, same.open_time), ("u1", 1, s.open_time));
    assert!(format!("{settings:?}").contains("***") && !format!("{settings:?}").contains("grpc-Secret-42"));
    app.stop().await;
    // Nothing listening: unavailable.
    let e = commandable.get_session_by_id(None, &s.id).await.unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");
}
