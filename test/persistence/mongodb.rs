//! The MongoDB backend on a real MongoDB wire-protocol server: the conformance fixture, two
//! service instances racing on one collection, and outage / late start-up of the server.
//!
//! The server comes from `MONGODB_URI` (`test/run.sh` starts a SecantusDB test server and sets
//! it). Without it these tests fail — a skipped backend is a failed backend. The outage tests
//! start private servers of their own from `SECANTUS_CMD` (also exported by `test/run.sh`), so
//! stopping one never disturbs the shared server. Every test uses its own collection and drops it.

use super::Subject;
use crate::helpers::{assert_store_unavailable, ready, spawn_app};
use chrono::{Duration as Ms, Utc};
use serde_json::{json, Value};
use service_sessions::data::version1::OpenSessionRequest;
use service_sessions::data::version1::{SessionV1, SessionsFilter};
use service_sessions::logic::{ControllerOptions, SessionsController};
use service_sessions::persistence::mongodb::SessionsMongoDbPersistence;
use service_sessions::persistence::{
    ExpiryPolicy, SessionChange, SessionUpdate, SessionsPersistence, UpdateOutcome, WriteCondition,
};
use service_sessions::toolkit::component::Component;
use service_sessions::toolkit::config::ComponentConfig;
use service_sessions::toolkit::data::PagingParams;
use service_sessions::toolkit::descriptor::Descriptor;
use service_sessions::toolkit::time::{truncate_millis, Clock, ManualClock};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DATABASE: &str = "service_sessions_test";
const RUN_TEST_SH: &str = "run the suite with `bash test/run.sh`, which starts a MongoDB-compatible test server";

/// The shared test deployment.
pub(crate) fn mongodb_uri() -> String {
    crate::requires::value("MONGODB_URI")
}

/// A collection name no other test (or earlier run against the same deployment) uses.
pub(crate) fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{prefix}_{}_{nanos}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn config(uri: &str, collection: &str, connect_timeout_ms: u64) -> ComponentConfig {
    ComponentConfig::new(
        Descriptor::new("service-sessions", "persistence", "mongodb", "default", "1.0"),
        json!({
            "connection": {"uri": uri, "database": DATABASE},
            "collection": collection,
            "options": {"connect_timeout": connect_timeout_ms, "max_page_size": 100}
        }),
    )
}

/// Polls `cond` every 50 ms until it holds, at most `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An opened store on `collection` of the shared deployment, ready (indexes created).
pub(crate) async fn open_store(collection: &str) -> Arc<SessionsMongoDbPersistence> {
    let p = Arc::new(SessionsMongoDbPersistence::from_config(&config(&mongodb_uri(), collection, 5000)).unwrap());
    p.open(None).await.unwrap();
    eventually(&format!("MongoDB at MONGODB_URI ready ({RUN_TEST_SH})"), Duration::from_secs(30), || async {
        p.health().await.ready
    })
    .await;
    p
}

/// Drops the test's collection and closes the store when the test ends (also on failure).
pub(crate) struct DropCollection(pub Arc<SessionsMongoDbPersistence>);

impl Drop for DropCollection {
    fn drop(&mut self) {
        let p = self.0.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            tokio::task::block_in_place(|| {
                handle.block_on(async {
                    let _ = p.drop_collection(None).await;
                    let _ = p.close(None).await;
                })
            });
        }
    }
}

pub(crate) async fn subject() -> Subject {
    let p = open_store(&unique_name("conformance")).await;
    Subject { persistence: p.clone(), _guard: Box::new(DropCollection(p)) }
}

crate::conformance_tests!(mongodb_conformance, crate::persistence::mongodb::subject, requires["MONGODB_URI"]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_and_indexes_have_the_documented_shape() {
    crate::requires!("MONGODB_URI");
    use mongodb::bson::{doc, Bson, Document};
    let name = unique_name("shape");
    // Opening twice on one collection: index creation is idempotent.
    let (p, again) = (open_store(&name).await, open_store(&name).await);
    let _cleanup = DropCollection(p.clone());
    again.close(None).await.unwrap();
    let mut s = SessionV1::open("abc".into(), "u1".into(), truncate_millis(Utc::now()));
    s.data = Some(json!({"$set": {"a.b": 9007199254740993_i64}}));
    p.create(None, s.clone()).await.unwrap();

    let client = mongodb::Client::with_uri_str(mongodb_uri()).await.unwrap();
    let db = client.default_database().unwrap_or_else(|| client.database(DATABASE));
    let coll = db.collection::<Document>(&name);
    let raw = coll.find_one(doc! {"_id": "abc"}).await.unwrap().unwrap();
    assert_eq!(raw.get("_id"), Some(&Bson::String("abc".into())));
    assert!(raw.get("id").is_none());
    assert_eq!(raw.get_datetime("open_time").unwrap().timestamp_millis(), s.open_time.timestamp_millis());
    assert!(matches!(raw.get("request_time"), Some(Bson::DateTime(_))));
    assert_eq!(raw.get("version"), Some(&Bson::Int64(1)));
    // `user`/`data` are native BSON, as the original stores them; `$`/dotted keys are escaped.
    assert_eq!(raw.get("data"), Some(&Bson::Document(doc! {"%%24set": {"%a%2Eb": 9007199254740993_i64}})));
    assert_eq!(raw.get("user"), Some(&Bson::Null));
    assert_eq!(raw.get("user_name"), Some(&Bson::Null));
    assert_eq!(p.get_one_by_id(None, "abc").await.unwrap(), Some(s));

    let mut keys: Vec<Document> = Vec::new();
    let mut cursor = coll.list_indexes().await.unwrap();
    while cursor.advance().await.unwrap() {
        keys.push(cursor.deserialize_current().unwrap().keys);
    }
    for expected in [
        doc! {"_id": 1},
        doc! {"user_id": 1, "request_time": -1, "_id": 1},
        doc! {"active": 1, "request_time": -1, "_id": 1},
        doc! {"request_time": -1, "_id": 1},
        doc! {"active": 1, "expire_time": 1},
        doc! {"active": 1, "close_time": 1},
    ] {
        assert!(keys.contains(&expected), "index {expected} missing from {keys:?}");
    }
    assert_eq!(keys.len(), 6, "{keys:?}");
}

/// A document as the original service writes it (no `version`, `expire_time`, `ttl`).
fn original_document(id: &str, user: &str, t: chrono::DateTime<Utc>, active: bool) -> mongodb::bson::Document {
    use mongodb::bson::{doc, Bson, DateTime};
    let t = DateTime::from_millis(t.timestamp_millis());
    let mut d = doc! {
        "_id": id, "user_id": user, "user_name": "Bob", "active": active, "open_time": t, "request_time": t,
        "address": "1.2.3.4", "client": Bson::Null,
        "user": { "a": 1, "n": 12345678901.0, "list": [1, 2.5, "x", Bson::Null, true] },
        "data": { "k": "v" },
    };
    if !active {
        d.insert("close_time", t);
        d.insert("user", Bson::Null);
        d.insert("data", Bson::Null);
    }
    d
}

async fn raw_collection(name: &str) -> mongodb::Collection<mongodb::bson::Document> {
    let client = mongodb::Client::with_uri_str(mongodb_uri()).await.unwrap();
    let db = client.default_database().unwrap_or_else(|| client.database(DATABASE));
    db.collection(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_the_original_wrote_are_read_written_and_closed_as_legacy_sessions() {
    crate::requires!("MONGODB_URI");
    use mongodb::bson::{doc, Bson};
    let name = unique_name("legacy");
    let coll = raw_collection(&name).await;
    let now = truncate_millis(Utc::now());
    coll.insert_many([
        original_document("l1", "u1", now - Ms::minutes(1), true),
        original_document("l2", "u1", now - Ms::minutes(2), true),
        original_document("l3", "u1", now - Ms::minutes(3), false),
        original_document("old", "u2", now - Ms::hours(30), true),
    ])
    .await
    .unwrap();
    let p = open_store(&name).await;
    let _cleanup = DropCollection(p.clone());

    let s = p.get_one_by_id(None, "l1").await.unwrap().unwrap();
    assert_eq!((s.version, s.expire_time, s.ttl, s.close_time), (1, None, None, None));
    assert_eq!(s.user, Some(json!({"a": 1, "n": 12345678901_i64, "list": [1, 2.5, "x", null, true]})));
    assert_eq!(s.user.as_ref().unwrap()["n"].to_string(), "12345678901", "rendered as the original renders it");
    assert_eq!(
        (s.user_name.as_deref(), s.address.as_deref(), s.client.as_deref()),
        (Some("Bob"), Some("1.2.3.4"), None)
    );
    let page = p
        .get_page_by_filter(
            None,
            &SessionsFilter { user_id: Some("u1".into()), ..Default::default() },
            &PagingParams::default(),
        )
        .await
        .unwrap();
    assert_eq!(page.data.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["l1", "l2", "l3"]);

    // A write on a legacy record sets version 2 (it counted as 1) and adds expire_time.
    let policy = ExpiryPolicy { idle_timeout: Some(3_600_000), max_lifetime: None };
    let write = |v: Option<i64>, data: Value| SessionUpdate {
        condition: WriteCondition { require_active: true, expected_version: v, ..Default::default() },
        change: SessionChange::StoreData(data.into()),
        now,
        policy,
    };
    let UpdateOutcome::Updated(after) = p.update(None, "l1", write(Some(1), json!({"x": 1}))).await.unwrap() else {
        panic!("a legacy record is at version 1")
    };
    assert_eq!((after.version, after.expire_time), (2, Some(now + Ms::hours(1))));
    let raw = coll.find_one(doc! {"_id": "l1"}).await.unwrap().unwrap();
    assert_eq!((raw.get("version"), raw.get("data")), (Some(&Bson::Int64(2)), Some(&Bson::Document(doc! {"x": 1}))));
    assert!(matches!(p.update(None, "l1", write(Some(1), json!(2))).await.unwrap(), UpdateOutcome::ConditionFailed(_)));
    let UpdateOutcome::Updated(after) = p.update(None, "l2", write(None, json!(3))).await.unwrap() else { panic!() };
    assert_eq!(after.version, 2);

    // The sweep closes legacy records by the idle cutoff, setting version 2.
    assert_eq!(p.close_expired(None, now - Ms::hours(24), now).await.unwrap(), 1);
    let old = p.get_one_by_id(None, "old").await.unwrap().unwrap();
    assert_eq!((old.active, old.version, old.close_time, old.data), (false, 2, Some(now), Some(json!(null))));
    // close_user_sessions bumps both kinds: l1 (version 2 → 3); l3 is closed already.
    assert_eq!(p.close_user_sessions(None, "u1", Some("l2"), now).await.unwrap(), 1);
    assert_eq!(p.get_one_by_id(None, "l1").await.unwrap().unwrap().version, 3);
    // A conditional delete at version 1 of a legacy record.
    let l3 = p.get_one_by_id(None, "l3").await.unwrap().unwrap();
    assert_eq!(l3.version, 1);
    let cond = WriteCondition { expected_version: Some(1), ..Default::default() };
    assert!(matches!(p.delete_if(None, "l3", &cond).await.unwrap(), UpdateOutcome::Updated(_)));
    assert_eq!(p.get_one_by_id(None, "l3").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_document_never_breaks_anyone_else() {
    crate::requires!("MONGODB_URI");
    use mongodb::bson::{doc, oid::ObjectId, Binary, Bson};
    let name = unique_name("bad");
    let coll = raw_collection(&name).await;
    let now = truncate_millis(Utc::now());
    let t = mongodb::bson::DateTime::from_millis(now.timestamp_millis());
    let mut missing = original_document("missing", "u1", now, true);
    missing.remove("user_id");
    let mut wrong = original_document("wrong", "u1", now, true);
    wrong.insert("active", "yes");
    let mut wrong_name = original_document("wrong_name", "u1", now, true);
    wrong_name.insert("user_name", 42);
    let mut string_user = original_document("string_user", "u1", now, true);
    string_user.insert("user", "just text");
    let mut big = original_document("big", "u1", now, true);
    big.insert("data", doc! {"blob": Binary { subtype: mongodb::bson::spec::BinarySubtype::Generic, bytes: vec![7; 15 * 1024 * 1024] }});
    coll.insert_many([
        original_document("good", "u1", now, true),
        missing,
        wrong,
        wrong_name,
        string_user,
        doc! {"_id": ObjectId::new(), "user_id": "u1", "active": true, "open_time": t, "request_time": t},
        doc! {"_id": 7, "user_id": "u1", "active": true, "open_time": t, "request_time": t},
    ])
    .await
    .unwrap();
    coll.insert_one(big).await.unwrap();
    // An index with the same keys as one of ours under another name: kept, the store gets ready.
    coll.create_index(
        mongodb::IndexModel::builder()
            .keys(doc! {"user_id": 1, "request_time": -1, "_id": 1})
            .options(mongodb::options::IndexOptions::builder().name("theirs".to_string()).build())
            .build(),
    )
    .await
    .unwrap();
    let before: Vec<_> = {
        let mut c = coll.find(doc! {}).sort(doc! {"_id": 1}).await.unwrap();
        let mut all = Vec::new();
        while c.advance().await.unwrap() {
            all.push(c.deserialize_current().unwrap());
        }
        all
    };
    let p = open_store(&name).await;
    let _cleanup = DropCollection(p.clone());

    let page = p.get_page_by_filter(None, &SessionsFilter::default(), &PagingParams::default()).await.unwrap();
    let mut listed: Vec<&str> = page.data.iter().map(|s| s.id.as_str()).collect();
    listed.sort_unstable();
    assert_eq!(listed, ["big", "good", "string_user"], "unreadable documents are left out, nothing else");
    assert_eq!(p.get_one_by_id(None, "string_user").await.unwrap().unwrap().user, Some(json!("just text")));
    let big = p.get_one_by_id(None, "big").await.unwrap().unwrap();
    assert!(big.data.unwrap()["blob"].is_object(), "binary reads as extended JSON");
    let scanned = p.scan(None, None, 100).await.unwrap();
    assert_eq!(scanned.len(), 3);

    for id in ["missing", "wrong", "wrong_name"] {
        let e = p.get_one_by_id(None, id).await.unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (500, "SESSION_UNREADABLE"), "{id}");
        let store = SessionUpdate {
            condition: WriteCondition::default(),
            change: SessionChange::StoreData(json!(1).into()),
            now,
            policy: ExpiryPolicy::default(),
        };
        assert_eq!(p.update(None, id, store.clone()).await.unwrap_err().code, "SESSION_UNREADABLE");
        assert_eq!(p.delete_by_id(None, id).await.unwrap_err().code, "SESSION_UNREADABLE");
    }
    // Nothing was rewritten or deleted by any of that.
    let mut c = coll.find(doc! {}).sort(doc! {"_id": 1}).await.unwrap();
    let mut after = Vec::new();
    while c.advance().await.unwrap() {
        after.push(c.deserialize_current().unwrap());
    }
    assert_eq!(after, before);
    let _ = Bson::Null;
}

/// `get_one_json` answers every record shape the codec reads — the original's, foreign BSON
/// types, escaped keys, numbers as other writers store them — with the text of `get_one_by_id`'s
/// session, in one round trip; a session to act on as that session; a document that is not a
/// session as the same 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_texts_of_every_record_shape_are_the_decoded_sessions_encoded() {
    crate::requires!("MONGODB_URI");
    use mongodb::bson::{doc, oid::ObjectId, Binary, Bson, Decimal128};
    use service_sessions::persistence::{SessionAnswer, SessionState};
    use service_sessions::toolkit::json::JsonText;
    let name = unique_name("answer");
    let coll = raw_collection(&name).await;
    let now = truncate_millis(Utc::now());
    let t = mongodb::bson::DateTime::from_millis(now.timestamp_millis());
    let mut foreign = original_document("foreign", "u2", now, true);
    foreign.insert(
        "data",
        doc! {
            "o": ObjectId::new(), "t": t, "d": Bson::Decimal128("12.50".parse::<Decimal128>().unwrap()),
            "b": Binary { subtype: mongodb::bson::spec::BinarySubtype::Generic, bytes: vec![1, 2] },
            "f": [0.5, -3.0, 1e300, f64::NAN], "s": "q\"\u{1}é", "e": {}, "a": [],
        },
    );
    let mut numbers = original_document("numbers", "u2", now, true);
    numbers.insert("version", 4_i32);
    numbers.insert("ttl", 60_000.0);
    numbers.insert("expire_time", t);
    numbers.insert("user_name", Bson::Undefined);
    let mut string_user = original_document("string_user", "u2", now, true);
    string_user.insert("user", "just text");
    let mut bare = original_document("bare", "u2", now, true);
    for field in ["user_name", "address", "client", "user", "data"] {
        bare.remove(field);
    }
    let mut bad = original_document("bad", "u2", now, true);
    bad.insert("user_name", 42);
    coll.insert_many([
        original_document("open", "u1", now, true),
        original_document("closed", "u1", now - Ms::minutes(5), false),
        foreign,
        numbers,
        string_user,
        bare,
        bad,
    ])
    .await
    .unwrap();
    let p = open_store(&name).await;
    let _cleanup = DropCollection(p.clone());
    let mut ours = SessionV1::open("ours".into(), "u3".into(), now);
    ours.data = Some(json!({"$set": {"a.b": 9007199254740993_i64}, "%": [u64::MAX], "plain": {"n": 1}}));
    ours.user = Some(json!({"roles": ["admin"], "x": null}));
    ours.expire_time = Some(now + Ms::minutes(1));
    ours.ttl = Some(60_000);
    p.create(None, ours).await.unwrap();

    let never = |_: &SessionState| false;
    let always = |_: &SessionState| true;
    for id in ["open", "closed", "foreign", "numbers", "string_user", "bare", "ours"] {
        let session = p.get_one_by_id(None, id).await.unwrap().unwrap();
        let before = p.round_trips();
        let Some(SessionAnswer::Text(text)) = p.get_one_json(None, id, &never).await.unwrap() else {
            panic!("{id}: answered as text")
        };
        assert_eq!(p.round_trips() - before, 1, "{id}: one round trip");
        assert_eq!(text.as_str(), JsonText::write(&session).as_str(), "{id}");
        let Some(SessionAnswer::Session(acted)) = p.get_one_json(None, id, &always).await.unwrap() else {
            panic!("{id}: a session to act on is answered as itself")
        };
        assert_eq!(*acted, session, "{id}");
    }
    assert!(p.get_one_json(None, "foreign", &never).await.unwrap().is_some());
    assert_eq!(p.get_one_json(None, "missing", &never).await.unwrap(), None);
    let e = p.get_one_json(None, "bad", &never).await.unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (500, "SESSION_UNREADABLE"));
}

/// Two "service instances": two stores (two clients, two pools) on one collection, each with
/// its own controller, sharing one clock.
struct TwoInstances {
    stores: [Arc<SessionsMongoDbPersistence>; 2],
    controllers: [Arc<SessionsController>; 2],
    clock: Arc<ManualClock>,
    _cleanup: DropCollection,
}

async fn two_instances() -> TwoInstances {
    let collection = unique_name("instances");
    let (a, b) = (open_store(&collection).await, open_store(&collection).await);
    let clock = Arc::new(ManualClock::new(truncate_millis(Utc::now())));
    let options = ControllerOptions { expire_timeout: 3_600_000, cleanup_interval: 0, ..Default::default() };
    let controller = |p: &Arc<SessionsMongoDbPersistence>| {
        SessionsController::with(options.clone(), p.clone() as Arc<dyn SessionsPersistence>, clock.clone())
    };
    TwoInstances {
        controllers: [controller(&a), controller(&b)],
        stores: [a.clone(), b],
        clock,
        _cleanup: DropCollection(a),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_racing_on_one_session_lose_no_write() {
    crate::requires!("MONGODB_URI");
    let t = two_instances().await;
    let open = OpenSessionRequest { user_id: "u1".into(), ..Default::default() };
    let id = t.controllers[0].open_session(None, open).await.unwrap().id;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (c, id) = (t.controllers[i % 2].clone(), id.clone());
        tasks.push(tokio::spawn(async move { c.store_session_data(None, &id, json!({"n": i}), None).await }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap().unwrap().expect("session exists").version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=51).collect::<Vec<i64>>(), "each write got its own version");
    let last = t.controllers[1].get_session_by_id(None, &id).await.unwrap().unwrap();
    assert_eq!(last.version, 51);
    let n = last.data.as_ref().and_then(|d| d["n"].as_u64()).unwrap();
    assert!(n < 50, "data is one of the written values: {:?}", last.data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_with_one_expected_version_have_one_winner() {
    crate::requires!("MONGODB_URI");
    let t = two_instances().await;
    let open = OpenSessionRequest { user_id: "u1".into(), ..Default::default() };
    let s = t.controllers[0].open_session(None, open).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (p, id) = (t.stores[i % 2].clone(), s.id.clone());
        let update = SessionUpdate {
            condition: WriteCondition {
                require_active: true,
                alive_at: Some(t.clock.now()),
                idle_cutoff: None,
                expected_version: Some(s.version),
            },
            change: SessionChange::StoreData(json!(i).into()),
            now: t.clock.now() + Ms::milliseconds(1),
            policy: ExpiryPolicy { idle_timeout: Some(3_600_000), max_lifetime: None },
        };
        tasks.push(tokio::spawn(async move { p.update(None, &id, update.clone()).await.unwrap() }));
    }
    let (mut wins, mut losses) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            UpdateOutcome::Updated(after) => {
                wins += 1;
                assert_eq!(after.version, 2);
            }
            UpdateOutcome::ConditionFailed(current) => {
                losses += 1;
                assert_eq!(current.version, 2, "losers see the winner's record");
            }
            UpdateOutcome::NotFound => panic!("session vanished"),
        }
    }
    assert_eq!((wins, losses), (1, 19));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_from_both_instances_close_each_session_once() {
    crate::requires!("MONGODB_URI");
    let t = two_instances().await;
    let now = t.clock.now();
    // 40 sessions idle for two hours (expired at a one-hour timeout), 10 fresh ones.
    for i in 0..50 {
        let when = if i < 40 { now - Ms::hours(2) } else { now };
        let mut s = SessionV1::open(format!("s{i:02}"), format!("u{}", i % 5), when);
        s.data = Some(json!({"i": i}));
        t.stores[i % 2].create(None, s).await.unwrap();
    }
    let mut tasks = Vec::new();
    for k in 0..6 {
        let c = t.controllers[k % 2].clone();
        tasks.push(tokio::spawn(async move { c.close_expired_sessions(None).await.unwrap() }));
    }
    let mut closed = 0;
    for task in tasks {
        closed += task.await.unwrap();
    }
    assert_eq!(closed, 40, "every expired session closed exactly once across all sweeps");
    for i in 0..50 {
        let s = t.stores[0].get_one_by_id(None, &format!("s{i:02}")).await.unwrap().unwrap();
        if i < 40 {
            assert_eq!(
                (s.active, s.version, s.close_time, s.data),
                (false, 2, Some(now), Some(Value::Null)),
                "s{i:02}"
            );
        } else {
            assert_eq!((s.active, s.version), (true, 1), "s{i:02}");
        }
    }
    let page = t.stores[1]
        .get_page_by_filter(
            None,
            &SessionsFilter { active: Some(false), ..Default::default() },
            &PagingParams::new(0, 0, true),
        )
        .await
        .unwrap();
    assert_eq!(page.total, Some(40));
    // Time moves on: the fresh ones expire too, and only they are closed.
    t.clock.advance_ms(3_600_001);
    let (x, y) =
        tokio::join!(t.controllers[0].close_expired_sessions(None), t.controllers[1].close_expired_sessions(None));
    assert_eq!(x.unwrap() + y.unwrap(), 10);
}

/// A private SecantusDB server for one test, on its own port and data folder.
struct PrivateServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateServer {
    /// Reserves a port and a data folder; nothing runs yet.
    fn new() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(unique_name("service-sessions-mongo"));
        std::fs::create_dir_all(&dir).unwrap();
        Self { port, dir, child: None }
    }

    /// Its connection string, with the options the server's clients need (`SECANTUS_URI_OPTIONS`).
    fn uri(&self) -> String {
        match std::env::var("SECANTUS_URI_OPTIONS").ok().filter(|o| !o.is_empty()) {
            Some(options) => format!("mongodb://127.0.0.1:{}/?{options}", self.port),
            None => format!("mongodb://127.0.0.1:{}/", self.port),
        }
    }

    /// Starts the server (same port and data folder every time) and waits until it listens.
    async fn start(&mut self) {
        let cmd = crate::requires::value("SECANTUS_CMD");
        let mut words = cmd.split_whitespace();
        let program = words.next().unwrap();
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let child = Command::new(program)
            .args(words)
            .args(["--port", &self.port.to_string(), "--storage-path"])
            .arg(self.dir.join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{program}`: {e}"));
        self.child = Some(child);
        let start = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                panic!("test server exited ({status}): {log}");
            }
            assert!(start.elapsed() < Duration::from_secs(60), "test server did not listen within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server cleanly (SIGTERM, then SIGKILL after 20 s) and waits for it to exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(20) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The service on the MongoDB backend at `uri`, with a 1 s connect timeout.
fn mongodb_service_yaml(uri: &str) -> String {
    format!(
        r#"
- descriptor: "service-sessions:persistence:mongodb:default:1.0"
  connection:
    uri: "{uri}"
    database: "{DATABASE}"
  collection: "outage"
  options:
    connect_timeout: 1000
- descriptor: "service-sessions:controller:default:default:1.0"
  options:
    cleanup_interval: 0
- descriptor: "pip-services:endpoint:http:default:1.0"
  connection: {{ protocol: http, host: 127.0.0.1, port: 0 }}
- descriptor: "service-sessions:service:commandable-http:default:1.0"
- descriptor: "pip-services:status-service:http:default:1.0"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_answers_503_in_time_and_recovers_without_restart() {
    crate::requires!("SECANTUS_CMD");
    let mut server = PrivateServer::new();
    server.start().await;
    let app = spawn_app(&mongodb_service_yaml(&server.uri())).await;
    eventually("ready at start", Duration::from_secs(30), || ready(&app)).await;
    let id = app.open("u1").await["id"].as_str().unwrap().to_string();
    let a = app.command("store_session_data", json!({"session_id": id, "data": {"step": 1}})).await;
    assert_eq!((a.status, a.json()["version"].as_i64()), (200, Some(2)), "{}", a.body);

    server.stop();
    assert_store_unavailable(
        &app,
        Duration::from_millis(1000),
        "store_session_data",
        json!({"session_id": id, "data": {"step": 2}}),
    )
    .await;
    assert_store_unavailable(&app, Duration::from_millis(1000), "get_session_by_id", json!({"session_id": id})).await;
    assert_store_unavailable(&app, Duration::from_millis(1000), "open_session", json!({"user_id": "u2"})).await;
    eventually("not ready while the server is down", Duration::from_secs(30), || async { !ready(&app).await }).await;
    let status = app.request(reqwest::Method::GET, "/status").await.json();
    assert_eq!(status["ready"], json!(false), "{status}");

    // Same port, same data: the running service reconnects by itself.
    server.start().await;
    let start = Instant::now();
    let session = loop {
        let a = app.command("store_session_data", json!({"session_id": id, "data": {"step": 3}})).await;
        if a.status == 200 {
            break a.json();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no recovery within 30 s: {} {}", a.status, a.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((session["version"].as_i64(), &session["data"]), (Some(3), &json!({"step": 3})));
    eventually("ready again", Duration::from_secs(30), || ready(&app)).await;
    assert_eq!(app.open("u3").await["user_id"], json!("u3"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_with_the_server_down_and_connects_later() {
    crate::requires!("SECANTUS_CMD");
    let mut server = PrivateServer::new();
    let app = spawn_app(&mongodb_service_yaml(&server.uri())).await;
    let status = app.request(reqwest::Method::GET, "/status").await;
    assert_eq!(status.status, 200);
    let status = status.json();
    assert_eq!(status["ready"], json!(false), "{status}");
    let health = status["health"].as_object().unwrap();
    assert!(
        health.values().any(|h| h["ready"] == json!(false) && h["message"].as_str().unwrap_or("").contains("MongoDB")),
        "{status}"
    );
    assert!(!status.to_string().contains("mongodb://"), "no connection string in /status: {status}");
    assert!(!ready(&app).await);
    assert_store_unavailable(&app, Duration::from_millis(1000), "open_session", json!({"user_id": "u1"})).await;

    server.start().await;
    eventually("ready once the server is up", Duration::from_secs(30), || ready(&app)).await;
    let s = app.open("u1").await;
    let a = app.command("get_session_by_id", json!({"session_id": s["id"]})).await;
    assert_eq!((a.status, a.json()["user_id"].as_str()), (200, Some("u1")));
    app.stop().await;
}

/// Random command sequences through the controller on MongoDB give exactly the answers of the
/// reference model (which the memory backend is checked against too), each on a fresh collection.
#[test]
fn random_sequences_on_mongodb_behave_like_the_model() {
    crate::requires!("MONGODB_URI");
    use crate::model::{model_answers, run_sequence, sequences};
    use proptest::prelude::*;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let config = ProptestConfig { cases: 20, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(ops in sequences())| {
        let got = rt.block_on(async {
            let p = open_store(&unique_name("model")).await;
            let got = run_sequence(p.clone(), &ops).await;
            p.drop_collection(None).await.unwrap();
            p.close(None).await.unwrap();
            got
        });
        let want = model_answers(&ops);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            prop_assert_eq!(g, w, "step {} {:?} of {:?}", i, ops[i], ops);
        }
        prop_assert_eq!(got.len(), want.len());
    });
}

/// A read is one round trip, and so is an uncontended write: no read before the write (the
/// condition and the inputs of the new state go into one `findAndModify` filter). Only a write
/// that misses — unknown id, wrong version, closed session — reads once more to tell which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_and_an_uncontended_write_are_one_round_trip_each() {
    let collection = unique_name("round_trips");
    let p = open_store(&collection).await;
    let _cleanup = DropCollection(p.clone());
    let clock = Arc::new(ManualClock::new(truncate_millis(Utc::now())));
    for max_lifetime in [0, 86_400_000] {
        let options =
            ControllerOptions { expire_timeout: 3_600_000, cleanup_interval: 0, max_lifetime, ..Default::default() };
        let c = SessionsController::with(options, p.clone() as Arc<dyn SessionsPersistence>, clock.clone());
        let open = OpenSessionRequest { user_id: "u1".into(), ..Default::default() };
        let s = c.open_session(None, open).await.unwrap();
        clock.advance_ms(1000);
        let trips = |f: u64| p.round_trips() - f;

        let before = p.round_trips();
        let read = c.get_session_by_id(None, &s.id).await.unwrap().unwrap();
        assert_eq!((trips(before), read.version), (1, 1), "read, max_lifetime {max_lifetime}");

        let before = p.round_trips();
        let written = c.store_session_data(None, &s.id, json!({"n": 1}), None).await.unwrap().unwrap();
        assert_eq!(trips(before), 1, "write, max_lifetime {max_lifetime}");
        assert_eq!((written.version, written.data.clone()), (2, Some(json!({"n": 1}))));
        assert_eq!(written.expire_time, Some(clock.now() + Ms::milliseconds(3_600_000)));
        assert_eq!(c.get_session_by_id(None, &s.id).await.unwrap().unwrap(), written, "the stored record");

        let before = p.round_trips();
        let e = c.store_session_data(None, &s.id, json!({"n": 2}), Some(1)).await.unwrap_err();
        assert_eq!((e.code.as_str(), trips(before)), ("SESSION_VERSION_CONFLICT", 2), "a stale version");

        let before = p.round_trips();
        let missing = c.store_session_data(None, &"0".repeat(32), json!({"n": 2}), None).await.unwrap();
        assert_eq!((missing, trips(before)), (None, 2), "an unknown id");
    }
}
