//! Application errors in the Pip.Services shape.
//!
//! One error type, [`ApplicationError`], crosses every layer: each layer's own failures convert into
//! it, it carries a Pip [`ErrorCategory`], a machine `code`, a human `message`, structured
//! `details`, the correlation id and the cause's text. [`ErrorCategory::default_status`] is the one
//! mapping from category to HTTP status, and [`ErrorDescription`] is the one wire shape every error
//! is rendered in.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// The Pip.Services error categories (exact wire strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCategory {
    /// Anything not classified.
    Unknown,
    /// A programming or internal failure.
    Internal,
    /// A configuration that cannot work.
    Misconfiguration,
    /// A dependency (store, remote service) did not answer.
    NoResponse,
    /// A call to a dependency failed.
    FailedInvocation,
    /// A file could not be read or written.
    FileError,
    /// The caller sent something invalid.
    BadRequest,
    /// The caller is not authenticated.
    Unauthorized,
    /// The request conflicts with the current state.
    Conflict,
    /// The route or command does not exist.
    NotFound,
    /// The component is in the wrong state for the call.
    InvalidState,
    /// The operation or method is not supported.
    Unsupported,
}

impl ErrorCategory {
    /// The exact category string used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "Unknown",
            Self::Internal => "Internal",
            Self::Misconfiguration => "Misconfiguration",
            Self::NoResponse => "NoResponse",
            Self::FailedInvocation => "FailedInvocation",
            Self::FileError => "FileError",
            Self::BadRequest => "BadRequest",
            Self::Unauthorized => "Unauthorized",
            Self::Conflict => "Conflict",
            Self::NotFound => "NotFound",
            Self::InvalidState => "InvalidState",
            Self::Unsupported => "Unsupported",
        }
    }

    /// Parses a wire category string; unknown strings give [`ErrorCategory::Unknown`].
    pub fn parse(s: &str) -> Self {
        match s {
            "Internal" => Self::Internal,
            "Misconfiguration" => Self::Misconfiguration,
            "NoResponse" => Self::NoResponse,
            "FailedInvocation" => Self::FailedInvocation,
            "FileError" => Self::FileError,
            "BadRequest" => Self::BadRequest,
            "Unauthorized" => Self::Unauthorized,
            "Conflict" => Self::Conflict,
            "NotFound" => Self::NotFound,
            "InvalidState" => Self::InvalidState,
            "Unsupported" => Self::Unsupported,
            _ => Self::Unknown,
        }
    }

    /// The HTTP status of a category: the single category → status mapping of the product.
    ///
    /// `NoResponse` is 503 (a store that is down is a temporary condition the client may retry);
    /// `Unsupported` is 405 unless the error sets another status (415 for a content type).
    pub fn default_status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::Unsupported => 405,
            Self::NoResponse => 503,
            Self::Unknown
            | Self::Internal
            | Self::Misconfiguration
            | Self::FailedInvocation
            | Self::FileError
            | Self::InvalidState => 500,
        }
    }
}

impl fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An application error: category, status, code, message, details, correlation id and cause.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApplicationError {
    /// The Pip category.
    pub category: ErrorCategory,
    /// The HTTP status (defaults to the category's status).
    pub status: u16,
    /// A machine-readable code such as `INVALID_DATA`.
    pub code: String,
    /// A human-readable message. Never contains session data, paths or stack traces.
    pub message: String,
    /// Structured details.
    pub details: Map<String, Value>,
    /// The correlation id of the call that failed.
    pub correlation_id: Option<String>,
    /// The text of the underlying cause (kept for logs; not sent for 5xx errors).
    pub cause: Option<String>,
}

impl ApplicationError {
    /// Creates an error of a category with its default status.
    pub fn new(category: ErrorCategory, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            category,
            status: category.default_status(),
            code: code.into(),
            message: message.into(),
            details: Map::new(),
            correlation_id: None,
            cause: None,
        }
    }

    /// A `BadRequest` (400) error.
    pub fn bad_request(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCategory::BadRequest, code, message)
    }

    /// A `NotFound` (404) error.
    pub fn not_found(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCategory::NotFound, code, message)
    }

    /// A `Conflict` (409) error.
    pub fn conflict(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCategory::Conflict, code, message)
    }

    /// An `Unauthorized` (401) error.
    pub fn unauthorized(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCategory::Unauthorized, code, message)
    }

    /// An `Internal` (500) error.
    pub fn internal(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCategory::Internal, code, message)
    }

    /// A `Misconfiguration` (500) error, raised while reading configuration.
    pub fn config(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCategory::Misconfiguration, code, message)
    }

    /// A `NoResponse` (503) error: a dependency did not answer.
    pub fn no_response(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCategory::NoResponse, code, message)
    }

    /// An `InvalidState` (500) error.
    pub fn invalid_state(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCategory::InvalidState, code, message)
    }

    /// An `Unsupported` (405) error.
    pub fn unsupported(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCategory::Unsupported, code, message)
    }

    /// A `FileError` (500) error.
    pub fn file_error(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCategory::FileError, code, message)
    }

    /// Overrides the HTTP status.
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Adds one detail.
    #[must_use]
    pub fn with_details(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// Records the cause's text.
    #[must_use]
    pub fn with_cause(mut self, cause: impl fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }

    /// Sets the correlation id (keeps an existing one when `cid` is `None`).
    #[must_use]
    pub fn with_correlation_id(mut self, cid: Option<&str>) -> Self {
        if let Some(cid) = cid {
            self.correlation_id = Some(cid.to_string());
        }
        self
    }

    /// Whether the error is the server's fault (status ≥ 500).
    pub fn is_server_error(&self) -> bool {
        self.status >= 500
    }

    /// Logs a server error (status ≥ 500) with its cause: every transport calls this before it
    /// renders the error, so the log has the full chain while the reply says little.
    pub fn log_if_server_error(&self) {
        if self.is_server_error() {
            tracing::error!(
                code = %self.code,
                category = %self.category,
                cause = self.cause.as_deref().unwrap_or(""),
                correlation_id = self.correlation_id.as_deref().unwrap_or(""),
                "Request failed: {}.",
                self.message
            );
        }
    }

    /// The wire form. For server errors the cause is left out (it goes to the log only).
    pub fn to_description(&self) -> ErrorDescription {
        ErrorDescription {
            r#type: None,
            category: self.category.as_str().to_string(),
            status: self.status,
            code: self.code.clone(),
            message: self.message.clone(),
            details: if self.details.is_empty() { None } else { Some(self.details.clone()) },
            correlation_id: self.correlation_id.clone(),
            cause: if self.is_server_error() { None } else { self.cause.clone() },
        }
    }

    /// Rebuilds an error from its wire form (used by clients).
    pub fn from_description(d: &ErrorDescription) -> Self {
        Self {
            category: ErrorCategory::parse(&d.category),
            status: d.status,
            code: d.code.clone(),
            message: d.message.clone(),
            details: d.details.clone().unwrap_or_default(),
            correlation_id: d.correlation_id.clone(),
            cause: d.cause.clone(),
        }
    }
}

/// The ErrorDescription JSON every failing response carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDescription {
    /// Always `null` (kept for Pip clients, which read it).
    #[serde(default)]
    pub r#type: Option<String>,
    /// The category string.
    pub category: String,
    /// The HTTP status.
    pub status: u16,
    /// The machine code.
    pub code: String,
    /// The message.
    pub message: String,
    /// Structured details, or `null`.
    #[serde(default)]
    pub details: Option<Map<String, Value>>,
    /// The correlation id of the failed call.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// The cause's message (client errors only).
    #[serde(default)]
    pub cause: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_map_to_statuses() {
        assert_eq!(ErrorCategory::BadRequest.default_status(), 400);
        assert_eq!(ErrorCategory::Unauthorized.default_status(), 401);
        assert_eq!(ErrorCategory::NotFound.default_status(), 404);
        assert_eq!(ErrorCategory::Conflict.default_status(), 409);
        assert_eq!(ErrorCategory::Unsupported.default_status(), 405);
        assert_eq!(ErrorCategory::NoResponse.default_status(), 503);
        for c in [
            ErrorCategory::Unknown,
            ErrorCategory::Internal,
            ErrorCategory::Misconfiguration,
            ErrorCategory::FailedInvocation,
            ErrorCategory::FileError,
            ErrorCategory::InvalidState,
        ] {
            assert_eq!(c.default_status(), 500, "{c}");
            assert_eq!(ErrorCategory::parse(c.as_str()), c);
        }
        assert_eq!(ErrorCategory::parse("Nonsense"), ErrorCategory::Unknown);
    }

    #[test]
    fn description_round_trips_and_hides_server_causes() {
        let e = ApplicationError::conflict("SESSION_CLOSED", "Session is closed")
            .with_details("session_id", "abc")
            .with_cause("boom")
            .with_correlation_id(Some("c1"));
        let d = e.to_description();
        let json = serde_json::to_value(&d).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"type": null, "category": "Conflict", "status": 409,
                "code": "SESSION_CLOSED", "message": "Session is closed",
                "details": {"session_id": "abc"}, "correlation_id": "c1", "cause": "boom"})
        );
        assert_eq!(ApplicationError::from_description(&d), e);
        let internal = ApplicationError::internal("X", "Internal error").with_cause("secret path");
        assert_eq!(internal.to_description().cause, None);
    }
}
