//! The sessions service, black-box over HTTP: every command, filter, bound, error and expiry rule
//! of the contract, on the memory backend with a manual clock (no sleeps).

use crate::helpers::{sessions_yaml, spawn_app, Answer, TestApp};
use serde_json::{json, Value};

async fn app() -> TestApp {
    spawn_app(&sessions_yaml("")).await
}

fn error(a: &Answer, status: u16, code: &str) -> Value {
    assert_eq!(a.status, status, "{}", a.body);
    let v = a.json();
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["status"], status);
    v
}

const T0: &str = "2026-01-01T00:00:00.000Z";

#[tokio::test]
async fn open_session_returns_the_full_record() {
    let app = app().await;
    let a = app
        .command(
            "open_session",
            json!({"user_id": "u1", "user_name": "Ann", "address": "10.1.2.3", "client": "web",
                "user": {"roles": ["admin"]}, "data": {"cart": []}, "id": "chosen-by-caller", "active": false}),
        )
        .await;
    assert_eq!(a.status, 200);
    let s = a.json();
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
    assert_eq!(
        s,
        json!({"id": id, "user_id": "u1", "user_name": "Ann", "address": "10.1.2.3", "client": "web", "active": true,
            "open_time": T0, "request_time": T0, "user": {"roles": ["admin"]}, "data": {"cart": []}, "version": 1,
            "expire_time": "2026-01-01T01:00:00.000Z"})
    );
    let minimal = app.command("open_session", json!({"user_id": "u2"})).await.json();
    assert_eq!(
        (minimal["user_name"].clone(), minimal["user"].clone(), minimal["data"].clone()),
        (Value::Null, Value::Null, Value::Null)
    );
    assert!(minimal.get("close_time").is_none());
    let got = app.command("get_session_by_id", json!({"session_id": id})).await;
    assert_eq!((got.status, got.json()), (200, s));
    app.stop().await;
}

#[tokio::test]
async fn falsy_values_are_stored_as_given() {
    let app = app().await;
    for v in [json!(false), json!(0), json!(""), json!([]), json!({})] {
        let s = app.command("open_session", json!({"user_id": "u", "user": v, "data": v})).await.json();
        assert_eq!((s["user"].clone(), s["data"].clone()), (v.clone(), v.clone()));
        let id = s["id"].clone();
        let stored = app.command("store_session_data", json!({"session_id": id, "data": v})).await.json();
        assert_eq!(stored["data"], v);
        let user = app.command("update_session_user", json!({"session_id": id, "user": v})).await.json();
        assert_eq!(user["user"], v);
    }
    app.stop().await;
}

/// A `data` or `user` payload answers and reads back exactly as its parsed value writes, whether
/// the body spelled it in compact canonical form (kept as text) or any other way (spaces, escapes,
/// floats, big or negative-zero numbers, repeated keys, deep nesting): the answer's bytes are the
/// same either way.
#[tokio::test]
async fn stored_payloads_answer_as_their_value_however_they_were_spelled() {
    let app = app().await;
    let id = app.open("u1").await["id"].as_str().unwrap().to_string();
    let deep = format!("{}{}", "[".repeat(70), "]".repeat(70));
    let payloads = [
        r#"{"n":1,"cart":[1,2,3]}"#.to_string(),
        r#"{"n": 1, "cart": [1, 2, 3]}"#.to_string(),
        r#"{"s":"a\"b\\c\u0041\n","e":"é"}"#.to_string(),
        r#"{"f":1.50,"g":1e2,"z":-0,"big":123456789012345678901234}"#.to_string(),
        r#"{"k":1,"k":2,"j":[{"k":3}]}"#.to_string(),
        r#"[{"a":{}},[],null,true,false,-7]"#.to_string(),
        deep,
    ];
    for text in payloads {
        let body = format!(r#"{{"session_id":"{id}","data":{text}}}"#);
        let a = app.post_raw("/v1/sessions/store_session_data", body, Some("application/json")).await;
        assert_eq!(a.status, 200, "{text}: {}", a.body);
        let value: Value = serde_json::from_str(&text).unwrap();
        let written = serde_json::to_string(&value).unwrap();
        assert!(a.body.contains(&format!(r#""data":{written},"version""#)), "{text}: {}", a.body);
        assert_eq!(a.json()["data"], value, "{text}");
        let got = app.command("get_session_by_id", json!({"session_id": id})).await;
        assert!(got.body.contains(&format!(r#""data":{written},"version""#)), "{text}: {}", got.body);
        let body = format!(r#"{{"session_id":"{id}","user":{text}}}"#);
        let a = app.post_raw("/v1/sessions/update_session_user", body, Some("application/json")).await;
        assert_eq!(a.status, 200, "{text}: {}", a.body);
        assert!(a.body.contains(&format!(r#""user":{written},"data""#)), "{text}: {}", a.body);
        assert_eq!(a.json()["user"], value, "{text}");
    }
    app.stop().await;
}

#[tokio::test]
async fn open_session_validates_parameters() {
    let app = app().await;
    let v = error(&app.command("open_session", json!({})).await, 400, "INVALID_DATA");
    assert_eq!(v["message"], "Validation failed: user_id must not be null");
    assert_eq!(v["category"], "BadRequest");
    assert_eq!(
        v["details"]["results"][0],
        json!({"path": "user_id", "type": "Error", "code": "VALUE_IS_NULL",
        "message": "user_id must not be null", "expected": "NOT NULL", "actual": null})
    );
    let v = error(&app.command("open_session", json!({"user_id": 123})).await, 400, "INVALID_DATA");
    assert_eq!(v["message"], "Validation failed: user_id type must be string but found long");
    let v = error(
        &app.command("open_session", json!({"user_id": "u", "user_name": "x".repeat(1025)})).await,
        400,
        "INVALID_DATA",
    );
    assert_eq!(v["details"]["results"][0]["code"], "VALUE_TOO_LONG");
    let v = error(&app.command("open_session", json!({"user_id": null, "address": 5})).await, 400, "INVALID_DATA");
    assert_eq!(v["message"], "Validation failed: user_id must not be null, address type must be string but found long");
    app.stop().await;
}

#[tokio::test]
async fn unknown_ids_of_any_shape_are_204_and_only_type_errors_are_400() {
    let app = app().await;
    let (just_over, long) = ("a".repeat(65), "a".repeat(200));
    let unknown = [
        "0123456789abcdef0123456789abcdef",
        "",
        "../../etc/passwd",
        just_over.as_str(),
        long.as_str(),
        "bad id!",
        "ünïcödé ✓",
        "\u{0}",
    ];
    let commands = [
        ("get_session_by_id", json!({})),
        ("store_session_data", json!({"data": {"a": 1}})),
        ("update_session_user", json!({"user": {"a": 1}})),
        ("close_session", json!({})),
        ("delete_session_by_id", json!({})),
        ("touch_session", json!({})),
        ("rotate_session_id", json!({})),
    ];
    for (cmd, extra) in &commands {
        for id in unknown {
            let mut body = extra.clone();
            body["session_id"] = json!(id);
            let a = app.command(cmd, body).await;
            assert_eq!((a.status, a.body.as_str()), (204, ""), "{cmd} {id:?}");
        }
        let v = error(&app.command(cmd, json!({})).await, 400, "INVALID_DATA");
        assert!(v["message"].as_str().unwrap().contains("session_id must not be null"), "{cmd}: {v}");
        error(&app.command(cmd, json!({"session_id": null})).await, 400, "INVALID_DATA");
        let v = error(&app.command(cmd, json!({"session_id": 12})).await, 400, "INVALID_DATA");
        assert!(v["message"].as_str().unwrap().contains("session_id type must be string but found long"), "{cmd}: {v}");
    }
    for id in unknown {
        let a = app.command("validate_session", json!({"session_id": id})).await;
        assert_eq!((a.status, a.json()), (200, json!({"is_valid": false, "expire_time": null, "ttl": null})), "{id:?}");
    }
    // An exception of any shape excludes nothing.
    let s = app.command("open_session", json!({"user_id": "u-odd"})).await.json();
    let a = app.command("close_user_sessions", json!({"user_id": "u-odd", "except_session_id": "bad id!"})).await;
    assert_eq!((a.status, a.json()), (200, json!({"count": 1})));
    let a = app.command("get_session_by_id", json!({"session_id": s["id"]})).await;
    assert_eq!(a.json()["active"], false);
    let a = app.command("store_session_data", json!({"session_id": "abc", "data": 1})).await;
    assert_eq!(a.status, 204);
    let a = app.command("update_session_user", json!({"session_id": "abc", "user": 1})).await;
    assert_eq!(a.status, 204);
    let v = error(&app.command("store_session_data", json!({"session_id": "abc"})).await, 400, "INVALID_DATA");
    assert_eq!(v["message"], "Validation failed: data must not be null");
    let v = error(
        &app.command("update_session_user", json!({"session_id": "abc", "user": null})).await,
        400,
        "INVALID_DATA",
    );
    assert_eq!(v["message"], "Validation failed: user must not be null");
    app.stop().await;
}

#[tokio::test]
async fn writes_refresh_request_time_and_bump_versions() {
    let app = app().await;
    let s = app.open("u1").await;
    let id = s["id"].as_str().unwrap();
    app.clock().advance_ms(1500);
    let a = app.command("store_session_data", json!({"session_id": id, "data": {"step": 1}})).await.json();
    assert_eq!(
        (a["data"].clone(), a["request_time"].clone(), a["version"].clone()),
        (json!({"step": 1}), json!("2026-01-01T00:00:01.500Z"), json!(2))
    );
    assert_eq!(a["open_time"], T0);
    app.clock().advance_ms(500);
    let b = app.command("update_session_user", json!({"session_id": id, "user": {"name": "Ann"}})).await.json();
    assert_eq!(
        (b["user"].clone(), b["data"].clone(), b["version"].clone()),
        (json!({"name": "Ann"}), json!({"step": 1}), json!(3))
    );
    assert_eq!(b["request_time"], "2026-01-01T00:00:02.000Z");
    app.stop().await;
}

#[tokio::test]
async fn close_is_idempotent_and_closed_sessions_refuse_writes() {
    let app = app().await;
    let s = app.command("open_session", json!({"user_id": "u1", "user": {"a": 1}, "data": {"b": 2}})).await.json();
    let id = s["id"].as_str().unwrap();
    app.clock().advance_ms(1000);
    let closed = app.command("close_session", json!({"session_id": id})).await.json();
    let at = "2026-01-01T00:00:01.000Z";
    assert_eq!(
        closed,
        json!({"id": id, "user_id": "u1", "user_name": null, "address": null, "client": null, "active": false,
            "open_time": T0, "request_time": at, "close_time": at, "user": null, "data": null, "version": 2})
    );
    app.clock().advance_ms(1000);
    let again = app.command("close_session", json!({"session_id": id})).await;
    assert_eq!((again.status, again.json()), (200, closed.clone()), "closing twice changes nothing");
    let v =
        error(&app.command("store_session_data", json!({"session_id": id, "data": 1})).await, 409, "SESSION_CLOSED");
    assert_eq!(v["category"], "Conflict");
    error(&app.command("update_session_user", json!({"session_id": id, "user": 1})).await, 409, "SESSION_CLOSED");
    assert_eq!(app.command("get_session_by_id", json!({"session_id": id})).await.json(), closed, "nothing changed");
    let deleted = app.command("delete_session_by_id", json!({"session_id": id})).await;
    assert_eq!((deleted.status, deleted.json()), (200, closed));
    assert_eq!(app.command("get_session_by_id", json!({"session_id": id})).await.status, 204);
    let open = app.open("u2").await;
    let d = app.command("delete_session_by_id", json!({"session_id": open["id"]})).await;
    assert_eq!((d.status, d.json()), (200, open));
    app.stop().await;
}

#[tokio::test]
async fn expiry_is_checked_on_every_read_and_write() {
    let app = app().await;
    let a = app.open("u1").await;
    let b = app.open("u1").await;
    let c = app.open("u1").await;
    app.clock().advance_ms(3_600_000);
    let still = app.command("get_session_by_id", json!({"session_id": a["id"]})).await.json();
    assert_eq!(still["active"], true, "request_time == now - expire_timeout is not expired yet");
    app.clock().advance_ms(1);
    let now = "2026-01-01T01:00:00.001Z";
    let read = app.command("get_session_by_id", json!({"session_id": a["id"]})).await.json();
    assert_eq!(
        (read["active"].clone(), read["close_time"].clone(), read["version"].clone()),
        (json!(false), json!(now), json!(2))
    );
    error(&app.command("store_session_data", json!({"session_id": b["id"], "data": 1})).await, 409, "SESSION_CLOSED");
    let b_now = app.command("get_session_by_id", json!({"session_id": b["id"]})).await.json();
    assert_eq!(
        (b_now["active"].clone(), b_now["data"].clone(), b_now["version"].clone()),
        (json!(false), Value::Null, json!(2))
    );
    let page = app.command("get_sessions", json!({"filter": {"active": "true"}})).await.json();
    assert_eq!(page["data"], json!([]), "listing closes expired sessions first");
    let c_now = app.command("get_session_by_id", json!({"session_id": c["id"]})).await.json();
    assert_eq!(c_now["active"], false);
    app.stop().await;
}

#[tokio::test]
async fn close_expired_sessions_is_204_and_closes_only_expired() {
    let app = app().await;
    let old = app.open("u1").await;
    app.clock().advance_ms(3_000_000);
    let young = app.open("u1").await;
    app.clock().advance_ms(700_000);
    let a = app.command("close_expired_sessions", json!({})).await;
    assert_eq!((a.status, a.body.as_str()), (204, ""));
    let a = app.post_raw("/v1/sessions/close_expired_sessions", "", None).await;
    assert_eq!(a.status, 204);
    let page =
        app.command("get_sessions", json!({"filter": {"user_id": "u1"}, "paging": {"total": true}})).await.json();
    let states: Vec<(Value, Value)> =
        page["data"].as_array().unwrap().iter().map(|s| (s["id"].clone(), s["active"].clone())).collect();
    assert_eq!(states, vec![(old["id"].clone(), json!(false)), (young["id"].clone(), json!(true))]);
    assert_eq!(page["total"], 2);
    app.stop().await;
}

/// Opens sessions at known times: returns ids in opening order.
async fn seed(app: &TestApp) -> Vec<String> {
    let mut ids = Vec::new();
    for (user, step) in [("u1", 0), ("u2", 1000), ("u1", 1000), ("u3", 1000)] {
        app.clock().advance_ms(step);
        ids.push(app.open(user).await["id"].as_str().unwrap().to_string());
    }
    ids
}

async fn list(app: &TestApp, filter: Value) -> Vec<String> {
    let a = app.command("get_sessions", json!({"filter": filter})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn get_sessions_filters_orders_and_projects() {
    let app = app().await;
    let ids = seed(&app).await; // times: 0, 1000, 2000, 3000
    app.clock().advance_ms(1);
    app.command("close_session", json!({"session_id": ids[1]})).await; // request_time -> 3001
    let all = list(&app, json!({})).await;
    assert_eq!(all, vec![ids[1].clone(), ids[3].clone(), ids[2].clone(), ids[0].clone()], "request_time desc, then id");
    assert_eq!(list(&app, json!({"id": ids[2]})).await, vec![ids[2].clone()]);
    assert_eq!(list(&app, json!({"user_id": "u1"})).await, vec![ids[2].clone(), ids[0].clone()]);
    assert_eq!(list(&app, json!({"active": "false"})).await, vec![ids[1].clone()]);
    assert_eq!(list(&app, json!({"active": "y"})).await.len(), 3);
    assert_eq!(list(&app, json!({"active": "nonsense"})).await.len(), 4, "an unknown boolean word means no filter");
    assert_eq!(
        list(&app, json!({"from_time": "2026-01-01T00:00:02.000Z"})).await,
        vec![ids[1].clone(), ids[3].clone(), ids[2].clone()],
        "from_time inclusive"
    );
    assert_eq!(
        list(&app, json!({"to_time": "2026-01-01T00:00:02.000Z"})).await,
        vec![ids[0].clone()],
        "to_time exclusive"
    );
    assert_eq!(
        list(
            &app,
            json!({"from_time": "2026-01-01T00:00:00.000Z", "to_time": "2026-01-01T00:00:03.000Z", "user_id": "u1"})
        )
        .await,
        vec![ids[2].clone(), ids[0].clone()]
    );
    let page = app.command("get_sessions", json!({})).await.json();
    assert_eq!(page["total"], Value::Null);
    for item in page["data"].as_array().unwrap() {
        assert!(item.get("user").is_none() && item.get("data").is_none(), "{item}");
        assert!(item.get("user_id").is_some() && item.get("version").is_some());
    }
    app.stop().await;
}

#[tokio::test]
async fn get_sessions_pages() {
    let app = app().await;
    for i in 0..150 {
        app.clock().advance_ms(10);
        app.open(if i < 120 { "many" } else { "few" }).await;
    }
    let page = |paging: Value| {
        let app = &app;
        async move {
            let a = app.command("get_sessions", json!({"paging": paging})).await;
            assert_eq!(a.status, 200, "{}", a.body);
            a.json()
        }
    };
    let p = page(json!(null)).await;
    assert_eq!((p["data"].as_array().unwrap().len(), p["total"].clone()), (100, Value::Null));
    let p = page(json!({"skip": 140, "take": 20, "total": true})).await;
    assert_eq!((p["data"].as_array().unwrap().len(), p["total"].clone()), (10, json!(150)));
    let p = page(json!({"take": 1000})).await;
    assert_eq!(p["data"].as_array().unwrap().len(), 100, "take is capped at max_page_size");
    let p = page(json!({"take": 0, "skip": 0})).await;
    assert_eq!(p["data"].as_array().unwrap().len(), 100);
    let first = page(json!({"take": 3})).await;
    let second = page(json!({"skip": 1, "take": 1})).await;
    assert_eq!(first["data"][1], second["data"][0]);
    let few =
        app.command("get_sessions", json!({"filter": {"user_id": "few"}, "paging": {"total": true}})).await.json();
    assert_eq!((few["data"].as_array().unwrap().len(), few["total"].clone()), (30, json!(30)));
    for (paging, msg) in [
        (json!({"skip": -1}), "Validation failed: paging.skip must be at least 0"),
        (json!({"take": "1"}), "Validation failed: paging.take type must be integer but found string"),
        (json!({"total": "yes"}), "Validation failed: paging.total type must be boolean but found string"),
    ] {
        let v = error(&app.command("get_sessions", json!({"paging": paging})).await, 400, "INVALID_DATA");
        assert_eq!(v["message"], msg);
    }
    let v =
        error(&app.command("get_sessions", json!({"filter": {"from_time": "not a date"}})).await, 400, "INVALID_DATA");
    assert_eq!(v["message"], "Validation failed: filter.from_time is not a valid date-time");
    error(&app.command("get_sessions", json!({"filter": "user_id=1"})).await, 400, "INVALID_DATA");
    app.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_writes_lose_nothing() {
    let app = std::sync::Arc::new(app().await);
    let s = app.open("u1").await;
    let id = s["id"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let app = app.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let cmd = if i % 2 == 0 { "store_session_data" } else { "update_session_user" };
            let key = if i % 2 == 0 { "data" } else { "user" };
            let a = app.command(cmd, json!({"session_id": id, key: i})).await;
            assert_eq!(a.status, 200, "{}", a.body);
            a.json()["version"].as_i64().unwrap()
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=51).collect::<Vec<_>>());
    let last = app.command("get_session_by_id", json!({"session_id": id})).await.json();
    assert_eq!(last["version"], 51);
}

#[tokio::test]
async fn correlation_ids_and_status_of_the_real_service() {
    let app = app().await;
    let a = app
        .post_raw(
            "/v1/sessions/get_session_by_id?correlation_id=abc-123",
            json!({"session_id": 7}).to_string(),
            Some("application/json"),
        )
        .await;
    assert_eq!(error(&a, 400, "INVALID_DATA")["correlation_id"], "abc-123");
    let status = app.request(reqwest::Method::GET, "/status").await.json();
    assert!(status["components"]
        .as_array()
        .unwrap()
        .contains(&json!("service-sessions:controller:default:default:1.0")));
    let doc = app.request(reqwest::Method::GET, "/v1/sessions/swagger").await;
    let yaml: Value = serde_yaml::from_str(&doc.body).unwrap();
    let paths: Vec<&String> = yaml["paths"].as_object().unwrap().keys().collect();
    assert_eq!(
        paths,
        vec![
            "/v1/sessions/get_sessions",
            "/v1/sessions/get_session_by_id",
            "/v1/sessions/open_session",
            "/v1/sessions/store_session_data",
            "/v1/sessions/update_session_user",
            "/v1/sessions/close_session",
            "/v1/sessions/close_expired_sessions",
            "/v1/sessions/delete_session_by_id",
            "/v1/sessions/touch_session",
            "/v1/sessions/validate_session",
            "/v1/sessions/close_user_sessions",
            "/v1/sessions/rotate_session_id",
            "/v1/sessions/purge_sessions"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_sessions_and_store_operations() {
    let app = app().await;
    let s = app.open("metrics-user").await;
    app.command("store_session_data", json!({"session_id": s["id"], "data": 1})).await;
    app.command("close_session", json!({"session_id": s["id"]})).await;
    app.command("nope", json!({})).await;
    let m = app.request(reqwest::Method::GET, "/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let text = m.body;
    for needle in [
        r#"http_requests_total{method="POST",route="/v1/sessions/open_session",status="200"}"#,
        r#"http_requests_total{method="POST",route="unmatched",status="404"}"#,
        r#"http_request_duration_seconds_bucket{method="POST",route="/v1/sessions/store_session_data""#,
        r#"sessions_events_total{event="opened"}"#,
        r#"sessions_closed_total{reason="close"}"#,
        r#"store_operation_duration_seconds_count{backend="memory",operation="update"}"#,
        "sessions_active ",
        "build_info{version=",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    assert!(!text.contains(s["id"].as_str().unwrap()), "no session ids in metrics");
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_is_complete_and_valid() {
    let app = app().await;
    let doc = app.request(reqwest::Method::GET, "/v1/sessions/swagger").await;
    let spec: openapiv3::OpenAPI = serde_yaml::from_str(&doc.body).expect("a valid OpenAPI 3 document");
    assert!(spec.openapi.starts_with("3.0"));
    assert_eq!(spec.paths.paths.len(), 13);
    for (path, item) in &spec.paths.paths {
        let item = item.as_item().expect("inline path item");
        let op = item.post.as_ref().unwrap_or_else(|| panic!("{path} has POST"));
        assert!(op.operation_id.as_deref().is_some_and(|id| path.ends_with(id)), "{path}");
        assert!(op.request_body.is_some(), "{path}");
        for status in ["200", "204", "400", "409", "500", "503"] {
            if status == "200" && path.ends_with("close_expired_sessions") {
                continue; // it never answers 200
            }
            assert!(
                op.responses.responses.contains_key(&openapiv3::StatusCode::Code(status.parse().unwrap())),
                "{path} documents {status}"
            );
        }
    }
    let components = spec.components.expect("components");
    assert!(components.schemas.contains_key("ErrorDescription"));
    let open = &spec.paths.paths["/v1/sessions/open_session"].as_item().unwrap().post.as_ref().unwrap();
    let body = serde_json::to_value(open.request_body.as_ref().unwrap()).unwrap();
    let schema = &body["content"]["application/json"]["schema"];
    assert_eq!(schema["required"], json!(["user_id"]));
    assert_eq!(schema["properties"]["user_id"]["maxLength"], 256);
    assert_eq!(schema["properties"]["ttl"]["minimum"], 1000);
    let page = app.request(reqwest::Method::GET, "/swagger").await;
    assert!(page.body.contains("/v1/sessions/swagger"));
    app.stop().await;
}

/// `max_sessions` caps the open sessions of the whole store: at the cap `open_session` answers
/// 503 `MAX_SESSIONS`; closing one makes room again.
#[tokio::test]
async fn max_sessions_caps_the_open_sessions() {
    let app = spawn_app(&sessions_yaml("    max_sessions: 2")).await;
    let first = app.open("a").await;
    app.open("b").await;
    let full = app.command("open_session", json!({"user_id": "c"})).await;
    assert_eq!(full.status, 503, "{}", full.body);
    let v = full.json();
    assert_eq!((v["code"].as_str(), v["details"]["max_sessions"].as_u64()), (Some("MAX_SESSIONS"), Some(2)));
    let closed = app.command("close_session", json!({"session_id": first["id"]})).await;
    assert_eq!(closed.status, 200);
    assert_eq!(app.command("open_session", json!({"user_id": "c"})).await.status, 200);
    app.stop().await;
}

/// Opens racing one below `max_sessions` never leave more than the cap open: the memory backend
/// counts and inserts in one step, so exactly one of them gets in and the rest get 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_opens_never_pass_max_sessions() {
    let app = spawn_app(&sessions_yaml("    max_sessions: 5")).await;
    for user in ["a", "b", "c", "d"] {
        app.open(user).await;
    }
    let racers = (0..32).map(|i| app.command("open_session", json!({ "user_id": format!("r{i}") })));
    let answers = futures::future::join_all(racers).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    let page = app.command("get_sessions", json!({"filter": {"active": true}, "paging": {"total": true}})).await;
    assert_eq!(page.json()["total"].as_u64(), Some(5));
    app.stop().await;
}
