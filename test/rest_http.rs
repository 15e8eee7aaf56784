//! The REST resource API, black-box over HTTP: every route and status, ETag / If-Match /
//! If-None-Match, RFC 7396 merges, the 412 race, body limits, the OpenAPI document, and API-key
//! authentication on REST, commandable and infrastructure routes. Time moves only through the
//! manual clock.

use crate::helpers::{sessions_yaml, spawn_app, Answer, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;

const T0: &str = "2026-01-01T00:00:00.000Z";
const API: &str = "/api/v1/sessions";

fn rest_yaml(extra: &str) -> String {
    format!("{}- descriptor: \"service-sessions:service:rest:default:1.0\"\n{extra}", sessions_yaml(""))
}

async fn app() -> TestApp {
    spawn_app(&rest_yaml("")).await
}

/// One request with headers and an optional JSON body.
async fn call(app: &TestApp, method: Method, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Answer {
    let mut req = app.client.request(method, app.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let r = req.send().await.expect("request");
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    Answer { status, headers, body: r.text().await.expect("body") }
}

async fn get(app: &TestApp, path: &str) -> Answer {
    call(app, Method::GET, path, &[], None).await
}

fn error(a: &Answer, status: u16, code: &str) -> Value {
    assert_eq!(a.status, status, "{}", a.body);
    let v = a.json();
    assert_eq!((v["code"].as_str(), v["status"].as_u64()), (Some(code), Some(u64::from(status))), "{v}");
    v
}

fn by_id(id: &str, sub: &str) -> String {
    if sub.is_empty() {
        format!("{API}/{id}")
    } else {
        format!("{API}/{id}/{sub}")
    }
}

/// Opens a session over REST and returns it.
async fn open(app: &TestApp, body: Value) -> Value {
    let a = call(app, Method::POST, API, &[], Some(&body.to_string())).await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.json()
}

fn sid(s: &Value) -> String {
    s["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn create_answers_201_with_location_and_etag() {
    let app = app().await;
    let body = json!({"user_id": "u1", "user_name": "Ann", "address": "10.0.0.1", "client": "web",
        "user": {"roles": ["admin"]}, "data": {"cart": []}, "ttl": 60000, "id": "chosen", "active": false});
    let a = call(&app, Method::POST, "/api/v1/sessions?correlation_id=c1", &[], Some(&body.to_string())).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let s = a.json();
    let id = sid(&s);
    assert_eq!(id.len(), 32);
    assert_eq!(a.header("location"), Some(format!("/api/v1/sessions/{id}").as_str()));
    assert_eq!(a.header("etag"), Some("\"1\""));
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(
        s,
        json!({"id": id, "user_id": "u1", "user_name": "Ann", "address": "10.0.0.1", "client": "web", "active": true,
            "open_time": T0, "request_time": T0, "user": {"roles": ["admin"]}, "data": {"cart": []}, "version": 1,
            "expire_time": "2026-01-01T00:01:00.000Z", "ttl": 60000})
    );
    let minimal = open(&app, json!({"user_id": "u2"})).await;
    assert_eq!(
        (minimal["user"].clone(), minimal["data"].clone(), minimal["user_name"].clone()),
        (json!(null), json!(null), json!(null))
    );

    let v = error(
        &call(&app, Method::POST, "/api/v1/sessions?correlation_id=c2", &[], Some("{}")).await,
        400,
        "INVALID_DATA",
    );
    assert_eq!(
        (v["message"].as_str(), v["correlation_id"].as_str()),
        (Some("Validation failed: user_id must not be null"), Some("c2"))
    );
    error(&call(&app, Method::POST, API, &[], Some(r#"{"user_id": 5}"#)).await, 400, "INVALID_DATA");
    error(&call(&app, Method::POST, API, &[], Some(r#"{"user_id": "u", "ttl": 10}"#)).await, 400, "INVALID_DATA");
    error(&call(&app, Method::POST, API, &[], Some(r#"{"user_id": "#)).await, 400, "INVALID_JSON");
    error(&call(&app, Method::POST, API, &[], Some("[1]")).await, 400, "INVALID_DATA");
    let xml =
        app.client.post(app.url(API)).header("content-type", "application/xml").body("<a/>").send().await.unwrap();
    assert_eq!(xml.status().as_u16(), 415);
    app.stop().await;
}

#[tokio::test]
async fn get_by_id_answers_200_304_and_404() {
    let app = app().await;
    let s = open(&app, json!({"user_id": "u1", "data": {"k": 1}})).await;
    let id = sid(&s);
    let a = get(&app, &by_id(&id, "")).await;
    assert_eq!((a.status, a.header("etag"), a.json()), (200, Some("\"1\""), s.clone()));
    for tag in ["\"1\"", "W/\"1\"", "\"7\", \"1\"", "*"] {
        let nm = call(&app, Method::GET, &by_id(&id, ""), &[("if-none-match", tag)], None).await;
        assert_eq!((nm.status, nm.header("etag"), nm.body.as_str()), (304, Some("\"1\""), ""), "{tag}");
    }
    let changed = call(&app, Method::GET, &by_id(&id, ""), &[("if-none-match", "\"2\"")], None).await;
    assert_eq!((changed.status, changed.json()), (200, s));
    let unknown = "0123456789abcdef0123456789abcdef";
    for route in ["", "validate"] {
        let v =
            error(&get(&app, &format!("{}?correlation_id=c3", by_id(unknown, route))).await, 404, "SESSION_NOT_FOUND");
        assert_eq!((v["category"].as_str(), v["details"]["session_id"].as_str()), (Some("NotFound"), Some(unknown)));
        assert_eq!(v["correlation_id"], "c3");
    }
    // An id no session can have is unknown, like any other: 404 on every by-id route.
    let long = "x".repeat(200);
    for odd in ["bad.id", "%C3%BCn%C3%AF", "a%20b", long.as_str()] {
        for route in ["", "validate"] {
            error(&get(&app, &by_id(odd, route)).await, 404, "SESSION_NOT_FOUND");
        }
        error(&call(&app, Method::PUT, &by_id(odd, "data"), &[], Some("1")).await, 404, "SESSION_NOT_FOUND");
        error(&call(&app, Method::PATCH, &by_id(odd, "data"), &[], Some("{}")).await, 404, "SESSION_NOT_FOUND");
        error(&call(&app, Method::PUT, &by_id(odd, "user"), &[], Some("1")).await, 404, "SESSION_NOT_FOUND");
        error(&call(&app, Method::POST, &by_id(odd, "close"), &[], None).await, 404, "SESSION_NOT_FOUND");
        error(&call(&app, Method::POST, &by_id(odd, "touch"), &[], None).await, 404, "SESSION_NOT_FOUND");
        error(&call(&app, Method::DELETE, &by_id(odd, ""), &[], None).await, 404, "SESSION_NOT_FOUND");
    }
    app.stop().await;
}

#[tokio::test]
async fn list_filters_pages_and_refuses_bad_paging() {
    let app = app().await;
    let a = open(&app, json!({"user_id": "u1", "data": 1})).await;
    app.clock().advance_ms(1000);
    let b = open(&app, json!({"user_id": "u1"})).await;
    app.clock().advance_ms(1000);
    let c = open(&app, json!({"user_id": "u2"})).await;
    let ids = |page: &Value| page["data"].as_array().unwrap().iter().map(sid).collect::<Vec<_>>();

    let all = get(&app, API).await;
    assert_eq!(all.status, 200);
    let page = all.json();
    assert_eq!((page["total"].clone(), ids(&page)), (Value::Null, vec![sid(&c), sid(&b), sid(&a)]));
    assert!(page["data"][0].get("user").is_none() && page["data"][0].get("data").is_none());
    let u1 = get(&app, "/api/v1/sessions?user_id=u1&total=true").await.json();
    assert_eq!((u1["total"].clone(), ids(&u1)), (json!(2), vec![sid(&b), sid(&a)]));
    let paged = get(&app, "/api/v1/sessions?skip=1&take=1&total=yes").await.json();
    assert_eq!((paged["total"].clone(), ids(&paged)), (json!(3), vec![sid(&b)]));
    let window =
        get(&app, "/api/v1/sessions?from_time=2026-01-01T00:00:01.000Z&to_time=2026-01-01T00:00:02.000Z").await;
    assert_eq!(ids(&window.json()), vec![sid(&b)]);
    assert_eq!(ids(&get(&app, "/api/v1/sessions?active=false").await.json()), Vec::<String>::new());
    assert_eq!(ids(&get(&app, &format!("/api/v1/sessions?id={}", sid(&a))).await.json()), vec![sid(&a)]);
    for bad in ["skip=-1", "take=abc", "take=1.5", "skip=1e3", "total=maybe", "from_time=soon", "from_time="] {
        error(&get(&app, &format!("/api/v1/sessions?{bad}")).await, 400, "INVALID_DATA");
    }
    // Filters fail closed: an empty value is a value, never a dropped filter.
    for empty in ["user_id=", "id=", "user_id=&total=true"] {
        let page = get(&app, &format!("/api/v1/sessions?{empty}")).await;
        assert_eq!((page.status, ids(&page.json())), (200, Vec::<String>::new()), "{empty}");
    }
    app.stop().await;
}

#[tokio::test]
async fn put_replaces_data_and_user_with_a_new_etag() {
    let app = app().await;
    let id = sid(&open(&app, json!({"user_id": "u1"})).await);
    app.clock().advance_ms(5000);
    let a = call(&app, Method::PUT, &by_id(&id, "data"), &[], Some(r#"{"cart": [1]}"#)).await;
    assert_eq!((a.status, a.header("etag")), (200, Some("\"2\"")), "{}", a.body);
    let s = a.json();
    assert_eq!(
        (s["data"].clone(), s["version"].clone(), s["request_time"].clone()),
        (json!({"cart": [1]}), json!(2), json!("2026-01-01T00:00:05.000Z"))
    );
    let u = call(&app, Method::PUT, &by_id(&id, "user"), &[("if-match", "\"2\"")], Some(r#"{"name": "Ann"}"#)).await;
    assert_eq!((u.status, u.header("etag"), u.json()["user"].clone()), (200, Some("\"3\""), json!({"name": "Ann"})));
    for v in ["false", "0", "\"\"", "null", "[]"] {
        let a = call(&app, Method::PUT, &by_id(&id, "data"), &[], Some(v)).await;
        assert_eq!(a.json()["data"], serde_json::from_str::<Value>(v).unwrap(), "{v}");
    }
    error(&call(&app, Method::PUT, &by_id(&id, "data"), &[], Some("")).await, 400, "INVALID_DATA");
    error(&call(&app, Method::PUT, &by_id(&id, "user"), &[], Some("{")).await, 400, "INVALID_JSON");
    let unknown = "0123456789abcdef0123456789abcdef";
    error(&call(&app, Method::PUT, &by_id(unknown, "data"), &[], Some("1")).await, 404, "SESSION_NOT_FOUND");
    error(
        &call(&app, Method::PUT, &by_id(unknown, "user"), &[("if-match", "\"1\"")], Some("1")).await,
        404,
        "SESSION_NOT_FOUND",
    );
    app.stop().await;
}

#[tokio::test]
async fn patch_merges_as_rfc_7396() {
    let app = app().await;
    let id = sid(&open(&app, json!({"user_id": "u1", "data": {"a": 1, "b": {"c": 2, "d": 3}, "e": "x"}})).await);
    let patch = |body: &'static str| {
        let app = &app;
        let path = by_id(&id, "data");
        async move {
            let r = app
                .client
                .patch(app.url(&path))
                .header("content-type", "application/merge-patch+json")
                .body(body)
                .send()
                .await
                .unwrap();
            let etag = r.headers().get("etag").map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), etag, r.json::<Value>().await.unwrap())
        }
    };
    let (status, etag, s) = patch(r#"{"a": 10, "b": {"c": null}, "e": null, "f": true}"#).await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"2\"")));
    assert_eq!(s["data"], json!({"a": 10, "b": {"d": 3}, "f": true}), "add, replace, remove with null, nested merge");
    let (_, _, s) = patch("[1, 2]").await;
    assert_eq!(s["data"], json!([1, 2]), "a non-object patch replaces the data");
    let (_, _, s) = patch(r#"{"x": {"y": null, "z": 1}}"#).await;
    assert_eq!(s["data"], json!({"x": {"z": 1}}), "an object patch on a non-object starts from {{}}");
    let (_, etag, s) = patch("null").await;
    assert_eq!((s["data"].clone(), etag.as_deref()), (Value::Null, Some("\"5\"")));
    let a = call(&app, Method::PATCH, &by_id(&id, "data"), &[("if-match", "\"5\"")], Some(r#"{"k": 1}"#)).await;
    assert_eq!((a.status, a.json()["data"].clone()), (200, json!({"k": 1})));
    error(&call(&app, Method::PATCH, &by_id(&id, "data"), &[], Some("")).await, 400, "INVALID_DATA");
    error(
        &call(&app, Method::PATCH, "/api/v1/sessions/0123456789abcdef0123456789abcdef/data", &[], Some("{}")).await,
        404,
        "SESSION_NOT_FOUND",
    );
    app.stop().await;
}

#[tokio::test]
async fn stale_if_match_is_412_on_every_write_and_changes_nothing() {
    let app = app().await;
    let id = sid(&open(&app, json!({"user_id": "u1", "data": {"v": 0}})).await);
    let ok = call(&app, Method::PUT, &by_id(&id, "data"), &[("if-match", "\"1\"")], Some(r#"{"v": 1}"#)).await;
    assert_eq!((ok.status, ok.header("etag")), (200, Some("\"2\"")));
    let stale = [("if-match", "\"1\"")];
    let writes: [(Method, &str, Option<&str>); 6] = [
        (Method::PUT, "data", Some("2")),
        (Method::PATCH, "data", Some(r#"{"w": 1}"#)),
        (Method::PUT, "user", Some("2")),
        (Method::POST, "touch", None),
        (Method::POST, "close", None),
        (Method::DELETE, "", None),
    ];
    for (method, sub, body) in writes.clone() {
        let a = call(&app, method.clone(), &format!("{}?correlation_id=c4", by_id(&id, sub)), &stale, body).await;
        let v = error(&a, 412, "PRECONDITION_FAILED");
        assert_eq!(
            (v["category"].as_str(), v["details"]["version"].as_i64(), v["details"]["session_id"].as_str()),
            (Some("Conflict"), Some(2), Some(id.as_str())),
            "{method} {sub}"
        );
        assert_eq!(v["correlation_id"], "c4");
    }
    let now = get(&app, &by_id(&id, "")).await;
    assert_eq!((now.header("etag"), now.json()["data"].clone()), (Some("\"2\""), json!({"v": 1})), "nothing changed");
    for bad in ["W/\"2\"", "2", "\"abc\"", "\"02\"", "\"1\", \"2\""] {
        let v = error(
            &call(&app, Method::PUT, &by_id(&id, "data"), &[("if-match", bad)], Some("3")).await,
            400,
            "INVALID_DATA",
        );
        assert_eq!(v["details"]["header"], "If-Match", "{bad}");
    }
    let star = call(&app, Method::POST, &by_id(&id, "touch"), &[("if-match", "*")], None).await;
    assert_eq!((star.status, star.header("etag")), (200, Some("\"3\"")));
    let gone = call(&app, Method::DELETE, &by_id(&id, ""), &[("if-match", "\"3\"")], None).await;
    assert_eq!((gone.status, gone.header("etag"), gone.json()["version"].clone()), (200, Some("\"3\""), json!(3)));
    app.stop().await;
}

#[tokio::test]
async fn close_touch_validate_and_delete() {
    let app = app().await;
    let id = sid(&open(&app, json!({"user_id": "u1", "data": {"k": 1}})).await);
    app.clock().advance_ms(600_000);
    let v = get(&app, &by_id(&id, "validate")).await;
    assert_eq!(
        (v.status, v.json()),
        (200, json!({"is_valid": true, "expire_time": "2026-01-01T01:00:00.000Z", "ttl": 3_000_000}))
    );
    let t = call(&app, Method::POST, &by_id(&id, "touch"), &[], None).await;
    assert_eq!((t.status, t.header("etag")), (200, Some("\"2\"")));
    let s = t.json();
    assert_eq!(
        (s["request_time"].clone(), s["expire_time"].clone()),
        (json!("2026-01-01T00:10:00.000Z"), json!("2026-01-01T01:10:00.000Z")),
        "sliding expiry"
    );
    let c = call(&app, Method::POST, &by_id(&id, "close"), &[("if-match", "\"2\"")], None).await;
    assert_eq!((c.status, c.header("etag")), (200, Some("\"3\"")));
    let closed = c.json();
    assert_eq!(
        (closed["active"].clone(), closed["close_time"].clone(), closed["data"].clone()),
        (json!(false), json!("2026-01-01T00:10:00.000Z"), Value::Null)
    );
    let again = call(&app, Method::POST, &by_id(&id, "close"), &[], None).await;
    assert_eq!((again.status, again.json()), (200, closed.clone()), "closing is idempotent");
    for (method, sub, body) in [
        (Method::PUT, "data", Some("1")),
        (Method::PATCH, "data", Some("{}")),
        (Method::PUT, "user", Some("1")),
        (Method::POST, "touch", None),
    ] {
        error(&call(&app, method, &by_id(&id, sub), &[], body).await, 409, "SESSION_CLOSED");
    }
    let invalid = get(&app, &by_id(&id, "validate")).await;
    assert_eq!((invalid.status, invalid.json()), (200, json!({"is_valid": false, "expire_time": null, "ttl": null})));
    let d = call(&app, Method::DELETE, &by_id(&id, ""), &[], None).await;
    assert_eq!((d.status, d.header("etag"), d.json()), (200, Some("\"3\""), closed));
    error(&get(&app, &by_id(&id, "")).await, 404, "SESSION_NOT_FOUND");
    error(&call(&app, Method::DELETE, &by_id(&id, ""), &[], None).await, 404, "SESSION_NOT_FOUND");
    error(&call(&app, Method::POST, &by_id(&id, "close"), &[], None).await, 404, "SESSION_NOT_FOUND");
    error(&call(&app, Method::POST, &by_id(&id, "touch"), &[], None).await, 404, "SESSION_NOT_FOUND");
    let wrong = call(&app, Method::PUT, &by_id(&id, "close"), &[], None).await;
    assert_eq!((error(&wrong, 405, "METHOD_NOT_ALLOWED"), wrong.header("allow")).1, Some("POST"));
    app.stop().await;
}

#[tokio::test]
async fn an_expired_session_is_reported_closed() {
    let app = app().await;
    let id = sid(&open(&app, json!({"user_id": "u1"})).await);
    app.clock().advance_ms(3_600_001);
    let v = get(&app, &by_id(&id, "validate")).await;
    assert_eq!((v.status, v.json()["is_valid"].clone()), (200, json!(false)));
    error(&call(&app, Method::PATCH, &by_id(&id, "data"), &[], Some("{}")).await, 409, "SESSION_CLOSED");
    let s = get(&app, &by_id(&id, "")).await;
    assert_eq!(
        (s.json()["active"].clone(), s.json()["close_time"].clone()),
        (json!(false), json!("2026-01-01T01:00:00.001Z"))
    );
    app.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = app().await;
    let id = sid(&open(&app, json!({"user_id": "u1"})).await);
    let big = format!("\"{}\"", "x".repeat(1024 * 1024));
    for (method, path) in
        [(Method::PUT, by_id(&id, "data")), (Method::PATCH, by_id(&id, "data")), (Method::POST, API.to_string())]
    {
        let v = error(&call(&app, method, &path, &[], Some(&big)).await, 413, "PAYLOAD_TOO_LARGE");
        assert_eq!(v["details"]["limit"], 1_048_576);
    }
    assert_eq!(get(&app, &by_id(&id, "")).await.header("etag"), Some("\"1\""));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_with_one_etag_exactly_one_wins() {
    let app = Arc::new(app().await);
    for round in 0..10 {
        let id = sid(&open(&app, json!({"user_id": "racer"})).await);
        let tag = get(&app, &by_id(&id, "")).await.header("etag").unwrap().to_string();
        let writer = |n: u32, method: Method| {
            let (app, path, tag) = (app.clone(), by_id(&id, "data"), tag.clone());
            tokio::spawn(async move {
                let body = json!({ "writer": n }).to_string();
                call(&app, method, &path, &[("if-match", tag.as_str())], Some(&body)).await
            })
        };
        let second = if round % 2 == 0 { Method::PUT } else { Method::PATCH };
        let (a, b) = (writer(1, Method::PUT), writer(2, second));
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let mut statuses = [a.status, b.status];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 412], "round {round}: {} / {}", a.body, b.body);
        let (winner, loser) = if a.status == 200 { (a, b) } else { (b, a) };
        assert_eq!(loser.json()["details"]["version"], 2);
        let now = get(&app, &by_id(&id, "")).await.json();
        assert_eq!((now["version"].clone(), now["data"].clone()), (json!(2), winner.json()["data"].clone()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_merges_without_if_match_lose_nothing() {
    let app = Arc::new(app().await);
    let id = sid(&open(&app, json!({"user_id": "u1", "data": {}})).await);
    let mut tasks = Vec::new();
    for n in 0..6 {
        let (app, path) = (app.clone(), by_id(&id, "data"));
        tasks.push(tokio::spawn(async move {
            call(&app, Method::PATCH, &path, &[], Some(&json!({ format!("k{n}"): n }).to_string())).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let s = get(&app, &by_id(&id, "")).await.json();
    assert_eq!(
        (s["data"].clone(), s["version"].clone()),
        (json!({"k0": 0, "k1": 1, "k2": 2, "k3": 3, "k4": 4, "k5": 5}), json!(7))
    );
}

#[tokio::test]
async fn the_openapi_document_covers_the_rest_routes() {
    let app = app().await;
    let doc = get(&app, "/api/v1/sessions/swagger").await;
    assert_eq!((doc.status, doc.header("content-type")), (200, Some("application/x-yaml")));
    let v: Value = serde_yaml::from_str(&doc.body).unwrap();
    assert_eq!(v["openapi"], "3.0.3");
    let paths = v["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v1/sessions", &["post", "get"][..]),
        ("/api/v1/sessions/{id}", &["get", "delete"]),
        ("/api/v1/sessions/{id}/data", &["put", "patch"]),
        ("/api/v1/sessions/{id}/user", &["put"]),
        ("/api/v1/sessions/{id}/close", &["post"]),
        ("/api/v1/sessions/{id}/touch", &["post"]),
        ("/api/v1/sessions/{id}/validate", &["get"]),
    ] {
        for m in methods {
            assert!(paths[path][m]["responses"].is_object(), "{m} {path}");
        }
    }
    assert_eq!(v["components"]["parameters"]["IfMatch"]["name"], "If-Match");
    assert!(v["components"]["schemas"]["ErrorDescription"].is_object());
    let page = get(&app, "/swagger").await;
    assert!(
        page.body.contains("/api/v1/sessions/swagger") && page.body.contains("/v1/sessions/swagger"),
        "{}",
        page.body
    );
    app.stop().await;
}

#[tokio::test]
async fn the_base_route_is_configurable() {
    let app = spawn_app(&rest_yaml("  base_route: /state/v2/\n  swagger:\n    enable: false\n")).await;
    let a = call(&app, Method::POST, "/state/v2", &[], Some(r#"{"user_id": "u"}"#)).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let location = a.header("location").unwrap().to_string();
    assert!(location.starts_with("/state/v2/"), "{location}");
    assert_eq!(get(&app, &location).await.status, 200);
    assert_eq!(get(&app, API).await.status, 404);
    error(&get(&app, "/state/v2/swagger").await, 404, "SESSION_NOT_FOUND");
    app.stop().await;
}

// ---- API keys ----------------------------------------------------------------------------------

const OPS_KEY: &str = "ops-Secret-7f3a9c";
const WEB_KEY: &str = "web-Secret-1b2d4e";
const WRONG_KEY: &str = "ops-Secret-7f3a9d";

async fn keyed_app(options: &str) -> TestApp {
    let auth = format!(
        "- descriptor: \"pip-services:authenticator:api-key:default:1.0\"\n  credential:\n    api_keys:\n      - {{ id: ops, key: \"{OPS_KEY}\" }}\n      - \"web:{WEB_KEY}\"\n{options}"
    );
    spawn_app(&format!("{}{auth}", rest_yaml(""))).await
}

/// Asserts no secret appears in any part of a response.
fn leaks_nothing(a: &Answer) {
    for secret in [OPS_KEY, WEB_KEY, WRONG_KEY] {
        assert!(!a.body.contains(secret), "key in body: {}", a.body);
        for (name, value) in &a.headers {
            assert!(!value.to_str().unwrap_or("").contains(secret), "key in header {name}");
        }
    }
}

fn unauthorized(a: &Answer) {
    let v = error(a, 401, "UNAUTHORIZED");
    assert_eq!(
        (v["category"].as_str(), v["message"].as_str()),
        (Some("Unauthorized"), Some("Missing or invalid API key"))
    );
    leaks_nothing(a);
}

#[tokio::test]
async fn api_keys_guard_rest_and_commandable_routes() {
    let app = keyed_app("").await;
    let routes: [(Method, &str, Option<&str>); 4] = [
        (Method::GET, API, None),
        (Method::POST, API, Some(r#"{"user_id": "u"}"#)),
        (Method::POST, "/v1/sessions/get_sessions", Some("{}")),
        (Method::POST, "/v1/sessions/open_session", Some(r#"{"user_id": "u"}"#)),
    ];
    for (method, path, body) in routes.clone() {
        unauthorized(&call(&app, method.clone(), path, &[], body).await);
        unauthorized(&call(&app, method.clone(), path, &[("x-api-key", WRONG_KEY)], body).await);
        unauthorized(&call(&app, method.clone(), path, &[("x-api-key", "")], body).await);
        unauthorized(&call(&app, method.clone(), path, &[("x-auth-key", &OPS_KEY[..OPS_KEY.len() - 1])], body).await);
        unauthorized(&call(&app, method.clone(), path, &[("authorization", &format!("Bearer {OPS_KEY}"))], body).await);
        let ok = call(&app, method.clone(), path, &[("x-api-key", OPS_KEY)], body).await;
        assert!(ok.status == 200 || ok.status == 201, "{method} {path}: {}", ok.body);
        leaks_nothing(&ok);
        let alias = call(&app, method.clone(), path, &[("x-auth-key", WEB_KEY)], body).await;
        assert!(alias.status == 200 || alias.status == 201, "{method} {path}: {}", alias.body);
        leaks_nothing(&alias);
    }
    let cid = call(&app, Method::GET, "/api/v1/sessions?correlation_id=k1", &[("x-api-key", WRONG_KEY)], None).await;
    assert_eq!(cid.json()["correlation_id"], "k1");
    let created = call(&app, Method::POST, API, &[("x-api-key", OPS_KEY)], Some(r#"{"user_id": "u"}"#)).await.json();
    unauthorized(&call(&app, Method::DELETE, &by_id(&sid(&created), ""), &[], None).await);
    let big = "x".repeat(2 * 1024 * 1024);
    unauthorized(&call(&app, Method::POST, API, &[], Some(&big)).await);
    let keyed_big = call(&app, Method::POST, API, &[("x-api-key", OPS_KEY)], Some(&big)).await;
    error(&keyed_big, 413, "PAYLOAD_TOO_LARGE");
    unauthorized(&call(&app, Method::OPTIONS, API, &[], None).await);
    app.stop().await;
}

/// With keys configured, a caller without one cannot probe routes or methods: 401 before 404
/// and 405. CORS preflights stay open when CORS is configured.
#[tokio::test]
async fn keys_answer_401_before_404_and_405() {
    let app = keyed_app("").await;
    for (method, path) in [
        (Method::GET, "/nowhere"),
        (Method::POST, "/v1/sessions/drop_database"),
        (Method::GET, "/v1/sessions/get_sessions"),
        (Method::PUT, API),
        (Method::from_bytes(b"PROBE").unwrap(), "/status"),
    ] {
        unauthorized(&call(&app, method.clone(), path, &[], None).await);
        unauthorized(&call(&app, method.clone(), path, &[("x-api-key", WRONG_KEY)], None).await);
        let keyed = call(&app, method.clone(), path, &[("x-api-key", OPS_KEY)], None).await;
        assert!(keyed.status == 404 || keyed.status == 405, "{method} {path}: {}", keyed.status);
    }
    assert_eq!(get(&app, "/heartbeat").await.status, 200);
    app.stop().await;
    let cors = format!(
        "{}- descriptor: \"pip-services:authenticator:api-key:default:1.0\"\n  credential: {{ api_keys: \"ops:{OPS_KEY}\" }}\n",
        rest_yaml("").replace("port: 0 }", "port: 0 }\n  cors: { allowed_origins: \"https://app.example\" }")
    );
    let app = spawn_app(&cors).await;
    let preflight = call(
        &app,
        Method::OPTIONS,
        API,
        &[("origin", "https://app.example"), ("access-control-request-method", "POST")],
        None,
    )
    .await;
    assert_eq!(preflight.status, 204, "CORS preflights stay open");
    assert_eq!(preflight.header("access-control-allow-origin"), Some("https://app.example"));
    app.stop().await;
}

/// `/status` shows the host name and the bind address only to a caller with a key.
#[tokio::test]
async fn status_reveals_host_and_address_only_with_a_key() {
    let app = keyed_app("  options:\n    protect_status: false\n").await;
    let address = app.address.to_string();
    let open = get(&app, "/status").await;
    assert_eq!(open.status, 200);
    let v = open.json();
    assert_eq!(v["id"], Value::Null);
    assert!(!open.body.contains(&address), "{}", open.body);
    assert!(open.body.contains("listening on (hidden)"), "{}", open.body);
    let keyed = call(&app, Method::GET, "/status", &[("x-api-key", OPS_KEY)], None).await;
    assert!(keyed.body.contains(&format!("listening on {address}")), "{}", keyed.body);
    let host = hostname_of(&keyed.json());
    assert!(!host.is_empty());
    app.stop().await;
}

fn hostname_of(status: &Value) -> String {
    status["id"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn heartbeat_is_open_and_status_is_protected_by_default() {
    let app = keyed_app("").await;
    let hb = get(&app, "/heartbeat").await;
    assert_eq!(hb.status, 200);
    for path in ["/status", "/ready", "/swagger", "/api/v1/sessions/swagger", "/v1/sessions/swagger"] {
        unauthorized(&get(&app, path).await);
        let ok = call(&app, Method::GET, path, &[("x-api-key", OPS_KEY)], None).await;
        assert_eq!(ok.status, 200, "{path}");
        leaks_nothing(&ok);
    }
    app.stop().await;
}

#[tokio::test]
async fn protect_status_false_opens_status_and_swagger_only() {
    let app = keyed_app("  options:\n    protect_status: false\n").await;
    for path in ["/heartbeat", "/status", "/ready", "/swagger", "/api/v1/sessions/swagger", "/v1/sessions/swagger"] {
        let a = get(&app, path).await;
        assert_eq!(a.status, 200, "{path}");
        leaks_nothing(&a);
    }
    unauthorized(&get(&app, API).await);
    unauthorized(&call(&app, Method::POST, "/v1/sessions/get_sessions", &[], Some("{}")).await);
    app.stop().await;
}

// ---- the shipped config, as a process ----------------------------------------------------------

/// One raw HTTP/1.1 exchange; returns the whole response text.
fn raw_http(address: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(address).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_shipped_config_serves_rest_behind_keys_from_the_environment() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_service-sessions"))
        .args(["-c", concat!(env!("CARGO_MANIFEST_DIR"), "/config/config.yml")])
        .args(["-p", "HTTP_PORT=0;HTTP_HOST=127.0.0.1;LOG_FORMAT=json;LOG_LEVEL=info"])
        .env("REST_ENABLED", "true")
        .env("API_KEYS", format!("ops:{OPS_KEY},web:{WEB_KEY}"))
        .env_remove("HTTP_PORT")
        .env_remove("HTTP_HOST")
        .env_remove("LOG_FORMAT")
        .env_remove("LOG_LEVEL")
        .env_remove("REST_BASE_ROUTE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let address = loop {
        let mut line = String::new();
        assert!(log.read_line(&mut line).unwrap() > 0, "the service stopped before listening: {seen}");
        seen.push_str(&line);
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "HTTP endpoint listening." {
            break v["fields"]["address"].as_str().unwrap().to_string();
        }
    };
    let post = |key: Option<&str>| {
        let header = key.map(|k| format!("x-api-key: {k}\r\n")).unwrap_or_default();
        let body = r#"{"user_id":"u1"}"#;
        raw_http(
            &address,
            &format!(
                "POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{header}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let refused = post(None);
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let created = post(Some(WEB_KEY));
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    assert!(created.to_ascii_lowercase().contains("\r\netag: \"1\"\r\n"), "{created}");
    let heartbeat = raw_http(&address, "GET /heartbeat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(heartbeat.starts_with("HTTP/1.1 200"), "{heartbeat}");
    for text in [&refused, &created, &heartbeat, &seen] {
        assert!(!text.contains(OPS_KEY) && !text.contains(WEB_KEY), "a key leaked: {text}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
