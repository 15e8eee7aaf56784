//! A fleet: three service instances (three containers, each with its own endpoint, controller and
//! MongoDB client) on one store, driven over HTTP. No write is lost across instances, the
//! per-user limit holds across instances, rotation racing with writes loses nothing, and the sweep
//! lease passes to another instance when its holder stops. Also the load shedding of
//! `options.max_in_flight` (503 `OVERLOADED` with `Retry-After`).

use crate::helpers::{spawn_app, TestApp};
use crate::persistence::mongodb::{mongodb_uri, unique_name};
use serde_json::{json, Value};
use service_sessions::logic::SessionsController;
use service_sessions::toolkit::descriptor::Descriptor;
use std::sync::Arc;

const DATABASE: &str = "service_sessions_test";

fn instance_yaml(uri: &str, collection: &str) -> String {
    format!(
        r#"
- descriptor: "pip-services:clock:manual:default:1.0"
  start: "2026-01-01T00:00:00.000Z"
- descriptor: "service-sessions:persistence:mongodb:default:1.0"
  collection: "{collection}"
  connection: {{ uri: "{uri}", database: "{DATABASE}" }}
- descriptor: "service-sessions:controller:default:default:1.0"
  options:
    expire_timeout: 3600000
    cleanup_interval: 60000
    max_sessions_per_user: 5
    limit_policy: deny
- descriptor: "pip-services:endpoint:http:default:1.0"
  connection: {{ protocol: http, host: 127.0.0.1, port: 0 }}
- descriptor: "service-sessions:service:commandable-http:default:1.0"
"#
    )
}

/// The first answer that is not 503 (the store may still be getting ready).
async fn call(app: &TestApp, command: &str, body: Value) -> (u16, Value) {
    for _ in 0..100 {
        let a = app.command(command, body.clone()).await;
        if a.status != 503 {
            return (a.status, a.json());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the instance did not get ready");
}

fn controller(app: &TestApp) -> Arc<SessionsController> {
    app.container
        .references()
        .get_one_required::<SessionsController>(&Descriptor::new("service-sessions", "controller", "*", "*", "1.0"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_one_store_lose_nothing_and_sweep_one_at_a_time() {
    crate::requires!("MONGODB_URI");
    let collection = unique_name("fleet");
    let uri = mongodb_uri();
    let mut fleet = Vec::new();
    for _ in 0..3 {
        fleet.push(Arc::new(spawn_app(&instance_yaml(&uri, &collection)).await));
    }

    // 50 writers spread over the instances on one session: versions 2..=51, none lost.
    let (_, s) = call(&fleet[0], "open_session", json!({"user_id": "writer"})).await;
    let id = s["id"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let app = fleet[i % 3].clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let (status, v) = call(&app, "store_session_data", json!({"session_id": id, "data": {"writer": i}})).await;
            assert_eq!(status, 200, "{v}");
            v["version"].as_i64().unwrap()
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=51).collect::<Vec<i64>>());
    let (_, last) = call(&fleet[2], "get_session_by_id", json!({"session_id": id})).await;
    assert_eq!(last["version"], json!(51));

    // 20 racing opens of one user across the instances under a limit of 5: exactly 5.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let app = fleet[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            let (status, v) = call(&app, "open_session", json!({"user_id": "limited"})).await;
            (status, v["code"].as_str().map(str::to_string))
        }));
    }
    let mut opened = 0;
    for t in tasks {
        match t.await.unwrap() {
            (200, _) => opened += 1,
            (409, Some(code)) => assert_eq!(code, "SESSION_LIMIT"),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(opened, 5);
    let (_, page) = call(
        &fleet[1],
        "get_sessions",
        json!({"filter": {"user_id": "limited", "active": "true"}, "paging": {"total": true}}),
    )
    .await;
    assert_eq!(page["total"], json!(5));

    // Rotation racing with writes: every write that was acknowledged is in the rotated session.
    let (_, s) = call(&fleet[0], "open_session", json!({"user_id": "rotating"})).await;
    let old = s["id"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let app = fleet[1 + i % 2].clone();
        let old = old.clone();
        tasks.push(tokio::spawn(async move {
            let a = app.command("store_session_data", json!({"session_id": old, "data": {"w": i}})).await;
            a.status
        }));
    }
    let (status, rotated) = call(&fleet[0], "rotate_session_id", json!({"session_id": old})).await;
    assert_eq!(status, 200, "{rotated}");
    let mut acknowledged = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => acknowledged += 1,
            204 => {} // arrived after the rotation: the old id is unknown
            other => panic!("unexpected status {other}"),
        }
    }
    let new_id = rotated["id"].as_str().unwrap();
    let (_, now) = call(&fleet[2], "get_session_by_id", json!({"session_id": new_id})).await;
    assert_eq!(now["version"], json!(1 + acknowledged + 1), "open + acknowledged writes + the rotation");
    assert_eq!(call(&fleet[2], "get_session_by_id", json!({"session_id": old})).await.0, 204);

    // The sweep lease: one instance sweeps at a time; when it stops, another takes over once its
    // lease (two cleanup intervals) has run out.
    let controllers: Vec<_> = fleet.iter().map(|a| controller(a)).collect();
    assert!(controllers[0].sweep_once().await, "the first to ask takes the lease");
    assert!(!controllers[1].sweep_once().await);
    assert!(!controllers[2].sweep_once().await);
    assert!(controllers[0].sweep_once().await, "the holder renews it");
    let holder = fleet.remove(0);
    Arc::try_unwrap(holder).ok().expect("no other handle").stop().await;
    for app in &fleet {
        app.clock().advance_ms(60_000);
    }
    assert!(!controllers[1].sweep_once().await, "the stopped holder's lease still runs");
    for app in &fleet {
        app.clock().advance_ms(60_001);
    }
    assert!(controllers[1].sweep_once().await, "taken over after the lease ran out");
    assert!(!controllers[2].sweep_once().await);

    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let db = client.database(DATABASE);
    for suffix in ["", "_user_locks", "_leases"] {
        let _ = db.collection::<mongodb::bson::Document>(&format!("{collection}{suffix}")).drop().await;
    }
    for app in fleet {
        if let Ok(app) = Arc::try_unwrap(app) {
            app.stop().await;
        }
    }
}

/// A store whose calls hang (a listener that accepts connections and never answers) with a bound
/// of 2 calls in flight: the third call is refused at once with 503 `OVERLOADED`, rendered with
/// `Retry-After`, while the first two are still waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_max_in_flight_are_shed_at_once_with_retry_after() {
    use service_sessions::persistence::instrumented::InstrumentedPersistence;
    use service_sessions::persistence::mongodb::SessionsMongoDbPersistence;
    use service_sessions::persistence::SessionsPersistence;
    use service_sessions::toolkit::component::Component;
    use service_sessions::toolkit::config::ComponentConfig;
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = black_hole.local_addr().unwrap().port();
    let config = ComponentConfig::new(
        Descriptor::new("service-sessions", "persistence", "mongodb", "default", "1.0"),
        json!({"connection": {"uri": format!("mongodb://127.0.0.1:{port}/?directConnection=true")},
               "options": {"connect_timeout": 30000}}),
    );
    let mongo = Arc::new(SessionsMongoDbPersistence::from_config(&config).unwrap());
    mongo.open(None).await.unwrap();
    let store = Arc::new(InstrumentedPersistence::new("mongodb", mongo.clone(), Some(2)));
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let store = store.clone();
        waiting.push(tokio::spawn(async move { store.get_one_by_id(None, "abc").await }));
    }
    // Wait (on the store's own count, not on time) until both calls hold their permits.
    let mut polls = 0;
    while store.calls_in_flight() < 2 {
        polls += 1;
        assert!(polls < 2000, "the two calls never reached the store");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let shed = store.get_one_by_id(None, "abc").await.unwrap_err();
    assert_eq!((shed.status, shed.code.as_str()), (503, "OVERLOADED"));
    let rendered = service_sessions::toolkit::http::error_response(&shed);
    assert_eq!(rendered.status.as_u16(), 503);
    assert_eq!(rendered.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert_eq!(store.calls_in_flight(), 2, "a shed call takes no permit");
    for w in waiting {
        w.abort();
    }
    drop(black_hole);
}
