//! Switching a running Node deployment on MongoDB over, and back: the original service
//! (`service-sessions-node`, from npm) and this service share one collection. The original writes
//! open, closed and data-carrying sessions; this service reads, lists, filters, writes, closes and
//! deletes them; the original then reads what this service wrote. Every field is compared on the
//! wire, as each service answers its clients.

use crate::helpers::{spawn_app, TestApp};
use crate::original::NodeService;
use crate::persistence::mongodb::{mongodb_uri, unique_name};
use serde_json::{json, Value};

/// `uri` with `database` as its path (the original takes its database from the URI).
fn uri_with_database(uri: &str, database: &str) -> String {
    let (base, query) = uri.split_once('?').map_or((uri, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let hosts_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..hosts_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

async fn our_service(uri: &str, collection: &str) -> TestApp {
    spawn_app(&format!(
        r#"
- descriptor: "service-sessions:persistence:mongodb:default:1.0"
  collection: "{collection}"
  connection: {{ uri: "{uri}" }}
- descriptor: "service-sessions:controller:default:default:1.0"
- descriptor: "pip-services:endpoint:http:default:1.0"
  connection: {{ protocol: http, host: 127.0.0.1, port: 0 }}
- descriptor: "service-sessions:service:commandable-http:default:1.0"
"#
    ))
    .await
}

/// Our answer as JSON, after waiting for the store to be ready (the first call may race the
/// connector).
async fn ours(app: &TestApp, command: &str, body: Value) -> (u16, Value) {
    for _ in 0..100 {
        let a = app.command(command, body.clone()).await;
        if a.status != 503 {
            return (a.status, a.json());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the service did not get ready");
}

/// The session fields both services answer with (the original also echoes `_id` on open).
fn fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("_id");
    }
    v
}

fn without_extensions(v: &Value) -> Value {
    let mut v = fields(v);
    if let Some(m) = v.as_object_mut() {
        for k in ["version", "expire_time", "ttl"] {
            m.remove(k);
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_and_this_service_share_one_collection_both_ways() {
    crate::requires!("MONGODB_URI", "SESSIONS_NODE_DIR");
    let database = unique_name("migration");
    let collection = "sessions";
    let uri = uri_with_database(&mongodb_uri(), &database);
    let node =
        NodeService::start(&[("MONGO_ENABLED", "true"), ("MONGO_SERVICE_URI", &uri), ("MONGO_COLLECTION", collection)])
            .await;

    // The original writes: a session with payloads (numbers it stores as doubles among them), one
    // without, and a closed one.
    let user = json!({"id": "u1", "roles": ["admin", "user"], "n": 12345678901_i64, "ratio": 0.25, "flag": false});
    let (s, a) = node
        .command(
            "open_session",
            json!({"user_id": "u1", "user_name": "Bob", "address": "10.0.0.1", "client": "web",
                   "user": user, "data": {"cart": [1, 2, 3], "note": "hi"}}),
        )
        .await;
    assert_eq!(s, 200, "{a}");
    let (_, b) = node.command("open_session", json!({"user_id": "u1"})).await;
    let (_, c) = node.command("open_session", json!({"user_id": "u2", "data": 5})).await;
    let (s, c_closed) = node.command("close_session", json!({"session_id": c["id"]})).await;
    assert_eq!((s, &c_closed["active"]), (200, &json!(false)));
    let mut originals = Vec::new();
    for id in [&a["id"], &b["id"], &c["id"]] {
        let (s, v) = node.command("get_session_by_id", json!({"session_id": id})).await;
        assert_eq!(s, 200);
        originals.push(v);
    }

    // This service reads every field as the original answers it (plus `version` 1).
    let app = our_service(&uri, collection).await;
    for original in &originals {
        let (s, v) = ours(&app, "get_session_by_id", json!({"session_id": original["id"]})).await;
        assert_eq!(s, 200);
        assert_eq!(v["version"], json!(1), "a legacy session counts as version 1");
        assert_eq!(without_extensions(&v), fields(original), "every field as the original answers it");
    }
    assert_eq!(originals[0]["user"]["n"], json!(12345678901_i64));

    // Lists and filters as Pip clients send them (strings), in the contract's order.
    let list = |filter: Value| {
        let app = &app;
        async move {
            let (s, v) = ours(app, "get_sessions", json!({"filter": filter, "paging": {"total": true}})).await;
            assert_eq!(s, 200, "{v}");
            v
        }
    };
    let page = list(json!({"user_id": "u1"})).await;
    let ids: Vec<&Value> = page["data"].as_array().unwrap().iter().map(|s| &s["id"]).collect();
    assert_eq!(ids, [&b["id"], &a["id"]], "request_time descending");
    assert_eq!(page["total"], json!(2));
    assert!(page["data"][0].get("user").is_none() && page["data"][0].get("data").is_none());
    assert_eq!(list(json!({"active": "false"})).await["data"][0]["id"], c["id"]);
    let from = originals[1]["request_time"].as_str().unwrap();
    let window = list(json!({"user_id": "u1", "from_time": from})).await;
    assert_eq!(window["data"].as_array().unwrap().len(), 1, "from_time is inclusive: {window}");

    // This service writes: data, user, close, delete, and a session of its own.
    let (s, a2) =
        ours(&app, "store_session_data", json!({"session_id": a["id"], "data": {"cart": [], "step": 2}})).await;
    assert_eq!((s, &a2["version"], &a2["data"]), (200, &json!(2), &json!({"cart": [], "step": 2})));
    let (s, b2) =
        ours(&app, "update_session_user", json!({"session_id": b["id"], "user": {"id": "u1", "name": "B"}})).await;
    assert_eq!((s, &b2["version"]), (200, &json!(2)));
    let (s, b3) = ours(&app, "close_session", json!({"session_id": b["id"]})).await;
    assert_eq!((s, &b3["active"], &b3["version"]), (200, &json!(false), &json!(3)));
    let (s, _) = ours(&app, "delete_session_by_id", json!({"session_id": c["id"]})).await;
    assert_eq!(s, 200);
    let (s, d) = ours(
        &app,
        "open_session",
        json!({"user_id": "u3", "user_name": "Dee", "user": {"n": [1, 2.5, null, true, ""]}, "data": {"nested": {"k": "v"}}}),
    )
    .await;
    assert_eq!(s, 200);

    // The original reads what this service wrote: every field equal, the extensions beside them.
    for ours_now in [&a2, &b3, &d] {
        let (s, v) = node.command("get_session_by_id", json!({"session_id": ours_now["id"]})).await;
        assert_eq!(s, 200);
        assert_eq!(fields(&v), fields(ours_now), "the original answers what this service wrote");
    }
    let (s, gone) = node.command("get_session_by_id", json!({"session_id": c["id"]})).await;
    assert_eq!((s, gone), (204, Value::Null));
    let (_, page) = node.command("get_sessions", json!({"filter": {"user_id": "u1"}})).await;
    let ids: Vec<&Value> = page["data"].as_array().unwrap().iter().map(|s| &s["id"]).collect();
    assert_eq!(ids, [&b["id"], &a["id"]]);

    // And back again: the original writes to a session this service wrote; this service reads it.
    let (s, d2) = node.command("store_session_data", json!({"session_id": d["id"], "data": {"from": "node"}})).await;
    assert_eq!(s, 200);
    let (_, v) = ours(&app, "get_session_by_id", json!({"session_id": d["id"]})).await;
    assert_eq!(v["data"], json!({"from": "node"}));
    assert_eq!(v["request_time"], d2["request_time"]);
    assert_eq!(v["version"], json!(1), "the original does not count versions");
    let (s, closed) = ours(&app, "close_session", json!({"session_id": d["id"]})).await;
    assert_eq!((s, &closed["version"]), (200, &json!(2)));
    let (_, v) = node.command("get_session_by_id", json!({"session_id": d["id"]})).await;
    assert_eq!((&v["active"], &v["data"]), (&json!(false), &Value::Null));

    // A foreign document in the collection: lists go on without it, a call on its id is a 500
    // with its own code and no stored value in the body.
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let coll = client.database(&database).collection::<mongodb::bson::Document>(collection);
    coll.insert_one(mongodb::bson::doc! {"_id": "foreign", "user_id": 42, "active": true, "secret": "s3cr3t"})
        .await
        .unwrap();
    let (s, page) = ours(&app, "get_sessions", json!({})).await;
    assert_eq!((s, page["data"].as_array().unwrap().len()), (200, 3), "{page}");
    let a = app.command("get_session_by_id", json!({"session_id": "foreign"})).await;
    assert_eq!((a.status, a.json()["code"].as_str()), (500, Some("SESSION_UNREADABLE")), "{}", a.body);
    assert!(!a.body.contains("s3cr3t"));
    assert_eq!(app.command("store_session_data", json!({"session_id": "foreign", "data": 1})).await.status, 500);
    let untouched = coll.find_one(mongodb::bson::doc! {"_id": "foreign"}).await.unwrap().unwrap();
    assert_eq!(untouched.len(), 4, "left as it is: {untouched}");

    node.stop();
    app.stop().await;
    let _ = client.database(&database).drop().await;
}

#[test]
fn database_goes_into_the_uri_path() {
    assert_eq!(uri_with_database("mongodb://h:1/", "d"), "mongodb://h:1/d");
    assert_eq!(uri_with_database("mongodb://h:1/?retryWrites=false", "d"), "mongodb://h:1/d?retryWrites=false");
    assert_eq!(uri_with_database("mongodb://h:1", "d"), "mongodb://h:1/d");
    assert_eq!(uri_with_database("mongodb://u:p@h:1,h2:2/old?x=1", "d"), "mongodb://u:p@h:1,h2:2/d?x=1");
}
