//! The lifecycle extensions over HTTP: optimistic concurrency, absolute lifetime, per-session
//! TTL, touch (explicit and on read), revoke-all, per-user limits, id rotation, purge, validate.
//! Time moves only through the manual clock.

use crate::helpers::{sessions_yaml, spawn_app, TestApp};
use serde_json::{json, Value};
use std::sync::Arc;

async fn app(options: &str) -> TestApp {
    spawn_app(&sessions_yaml(options)).await
}

fn id(s: &Value) -> String {
    s["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn versions_guard_every_write() {
    let app = app("").await;
    let s = app.open("u1").await;
    let ok = app.command("store_session_data", json!({"session_id": id(&s), "data": 1, "version": 1})).await;
    assert_eq!((ok.status, ok.json()["version"].clone()), (200, json!(2)));
    let stale = app.command("update_session_user", json!({"session_id": id(&s), "user": 1, "version": 1})).await;
    assert_eq!(stale.status, 409);
    let v = stale.json();
    assert_eq!(
        (v["code"].clone(), v["category"].clone(), v["details"]["version"].clone()),
        (json!("SESSION_VERSION_CONFLICT"), json!("Conflict"), json!(2))
    );
    assert_eq!(app.command("touch_session", json!({"session_id": id(&s), "version": 9})).await.status, 409);
    assert_eq!(app.command("close_session", json!({"session_id": id(&s), "version": 1})).await.status, 409);
    assert_eq!(app.command("delete_session_by_id", json!({"session_id": id(&s), "version": 1})).await.status, 409);
    let bad = app.command("store_session_data", json!({"session_id": id(&s), "data": 1, "version": "2"})).await;
    assert_eq!(bad.status, 400);
    let closed = app.command("close_session", json!({"session_id": id(&s), "version": 2})).await.json();
    assert_eq!((closed["active"].clone(), closed["version"].clone()), (json!(false), json!(3)));
    let gone = app.command("delete_session_by_id", json!({"session_id": id(&s), "version": 3})).await;
    assert_eq!((gone.status, gone.json()["version"].clone()), (200, json!(3)));
    app.stop().await;
}

#[tokio::test]
async fn twenty_racing_writers_with_one_version_exactly_one_wins() {
    let app = Arc::new(app("").await);
    let s = app.open("u1").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (app, sid) = (app.clone(), id(&s));
        tasks.push(tokio::spawn(async move {
            app.command("store_session_data", json!({"session_id": sid, "data": i, "version": 1})).await.status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 19, "{statuses:?}");
    assert_eq!(app.command("get_session_by_id", json!({"session_id": id(&s)})).await.json()["version"], 2);
}

#[tokio::test]
async fn absolute_lifetime_ends_busy_sessions() {
    let app = app("    max_lifetime: 7200000\n").await;
    let s = app.open("u1").await;
    assert_eq!(s["expire_time"], "2026-01-01T01:00:00.000Z");
    for _ in 0..3 {
        app.clock().advance_ms(1_800_000);
        let t = app.command("touch_session", json!({"session_id": id(&s)})).await;
        assert_eq!(t.status, 200, "{}", t.body);
    }
    let t = app.command("touch_session", json!({"session_id": id(&s)})).await.json();
    assert_eq!(t["expire_time"], "2026-01-01T02:00:00.000Z", "capped at open_time + max_lifetime");
    app.clock().advance_ms(1_800_001);
    let after = app.command("store_session_data", json!({"session_id": id(&s), "data": 1})).await;
    assert_eq!((after.status, after.json()["code"].clone()), (409, json!("SESSION_CLOSED")));
    let read = app.command("get_session_by_id", json!({"session_id": id(&s)})).await.json();
    assert_eq!((read["active"].clone(), read["close_time"].clone()), (json!(false), json!("2026-01-01T02:00:00.001Z")));
    app.stop().await;
}

#[tokio::test]
async fn per_session_ttl_and_validate() {
    let app = app("").await;
    let s = app.command("open_session", json!({"user_id": "u1", "ttl": 60000})).await.json();
    assert_eq!((s["ttl"].clone(), s["expire_time"].clone()), (json!(60000), json!("2026-01-01T00:01:00.000Z")));
    app.clock().advance_ms(15_000);
    let v = app.command("validate_session", json!({"session_id": id(&s)})).await;
    assert_eq!(
        (v.status, v.json()),
        (200, json!({"is_valid": true, "expire_time": "2026-01-01T00:01:00.000Z", "ttl": 45000}))
    );
    assert_eq!(
        app.command("get_session_by_id", json!({"session_id": id(&s)})).await.json()["version"],
        1,
        "validate never touches"
    );
    app.clock().advance_ms(45_001);
    let v = app.command("validate_session", json!({"session_id": id(&s)})).await.json();
    assert_eq!(v, json!({"is_valid": false, "expire_time": null, "ttl": null}));
    let unknown =
        app.command("validate_session", json!({"session_id": "0123456789abcdef0123456789abcdef"})).await.json();
    assert_eq!(unknown["is_valid"], false);
    assert_eq!(app.command("get_session_by_id", json!({"session_id": id(&s)})).await.json()["active"], false);
    for bad in [json!(999), json!(31 * 86_400_000_i64), json!("60000")] {
        assert_eq!(app.command("open_session", json!({"user_id": "u", "ttl": bad})).await.status, 400, "{bad}");
    }
    app.stop().await;
}

#[tokio::test]
async fn touch_on_read_is_coalesced() {
    let app = app("    touch_on_read: true\n    touch_interval: 60000\n").await;
    let s = app.open("u1").await;
    app.clock().advance_ms(59_999);
    let r = app.command("get_session_by_id", json!({"session_id": id(&s)})).await.json();
    assert_eq!(
        (r["version"].clone(), r["request_time"].clone()),
        (json!(1), json!("2026-01-01T00:00:00.000Z")),
        "inside the interval: no write"
    );
    app.clock().advance_ms(1);
    let r = app.command("get_session_by_id", json!({"session_id": id(&s)})).await.json();
    assert_eq!((r["version"].clone(), r["request_time"].clone()), (json!(2), json!("2026-01-01T00:01:00.000Z")));
    assert_eq!(r["expire_time"], "2026-01-01T01:01:00.000Z");
    let r = app.command("get_session_by_id", json!({"session_id": id(&s)})).await.json();
    assert_eq!(r["version"], 2);
    app.stop().await;
}

#[tokio::test]
async fn close_user_sessions_revokes_all_but_one() {
    let app = app("").await;
    let a = app.open("u1").await;
    let b = app.open("u1").await;
    let c = app.open("u1").await;
    let other = app.open("u2").await;
    let r = app.command("close_user_sessions", json!({"user_id": "u1", "except_session_id": id(&b)})).await;
    assert_eq!((r.status, r.json()), (200, json!({"count": 2})));
    for (s, active) in [(&a, false), (&b, true), (&c, false), (&other, true)] {
        assert_eq!(app.command("get_session_by_id", json!({"session_id": id(s)})).await.json()["active"], active);
    }
    assert_eq!(app.command("close_user_sessions", json!({"user_id": "u1"})).await.json(), json!({"count": 1}));
    assert_eq!(app.command("close_user_sessions", json!({})).await.status, 400);
    app.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_opens_respect_a_deny_limit() {
    let app = Arc::new(app("    max_sessions_per_user: 5\n    limit_policy: deny\n").await);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let a = app.command("open_session", json!({"user_id": "u1"})).await;
            (a.status, a.json()["code"].clone())
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert_eq!(results.iter().filter(|(s, _)| *s == 200).count(), 5);
    assert!(results.iter().filter(|(s, _)| *s != 200).all(|r| *r == (409, json!("SESSION_LIMIT"))), "{results:?}");
    let page =
        app.command("get_sessions", json!({"filter": {"user_id": "u1"}, "paging": {"total": true}})).await.json();
    assert_eq!(page["total"], 5);
}

#[tokio::test]
async fn close_oldest_makes_room() {
    let app = app("    max_sessions_per_user: 2\n    limit_policy: close_oldest\n").await;
    let a = app.open("u1").await;
    app.clock().advance_ms(10);
    let b = app.open("u1").await;
    app.clock().advance_ms(10);
    let c = app.open("u1").await;
    let states: Vec<Value> = [&a, &b, &c]
        .iter()
        .map(|s| async {
            app.command("get_session_by_id", json!({"session_id": id(s)})).await.json()["active"].clone()
        })
        .collect::<futures::stream::FuturesOrdered<_>>()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(states, vec![json!(false), json!(true), json!(true)]);
    app.stop().await;
}

use futures::StreamExt;

#[tokio::test]
async fn rotation_moves_the_session_to_a_new_id() {
    let app = app("").await;
    let s = app.command("open_session", json!({"user_id": "u1", "data": {"cart": [1]}})).await.json();
    app.clock().advance_ms(5);
    let r = app.command("rotate_session_id", json!({"session_id": id(&s), "version": 1})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let moved = r.json();
    assert_ne!(id(&moved), id(&s));
    assert_eq!(id(&moved).len(), 32);
    assert_eq!(
        (moved["data"].clone(), moved["version"].clone(), moved["open_time"].clone()),
        (json!({"cart": [1]}), json!(2), s["open_time"].clone())
    );
    assert_eq!(app.command("get_session_by_id", json!({"session_id": id(&s)})).await.status, 204, "the old id is gone");
    assert_eq!(app.command("get_session_by_id", json!({"session_id": id(&moved)})).await.json(), moved);
    app.command("close_session", json!({"session_id": id(&moved)})).await;
    let closed = app.command("rotate_session_id", json!({"session_id": id(&moved)})).await;
    assert_eq!((closed.status, closed.json()["code"].clone()), (409, json!("SESSION_CLOSED")));
    assert_eq!(app.command("rotate_session_id", json!({"session_id": "abc"})).await.status, 204);
    app.stop().await;
}

#[tokio::test]
async fn purge_deletes_closed_sessions_past_retention() {
    let app = app("    retention: 86400000\n    purge_batch_size: 2\n").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let s = app.open("u1").await;
        app.command("close_session", json!({"session_id": id(&s)})).await;
        ids.push(id(&s));
    }
    let open = app.open("u1").await;
    app.clock().advance_ms(86_400_000);
    assert_eq!(
        app.command("purge_sessions", json!({})).await.json(),
        json!({"count": 0}),
        "exactly at retention: kept"
    );
    app.clock().advance_ms(1);
    assert_eq!(
        app.command("purge_sessions", json!({})).await.json(),
        json!({"count": 5}),
        "in batches of 2 until done"
    );
    for i in &ids {
        assert_eq!(app.command("get_session_by_id", json!({"session_id": i})).await.status, 204);
    }
    let o = app.command("get_session_by_id", json!({"session_id": id(&open)})).await.json();
    assert_eq!(o["active"], false, "the open one expired on read, and was not purged");
    app.stop().await;
}
