//! The MongoDB entry's settings (contract §7): parsed, validated, and kept out of `Debug`.

use crate::persistence::network::{bad_config, call_timeout, check_common_options, CredentialSettings};
pub use crate::persistence::network::{DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_SOCKET_TIMEOUT_MS};
use crate::persistence::{redact, uri_userinfo, DEFAULT_MAX_PAGE_SIZE};
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::errors::ApplicationError;
use mongodb::bson::doc;
use mongodb::options::{ConnectionString, HostInfo};
use serde::Deserialize;
use std::time::Duration;

/// Default `collection`.
pub const DEFAULT_COLLECTION: &str = "sessions";
/// Database used when neither the URI nor `connection.database` names one.
pub const DEFAULT_DATABASE: &str = "app";

/// The config entry as written (contract §7).
#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct MongoSettings {
    pub(super) collection: Option<String>,
    pub(super) connection: ConnectionSettings,
    pub(super) credential: CredentialSettings,
    pub(super) options: MongoOptions,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct ConnectionSettings {
    pub(super) uri: Option<String>,
    pub(super) host: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) database: Option<String>,
}

#[derive(Deserialize)]
#[serde(default)]
pub(super) struct MongoOptions {
    pub(super) max_pool_size: Option<u32>,
    pub(super) connect_timeout: u64,
    pub(super) socket_timeout: u64,
    pub(super) max_page_size: u64,
    pub(super) auth_source: Option<String>,
}

impl Default for MongoOptions {
    fn default() -> Self {
        Self {
            max_pool_size: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT_MS,
            socket_timeout: DEFAULT_SOCKET_TIMEOUT_MS,
            max_page_size: DEFAULT_MAX_PAGE_SIZE,
            auth_source: None,
        }
    }
}

/// Validated settings. Holds secrets: no `Debug`.
pub(super) struct Settings {
    /// The connection string (may embed credentials).
    pub(super) uri: String,
    /// Username and password from `credential.*`, applied when the URI has none.
    pub(super) credential: Option<(String, Option<String>)>,
    pub(super) auth_source: Option<String>,
    pub(super) database: String,
    pub(super) collection: String,
    pub(super) max_pool_size: Option<u32>,
    pub(super) connect_timeout: Duration,
    pub(super) call_timeout: Duration,
    pub(super) max_page_size: u64,
    /// `host:port,…/database.collection` for logs and health (no credentials).
    pub(super) target: String,
    /// Text that must never appear in a message (userinfo of the URI, the password).
    pub(super) secrets: Vec<String>,
}

impl Settings {
    pub(super) fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let s: MongoSettings = config.section()?;
        let mut problems = Vec::new();
        let collection = s.collection.unwrap_or_else(|| DEFAULT_COLLECTION.to_string());
        if collection.is_empty()
            || collection.contains('$')
            || collection.contains('\0')
            || collection.starts_with("system.")
        {
            problems.push(format!("collection '{collection}' is not a valid collection name"));
        }
        let o = &s.options;
        check_common_options(o.connect_timeout, o.max_page_size, &mut problems);
        if o.max_pool_size == Some(0) {
            problems.push("options.max_pool_size must be positive".to_string());
        }
        let mut secrets = Vec::new();
        secrets.extend(s.credential.password());
        let uri = match &s.connection.uri {
            Some(uri) => {
                if let Some(userinfo) = uri_userinfo(uri) {
                    secrets.push(userinfo.to_string());
                }
                uri.clone()
            }
            None => {
                let host = s.connection.host.as_deref().unwrap_or("localhost");
                let port = s.connection.port.unwrap_or(27017);
                if port == 0 {
                    problems.push("connection.port must be between 1 and 65535".to_string());
                }
                // A bare IPv6 address needs brackets in a URI.
                if host.contains(':') && !host.starts_with('[') {
                    format!("mongodb://[{host}]:{port}/")
                } else {
                    format!("mongodb://{host}:{port}/")
                }
            }
        };
        let parsed = match ConnectionString::parse(&uri) {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(format!("connection is not a valid MongoDB URI: {}", redact(&e.to_string(), &secrets)));
                None
            }
        };
        if !problems.is_empty() {
            return Err(bad_config(config, problems));
        }
        let database = parsed
            .as_ref()
            .and_then(|c| c.default_database.clone())
            .or(s.connection.database.filter(|d| !d.is_empty()))
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
        let hosts = match parsed.as_ref().map(|c| &c.host_info) {
            Some(HostInfo::HostIdentifiers(hosts)) => {
                hosts.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
            }
            Some(HostInfo::DnsRecord(name)) => format!("srv:{name}"),
            _ => String::from("?"),
        };
        Ok(Self {
            uri,
            credential: s.credential.username().map(|u| (u, s.credential.password())),
            auth_source: o.auth_source.clone().filter(|a| !a.is_empty()),
            target: format!("{hosts}/{database}.{collection}"),
            database,
            collection,
            max_pool_size: o.max_pool_size,
            connect_timeout: Duration::from_millis(o.connect_timeout),
            call_timeout: call_timeout(o.connect_timeout, o.socket_timeout),
            max_page_size: o.max_page_size,
            secrets,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::toolkit::descriptor::Descriptor;
    use serde_json::{json, Value};

    fn entry(v: Value) -> ComponentConfig {
        ComponentConfig::new(Descriptor::new("service-sessions", "persistence", "mongodb", "default", "1.0"), v)
    }

    #[test]
    fn settings_follow_the_contract_keys_and_defaults() {
        let s = Settings::from_config(&entry(json!({}))).unwrap();
        assert_eq!(
            (s.uri.as_str(), s.database.as_str(), s.collection.as_str()),
            ("mongodb://localhost:27017/", "app", "sessions")
        );
        assert_eq!(
            (s.connect_timeout, s.call_timeout, s.max_page_size),
            (Duration::from_millis(2000), Duration::from_millis(7000), 100)
        );
        let s = Settings::from_config(&entry(json!({
            "collection": "s2",
            "connection": {"host": "db1", "port": "27018", "database": "x"},
            "credential": {"username": "u", "password": "p@ss"},
            "options": {"max_pool_size": "7", "connect_timeout": "1000", "max_page_size": 5}
        })))
        .unwrap();
        assert_eq!((s.uri.as_str(), s.target.as_str()), ("mongodb://db1:27018/", "db1:27018/x.s2"));
        assert_eq!((s.max_pool_size, s.connect_timeout, s.max_page_size), (Some(7), Duration::from_millis(1000), 5));
        assert_eq!(s.credential, Some(("u".to_string(), Some("p@ss".to_string()))));
        // The URI wins over host/port, and its database over connection.database.
        let s = Settings::from_config(&entry(json!({
            "connection": {"uri": "mongodb://bob:s3cret@h1:1,h2:2/prod?replicaSet=rs", "host": "ignored", "database": "y"},
        })))
        .unwrap();
        assert_eq!((s.database.as_str(), s.target.as_str()), ("prod", "h1:1,h2:2/prod.sessions"));
        assert_eq!(redact("failed for bob:s3cret@h1", &s.secrets), "failed for ***@h1");
        // Empty template values mean "not set".
        let s =
            Settings::from_config(&entry(json!({"connection": {"uri": "", "host": "", "port": "", "database": ""}})));
        assert_eq!(s.unwrap().uri, "mongodb://localhost:27017/");
    }

    #[test]
    fn settings_report_every_problem_without_secrets() {
        let e = Settings::from_config(&entry(json!({
            "collection": "a$b",
            "connection": {"uri": "nosql://bob:s3cret@h1"},
            "options": {"connect_timeout": 0, "max_page_size": 0}
        })))
        .err()
        .unwrap();
        assert_eq!(e.code, "BAD_CONFIG");
        assert_eq!(e.details["errors"].as_array().unwrap().len(), 4, "{e:?}");
        assert!(!e.message.contains("s3cret"), "{}", e.message);
    }

    #[test]
    fn shipped_config_template_enables_mongodb_with_the_mongo_variables() {
        use crate::persistence::network::shipped_persistences as persistences;
        let only = persistences(&[("MONGO_ENABLED", "true")]);
        assert_eq!(only.len(), 1, "MONGO_ENABLED replaces the default memory store");
        assert_eq!(only[0].descriptor.to_string(), "service-sessions:persistence:mongodb:default:1.0");
        let s = Settings::from_config(&only[0]).unwrap();
        assert_eq!((s.uri.as_str(), s.target.as_str()), ("mongodb://localhost:27017/", "localhost:27017/app.sessions"));
        assert_eq!(s.credential, None);

        let c = persistences(&[
            ("MONGO_ENABLED", "1"),
            ("MONGO_SERVICE_HOST", "db"),
            ("MONGO_SERVICE_PORT", "27018"),
            ("MONGO_DB", "sess"),
            ("MONGO_COLLECTION", "s1"),
            ("MONGO_USER", "app"),
            ("MONGO_PASS", r#"p"a#ss: \x"#),
        ]);
        let s = Settings::from_config(&c[0]).unwrap();
        assert_eq!((s.uri.as_str(), s.target.as_str()), ("mongodb://db:27018/", "db:27018/sess.s1"));
        assert_eq!(s.credential, Some(("app".to_string(), Some(r#"p"a#ss: \x"#.to_string()))));

        let c = persistences(&[("MONGO_ENABLED", "1"), ("MONGO_SERVICE_URI", "mongodb://u:p@h1,h2/d?replicaSet=rs")]);
        let s = Settings::from_config(&c[0]).unwrap();
        assert_eq!(
            (s.uri.as_str(), s.target.as_str()),
            ("mongodb://u:p@h1,h2/d?replicaSet=rs", "h1:27017,h2:27017/d.sessions")
        );

        let default = persistences(&[]);
        assert_eq!(default.len(), 1);
        assert_eq!(default[0].descriptor.kind(), Some("memory"));
    }

    #[test]
    fn userinfo_is_found_only_in_the_authority() {
        assert_eq!(uri_userinfo("mongodb://a:b@h/db?x=@"), Some("a:b"));
        assert_eq!(uri_userinfo("mongodb://h/db?x=a@b"), None);
        assert_eq!(uri_userinfo("mongodb+srv://u@cluster.example"), Some("u"));
    }
}
