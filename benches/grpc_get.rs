//! `get_session_by_id` over `sessions_v1.proto` next to commandable HTTP (and commandable gRPC):
//! server CPU per request, throughput and latency.
//!
//! Starts the release binary (`service-sessions`) with a config of the memory store, commandable
//! HTTP and both gRPC services, opens one session, and then drives `get_session_by_id` for it
//! with a Rust load client: `BENCH_CONNECTIONS` (default 50) callers, each sending its next
//! request when the previous one is answered, for `BENCH_SECONDS` (default 5) per scenario. Over
//! HTTP/1 each caller has its own keep-alive connection (HTTP/1 cannot multiplex); over gRPC the
//! callers share `BENCH_GRPC_CONNECTIONS` HTTP/2 connections (default 10, so 5 streams each: a
//! gRPC client multiplexes — the Node SDK sends every call of a client over one connection;
//! `BENCH_GRPC_CONNECTIONS=50` gives every caller its own connection, like HTTP). Either way 50
//! requests are in flight with the same payload.
//!
//! Scenarios: `gRPC sessions_v1.proto` from a client on h2 that sends each request in one write
//! (as grpc-js does), `commandable HTTP`, `gRPC sessions_v1 (tonic)` from tonic's generated
//! client (which writes a request's HEADERS and DATA separately) and `commandable gRPC`. They
//! are interleaved for `BENCH_ROUNDS` (default 3) rounds and each figure is the median over the
//! rounds. Server CPU is the service process's user + system time (`/proc/<pid>/stat`) over the
//! measured interval divided by the requests served. The load client runs on the same machine
//! and takes CPU from the service.
//!
//! Run with `cargo bench --bench grpc_get` (`BENCH_ONLY=grpc|http|grpc-tonic|commandable-grpc`
//! runs one scenario); under `cargo test` it does nothing.

use anyhow::{bail, Context};
use service_sessions::protos::sessions_v1::sessions_client::SessionsClient;
use service_sessions::protos::sessions_v1::{SessionIdRequest, SessionObjectReply};
use service_sessions::toolkit::grpc::commandable_proto::commandable_client::CommandableClient;
use service_sessions::toolkit::grpc::commandable_proto::InvokeRequest;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// User + system CPU of a process, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("bad /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / TICKS_PER_SECOND)
}

struct Service {
    child: Child,
    http: u16,
    grpc: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start() -> anyhow::Result<Service> {
    let (http, grpc) = (free_port()?, free_port()?);
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            r#"
- descriptor: "pip-services:logger:console:default:1.0"
  level: warn
- descriptor: "service-sessions:persistence:memory:default:1.0"
- descriptor: "service-sessions:controller:default:default:1.0"
- descriptor: "pip-services:endpoint:http:default:1.0"
  connection: {{ protocol: http, host: 127.0.0.1, port: {http} }}
- descriptor: "service-sessions:service:commandable-http:default:1.0"
- descriptor: "pip-services:heartbeat-service:http:default:1.0"
- descriptor: "pip-services:endpoint:grpc:default:1.0"
  connection: {{ protocol: http, host: 127.0.0.1, port: {grpc} }}
- descriptor: "service-sessions:service:grpc:default:1.0"
- descriptor: "service-sessions:service:commandable-grpc:default:1.0"
"#
        ),
    )?;
    let child = Command::new(env!("CARGO_BIN_EXE_service-sessions"))
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the service")?;
    let service = Service { child, http, grpc, _dir: dir };
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", grpc)).await.is_err()
        || tokio::net::TcpStream::connect(("127.0.0.1", http)).await.is_err()
    {
        if started.elapsed() > Duration::from_secs(20) {
            bail!("the service did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(service)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    /// `sessions_v1.proto` from a client that sends each request in one write (see [`h2_connection`]).
    SessionsV1,
    /// `sessions_v1.proto` from tonic's generated client.
    SessionsV1Tonic,
    CommandableHttp,
    CommandableGrpc,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Self::SessionsV1 => "gRPC sessions_v1.proto",
            Self::SessionsV1Tonic => "gRPC sessions_v1 (tonic)",
            Self::CommandableHttp => "commandable HTTP",
            Self::CommandableGrpc => "commandable gRPC",
        }
    }
}

/// The load shape: `callers` requests in flight (each sends its next when the previous one is
/// answered); over HTTP each caller has its own keep-alive connection, over gRPC they share
/// `grpc_connections` HTTP/2 connections.
#[derive(Clone, Copy)]
struct Load {
    callers: u64,
    grpc_connections: u64,
}

struct Figures {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us: f64,
}

/// `callers` callers of `get_session_by_id` on one HTTP/2 connection, with the connection driven
/// by h2 in the callers' own task. Each request then leaves in one write (HEADERS, then DATA with
/// END_STREAM), as the Node SDK's grpc-js client sends it; tonic's client writes the HEADERS and
/// the DATA frames from separate tasks, so each request costs the server a second TCP segment and
/// a pure ACK. The reply is checked as tonic's client would: HTTP 200, `grpc-status` 0, a
/// `SessionObjectReply` with a session.
async fn h2_connection(
    grpc_port: u16,
    callers: u64,
    id: String,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
) -> anyhow::Result<Vec<Duration>> {
    use prost::Message;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", grpc_port)).await?;
    tcp.set_nodelay(true)?;
    let (client, conn) = h2::client::handshake(tcp).await?;
    let message = SessionIdRequest { correlation_id: String::new(), session_id: id }.encode_to_vec();
    let mut frame = bytes::BytesMut::with_capacity(5 + message.len());
    frame.extend_from_slice(&[0]);
    frame.extend_from_slice(&u32::try_from(message.len())?.to_be_bytes());
    frame.extend_from_slice(&message);
    let frame = frame.freeze();
    let uri = format!("http://127.0.0.1:{grpc_port}/sessions_v1.Sessions/get_session_by_id");
    let all = futures::future::try_join_all(
        (0..callers).map(|_| h2_caller(client.clone(), &uri, frame.clone(), stop.clone(), served.clone())),
    );
    tokio::pin!(conn);
    tokio::select! {
        latencies = all => Ok(latencies?.into_iter().flatten().collect()),
        ended = &mut conn => bail!("the gRPC connection ended: {ended:?}"),
    }
}

async fn h2_caller(
    client: h2::client::SendRequest<bytes::Bytes>,
    uri: &str,
    frame: bytes::Bytes,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
) -> anyhow::Result<Vec<Duration>> {
    use prost::Message;
    let mut client = client;
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut reply = bytes::BytesMut::new();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let request = http::Request::builder()
            .method("POST")
            .uri(uri)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())?;
        client = client.ready().await?;
        let (response, mut body) = client.send_request(request, false)?;
        body.send_data(frame.clone(), true)?;
        let response = response.await?;
        if response.status() != 200 {
            bail!("HTTP {}", response.status());
        }
        let mut body = response.into_body();
        reply.clear();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            body.flow_control().release_capacity(chunk.len())?;
            reply.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await?;
        let status = trailers.as_ref().and_then(|t| t.get("grpc-status")).and_then(|v| v.to_str().ok());
        if status != Some("0") {
            bail!("grpc-status {status:?}");
        }
        let r = SessionObjectReply::decode(reply.get(5..).unwrap_or_default())?;
        if r.session.is_none() {
            bail!("no session");
        }
        latencies.push(t.elapsed());
        served.fetch_add(1, Ordering::Relaxed);
    }
    Ok(latencies)
}

/// One caller's loop over tonic's clients or HTTP: requests until `stop`, returning the latencies.
async fn run_connection(
    scenario: Scenario,
    http_port: u16,
    channel: Option<Channel>,
    id: String,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(1 << 16);
    if scenario == Scenario::CommandableHttp {
        let client = reqwest::Client::builder().pool_max_idle_per_host(1).tcp_nodelay(true).build()?;
        let url = format!("http://127.0.0.1:{http_port}/v1/sessions/get_session_by_id");
        let body = bytes::Bytes::from(serde_json::json!({"session_id": id}).to_string());
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let r = client.post(&url).header("content-type", "application/json").body(body.clone()).send().await?;
            if r.status() != 200 {
                bail!("HTTP {}", r.status());
            }
            let _ = r.bytes().await?;
            latencies.push(t.elapsed());
            served.fetch_add(1, Ordering::Relaxed);
        }
        return Ok(latencies);
    }
    let channel = channel.context("no gRPC channel")?;
    let mut typed = SessionsClient::new(channel.clone());
    let mut commandable = CommandableClient::new(channel);
    let args = serde_json::json!({"session_id": id}).to_string();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        if scenario == Scenario::SessionsV1Tonic {
            let r = typed
                .get_session_by_id(SessionIdRequest { correlation_id: String::new(), session_id: id.clone() })
                .await?;
            if r.get_ref().session.is_none() {
                bail!("no session");
            }
        } else {
            let r = commandable
                .invoke(InvokeRequest {
                    method: "v1/sessions.get_session_by_id".into(),
                    correlation_id: String::new(),
                    args_empty: false,
                    args_json: args.clone(),
                })
                .await?;
            if r.get_ref().result_empty {
                bail!("no session");
            }
        }
        latencies.push(t.elapsed());
        served.fetch_add(1, Ordering::Relaxed);
    }
    Ok(latencies)
}

async fn measure(scenario: Scenario, service: &Service, id: &str, load: Load, seconds: u64) -> anyhow::Result<Figures> {
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    // gRPC: `grpc_connections` HTTP/2 connections, the callers spread over them round-robin.
    let mut channels = Vec::new();
    if matches!(scenario, Scenario::SessionsV1Tonic | Scenario::CommandableGrpc) {
        for _ in 0..load.grpc_connections.max(1) {
            channels.push(Channel::from_shared(format!("http://127.0.0.1:{}", service.grpc))?.connect().await?);
        }
    }
    let mut tasks = Vec::new();
    if scenario == Scenario::SessionsV1 {
        let connections = load.grpc_connections.clamp(1, load.callers.max(1));
        for c in 0..connections {
            let callers = load.callers / connections + u64::from(c < load.callers % connections);
            tasks.push(tokio::spawn(h2_connection(
                service.grpc,
                callers,
                id.to_string(),
                stop.clone(),
                served.clone(),
            )));
        }
    }
    let callers = if scenario == Scenario::SessionsV1 { 0 } else { load.callers };
    for i in 0..callers {
        let channel = usize::try_from(i).ok().and_then(|i| channels.get(i % channels.len().max(1))).cloned();
        tasks.push(tokio::spawn(run_connection(
            scenario,
            service.http,
            channel,
            id.to_string(),
            stop.clone(),
            served.clone(),
        )));
    }
    // Let every connection open and warm up before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = service.child.id();
    let cpu_before = cpu_seconds(pid)?;
    let served_before = served.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = cpu_seconds(pid)? - cpu_before;
    let in_window = served.load(Ordering::Relaxed).saturating_sub(served_before) as f64;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        let idx = ((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        latencies.get(idx).copied().unwrap_or_default().as_secs_f64() * 1000.0
    };
    Ok(Figures { rate: in_window / elapsed, p50_ms: pct(0.5), p99_ms: pct(0.99), cpu_us: cpu * 1e6 / in_window })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let seconds = env_u64("BENCH_SECONDS", 5);
    let rounds = env_u64("BENCH_ROUNDS", 3);
    let connections = env_u64("BENCH_CONNECTIONS", 50);
    let load = Load { callers: connections, grpc_connections: env_u64("BENCH_GRPC_CONNECTIONS", 10) };
    let service = start().await?;
    let opened: serde_json::Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/sessions/open_session", service.http))
        .json(&serde_json::json!({"user_id": "bench", "user": {"name": "Bench"}, "data": {"cart": [1, 2, 3]}}))
        .send()
        .await?
        .json()
        .await?;
    let id = opened["id"].as_str().context("no session id")?.to_string();
    println!(
        "get_session_by_id, {connections} callers (HTTP: {connections} connections, gRPC: {} HTTP/2 connections), {seconds} s per scenario, {rounds} interleaved rounds (medians):",
        load.grpc_connections
    );
    // `BENCH_ONLY=grpc|http|grpc-tonic|commandable-grpc` runs one scenario (for profiling).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let scenarios: Vec<Scenario> =
        [Scenario::SessionsV1, Scenario::CommandableHttp, Scenario::SessionsV1Tonic, Scenario::CommandableGrpc]
            .into_iter()
            .filter(|s| match only.as_str() {
                "grpc" => *s == Scenario::SessionsV1,
                "grpc-tonic" => *s == Scenario::SessionsV1Tonic,
                "http" => *s == Scenario::CommandableHttp,
                "commandable-grpc" => *s == Scenario::CommandableGrpc,
                _ => true,
            })
            .collect();
    let mut results: Vec<Vec<Figures>> = scenarios.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, s) in scenarios.iter().enumerate() {
            let f = measure(*s, &service, &id, load, seconds).await?;
            println!(
                "  round {}: {:<24} {:>8.0} req/s  p50 {:>5.2} ms  p99 {:>5.2} ms  server CPU {:>5.1} µs/request",
                round + 1,
                s.label(),
                f.rate,
                f.p50_ms,
                f.p99_ms,
                f.cpu_us
            );
            if let Some(r) = results.get_mut(i) {
                r.push(f);
            }
        }
    }
    println!("| scenario | req/s | p50 | p99 | server CPU per request |");
    println!("|---|---:|---:|---:|---:|");
    for (s, r) in scenarios.iter().zip(&results) {
        println!(
            "| {} | {:.0} | {:.2} ms | {:.2} ms | {:.1} µs |",
            s.label(),
            median(r.iter().map(|f| f.rate).collect()),
            median(r.iter().map(|f| f.p50_ms).collect()),
            median(r.iter().map(|f| f.p99_ms).collect()),
            median(r.iter().map(|f| f.cpu_us).collect()),
        );
    }
    Ok(())
}
