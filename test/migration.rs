//! The way between the original service and this one, with the real binaries on both sides:
//! `import` of the original's JSON file and MongoDB collection, `export` back to a file the
//! original loads, re-imports, and `verify` of the file backend's folder.
//!
//! Every `service-sessions` run here uses the shipped `config/config.yml` with a cleared
//! environment plus the variables a deployment would set (`FILE_ENABLED`, `FILE_PATH`,
//! `MONGO_*`), so the commands open the store exactly as the service does.

use crate::original::{free_port, NodeService};
use crate::persistence::mongodb::{mongodb_uri, unique_name};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_service-sessions");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/config.yml");

/// The outcome of one run of the binary.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The number on the report line `key: N`.
    fn count(&self, key: &str) -> u64 {
        let prefix = format!("{key}: ");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{key}` line in:\n{}\n{}", self.stdout, self.stderr))
    }
}

/// Runs `service-sessions <args>` with the shipped config and only `env` set.
fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().args(["-c", CONFIG]).args(args).envs(env.iter().copied()).stdin(Stdio::null());
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn file_env(path: &Path) -> Vec<(&'static str, String)> {
    vec![("FILE_ENABLED", "true".to_string()), ("FILE_PATH", path.display().to_string())]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `value` without the given keys.
fn without(value: &Value, keys: &[&str]) -> Value {
    let mut v = value.clone();
    if let Some(o) = v.as_object_mut() {
        keys.iter().for_each(|k| {
            o.remove(*k);
        });
    }
    v
}

/// This service (the real binary) on a loopback port; stopped with SIGTERM.
struct OurService {
    child: Child,
    port: u16,
    client: reqwest::Client,
}

impl OurService {
    fn start(env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let child = Command::new(BIN)
            .env_clear()
            .args(["-c", CONFIG])
            .envs(env.iter().copied())
            .env("HTTP_PORT", port.to_string())
            .env("LOG_LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the service did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, client: reqwest::Client::new() }
    }

    async fn command(&self, command: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("http://127.0.0.1:{}/v1/sessions/{command}", self.port))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    }

    /// SIGTERM; the service closes the store (written and fsynced) and exits 0.
    fn stop(mut self) {
        assert!(Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success());
        assert_eq!(self.child.wait().unwrap().code(), Some(0));
    }
}

impl Drop for OurService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `get_session_by_id` on either service.
async fn node_get(node: &NodeService, id: &str) -> Value {
    let (status, s) = node.command("get_session_by_id", json!({"session_id": id})).await;
    assert_eq!(status, 200, "{id}: {s}");
    s
}

async fn our_get(ours: &OurService, id: &str) -> Value {
    let (status, s) = ours.command("get_session_by_id", json!({"session_id": id})).await;
    assert_eq!(status, 200, "{id}: {s}");
    s
}

/// Every list item of a service, by id.
fn list_by_id(items: Value) -> std::collections::BTreeMap<String, Value> {
    items["data"].as_array().unwrap().iter().map(|s| (s["id"].as_str().unwrap().to_string(), s.clone())).collect()
}

/// The keys of the original's file layout, in its order, for an open and a closed session.
const NODE_KEYS: [&str; 10] =
    ["id", "user_id", "user_name", "active", "open_time", "request_time", "address", "client", "user", "data"];

/// (a) The original writes its JSON file → `import` → this service serves every session as the
/// original did → changes here → `export` → the original, started on the exported file, serves
/// every session with every field as this service last returned it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_json_file_round_trips_through_this_service_and_back() {
    crate::requires!("SESSIONS_NODE_DIR");
    let tmp = tempfile::tempdir().unwrap();
    let node_file = tmp.path().join("node").join("sessions.json");
    std::fs::create_dir_all(node_file.parent().unwrap()).unwrap();
    let node_file_s = node_file.display().to_string();

    // The original writes open, closed and data-carrying sessions.
    let node = NodeService::start(&[("FILE_ENABLED", "true"), ("FILE_PATH", &node_file_s)]).await;
    let open = |body: Value| {
        let node = &node;
        async move {
            let (status, s) = node.command("open_session", body).await;
            assert_eq!(status, 200, "{s}");
            s["id"].as_str().unwrap().to_string()
        }
    };
    let full = open(json!({"user_id": "u1", "user_name": "Ann", "address": "10.0.0.1", "client": "web",
        "user": {"name": "Ann", "roles": ["admin", "dev"], "n": 12345678901_i64},
        "data": {"cart": [1, 2.5, null, true], "text": "quote \" backslash \\ ü \u{2028} end"}}))
    .await;
    let minimal = open(json!({"user_id": "u2"})).await;
    let closed = open(json!({"user_id": "u1", "data": {"gone": true}})).await;
    assert_eq!(node.command("close_session", json!({"session_id": closed})).await.0, 200);
    let changed = open(json!({"user_id": "u3", "user": {"v": 1}})).await;
    assert_eq!(
        node.command("store_session_data", json!({"session_id": changed, "data": [1, {"a": "b"}]})).await.0,
        200
    );
    assert_eq!(node.command("update_session_user", json!({"session_id": changed, "user": {"v": 2}})).await.0, 200);
    let ids = [full.clone(), minimal.clone(), closed.clone(), changed.clone()];
    let mut original = std::collections::BTreeMap::new();
    for id in &ids {
        original.insert(id.clone(), node_get(&node, id).await);
    }
    let (_, node_list) = node.command("get_sessions", json!({"paging": {"total": true}})).await;
    let node_list = list_by_id(node_list);
    node.stop();
    assert_eq!(original[&closed]["active"], json!(false));
    assert_eq!(original[&closed]["data"], Value::Null);

    // Import into a file-backend store.
    let store = tmp.path().join("store");
    let env = file_env(&store);
    let r = run(&["import", "--from", &node_file_s], &env_refs(&env));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!((r.count("read"), r.count("imported"), r.count("unreadable")), (4, 4, 0), "{}", r.stdout);

    // This service serves them as the original did, plus version 1.
    let ours = OurService::start(&env_refs(&env));
    for id in &ids {
        let s = our_get(&ours, id).await;
        assert_eq!(s["version"], json!(1), "{s}");
        assert!(s.get("expire_time").is_none(), "a legacy session: {s}");
        assert_eq!(without(&s, &["version"]), original[id], "{id}");
    }
    let (_, our_list) = ours.command("get_sessions", json!({"paging": {"total": true}})).await;
    assert_eq!(our_list["total"], json!(4));
    let our_list = list_by_id(our_list);
    assert_eq!(our_list.keys().collect::<Vec<_>>(), node_list.keys().collect::<Vec<_>>());
    for (id, item) in &our_list {
        assert_eq!(without(item, &["version"]), node_list[id], "{id}");
    }

    // Changes here after the import: data stored, a session closed, new sessions opened.
    let (status, s) = ours.command("store_session_data", json!({"session_id": full, "data": {"step": 2}})).await;
    assert_eq!((status, &s["version"]), (200, &json!(2)));
    assert_eq!(ours.command("close_session", json!({"session_id": minimal})).await.0, 200);
    let (_, new) = ours
        .command("open_session", json!({"user_id": "u4", "user_name": "Neu", "user": {"x": [1]}, "data": {"y": "z"}}))
        .await;
    let (_, with_ttl) = ours.command("open_session", json!({"user_id": "u5", "ttl": 600000})).await;
    let all: Vec<String> = ids
        .iter()
        .cloned()
        .chain([new["id"].as_str().unwrap().to_string(), with_ttl["id"].as_str().unwrap().to_string()])
        .collect();
    let mut ours_last = std::collections::BTreeMap::new();
    for id in &all {
        ours_last.insert(id.clone(), our_get(&ours, id).await);
    }
    ours.stop();

    // Export, and the original serves every session as this service last returned it.
    let back = tmp.path().join("back").join("sessions.json");
    std::fs::create_dir_all(back.parent().unwrap()).unwrap();
    let back_s = back.display().to_string();
    let r = run(&["export", "--out", &back_s], &env_refs(&env));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("Exported 6 sessions (4 open, 2 closed)"), "{}", r.stdout);
    assert_eq!(std::fs::read_dir(back.parent().unwrap()).unwrap().count(), 1, "no temp file is left");
    let text = std::fs::read_to_string(&back).unwrap();
    let items: Vec<serde_json::Map<String, Value>> = serde_json::from_str(&text).unwrap();
    assert_eq!(items.len(), 6);
    for item in &items {
        let keys: Vec<&str> = item.keys().map(String::as_str).collect();
        let mut expected: Vec<&str> = NODE_KEYS.to_vec();
        if item["active"] == json!(false) {
            expected.push("close_time");
        }
        if item.contains_key("ttl") {
            expected.push("ttl");
        }
        assert_eq!(keys, expected, "the original's layout, in its order");
    }
    // An existing file is replaced only with --force.
    let r = run(&["export", "--out", &back_s], &env_refs(&env));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("exists; pass --force"), "{}", r.stderr);

    let node = NodeService::start(&[("FILE_ENABLED", "true"), ("FILE_PATH", &back_s)]).await;
    for id in &all {
        let theirs = node_get(&node, id).await;
        assert_eq!(theirs, without(&ours_last[id], &["version", "expire_time"]), "{id}");
    }
    assert_eq!(node_get(&node, with_ttl["id"].as_str().unwrap()).await["ttl"], json!(600000));
    let (_, listed) = node.command("get_sessions", json!({"paging": {"total": true}})).await;
    assert_eq!(listed["total"], json!(6));
    // The original keeps working on it: a write is saved to the file.
    let (status, s) = node.command("store_session_data", json!({"session_id": full, "data": "after"})).await;
    assert_eq!((status, &s["data"]), (200, &json!("after")));
    node.stop();
    let saved: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&back).unwrap()).unwrap();
    assert!(saved.iter().any(|s| s["id"] == json!(full) && s["data"] == json!("after")));
    let ttl_id = with_ttl["id"].as_str().unwrap();
    assert!(saved.iter().any(|s| s["id"] == json!(ttl_id) && s["ttl"] == json!(600000)), "the original keeps `ttl`");
}

/// A connection string of the test deployment naming `db`.
fn uri_with_database(db: &str) -> String {
    let base = mongodb_uri();
    let (base, query) = match base.split_once('?') {
        Some((b, q)) => (b.to_string(), format!("?{q}")),
        None => (base, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let hosts_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    format!("{}/{db}{query}", &base[..hosts_end])
}

/// (b) The original writes its MongoDB collection → `import --from mongodb://… --collection` into
/// a file store (a document that is not a session counted, the source left as it was) → `export`
/// holds every session as the original returned it. Importing a collection into itself is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mongodb_collection_of_the_original_is_imported_and_exported() {
    crate::requires!("MONGODB_URI", "SESSIONS_NODE_DIR");
    let db = unique_name("migration");
    let collection = "sessions_node";
    let uri = uri_with_database(&db);
    let client = mongodb::Client::with_uri_str(mongodb_uri()).await.unwrap();
    let database = client.database(&db);
    struct DropDb(mongodb::Database);
    impl Drop for DropDb {
        fn drop(&mut self) {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                tokio::task::block_in_place(|| {
                    handle.block_on(async {
                        let _ = self.0.drop().await;
                    })
                });
            }
        }
    }
    let _cleanup = DropDb(database.clone());

    let node =
        NodeService::start(&[("MONGO_ENABLED", "true"), ("MONGO_SERVICE_URI", &uri), ("MONGO_COLLECTION", collection)])
            .await;
    let (_, a) = node
        .command(
            "open_session",
            json!({"user_id": "m1", "user_name": "Mo", "address": "1.1.1.1", "client": "app",
            "user": {"roles": ["x"], "n": 1.5}, "data": {"deep": {"list": [1, "two", null]}}}),
        )
        .await;
    let (_, b) = node.command("open_session", json!({"user_id": "m2", "data": {"k": "v"}})).await;
    let (_, c) = node.command("open_session", json!({"user_id": "m3"})).await;
    let ids: Vec<String> = [&a, &b, &c].iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(node.command("close_session", json!({"session_id": ids[1]})).await.0, 200);
    let mut original = std::collections::BTreeMap::new();
    for id in &ids {
        original.insert(id.clone(), node_get(&node, id).await);
    }
    node.stop();
    // A document the original could not have written.
    let raw = database.collection::<mongodb::bson::Document>(collection);
    raw.insert_one(mongodb::bson::doc! {"_id": "broken-document-id", "active": true, "user_id": 42}).await.unwrap();
    let indexes_before = raw.list_index_names().await.unwrap();

    // Refused: the configured store is the source collection itself.
    let same_env = [("MONGO_ENABLED", "true"), ("MONGO_SERVICE_URI", uri.as_str()), ("MONGO_COLLECTION", collection)];
    let r = run(&["import", "--from", &uri, "--collection", collection], &same_env);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("is the configured store itself"), "{}", r.stderr);

    let tmp = tempfile::tempdir().unwrap();
    let env = file_env(&tmp.path().join("store"));
    let r = run(&["import", "--from", &uri, "--collection", collection], &env_refs(&env));
    assert_eq!(r.code, 2, "an unreadable document is a data problem: {}{}", r.stdout, r.stderr);
    assert_eq!(
        (r.count("read"), r.count("imported"), r.count("unreadable"), r.count("skipped")),
        (4, 3, 1, 0),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("unreadable document broken-d…: user_id must be a string"), "{}", r.stdout);
    assert_eq!(raw.list_index_names().await.unwrap(), indexes_before, "the source got no index");
    let names = database.list_collection_names().await.unwrap();
    assert_eq!(names, vec![collection.to_string()], "nothing else was created in the source database");
    assert_eq!(raw.count_documents(mongodb::bson::doc! {}).await.unwrap(), 4, "the source is left as it was");

    let out = tmp.path().join("out.json");
    let r = run(&["export", "--out", &out.display().to_string()], &env_refs(&env));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let exported: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let exported: std::collections::BTreeMap<String, Value> =
        exported.into_iter().map(|s| (s["id"].as_str().unwrap().to_string(), s)).collect();
    assert_eq!(exported.keys().collect::<Vec<_>>(), original.keys().collect::<Vec<_>>());
    for (id, s) in &original {
        assert_eq!(&exported[id], s, "{id}");
    }

    // A second run changes nothing.
    let r = run(&["import", "--from", &uri, "--collection", collection], &env_refs(&env));
    assert_eq!((r.count("imported"), r.count("unchanged"), r.count("unreadable")), (0, 3, 1), "{}", r.stdout);

    // Export straight from the collection as the configured store: the same file; the document
    // that is not a session is left out with a warning.
    let direct = tmp.path().join("direct.json");
    let r = run(&["export", "--out", &direct.display().to_string()], &same_env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("Exported 3 sessions (2 open, 1 closed) from the mongodb store"), "{}", r.stdout);
    assert!(r.stderr.contains("not a readable session"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(&direct).unwrap(),
        std::fs::read_to_string(&out).unwrap(),
        "the same bytes as through the file store"
    );
}

/// Writes a JSON file.
fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec(v).unwrap()).unwrap();
}

fn node_item(id: &str, user: &str, data: Value) -> Value {
    json!({"id": id, "user_id": user, "user_name": null, "active": true,
        "open_time": "2026-03-01T10:00:00.000Z", "request_time": "2026-03-01T10:05:00.000Z",
        "address": null, "client": null, "user": null, "data": data})
}

/// The sessions of an exported file, by id.
fn exported(path: &Path) -> std::collections::BTreeMap<String, Value> {
    let items: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    items.into_iter().map(|s| (s["id"].as_str().unwrap().to_string(), s)).collect()
}

/// (d) Re-running an import is safe: identical sessions are unchanged, another state is kept and
/// reported (or overwritten with `--replace`; `--dry-run` changes nothing), items that are not
/// sessions, ids no command could reach and duplicate ids are counted.
#[test]
fn a_repeated_import_is_safe_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("sessions.json");
    let items = json!([
        node_item("aaaa0000000000000000000000000001", "u1", json!({"n": 1})),
        node_item("aaaa0000000000000000000000000002", "u2", json!(null)),
        node_item("aaaa0000000000000000000000000003", "u3", json!([1, 2])),
        {"id": "bbbb0000000000000000000000000004", "user_id": "u4", "open_time": "not a date"},
        node_item("bad id with spaces", "u5", json!(null)),
        node_item("aaaa0000000000000000000000000001", "u1", json!({"n": "duplicate"})),
    ]);
    write_json(&source, &items);
    let src = source.display().to_string();
    let env = file_env(&tmp.path().join("store"));
    let env = env_refs(&env);
    let counts = |r: &Run| ["read", "imported", "unchanged", "replaced", "skipped", "unreadable"].map(|k| r.count(k));

    let r = run(&["import", "--from", &src], &env);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert_eq!(counts(&r), [6, 3, 0, 0, 1, 2], "{}", r.stdout);
    assert!(r.stdout.contains("unreadable item #4 (id bbbb0000…): open_time: wrong type or format"), "{}", r.stdout);
    assert!(r.stdout.contains("an id the service cannot serve"), "{}", r.stdout);
    assert!(r.stdout.contains("skipped aaaa0000…: its id is in the source twice"), "{}", r.stdout);
    assert!(!r.stdout.contains("aaaa0000000000000000000000000001"), "ids are shortened in reports");

    let r = run(&["import", "--from", &src], &env);
    assert_eq!(counts(&r), [6, 0, 3, 0, 1, 2], "nothing changes the second time: {}", r.stdout);

    // The source moves on (session 2 got data): kept by default and reported.
    let mut moved = items.clone();
    moved[1]["data"] = json!({"new": true});
    write_json(&source, &moved);
    let r = run(&["import", "--from", &src], &env);
    assert_eq!(counts(&r), [6, 0, 2, 0, 2, 2], "{}", r.stdout);
    assert!(r
        .stdout
        .contains("skipped aaaa0000…: the store holds another state of it (store version 1, source version 1)"));
    let r = run(&["import", "--from", &src, "--replace", "--dry-run"], &env);
    assert_eq!(counts(&r), [6, 0, 2, 1, 1, 2], "{}", r.stdout);
    assert!(r.stdout.contains("dry run: nothing was changed"));
    let out = tmp.path().join("out.json");
    assert_eq!(run(&["export", "--out", &out.display().to_string()], &env).code, 0);
    assert_eq!(exported(&out)["aaaa0000000000000000000000000002"]["data"], Value::Null);

    let r = run(&["import", "--from", &src, "--replace"], &env);
    assert_eq!(counts(&r), [6, 0, 2, 1, 1, 2], "{}", r.stdout);
    assert_eq!(run(&["export", "--out", &out.display().to_string(), "--force"], &env).code, 0);
    let back = exported(&out);
    assert_eq!(back.len(), 3);
    assert_eq!(back["aaaa0000000000000000000000000002"]["data"], json!({"new": true}));
    assert_eq!(back["aaaa0000000000000000000000000001"]["data"], json!({"n": 1}), "the first of a duplicate id");
    let r = run(&["import", "--from", &src], &env);
    assert_eq!(counts(&r), [6, 0, 3, 0, 1, 2], "{}", r.stdout);

    // Not JSON: nothing is imported.
    std::fs::write(&source, "[{\"id\": ").unwrap();
    let r = run(&["import", "--from", &src], &env);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is not a JSON array of sessions (line 1"), "{}", r.stderr);
}

/// Frame start offsets of a log file (an 8-byte header, then frames of a 12-byte header and a
/// payload).
fn frame_offsets(bytes: &[u8], header: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = header;
    while pos + 12 <= bytes.len() {
        out.push(pos);
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 12 + len;
    }
    out
}

/// Every file of a folder with its bytes.
fn snapshot_of(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for (p, bytes) in snapshot_of(from) {
        std::fs::write(to.join(p.file_name().unwrap()), bytes).unwrap();
    }
}

/// (c) `verify` on a good store (a snapshot and a log), on one with a flipped byte in the log
/// and in the snapshot (exit 2, naming the file and the frame's offset), and on one with a torn
/// tail (exit 0, reported); it never changes a byte, the `LOCK` file included.
#[test]
fn verify_checks_every_frame_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // A configured `.json` path: the first open imports it into a snapshot; the import adds a log.
    let json_path = tmp.path().join("sessions.json");
    let first: Vec<Value> = (0..5).map(|i| node_item(&format!("cccc{i:028}"), "u", json!({"i": i}))).collect();
    write_json(&json_path, &Value::Array(first));
    let second: Vec<Value> = (0..4)
        .map(|i| {
            let mut s = node_item(&format!("dddd{i:028}"), "u", json!(null));
            if i % 2 == 1 {
                s["active"] = json!(false);
                s["close_time"] = json!("2026-03-01T10:06:00.000Z");
            }
            s
        })
        .collect();
    let more = tmp.path().join("more.json");
    write_json(&more, &Value::Array(second));
    let env = file_env(&json_path);
    let env = env_refs(&env);
    let r = run(&["import", "--from", &more.display().to_string()], &env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.count("imported"), 4);
    let dir = tmp.path().join("sessions");

    let before = snapshot_of(&dir);
    let r = run(&["verify"], &env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // 5 sessions and the trailer in the snapshot, 4 sessions in the log.
    assert_eq!(
        (r.count("frames"), r.count("sessions"), r.count("open"), r.count("closed")),
        (10, 9, 7, 2),
        "{}",
        r.stdout
    );
    let bytes: u64 = before.iter().filter(|(p, _)| !p.ends_with("LOCK")).map(|(_, b)| b.len() as u64).sum();
    assert_eq!(r.count("bytes"), bytes);
    assert!(r.stdout.contains("lock: free") && r.stdout.contains("torn tail: none") && r.stdout.contains("result: ok"));
    assert_eq!(snapshot_of(&dir), before, "nothing changed");

    // --path names a folder directly (no store configured is needed).
    let r = run(&["verify", "--path", &dir.display().to_string()], &[]);
    assert_eq!((r.code, r.count("sessions")), (0, 9), "{}{}", r.stdout, r.stderr);

    let log = dir.join("sessions.00000001.log");
    let log_bytes = std::fs::read(&log).unwrap();
    let offsets = frame_offsets(&log_bytes, 8);
    assert_eq!(offsets.len(), 4);

    // A flipped byte inside the second frame of the log.
    let damaged = tmp.path().join("damaged");
    copy_dir(&dir, &damaged);
    let mut bytes = log_bytes.clone();
    bytes[offsets[1] + 30] ^= 0x10;
    std::fs::write(damaged.join("sessions.00000001.log"), &bytes).unwrap();
    let before = snapshot_of(&damaged);
    let r = run(&["verify", "--path", &damaged.display().to_string()], &[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let expected =
        format!("checksum mismatch in {} at offset {}", damaged.join("sessions.00000001.log").display(), offsets[1]);
    assert!(r.stderr.contains(&expected), "{}", r.stderr);
    assert!(r.stdout.contains(&format!("CORRUPT at offset {}", offsets[1])) && r.stdout.contains("result: CORRUPT"));
    assert_eq!(snapshot_of(&damaged), before, "nothing changed");

    // A flipped byte in the snapshot.
    let damaged = tmp.path().join("damaged_snapshot");
    copy_dir(&dir, &damaged);
    let snap = std::fs::read(dir.join("sessions.snapshot")).unwrap();
    let snap_offsets = frame_offsets(&snap, 20);
    let mut bytes = snap.clone();
    bytes[snap_offsets[2] + 20] ^= 0x01;
    std::fs::write(damaged.join("sessions.snapshot"), &bytes).unwrap();
    let r = run(&["verify", "--path", &damaged.display().to_string()], &[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(&format!("sessions.snapshot at offset {}", snap_offsets[2])), "{}", r.stderr);

    // A torn tail: the last append cut short.
    let torn = tmp.path().join("torn");
    copy_dir(&dir, &torn);
    std::fs::write(torn.join("sessions.00000001.log"), &log_bytes[..offsets[3] + 15]).unwrap();
    std::fs::remove_file(torn.join("LOCK")).unwrap();
    let before = snapshot_of(&torn);
    let r = run(&["verify", "--path", &torn.display().to_string()], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!("torn tail: 15 bytes at offset {} of sessions.00000001.log", offsets[3])),
        "{}",
        r.stdout
    );
    assert_eq!(r.count("sessions"), 8);
    assert_eq!(snapshot_of(&torn), before, "nothing changed, no LOCK file created");

    // No store there, or a store that is not the file backend.
    let r = run(&["verify", "--path", &tmp.path().join("nothing").display().to_string()], &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("No sessions store in"), "{}", r.stderr);
    let r = run(&["verify"], &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("verify checks the file backend"), "{}", r.stderr);
}

/// `verify` while the service has the store open: the lock is reported (and left alone), and
/// `export` refuses the locked store.
#[test]
fn verify_reads_a_store_in_use_and_export_waits_for_the_service_to_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let env = file_env(&tmp.path().join("store"));
    let env = env_refs(&env);
    let ours = OurService::start(&env);
    let r = run(&["verify"], &env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(&format!("lock: held by process {}", ours.child.id())), "{}", r.stdout);
    let out = tmp.path().join("out.json");
    let r = run(&["export", "--out", &out.display().to_string()], &env);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("is open in another process") && r.stderr.contains("stop the service first"),
        "{}",
        r.stderr
    );
    assert!(!out.exists());
    ours.stop();
    let r = run(&["export", "--out", &out.display().to_string()], &env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "[]");
}

/// Exporting over the `.json` file the configured path names (the way back with the file the
/// original used): the file is replaced whole, and the report says to move the store folder aside.
#[test]
fn export_over_the_configured_json_file_says_to_move_the_folder_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let json_path = tmp.path().join("sessions.json");
    let items = json!([node_item("eeee0000000000000000000000000001", "u1", json!({"k": 1}))]);
    write_json(&json_path, &items);
    let env = file_env(&json_path);
    let env = env_refs(&env);
    let path = json_path.display().to_string();
    let r = run(&["export", "--out", &path, "--force"], &env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let folder = tmp.path().join("sessions");
    assert!(r.stdout.contains(&format!("note: {} still holds this service's store", folder.display())), "{}", r.stdout);
    let back: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(back, items, "the imported session comes back as the original wrote it");
    let r = run(&["export", "--out", &tmp.path().join("elsewhere.json").display().to_string()], &env);
    assert!(r.code == 0 && !r.stdout.contains("note:"), "{}", r.stdout);
}
