//! The file backend runs the conformance fixture, plus its own durability cases: reopening (also
//! after compaction, also with compaction racing writers), torn tails, corruption, the Node JSON
//! import, the lock, sync modes, write failures and a container restart over HTTP.

use super::fixture::{at, session};
use super::Subject;
use crate::helpers::spawn_app;
use serde_json::{json, Value};
use service_sessions::build::file_persistence_descriptor;
use service_sessions::data::version1::{SessionV1, SessionsFilter};
use service_sessions::persistence::file::{FileOptions, SessionsFilePersistence, SyncMode, FILE_LOCKED};
use service_sessions::persistence::{
    ExpiryPolicy, LimitPolicy, OpenLimits, PageOptions, SessionAnswer, SessionChange, SessionLimit, SessionState,
    SessionUpdate, SessionsPersistence, UpdateOutcome, WriteCondition,
};
use service_sessions::toolkit::component::Component;
use service_sessions::toolkit::config::ComponentConfig;
use service_sessions::toolkit::data::PagingParams;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn store(path: &Path, options: FileOptions) -> Arc<SessionsFilePersistence> {
    Arc::new(SessionsFilePersistence::new(path, options, PageOptions::default()))
}

async fn opened(path: &Path, options: FileOptions) -> Arc<SessionsFilePersistence> {
    let s = store(path, options);
    s.open(None).await.unwrap();
    s
}

fn never() -> FileOptions {
    FileOptions { sync: SyncMode::Never, ..FileOptions::default() }
}

pub(super) async fn subject() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let p = opened(&dir.path().join("store"), FileOptions::default()).await;
    Subject { persistence: p.clone(), _guard: Box::new((p, dir)) }
}

crate::conformance_tests!(file_conformance, crate::persistence::file::subject);

fn store_data(value: Value, ms: i64) -> SessionUpdate {
    SessionUpdate {
        condition: WriteCondition::default(),
        change: SessionChange::StoreData(value.into()),
        now: at(ms),
        policy: ExpiryPolicy::default(),
    }
}

/// Every session of a store, in list order, full.
async fn dump(p: &SessionsFilePersistence) -> Vec<SessionV1> {
    let mut out = Vec::new();
    let mut skip = 0;
    loop {
        let page = p.get_page_by_filter(None, &SessionsFilter::default(), &PagingParams::new(skip, 100, false)).await;
        let page = page.unwrap();
        if page.data.is_empty() {
            return out;
        }
        skip += page.data.len() as u64;
        for s in page.data {
            out.push(p.get_one_by_id(None, &s.id).await.unwrap().unwrap());
        }
    }
}

/// A mix of every kind of write.
async fn write_mix(p: &SessionsFilePersistence, prefix: &str, n: usize) {
    for i in 0..n {
        let id = format!("{prefix}{i:04}");
        p.create(None, session(&id, &format!("u{}", i % 7), i as i64)).await.unwrap();
        if i % 2 == 0 {
            p.update(None, &id, store_data(json!({"n": i, "s": "ünï"}), 10_000 + i as i64)).await.unwrap();
        }
        if i % 5 == 0 {
            let close = SessionUpdate {
                condition: WriteCondition::default(),
                change: SessionChange::Close,
                now: at(20_000),
                policy: ExpiryPolicy::default(),
            };
            p.update(None, &id, close.clone()).await.unwrap();
        }
        if i % 11 == 3 {
            p.delete_by_id(None, &id).await.unwrap();
        }
    }
    p.close_expired(None, at(5), at(30_000)).await.unwrap();
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn reopen_keeps_everything_also_after_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let p = opened(&path, FileOptions::default()).await;
    write_mix(&p, "a", 40).await;
    let before = dump(&p).await;
    assert_eq!(before.len(), 36);
    p.close(None).await.unwrap();

    let p = opened(&path, never()).await;
    let report = p.recovery().unwrap();
    assert_eq!((report.sessions, report.snapshot_generation, report.torn_tail), (36, 0, None));
    assert_eq!(dump(&p).await, before);
    let stats = p.compact().await.unwrap();
    assert_eq!((stats.generation, stats.sessions), (1, 36));
    write_mix(&p, "b", 30).await;
    p.clear(None).await.unwrap();
    write_mix(&p, "c", 20).await;
    let before = dump(&p).await;
    p.close(None).await.unwrap();
    assert!(path.join("sessions.snapshot").exists());
    assert_eq!(log_files(&path), vec![path.join("sessions.00000002.log")], "compacted logs are removed");

    let p = opened(&path, never()).await;
    let report = p.recovery().unwrap();
    assert_eq!((report.snapshot_generation, report.sessions), (1, before.len()));
    assert_eq!(dump(&p).await, before);
    p.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_compaction_loses_no_concurrent_write() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    // A tiny threshold: the background task compacts whenever the logs outgrow the snapshot.
    let options = FileOptions { sync: SyncMode::Never, compact_threshold: 1, ..FileOptions::default() };
    let p = opened(&path, options).await;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                let id = format!("w{w}-{i}");
                p.create(None, session(&id, "u", i)).await.unwrap();
                for k in 0..5 {
                    let out = p.update(None, &id, store_data(json!([w, i, k]), 100 + k)).await.unwrap();
                    assert!(matches!(out, UpdateOutcome::Updated(_)));
                }
                if i % 4 == 0 {
                    p.delete_by_id(None, &format!("w{w}-{}", i / 2)).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let before = dump(&p).await;
    p.close(None).await.unwrap();
    let p = opened(&path, never()).await;
    let report = p.recovery().unwrap();
    assert!(report.snapshot_generation > 0, "compaction ran in the background: {report:?}");
    assert_eq!(dump(&p).await, before);
    for w in 0..8 {
        let last = p.get_one_by_id(None, &format!("w{w}-39")).await.unwrap().unwrap();
        assert_eq!((last.data, last.version), (Some(json!([w, 39, 4])), 6));
    }
    p.close(None).await.unwrap();
}

/// Frame start offsets of a log file (header of 8 bytes, frames of 12-byte header + payload).
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 8;
    while pos + 12 <= bytes.len() {
        out.push(pos);
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 12 + len;
    }
    out
}

#[tokio::test]
async fn torn_tail_is_cut_off_with_a_report() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let p = opened(&path, FileOptions::default()).await;
    for i in 0..3 {
        p.create(None, session(&format!("s{i}"), "u", i)).await.unwrap();
    }
    p.close(None).await.unwrap();
    let log = log_files(&path).pop().unwrap();
    let bytes = std::fs::read(&log).unwrap();
    let offsets = frame_offsets(&bytes);
    assert_eq!(offsets.len(), 3);
    // A crash in the middle of the third append.
    std::fs::write(&log, &bytes[..offsets[2] + 20]).unwrap();

    let p = opened(&path, FileOptions::default()).await;
    let torn = p.recovery().unwrap().torn_tail.expect("torn tail reported");
    assert_eq!((torn.file.as_str(), torn.offset, torn.dropped_bytes), ("sessions.00000001.log", offsets[2] as u64, 20));
    assert!(p.get_one_by_id(None, "s1").await.unwrap().is_some(), "the last complete record is kept");
    assert_eq!(p.get_one_by_id(None, "s2").await.unwrap(), None);
    assert_eq!(std::fs::metadata(&log).unwrap().len(), offsets[2] as u64, "the file was cut");
    p.create(None, session("s3", "u", 3)).await.unwrap();
    p.close(None).await.unwrap();
    // Zeros after the last record (the size grew before the data reached the disk).
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, &[0u8; 100]).unwrap();
    drop(f);

    let p = opened(&path, FileOptions::default()).await;
    let report = p.recovery().unwrap();
    assert_eq!(report.torn_tail.map(|t| t.dropped_bytes), Some(100));
    assert_eq!(report.sessions, 3);
    assert!(p.get_one_by_id(None, "s3").await.unwrap().is_some());
    p.close(None).await.unwrap();
    let p = opened(&path, FileOptions::default()).await;
    assert_eq!(p.recovery().unwrap().torn_tail, None, "repaired for good");
    p.close(None).await.unwrap();
}

#[tokio::test]
async fn flipped_byte_mid_log_is_reported_with_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let p = opened(&path, never()).await;
    for i in 0..10 {
        p.create(None, session(&format!("s{i}"), "u", i)).await.unwrap();
    }
    p.close(None).await.unwrap();
    let log = log_files(&path).pop().unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    let offsets = frame_offsets(&bytes);
    for (at, frame) in [(offsets[4] + 40, offsets[4]), (offsets[6] + 1, offsets[6])] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x04;
        std::fs::write(&log, &damaged).unwrap();
        let e = store(&path, never()).open(None).await.unwrap_err();
        assert_eq!((e.code.as_str(), e.status), ("CORRUPT_STORE", 500));
        assert!(e.message.contains(&log.display().to_string()), "{}", e.message);
        assert!(e.message.contains(&format!("at offset {frame}")), "{}", e.message);
        assert_eq!(e.details["offset"], json!(frame));
        assert_eq!(std::fs::read(&log).unwrap(), damaged, "nothing is changed on disk");
        assert!(!e.message.contains("\"u\""), "no session data in errors");
    }
    bytes[3] ^= 0x01;
    std::fs::write(&log, &bytes).unwrap();
    let e = store(&path, never()).open(None).await.unwrap_err();
    assert!(e.message.contains("bad header") && e.message.contains("at offset 0"), "{}", e.message);
}

#[tokio::test]
async fn flipped_byte_in_the_snapshot_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let p = opened(&path, never()).await;
    for i in 0..10 {
        p.create(None, session(&format!("s{i}"), "u", i)).await.unwrap();
    }
    p.compact().await.unwrap();
    p.close(None).await.unwrap();
    let snap = path.join("sessions.snapshot");
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&snap, &bytes).unwrap();
    let e = store(&path, never()).open(None).await.unwrap_err();
    assert_eq!(e.code, "CORRUPT_STORE");
    assert!(e.message.contains("sessions.snapshot at offset"), "{}", e.message);
    // A truncated snapshot is corruption too, never a torn tail.
    bytes[mid] ^= 0x20;
    std::fs::write(&snap, &bytes[..bytes.len() - 3]).unwrap();
    let e = store(&path, never()).open(None).await.unwrap_err();
    assert!(e.message.contains("truncated snapshot"), "{}", e.message);
}

#[tokio::test]
async fn missing_log_generation_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let p = opened(&path, never()).await;
    p.create(None, session("s1", "u", 1)).await.unwrap();
    p.compact().await.unwrap();
    p.create(None, session("s2", "u", 2)).await.unwrap();
    p.compact().await.unwrap();
    p.create(None, session("s3", "u", 3)).await.unwrap();
    p.close(None).await.unwrap();
    // Put back an older snapshot situation: generation 2's log is gone but 3's is there.
    let snap = std::fs::read(path.join("sessions.snapshot")).unwrap();
    let mut old = snap.clone();
    old[8..16].copy_from_slice(&1u64.to_le_bytes());
    let crc = crc32fast::hash(&old[..16]);
    old[16..20].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path.join("sessions.snapshot"), &old).unwrap();
    let e = store(&path, never()).open(None).await.unwrap_err();
    assert!(e.message.contains("missing log file in") && e.message.contains("sessions.00000002.log"), "{}", e.message);
}

#[tokio::test]
async fn imports_a_node_json_file_once() {
    let tmp = tempfile::tempdir().unwrap();
    let json_path = tmp.path().join("sessions.json");
    let node = json!([
        {"id": "n1", "user_id": "u1", "user_name": "Ann", "address": "1.2.3.4", "client": "web",
         "active": true, "open_time": "2025-05-01T10:00:00.000Z", "request_time": "2025-05-01T10:05:00.000Z"},
        {"id": "n2", "user_id": "u2", "active": false, "open_time": "2025-05-01T09:00:00.000Z",
         "request_time": "2025-05-01T09:30:00.000Z", "close_time": "2025-05-01T09:30:00.000Z",
         "user": {"name": "Bob"}, "data": {"cart": [1]}}
    ]);
    std::fs::write(&json_path, node.to_string()).unwrap();
    let p = opened(&json_path, FileOptions::default()).await;
    assert_eq!(p.dir(), tmp.path().join("sessions"));
    assert_eq!(p.recovery().unwrap().imported, Some(2));
    let n1 = p.get_one_by_id(None, "n1").await.unwrap().unwrap();
    let mut expected = node[0].clone();
    expected["user"] = Value::Null;
    expected["data"] = Value::Null;
    expected["version"] = json!(1);
    assert_eq!(serde_json::to_value(&n1).unwrap(), expected);
    let n2 = p.get_one_by_id(None, "n2").await.unwrap().unwrap();
    assert_eq!((n2.active, n2.version, n2.user_name, n2.data), (false, 1, None, Some(json!({"cart": [1]}))));
    p.update(None, "n1", store_data(json!("after"), 0)).await.unwrap();
    p.close(None).await.unwrap();
    assert_eq!(std::fs::read_to_string(&json_path).unwrap(), node.to_string(), "the JSON file is left as it was");

    // Once the store exists the JSON file is not read again.
    std::fs::write(&json_path, "[]").unwrap();
    let p = opened(&json_path, FileOptions::default()).await;
    assert_eq!(p.recovery().unwrap().imported, None);
    assert_eq!(p.get_one_by_id(None, "n1").await.unwrap().unwrap().data, Some(json!("after")));
    assert_eq!(p.get_one_by_id(None, "n2").await.unwrap().unwrap().version, 1);
    p.close(None).await.unwrap();

    // A missing JSON file starts empty; a broken one stops start-up without echoing its content.
    let p = opened(&tmp.path().join("absent.json"), FileOptions::default()).await;
    assert_eq!(p.recovery().unwrap().sessions, 0);
    p.close(None).await.unwrap();
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, r#"[{"id": "x", "user_id": "secret-user", "open_time": "never"}]"#).unwrap();
    let e = store(&bad, FileOptions::default()).open(None).await.unwrap_err();
    assert_eq!(e.code, "IMPORT_FAILED");
    assert!(e.message.contains("item #1 is not a session") && !e.message.contains("secret"), "{}", e.message);
    std::fs::write(&bad, "{not json").unwrap();
    let e = store(&bad, FileOptions::default()).open(None).await.unwrap_err();
    assert!(e.message.contains("not a JSON array of sessions (line 1, column"), "{}", e.message);
}

#[tokio::test]
async fn the_lock_prevents_a_second_open() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let first = opened(&path, FileOptions::default()).await;
    let second = store(&path, FileOptions::default());
    let e = second.open(None).await.unwrap_err();
    assert_eq!((e.code.as_str(), e.category.as_str()), ("FILE_LOCKED", "FileError"));
    assert!(e.message.contains(&format!("held by process {}", std::process::id())), "{}", e.message);
    first.close(None).await.unwrap();
    second.open(None).await.unwrap();
    second.close(None).await.unwrap();
}

/// A write answered as its text is logged from the changed record itself (no session is built
/// for it): after a reopen every session reads exactly as the last answer about it — payloads,
/// texts, the closed state, `expire_time` and `ttl`.
#[tokio::test]
async fn writes_answered_as_text_reopen_as_answered() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let p = opened(&path, never()).await;
    let mut with_ttl = session("t1", "u1", 10);
    with_ttl.user_name = Some("ünï".into());
    with_ttl.ttl = Some(60_000);
    p.create(None, with_ttl).await.unwrap();
    p.create(None, session("t2", "u2", 20)).await.unwrap();
    let policy = ExpiryPolicy { idle_timeout: Some(30_000), max_lifetime: Some(90_000) };
    let writes = [
        ("t1", SessionChange::StoreData(json!({"n": 1, "s": "ü\"x"}).into())),
        ("t1", SessionChange::UpdateUser(json!(["bob", null]).into())),
        ("t2", SessionChange::Touch),
        ("t2", SessionChange::StoreData(Value::Null.into())),
        ("t2", SessionChange::Close),
    ];
    let mut answered = std::collections::BTreeMap::new();
    for (k, (id, change)) in writes.into_iter().enumerate() {
        let u = SessionUpdate { condition: WriteCondition::default(), change, now: at(100 + k as i64), policy };
        let UpdateOutcome::Updated(text) = p.update_json(None, id, u).await.unwrap() else { panic!("{id}") };
        answered.insert(id, text.into_string());
    }
    let texts = |p: Arc<SessionsFilePersistence>| async move {
        let mut out = std::collections::BTreeMap::new();
        for id in ["t1", "t2"] {
            let s = p.get_one_by_id(None, id).await.unwrap().unwrap();
            out.insert(id, serde_json::to_string(&s).unwrap());
        }
        p.close(None).await.unwrap();
        out
    };
    assert_eq!(texts(p).await, answered);
    assert_eq!(texts(opened(&path, never()).await).await, answered);
}

/// Start-up makes each session's record from its logged bytes, keeping a payload's bytes when
/// they are the canonical text and parsing any other: every kind of payload reads back after a
/// reopen — from the logs, then from a snapshot — as it was, its answer's text serde's, with
/// enough sessions that start-up decodes them on its worker threads.
#[tokio::test]
async fn every_kind_of_payload_reopens_as_it_was() {
    let payloads = [
        json!({"n": 1, "cart": [1, 2, 3]}),
        json!([]),
        json!({}),
        json!({"f": 1.5, "e": 1e300, "z": -0.0, "small": 5e-324}),
        json!({"s": "a\"b\\c\n\u{1}é", "k\"ey": ["\u{7f}"]}),
        json!({"big": 12_345_678_901_234_567_890u64, "neg": -9_223_372_036_854_775_808i64}),
        json!({"deep": [[[{"a": [null, false, {"b": {}}]}]]]}),
        json!("text"),
        json!(42),
        json!(-7.25),
        json!(true),
        Value::Null,
    ];
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let p = opened(&path, never()).await;
    let n = 9_000;
    for i in 0..n {
        let mut s = session(&format!("p{i:05}"), &format!("u{}", i % 13), i as i64);
        s.data = Some(payloads[i % payloads.len()].clone());
        s.user = Some(payloads[(i + 5) % payloads.len()].clone());
        p.create(None, s).await.unwrap();
    }
    let before = dump(&p).await;
    assert_eq!(before.len(), n);
    p.close(None).await.unwrap();
    // Each payload as `data` and as `user` (the first sessions hold each of them once).
    let kinds = payloads.len();
    let answers = |p: Arc<SessionsFilePersistence>| async move {
        let no = |_: &SessionState| false;
        for i in 0..2 * kinds {
            let id = format!("p{i:05}");
            let Some(SessionAnswer::Text(text)) = p.get_one_json(None, &id, &no).await.unwrap() else { panic!("{id}") };
            let session = p.get_one_by_id(None, &id).await.unwrap().unwrap();
            assert_eq!(text.as_str(), serde_json::to_string(&session).unwrap(), "{id}");
        }
        p
    };
    let p = answers(opened(&path, never()).await).await;
    assert_eq!(p.recovery().unwrap().log_records, n as u64);
    assert_eq!(dump(&p).await, before);
    p.compact().await.unwrap();
    p.close(None).await.unwrap();
    let p = answers(opened(&path, never()).await).await;
    assert_eq!(p.recovery().unwrap().snapshot_generation, 1);
    assert_eq!(dump(&p).await, before);
    p.close(None).await.unwrap();
}

/// An open answered as its text logs the new session, after the sessions its per-user limit
/// closed to make room, as they applied: after a reopen both read as before it.
#[tokio::test]
async fn opens_answered_as_text_log_what_they_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let p = opened(&path, never()).await;
    p.create(None, session("old", "u1", 10)).await.unwrap();
    let per_user = SessionLimit { max: 1, policy: LimitPolicy::CloseOldest, now: at(50), idle_cutoff: None };
    let limits = OpenLimits { per_user: Some(per_user), max_open: None };
    let text = p.create_json(None, session("new", "u1", 50), &limits).await.unwrap();
    let before = dump(&p).await;
    assert_eq!(before.iter().map(|s| (s.id.as_str(), s.active)).collect::<Vec<_>>(), [("new", true), ("old", false)]);
    assert_eq!(serde_json::to_string(&before[0]).unwrap(), text.as_str());
    p.close(None).await.unwrap();
    let p = opened(&path, never()).await;
    assert_eq!(dump(&p).await, before);
    p.close(None).await.unwrap();
}

#[tokio::test]
async fn every_sync_mode_acknowledges_after_the_write_and_reopens() {
    for (i, sync) in [SyncMode::Always, SyncMode::Interval, SyncMode::Never].into_iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("store");
        let options = FileOptions { sync, sync_interval: 20, ..FileOptions::default() };
        let p = opened(&path, options.clone()).await;
        let id = format!("mode{i}");
        p.create(None, session(&id, "u", 0)).await.unwrap();
        // Acknowledged means handed to the OS in every mode: a killed process loses nothing.
        let on_disk = std::fs::read(log_files(&path).pop().unwrap()).unwrap();
        assert!(on_disk.windows(id.len()).any(|w| w == id.as_bytes()), "{sync:?}");
        p.flush().await.unwrap();
        p.close(None).await.unwrap();
        let p = opened(&path, options).await;
        assert!(p.get_one_by_id(None, &id).await.unwrap().is_some(), "{sync:?}");
        p.close(None).await.unwrap();
    }
}

fn config(value: Value) -> ComponentConfig {
    ComponentConfig::new(file_persistence_descriptor(), value)
}

#[tokio::test]
async fn settings_are_read_and_checked() {
    let e = SessionsFilePersistence::from_config(&config(json!({}))).unwrap_err();
    assert_eq!((e.code.as_str(), e.category.as_str()), ("NO_PATH", "Misconfiguration"));
    let e = SessionsFilePersistence::from_config(&config(json!({"path": ""}))).unwrap_err();
    assert_eq!(e.code, "NO_PATH");
    let e = SessionsFilePersistence::from_config(&config(json!({"path": "x", "options": {"sync": "sometimes"}})))
        .unwrap_err();
    assert_eq!(e.code, "BAD_CONFIG");
    let e = SessionsFilePersistence::from_config(&config(
        json!({"path": "x", "options": {"sync": "interval", "sync_interval": "0"}}),
    ))
    .unwrap_err();
    assert!(e.message.contains("sync_interval must be positive"), "{}", e.message);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("deep/er/store");
    let p = SessionsFilePersistence::from_config(&config(json!({"path": path.display().to_string(), "options": {
        "sync": "Interval", "sync_interval": "250", "compact_threshold": "1048576", "max_page_size": "2"}})))
    .unwrap();
    assert!(!p.health().await.ready);
    let e = p.get_one_by_id(None, "x").await.unwrap_err();
    assert_eq!(e.code, "NOT_OPENED");
    p.open(None).await.unwrap();
    assert!(path.is_dir(), "the folder is created");
    assert!(p.health().await.ready);
    for i in 0..3 {
        p.create(None, session(&format!("s{i}"), "u", i)).await.unwrap();
    }
    let page = p.get_page_by_filter(None, &SessionsFilter::default(), &PagingParams::default()).await.unwrap();
    assert_eq!(page.data.len(), 2, "max_page_size applies");
    p.close(None).await.unwrap();
    assert!(!p.health().await.ready);
    assert_eq!(p.create(None, session("late", "u", 0)).await.unwrap_err().code, "NOT_OPENED");
}

/// Creating the next log fails (something is in its place): the compaction reports it and is
/// tried again; appends go on in the active log; once the obstacle is gone it succeeds.
#[tokio::test]
async fn a_failed_rotation_is_retried_while_appends_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let p = opened(&path, FileOptions::default()).await;
    p.create(None, session("s1", "u", 0)).await.unwrap();
    for obstacle in ["file", "folder"] {
        let next = path.join("sessions.00000002.log");
        if obstacle == "file" {
            std::fs::write(&next, b"in the way").unwrap();
        } else {
            std::fs::create_dir(&next).unwrap();
        }
        let e = p.compact().await.unwrap_err();
        assert_eq!((e.code.as_str(), e.status), ("ROTATE_FAILED", 500), "{obstacle}");
        p.create(None, session(&format!("s-{obstacle}"), "u", 1)).await.unwrap();
        assert!(p.health().await.ready, "a failed rotation leaves the store ready");
        if obstacle == "file" {
            std::fs::remove_file(&next).unwrap();
        } else {
            std::fs::remove_dir(&next).unwrap();
        }
    }
    let stats = p.compact().await.unwrap();
    assert_eq!(stats.generation, 1);
    p.create(None, session("s2", "u", 2)).await.unwrap();
    p.close(None).await.unwrap();
    let reopened = opened(&path, FileOptions::default()).await;
    let ids: Vec<String> = dump(&reopened).await.into_iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    reopened.close(None).await.unwrap();
}

/// A failed append fails the store (reads go on, writes are refused, not ready); it recovers by
/// itself once it can write again, and the log holds exactly the acknowledged writes.
#[tokio::test]
async fn a_failed_append_recovers_when_writing_works_again() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let p = opened(&path, FileOptions::default()).await;
    p.create(None, session("s1", "u", 0)).await.unwrap();
    p.inject_write_failures(1);
    let e = p.create(None, session("s2", "u", 0)).await.unwrap_err();
    assert_eq!((e.code.as_str(), e.category.as_str()), ("WRITE_FAILED", "FileError"));
    assert!(!e.message.contains(&path.display().to_string()), "no paths in client errors");
    assert!(p.get_one_by_id(None, "s1").await.unwrap().is_some(), "reads go on");
    assert_eq!(p.close_expired(None, at(-1), at(0)).await.unwrap(), 0, "a sweep with nothing to do is a read");
    let health = p.health().await;
    assert!(!health.ready && health.message.contains("serves reads only"), "{health:?}");
    // The writer probes about once a second; wait for the event, not for a time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !p.health().await.ready {
        assert!(std::time::Instant::now() < deadline, "the store did not recover");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    p.create(None, session("s3", "u", 0)).await.unwrap();
    p.close(None).await.unwrap();
    let reopened = opened(&path, FileOptions::default()).await;
    assert!(reopened.recovery().unwrap().torn_tail.is_none(), "the failed batch was cut off by the recovery");
    let ids: Vec<String> = dump(&reopened).await.into_iter().map(|s| s.id).collect();
    assert!(ids.contains(&"s1".to_string()) && ids.contains(&"s3".to_string()), "{ids:?}");
    reopened.close(None).await.unwrap();
}

/// The folder removed, or the active log deleted or replaced, while the store runs: writes are
/// refused (never acknowledged into a file nobody will read) and readiness fails, for good; also
/// when the active log is a later generation than the one opened (after a compaction).
#[tokio::test]
async fn a_removed_folder_or_replaced_log_refuses_writes() {
    for how in ["folder removed", "log deleted", "log replaced", "log replaced after a compaction"] {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("store");
        let p = opened(&path, FileOptions::default()).await;
        p.create(None, session("s1", "u", 0)).await.unwrap();
        if how.ends_with("compaction") {
            p.compact().await.unwrap();
            p.create(None, session("s4", "u", 0)).await.unwrap();
        }
        let log = log_files(&path).pop().unwrap();
        match how {
            "folder removed" => std::fs::remove_dir_all(&path).unwrap(),
            "log deleted" => std::fs::remove_file(&log).unwrap(),
            _ => {
                let copy = path.join("copy.tmp");
                std::fs::copy(&log, &copy).unwrap();
                std::fs::rename(&copy, &log).unwrap();
            }
        }
        // Noticed without a write (the writer looks about once a second; wait for the event).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while p.health().await.ready {
            assert!(std::time::Instant::now() < deadline, "{how}: readiness did not fail");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let e = p.create(None, session("s2", "u", 0)).await.unwrap_err();
        assert_eq!(e.code, "WRITE_FAILED", "{how}");
        let health = p.health().await;
        assert!(!health.ready && health.message.contains("removed or replaced"), "{how}: {health:?}");
        assert!(p.create(None, session("s3", "u", 0)).await.is_err(), "{how}: still refused");
        let _ = p.close(None).await;
    }
}

/// A compaction snapshot G whose log G+1 is gone cannot load quietly as an older state.
#[tokio::test]
async fn a_snapshot_without_its_next_log_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let p = opened(&path, never()).await;
    p.create(None, session("s1", "u", 1)).await.unwrap();
    p.compact().await.unwrap();
    p.create(None, session("s2", "u", 2)).await.unwrap();
    p.close(None).await.unwrap();
    let logs = log_files(&path);
    assert_eq!(logs.len(), 1);
    std::fs::remove_file(&logs[0]).unwrap();
    let e = store(&path, never()).open(None).await.unwrap_err();
    assert_eq!(e.code, "CORRUPT_STORE");
    assert!(e.message.contains("missing log file") && e.message.contains("sessions.00000002.log"), "{}", e.message);
}

fn file_yaml(path: &Path) -> String {
    format!(
        r#"
- descriptor: "service-sessions:persistence:file:default:1.0"
  path: "{}"
  options:
    sync: always
- descriptor: "service-sessions:controller:default:default:1.0"
  options:
    cleanup_interval: 0
- descriptor: "pip-services:endpoint:http:default:1.0"
  connection: {{ protocol: http, host: 127.0.0.1, port: 0 }}
- descriptor: "service-sessions:service:commandable-http:default:1.0"
"#,
        path.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_container_serves_the_stored_sessions() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let app = spawn_app(&file_yaml(&path)).await;
    let opened = app.open("u1").await;
    let id = opened["id"].as_str().unwrap().to_string();
    let a = app.command("store_session_data", json!({"session_id": id, "data": {"cart": [1, 2]}})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    app.stop().await;

    let app = spawn_app(&file_yaml(&path)).await;
    let a = app.command("get_session_by_id", json!({"session_id": id})).await;
    assert_eq!(a.status, 200);
    let s = a.json();
    assert_eq!(
        (s["data"].clone(), s["version"].clone(), s["user_id"].clone()),
        (json!({"cart": [1, 2]}), json!(2), json!("u1"))
    );
    app.stop().await;
}

/// Model replay: random command sequences through the real controller on a fresh file store give
/// the reference model's answers, and after a close and a reopen every session reads back exactly
/// as it was.
mod model_replay {
    use super::{dump, opened, store, FileOptions, SessionsFilePersistence, FILE_LOCKED};
    use crate::model::{model_answers, run_sequence, sequences};
    use proptest::prelude::*;
    use service_sessions::persistence::SessionsPersistence;
    use service_sessions::toolkit::component::Component;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Reopens a store just closed. Other tests in this binary start processes, and a child holds
    /// a copy of every descriptor (so of the folder's lock) between its fork and its exec; a
    /// `FILE_LOCKED` is therefore retried, for at most five seconds.
    async fn reopen(path: &Path) -> Arc<SessionsFilePersistence> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = store(path, FileOptions::default());
            match s.open(None).await {
                Ok(()) => return s,
                Err(e) if e.code == FILE_LOCKED && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("reopen: {e:?}"),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 30, ..ProptestConfig::default() })]

        #[test]
        fn the_file_backend_behaves_like_the_model_and_survives_a_reopen(ops in sequences()) {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("store");
            let (got, before, after) = rt.block_on(async {
                let store = opened(&path, FileOptions::default()).await;
                let got = run_sequence(store.clone() as Arc<dyn SessionsPersistence>, &ops).await;
                let before = dump(&store).await;
                store.close(None).await.unwrap();
                let reopened = reopen(&path).await;
                let mut after = Vec::new();
                for s in &before {
                    after.push(reopened.get_one_by_id(None, &s.id).await.unwrap());
                }
                let listed = dump(&reopened).await;
                reopened.close(None).await.unwrap();
                assert_eq!(listed, before, "the reopened store lists the same sessions");
                (got, before, after)
            });
            let want = model_answers(&ops);
            prop_assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                prop_assert_eq!(g, w, "step {} {:?} of {:?}", i, ops[i], ops);
            }
            let before: Vec<_> = before.into_iter().map(Some).collect();
            prop_assert_eq!(after, before);
        }
    }
}

/// Makes a folder take no new file, and undoes it when dropped so the temporary folder can go.
struct Frozen<'a>(&'a Path);

impl<'a> Frozen<'a> {
    /// `chattr +i` (no file can be created in or removed from the folder, by root either: root
    /// ignores permission bits, not this attribute; files already in it can still be appended
    /// to), else read-only permission bits, which hold for anyone but root. `None` when neither
    /// stops this process from creating a file there (root without `CAP_LINUX_IMMUTABLE`).
    fn set(dir: &'a Path) -> Option<Self> {
        let chattr = std::process::Command::new("chattr").arg("+i").arg(dir).status();
        if !chattr.is_ok_and(|s| s.success()) {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        let frozen = Self(dir);
        let probe = dir.join(".frozen-probe");
        if std::fs::File::create(&probe).is_ok() {
            let _ = std::fs::remove_file(&probe);
            return None;
        }
        Some(frozen)
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr").arg("-i").arg(self.0).status();
        let _ = std::fs::set_permissions(self.0, std::fs::Permissions::from_mode(0o755));
    }
}

/// A store whose folder takes no new file (the next log, a snapshot) but whose existing files
/// open fine is refused at start-up with a message naming the folder — not found out at the
/// first compaction.
#[tokio::test]
async fn start_up_refuses_a_folder_that_takes_no_new_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("store");
    let p = opened(&path, FileOptions::default()).await;
    p.create(None, session("s1", "u", 0)).await.unwrap();
    p.close(None).await.unwrap();
    {
        let Some(_frozen) = Frozen::set(&path) else {
            eprintln!(
                "skipped: this machine cannot make a folder unwritable for this process \
                 (root without CAP_LINUX_IMMUTABLE for chattr +i)"
            );
            return;
        };
        let p = store(&path, FileOptions::default());
        let e = p.open(None).await.unwrap_err();
        assert_eq!((e.code.as_str(), e.category.as_str()), ("NOT_WRITABLE", "FileError"), "{e:?}");
        assert!(
            e.message.contains(&path.display().to_string()) && e.message.contains("cannot be written"),
            "{}",
            e.message
        );
        assert!(!p.health().await.ready);
    }
    let p = opened(&path, FileOptions::default()).await;
    assert_eq!(dump(&p).await.len(), 1);
    p.close(None).await.unwrap();
}
