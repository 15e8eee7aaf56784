//! The Redis backend on real Redis servers: the conformance fixture, the model-based test and
//! the races (two service instances on one store) on a standalone server **and** on a Redis
//! Cluster (3 masters, a replica each); native expiry, bad data and foreign keys, 1 MiB data, and
//! an outage of a private server.
//!
//! The servers come from `REDIS_URI` (standalone, `redis://host:port`) and `REDIS_CLUSTER_NODES`
//! (`host:port,...`); `test/run.sh` starts both (test/redis_server.sh). Without them these tests
//! fail — a skipped backend is a failed backend. The outage tests start private `redis-server`
//! processes of their own. Every test uses its own key prefix and clears it.
//!
//! The fixture's times lie in the past (2026-01-01), and Redis expires keys by its own clock, so
//! these stores use an `expire_grace` and `retention` of 100 years; the native expiry test uses
//! real times.

use super::Subject;
use crate::helpers::{assert_store_unavailable, ready, spawn_app};
use chrono::{Duration as Ms, Utc};
use redis::AsyncCommands;
use serde_json::{json, Value};
use service_sessions::data::version1::OpenSessionRequest;
use service_sessions::data::version1::{SessionV1, SessionsFilter};
use service_sessions::logic::{ControllerOptions, SessionsController};
use service_sessions::persistence::redis::SessionsRedisPersistence;
use service_sessions::persistence::{
    ExpiryPolicy, LimitPolicy, SessionChange, SessionUpdate, SessionsPersistence, WriteCondition,
};
use service_sessions::toolkit::component::Component;
use service_sessions::toolkit::config::ComponentConfig;
use service_sessions::toolkit::data::PagingParams;
use service_sessions::toolkit::descriptor::Descriptor;
use service_sessions::toolkit::time::{truncate_millis, ManualClock};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUN_TEST_SH: &str = "run the suite with `bash test/run.sh`, which starts Redis test servers";
/// 100 years in ms: native expiry far beyond the fixture's past times.
const CENTURY_MS: u64 = 100 * 365 * 86_400_000;

/// Where a store lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deployment {
    Standalone,
    Cluster,
}

pub(crate) fn redis_uri() -> String {
    crate::requires::value("REDIS_URI")
}

pub(crate) fn cluster_nodes() -> Vec<String> {
    let nodes = crate::requires::value("REDIS_CLUSTER_NODES");
    nodes.split(',').map(str::to_string).collect()
}

/// A key prefix no other test (or earlier run) uses.
pub(crate) fn unique_prefix(what: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("test_{what}_{}_{nanos}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn config(deployment: Deployment, prefix: &str, options: Value) -> ComponentConfig {
    let mut o = json!({
        "key_prefix": prefix, "connect_timeout": 2000, "expire_grace": CENTURY_MS, "retention": CENTURY_MS,
    });
    if let (Some(o), Some(extra)) = (o.as_object_mut(), options.as_object()) {
        o.extend(extra.clone());
    }
    let connection = match deployment {
        Deployment::Standalone => json!({"uri": redis_uri()}),
        Deployment::Cluster => {
            o["cluster"] = json!(true);
            json!({"nodes": cluster_nodes()})
        }
    };
    ComponentConfig::new(
        Descriptor::new("service-sessions", "persistence", "redis", "default", "1.0"),
        json!({"connection": connection, "options": o}),
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

/// An opened, ready store under `prefix`.
pub(crate) async fn open_store_with(
    deployment: Deployment,
    prefix: &str,
    options: Value,
) -> Arc<SessionsRedisPersistence> {
    let p = Arc::new(SessionsRedisPersistence::from_config(&config(deployment, prefix, options)).unwrap());
    p.open(None).await.unwrap();
    eventually(&format!("Redis ({deployment:?}) ready ({RUN_TEST_SH})"), Duration::from_secs(30), || async {
        p.health().await.ready
    })
    .await;
    p
}

pub(crate) async fn open_store(deployment: Deployment, prefix: &str) -> Arc<SessionsRedisPersistence> {
    open_store_with(deployment, prefix, json!({})).await
}

/// Clears the test's keys and closes the store when the test ends (also on failure).
pub(crate) struct Cleanup(pub Arc<SessionsRedisPersistence>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let p = self.0.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            tokio::task::block_in_place(|| {
                handle.block_on(async {
                    let _ = p.clear(None).await;
                    let _ = p.close(None).await;
                })
            });
        }
    }
}

pub(crate) async fn subject() -> Subject {
    let p = open_store(Deployment::Standalone, &unique_prefix("conformance")).await;
    Subject { persistence: p.clone(), _guard: Box::new(Cleanup(p)) }
}

pub(crate) async fn cluster_subject() -> Subject {
    let p = open_store(Deployment::Cluster, &unique_prefix("conformance")).await;
    Subject { persistence: p.clone(), _guard: Box::new(Cleanup(p)) }
}

crate::conformance_tests!(redis_conformance, crate::persistence::redis::subject, requires["REDIS_URI"]);
crate::conformance_tests!(
    redis_cluster_conformance,
    crate::persistence::redis::cluster_subject,
    requires["REDIS_CLUSTER_NODES"]
);

/// A raw connection to the standalone server.
async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_uri()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

/// Two "service instances": two stores (two clients) on one prefix, each with its own
/// controller (per-user limit 5), sharing one clock.
struct TwoInstances {
    stores: [Arc<SessionsRedisPersistence>; 2],
    controllers: [Arc<SessionsController>; 2],
    _cleanup: Cleanup,
}

async fn two_instances(deployment: Deployment) -> TwoInstances {
    let prefix = unique_prefix("instances");
    let (a, b) = (open_store(deployment, &prefix).await, open_store(deployment, &prefix).await);
    let clock = Arc::new(ManualClock::new(truncate_millis(Utc::now())));
    let options = ControllerOptions {
        expire_timeout: 3_600_000,
        cleanup_interval: 0,
        max_sessions_per_user: 5,
        limit_policy: LimitPolicy::Deny,
        ..Default::default()
    };
    let controller = |p: &Arc<SessionsRedisPersistence>| {
        SessionsController::with(options.clone(), p.clone() as Arc<dyn SessionsPersistence>, clock.clone())
    };
    TwoInstances { controllers: [controller(&a), controller(&b)], stores: [a.clone(), b], _cleanup: Cleanup(a) }
}

async fn racing_writers_lose_nothing(deployment: Deployment) {
    let t = two_instances(deployment).await;
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
    assert!(last.data.as_ref().and_then(|d| d["n"].as_u64()).unwrap() < 50);
}

async fn racing_opens_respect_the_limit(deployment: Deployment) {
    let t = two_instances(deployment).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let c = t.controllers[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            c.open_session(None, OpenSessionRequest { user_id: "u1".into(), ..Default::default() }).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code, "SESSION_LIMIT", "{e:?}"),
        }
    }
    assert_eq!(ok, 5, "exactly the limit");
    let page = t.stores[1]
        .get_page_by_filter(
            None,
            &SessionsFilter { user_id: Some("u1".into()), active: Some(true), ..Default::default() },
            &PagingParams::new(0, 100, true),
        )
        .await
        .unwrap();
    assert_eq!((page.total, page.data.len()), (Some(5), 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_two_instances_racing_on_one_session_lose_no_write() {
    crate::requires!("REDIS_URI");
    racing_writers_lose_nothing(Deployment::Standalone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_two_instances_racing_on_one_session_lose_no_write() {
    crate::requires!("REDIS_CLUSTER_NODES");
    racing_writers_lose_nothing(Deployment::Cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_two_instances_racing_opens_respect_the_limit() {
    crate::requires!("REDIS_URI");
    racing_opens_respect_the_limit(Deployment::Standalone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_two_instances_racing_opens_respect_the_limit() {
    crate::requires!("REDIS_CLUSTER_NODES");
    racing_opens_respect_the_limit(Deployment::Cluster).await;
}

/// The key layout is the documented one, keys carry PEXPIREAT = expire_time + grace (open) and
/// close_time + retention (closed), and a session Redis dropped leaves every list and total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_carry_native_expiry_and_dropped_sessions_leave_the_lists() {
    crate::requires!("REDIS_URI");
    let prefix = unique_prefix("expiry");
    let p =
        open_store_with(Deployment::Standalone, &prefix, json!({"expire_grace": 60_000, "retention": 120_000})).await;
    let _cleanup = Cleanup(p.clone());
    let now = truncate_millis(Utc::now());
    let mut s = SessionV1::open("live".into(), "u1".into(), now);
    s.expire_time = Some(now + Ms::minutes(30));
    p.create(None, s.clone()).await.unwrap();
    let mut c = raw().await;
    let key = format!("{prefix}:{{0}}:s:live");
    let at: i64 = redis::cmd("PEXPIRETIME").arg(&key).query_async(&mut c).await.unwrap();
    assert_eq!(at, (now + Ms::minutes(31)).timestamp_millis(), "expire_time + expire_grace");
    let close = SessionUpdate {
        condition: WriteCondition::default(),
        change: SessionChange::Close,
        now,
        policy: ExpiryPolicy::default(),
    };
    p.update(None, "live", close.clone()).await.unwrap();
    let at: i64 = redis::cmd("PEXPIRETIME").arg(&key).query_async(&mut c).await.unwrap();
    assert_eq!(at, (now + Ms::minutes(2)).timestamp_millis(), "close_time + retention");
    let kinds: String = c.hget(format!("{prefix}:{{0}}:s:live"), "active").await.unwrap();
    assert_eq!(kinds, "0");
    for index in ["all", "closed", "purge", "drop", "owner"] {
        let exists: bool = c.exists(format!("{prefix}:{{0}}:{index}")).await.unwrap();
        assert!(exists, "{index}");
    }
    assert!(c.exists::<_, bool>(format!("{prefix}:{{0}}:u:u1")).await.unwrap());

    // A session whose drop time has passed (expired two minutes ago, grace one minute): Redis
    // drops it at once, and lists and totals no longer count it.
    let mut gone = SessionV1::open("gone".into(), "u2".into(), now - Ms::minutes(5));
    gone.expire_time = Some(now - Ms::minutes(2));
    p.create(None, gone).await.unwrap();
    assert_eq!(p.get_one_by_id(None, "gone").await.unwrap(), None);
    let page = p.get_page_by_filter(None, &SessionsFilter::default(), &PagingParams::new(0, 10, true)).await.unwrap();
    assert_eq!((page.total, page.data.len()), (Some(1), 1));
    let page = p
        .get_page_by_filter(
            None,
            &SessionsFilter { user_id: Some("u2".into()), ..Default::default() },
            &PagingParams::new(0, 10, true),
        )
        .await
        .unwrap();
    assert_eq!(page.total, Some(0));
    let members: Vec<String> = c.zrange(format!("{prefix}:{{0}}:all"), 0, -1).await.unwrap();
    assert_eq!(members, ["live"], "the dropped session's index entries are gone");
}

/// `store_bad_documents_total{backend="redis"}` as `/metrics` shows it.
fn bad_records_counted() -> u64 {
    let text = service_sessions::toolkit::metrics::render();
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix("store_bad_documents_total{backend=\"redis\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Keys of other applications in the same database are never touched or listed, a corrupted
/// session value is skipped (and answered 500 by id), and a 1 MiB `data` works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_bad_records_and_foreign_keys() {
    crate::requires!("REDIS_URI");
    let prefix = unique_prefix("bad");
    let p = open_store(Deployment::Standalone, &prefix).await;
    let _cleanup = Cleanup(p.clone());
    let mut c = raw().await;
    let foreign = [
        (format!("other_{prefix}"), "x"),
        (format!("{prefix}x:{{0}}:s:a"), "y"),
        (format!("other_{prefix}:{{0}}:all"), "z"),
    ];
    for (k, v) in &foreign {
        let _: () = c.set(k, v).await.unwrap();
    }
    let now = truncate_millis(Utc::now());
    for (i, id) in ["good", "bad_version", "not_a_hash"].iter().enumerate() {
        p.create(None, SessionV1::open(id.to_string(), "u1".into(), now - Ms::seconds(i as i64))).await.unwrap();
    }
    let base = format!("{prefix}:{{0}}");
    let _: () = c.hset(format!("{base}:s:bad_version"), "version", "x").await.unwrap();
    let _: () = c.del(format!("{base}:s:not_a_hash")).await.unwrap();
    let _: () = c.set(format!("{base}:s:not_a_hash"), "junk").await.unwrap();

    let counted_before = bad_records_counted();
    let page = p.get_page_by_filter(None, &SessionsFilter::default(), &PagingParams::default()).await.unwrap();
    assert_eq!(page.data.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["good"]);
    assert!(bad_records_counted() >= counted_before + 2, "both unreadable records counted");
    let user = SessionsFilter { user_id: Some("u1".into()), ..Default::default() };
    let page = p.get_page_by_filter(None, &user, &PagingParams::default()).await.unwrap();
    assert_eq!(page.data.len(), 1);
    assert_eq!(p.scan(None, None, 10).await.unwrap().len(), 1);
    for id in ["bad_version", "not_a_hash"] {
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
    let v: String = c.hget(format!("{base}:s:bad_version"), "version").await.unwrap();
    assert_eq!(v, "x", "never rewritten");
    let v: String = c.get(format!("{base}:s:not_a_hash")).await.unwrap();
    assert_eq!(v, "junk");

    // 1 MiB of data round-trips.
    let big = json!({"blob": "x".repeat(1 << 20)});
    let store = SessionUpdate {
        condition: WriteCondition { require_active: true, ..Default::default() },
        change: SessionChange::StoreData(big.clone().into()),
        now,
        policy: ExpiryPolicy::default(),
    };
    assert!(matches!(
        p.update(None, "good", store.clone()).await.unwrap(),
        service_sessions::persistence::UpdateOutcome::Updated(_)
    ));
    assert_eq!(p.get_one_by_id(None, "good").await.unwrap().unwrap().data, Some(big));

    // Sweep, purge and clear touch only this store's keys.
    p.close_expired(None, now + Ms::days(1), now + Ms::days(1)).await.unwrap();
    p.purge_closed(None, now + Ms::days(2), 100).await.unwrap();
    let _: () = c.del(format!("{base}:s:not_a_hash")).await.unwrap();
    p.clear(None).await.unwrap();
    for (k, v) in &foreign {
        let got: String = c.get(k).await.unwrap();
        assert_eq!(&got, v, "{k} untouched");
        let _: () = c.del(k).await.unwrap();
    }
}

/// Random command sequences through the controller on Redis give exactly the answers of the
/// reference model, each on a fresh prefix.
fn model_on(deployment: Deployment) {
    use crate::model::{model_answers, run_sequence, sequences};
    use proptest::prelude::*;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let config = ProptestConfig { cases: 20, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(ops in sequences())| {
        let got = rt.block_on(async {
            let p = open_store(deployment, &unique_prefix("model")).await;
            let got = run_sequence(p.clone(), &ops).await;
            p.clear(None).await.unwrap();
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

#[test]
fn random_sequences_on_redis_behave_like_the_model() {
    crate::requires!("REDIS_URI");
    model_on(Deployment::Standalone);
}

#[test]
fn random_sequences_on_redis_cluster_behave_like_the_model() {
    crate::requires!("REDIS_CLUSTER_NODES");
    model_on(Deployment::Cluster);
}

/// A private `redis-server` for one test, on its own port and folder.
struct PrivateServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateServer {
    fn new() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(unique_prefix("service-sessions-redis"));
        std::fs::create_dir_all(&dir).unwrap();
        Self { port, dir, child: None }
    }

    fn uri(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({RUN_TEST_SH}): {e}"));
        self.child = Some(child);
        let start = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "redis-server did not listen within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn redis_service_yaml(uri: &str) -> String {
    format!(
        r#"
- descriptor: "service-sessions:persistence:redis:default:1.0"
  connection:
    uri: "{uri}"
  options:
    connect_timeout: 1000
    socket_timeout: 1000
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
async fn redis_outage_answers_503_in_time_and_recovers_without_restart() {
    crate::requires!("REDIS_URI");
    let mut server = PrivateServer::new();
    server.start().await;
    let app = spawn_app(&redis_service_yaml(&server.uri())).await;
    eventually("ready at start", Duration::from_secs(30), || ready(&app)).await;
    let id = app.open("u1").await["id"].as_str().unwrap().to_string();
    let a = app.command("store_session_data", json!({"session_id": id, "data": {"step": 1}})).await;
    assert_eq!((a.status, a.json()["version"].as_i64()), (200, Some(2)), "{}", a.body);

    server.stop();
    assert_store_unavailable(
        &app,
        Duration::from_millis(2000),
        "store_session_data",
        json!({"session_id": id, "data": {"step": 2}}),
    )
    .await;
    assert_store_unavailable(&app, Duration::from_millis(2000), "get_session_by_id", json!({"session_id": id})).await;
    assert_store_unavailable(&app, Duration::from_millis(2000), "open_session", json!({"user_id": "u2"})).await;
    eventually("not ready while the server is down", Duration::from_secs(30), || async { !ready(&app).await }).await;
    let status = app.request(reqwest::Method::GET, "/status").await.json();
    assert_eq!(status["ready"], json!(false), "{status}");
    assert!(!status.to_string().contains("redis://"), "no connection string in /status: {status}");

    // Same port, a fresh (empty) server: the running service reconnects by itself.
    server.start().await;
    let start = Instant::now();
    let session = loop {
        let a = app.command("open_session", json!({"user_id": "u3"})).await;
        if a.status == 200 {
            break a.json();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no recovery within 30 s: {} {}", a.status, a.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(session["user_id"], json!("u3"));
    eventually("ready again", Duration::from_secs(30), || ready(&app)).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_starts_with_the_server_down_and_connects_later() {
    crate::requires!("REDIS_URI");
    let mut server = PrivateServer::new();
    let app = spawn_app(&redis_service_yaml(&server.uri())).await;
    let status = app.request(reqwest::Method::GET, "/status").await.json();
    assert_eq!(status["ready"], json!(false), "{status}");
    assert!(!ready(&app).await);
    assert_store_unavailable(&app, Duration::from_millis(2000), "open_session", json!({"user_id": "u1"})).await;
    server.start().await;
    eventually("ready once the server is up", Duration::from_secs(30), || ready(&app)).await;
    let s = app.open("u1").await;
    let a = app.command("get_session_by_id", json!({"session_id": s["id"]})).await;
    assert_eq!((a.status, a.json()["user_id"].as_str()), (200, Some("u1")));
    app.stop().await;
}

/// `options.wait_replicas`: on the cluster (a replica per master) writes are confirmed; on a
/// standalone server (no replica) a write is applied but answered 503 `STORE_NOT_REPLICATED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wait_replicas_confirms_writes_or_says_it_could_not() {
    crate::requires!("REDIS_URI", "REDIS_CLUSTER_NODES");
    let options = json!({"wait_replicas": 1, "wait_timeout": 200});
    let p = open_store_with(Deployment::Cluster, &unique_prefix("wait"), options.clone()).await;
    let _cleanup = Cleanup(p.clone());
    let now = truncate_millis(Utc::now());
    p.create(None, SessionV1::open("w1".into(), "u1".into(), now)).await.unwrap();
    let store = SessionUpdate {
        condition: WriteCondition::default(),
        change: SessionChange::StoreData(json!({"a": 1}).into()),
        now,
        policy: ExpiryPolicy::default(),
    };
    assert!(matches!(
        p.update(None, "w1", store.clone()).await.unwrap(),
        service_sessions::persistence::UpdateOutcome::Updated(_)
    ));

    let single = open_store_with(Deployment::Standalone, &unique_prefix("wait"), options).await;
    let _cleanup_single = Cleanup(single.clone());
    let e = single.create(None, SessionV1::open("w2".into(), "u1".into(), now)).await.unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (503, "STORE_NOT_REPLICATED"));
    assert_eq!(single.get_one_by_id(None, "w2").await.unwrap().map(|s| s.id), Some("w2".to_string()), "applied");
}

/// The sweep lease on a shared Redis store: held by one owner at a time, renewed by its owner,
/// free again once its `PX` deadline passes in Redis (a short lease, so no clock is involved).
async fn lease_is_held_by_one_owner(deployment: Deployment) {
    use chrono::Utc;
    use service_sessions::persistence::SWEEP_LEASE;
    let prefix = unique_prefix("lease");
    let (a, b) = (open_store(deployment, &prefix).await, open_store(deployment, &prefix).await);
    let _cleanup = Cleanup(a.clone());
    let now = Utc::now();
    let long = now + chrono::Duration::seconds(60);
    assert!(a.acquire_lease(None, SWEEP_LEASE, "a", now, long).await.unwrap());
    assert!(!b.acquire_lease(None, SWEEP_LEASE, "b", now, long).await.unwrap());
    assert!(a.acquire_lease(None, SWEEP_LEASE, "a", now, long).await.unwrap(), "the owner renews");
    assert!(b.acquire_lease(None, "other", "b", now, long).await.unwrap(), "leases are by name");
    // Renewed with a 1 ms hold: it runs out in Redis, and then another owner takes it.
    assert!(a.acquire_lease(None, SWEEP_LEASE, "a", now, now + chrono::Duration::milliseconds(1)).await.unwrap());
    eventually("the lease to run out", Duration::from_secs(10), || async {
        b.acquire_lease(None, SWEEP_LEASE, "b", Utc::now(), long).await.unwrap()
    })
    .await;
    assert!(!a.acquire_lease(None, SWEEP_LEASE, "a", now, long).await.unwrap());
    // Leave nothing behind: the holder lets both run out at once.
    let gone = now + chrono::Duration::milliseconds(1);
    assert!(b.acquire_lease(None, SWEEP_LEASE, "b", now, gone).await.unwrap());
    assert!(b.acquire_lease(None, "other", "b", now, gone).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sweep_lease_is_held_by_one_owner() {
    crate::requires!("REDIS_URI");
    lease_is_held_by_one_owner(Deployment::Standalone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_sweep_lease_is_held_by_one_owner() {
    crate::requires!("REDIS_CLUSTER_NODES");
    lease_is_held_by_one_owner(Deployment::Cluster).await;
}
