//! The Redis backend (`service-sessions:persistence:redis:*:1.0`), on the `redis` crate (tokio,
//! Redis Cluster, rustls): standalone Redis or a Redis Cluster shared by any number of service
//! instances.
//!
//! **Key layout.** Every key starts with `options.key_prefix` (default `sessions`); nothing else
//! in the database is read, listed or written (no `KEYS`, no `SCAN` on any call path; `clear`
//! walks its own indexes). Sessions live in `options.buckets` buckets (default 1 on one server,
//! 16 on a cluster); a user's sessions all live in the bucket `crc32(user_id) % buckets`, and the
//! keys of bucket `n` share the hash tag `{n}`, so they sit in one hash slot:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>:{n}:s:<id>` | hash | the session ([`codec::FIELDS`]: times in ms, `user`/`data` as JSON text) |
//! | `<prefix>:{n}:all` | zset | every session, score `-request_time` (so ascending = list order: time descending, then id) |
//! | `<prefix>:{n}:open`, `:closed` | zset | open / closed sessions, same score |
//! | `<prefix>:{n}:u:<user_id>` | zset | the user's sessions, same score |
//! | `<prefix>:{n}:exp` | zset | open sessions with an `expire_time`, score `expire_time` (the sweep) |
//! | `<prefix>:{n}:noexp` | zset | open sessions without one, score `request_time` (the idle cutoff) |
//! | `<prefix>:{n}:purge` | zset | closed sessions, score `close_time` (the purge, oldest first) |
//! | `<prefix>:{n}:drop` | zset | every session with a `PEXPIREAT`, score that time |
//! | `<prefix>:{n}:owner` | hash | id → user_id (to unindex a session Redis dropped) |
//! | `<prefix>:id:{<id>}` | string | the session's bucket (only with more than one bucket) |
//! | `<prefix>:lease:{<name>}` | string | the owner of a lease of background work (the sweep), with `PX` = its deadline |
//!
//! **Atomicity.** Every write is one Lua script ([`scripts`]) on one bucket, so on one slot:
//! the record and all its index entries change together. `update` and `delete_if` read the
//! record, decide with [`WriteCondition::holds`] and compute the new `expire_time` with
//! [`SessionChange::apply`] (it depends only on `open_time`, `ttl`, `active` and `now`), then
//! the script re-checks the condition on the record as it is, applies the change (`HINCRBY
//! version`) and reindexes — so concurrent writers never retry against each other; only when the
//! record changed between read and write in a way that matters (closed, its liveness branch,
//! the expected version) is the step tried again, a bounded number of times. `create_limited`
//! reads the user's open sessions, picks the victims with [`limit_victims`] (the rule every
//! backend shares), and commits with a script that first checks that the user's open sessions
//! are still exactly those at those versions (else the step is retried until the call deadline):
//! an optimistic transaction on the user's slot. `rotate_id` moves the record (same bucket: same
//! user) guarded by the version it read. Sweep, `close_user_sessions` and purge close or delete
//! inside one script per bucket (the sweep and purge in batches).
//!
//! **Expiry the Redis way.** Each session key carries `PEXPIREAT`: `expire_time +
//! options.expire_grace` while open (default grace 7 days: an expired session still reads as
//! closed, and the sweep can close it, until then; `expire_grace: 0` drops it exactly at
//! `expire_time`), `close_time + options.retention` once closed (default 7 days; 0 = no native
//! expiry for closed sessions, the purge deletes them). Reads still apply the contract's
//! read-time expiry through the controller. Index entries of sessions Redis dropped are removed
//! by the next sweep, list or scan in that bucket (the `drop` index says which are due), so
//! lists and totals never show them.
//!
//! **Lists** (`get_sessions`): an `id` filter reads that record; a `user_id` filter reads the
//! user's index within the time window (its sessions are few) and filters `active` there; an
//! `active` filter pages the `open` or `closed` index and the rest the `all` index, by score
//! range (`from_time` inclusive, `to_time` exclusive) with `LIMIT`, `total` by `ZCOUNT`. With
//! more than one bucket the listings that are not per user are a **scatter-gather**: every
//! bucket returns its first `skip + take` items (in parallel, each on its own master), the
//! service merges them (a k-way merge, at most `buckets × (skip + take)` items, and `skip +
//! take` is capped by `options.max_scatter_window`, default 10 000) and sums the totals.
//!
//! **Availability.** `open` does not wait for the server; each call is bounded by
//! `options.connect_timeout + options.socket_timeout` (defaults 2 s + 5 s); an unreachable server
//! (refused, reset, timed out, cluster down or failing over) is `NoResponse` /
//! `STORE_UNAVAILABLE` (HTTP 503), and the client reconnects by itself. Readiness
//! ([`Component::health`]) is a `PING` answered within the connect timeout. With
//! `options.wait_replicas: n` every write is followed by `WAIT n options.wait_timeout` on the
//! session's master, and a write fewer replicas confirmed in time is answered 503
//! `STORE_NOT_REPLICATED` (it is applied on the master, but not acknowledged as done); see the
//! README for what that guarantees.
//!
//! **Bad data.** A record that is not a readable session (a key of the wrong type, a missing or
//! malformed field) is logged with its id hashed, counted in `store_bad_documents_total`, left out
//! of lists and scans, and answered 500 `SESSION_UNREADABLE` by a call on that very id — which
//! never rewrites it. **Secrets** (the URI's userinfo, the password) stay out of `Debug`, logs
//! and errors.

pub mod codec;
mod scripts;

use super::{
    bad_records_counter, limit_victims, redact, session_exists, session_limit, uri_userinfo, DecodeError,
    SessionChange, SessionLimit, SessionUpdate, SessionsPersistence, UpdateOutcome, WriteCondition,
    DEFAULT_MAX_PAGE_SIZE,
};
use crate::data::version1::errors::SESSION_EXISTS;
use crate::data::version1::{SessionV1, SessionsFilter};
use crate::toolkit::component::{Component, ComponentHealth, OwnedTask};
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::log::redact_id;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use codec::{decode, int, ms, record_args, text};
use parking_lot::Mutex;
use prometheus::IntCounter;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, IntoConnectionInfo, RedisError, RedisFuture, ScriptInvocation, ServerErrorKind, Value};
use scripts::Scripts;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// Default `options.connect_timeout` in milliseconds.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Default `options.socket_timeout` in milliseconds.
pub const DEFAULT_SOCKET_TIMEOUT_MS: u64 = 5_000;
/// Default `options.key_prefix`.
pub const DEFAULT_KEY_PREFIX: &str = "sessions";
/// Default `options.retention` and `options.expire_grace` in milliseconds (7 days).
pub const DEFAULT_RETENTION_MS: u64 = 7 * 86_400_000;
/// Default `options.buckets` on a cluster.
pub const DEFAULT_CLUSTER_BUCKETS: u32 = 16;
/// Default `options.max_scatter_window`.
pub const DEFAULT_MAX_SCATTER_WINDOW: u64 = 10_000;

/// How often a write is tried again when the record changed between its read and its script.
const WRITE_ATTEMPTS: usize = 5;
/// Most sessions one sweep script closes.
const SWEEP_BATCH: u64 = 1000;

/// The config entry as written.
#[derive(Default, Deserialize)]
#[serde(default)]
struct RedisSettings {
    connection: ConnectionSettings,
    credential: CredentialSettings,
    options: RedisOptions,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ConnectionSettings {
    uri: Option<String>,
    /// A YAML list of `host:port` (or URLs), or one comma-separated string.
    nodes: Option<serde_json::Value>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct CredentialSettings {
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(default)]
struct RedisOptions {
    cluster: bool,
    key_prefix: String,
    connect_timeout: u64,
    socket_timeout: u64,
    max_page_size: u64,
    retention: u64,
    expire_grace: u64,
    buckets: Option<u32>,
    max_scatter_window: u64,
    wait_replicas: u32,
    wait_timeout: u64,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            cluster: false,
            key_prefix: DEFAULT_KEY_PREFIX.to_string(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT_MS,
            socket_timeout: DEFAULT_SOCKET_TIMEOUT_MS,
            max_page_size: DEFAULT_MAX_PAGE_SIZE,
            retention: DEFAULT_RETENTION_MS,
            expire_grace: DEFAULT_RETENTION_MS,
            buckets: None,
            max_scatter_window: DEFAULT_MAX_SCATTER_WINDOW,
            wait_replicas: 0,
            wait_timeout: 1_000,
        }
    }
}

/// Validated settings. Holds secrets: no `Debug`.
struct Settings {
    /// Connection URLs: one server, or the cluster's seed nodes.
    urls: Vec<String>,
    cluster: bool,
    username: Option<String>,
    password: Option<String>,
    prefix: String,
    buckets: u32,
    connect_timeout: Duration,
    call_timeout: Duration,
    max_page_size: u64,
    retention: Option<i64>,
    expire_grace: i64,
    max_scatter_window: u64,
    wait_replicas: u32,
    wait_timeout: u64,
    /// `host:port,…/prefix` for logs and health (no credentials).
    target: String,
    /// Text that must never appear in a message.
    secrets: Vec<String>,
}

impl Settings {
    fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let s: RedisSettings = config.section()?;
        let o = &s.options;
        let mut problems = Vec::new();
        if o.connect_timeout == 0 {
            problems.push("options.connect_timeout must be positive".to_string());
        }
        if o.max_page_size == 0 {
            problems.push("options.max_page_size must be positive".to_string());
        }
        if o.key_prefix.is_empty() || o.key_prefix.contains(['{', '}']) {
            problems.push("options.key_prefix must be non-empty text without braces".to_string());
        }
        let buckets = o.buckets.unwrap_or(if o.cluster { DEFAULT_CLUSTER_BUCKETS } else { 1 });
        if buckets == 0 || buckets > 16_384 {
            problems.push("options.buckets must be between 1 and 16384".to_string());
        }
        let mut secrets = Vec::new();
        if let Some(p) = s.credential.password.as_ref().filter(|p| !p.is_empty()) {
            secrets.push(p.clone());
        }
        let nodes: Vec<String> = match &s.connection.nodes {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| match v {
                    serde_json::Value::String(s) => Some(s.trim().to_string()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                })
                .filter(|s| !s.is_empty())
                .collect(),
            Some(serde_json::Value::String(list)) => {
                list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
            }
            _ => Vec::new(),
        };
        let uri = s.connection.uri.clone().filter(|u| !u.is_empty());
        // A cluster's seeds are the nodes (`host:port`, or URLs for `rediss://` and userinfo);
        // without nodes, the URI is the one seed.
        let urls: Vec<String> = if o.cluster && !nodes.is_empty() {
            nodes.iter().map(|n| if n.contains("://") { n.clone() } else { format!("redis://{n}") }).collect()
        } else {
            vec![uri.unwrap_or_else(|| "redis://127.0.0.1:6379".to_string())]
        };
        for url in &urls {
            if let Some(userinfo) = uri_userinfo(url) {
                secrets.push(userinfo.to_string());
            }
        }
        let mut hosts = Vec::new();
        for url in &urls {
            match url.as_str().into_connection_info() {
                Ok(info) => hosts.push(addr_text(info.addr())),
                Err(e) => {
                    problems.push(format!("connection is not a valid Redis URL: {}", redact(&e.to_string(), &secrets)))
                }
            }
        }
        if !problems.is_empty() {
            let e = ApplicationError::config(
                "BAD_CONFIG",
                format!("Component #{} ({}): {}", config.index + 1, config.descriptor, problems.join("; ")),
            )
            .with_details("descriptor", config.descriptor.to_string())
            .with_details("errors", problems);
            return Err(e);
        }
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Ok(Self {
            target: format!("{}/{}", hosts.join(","), o.key_prefix),
            urls,
            cluster: o.cluster,
            username: s.credential.username.filter(|u| !u.is_empty()),
            password: s.credential.password.filter(|p| !p.is_empty()),
            prefix: o.key_prefix.clone(),
            buckets,
            connect_timeout: Duration::from_millis(o.connect_timeout),
            call_timeout: Duration::from_millis(o.connect_timeout.saturating_add(o.socket_timeout)),
            max_page_size: o.max_page_size,
            retention: (o.retention > 0).then(|| clamp(o.retention)),
            expire_grace: clamp(o.expire_grace),
            max_scatter_window: o.max_scatter_window.max(1),
            wait_replicas: o.wait_replicas,
            wait_timeout: o.wait_timeout,
            secrets,
        })
    }

    /// The key base of bucket `n`: `<prefix>:{n}`.
    fn base(&self, n: u32) -> String {
        format!("{}:{{{n}}}", self.prefix)
    }

    /// The bucket of a user's sessions.
    fn bucket_of(&self, user_id: &str) -> u32 {
        if self.buckets <= 1 {
            0
        } else {
            crc32fast::hash(user_id.as_bytes()) % self.buckets
        }
    }

    /// The id → bucket pointer key (used only with more than one bucket).
    fn pointer(&self, id: &str) -> String {
        format!("{}:id:{{{id}}}", self.prefix)
    }

    /// The `PEXPIREAT` of a session in this state (`None` = no native expiry).
    fn drop_time(&self, s: &SessionV1) -> Option<i64> {
        if s.active {
            s.expire_time.map(|t| ms(t).saturating_add(self.expire_grace))
        } else {
            let closed = s.close_time.unwrap_or(s.request_time);
            self.retention.map(|r| ms(closed).saturating_add(r))
        }
    }

    /// The `PEXPIREAT` of a session closed at `now`.
    fn close_drop(&self, now: DateTime<Utc>) -> Option<i64> {
        self.retention.map(|r| ms(now).saturating_add(r))
    }
}

fn addr_text(addr: &redis::ConnectionAddr) -> String {
    match addr {
        redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        redis::ConnectionAddr::TcpTls { host, port, .. } => format!("tls:{host}:{port}"),
        redis::ConnectionAddr::Unix(path) => format!("unix:{}", path.display()),
        _ => "?".to_string(),
    }
}

/// `''` or the number.
fn opt_arg(v: Option<i64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_default()
}

/// The six condition arguments of the UPDATE / DELETE scripts ([`WriteCondition`] plus the
/// `active` flag and liveness branch of the record the decision was based on).
fn condition_args(c: &WriteCondition, read: &SessionV1) -> [String; 6] {
    [
        if c.require_active { "1" } else { "0" }.to_string(),
        opt_arg(c.alive_at.map(ms)),
        opt_arg(c.idle_cutoff.map(ms)),
        opt_arg(c.expected_version),
        if read.active { "1" } else { "0" }.to_string(),
        if read.expire_time.is_some() { "1" } else { "0" }.to_string(),
    ]
}

/// The score range of a time window on `request_time` (scores are `-request_time`): `from`
/// inclusive, `to` exclusive.
fn score_range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> (String, String) {
    let min = to.map_or_else(|| "-inf".to_string(), |t| format!("({}", -ms(t)));
    let max = from.map_or_else(|| "+inf".to_string(), |t| (-ms(t)).to_string());
    (min, max)
}

/// A connection: one server (reconnecting by itself) or a cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// `store_bad_documents_total{backend="redis"}`.
fn bad_records() -> Option<&'static IntCounter> {
    static C: LazyLock<Option<IntCounter>> = LazyLock::new(|| bad_records_counter("redis"));
    C.as_ref()
}

/// The state shared by the component and its connector task.
struct Shared {
    settings: Settings,
    scripts: Scripts,
    conn: OnceCell<Conn>,
    /// The server answered the connector at least once.
    prepared: AtomicBool,
    /// The latest connection problem, for `health` (redacted).
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn unavailable(&self, message: impl Into<String>) -> ApplicationError {
        ApplicationError::no_response("STORE_UNAVAILABLE", "The sessions store is not reachable")
            .with_cause(redact(&message.into(), &self.settings.secrets))
    }

    /// Unreachable / failing over → `NoResponse` (503); refused credentials → misconfiguration;
    /// the rest → internal (server text is not quoted: it can hold values).
    fn map_error(&self, e: &RedisError, op: &str) -> ApplicationError {
        use redis::ErrorKind as K;
        let kind = e.kind();
        let unreachable = e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.is_cluster_error()
            || matches!(
                kind,
                K::ClusterConnectionNotFound
                    | K::Server(
                        ServerErrorKind::BusyLoading
                            | ServerErrorKind::MasterDown
                            | ServerErrorKind::ReadOnly
                            | ServerErrorKind::TryAgain
                            | ServerErrorKind::ClusterDown
                    )
            );
        if unreachable {
            return self.unavailable(format!("{op}: {e}"));
        }
        match kind {
            K::AuthenticationFailed | K::Server(ServerErrorKind::NoPerm) => {
                ApplicationError::config("STORE_AUTH_FAILED", "The sessions store refused the credentials")
                    .with_cause(redact(&format!("{op}: {kind:?}"), &self.settings.secrets))
            }
            _ => ApplicationError::internal("STORE_FAILED", "The sessions store failed")
                .with_cause(format!("{op}: {kind:?} {}", e.code().unwrap_or(""))),
        }
    }

    async fn connect(&self) -> Result<Conn, ApplicationError> {
        let s = &self.settings;
        let mut infos = Vec::new();
        for url in &s.urls {
            let info = url.as_str().into_connection_info().map_err(|e| self.map_error(&e, "parse connection"))?;
            let mut redis_info = info.redis_settings().clone();
            if redis_info.username().is_none() {
                if let Some(u) = &s.username {
                    redis_info = redis_info.set_username(u);
                }
            }
            if redis_info.password().is_none() {
                if let Some(p) = &s.password {
                    redis_info = redis_info.set_password(p);
                }
            }
            infos.push(info.set_redis_settings(redis_info));
        }
        if s.cluster {
            let client = redis::cluster::ClusterClientBuilder::new(infos)
                .connection_timeout(s.connect_timeout)
                .response_timeout(s.call_timeout)
                .build()
                .map_err(|e| self.map_error(&e, "create cluster client"))?;
            match tokio::time::timeout(s.call_timeout, client.get_async_connection()).await {
                Ok(Ok(c)) => Ok(Conn::Cluster(c)),
                Ok(Err(e)) => Err(self.map_error(&e, "connect to the cluster")),
                Err(_) => Err(self.unavailable("connect to the cluster: no answer in time")),
            }
        } else {
            let info = infos.into_iter().next().ok_or_else(|| self.unavailable("no server configured"))?;
            let client = redis::Client::open(info).map_err(|e| self.map_error(&e, "create client"))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(s.connect_timeout))
                .set_response_timeout(Some(s.call_timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            let manager =
                ConnectionManager::new_lazy_with_config(client, config).map_err(|e| self.map_error(&e, "connect"))?;
            Ok(Conn::Single(manager))
        }
    }

    async fn conn(&self, cid: Option<&str>) -> Result<Conn, ApplicationError> {
        self.conn.get_or_try_init(|| self.connect()).await.cloned().map_err(|e| e.with_correlation_id(cid))
    }

    /// Runs one script on bucket `n` under the call deadline.
    async fn eval(
        &self,
        cid: Option<&str>,
        op: &str,
        n: u32,
        invocation: &mut ScriptInvocation<'_>,
    ) -> Result<Value, ApplicationError> {
        let mut conn = self.conn(cid).await?;
        invocation.key(self.settings.base(n));
        match tokio::time::timeout(self.settings.call_timeout, invocation.invoke_async::<Value>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.map_error(&e, op).with_correlation_id(cid)),
            Err(_) => Err(self.unavailable(format!("{op}: no answer in time")).with_correlation_id(cid)),
        }
    }

    /// Runs one plain command under the call deadline.
    async fn command(&self, cid: Option<&str>, op: &str, cmd: &Cmd) -> Result<Value, ApplicationError> {
        let mut conn = self.conn(cid).await?;
        match tokio::time::timeout(self.settings.call_timeout, cmd.query_async::<Value>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.map_error(&e, op).with_correlation_id(cid)),
            Err(_) => Err(self.unavailable(format!("{op}: no answer in time")).with_correlation_id(cid)),
        }
    }

    /// With `options.wait_replicas`, waits until that many replicas of bucket `n`'s master have
    /// the writes so far (`WAIT`); a shortfall is a 503 `STORE_NOT_REPLICATED`.
    async fn wait_replicas(&self, cid: Option<&str>, n: u32) -> Result<(), ApplicationError> {
        let s = &self.settings;
        if s.wait_replicas == 0 {
            return Ok(());
        }
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(s.wait_replicas).arg(s.wait_timeout);
        let mut conn = self.conn(cid).await?;
        let call = async {
            match &mut conn {
                Conn::Single(c) => cmd.query_async::<Value>(c).await,
                Conn::Cluster(c) => {
                    use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                    // The slot of the bucket's hash tag (Redis Cluster: CRC16/XMODEM mod 16384).
                    let slot = crc16::State::<crc16::XMODEM>::calculate(n.to_string().as_bytes()) % 16_384;
                    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
                        slot,
                        SlotAddr::Master,
                    )));
                    c.route_command(cmd.clone(), route).await
                }
            }
        };
        match tokio::time::timeout(s.call_timeout, call).await {
            Ok(Ok(v)) => {
                let acked = int(&v).unwrap_or(0);
                if acked < i64::from(s.wait_replicas) {
                    // The write is applied on the master but may not survive its failover: the
                    // caller is not told "done" (it may retry with `version` and see).
                    tracing::warn!(store = %s.target, acked, wanted = s.wait_replicas,
                        "Fewer replicas than options.wait_replicas acknowledged a write in time.");
                    return Err(ApplicationError::no_response(
                        "STORE_NOT_REPLICATED",
                        "The write was applied but not confirmed by enough replicas",
                    )
                    .with_details("replicas", acked)
                    .with_correlation_id(cid));
                }
                Ok(())
            }
            Ok(Err(e)) => Err(self.map_error(&e, "WAIT").with_correlation_id(cid)),
            Err(_) => Err(self.unavailable("WAIT: no answer in time").with_correlation_id(cid)),
        }
    }

    /// Logs (id hashed) and counts a record that is not a session.
    fn bad_record(&self, id: Option<&str>, e: &DecodeError) {
        let id = id.map_or_else(|| "<none>".to_string(), redact_id);
        tracing::warn!(store = %self.settings.target, session = %id, field = e.field, reason = e.reason,
            "A stored record is not a readable session; it is left out of lists and left as it is.");
        if let Some(c) = bad_records() {
            c.inc();
        }
    }

    /// Decodes a record a call asked for by id: unreadable → that call's 500.
    fn decode_one(
        &self,
        cid: Option<&str>,
        id: &str,
        fields: &[Value],
        payload: bool,
    ) -> Result<SessionV1, ApplicationError> {
        decode(fields, payload).map_err(|e| {
            self.bad_record(Some(id), &e);
            e.to_error().with_correlation_id(cid)
        })
    }

    /// The 500 of a record under `id` that is not a hash (logged and counted).
    fn unreadable(&self, cid: Option<&str>, id: &str) -> ApplicationError {
        let e = DecodeError::new("record", "is not a hash");
        self.bad_record(Some(id), &e);
        e.to_error().with_correlation_id(cid)
    }

    /// Decodes the records of a list, leaving out (logged and counted) the unreadable ones.
    fn decode_all(&self, items: &[Value], payload: bool) -> Vec<SessionV1> {
        items
            .iter()
            .filter_map(|item| {
                let fields = as_array(item);
                match decode(fields, payload) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        self.bad_record(codec::record_id(fields).as_deref(), &e);
                        None
                    }
                }
            })
            .collect()
    }

    async fn ping(&self) -> Result<(), ApplicationError> {
        let mut conn = self.conn(None).await?;
        let ping = async {
            match &mut conn {
                Conn::Single(c) => redis::cmd("PING").query_async::<Value>(c).await,
                Conn::Cluster(c) => {
                    use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
                    let route = RoutingInfo::MultiNode((
                        MultipleNodeRoutingInfo::AllMasters,
                        Some(ResponsePolicy::AllSucceeded),
                    ));
                    c.route_command(redis::cmd("PING"), route).await
                }
            }
        };
        match tokio::time::timeout(self.settings.connect_timeout, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.map_error(&e, "PING")),
            Err(_) => Err(self.unavailable("PING: no answer in time")),
        }
    }

    /// The connector task: pings the store in the background until it answers.
    async fn run_connector(self: Arc<Self>, stop: CancellationToken) {
        let ready = super::connect_in_background(
            "Redis",
            &self.settings.target,
            stop,
            || self.ping(),
            |message| *self.last_error.lock() = Some(message),
        )
        .await;
        if ready {
            self.prepared.store(true, Ordering::Relaxed);
            *self.last_error.lock() = None;
        }
    }
}

/// The elements of an array reply (empty for anything else).
fn as_array(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

/// The Redis persistence component.
pub struct SessionsRedisPersistence {
    shared: Arc<Shared>,
    connector: OwnedTask,
}

impl std::fmt::Debug for SessionsRedisPersistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionsRedisPersistence").field("store", &self.shared.settings.target).finish_non_exhaustive()
    }
}

/// What an UPDATE / DELETE / ROTATE script answered.
enum Step {
    Done(Vec<Value>),
    NotFound,
    Changed,
    Unreadable,
    Taken,
}

fn step(v: Value) -> Step {
    let items = match v {
        Value::Array(items) => items,
        _ => return Step::Unreadable,
    };
    let record = |i: &[Value]| i.get(1).map(|r| as_array(r).to_vec()).unwrap_or_default();
    match items.first().and_then(int) {
        Some(1) => Step::Done(record(&items)),
        Some(0) => Step::NotFound,
        Some(2) => Step::Changed,
        Some(4) => Step::Taken,
        _ => Step::Unreadable,
    }
}

impl SessionsRedisPersistence {
    /// Builds the store from its entry: `connection.uri` (`redis://` / `rediss://`, default
    /// `redis://127.0.0.1:6379`), `connection.nodes` (with `options.cluster: true`: the seed
    /// nodes), `credential.username`/`password`, `options.key_prefix` (default `sessions`),
    /// `options.connect_timeout` (ms, default 2000), `options.socket_timeout` (ms, default 5000),
    /// `options.max_page_size` (default 100), `options.retention` and `options.expire_grace` (ms,
    /// default 7 days each), `options.buckets` (default 1, or 16 on a cluster),
    /// `options.max_scatter_window` (default 10 000), `options.wait_replicas` (default 0) and
    /// `options.wait_timeout` (ms, default 1000). Nothing connects until [`Component::open`].
    ///
    /// # Errors
    /// `BAD_CONFIG` listing every invalid setting.
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let settings = Settings::from_config(config)?;
        Ok(Self {
            shared: Arc::new(Shared {
                settings,
                scripts: Scripts::default(),
                conn: OnceCell::new(),
                prepared: AtomicBool::new(false),
                last_error: Mutex::new(None),
            }),
            connector: OwnedTask::new(),
        })
    }

    fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    fn multi(&self) -> bool {
        self.settings().buckets > 1
    }

    fn buckets(&self) -> std::ops::Range<u32> {
        0..self.settings().buckets
    }

    /// The bucket holding `id`: the only one, or the one its pointer names (`None`: no session).
    async fn locate(&self, cid: Option<&str>, id: &str) -> Result<Option<u32>, ApplicationError> {
        if !self.multi() {
            return Ok(Some(0));
        }
        let v = self.shared.command(cid, "GET", redis::cmd("GET").arg(self.settings().pointer(id))).await?;
        Ok(int(&v).and_then(|n| u32::try_from(n).ok()).filter(|n| *n < self.settings().buckets))
    }

    /// Deletes the pointers of sessions that are gone (best effort; stale pointers are harmless:
    /// a pointer only says where to look).
    async fn drop_pointers(&self, cid: Option<&str>, ids: &[String]) {
        if !self.multi() {
            return;
        }
        for id in ids {
            let _ = self.shared.command(cid, "DEL", redis::cmd("DEL").arg(self.settings().pointer(id))).await;
        }
    }

    /// Claims `id` for bucket `n` (with more than one bucket): `false` when a session has it.
    async fn claim(&self, cid: Option<&str>, id: &str, n: u32) -> Result<bool, ApplicationError> {
        if !self.multi() {
            return Ok(true);
        }
        let key = self.settings().pointer(id);
        let set = self.shared.command(cid, "SET", redis::cmd("SET").arg(&key).arg(n).arg("NX")).await?;
        if !matches!(set, Value::Nil) {
            return Ok(true);
        }
        // Taken, or stale (its session is gone): a stale pointer is taken over.
        if self.read(cid, id).await?.is_some() {
            return Ok(false);
        }
        self.shared.command(cid, "SET", redis::cmd("SET").arg(&key).arg(n)).await?;
        Ok(true)
    }

    /// The record under `id` as read (whole), or `None`; an unreadable record is a 500.
    async fn read(&self, cid: Option<&str>, id: &str) -> Result<Option<(u32, SessionV1)>, ApplicationError> {
        let Some(n) = self.locate(cid, id).await? else { return Ok(None) };
        let sh = &self.shared;
        let v = sh.eval(cid, "get", n, sh.scripts.get.arg(id).arg(14)).await?;
        match v {
            Value::Nil => Ok(None),
            Value::Array(fields) => {
                let s = sh.decode_one(cid, id, &fields, true)?;
                Ok(Some((n, s)))
            }
            _ => Err(sh.unreadable(cid, id)),
        }
    }

    /// Runs one `LIST` script on bucket `n`: the total (when asked) and the items.
    #[allow(clippy::too_many_arguments)]
    async fn list_bucket(
        &self,
        cid: Option<&str>,
        n: u32,
        mode: &str,
        user: &str,
        range: &(String, String),
        offset: u64,
        count: u64,
        want_total: bool,
        active: Option<bool>,
    ) -> Result<(Option<u64>, Vec<SessionV1>), ApplicationError> {
        let sh = &self.shared;
        let active = active.map_or("", |a| if a { "1" } else { "0" });
        let mut inv = sh.scripts.list.prepare_invoke();
        inv.arg(mode)
            .arg(user)
            .arg(&range.0)
            .arg(&range.1)
            .arg(offset)
            .arg(count)
            .arg(u8::from(want_total))
            .arg(active);
        let v = sh.eval(cid, "list", n, &mut inv).await?;
        let parts = as_array(&v);
        let total = parts.first().and_then(int).and_then(|t| u64::try_from(t).ok());
        let items = parts.get(1).map(|i| sh.decode_all(as_array(i), false)).unwrap_or_default();
        let gone: Vec<String> = parts.get(2).map(|g| as_array(g).iter().filter_map(text).collect()).unwrap_or_default();
        self.drop_pointers(cid, &gone).await;
        Ok((total, items))
    }

    /// Closes the sessions `victims` and stores `session`, unless the user's open sessions are no
    /// longer `snapshot`: `Ok(None)` asks for another try.
    async fn commit_limited(
        &self,
        cid: Option<&str>,
        n: u32,
        session: &SessionV1,
        snapshot: &[SessionV1],
        victims: &[String],
        now: DateTime<Utc>,
    ) -> Result<Option<bool>, ApplicationError> {
        let s = self.settings();
        let sh = &self.shared;
        let mut inv = sh.scripts.create_limited.prepare_invoke();
        inv.arg(&session.id).arg(opt_arg(s.drop_time(session)));
        for a in record_args(session) {
            inv.arg(a);
        }
        inv.arg(ms(now)).arg(opt_arg(s.close_drop(now))).arg(snapshot.len());
        for o in snapshot {
            inv.arg(&o.id).arg(o.version);
        }
        inv.arg(victims.len());
        for v in victims {
            inv.arg(v);
        }
        let v = sh.eval(cid, "create_limited", n, &mut inv).await?;
        Ok(match int(&v) {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        })
    }
}

#[async_trait]
impl Component for SessionsRedisPersistence {
    async fn open(&self, _cid: Option<&str>) -> Result<(), ApplicationError> {
        let shared = self.shared.clone();
        self.connector.start(|stop| shared.run_connector(stop));
        Ok(())
    }

    async fn close(&self, _cid: Option<&str>) -> Result<(), ApplicationError> {
        self.connector.stop().await;
        self.shared.prepared.store(false, Ordering::Relaxed);
        Ok(())
    }

    async fn health(&self) -> ComponentHealth {
        let s = &self.shared;
        if !s.prepared.load(Ordering::Relaxed) {
            let why = s.last_error.lock().clone().unwrap_or_else(|| "connecting".to_string());
            return ComponentHealth::not_ready(format!("Redis {}: {why}", s.settings.target));
        }
        match s.ping().await {
            Ok(()) => ComponentHealth::ready(),
            Err(e) => ComponentHealth::not_ready(format!("Redis {}: {}", s.settings.target, e.message)),
        }
    }
}

#[async_trait]
impl SessionsPersistence for SessionsRedisPersistence {
    async fn get_page_by_filter(
        &self,
        cid: Option<&str>,
        filter: &SessionsFilter,
        paging: &PagingParams,
    ) -> Result<DataPage<SessionV1>, ApplicationError> {
        let s = self.settings();
        let skip = paging.skip();
        let take = paging.take(s.max_page_size);
        if let Some(id) = &filter.id {
            let found = self.read(cid, id).await?.map(|(_, x)| x).filter(|x| {
                filter.user_id.as_ref().is_none_or(|u| *u == x.user_id)
                    && filter.active.is_none_or(|a| a == x.active)
                    && filter.from_time.is_none_or(|t| x.request_time >= t)
                    && filter.to_time.is_none_or(|t| x.request_time < t)
            });
            let total = paging.total.then_some(u64::from(found.is_some()));
            let data = found
                .into_iter()
                .skip(usize::try_from(skip).unwrap_or(usize::MAX))
                .take(1)
                .map(|x| x.without_payload());
            return Ok(DataPage { total, data: data.collect() });
        }
        let range = score_range(filter.from_time, filter.to_time);
        if let Some(user) = &filter.user_id {
            let n = s.bucket_of(user);
            let (total, data) =
                self.list_bucket(cid, n, "user", user, &range, skip, take, paging.total, filter.active).await?;
            return Ok(DataPage { total, data });
        }
        let mode = match filter.active {
            Some(true) => "open",
            Some(false) => "closed",
            None => "all",
        };
        if !self.multi() {
            let (total, data) = self.list_bucket(cid, 0, mode, "", &range, skip, take, paging.total, None).await?;
            return Ok(DataPage { total, data });
        }
        // Scatter-gather: each bucket's first skip + take, merged.
        let window = skip.saturating_add(take);
        if window > s.max_scatter_window {
            return Err(ApplicationError::bad_request(
                "PAGING_TOO_DEEP",
                "skip + take is beyond what a listing across the cluster serves",
            )
            .with_details("max_scatter_window", s.max_scatter_window)
            .with_correlation_id(cid));
        }
        let calls = self.buckets().map(|n| self.list_bucket(cid, n, mode, "", &range, 0, window, paging.total, None));
        let results = futures::future::try_join_all(calls).await?;
        let mut total = paging.total.then_some(0u64);
        let mut all = Vec::new();
        for (t, items) in results {
            if let (Some(sum), Some(t)) = (total.as_mut(), t) {
                *sum += t;
            }
            all.extend(items);
        }
        all.sort_by(|a, b| b.request_time.cmp(&a.request_time).then_with(|| a.id.cmp(&b.id)));
        let data = all
            .into_iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .take(usize::try_from(take).unwrap_or(usize::MAX))
            .collect();
        Ok(DataPage { total, data })
    }

    async fn get_one_by_id(&self, cid: Option<&str>, id: &str) -> Result<Option<SessionV1>, ApplicationError> {
        Ok(self.read(cid, id).await?.map(|(_, s)| s))
    }

    async fn create(&self, cid: Option<&str>, session: SessionV1) -> Result<SessionV1, ApplicationError> {
        let s = self.settings();
        let n = s.bucket_of(&session.user_id);
        if !self.claim(cid, &session.id, n).await? {
            return Err(session_exists(&session.id).with_correlation_id(cid));
        }
        let sh = &self.shared;
        let mut inv = sh.scripts.create.prepare_invoke();
        inv.arg(&session.id).arg(opt_arg(s.drop_time(&session)));
        for a in record_args(&session) {
            inv.arg(a);
        }
        let v = sh.eval(cid, "create", n, &mut inv).await?;
        if int(&v) != Some(1) {
            return Err(session_exists(&session.id).with_correlation_id(cid));
        }
        sh.wait_replicas(cid, n).await?;
        Ok(session)
    }

    async fn update(
        &self,
        cid: Option<&str>,
        id: &str,
        update: &SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError> {
        let sh = &self.shared;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some((n, current)) = self.read(cid, id).await? else { return Ok(UpdateOutcome::NotFound) };
            if !update.condition.holds(&current) || attempt > WRITE_ATTEMPTS {
                return Ok(UpdateOutcome::ConditionFailed(current));
            }
            let mut next = current.clone();
            update.change.apply(&mut next, update.now, &update.policy);
            let (kind, payload) = match &update.change {
                SessionChange::StoreData(v) => ("data", serde_json::to_vec(v).unwrap_or_default()),
                SessionChange::UpdateUser(v) => ("user", serde_json::to_vec(v).unwrap_or_default()),
                SessionChange::Touch => ("touch", Vec::new()),
                SessionChange::Close => ("close", Vec::new()),
            };
            let mut inv = sh.scripts.update.prepare_invoke();
            inv.arg(id)
                .arg(kind)
                .arg(payload)
                .arg(ms(update.now))
                .arg(opt_arg(next.expire_time.map(ms)))
                .arg(opt_arg(self.settings().drop_time(&next)));
            for a in condition_args(&update.condition, &current) {
                inv.arg(a);
            }
            match step(sh.eval(cid, "update", n, &mut inv).await?) {
                Step::Done(fields) => {
                    let s = sh.decode_one(cid, id, &fields, true)?;
                    sh.wait_replicas(cid, n).await?;
                    return Ok(UpdateOutcome::Updated(s));
                }
                Step::NotFound => return Ok(UpdateOutcome::NotFound),
                Step::Changed => {}
                Step::Unreadable | Step::Taken => return Err(sh.unreadable(cid, id)),
            }
        }
    }

    async fn close_expired(
        &self,
        cid: Option<&str>,
        idle_cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, ApplicationError> {
        let s = self.settings();
        let sh = &self.shared;
        let cutoff = if idle_cutoff == DateTime::<Utc>::MIN_UTC { String::new() } else { ms(idle_cutoff).to_string() };
        let sweep = |n: u32| {
            let cutoff = cutoff.clone();
            async move {
                let mut closed = 0u64;
                loop {
                    let mut inv = sh.scripts.sweep.prepare_invoke();
                    inv.arg(ms(now)).arg(&cutoff).arg(opt_arg(s.close_drop(now))).arg(SWEEP_BATCH);
                    let v = sh.eval(cid, "sweep", n, &mut inv).await?;
                    let parts = as_array(&v);
                    closed += parts.first().and_then(int).and_then(|c| u64::try_from(c).ok()).unwrap_or(0);
                    let gone: Vec<String> =
                        parts.get(2).map(|g| as_array(g).iter().filter_map(text).collect()).unwrap_or_default();
                    self.drop_pointers(cid, &gone).await;
                    if parts.get(1).and_then(int) != Some(1) {
                        break;
                    }
                }
                if closed > 0 {
                    sh.wait_replicas(cid, n).await?;
                }
                Ok::<u64, ApplicationError>(closed)
            }
        };
        let counts = futures::future::try_join_all(self.buckets().map(sweep)).await?;
        Ok(counts.into_iter().sum())
    }

    async fn delete_by_id(&self, cid: Option<&str>, id: &str) -> Result<Option<SessionV1>, ApplicationError> {
        Ok(match self.delete_if(cid, id, &WriteCondition::default()).await? {
            UpdateOutcome::Updated(s) => Some(s),
            UpdateOutcome::NotFound | UpdateOutcome::ConditionFailed(_) => None,
        })
    }

    async fn delete_if(
        &self,
        cid: Option<&str>,
        id: &str,
        condition: &WriteCondition,
    ) -> Result<UpdateOutcome, ApplicationError> {
        let sh = &self.shared;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some((n, current)) = self.read(cid, id).await? else { return Ok(UpdateOutcome::NotFound) };
            if !condition.holds(&current) || attempt > WRITE_ATTEMPTS {
                return Ok(UpdateOutcome::ConditionFailed(current));
            }
            let mut inv = sh.scripts.delete.prepare_invoke();
            inv.arg(id);
            for a in condition_args(condition, &current) {
                inv.arg(a);
            }
            match step(sh.eval(cid, "delete", n, &mut inv).await?) {
                Step::Done(fields) => {
                    self.drop_pointers(cid, &[id.to_string()]).await;
                    sh.wait_replicas(cid, n).await?;
                    return Ok(UpdateOutcome::Updated(sh.decode_one(cid, id, &fields, true)?));
                }
                Step::NotFound => return Ok(UpdateOutcome::NotFound),
                Step::Changed => {}
                Step::Unreadable | Step::Taken => return Err(sh.unreadable(cid, id)),
            }
        }
    }

    async fn create_limited(
        &self,
        cid: Option<&str>,
        session: SessionV1,
        limit: &SessionLimit,
    ) -> Result<SessionV1, ApplicationError> {
        let s = self.settings();
        let sh = &self.shared;
        let n = s.bucket_of(&session.user_id);
        if !self.claim(cid, &session.id, n).await? {
            return Err(session_exists(&session.id).with_correlation_id(cid));
        }
        let deadline = Instant::now() + s.call_timeout;
        let mut attempt: u32 = 0;
        let result = loop {
            attempt = attempt.saturating_add(1);
            let v = sh.eval(cid, "user_open", n, &mut sh.scripts.user_open.arg(&session.user_id)).await?;
            let open = sh.decode_all(as_array(&v), false);
            let Some(victims) = limit_victims(open.clone(), limit) else {
                break Err(session_limit(&session.user_id, limit.max).with_correlation_id(cid));
            };
            match self.commit_limited(cid, n, &session, &open, &victims, limit.now).await? {
                Some(true) => break Ok(()),
                Some(false) => break Err(session_exists(&session.id).with_correlation_id(cid)),
                None => {}
            }
            // Another open or close for this user came first: decide again, after a short pause.
            let cap = 1u64 << attempt.min(5);
            let pause = Duration::from_millis(cap / 2 + u64::from(getrandom::u32().unwrap_or(0)) % cap);
            if Instant::now() + pause >= deadline {
                break Err(sh
                    .unavailable(format!("create_limited: still conflicting after {attempt} attempts"))
                    .with_correlation_id(cid));
            }
            tokio::time::sleep(pause).await;
        };
        match &result {
            Ok(()) => sh.wait_replicas(cid, n).await?,
            Err(e) if e.code != SESSION_EXISTS => self.drop_pointers(cid, std::slice::from_ref(&session.id)).await,
            Err(_) => {}
        }
        result.map(|()| session)
    }

    async fn close_user_sessions(
        &self,
        cid: Option<&str>,
        user_id: &str,
        except_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<u64, ApplicationError> {
        let s = self.settings();
        let sh = &self.shared;
        let n = s.bucket_of(user_id);
        let mut inv = sh.scripts.close_user.prepare_invoke();
        inv.arg(user_id)
            .arg(except_id.unwrap_or(""))
            .arg(u8::from(except_id.is_some()))
            .arg(ms(now))
            .arg(opt_arg(s.close_drop(now)));
        let v = sh.eval(cid, "close_user", n, &mut inv).await?;
        let closed = int(&v).and_then(|c| u64::try_from(c).ok()).unwrap_or(0);
        if closed > 0 {
            sh.wait_replicas(cid, n).await?;
        }
        Ok(closed)
    }

    async fn purge_closed(
        &self,
        cid: Option<&str>,
        closed_before: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, ApplicationError> {
        if limit == 0 {
            return Ok(0);
        }
        let sh = &self.shared;
        let before = ms(closed_before);
        let find = |n: u32| async move {
            let mut inv = sh.scripts.purge_find.prepare_invoke();
            inv.arg(before).arg(limit);
            let v = sh.eval(cid, "purge_find", n, &mut inv).await?;
            let pairs = as_array(&v);
            let found: Vec<(i64, String, u32)> = pairs
                .chunks(2)
                .filter_map(|p| {
                    let id = text(p.first()?)?;
                    let score = text(p.get(1)?)?.parse::<f64>().ok()?;
                    #[allow(clippy::cast_possible_truncation)]
                    Some((score as i64, id, n))
                })
                .collect();
            Ok::<_, ApplicationError>(found)
        };
        let mut candidates: Vec<(i64, String, u32)> =
            futures::future::try_join_all(self.buckets().map(find)).await?.into_iter().flatten().collect();
        candidates.sort();
        candidates.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let mut deleted = 0u64;
        for n in self.buckets() {
            let ids: Vec<&String> = candidates.iter().filter(|c| c.2 == n).map(|c| &c.1).collect();
            if ids.is_empty() {
                continue;
            }
            let mut inv = sh.scripts.purge_delete.prepare_invoke();
            inv.arg(before);
            for id in &ids {
                inv.arg(id.as_str());
            }
            let v = sh.eval(cid, "purge_delete", n, &mut inv).await?;
            let gone: Vec<String> = as_array(&v).iter().filter_map(text).collect();
            deleted += gone.len() as u64;
            self.drop_pointers(cid, &gone).await;
        }
        Ok(deleted)
    }

    async fn rotate_id(
        &self,
        cid: Option<&str>,
        id: &str,
        new_id: &str,
        update: &SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError> {
        let sh = &self.shared;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some((n, current)) = self.read(cid, id).await? else { return Ok(UpdateOutcome::NotFound) };
            if !update.condition.holds(&current) || attempt > WRITE_ATTEMPTS {
                return Ok(UpdateOutcome::ConditionFailed(current));
            }
            let mut moved = current.clone();
            update.change.apply(&mut moved, update.now, &update.policy);
            moved.id = new_id.to_string();
            if !self.claim(cid, new_id, n).await? {
                return Err(session_exists(new_id).with_correlation_id(cid));
            }
            let mut inv = sh.scripts.rotate.prepare_invoke();
            inv.arg(id)
                .arg(new_id)
                .arg(current.version)
                .arg(if current.active { "1" } else { "0" })
                .arg(opt_arg(self.settings().drop_time(&moved)));
            for a in record_args(&moved) {
                inv.arg(a);
            }
            let outcome = step(sh.eval(cid, "rotate", n, &mut inv).await?);
            if !matches!(outcome, Step::Done(_)) && !matches!(outcome, Step::Taken) {
                self.drop_pointers(cid, &[new_id.to_string()]).await;
            }
            match outcome {
                Step::Done(_) => {
                    self.drop_pointers(cid, &[id.to_string()]).await;
                    sh.wait_replicas(cid, n).await?;
                    return Ok(UpdateOutcome::Updated(moved));
                }
                Step::NotFound => return Ok(UpdateOutcome::NotFound),
                Step::Taken => return Err(session_exists(new_id).with_correlation_id(cid)),
                Step::Changed => {}
                Step::Unreadable => return Err(sh.unreadable(cid, id)),
            }
        }
    }

    async fn scan(
        &self,
        cid: Option<&str>,
        after: Option<(DateTime<Utc>, &str)>,
        limit: u64,
    ) -> Result<Vec<SessionV1>, ApplicationError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sh = &self.shared;
        let (score, after_id) =
            after.map_or((String::new(), String::new()), |(t, id)| ((-ms(t)).to_string(), id.to_string()));
        let one = |n: u32| {
            let (score, after_id) = (score.clone(), after_id.clone());
            async move {
                let mut inv = sh.scripts.scan.prepare_invoke();
                inv.arg(score).arg(after_id).arg(limit);
                let v = sh.eval(cid, "scan", n, &mut inv).await?;
                Ok::<_, ApplicationError>(sh.decode_all(as_array(&v), true))
            }
        };
        let mut all: Vec<SessionV1> =
            futures::future::try_join_all(self.buckets().map(one)).await?.into_iter().flatten().collect();
        all.sort_by(|a, b| b.request_time.cmp(&a.request_time).then_with(|| a.id.cmp(&b.id)));
        all.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(all)
    }

    /// One script on `<prefix>:lease:{<name>}`: taken (with `PX` = `until - now`, so Redis's
    /// own clock ends it) when absent or already `owner`'s; otherwise another instance holds it.
    async fn acquire_lease(
        &self,
        cid: Option<&str>,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, ApplicationError> {
        let sh = &self.shared;
        let hold = (until - now).num_milliseconds().max(1);
        let mut conn = sh.conn(cid).await?;
        let mut inv = sh.scripts.lease.prepare_invoke();
        inv.key(format!("{}:lease:{{{name}}}", sh.settings.prefix)).arg(owner).arg(hold);
        match tokio::time::timeout(sh.settings.call_timeout, inv.invoke_async::<i64>(&mut conn)).await {
            Ok(Ok(taken)) => Ok(taken == 1),
            Ok(Err(e)) => Err(sh.map_error(&e, "lease").with_correlation_id(cid)),
            Err(_) => Err(sh.unavailable("lease: no answer in time").with_correlation_id(cid)),
        }
    }

    async fn clear(&self, cid: Option<&str>) -> Result<(), ApplicationError> {
        let sh = &self.shared;
        for n in self.buckets() {
            let v = sh.eval(cid, "clear", n, &mut sh.scripts.clear.prepare_invoke()).await?;
            let ids: Vec<String> = as_array(&v).iter().filter_map(text).collect();
            self.drop_pointers(cid, &ids).await;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::toolkit::descriptor::Descriptor;
    use serde_json::{json, Value as Json};

    fn entry(v: Json) -> ComponentConfig {
        ComponentConfig::new(Descriptor::new("service-sessions", "persistence", "redis", "default", "1.0"), v)
    }

    #[test]
    fn settings_follow_the_documented_keys_and_defaults() {
        let s = Settings::from_config(&entry(json!({}))).unwrap();
        assert_eq!(
            (s.urls.clone(), s.target.as_str(), s.buckets),
            (vec!["redis://127.0.0.1:6379".to_string()], "127.0.0.1:6379/sessions", 1)
        );
        assert_eq!(
            (s.call_timeout, s.retention, s.expire_grace),
            (Duration::from_millis(7000), Some(604_800_000), 604_800_000)
        );
        let s = Settings::from_config(&entry(json!({
            "connection": {"uri": "redis://bob:s3cret@h1:7000/2"},
            "options": {"key_prefix": "app1", "connect_timeout": "500", "retention": 0}
        })))
        .unwrap();
        assert_eq!((s.target.as_str(), s.prefix.as_str(), s.retention), ("h1:7000/app1", "app1", None));
        assert_eq!(redact("x bob:s3cret@h1", &s.secrets), "x ***@h1");
        let s = Settings::from_config(&entry(json!({
            "connection": {"nodes": ["127.0.0.1:7001", "127.0.0.1:7002"]},
            "options": {"cluster": true}
        })))
        .unwrap();
        assert_eq!((s.urls.len(), s.buckets, s.cluster), (2, 16, true));
        let s =
            Settings::from_config(&entry(json!({"connection": {"nodes": "a:1, b:2"}, "options": {"cluster": "true"}})))
                .unwrap();
        assert_eq!(s.urls, vec!["redis://a:1".to_string(), "redis://b:2".to_string()]);
        assert_eq!(s.base(3), "sessions:{3}");
        assert_eq!(s.pointer("ab"), "sessions:id:{ab}");
    }

    #[test]
    fn settings_report_every_problem_without_secrets() {
        let e = Settings::from_config(&entry(json!({
            "connection": {"uri": "nosql://bob:s3cret@h1"},
            "options": {"connect_timeout": 0, "max_page_size": 0, "key_prefix": "a{b}"}
        })))
        .err()
        .unwrap();
        assert_eq!(e.code, "BAD_CONFIG");
        assert_eq!(e.details["errors"].as_array().unwrap().len(), 4, "{e:?}");
        assert!(!e.message.contains("s3cret"), "{}", e.message);
    }

    #[test]
    fn shipped_config_template_enables_redis_with_the_redis_variables() {
        use crate::toolkit::config::{parse_config, ConfigParameters};
        let template = include_str!("../../../config/config.yml");
        let persistences = |params: &[(&str, &str)]| {
            let params: ConfigParameters = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            parse_config(template, &params)
                .unwrap()
                .into_iter()
                .filter(|c| c.descriptor.typ() == Some("persistence"))
                .collect::<Vec<_>>()
        };
        let only = persistences(&[("REDIS_ENABLED", "true")]);
        assert_eq!(only.len(), 1, "REDIS_ENABLED replaces the default memory store");
        assert_eq!(only[0].descriptor.to_string(), "service-sessions:persistence:redis:default:1.0");
        let s = Settings::from_config(&only[0]).unwrap();
        assert_eq!((s.target.as_str(), s.cluster, s.username.as_deref()), ("localhost:6379/sessions", false, None));

        let c = persistences(&[
            ("REDIS_ENABLED", "1"),
            ("REDIS_SERVICE_URI", "rediss://cache.example:6380"),
            ("REDIS_USER", "app"),
            ("REDIS_PASS", r#"p"a#ss: \x"#),
            ("REDIS_KEY_PREFIX", "s1"),
        ]);
        let s = Settings::from_config(&c[0]).unwrap();
        assert_eq!(s.target, "tls:cache.example:6380/s1");
        assert_eq!(s.password.as_deref(), Some(r#"p"a#ss: \x"#));

        let c = persistences(&[("REDIS_ENABLED", "1"), ("REDIS_CLUSTER", "true"), ("REDIS_NODES", "h1:7000,h2:7001")]);
        let s = Settings::from_config(&c[0]).unwrap();
        assert_eq!((s.cluster, s.buckets, s.target.as_str()), (true, 16, "h1:7000,h2:7001/sessions"));

        // The other switches still work; none means memory.
        assert_eq!(persistences(&[("MONGO_ENABLED", "1")])[0].descriptor.kind(), Some("mongodb"));
        assert_eq!(persistences(&[])[0].descriptor.kind(), Some("memory"));
    }

    #[test]
    fn time_windows_become_score_ranges() {
        let t = chrono::DateTime::<Utc>::from_timestamp_millis(1000).unwrap();
        assert_eq!(score_range(None, None), ("-inf".to_string(), "+inf".to_string()));
        assert_eq!(score_range(Some(t), Some(t)), ("(-1000".to_string(), "-1000".to_string()));
    }
}
