//! The MongoDB server's own single-client operation rate, as the baseline for the HTTP benchmark
//! (`benches/mongo_http.sh`): one sequential client of the official driver runs, for
//! `BENCH_SECONDS` (default 5) each, the operations the sessions backend issues — `insert_one`,
//! `find_one` by `_id`, and the conditional `find_one_and_update` with `$set` + `$inc` — on
//! session-shaped documents in a fresh collection (dropped afterwards), and prints ops/s and
//! latency percentiles. Needs `MONGODB_URI` (`benches/mongo_http.sh` provides it). Run with
//! `cargo bench --bench mongo_ops`; under `cargo test` it does nothing.

use anyhow::Context;
use mongodb::bson::{doc, DateTime as BsonDateTime, Document};
use mongodb::options::ReturnDocument;
use mongodb::{Client, Collection};
use std::future::Future;
use std::time::{Duration, Instant};

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
    // Stop the driver's background tasks before the runtime goes away.
    client.shutdown().await;
    Ok(())
}
