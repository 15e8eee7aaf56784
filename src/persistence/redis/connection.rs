//! The connection: one server or a cluster, connected lazily; error mapping; script and
//! command calls under the call deadline; replica acknowledgements; record decoding; the
//! background connector.

use super::codec::{self, decode, int};
use super::scripts::Scripts;
use super::settings::Settings;
use crate::data::version1::SessionV1;
use crate::persistence::network::{store_auth_failed, store_failed, store_unavailable, Readiness};
use crate::persistence::{bad_records_counter, DecodeError};
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::log::redact_id;
use prometheus::IntCounter;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, IntoConnectionInfo, RedisError, RedisFuture, ScriptInvocation, ServerErrorKind, Value};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// A connection: one server (reconnecting by itself) or a cluster.
#[derive(Clone)]
pub(super) enum Conn {
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
pub(super) fn bad_records() -> Option<&'static IntCounter> {
    static C: LazyLock<Option<IntCounter>> = LazyLock::new(|| bad_records_counter("redis"));
    C.as_ref()
}

/// The state shared by the component and its connector task.
pub(super) struct Shared {
    pub(super) settings: Settings,
    pub(super) scripts: Scripts,
    pub(super) conn: OnceCell<Conn>,
    /// The server answered the connector at least once, or why not yet.
    pub(super) readiness: Readiness,
}

impl Shared {
    pub(super) fn unavailable(&self, message: impl Into<String>) -> ApplicationError {
        store_unavailable(&message.into(), &self.settings.secrets)
    }

    /// Unreachable / failing over → `NoResponse` (503); refused credentials → misconfiguration;
    /// the rest → internal (server text is not quoted: it can hold values).
    pub(super) fn map_error(&self, e: &RedisError, op: &str) -> ApplicationError {
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
                store_auth_failed(&format!("{op}: {kind:?}"), &self.settings.secrets)
            }
            _ => store_failed(format!("{op}: {kind:?} {}", e.code().unwrap_or(""))),
        }
    }

    pub(super) async fn connect(&self) -> Result<Conn, ApplicationError> {
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

    pub(super) async fn conn(&self, cid: Option<&str>) -> Result<Conn, ApplicationError> {
        self.conn.get_or_try_init(|| self.connect()).await.cloned().map_err(|e| e.with_correlation_id(cid))
    }

    /// Runs one script on bucket `n` under the call deadline.
    pub(super) async fn eval(
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
    pub(super) async fn command(&self, cid: Option<&str>, op: &str, cmd: &Cmd) -> Result<Value, ApplicationError> {
        let mut conn = self.conn(cid).await?;
        match tokio::time::timeout(self.settings.call_timeout, cmd.query_async::<Value>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.map_error(&e, op).with_correlation_id(cid)),
            Err(_) => Err(self.unavailable(format!("{op}: no answer in time")).with_correlation_id(cid)),
        }
    }

    /// With `options.wait_replicas`, waits until that many replicas of bucket `n`'s master have
    /// the writes so far (`WAIT`); a shortfall is a 503 `STORE_NOT_REPLICATED`.
    pub(super) async fn wait_replicas(&self, cid: Option<&str>, n: u32) -> Result<(), ApplicationError> {
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
    pub(super) fn bad_record(&self, id: Option<&str>, e: &DecodeError) {
        let id = id.map_or_else(|| "<none>".to_string(), redact_id);
        tracing::warn!(store = %self.settings.target, session = %id, field = e.field, reason = e.reason,
            "A stored record is not a readable session; it is left out of lists and left as it is.");
        if let Some(c) = bad_records() {
            c.inc();
        }
    }

    /// Decodes a record a call asked for by id: unreadable → that call's 500.
    pub(super) fn decode_one(
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
    pub(super) fn unreadable(&self, cid: Option<&str>, id: &str) -> ApplicationError {
        let e = DecodeError::new("record", "is not a hash");
        self.bad_record(Some(id), &e);
        e.to_error().with_correlation_id(cid)
    }

    /// Decodes the records of a list, leaving out (logged and counted) the unreadable ones.
    pub(super) fn decode_all(&self, items: &[Value], payload: bool) -> Vec<SessionV1> {
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

    pub(super) async fn ping(&self) -> Result<(), ApplicationError> {
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
    pub(super) async fn run_connector(self: Arc<Self>, stop: CancellationToken) {
        self.readiness.connect("Redis", &self.settings.target, stop, || self.ping()).await;
    }
}

/// The elements of an array reply (empty for anything else).
pub(super) fn as_array(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}
