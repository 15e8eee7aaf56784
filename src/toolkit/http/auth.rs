//! API-key authentication (`pip-services:authenticator:api-key:*:1.0`): a [`RequestInterceptor`]
//! on the HTTP endpoint that lets a request through only when it carries a configured key in
//! `x-api-key` (or its alias `x-auth-key`), and otherwise answers 401 `UNAUTHORIZED` "Missing or
//! invalid API key".
//!
//! Keys come from `credential.api_keys` — a list of `{id, key}` maps, of `id:key` strings, or one
//! comma list `id:key,id2:key2` (an entry without `id:` gets the id `key<n>`) — and from the
//! environment variable named by `credential.api_keys_env` (the same comma list), read once when
//! the component is created. No key at all, or an empty one, is a configuration error: the
//! component never starts open by accident. The id only names a key in logs; clients send the key.
//!
//! Only SHA-256 digests of the keys are kept, and `Debug` shows ids only. A presented key is
//! hashed to the same fixed length and compared with every configured digest in constant time
//! (`subtle`), with no early exit, so neither the time taken nor the key's length tells an
//! attacker anything. The key is never logged or echoed.
//!
//! Open routes: `/heartbeat` always; `/status`, `/ready`, `/swagger` and every OpenAPI document
//! route when `options.protect_status` is false (by default they need a key). CORS preflights
//! (`OPTIONS`, when CORS is configured) are answered by the endpoint before interceptors run, so
//! they stay open. Unknown routes and wrong methods are refused (401) before the endpoint says 404
//! or 405, so a caller without a key cannot probe which routes exist.

use super::endpoint::{HttpEndpoint, RequestInterceptor};
use super::swagger::OpenApiDocument;
use super::{error_response, join_route, HttpRequest, HttpResponse};
use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::references::References;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::Arc;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// The request headers a key is read from, in order.
pub const API_KEY_HEADERS: [&str; 2] = ["x-api-key", "x-auth-key"];

#[derive(Default, Deserialize)]
#[serde(default)]
struct AuthSettings {
    credential: AuthCredential,
    options: AuthOptions,
    dependencies: AuthDependencies,
}

/// `credential.*`: deliberately without `Debug`.
#[derive(Default, Deserialize)]
#[serde(default)]
struct AuthCredential {
    api_keys: Option<Value>,
    api_keys_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(default)]
struct AuthOptions {
    protect_status: bool,
}

impl Default for AuthOptions {
    fn default() -> Self {
        Self { protect_status: true }
    }
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct AuthDependencies {
    endpoint: Option<String>,
}

/// One configured key: its id and the SHA-256 digest of the key.
#[derive(Clone)]
struct ApiKey {
    id: String,
    digest: [u8; 32],
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn bad_config(message: String) -> ApplicationError {
    ApplicationError::config("BAD_CONFIG", message)
}

/// Reads one `id:key` (or bare `key`) entry; `n` is its 1-based position.
fn text_entry(text: &str, n: usize) -> Result<ApiKey, ApplicationError> {
    let (id, key) = match text.trim().split_once(':') {
        Some((id, key)) => (id.trim().to_string(), key.trim()),
        None => (format!("key{n}"), text.trim()),
    };
    entry(id, key, n)
}

fn entry(id: String, key: &str, n: usize) -> Result<ApiKey, ApplicationError> {
    if key.is_empty() {
        return Err(bad_config(format!("API key #{n} ({id}) is empty")));
    }
    Ok(ApiKey { id, digest: digest(key.as_bytes()) })
}

fn comma_list(text: &str, keys: &mut Vec<ApiKey>) -> Result<(), ApplicationError> {
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        keys.push(text_entry(part, keys.len() + 1)?);
    }
    Ok(())
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn configured_keys(value: &Value, keys: &mut Vec<ApiKey>) -> Result<(), ApplicationError> {
    match value {
        Value::Null => Ok(()),
        Value::String(s) => comma_list(s, keys),
        Value::Array(items) => {
            for item in items {
                let n = keys.len() + 1;
                let key = match item {
                    Value::Object(m) => {
                        let key = m.get("key").and_then(scalar).unwrap_or_default();
                        let id = m.get("id").and_then(scalar).unwrap_or_else(|| format!("key{n}"));
                        entry(id, key.trim(), n)?
                    }
                    other => match scalar(other) {
                        Some(text) => text_entry(&text, n)?,
                        None => return Err(bad_config(format!("API key #{n} must be `id:key` or {{id, key}}"))),
                    },
                };
                keys.push(key);
            }
            Ok(())
        }
        _ => Err(bad_config("credential.api_keys must be a list of {id, key} or a comma list id:key,…".to_string())),
    }
}

/// The API-key authenticator component.
pub struct ApiKeyAuthenticator {
    keys: Arc<[ApiKey]>,
    protect_status: bool,
    endpoint_locator: Descriptor,
    endpoint_explicit: bool,
}

impl std::fmt::Debug for ApiKeyAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyAuthenticator")
            .field("key_ids", &self.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>())
            .field("protect_status", &self.protect_status)
            .finish()
    }
}

impl ApiKeyAuthenticator {
    /// Builds the authenticator from its entry, reading `credential.api_keys_env` from the
    /// process environment.
    ///
    /// # Errors
    /// `BAD_CONFIG` when no key is configured, a key is empty or malformed, or the named
    /// environment variable is unset; messages name key ids and positions, never keys.
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        Self::from_config_with_env(config, |name| std::env::var(name).ok())
    }

    /// As [`ApiKeyAuthenticator::from_config`], with the environment given as a lookup function.
    ///
    /// # Errors
    /// As [`ApiKeyAuthenticator::from_config`].
    pub fn from_config_with_env(
        config: &ComponentConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ApplicationError> {
        let s: AuthSettings = config.section()?;
        let mut keys = Vec::new();
        if let Some(v) = &s.credential.api_keys {
            configured_keys(v, &mut keys)?;
        }
        if let Some(name) = s.credential.api_keys_env.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            match env(name).filter(|v| !v.trim().is_empty()) {
                Some(list) => comma_list(&list, &mut keys)?,
                None => {
                    return Err(bad_config(format!(
                        "Environment variable {name} named by credential.api_keys_env is not set"
                    )))
                }
            }
        }
        if keys.is_empty() {
            return Err(ApplicationError::config(
                "NO_API_KEYS",
                "The API-key authenticator has no keys: set credential.api_keys or credential.api_keys_env",
            ));
        }
        let endpoint_locator = Descriptor::configured_or(s.dependencies.endpoint.as_deref(), || {
            Descriptor::new("*", "endpoint", "http", "*", "1.0")
        })?;
        Ok(Self {
            keys: keys.into(),
            protect_status: s.options.protect_status,
            endpoint_locator,
            endpoint_explicit: s.dependencies.endpoint.is_some(),
        })
    }

    /// The id of the configured key equal to `presented`, compared in constant time.
    pub fn verify(&self, presented: &[u8]) -> Option<&str> {
        find_key(&self.keys, presented)
    }
}

/// Compares `presented` with every key (no early exit) and returns the matching key's id.
fn find_key<'k>(keys: &'k [ApiKey], presented: &[u8]) -> Option<&'k str> {
    let presented = digest(presented);
    let mut matched = Choice::from(0);
    let mut index = 0u64;
    for (i, key) in keys.iter().enumerate() {
        let equal = key.digest.as_slice().ct_eq(presented.as_slice());
        index = u64::conditional_select(&index, &u64::try_from(i).unwrap_or(u64::MAX), equal);
        matched |= equal;
    }
    if bool::from(matched) {
        usize::try_from(index).ok().and_then(|i| keys.get(i)).map(|k| k.id.as_str())
    } else {
        None
    }
}

/// Checks a presented API key; the API-key authenticator exports it so transports other than
/// the HTTP endpoint (the gRPC endpoint reads `x-api-key` metadata) accept the same keys.
pub trait ApiKeyVerifier: Send + Sync {
    /// The id of the configured key equal to `presented` (constant-time), or `None`.
    fn verify_key(&self, presented: &[u8]) -> Option<String>;
}

impl ApiKeyVerifier for ApiKeyAuthenticator {
    fn verify_key(&self, presented: &[u8]) -> Option<String> {
        self.verify(presented).map(str::to_string)
    }
}

/// The interceptor installed on the endpoint.
struct ApiKeyGuard {
    keys: Arc<[ApiKey]>,
    open_routes: HashSet<String>,
}

#[async_trait]
impl RequestInterceptor for ApiKeyGuard {
    fn authenticates(&self) -> bool {
        true
    }

    fn authenticated(&self, head: &HttpRequest) -> bool {
        API_KEY_HEADERS
            .iter()
            .find_map(|h| head.headers.get(*h))
            .is_some_and(|v| find_key(&self.keys, v.as_bytes()).is_some())
    }

    async fn intercept(&self, request: &HttpRequest) -> Option<HttpResponse> {
        if self.open_routes.contains(&join_route("", &request.path)) {
            return None;
        }
        let presented = API_KEY_HEADERS.iter().find_map(|h| request.headers.get(*h));
        let cid = request.correlation_id.as_deref();
        match presented.and_then(|v| find_key(&self.keys, v.as_bytes())) {
            Some(id) => {
                tracing::debug!(key_id = id, correlation_id = cid.unwrap_or(""), "API key accepted.");
                None
            }
            None => {
                tracing::debug!(
                    path = %request.path,
                    reason = if presented.is_some() { "invalid" } else { "missing" },
                    correlation_id = cid.unwrap_or(""),
                    "Request refused: no valid API key."
                );
                Some(error_response(
                    &ApplicationError::unauthorized("UNAUTHORIZED", "Missing or invalid API key")
                        .with_correlation_id(cid),
                ))
            }
        }
    }
}

impl Component for ApiKeyAuthenticator {
    fn set_references(&self, references: &References) -> Result<(), ApplicationError> {
        // Without an explicitly configured endpoint dependency, a container that has no HTTP
        // endpoint (gRPC only) still starts: the gRPC endpoint reads the keys through
        // [`ApiKeyVerifier`].
        let endpoint = if self.endpoint_explicit {
            references.get_one_required::<HttpEndpoint>(&self.endpoint_locator)?
        } else {
            match references.get_one_optional::<HttpEndpoint>(&self.endpoint_locator) {
                Some(e) => e,
                None => return Ok(()),
            }
        };
        let mut open_routes: HashSet<String> = HashSet::from([join_route("", "heartbeat")]);
        if !self.protect_status {
            open_routes.extend(["status", "ready", "swagger"].map(|r| join_route("", r)));
            let any = Descriptor::new("*", "*", "*", "*", "*");
            for doc in references.get_optional::<dyn OpenApiDocument>(&any).iter().filter(|d| d.enabled()) {
                open_routes.insert(join_route("", &doc.document_url()));
            }
        }
        endpoint.add_interceptor(Arc::new(ApiKeyGuard { keys: self.keys.clone(), open_routes }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(entry: Value, env: &[(&str, &str)]) -> Result<ApiKeyAuthenticator, ApplicationError> {
        let config = ComponentConfig::new("pip-services:authenticator:api-key:default:1.0".parse().unwrap(), entry);
        ApiKeyAuthenticator::from_config_with_env(&config, |name| {
            env.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_string())
        })
    }

    #[test]
    fn accepts_exactly_the_configured_keys() {
        let a = build(json!({"credential": {"api_keys": [{"id": "ops", "key": "s3cret-one"}, "web:s3cret-two"]}}), &[])
            .unwrap();
        assert_eq!(a.verify(b"s3cret-one"), Some("ops"));
        assert_eq!(a.verify(b"s3cret-two"), Some("web"));
        for wrong in [&b""[..], b"s3cret", b"s3cret-one ", b"s3cret-onf", b"S3CRET-ONE", b"web:s3cret-two", b"ops"] {
            assert_eq!(a.verify(wrong), None, "{}", String::from_utf8_lossy(wrong));
        }
    }

    #[test]
    fn reads_comma_lists_and_the_environment() {
        let a =
            build(json!({"credential": {"api_keys": "a:k1, b:k2,k3", "api_keys_env": "KEYS"}}), &[("KEYS", "e:k4")])
                .unwrap();
        assert_eq!(
            ["k1", "k2", "k3", "k4"].map(|k| a.verify(k.as_bytes())),
            [Some("a"), Some("b"), Some("key3"), Some("e")]
        );
        assert!(a.protect_status);
        let open =
            build(json!({"credential": {"api_keys": "k"}, "options": {"protect_status": "false"}}), &[]).unwrap();
        assert!(!open.protect_status);
    }

    #[test]
    fn refuses_to_start_without_usable_keys_and_never_shows_them() {
        let none = build(json!({}), &[]).unwrap_err();
        assert_eq!(none.code, "NO_API_KEYS");
        let unset = build(json!({"credential": {"api_keys_env": "MISSING"}}), &[]).unwrap_err();
        assert!(unset.message.contains("MISSING"), "{}", unset.message);
        let empty = build(json!({"credential": {"api_keys": [{"id": "x", "key": ""}]}}), &[]).unwrap_err();
        assert_eq!(empty.code, "BAD_CONFIG");
        let bad = build(json!({"credential": {"api_keys": [["nested-secret"]]}}), &[]).unwrap_err();
        assert!(!bad.message.contains("nested-secret"));
        let a = build(json!({"credential": {"api_keys": "ops:top-secret-value"}}), &[]).unwrap();
        let debug = format!("{a:?}");
        assert!(debug.contains("ops") && !debug.contains("top-secret-value"), "{debug}");
    }
}
