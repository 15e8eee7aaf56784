//! The error codes of the sessions contract, defined once: the controller, the persistence
//! backends and the services raise them, the clients and the maintenance commands branch on them.
//! Generic codes (`INVALID_DATA`, `BAD_CONFIG`, ...) belong to the toolkit.

/// Conflict (409): a write named a stale `version`; `details.version` holds the current one.
pub const SESSION_VERSION_CONFLICT: &str = "SESSION_VERSION_CONFLICT";
/// Conflict (409): a write to a closed (or expired) session.
pub const SESSION_CLOSED: &str = "SESSION_CLOSED";
/// Conflict (409): the user is at the open-session limit (`limit_policy: deny`).
pub const SESSION_LIMIT: &str = "SESSION_LIMIT";
/// Conflict (409): a session with this id already exists (an insert met an existing id).
pub const SESSION_EXISTS: &str = "SESSION_EXISTS";
/// Internal (500): a stored session cannot be decoded.
pub const SESSION_UNREADABLE: &str = "SESSION_UNREADABLE";
/// Not found (404): the REST API's answer for an unknown session id.
pub const SESSION_NOT_FOUND: &str = "SESSION_NOT_FOUND";
/// No response (503): the store holds the most open sessions allowed (`max_sessions`).
pub const MAX_SESSIONS: &str = "MAX_SESSIONS";
