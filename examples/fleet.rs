//! Fleet load generator (a benchmark program, not a test; run by `benches/fleet.sh`): a mixed
//! load spread round-robin over several service instances, then a check of the store's state.
//!
//! Environment: `URLS` (comma-separated base URLs), `DURATION` seconds (default 20),
//! `CONCURRENCY` closed-loop workers (default 64), `USERS` (default 200), `LIMIT` (the instances'
//! `max_sessions_per_user`, default 5), `PIDS` (service processes, comma-separated) and
//! `STORE_PID` (the store's process) to report CPU per request; `RATES` (`rate:seconds,...`) runs
//! an open-loop schedule instead of the closed loop and reports every `INTERVAL` seconds
//! (default 5) — for the over-capacity run.
//!
//! Mix per worker step: open (10 %), get by id (40 %), store data with the last seen `version`
//! (25 %), list by user (15 %), close (10 %). Every acknowledged write's `version` is remembered;
//! afterwards every session is read back and must show at least that version, and no user may
//! hold more open sessions than `LIMIT`.

use serde_json::{json, Value};
use service_sessions::data::version1::errors::SESSION_VERSION_CONFLICT;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU time (user + system) of a process in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

fn pids(name: &str) -> Vec<u32> {
    std::env::var(name).unwrap_or_default().split(',').filter_map(|p| p.trim().parse().ok()).collect()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

#[derive(Default)]
struct State {
    /// Highest acknowledged version per session id (and its user).
    acknowledged: HashMap<String, (String, i64)>,
    latencies: Vec<u64>,
}

struct Load {
    client: reqwest::Client,
    urls: Vec<String>,
    users: u64,
    state: Mutex<State>,
    sent: AtomicU64,
    failures: AtomicU64,
    overloaded: AtomicU64,
}

impl Load {
    async fn post(&self, n: u64, command: &str, body: Value) -> Option<(u16, Value)> {
        let url = &self.urls[(n as usize) % self.urls.len()];
        let started = Instant::now();
        let result = self.client.post(format!("{url}/v1/sessions/{command}")).json(&body).send().await;
        let answer = match result {
            Ok(r) => {
                let status = r.status().as_u16();
                let value = r.json::<Value>().await.unwrap_or(Value::Null);
                Some((status, value))
            }
            Err(_) => None,
        };
        self.sent.fetch_add(1, Ordering::Relaxed);
        match &answer {
            Some((503, v)) if v["code"] == "OVERLOADED" => {
                self.overloaded.fetch_add(1, Ordering::Relaxed);
            }
            // 409: a session another step closed, a version another step moved, a user at the limit.
            Some((s, _)) if *s < 400 || *s == 409 => {}
            _ => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.state.lock().await.latencies.push(started.elapsed().as_micros() as u64);
        answer
    }

    /// One step of the mix.
    async fn step(&self, n: u64, mine: &mut Vec<(String, i64)>) {
        let user = format!("fleet-user-{}", (n * 7919) % self.users);
        let pick = n % 20;
        if pick < 2 || mine.is_empty() {
            if let Some((200, v)) = self.post(n, "open_session", json!({"user_id": user})).await {
                if let (Some(id), Some(version)) = (v["id"].as_str(), v["version"].as_i64()) {
                    mine.push((id.to_string(), version));
                    self.remember(id, v["user_id"].as_str().unwrap_or_default(), version).await;
                }
            }
            return;
        }
        let slot = (n as usize * 31) % mine.len();
        let (id, version) = mine[slot].clone();
        match pick {
            2..=9 => {
                self.post(n, "get_session_by_id", json!({"session_id": id})).await;
            }
            10..=14 => {
                let body = json!({"session_id": id, "data": {"n": n}, "version": version});
                match self.post(n, "store_session_data", body).await {
                    Some((200, v)) => {
                        let version = v["version"].as_i64().unwrap_or(version);
                        mine[slot].1 = version;
                        self.remember(&id, v["user_id"].as_str().unwrap_or_default(), version).await;
                    }
                    Some((409, v)) if v["code"] == SESSION_VERSION_CONFLICT => {
                        if let Some((200, cur)) = self.post(n, "get_session_by_id", json!({"session_id": id})).await {
                            mine[slot].1 = cur["version"].as_i64().unwrap_or(version);
                        }
                    }
                    Some((409, _)) | Some((204, _)) => {
                        mine.swap_remove(slot);
                    }
                    _ => {}
                }
            }
            15..=17 => {
                self.post(n, "get_sessions", json!({"filter": {"user_id": user}, "paging": {"take": 20}})).await;
            }
            _ => {
                if let Some((200, v)) = self.post(n, "close_session", json!({"session_id": id})).await {
                    if let Some(version) = v["version"].as_i64() {
                        self.remember(&id, v["user_id"].as_str().unwrap_or_default(), version).await;
                    }
                }
                mine.swap_remove(slot);
            }
        }
    }

    async fn remember(&self, id: &str, user: &str, version: i64) {
        let mut state = self.state.lock().await;
        let entry = state.acknowledged.entry(id.to_string()).or_insert((user.to_string(), version));
        entry.1 = entry.1.max(version);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let urls: Vec<String> = std::env::var("URLS")
        .unwrap_or_else(|_| "http://127.0.0.1:18101".to_string())
        .split(',')
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect();
    let duration = Duration::from_secs(env_or("DURATION", 20));
    let concurrency = env_or("CONCURRENCY", 64).max(1);
    let limit = env_or("LIMIT", 5);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .pool_idle_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()?;
    let load = Arc::new(Load {
        client,
        urls: urls.clone(),
        users: env_or("USERS", 200).max(1),
        state: Mutex::new(State::default()),
        sent: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        overloaded: AtomicU64::new(0),
    });
    let (service_pids, store_pid) = (pids("PIDS"), pids("STORE_PID"));
    let cpu = |p: &[u32]| p.iter().map(|pid| cpu_seconds(*pid)).sum::<f64>();
    let (service_cpu0, store_cpu0) = (cpu(&service_pids), cpu(&store_pid));
    let started = Instant::now();
    if let Ok(rates) = std::env::var("RATES") {
        open_loop(&load, &rates, Duration::from_secs(env_or("INTERVAL", 5).max(1))).await;
    } else {
        let mut workers = Vec::new();
        for w in 0..concurrency {
            let load = load.clone();
            workers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut n = w;
                while started.elapsed() < duration {
                    load.step(n, &mut mine).await;
                    n += concurrency;
                }
            }));
        }
        for w in workers {
            w.await?;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (service_cpu, store_cpu) = (cpu(&service_pids) - service_cpu0, cpu(&store_pid) - store_cpu0);
    let sent = load.sent.load(Ordering::Relaxed);
    let mut latencies = std::mem::take(&mut load.state.lock().await.latencies);
    latencies.sort_unstable();
    println!(
        "instances={} req/s={:.0} p50_ms={:.2} p99_ms={:.2} failures={} overloaded={} service_cpu_us_per_req={:.1} store_cpu_us_per_req={:.1} service_cpu_s={service_cpu:.1} store_cpu_s={store_cpu:.1}",
        urls.len(),
        sent as f64 / elapsed,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        load.failures.load(Ordering::Relaxed),
        load.overloaded.load(Ordering::Relaxed),
        service_cpu * 1e6 / sent.max(1) as f64,
        store_cpu * 1e6 / sent.max(1) as f64,
    );
    check(&load, limit).await
}

/// Open loop: each `rate:seconds` phase sends at that rate; every interval prints what happened.
async fn open_loop(load: &Arc<Load>, rates: &str, interval: Duration) {
    let mut n = 0u64;
    let pool: Arc<Mutex<Vec<(String, i64)>>> = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut next_report = started + interval;
    let (mut sent0, mut over0, mut fail0) = (0, 0, 0);
    for phase in rates.split(',') {
        let (rate, seconds) = phase.split_once(':').unwrap_or((phase, "10"));
        let rate: u64 = rate.trim().parse().unwrap_or(100).max(1);
        let seconds: u64 = seconds.trim().parse().unwrap_or(10);
        let phase_start = Instant::now();
        let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        while phase_start.elapsed() < Duration::from_secs(seconds) {
            ticks.tick().await;
            n += 1;
            let (worker, pool) = (load.clone(), pool.clone());
            tokio::spawn(async move {
                // A sample of the pool (not taken out of it: concurrent steps share sessions, as
                // the closed loop's workers do not, so the mix stays the same).
                let picked = {
                    let p = pool.lock().await;
                    (!p.is_empty()).then(|| p[(n as usize * 7919) % p.len()].clone())
                };
                let mut mine: Vec<(String, i64)> = picked.clone().into_iter().collect();
                worker.step(n, &mut mine).await;
                let mut p = pool.lock().await;
                if let Some((id, _)) = &picked {
                    p.retain(|(x, _)| x != id);
                }
                p.extend(mine);
            });
            if Instant::now() >= next_report {
                next_report += interval;
                let mut l = std::mem::take(&mut load.state.lock().await.latencies);
                l.sort_unstable();
                let (sent, over, fail) = (
                    load.sent.load(Ordering::Relaxed),
                    load.overloaded.load(Ordering::Relaxed),
                    load.failures.load(Ordering::Relaxed),
                );
                println!(
                    "t={:>4}s target_rate={rate}/s answered={} overloaded={} failures={} p50_ms={:.2} p99_ms={:.2}",
                    started.elapsed().as_secs(),
                    sent - sent0,
                    over - over0,
                    fail - fail0,
                    percentile(&l, 0.5),
                    percentile(&l, 0.99)
                );
                (sent0, over0, fail0) = (sent, over, fail);
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// Reads every session back: each shows at least its highest acknowledged version, and no user
/// holds more than `limit` open sessions.
async fn check(load: &Load, limit: u64) -> anyhow::Result<()> {
    let acknowledged = std::mem::take(&mut load.state.lock().await.acknowledged);
    let (mut lost, mut gone) = (0u64, 0u64);
    let mut users: Vec<String> = acknowledged.values().map(|(u, _)| u.clone()).collect();
    users.sort_unstable();
    users.dedup();
    for (i, (id, (_, version))) in acknowledged.iter().enumerate() {
        match load.post(i as u64, "get_session_by_id", json!({"session_id": id})).await {
            Some((200, v)) if v["version"].as_i64().unwrap_or(0) >= *version => {}
            Some((200, _)) => lost += 1,
            _ => gone += 1,
        }
    }
    let mut over_limit = 0;
    for (i, user) in users.iter().enumerate() {
        let body = json!({"filter": {"user_id": user, "active": "true"}, "paging": {"total": true, "take": 1}});
        if let Some((200, v)) = load.post(i as u64, "get_sessions", body).await {
            if v["total"].as_u64().unwrap_or(0) > limit {
                over_limit += 1;
            }
        }
    }
    println!(
        "check: sessions={} lost_writes={lost} unreadable={gone} users={} users_over_limit={over_limit}",
        acknowledged.len(),
        users.len()
    );
    if lost > 0 || over_limit > 0 {
        anyhow::bail!("the fleet lost acknowledged writes or broke a user's limit");
    }
    Ok(())
}
