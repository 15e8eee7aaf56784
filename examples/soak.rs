//! Soak load generator (a benchmark program, not a test; run by `benches/soak.sh`): mixed traffic at a fixed rate against a
//! running service, printing every interval the requests sent, errors, p50/p99 latency and the
//! server's RSS. Run it through `benches/soak.sh`, which starts the service on a backend.
//!
//! Environment: `URL` (default `http://127.0.0.1:18091`), `RATE` requests/s (default 500),
//! `DURATION` seconds (default 1800), `INTERVAL` seconds between reports (default 60),
//! `SERVER_PID` (to read the server's RSS).
//!
//! Mix: 5 % open_session, 40 % get_session_by_id, 30 % store_session_data, 10 % get_sessions
//! by user, 5 % touch_session, 5 % close_session, 5 % delete_session_by_id — opens and deletes
//! balance, so the store (and RSS) reaches a steady size instead of growing for the whole run.
//!
//! An error is any 5xx, any transport failure, or a 4xx other than the expected 409 on a
//! session another request closed.

use serde_json::json;
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
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).timeout(Duration::from_secs(10)).build()?;
    let ids: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let latencies: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    let (sent, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let total_errors = Arc::new(AtomicU64::new(0));
    let rss_start = rss_kb(pid);
    println!("soak: url={url} rate={rate}/s duration={}s rss_start_kb={rss_start:?}", duration.as_secs());
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
                (1, Some(id)) => ("delete_session_by_id", json!({"session_id": id})),
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
            let ok = match result {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    if command == "open_session" && status == 200 {
                        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                            if let Some(id) = v["id"].as_str() {
                                let mut ids = ids.lock().await;
                                if ids.len() < 50_000 {
                                    ids.push(id.to_string());
                                } else {
                                    let slot = (n as usize) % ids.len();
                                    ids[slot] = id.to_string();
                                }
                            }
                        }
                    }
                    status < 400 || (status == 409 && text.contains("SESSION_CLOSED"))
                }
                Err(_) => false,
            };
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
            println!(
                "t={:>5}s sent={} errors={} p50_ms={:.3} p99_ms={:.3} rss_kb={:?}",
                started.elapsed().as_secs(),
                sent.swap(0, Ordering::Relaxed),
                errors.swap(0, Ordering::Relaxed),
                percentile(&l, 0.50),
                percentile(&l, 0.99),
                rss_kb(pid)
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
        "soak done: total_errors={} rss_start_kb={rss_start:?} rss_end_kb={rss_end:?} rss_growth={growth}",
        total_errors.load(Ordering::Relaxed)
    );
    Ok(())
}
