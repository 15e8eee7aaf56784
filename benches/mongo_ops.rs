//! The MongoDB server's own single-client operation rate, as the baseline for the HTTP benchmark
//! (`benches/mongo_http.sh`): one sequential client of the official driver runs, for
//! `BENCH_SECONDS` (default 5) each, the operations the sessions backend issues — `insert_one`,
//! `find_one` by `_id`, and the conditional `find_one_and_update` with `$set` + `$inc` — on
//! session-shaped documents in a fresh collection (dropped afterwards), and prints ops/s and
//! latency percentiles.
//!
//! Then the driver's floor for the service's CPU per request: `CONCURRENCY` (default 50) tasks on
//! a two-thread runtime (as the service runs) issue exactly the commands the sessions backend
//! sends for `get_session_by_id` (`find_one` by `_id` with `maxTimeMS`) and for an uncontended
//! `store_session_data` (one `find_one_and_update` with the backend's guard filter and update,
//! returning the document; both answers read as raw BSON, as the backend reads them) on documents
//! the backend's codec wrote, and print this process's CPU time per operation — what the driver
//! alone costs a client, with no HTTP, no decoding, no logic.
//! Needs `MONGODB_URI` (`benches/mongo_http.sh` provides it). Run with
//! `cargo bench --bench mongo_ops`; under `cargo test` it does nothing.

use anyhow::Context;
use mongodb::bson::{doc, DateTime as BsonDateTime, Document};
use mongodb::options::ReturnDocument;
use mongodb::{Client, Collection};
use serde_json::json;
use service_sessions::data::version1::SessionV1;
use service_sessions::persistence::mongodb::codec::{bson_time, json_to_bson, session_document};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// CPU time (user + system) this process used so far, from `/proc/self/stat`, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // rest starts at field 3 (state): utime is field 14 → index 11, stime index 12; 100 ticks/s.
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs `op` from `tasks` concurrent tasks for `budget`; prints ops/s and CPU µs per op. With a
/// `rate` (ops/s, all tasks together), each task issues its share of it on a fixed schedule (the
/// tasks' start times spread over one period) instead of back to back: the driver at the rate
/// another process reached, so CPU per operation is compared at the same rate of wake-ups.
async fn floor<F, Fut>(name: &str, tasks: usize, budget: Duration, rate: Option<f64>, op: F) -> anyhow::Result<()>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = mongodb::error::Result<()>> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let (cpu0, start) = (cpu_seconds(), Instant::now());
    // Each task's interval between operations when rate-limited.
    let period = rate.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(tasks as f64 / r));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (op, done) = (op.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            let mut i = t as u64;
            let mut next = period.map(|p| tokio::time::Instant::from_std(start) + p.mul_f64(t as f64 / tasks as f64));
            while start.elapsed() < budget {
                if let (Some(at), Some(p)) = (next.as_mut(), period) {
                    tokio::time::sleep_until(*at).await;
                    // Behind schedule (the server was slow): carry on from now, no burst.
                    *at = (*at + p).max(tokio::time::Instant::now());
                }
                op(i).await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += tasks as u64;
            }
            Ok::<(), mongodb::error::Error>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let (cpu, secs, n) = (cpu_seconds() - cpu0, start.elapsed().as_secs_f64(), done.load(Ordering::Relaxed));
    let label = match rate {
        Some(r) => format!("rate-matched {name} (target {r:.0}/s)"),
        None => name.to_string(),
    };
    println!(
        "{label:<48} {:>8.0} ops/s   driver CPU {:>6.1} us/op   ({n} ops, {tasks} tasks)",
        n as f64 / secs,
        cpu * 1e6 / n.max(1) as f64
    );
    Ok(())
}

/// Runs `op` sequentially for `budget` and prints its rate and latencies.
async fn measure<F, Fut>(name: &str, budget: Duration, mut op: F) -> anyhow::Result<u64>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = mongodb::error::Result<()>>,
{
    let mut latencies = Vec::new();
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < budget {
        let t = Instant::now();
        op(i).await.with_context(|| format!("{name} #{i}"))?;
        latencies.push(t.elapsed());
        i += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        let idx = ((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        latencies.get(idx).copied().unwrap_or_default().as_secs_f64() * 1000.0
    };
    println!(
        "{name:<22} {:>8.0} ops/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({i} ops)",
        i as f64 / secs,
        pct(0.50),
        pct(0.99)
    );
    Ok(i)
}

fn session(i: u64, now: BsonDateTime) -> Document {
    doc! {
        "_id": format!("{i:032x}"), "user_id": format!("u{}", i % 100), "user_name": "bench",
        "address": "127.0.0.1", "client": "bench", "active": true, "open_time": now, "request_time": now,
        "user": r#"{"id":"u1","roles":["a","b"]}"#, "data": r#"{"cart":[1,2,3]}"#, "version": 1_i64,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let uri = std::env::var("MONGODB_URI").context("MONGODB_URI is not set (benches/mongo_http.sh sets it)")?;
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let budget = Duration::from_secs(seconds);
    let client = Client::with_uri_str(&uri).await?;
    let name = format!("ops_{}", std::process::id());
    let coll: Collection<Document> = client.database("service_sessions_bench").collection(&name);
    // `SEQUENTIAL=0` skips the server's single-client rates (the HTTP script prints them once).
    if std::env::var("SEQUENTIAL").map_or(true, |v| v != "0") {
        coll.drop().await?;
        println!("MongoDB server, one sequential client ({seconds} s per operation):");
        let c = &coll;
        let now = BsonDateTime::now();
        let inserted =
            measure("insert_one", budget, |i| async move { c.insert_one(session(i, now)).await.map(drop) }).await?;
        let n = inserted.max(1);
        measure("find_one by _id", budget, |i| async move {
            c.find_one(doc! { "_id": format!("{:032x}", i % n) }).await.map(drop)
        })
        .await?;
        measure("find_one_and_update", budget, |i| async move {
            let update = doc! {
                "$set": { "data": format!(r#"{{"n":{i}}}"#), "request_time": BsonDateTime::now() },
                "$inc": { "version": 1_i64 },
            };
            c.find_one_and_update(doc! { "_id": format!("{:032x}", i % n), "active": true }, update)
                .return_document(ReturnDocument::After)
                .await
                .map(drop)
        })
        .await?;
        coll.drop().await?;
    }

    // The driver's floor, on documents as the backend writes them, returned as raw BSON as the
    // backend reads them (no `Document` tree: that cost is the backend's own choice, not the
    // driver's).
    let raw =
        client.database("service_sessions_bench").collection::<mongodb::bson::RawDocumentBuf>(&format!("{name}_floor"));
    let tasks: usize = std::env::var("CONCURRENCY").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let floor_coll = client.database("service_sessions_bench").collection::<Document>(&format!("{name}_floor"));
    let sessions: u64 = 200;
    let now = chrono::Utc::now();
    for i in 0..sessions {
        let mut s = SessionV1::open(format!("{i:032x}"), format!("u{i}"), now);
        s.user_name = Some("bench".into());
        s.data = Some(json!({"cart": [1, 2, 3]}));
        s.expire_time = Some(now + chrono::Duration::hours(1));
        floor_coll.insert_one(session_document(&s)).await?;
    }
    println!("Driver floor per operation of the sessions backend ({seconds} s each, {tasks} concurrent tasks):");
    let max_time = Duration::from_millis(7000);
    let find = |c: Collection<mongodb::bson::RawDocumentBuf>| {
        move |i: u64| {
            let c = c.clone();
            async move { c.find_one(doc! { "_id": format!("{:032x}", i % sessions) }).max_time(max_time).await.map(drop) }
        }
    };
    let update = |c: Collection<mongodb::bson::RawDocumentBuf>| {
        move |i: u64| {
            let c = c.clone();
            async move {
                let now = chrono::Utc::now();
                let filter = doc! {
                    "_id": format!("{:032x}", i % sessions), "user_id": { "$type": "string" },
                    "open_time": { "$type": "date" }, "request_time": { "$type": "date" }, "active": true,
                    "ttl": mongodb::bson::Bson::Null, "expire_time": { "$gte": bson_time(now) },
                    "version": { "$gte": 1_i64 },
                };
                let update = doc! {
                    "$inc": { "version": 1_i64 },
                    "$set": {
                        "data": json_to_bson(&json!({"cart": [1, 2, 3], "n": i})), "request_time": bson_time(now),
                        "expire_time": bson_time(now + chrono::Duration::hours(1)),
                    },
                };
                c.find_one_and_update(filter, update)
                    .return_document(ReturnDocument::After)
                    .max_time(max_time)
                    .await
                    .map(drop)
            }
        }
    };
    // `RATE_GET` / `RATE_STORE` (ops/s): also run each at the rate the service reached, as
    // `benches/mongo_http.sh` passes them.
    // `FLOOR_OPS=get` or `store` runs only that one (for counting instructions per operation).
    let rate = |var: &str| std::env::var(var).ok().and_then(|s| s.parse::<f64>().ok()).filter(|r| *r > 0.0);
    let ops = std::env::var("FLOOR_OPS").unwrap_or_else(|_| "get,store".into());
    if ops.split(',').any(|o| o == "get") {
        floor("find_one by _id", tasks, budget, None, find(raw.clone())).await?;
        if let Some(r) = rate("RATE_GET") {
            floor("find_one by _id", tasks, budget, Some(r), find(raw.clone())).await?;
        }
    }
    if ops.split(',').any(|o| o == "store") {
        floor("find_one_and_update", tasks, budget, None, update(raw.clone())).await?;
        if let Some(r) = rate("RATE_STORE") {
            floor("find_one_and_update", tasks, budget, Some(r), update(raw.clone())).await?;
        }
    }
    floor_coll.drop().await?;
    // Stop the driver's background tasks before the runtime goes away.
    client.shutdown().await;
    Ok(())
}
