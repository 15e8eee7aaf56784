//! Crash test of the file backend: the real `service-sessions` binary, under concurrent
//! `open_session` / `store_session_data` load over HTTP with `sync: always`, is killed with
//! SIGKILL at random moments, 20 times. After each restart the store must open cleanly and every
//! write that was acknowledged (200) must be there: its data, or a later one. The small
//! compaction threshold makes compactions (log rotation, snapshot rename) happen under the kills
//! too. The last round stops the child with SIGTERM instead and checks a clean exit.
//!
//! The kill moments come from a seeded generator; the seed is printed, and `CRASH_SEED=<n>`
//! replays a run.
//!
//! Two more tests make log rotation fail for a while under the same load: once with a folder
//! standing where the next log must be created, once with a real full descriptor table (the
//! running binary's `RLIMIT_NOFILE` lowered with `prlimit` until creating the next log fails
//! with EMFILE, then raised again). Every write goes on being acknowledged, the compaction
//! succeeds once the obstacle is gone, and a SIGKILL afterwards loses nothing.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROUNDS: usize = 20;
const WORKERS: usize = 12;

/// SplitMix64: a tiny seeded generator for the kill moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// What the test knows of one session: the last acknowledged data counter and version, and the
/// next counter to write.
#[derive(Debug, Clone, Copy)]
struct Known {
    acked_n: i64,
    acked_version: i64,
    next_n: i64,
}

/// Per worker: its sessions by id.
type Ledger = Arc<Vec<Mutex<HashMap<String, Known>>>>;

struct Server {
    child: Child,
    base: String,
    stderr: PathBuf,
}

fn config(dir: &Path, port: u16) -> String {
    format!(
        r#"
- descriptor: "pip-services:logger:console:default:1.0"
  level: warn
- descriptor: "service-sessions:persistence:file:default:1.0"
  path: "{}"
  options:
    sync: always
    compact_threshold: 65536
    compact_retry: 100
- descriptor: "service-sessions:controller:default:default:1.0"
  options:
    cleanup_interval: 0
- descriptor: "pip-services:endpoint:http:default:1.0"
  connection: {{ protocol: http, host: 127.0.0.1, port: {port} }}
- descriptor: "service-sessions:service:commandable-http:default:1.0"
- descriptor: "pip-services:heartbeat-service:http:default:1.0"
"#,
        dir.join("store").display()
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start(dir: &Path, round: usize, client: &reqwest::Client) -> Server {
    let port = free_port();
    let config_path = dir.join("config.yml");
    std::fs::write(&config_path, config(dir, port)).unwrap();
    let stderr = dir.join(format!("stderr-{round}.txt"));
    let child = Command::new(env!("CARGO_BIN_EXE_service-sessions"))
        .arg("-c")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut server = Server { child, base: format!("http://127.0.0.1:{port}"), stderr };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!("round {round}: the service exited with {status} at start-up:\n{}", server.log());
        }
        if let Ok(r) = client.get(format!("{}/heartbeat", server.base)).send().await {
            if r.status() == 200 {
                return server;
            }
        }
        assert!(Instant::now() < deadline, "round {round}: the service did not start:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// A command; `Err` when no answer came (the child is gone).
async fn call(client: &reqwest::Client, base: &str, command: &str, body: Value) -> Result<(u16, Value), ()> {
    let r = client.post(format!("{base}/v1/sessions/{command}")).json(&body).send().await.map_err(|_| ())?;
    let status = r.status().as_u16();
    let text = r.text().await.map_err(|_| ())?;
    Ok((status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).map_err(|_| ())? }))
}

/// One worker: opens sessions and stores data in its own sessions until a request fails (the
/// child was killed) or `stop` is set, recording every acknowledged write.
async fn worker(w: usize, base: String, client: reqwest::Client, ledger: Ledger, stop: Arc<AtomicBool>) -> usize {
    let mine = &ledger[w];
    let mut acked = 0;
    let mut op = 0usize;
    while !stop.load(Ordering::Relaxed) {
        op += 1;
        let ids: Vec<String> = mine.lock().unwrap().keys().cloned().collect();
        if ids.len() < 3 || op % 10 == 0 {
            let body = json!({"user_id": format!("user{w}"), "data": {"n": 0}});
            let Ok((status, body)) = call(&client, &base, "open_session", body).await else { break };
            assert_eq!(status, 200, "open_session: {body}");
            let id = body["id"].as_str().unwrap().to_string();
            mine.lock().unwrap().insert(id, Known { acked_n: 0, acked_version: 1, next_n: 1 });
            acked += 1;
            continue;
        }
        let id = &ids[op % ids.len()];
        let n = {
            let mut l = mine.lock().unwrap();
            let k = l.get_mut(id).unwrap();
            k.next_n += 1;
            k.next_n - 1
        };
        let body = json!({"session_id": id, "data": {"n": n}});
        let Ok((status, body)) = call(&client, &base, "store_session_data", body).await else { break };
        assert_eq!(status, 200, "store_session_data: {body}");
        assert_eq!(body["data"]["n"], json!(n));
        let mut l = mine.lock().unwrap();
        let k = l.get_mut(id).unwrap();
        k.acked_n = k.acked_n.max(n);
        k.acked_version = k.acked_version.max(body["version"].as_i64().unwrap());
        acked += 1;
    }
    acked
}

/// Every acknowledged write must be in the restarted store; the next counters move past
/// whatever is stored.
async fn verify(server: &Server, client: &reqwest::Client, ledger: &Ledger, round: usize) {
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let (client, base, ledger) = (client.clone(), server.base.clone(), ledger.clone());
        tasks.push(tokio::spawn(async move {
            let entries: Vec<(String, Known)> =
                ledger[w].lock().unwrap().iter().map(|(k, v)| (k.clone(), *v)).collect();
            for (id, known) in entries {
                let (status, body) =
                    call(&client, &base, "get_session_by_id", json!({"session_id": id})).await.unwrap();
                assert_eq!(status, 200, "round {round}: acknowledged session {id} is missing");
                let n = body["data"]["n"].as_i64().unwrap();
                let version = body["version"].as_i64().unwrap();
                assert!(
                    n >= known.acked_n && version >= known.acked_version,
                    "round {round}: session {id} lost an acknowledged write: stored n={n} v={version}, acked {known:?}"
                );
                let mut l = ledger[w].lock().unwrap();
                let k = l.get_mut(&id).unwrap();
                k.next_n = k.next_n.max(n + 1);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let seed = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    println!("crash test seed: {seed} (CRASH_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let ledger: Ledger = Arc::new((0..WORKERS).map(|_| Mutex::default()).collect());
    let mut total_acked = 0;
    let mut torn_tails = 0;
    let mut server = start(tmp.path(), 0, &client).await;
    for round in 1..=ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| tokio::spawn(worker(w, server.base.clone(), client.clone(), ledger.clone(), stop.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.between(30, 400))).await;
        let graceful = round == ROUNDS;
        if graceful {
            stop.store(true, Ordering::Relaxed);
            for w in workers.iter() {
                while !w.is_finished() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let pid = server.child.id().to_string();
            assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
            let status = server.child.wait().unwrap();
            assert!(status.success(), "SIGTERM must close cleanly ({status}):\n{}", server.log());
        } else {
            server.child.kill().unwrap();
            server.child.wait().unwrap();
        }
        for w in workers {
            total_acked += w.await.unwrap();
        }
        server = start(tmp.path(), round, &client).await;
        verify(&server, &client, &ledger, round).await;
        torn_tails += usize::from(server.log().contains("incomplete record"));
        if graceful {
            assert!(!server.log().contains("incomplete record"), "a graceful stop leaves no torn tail");
        }
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let sessions: usize = ledger.iter().map(|l| l.lock().unwrap().len()).sum();
    println!(
        "crash test: {ROUNDS} rounds, {sessions} sessions, {total_acked} acknowledged writes verified, \
         {torn_tails} torn tails repaired"
    );
    assert!(total_acked > ROUNDS * 10, "the load did run ({total_acked} acknowledged writes)");
}

/// The generations of the log files in the store folder.
fn log_generations(store: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(store)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("sessions.")?.strip_suffix(".log")?.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// After the obstacle to rotation is gone: waits until the compaction rotates past `active`
/// with every write still acknowledged, kills the service (SIGKILL), restarts it and checks that
/// every acknowledged write is there. Returns how many writes were acknowledged.
async fn heal_kill_and_verify(
    mut server: Server,
    workers: Vec<tokio::task::JoinHandle<usize>>,
    active: u64,
    deadline: Instant,
    dir: &Path,
    client: &reqwest::Client,
    ledger: &Ledger,
) -> usize {
    let store = dir.join("store");
    // The compaction is tried again and now rotates.
    while log_generations(&store).last().is_none_or(|g| *g == active) {
        assert!(Instant::now() < deadline, "the compaction did not heal:\n{}", server.log());
        assert!(workers.iter().all(|w| !w.is_finished()), "a write failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(workers.iter().all(|w| !w.is_finished()), "every write was acknowledged throughout");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let mut acked = 0;
    for w in workers {
        acked += w.await.unwrap();
    }
    let mut restarted = start(dir, 1, client).await;
    verify(&restarted, client, ledger, 1).await;
    restarted.child.kill().unwrap();
    restarted.child.wait().unwrap();
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_rotation_failure_heals() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let ledger: Ledger = Arc::new((0..WORKERS).map(|_| Mutex::default()).collect());
    let server = start(tmp.path(), 0, &client).await;
    let active = *log_generations(&store).last().unwrap();
    let blocked: Vec<PathBuf> = (active + 1..=active + 3).map(|g| store.join(format!("sessions.{g:08}.log"))).collect();
    blocked.iter().for_each(|p| std::fs::create_dir(p).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(worker(w, server.base.clone(), client.clone(), ledger.clone(), stop.clone())))
        .collect();
    // Wait until a rotation has failed (the log says so), with writes going on.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.log().contains("Cannot start the next sessions log") {
        assert!(Instant::now() < deadline, "no rotation was tried:\n{}", server.log());
        assert!(workers.iter().all(|w| !w.is_finished()), "a write failed while rotation failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(log_generations(&store), vec![active], "appends continue in the active log");
    blocked.iter().for_each(|p| std::fs::remove_dir(p).unwrap());
    let acked = heal_kill_and_verify(server, workers, active, deadline, tmp.path(), &client, &ledger).await;
    println!("transient rotation failure: {acked} acknowledged writes verified after healing and SIGKILL");
    assert!(acked > 10, "the load did run");
}

/// How far the acknowledged writes got: sessions opened plus data counters acknowledged.
fn progress(ledger: &Ledger) -> i64 {
    ledger.iter().map(|l| l.lock().unwrap().values().map(|k| 1 + k.acked_n).sum::<i64>()).sum()
}

/// The lowest descriptor number the process does not use: the one its next `open` would get.
fn lowest_free_fd(pid: u32) -> u64 {
    let used: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !used.contains(n)).unwrap()
}

/// The soft `RLIMIT_NOFILE` of a process.
fn soft_nofile(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    line.split_whitespace().nth(3).unwrap().to_string()
}

/// Sets the soft `RLIMIT_NOFILE` of a running process (`prlimit` from util-linux).
fn set_soft_nofile(pid: u32, soft: &str) {
    let status = Command::new("prlimit").args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")]).status();
    assert!(status.unwrap().success(), "prlimit --pid {pid} --nofile={soft}: failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_failing_with_emfile_heals() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let ledger: Ledger = Arc::new((0..WORKERS).map(|_| Mutex::default()).collect());
    let server = start(tmp.path(), 0, &client).await;
    let pid = server.child.id();
    let original = soft_nofile(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(worker(w, server.base.clone(), client.clone(), ledger.clone(), stop.clone())))
        .collect();
    // Every worker holds its keep-alive connection before the table is full.
    let deadline = Instant::now() + Duration::from_secs(60);
    while ledger.iter().any(|l| l.lock().unwrap().is_empty()) {
        assert!(Instant::now() < deadline, "the load did not start:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let active = *log_generations(&store).last().unwrap();
    // No new descriptor from here on: the next log cannot be created (EMFILE).
    let before = progress(&ledger);
    set_soft_nofile(pid, &lowest_free_fd(pid).to_string());
    while !(server.log().contains("Cannot start the next sessions log") && server.log().contains("os error 24")) {
        assert!(Instant::now() < deadline, "no rotation failed with EMFILE:\n{}", server.log());
        assert!(workers.iter().all(|w| !w.is_finished()), "a write failed while rotation failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acked_while_full = progress(&ledger) - before;
    assert_eq!(log_generations(&store), vec![active], "appends continue in the active log");
    set_soft_nofile(pid, &original);
    let acked = heal_kill_and_verify(server, workers, active, deadline, tmp.path(), &client, &ledger).await;
    println!("EMFILE rotation failure: {acked} acknowledged writes verified after healing and SIGKILL");
    assert!(acked > 10 && acked_while_full > 0, "the load did run");
}
