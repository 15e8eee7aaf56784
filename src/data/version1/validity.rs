//! What `validate_session` answers.

use chrono::{DateTime, Utc};

/// What `validate_session` answers (also read back by the clients).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SessionValidity {
    /// Whether the session is open and not expired.
    pub is_valid: bool,
    /// When it expires unless used again (`null` when invalid or never).
    #[serde(default, with = "crate::toolkit::time::serde_time::option")]
    pub expire_time: Option<DateTime<Utc>>,
    /// Milliseconds left (`null` when invalid or never).
    #[serde(default)]
    pub ttl: Option<i64>,
}
