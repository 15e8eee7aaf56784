//! Benchmark of the file backend (prints numbers, asserts nothing):
//! - the cost of a `store_session_data`-equivalent conditional update at 1k and 1M stored
//!   sessions, one writer at a time and 50 at once, under `sync: never` (CPU and I/O path
//!   without fsync) and `sync: always` (fsync, group commit);
//! - start-up (replay) time from the log only (every session a log record) and from a snapshot
//!   plus a log; compaction time and the worst write latency while it runs.
//!
//! Automatic compaction is off (huge threshold) so each phase starts from a known state; the
//! compaction is run on purpose between phases. Wall and CPU seconds are printed for start-up,
//! as the machine may be shared.
//!
//! `cargo bench --bench file_store`. `BENCH_DIR` places the store (default: the temp dir),
//! `BENCH_SIZES=1000,100000` changes the sizes, `BENCH_KEEP=1` keeps the store,
//! `BENCH_OPEN=<folder>` only times the start-up of an existing store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::Utc;
use serde_json::json;
use service_sessions::data::version1::SessionV1;
use service_sessions::persistence::file::{FileOptions, SessionsFilePersistence, SyncMode};
use service_sessions::persistence::{
    ExpiryPolicy, PageOptions, SessionChange, SessionUpdate, SessionsPersistence, UpdateOutcome, WriteCondition,
};
use service_sessions::toolkit::component::Component;
use service_sessions::toolkit::time::truncate_millis;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

const CONCURRENCY: usize = 50;

/// Writes before a compaction is measured (see [`compaction`]).
const WARMUP_WRITES: usize = 100_000;

/// The allocator of the `service-sessions` binary, so the figures are the service's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn id(i: usize) -> String {
    format!("{:032x}", (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835))
}

fn session(i: usize) -> SessionV1 {
    let mut s = SessionV1::open(id(i), format!("user{}", i % 10_000), truncate_millis(Utc::now()));
    s.user_name = Some(format!("User Number {}", i % 10_000));
    s.address = Some("192.168.10.20".into());
    s.client = Some("Mozilla/5.0 (X11; Linux x86_64)".into());
    s.user = Some(json!({"id": format!("user{}", i % 10_000), "name": "User", "roles": ["user", "reader"]}));
    s.data = Some(json!({"cart": [1, 2, 3], "theme": "dark", "visits": i}));
    s
}

fn update(n: usize) -> SessionUpdate {
    let now = truncate_millis(Utc::now());
    SessionUpdate {
        condition: WriteCondition {
            require_active: true,
            alive_at: Some(now),
            idle_cutoff: Some(now - chrono::Duration::hours(24)),
            expected_version: None,
        },
        change: SessionChange::StoreData(json!({"cart": [1, 2, 3, n % 100], "theme": "dark", "visits": n}).into()),
        now,
        policy: ExpiryPolicy { idle_timeout: Some(24 * 3_600_000), max_lifetime: None },
    }
}

fn store(dir: &Path, options: FileOptions) -> Arc<SessionsFilePersistence> {
    Arc::new(SessionsFilePersistence::new(dir, options, PageOptions::default()))
}

/// A cheap deterministic spread over the stored sessions.
fn pick(k: usize, n: usize) -> usize {
    (k.wrapping_mul(2_654_435_761)) % n
}

async fn seed(p: &Arc<SessionsFilePersistence>, n: usize) {
    let per = n.div_ceil(64);
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let p = p.clone();
            tokio::spawn(async move {
                for i in t * per..((t + 1) * per).min(n) {
                    p.create(None, session(i)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Microseconds per write, one writer at a time.
async fn sequential(p: &Arc<SessionsFilePersistence>, n: usize, writes: usize) -> f64 {
    let start = Instant::now();
    for k in 0..writes {
        let id = id(pick(k, n));
        assert!(matches!(p.update(None, &id, update(k)).await.unwrap(), UpdateOutcome::Updated(_)));
    }
    start.elapsed().as_secs_f64() * 1e6 / writes as f64
}

/// Microseconds per write (wall time / writes) with `CONCURRENCY` writers.
async fn concurrent(p: &Arc<SessionsFilePersistence>, n: usize, writes_each: usize) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let p = p.clone();
            tokio::spawn(async move {
                for k in 0..writes_each {
                    let id = id(pick(t * writes_each + k + 7, n));
                    p.update(None, &id, update(k)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed().as_secs_f64() * 1e6 / (CONCURRENCY * writes_each) as f64
}

/// CPU time of this process so far (user + system), from `/proc/self/stat` (0 elsewhere): shows
/// how much of a wall time was this process's work on a shared machine.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Wall and CPU seconds of an open.
async fn timed_open(p: &Arc<SessionsFilePersistence>) -> (f64, f64) {
    let (start, cpu) = (Instant::now(), cpu_seconds());
    p.open(None).await.unwrap();
    (start.elapsed().as_secs_f64(), cpu_seconds() - cpu)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}

/// Measures while `compact()` runs: one writer keeps writing; its worst latency shows how long
/// the compaction (its rotation, read-locked steps, snapshot and removal of the covered logs)
/// holds writes up.
///
/// `CONCURRENCY` writers first write `WARMUP_WRITES` in all: a running store's log holds writes
/// not fsynced yet under `sync: never`, and every runtime thread has allocated since the store
/// was opened. Without it, a thread's first allocations after the previous store was dropped on
/// another thread collect that store's cross-thread frees (mimalloc's delayed free list, a
/// million blocks here: 80–220 ms), which the probe would report as the compaction's.
/// Only writes that begin after the compaction has begun are counted.
async fn compaction(p: &Arc<SessionsFilePersistence>, n: usize) -> String {
    concurrent(p, n, WARMUP_WRITES / CONCURRENCY).await;
    let stop = Arc::new(AtomicBool::new(false));
    let compacting = Arc::new(AtomicBool::new(false));
    let probe = {
        let (p, stop, compacting) = (p.clone(), stop.clone(), compacting.clone());
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let counted = compacting.load(Ordering::Relaxed);
                let start = Instant::now();
                p.update(None, &id(pick(k, n)), update(k)).await.unwrap();
                if counted {
                    lat.push(start.elapsed().as_secs_f64() * 1e3);
                }
                k += 1;
            }
            lat.sort_by(f64::total_cmp);
            lat
        })
    };
    // The probe is writing before the compaction starts.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    compacting.store(true, Ordering::Relaxed);
    let stats = p.compact().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let lat = probe.await.unwrap();
    let q = |f: f64| lat[((lat.len() as f64 * f) as usize).min(lat.len() - 1)];
    format!(
        "{:.2} s, {:.0} MB snapshot; a writer meanwhile: {} writes, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        stats.elapsed.as_secs_f64(),
        stats.bytes as f64 / 1e6,
        lat.len(),
        q(0.5),
        q(0.99),
        q(1.0)
    )
}

fn options(sync: SyncMode) -> FileOptions {
    // No automatic compaction: each phase starts from a known state.
    FileOptions { sync, compact_threshold: u64::MAX, ..FileOptions::default() }
}

async fn run(n: usize, base: &Path) {
    let tmp = tempfile::tempdir_in(base).unwrap();
    let dir = tmp.path().join("store");
    if std::env::var("BENCH_KEEP").is_ok() {
        println!("(the store is kept in {})", tmp.keep().display());
    }
    let p = store(&dir, options(SyncMode::Never));
    p.open(None).await.unwrap();
    let start = Instant::now();
    seed(&p, n).await;
    println!("\n## {n} sessions (seeded in {:.1} s with 64 writers, sync=never)", start.elapsed().as_secs_f64());
    p.close(None).await.unwrap();

    let p = store(&dir, options(SyncMode::Never));
    let (wall, cpu) = timed_open(&p).await;
    let r = p.recovery().unwrap();
    println!(
        "start-up, log only        : {wall:6.2} s (cpu {cpu:.2} s; {} sessions from {} log records, {:.0} MB)",
        r.sessions,
        r.log_records,
        dir_size(&dir) as f64 / 1e6
    );
    println!("compaction (sync=never)   : {}", compaction(&p, n).await);
    let seq = sequential(&p, n, 20_000).await;
    let conc = concurrent(&p, n, 400).await;
    println!("write, sync=never         : {seq:6.1} µs sequential, {conc:6.1} µs/write with {CONCURRENCY} writers");
    p.close(None).await.unwrap();

    let p = store(&dir, options(SyncMode::Always));
    let (wall, cpu) = timed_open(&p).await;
    let r = p.recovery().unwrap();
    println!(
        "start-up, snapshot + log  : {wall:6.2} s (cpu {cpu:.2} s; {} sessions, {} log records replayed)",
        r.sessions, r.log_records
    );
    let seq = sequential(&p, n, 300).await;
    let conc = concurrent(&p, n, 100).await;
    println!(
        "write, sync=always        : {seq:6.1} µs sequential, {conc:6.1} µs/write with {CONCURRENCY} writers \
         ({:.0} writes/s)",
        1e6 / conc
    );
    p.close(None).await.unwrap();

    // The worst start-up in steady state: the logs have just reached the compaction trigger
    // (half the snapshot), about one update per two sessions since the last compaction.
    let p = store(&dir, options(SyncMode::Never));
    p.open(None).await.unwrap();
    concurrent(&p, n, (n / 2).div_ceil(CONCURRENCY)).await;
    p.close(None).await.unwrap();
    let p = store(&dir, options(SyncMode::Never));
    let (wall, cpu) = timed_open(&p).await;
    let r = p.recovery().unwrap();
    println!(
        "start-up, at the trigger  : {wall:6.2} s (cpu {cpu:.2} s; {} sessions, {} log records replayed, {:.0} MB)",
        r.sessions,
        r.log_records,
        dir_size(&dir) as f64 / 1e6
    );
    p.close(None).await.unwrap();
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let base = std::env::var("BENCH_DIR").map_or_else(|_| std::env::temp_dir(), Into::into);
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 1_000_000]);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("# file backend benchmark ({cores} cores)");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(cores).enable_all().build().unwrap();
    if let Ok(dir) = std::env::var("BENCH_OPEN") {
        // Only time the start-up of an existing store (a kept one, or a copy of a real one).
        rt.block_on(async {
            let p = store(Path::new(&dir), options(SyncMode::Always));
            let (wall, cpu) = timed_open(&p).await;
            println!("start-up: {wall:.2} s (cpu {cpu:.2} s; {:?})", p.recovery().unwrap());
            // Skip the close: a profile of this run shows the start-up alone.
            std::process::exit(0);
        });
        return;
    }
    for n in sizes {
        rt.block_on(run(n, &base));
    }
}
