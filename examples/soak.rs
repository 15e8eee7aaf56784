//! Soak load generator (a benchmark program, not a test; run by `benches/soak.sh`): mixed traffic
//! at a fixed rate against a running service, printing every interval the requests sent, errors,
//! p50/p99 latency and the server's RSS.
//!
//! Environment: `URL` (default `http://127.0.0.1:18091`), `RATE` requests/s (default 500),
//! `DURATION` seconds (default 1800), `INTERVAL` seconds between reports (default 60),
//! `PRELOAD` sessions opened before the timed run (default 20 000), `SERVER_PID` (to read the
//! server's RSS).
//!
//! Mix: 5 % open_session, 40 % get_session_by_id, 30 % store_session_data, 10 % get_sessions
//! by user, 5 % touch_session, 5 % close_session, 5 % delete_session_by_id. The generator keeps
//! the ids of the stored sessions in a pool: an open adds its id, a delete takes one out, so the
//! store holds a steady population (the preload) for the whole run and a growing RSS would be a
//! leak, not data.
//!
//! The RSS baseline is taken after the first interval of mixed traffic (warm-up: allocator
//! arenas, connection buffers, per-route metrics), and compared with the RSS at the end.
//!
//! An error is any 5xx, any transport failure, or a 4xx other than the expected 409 on a
//! session another request closed.

use serde_json::json;
use service_sessions::data::version1::errors::SESSION_CLOSED;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kb(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("URL").unwrap_or_else(|_| "http://127.0.0.1:18091".to_string());
    let rate = env_or("RATE", 500).max(1);
    let duration = Duration::from_secs(env_or("DURATION", 1800));
    let interval = Duration::from_secs(env_or("INTERVAL", 60).max(1));
    let pid = std::env::var("SERVER_PID").ok().and_then(|v| v.parse().ok());
    // Idle connections are dropped after 5 s, before the service closes them (it does after its
    // header_read_timeout, 10 s), as the SDK does: a pool that keeps them longer sometimes sends
    // a request just as the service closes the connection.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()?;
    let ids: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let latencies: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    let (sent, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let total_errors = Arc::new(AtomicU64::new(0));
    let preload = env_or("PRELOAD", 20_000);
    println!(
        "soak: url={url} rate={rate}/s duration={}s preload={preload} rss_empty_kb={:?}",
        duration.as_secs(),
        rss_kb(pid)
    );
    preload_sessions(&client, &url, preload, &ids).await?;
    println!("preloaded {} sessions: rss_kb={:?}", ids.lock().await.len(), rss_kb(pid));
    let mut rss_start = None;
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut next_report = started + interval;
    let mut n: u64 = 0;
    while started.elapsed() < duration {
        ticks.tick().await;
        n += 1;
        let (client, url, ids, lat) = (client.clone(), url.clone(), ids.clone(), latencies.clone());
        let (sent_now, errors_now, total) = (sent.clone(), errors.clone(), total_errors.clone());
        tokio::spawn(async move {
            let pick = n % 20;
            let id = {
                let ids = ids.lock().await;
                if ids.is_empty() {
                    None
                } else {
                    Some(ids[(n as usize * 7919) % ids.len()].clone())
                }
            };
            let (command, body) = match (pick, id) {
                (0, _) | (_, None) => {
                    ("open_session", json!({"user_id": format!("u{}", n % 10_000), "data": {"n": n}}))
                }
                (1, Some(_)) => match take_id(&ids, n).await {
                    Some(id) => ("delete_session_by_id", json!({"session_id": id})),
                    None => return,
                },
                (2..=9, Some(id)) => ("get_session_by_id", json!({"session_id": id})),
                (10..=15, Some(id)) => ("store_session_data", json!({"session_id": id, "data": {"n": n}})),
                (16 | 17, _) => {
                    ("get_sessions", json!({"filter": {"user_id": format!("u{}", n % 10_000)}, "paging": {"take": 20}}))
                }
                (18, Some(id)) => ("touch_session", json!({"session_id": id})),
                (_, Some(id)) => ("close_session", json!({"session_id": id})),
            };
            let t = Instant::now();
            let result = client.post(format!("{url}/v1/sessions/{command}")).json(&body).send().await;
            let failure = match result {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    if command == "open_session" && status == 200 {
                        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                            if let Some(id) = v["id"].as_str() {
                                ids.lock().await.push(id.to_string());
                            }
                        }
                    }
                    let ok = status < 400 || (status == 409 && text.contains(SESSION_CLOSED));
                    (!ok).then(|| format!("HTTP {status}: {}", text.chars().take(300).collect::<String>()))
                }
                Err(e) => Some(format!("transport: {}", error_chain(&e))),
            };
            let ok = failure.is_none();
            if let Some(failure) = failure {
                // The first errors are printed whole, so a soak that fails says why.
                if total.load(Ordering::Relaxed) < 20 {
                    eprintln!("error: {command} after {} ms: {failure}", t.elapsed().as_millis());
                }
            }
            lat.lock().await.push(t.elapsed().as_micros() as u64);
            sent_now.fetch_add(1, Ordering::Relaxed);
            if !ok {
                errors_now.fetch_add(1, Ordering::Relaxed);
                total.fetch_add(1, Ordering::Relaxed);
            }
        });
        if Instant::now() >= next_report {
            next_report += interval;
            let mut l = std::mem::take(&mut *latencies.lock().await);
            l.sort_unstable();
            let rss = rss_kb(pid);
            if rss_start.is_none() {
                rss_start = rss;
                println!("warm-up done: rss_start_kb={rss:?}");
            }
            println!(
                "t={:>5}s sent={} errors={} p50_ms={:.3} p99_ms={:.3} rss_kb={:?}",
                started.elapsed().as_secs(),
                sent.swap(0, Ordering::Relaxed),
                errors.swap(0, Ordering::Relaxed),
                percentile(&l, 0.50),
                percentile(&l, 0.99),
                rss
            );
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_end = rss_kb(pid);
    let growth = match (rss_start, rss_end) {
        (Some(a), Some(b)) if a > 0 => format!("{:+.1}%", (b as f64 - a as f64) * 100.0 / a as f64),
        _ => "n/a".to_string(),
    };
    println!(
        "soak done: total_errors={} stored_in_pool={} rss_start_kb={rss_start:?} rss_end_kb={rss_end:?} rss_growth={growth}",
        total_errors.load(Ordering::Relaxed),
        ids.lock().await.len()
    );
    Ok(())
}

/// Takes a pseudo-random id out of the pool (the session is about to be deleted).
async fn take_id(ids: &Mutex<Vec<String>>, n: u64) -> Option<String> {
    let mut ids = ids.lock().await;
    if ids.is_empty() {
        return None;
    }
    let slot = (n as usize * 7919) % ids.len();
    Some(ids.swap_remove(slot))
}

/// Opens `count` sessions (32 at a time) before the timed run and puts their ids in the pool.
async fn preload_sessions(
    client: &reqwest::Client,
    url: &str,
    count: u64,
    ids: &Mutex<Vec<String>>,
) -> anyhow::Result<()> {
    let mut next = 0u64;
    while next < count {
        let batch: Vec<u64> = (next..count.min(next + 32)).collect();
        next += batch.len() as u64;
        let opened = futures::future::join_all(batch.into_iter().map(|n| async move {
            let body = json!({"user_id": format!("u{}", n % 10_000), "data": {"n": n}});
            let response = client.post(format!("{url}/v1/sessions/open_session")).json(&body).send().await?;
            let value: serde_json::Value = response.error_for_status()?.json().await?;
            anyhow::Ok(value["id"].as_str().unwrap_or_default().to_string())
        }))
        .await;
        let mut ids = ids.lock().await;
        for id in opened {
            ids.push(id?);
        }
    }
    Ok(())
}

/// An error with its chain of causes (reqwest's own message names only the outer layer).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
