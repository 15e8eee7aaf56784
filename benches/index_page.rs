//! Focused benchmark of the memory index (prints numbers, asserts nothing): the memory a stored
//! session costs, and a `get_sessions` page of 100 of one user's sessions.
//!
//! Loads `SESSIONS` (default 1 000 000) sessions of `USERS` (default 10 000) users as
//! `open_session` stores them (the HTTP benchmark's preload: a user id, a client, an expiry, no
//! payload), with the service's allocator, then reads `PAGES` (default 100 000) pages of 100 by
//! user, users in turn, each as the JSON text the service answers (`get_page_json`: encoded from
//! the index's records). Prints the RSS growth per
//! stored session and the time per page. Then sends `STORES` (default 200 000) `store_session_data`
//! updates (new data, a refreshed `request_time` and `expire_time`) to sessions of every user in
//! turn and prints the time per store (`STORES=0` for none: the difference of two runs under
//! callgrind is the instructions of one store).
//!
//! For repeatable figures on a shared machine, count instructions rather than time: the cost of
//! a page is the difference between two runs over the number of pages,
//!
//! ```text
//! PAGES=0      perf stat -e instructions -x, target/release/deps/index_page-* --bench
//! PAGES=100000 perf stat -e instructions -x, target/release/deps/index_page-* --bench
//! ```
//!
//! Where `perf stat` reports instructions as `<not supported>` (virtual machines without
//! hardware counters), `valgrind --tool=callgrind` counts them instead (with fewer sessions and
//! pages: `SESSIONS=100000 USERS=1000 PAGES=0|2000`).
//!
//! `cargo bench --bench index_page`; under `cargo test` it does nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Duration, Utc};
use service_sessions::data::version1::{new_session_id, SessionV1, SessionsFilter};
use service_sessions::persistence::memory::SessionsMemoryPersistence;
use service_sessions::persistence::{
    ExpiryPolicy, SessionChange, SessionUpdate, SessionsPersistence, UpdateOutcome, WriteCondition,
};
use service_sessions::toolkit::data::PagingParams;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kb() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time of this process so far, in seconds (user + system).
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    ticks / 100.0
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("index_page: run it with `cargo bench --bench index_page`");
        return;
    }
    let (sessions, users, pages) = (env("SESSIONS", 1_000_000), env("USERS", 10_000), env("PAGES", 100_000));
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async move {
        let t0 = DateTime::<Utc>::UNIX_EPOCH + Duration::days(20_000);
        let store = SessionsMemoryPersistence::new();
        let before = rss_kb();
        let started = Instant::now();
        for i in 0..sessions {
            // As a burst of opens stores them: many sessions share a millisecond.
            let now = t0 + Duration::milliseconds((i / 30) as i64);
            let mut s = SessionV1::open(new_session_id().unwrap(), format!("u{}", i % users), now);
            s.client = Some("bench".into());
            s.user = Some(serde_json::Value::Null);
            s.data = Some(serde_json::Value::Null);
            s.expire_time = Some(now + Duration::days(1));
            store.create(None, s).await.unwrap();
        }
        let after = rss_kb();
        println!(
            "stored={sessions} users={users} load_s={:.1} rss_before_kb={before} rss_after_kb={after} bytes_per_session={}",
            started.elapsed().as_secs_f64(),
            (after - before) * 1024 / sessions.max(1)
        );
        let (started, cpu) = (Instant::now(), cpu_s());
        let mut bytes = 0usize;
        for p in 0..pages {
            let filter = SessionsFilter { user_id: Some(format!("u{}", p % users)), ..Default::default() };
            let page = store.get_page_json(None, &filter, &PagingParams::new(0, 100, false)).await.unwrap();
            bytes += page.as_str().len();
        }
        let elapsed = started.elapsed();
        if pages > 0 {
            println!(
                "pages={pages} wall_ns_per_page={:.0} cpu_ns_per_page={:.0} bytes_per_page={}",
                elapsed.as_nanos() as f64 / pages as f64,
                (cpu_s() - cpu) * 1e9 / pages as f64,
                bytes / pages
            );
        }
        // `store_session_data` as the controller sends it: open and alive, new data, a day's idle
        // timeout; on sessions of every user in turn, each write at a new millisecond (its keys
        // move to the end of their sets).
        let mut ids = Vec::new();
        for u in 0..users.min(1_000) {
            let filter = SessionsFilter { user_id: Some(format!("u{u}")), ..Default::default() };
            let page = store.get_page_by_filter(None, &filter, &PagingParams::new(0, 100, false)).await.unwrap();
            ids.extend(page.data.into_iter().map(|s| s.id));
        }
        let stores = if ids.is_empty() { 0 } else { env("STORES", 200_000) };
        let policy = ExpiryPolicy { idle_timeout: Some(86_400_000), max_lifetime: None };
        let (started, cpu) = (Instant::now(), cpu_s());
        let later = t0 + Duration::hours(1);
        for i in 0..stores {
            let now = later + Duration::milliseconds(i as i64);
            let condition = WriteCondition { require_active: true, alive_at: Some(now), ..Default::default() };
            let change = SessionChange::StoreData(serde_json::json!({ "n": i, "cart": [1, 2, 3] }).into());
            let update = SessionUpdate { condition, change, now, policy };
            let id = &ids[(i * 7_919) % ids.len()];
            assert!(matches!(store.update(None, id, update.clone()).await.unwrap(), UpdateOutcome::Updated(_)));
        }
        if stores > 0 {
            println!(
                "stores={stores} wall_ns_per_store={:.0} cpu_ns_per_store={:.0}",
                started.elapsed().as_nanos() as f64 / stores as f64,
                (cpu_s() - cpu) * 1e9 / stores as f64
            );
        }
    });
}
