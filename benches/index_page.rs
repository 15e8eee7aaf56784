//! Focused benchmark of the memory index (prints numbers, asserts nothing): the memory a stored
//! session costs, and a `get_sessions` page of 100 of one user's sessions.
//!
//! Loads `SESSIONS` (default 1 000 000) sessions of `USERS` (default 10 000) users as
//! `open_session` stores them (the HTTP benchmark's preload: a user id, a client, an expiry, no
//! payload), with the service's allocator, then reads `PAGES` (default 100 000) pages of 100 by
//! user, users in turn, each as the JSON text the service answers (`get_page_json`: encoded from
//! the index's records). Prints the RSS growth per
//! stored session and the time per page.
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
use service_sessions::persistence::SessionsPersistence;
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
    });
}
