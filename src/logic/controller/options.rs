//! The controller's options (`options.*`) and dependencies in its configuration entry.

use crate::persistence::LimitPolicy;
use serde::Deserialize;

/// `options.*` of the controller. Durations are in milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ControllerOptions {
    /// Idle timeout (default 86 400 000 = 24 h); 0 disables idle expiry.
    pub expire_timeout: u64,
    /// Period of the background sweep (default 900 000 = 15 min); 0 disables the sweep.
    pub cleanup_interval: u64,
    /// Absolute lifetime of a session whatever its activity (default 0 = unlimited).
    pub max_lifetime: u64,
    /// Largest per-session `ttl` a caller may ask for (default 30 days).
    pub max_ttl: u64,
    /// Whether reads (`get_session_by_id`) count as activity (default false).
    pub touch_on_read: bool,
    /// With `touch_on_read`, a session is written at most once per this interval (default 60 000).
    pub touch_interval: u64,
    /// Most open sessions per user (default 0 = unlimited).
    pub max_sessions_per_user: u64,
    /// At the limit: `deny` (409 `SESSION_LIMIT`, default) or `close_oldest`.
    pub limit_policy: LimitPolicy,
    /// How long closed sessions are kept before the sweep deletes them (default 7 days; 0 =
    /// forever).
    pub retention: u64,
    /// Most sessions one purge step deletes (default 1000).
    pub purge_batch_size: u64,
    /// Most open sessions in the whole store (default 0 = unlimited). At the cap `open_session`
    /// answers 503 `MAX_SESSIONS`. Checked with the insert as one step on the memory and file
    /// backends; elsewhere by inserting, counting and taking the insert back when over (see
    /// [`SessionsPersistence::create_within`]): never more than the cap. Closed sessions are
    /// bounded by `retention` instead.
    pub max_sessions: u64,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            expire_timeout: 86_400_000,
            cleanup_interval: 900_000,
            max_lifetime: 0,
            max_ttl: 30 * 86_400_000,
            touch_on_read: false,
            touch_interval: 60_000,
            max_sessions_per_user: 0,
            limit_policy: LimitPolicy::Deny,
            retention: 7 * 86_400_000,
            purge_batch_size: 1000,
            max_sessions: 0,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ControllerSettings {
    pub(super) options: ControllerOptions,
    pub(super) dependencies: ControllerDependencies,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ControllerDependencies {
    pub(super) persistence: Option<String>,
    pub(super) clock: Option<String>,
}
