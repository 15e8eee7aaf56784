//! Failover measurement on a Redis Cluster (run by `benches/redis_failover.sh`, which starts a
//! fresh 3-master cluster with a replica each for every run): not a test, it prints numbers.
//!
//! WRITERS sessions (default 8) are opened for users whose bucket lives on one master. Each
//! writer loops `store_session_data` with the `version` it last saw (optimistic concurrency)
//! through the controller on the Redis backend, for SECONDS (default 20). After WARMUP seconds
//! (default 3) that master is killed with `kill -9`; its replica takes over. Every acknowledged
//! write is remembered; a write that later turns out missing (the stored version went back below
//! an acknowledged one) is a **lost acknowledged write**. Printed: acknowledged writes, errors by
//! status (503 while the cluster switches), the unavailable window, and lost acknowledged writes.
//! `WAIT_REPLICAS` (default 0) sets `options.wait_replicas` (each write then waits for that many
//! replicas with `WAIT`, `options.wait_timeout` 1000 ms). Under `cargo test` it does nothing.

use chrono::Utc;
use serde_json::json;
use service_sessions::data::version1::errors::SESSION_VERSION_CONFLICT;
use service_sessions::data::version1::OpenSessionRequest;
use service_sessions::logic::{ControllerOptions, SessionsController};
use service_sessions::persistence::redis::SessionsRedisPersistence;
use service_sessions::persistence::SessionsPersistence;
use service_sessions::toolkit::component::Component;
use service_sessions::toolkit::config::ComponentConfig;
use service_sessions::toolkit::descriptor::Descriptor;
use service_sessions::toolkit::time::SystemClock;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The master serving `slot`, as `(host, port)`, from `CLUSTER SLOTS`.
async fn master_of(conn: &mut redis::aio::MultiplexedConnection, slot: u16) -> anyhow::Result<(String, u16)> {
    let slots: Vec<(u16, u16, (String, u16))> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async::<Vec<redis::Value>>(conn)
        .await?
        .into_iter()
        .filter_map(|r| {
            let items = match r {
                redis::Value::Array(items) => items,
                _ => return None,
            };
            let start = redis::from_redis_value::<u16>(items.first()?.clone()).ok()?;
            let end = redis::from_redis_value::<u16>(items.get(1)?.clone()).ok()?;
            let node = match items.get(2)? {
                redis::Value::Array(n) => n.clone(),
                _ => return None,
            };
            let host = redis::from_redis_value::<String>(node.first()?.clone()).ok()?;
            let port = redis::from_redis_value::<u16>(node.get(1)?.clone()).ok()?;
            Some((start, end, (host, port)))
        })
        .collect();
    slots
        .into_iter()
        .find(|(s, e, _)| (*s..=*e).contains(&slot))
        .map(|(_, _, node)| node)
        .ok_or_else(|| anyhow::anyhow!("no master serves slot {slot}"))
}

fn slot_of_user(user: &str, buckets: u32) -> u16 {
    let bucket = crc32fast::hash(user.as_bytes()) % buckets;
    crc16::State::<crc16::XMODEM>::calculate(bucket.to_string().as_bytes()) % 16_384
}

#[derive(Default)]
struct Tally {
    acked: u64,
    errors: BTreeMap<String, u64>,
    first_error: Option<Instant>,
    last_error: Option<Instant>,
    lost: u64,
    /// The final read succeeded (the cluster answered again).
    verified: bool,
    /// The first acknowledged write after the first error.
    recovered: Option<Instant>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it, and
    // it must never kill a test server then.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let nodes: Vec<String> = std::env::var("REDIS_CLUSTER_NODES")
        .map_err(|_| anyhow::anyhow!("REDIS_CLUSTER_NODES is not set: run benches/redis_failover.sh"))?
        .split(',')
        .map(str::to_string)
        .collect();
    let writers = env("WRITERS", 8);
    let seconds = env("SECONDS", 20);
    let warmup = env("WARMUP", 3);
    let wait_replicas = env("WAIT_REPLICAS", 0);
    let buckets = 16;

    let config = ComponentConfig::new(
        Descriptor::new("service-sessions", "persistence", "redis", "default", "1.0"),
        json!({
            "connection": {"nodes": nodes},
            "options": {"cluster": true, "key_prefix": format!("failover_{}", std::process::id()),
                "connect_timeout": 1000, "socket_timeout": 1000, "buckets": buckets,
                "wait_replicas": wait_replicas, "wait_timeout": 1000},
        }),
    );
    let store = Arc::new(SessionsRedisPersistence::from_config(&config)?);
    store.open(None).await?;
    let start = Instant::now();
    while !store.health().await.ready {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "the cluster did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let options = ControllerOptions { cleanup_interval: 0, ..Default::default() };
    let controller =
        SessionsController::with(options, store.clone() as Arc<dyn SessionsPersistence>, Arc::new(SystemClock));

    // The victim: the master of the first writer's bucket; every writer's user lives there.
    let mut raw = redis::Client::open(format!("redis://{}", nodes[0]))?.get_multiplexed_async_connection().await?;
    let victim = master_of(&mut raw, slot_of_user("w0", buckets)).await?;
    let mut ids = Vec::new();
    let mut k = 0u64;
    while ids.len() < writers as usize {
        let user = format!("w{k}");
        k += 1;
        if master_of(&mut raw, slot_of_user(&user, buckets)).await? != victim {
            continue;
        }
        let s = controller.open_session(None, OpenSessionRequest { user_id: user, ..Default::default() }).await?;
        ids.push(s.id);
    }
    let mut victim_conn =
        redis::Client::open(format!("redis://{}:{}", victim.0, victim.1))?.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut victim_conn).await?;
    let pid: u32 = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no process_id in INFO"))?;

    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for id in ids.clone() {
        let c = controller.clone();
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            let mut version = 1i64;
            let mut n = 0u64;
            while Instant::now() < end {
                n += 1;
                match c.store_session_data(None, &id, json!({"n": n}), Some(version)).await {
                    Ok(Some(s)) => {
                        version = s.version;
                        t.acked += 1;
                        if t.first_error.is_some() && t.recovered.is_none() {
                            t.recovered = Some(Instant::now());
                        }
                    }
                    Ok(None) => {
                        *t.errors.entry("session gone".into()).or_default() += 1;
                        break;
                    }
                    Err(e) => {
                        if e.code == SESSION_VERSION_CONFLICT {
                            // The store is behind (or ahead of) what was acknowledged.
                            if let Ok(Some(now)) = c.get_session_by_id(None, &id).await {
                                if now.version < version {
                                    t.lost += u64::try_from(version - now.version).unwrap_or(0);
                                }
                                version = now.version;
                            }
                        }
                        *t.errors.entry(format!("{} {}", e.status, e.code)).or_default() += 1;
                        let at = Instant::now();
                        t.first_error.get_or_insert(at);
                        t.last_error = Some(at);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            // The final check: the stored version against the last acknowledged one.
            for _ in 0..20 {
                if let Ok(Some(now)) = c.get_session_by_id(None, &id).await {
                    if now.version < version {
                        t.lost += u64::try_from(version - now.version).unwrap_or(0);
                    }
                    t.verified = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            t
        }));
    }
    tokio::time::sleep(Duration::from_secs(warmup)).await;
    let killed_at = Instant::now();
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status()?;
    let killed_wall = Utc::now();

    let mut total = Tally::default();
    let mut verified = 0;
    let mut recovered: Vec<f64> = Vec::new();
    for task in tasks {
        let t = task.await?;
        verified += u64::from(t.verified);
        if let Some(r) = t.recovered {
            recovered.push(r.saturating_duration_since(killed_at).as_secs_f64());
        }
        total.acked += t.acked;
        total.lost += t.lost;
        for (k, v) in t.errors {
            *total.errors.entry(k).or_default() += v;
        }
        total.first_error = match (total.first_error, t.first_error) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        total.last_error = total.last_error.max(t.last_error);
    }
    let window = match (total.first_error, total.last_error) {
        (Some(a), Some(b)) => format!(
            "{:.2} s (first error {:.2} s after the kill, last {:.2} s after)",
            (b - a).as_secs_f64(),
            a.saturating_duration_since(killed_at).as_secs_f64(),
            b.saturating_duration_since(killed_at).as_secs_f64()
        ),
        _ => "none".to_string(),
    };
    println!(
        "Redis Cluster failover: {writers} writers with `version`, {seconds} s, master {}:{} (pid {pid}) killed with -9 at {} (+{warmup} s), wait_replicas {wait_replicas}",
        victim.0, victim.1, killed_wall.format("%H:%M:%S%.3f")
    );
    println!("  acknowledged writes        {}", total.acked);
    println!("  failed writes              {:?}", total.errors);
    println!("  unavailable window         {window}");
    println!(
        "  writers writing again      {} of {writers} (the last {:.2} s after the kill)",
        recovered.len(),
        recovered.iter().copied().fold(0.0, f64::max)
    );
    println!("  lost acknowledged writes   {} (final versions read for {verified} of {writers} sessions)", total.lost);
    let _ = store.clear(None).await;
    store.close(None).await?;
    Ok(())
}
