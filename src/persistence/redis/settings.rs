//! The Redis entry's settings: parsed, validated, kept out of `Debug`; and the key layout
//! (buckets, pointers, native expiry times) they define.

use super::codec::ms;
use crate::data::version1::SessionV1;
use crate::persistence::network::{bad_config, call_timeout, check_common_options, CredentialSettings};
pub use crate::persistence::network::{DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_SOCKET_TIMEOUT_MS};
use crate::persistence::{redact, uri_userinfo, DEFAULT_MAX_PAGE_SIZE};
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::errors::ApplicationError;
use chrono::{DateTime, Utc};
use redis::IntoConnectionInfo;
use serde::Deserialize;
use std::time::Duration;

/// Default `options.key_prefix`.
pub const DEFAULT_KEY_PREFIX: &str = "sessions";
/// Default `options.retention` and `options.expire_grace` in milliseconds (7 days).
pub const DEFAULT_RETENTION_MS: u64 = 7 * 86_400_000;
/// Default `options.buckets` on a cluster.
pub const DEFAULT_CLUSTER_BUCKETS: u32 = 16;
/// Default `options.max_scatter_window`.
pub const DEFAULT_MAX_SCATTER_WINDOW: u64 = 10_000;

/// The config entry as written.
#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct RedisSettings {
    pub(super) connection: ConnectionSettings,
    pub(super) credential: CredentialSettings,
    pub(super) options: RedisOptions,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct ConnectionSettings {
    pub(super) uri: Option<String>,
    /// A YAML list of `host:port` (or URLs), or one comma-separated string.
    pub(super) nodes: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(default)]
pub(super) struct RedisOptions {
    pub(super) cluster: bool,
    pub(super) key_prefix: String,
    pub(super) connect_timeout: u64,
    pub(super) socket_timeout: u64,
    pub(super) max_page_size: u64,
    pub(super) retention: u64,
    pub(super) expire_grace: u64,
    pub(super) buckets: Option<u32>,
    pub(super) max_scatter_window: u64,
    pub(super) wait_replicas: u32,
    pub(super) wait_timeout: u64,
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
pub(super) struct Settings {
    /// Connection URLs: one server, or the cluster's seed nodes.
    pub(super) urls: Vec<String>,
    pub(super) cluster: bool,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) prefix: String,
    pub(super) buckets: u32,
    pub(super) connect_timeout: Duration,
    pub(super) call_timeout: Duration,
    pub(super) max_page_size: u64,
    pub(super) retention: Option<i64>,
    pub(super) expire_grace: i64,
    pub(super) max_scatter_window: u64,
    pub(super) wait_replicas: u32,
    pub(super) wait_timeout: u64,
    /// `host:port,…/prefix` for logs and health (no credentials).
    pub(super) target: String,
    /// Text that must never appear in a message.
    pub(super) secrets: Vec<String>,
}

impl Settings {
    pub(super) fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let s: RedisSettings = config.section()?;
        let o = &s.options;
        let mut problems = Vec::new();
        check_common_options(o.connect_timeout, o.max_page_size, &mut problems);
        if o.key_prefix.is_empty() || o.key_prefix.contains(['{', '}']) {
            problems.push("options.key_prefix must be non-empty text without braces".to_string());
        }
        let buckets = o.buckets.unwrap_or(if o.cluster { DEFAULT_CLUSTER_BUCKETS } else { 1 });
        if buckets == 0 || buckets > 16_384 {
            problems.push("options.buckets must be between 1 and 16384".to_string());
        }
        let mut secrets = Vec::new();
        secrets.extend(s.credential.password());
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
            return Err(bad_config(config, problems));
        }
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Ok(Self {
            target: format!("{}/{}", hosts.join(","), o.key_prefix),
            urls,
            cluster: o.cluster,
            username: s.credential.username(),
            password: s.credential.password(),
            prefix: o.key_prefix.clone(),
            buckets,
            connect_timeout: Duration::from_millis(o.connect_timeout),
            call_timeout: call_timeout(o.connect_timeout, o.socket_timeout),
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
    pub(super) fn base(&self, n: u32) -> String {
        format!("{}:{{{n}}}", self.prefix)
    }

    /// The bucket of a user's sessions.
    pub(super) fn bucket_of(&self, user_id: &str) -> u32 {
        if self.buckets <= 1 {
            0
        } else {
            crc32fast::hash(user_id.as_bytes()) % self.buckets
        }
    }

    /// The id → bucket pointer key (used only with more than one bucket).
    pub(super) fn pointer(&self, id: &str) -> String {
        format!("{}:id:{{{id}}}", self.prefix)
    }

    /// The `PEXPIREAT` of a session in this state (`None` = no native expiry).
    pub(super) fn drop_time(&self, s: &SessionV1) -> Option<i64> {
        if s.active {
            s.expire_time.map(|t| ms(t).saturating_add(self.expire_grace))
        } else {
            let closed = s.close_time.unwrap_or(s.request_time);
            self.retention.map(|r| ms(closed).saturating_add(r))
        }
    }

    /// The `PEXPIREAT` of a session closed at `now`.
    pub(super) fn close_drop(&self, now: DateTime<Utc>) -> Option<i64> {
        self.retention.map(|r| ms(now).saturating_add(r))
    }
}

pub(super) fn addr_text(addr: &redis::ConnectionAddr) -> String {
    match addr {
        redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        redis::ConnectionAddr::TcpTls { host, port, .. } => format!("tls:{host}:{port}"),
        redis::ConnectionAddr::Unix(path) => format!("unix:{}", path.display()),
        _ => "?".to_string(),
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
        use crate::persistence::network::shipped_persistences as persistences;
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
}
