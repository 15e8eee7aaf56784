//! Benchmark of the heavy operations against a bystander (prints numbers, asserts nothing).
//!
//! The memory backend is loaded with `HEAVY_N` sessions (default 250 000): half of them open
//! sessions of one user `big` with their own ttl longer than the idle timeout, a quarter closed,
//! the rest spread over other users. On two runtime threads (as the service runs), a bystander
//! reads one session by id in a loop and records each read's latency while one heavy operation
//! runs at a time:
//! - `paging.total` lists (all open sessions; `big`'s sessions; a time window over everything),
//!   four clients at once;
//! - a sweep that finds nothing expired (every `big` session idle past the cutoff, alive by ttl);
//! - `close_user_sessions` of `big` (half the store);
//! - a mass expiry of everything left open.
//!
//! For each it prints the bystander's reads, p50, p99, p99.9 and max (each sample is a read plus
//! the wait until the runtime runs the bystander again), and the operation's own time.
//! `cargo bench --bench heavy_ops`; `HEAVY_N=100000` changes the size. Under `cargo test` it
//! does nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Duration, Utc};
use service_sessions::data::version1::{SessionV1, SessionsFilter};
use service_sessions::persistence::memory::SessionsMemoryPersistence;
use service_sessions::persistence::SessionsPersistence;
use service_sessions::toolkit::data::PagingParams;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

type Heavy = Box<dyn Fn(Arc<SessionsMemoryPersistence>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

fn session(id: String, user: String, t: DateTime<Utc>, ttl_days: Option<i64>, active: bool) -> SessionV1 {
    let mut s = SessionV1::open(id, user, t);
    s.expire_time = ttl_days.map(|d| t + Duration::days(d));
    s.ttl = ttl_days.map(|d| d * 86_400_000);
    if !active {
        s.active = false;
        s.close_time = Some(t);
        s.expire_time = None;
    }
    s
}

async fn load(n: usize, t0: DateTime<Utc>) -> Arc<SessionsMemoryPersistence> {
    let store = Arc::new(SessionsMemoryPersistence::new());
    for i in 0..n {
        let t = t0 + Duration::milliseconds(i as i64);
        let s = match i % 4 {
            0 | 1 => session(format!("big{i:08}"), "big".into(), t, Some(365), true),
            2 => session(format!("cls{i:08}"), format!("u{}", i % 1000), t, None, false),
            _ => session(format!("oth{i:08}"), format!("u{}", i % 1000), t, Some(1), true),
        };
        store.create(None, s).await.unwrap();
    }
    store
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn measure(name: &str, store: Arc<SessionsMemoryPersistence>, heavy: &Heavy) {
    let stop = Arc::new(AtomicBool::new(false));
    let bystander = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            // Each sample is one read plus the wait for the runtime to run the bystander again,
            // so a starved runtime shows as well as a held lock.
            let mut lat = Vec::new();
            let mut started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let _ = store.get_one_by_id(None, "oth00000003").await.unwrap();
                tokio::task::yield_now().await;
                let now = Instant::now();
                lat.push(now.duration_since(started).as_secs_f64() * 1000.0);
                started = now;
            }
            lat
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let started = Instant::now();
    heavy(store.clone()).await;
    let took = started.elapsed().as_secs_f64() * 1000.0;
    stop.store(true, Ordering::Relaxed);
    let mut lat = bystander.await.unwrap();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{name:<44} op {took:>8.1} ms | bystander reads {:>7}  p50 {:>6.3} ms  p99 {:>6.3} ms  p99.9 {:>6.3} ms  max {:>7.3} ms",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        lat.last().copied().unwrap_or(0.0)
    );
}

fn list(filter: SessionsFilter, clients: usize, rounds: usize) -> Heavy {
    Box::new(move |store| {
        let filter = filter.clone();
        Box::pin(async move {
            let tasks: Vec<_> = (0..clients)
                .map(|_| {
                    let (store, filter) = (store.clone(), filter.clone());
                    tokio::spawn(async move {
                        let paging = PagingParams { skip: None, take: Some(100), total: true };
                        for _ in 0..rounds {
                            store.get_page_by_filter(None, &filter, &paging).await.unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        })
    })
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("heavy_ops: run it with `cargo bench --bench heavy_ops`");
        return;
    }
    let n: usize = std::env::var("HEAVY_N").ok().and_then(|v| v.parse().ok()).unwrap_or(250_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let t0 = DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_000);
        let started = Instant::now();
        let store = load(n, t0).await;
        println!("loaded {n} sessions in {:.1} s", started.elapsed().as_secs_f64());
        let now = t0 + Duration::days(30);
        let cutoff = now - Duration::days(1);
        let window =
            SessionsFilter { from_time: Some(t0), to_time: Some(t0 + Duration::days(1)), ..SessionsFilter::default() };
        let heavies: Vec<(&str, Heavy)> = vec![
            ("nothing (baseline)", Box::new(|_| Box::pin(tokio::time::sleep(std::time::Duration::from_millis(300))))),
            (
                "4 x 50 lists, total of open sessions",
                list(SessionsFilter { active: Some(true), ..Default::default() }, 4, 50),
            ),
            (
                "4 x 50 lists, total of big's sessions",
                list(SessionsFilter { user_id: Some("big".into()), ..Default::default() }, 4, 50),
            ),
            ("4 x 5 lists, total of a time window (all)", list(window, 4, 5)),
            (
                "sweep finding nothing (ttl > idle timeout)",
                Box::new(move |s| {
                    Box::pin(async move {
                        for _ in 0..50 {
                            s.close_expired(None, cutoff, t0 + Duration::hours(1)).await.unwrap();
                        }
                    })
                }),
            ),
            (
                "close_user_sessions(big)",
                Box::new(move |s| {
                    Box::pin(async move {
                        s.close_user_sessions(None, "big", None, now).await.unwrap();
                    })
                }),
            ),
            (
                "mass expiry of every open session",
                Box::new(move |s| {
                    Box::pin(async move {
                        let later = t0 + Duration::days(400);
                        s.close_expired(None, later, later).await.unwrap();
                    })
                }),
            ),
        ];
        for (name, heavy) in &heavies {
            measure(name, store.clone(), heavy).await;
        }
    });
}
