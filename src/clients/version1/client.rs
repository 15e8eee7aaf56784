//! The client contract of the sessions service: [`SessionsClientV1`], its typed error
//! [`SessionsClientError`] and the optimistic-concurrency helpers driven by
//! [`ConcurrencyControl`].
//!
//! Every implementation (HTTP, direct) reports failures through the same error enum, built from
//! the service's [`ApplicationError`] by one mapping ([`SessionsClientError::from`]), so code
//! written against the trait behaves the same whichever client it is given.

use crate::data::version1::errors::{SESSION_CLOSED, SESSION_LIMIT, SESSION_VERSION_CONFLICT};
use crate::data::version1::{OpenSessionRequest, SessionV1, SessionValidity, SessionsFilter};
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::errors::{ApplicationError, ErrorCategory};
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::fmt;
use std::future::Future;

/// What a failed call reported: the service's category, code, message and details, kept as
/// they came.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorInfo {
    /// The Pip category the service reported (`NoResponse` for transport failures).
    pub category: ErrorCategory,
    /// The HTTP status of the answer, `None` when no answer arrived.
    pub status: Option<u16>,
    /// The machine code, such as `INVALID_DATA` or `SESSION_VERSION_CONFLICT`.
    pub code: String,
    /// The human-readable message.
    pub message: String,
    /// Structured details (`details.version` for a version conflict, for example).
    pub details: Map<String, Value>,
    /// The correlation id of the failed call.
    pub correlation_id: Option<String>,
    /// The cause's text, when there was one (a transport error, a client error's cause).
    pub cause: Option<String>,
}

impl fmt::Display for ErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl ErrorInfo {
    /// Information for a failure the client itself detected (no answer, bad answer).
    pub fn new(category: ErrorCategory, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            category,
            status: None,
            code: code.into(),
            message: message.into(),
            details: Map::new(),
            correlation_id: None,
            cause: None,
        }
    }
}

/// A failed sessions call, by what the caller can do about it.
///
/// | variant | from |
/// |---|---|
/// | `BadRequest` | category `BadRequest` (400, 408, 413), `Unsupported` (405, 415) |
/// | `Unauthorized` | `Unauthorized` (401; a bare 401/403 without a body) |
/// | `NotFound` | `NotFound` (404: unknown route or command, never an unknown session) |
/// | `Closed` | `Conflict` with code `SESSION_CLOSED` (the session is closed or has expired) |
/// | `Conflict` | any other `Conflict` (409): `SESSION_VERSION_CONFLICT`, `SESSION_LIMIT`, … |
/// | `Unavailable` | `NoResponse` (503), a bare 502/503/504, refused connections, timeouts |
/// | `Internal` | `Internal`, `Unknown`, `Misconfiguration`, `InvalidState`, `FailedInvocation`, `FileError`, undecodable answers |
///
/// ```
/// use service_sessions::clients::version1::{SessionsClientError, SessionsErrorKind};
/// use service_sessions::toolkit::errors::ApplicationError;
///
/// let e = SessionsClientError::from(
///     ApplicationError::conflict("SESSION_VERSION_CONFLICT", "Session was changed by another request")
///         .with_details("version", 7),
/// );
/// assert!(matches!(e, SessionsClientError::Conflict(_)));
/// assert_eq!(e.kind(), SessionsErrorKind::VersionConflict);
/// assert_eq!(e.code(), "SESSION_VERSION_CONFLICT");
/// assert_eq!(e.current_version(), Some(7));
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SessionsClientError {
    /// The request was invalid (fix the call, do not retry).
    #[error("Bad request: {0}")]
    BadRequest(ErrorInfo),
    /// The caller is not authenticated (API key missing or wrong).
    #[error("Unauthorized: {0}")]
    Unauthorized(ErrorInfo),
    /// The route or command does not exist (a wrong base route or an older server).
    #[error("Not found: {0}")]
    NotFound(ErrorInfo),
    /// The session is closed (explicitly, or because it expired).
    #[error("Session closed: {0}")]
    Closed(ErrorInfo),
    /// The request conflicts with the current state (stale version, session limit).
    #[error("Conflict: {0}")]
    Conflict(ErrorInfo),
    /// The service could not be reached or did not answer in time; worth retrying later.
    #[error("Service unavailable: {0}")]
    Unavailable(ErrorInfo),
    /// The service failed, or its answer could not be understood.
    #[error("Internal error: {0}")]
    Internal(ErrorInfo),
}

/// What a failed call means for the caller, one value per outcome worth a branch of its own:
/// the [`SessionsClientError`] variant, with the two conflicts a caller handles differently
/// (a stale version: read again and retry; the per-user limit: close a session or give up) told
/// apart from the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionsErrorKind {
    /// [`SessionsClientError::BadRequest`].
    BadRequest,
    /// [`SessionsClientError::Unauthorized`].
    Unauthorized,
    /// [`SessionsClientError::NotFound`].
    NotFound,
    /// [`SessionsClientError::Closed`] (`SESSION_CLOSED`).
    Closed,
    /// [`SessionsClientError::Conflict`] with `SESSION_VERSION_CONFLICT`.
    VersionConflict,
    /// [`SessionsClientError::Conflict`] with `SESSION_LIMIT`.
    SessionLimit,
    /// Any other [`SessionsClientError::Conflict`].
    Conflict,
    /// [`SessionsClientError::Unavailable`].
    Unavailable,
    /// [`SessionsClientError::Internal`].
    Internal,
}

impl SessionsClientError {
    /// The outcome to branch on.
    pub fn kind(&self) -> SessionsErrorKind {
        match self {
            Self::BadRequest(_) => SessionsErrorKind::BadRequest,
            Self::Unauthorized(_) => SessionsErrorKind::Unauthorized,
            Self::NotFound(_) => SessionsErrorKind::NotFound,
            Self::Closed(_) => SessionsErrorKind::Closed,
            Self::Conflict(i) if i.code == SESSION_VERSION_CONFLICT => SessionsErrorKind::VersionConflict,
            Self::Conflict(i) if i.code == SESSION_LIMIT => SessionsErrorKind::SessionLimit,
            Self::Conflict(_) => SessionsErrorKind::Conflict,
            Self::Unavailable(_) => SessionsErrorKind::Unavailable,
            Self::Internal(_) => SessionsErrorKind::Internal,
        }
    }

    /// The kept information of any variant.
    pub fn info(&self) -> &ErrorInfo {
        match self {
            Self::BadRequest(i)
            | Self::Unauthorized(i)
            | Self::NotFound(i)
            | Self::Closed(i)
            | Self::Conflict(i)
            | Self::Unavailable(i)
            | Self::Internal(i) => i,
        }
    }

    fn info_mut(&mut self) -> &mut ErrorInfo {
        match self {
            Self::BadRequest(i)
            | Self::Unauthorized(i)
            | Self::NotFound(i)
            | Self::Closed(i)
            | Self::Conflict(i)
            | Self::Unavailable(i)
            | Self::Internal(i) => i,
        }
    }

    /// The machine code.
    pub fn code(&self) -> &str {
        &self.info().code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.info().message
    }

    /// The structured details.
    pub fn details(&self) -> &Map<String, Value> {
        &self.info().details
    }

    /// The correlation id of the failed call.
    pub fn correlation_id(&self) -> Option<&str> {
        self.info().correlation_id.as_deref()
    }

    /// Whether this is a `SESSION_VERSION_CONFLICT`.
    pub fn is_version_conflict(&self) -> bool {
        self.kind() == SessionsErrorKind::VersionConflict
    }

    /// The session's current version reported by a `SESSION_VERSION_CONFLICT`.
    pub fn current_version(&self) -> Option<i64> {
        if self.is_version_conflict() {
            self.details().get("version").and_then(Value::as_i64)
        } else {
            None
        }
    }

    /// Whether the failure is temporary (the service was unavailable).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Classifies an error by HTTP status alone (an answer without an ErrorDescription body).
    pub fn from_status(status: u16, info: ErrorInfo) -> Self {
        match status {
            401 | 403 => Self::Unauthorized(info),
            404 => Self::NotFound(info),
            409 => Self::Conflict(info),
            502..=504 => Self::Unavailable(info),
            400..=499 => Self::BadRequest(info),
            _ => Self::Internal(info),
        }
    }

    /// Fills the correlation id when the error does not carry one.
    #[must_use]
    pub fn with_correlation_id(mut self, cid: Option<&str>) -> Self {
        let info = self.info_mut();
        if info.correlation_id.is_none() {
            info.correlation_id = cid.map(str::to_string);
        }
        self
    }
}

impl From<ApplicationError> for SessionsClientError {
    fn from(e: ApplicationError) -> Self {
        let status = e.status;
        let category = e.category;
        let code_is_closed = e.code == SESSION_CLOSED;
        let info = ErrorInfo {
            category,
            status: Some(status),
            code: e.code,
            message: e.message,
            details: e.details,
            correlation_id: e.correlation_id,
            cause: e.cause,
        };
        match category {
            ErrorCategory::BadRequest | ErrorCategory::Unsupported => Self::BadRequest(info),
            ErrorCategory::Unauthorized => Self::Unauthorized(info),
            ErrorCategory::NotFound => Self::NotFound(info),
            ErrorCategory::Conflict if code_is_closed => Self::Closed(info),
            ErrorCategory::Conflict => Self::Conflict(info),
            ErrorCategory::NoResponse => Self::Unavailable(info),
            ErrorCategory::Unknown => Self::from_status(status, info),
            ErrorCategory::Internal
            | ErrorCategory::Misconfiguration
            | ErrorCategory::InvalidState
            | ErrorCategory::FailedInvocation
            | ErrorCategory::FileError => Self::Internal(info),
        }
    }
}

impl From<SessionsClientError> for ApplicationError {
    fn from(e: SessionsClientError) -> Self {
        let i = match e {
            SessionsClientError::BadRequest(i)
            | SessionsClientError::Unauthorized(i)
            | SessionsClientError::NotFound(i)
            | SessionsClientError::Closed(i)
            | SessionsClientError::Conflict(i)
            | SessionsClientError::Unavailable(i)
            | SessionsClientError::Internal(i) => i,
        };
        Self {
            category: i.category,
            status: i.status.unwrap_or_else(|| i.category.default_status()),
            code: i.code,
            message: i.message,
            details: i.details,
            correlation_id: i.correlation_id,
            cause: i.cause,
        }
    }
}

/// How [`SessionsClientV1::update_data`] and [`SessionsClientV1::update_user`] guard against
/// concurrent writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConcurrencyControl {
    /// No version is sent: the last write wins.
    #[default]
    LastWriteWins,
    /// The write applies only if the session is still at this version; otherwise it fails with
    /// [`SessionsClientError::Conflict`] (`SESSION_VERSION_CONFLICT`, `details.version` = the
    /// current version).
    Strict(i64),
    /// Reads the current version and writes with it; on `SESSION_VERSION_CONFLICT` it takes the
    /// newest version and writes again, at most `attempts` writes in all (0 counts as 1).
    Retry {
        /// Most writes tried.
        attempts: u32,
    },
}

impl ConcurrencyControl {
    /// Attempts of [`ConcurrencyControl::retry`].
    pub const DEFAULT_ATTEMPTS: u32 = 5;

    /// `Retry` with [`ConcurrencyControl::DEFAULT_ATTEMPTS`].
    pub fn retry() -> Self {
        Self::Retry { attempts: Self::DEFAULT_ATTEMPTS }
    }
}

/// Shorthand for the result of a client call.
pub type ClientResult<T> = Result<T, SessionsClientError>;

/// The sessions service, as a caller sees it: the eight Pip commands and the lifecycle
/// extensions, one method each, plus optimistic-concurrency helpers.
///
/// Every method takes the correlation id first, like Pip clients. An unknown session id is not
/// an error: the by-id calls answer `Ok(None)` (HTTP 204). Implemented by
/// [`SessionsHttpClientV1`](super::SessionsHttpClientV1) (over the network) and
/// [`SessionsDirectClientV1`](super::SessionsDirectClientV1) (in process); the trait is object
/// safe, so code can hold an `Arc<dyn SessionsClientV1>` and not care which.
///
/// ```no_run
/// use service_sessions::clients::version1::{ConcurrencyControl, SessionsClientV1, SessionsHttpClientV1};
/// use service_sessions::data::version1::OpenSessionRequest;
/// use std::sync::Arc;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client: Arc<dyn SessionsClientV1> = Arc::new(SessionsHttpClientV1::from_uri("http://localhost:8080")?);
/// let request = OpenSessionRequest { user_id: "u1".into(), ..Default::default() };
/// let session = client.open_session(Some("req-1"), request).await?;
/// let data = serde_json::json!({"cart": ["book"]});
/// client.update_data(Some("req-2"), &session.id, data, ConcurrencyControl::retry()).await?;
/// client.close_session(Some("req-3"), &session.id, None).await?;
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait SessionsClientV1: Send + Sync {
    /// A page of sessions (list items leave out `user` and `data`).
    ///
    /// # Errors
    /// See [`SessionsClientError`].
    async fn get_sessions(
        &self,
        correlation_id: Option<&str>,
        filter: &SessionsFilter,
        paging: &PagingParams,
    ) -> ClientResult<DataPage<SessionV1>>;

    /// A session by id (closed ones too); `None` for an unknown id.
    ///
    /// # Errors
    /// See [`SessionsClientError`].
    async fn get_session_by_id(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
    ) -> ClientResult<Option<SessionV1>>;

    /// Opens a session.
    ///
    /// # Errors
    /// `Conflict` with `SESSION_LIMIT` when the user is at the limit; `BadRequest` for invalid
    /// parameters (`ttl` out of range, over-long text).
    async fn open_session(&self, correlation_id: Option<&str>, request: OpenSessionRequest) -> ClientResult<SessionV1>;

    /// Replaces the session's data; with `version`, only if the session is still at it.
    ///
    /// # Errors
    /// `Closed` for a closed or expired session, `Conflict` (`SESSION_VERSION_CONFLICT`) for a
    /// stale version.
    async fn store_session_data(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        data: Value,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>>;

    /// Replaces the session's cached user; with `version`, only if the session is still at it.
    ///
    /// # Errors
    /// As [`SessionsClientV1::store_session_data`].
    async fn update_session_user(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        user: Value,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>>;

    /// Closes a session; closing a closed session returns it unchanged.
    ///
    /// # Errors
    /// `Conflict` (`SESSION_VERSION_CONFLICT`) for a stale version of an open session.
    async fn close_session(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>>;

    /// Closes every expired session now.
    ///
    /// # Errors
    /// See [`SessionsClientError`].
    async fn close_expired_sessions(&self, correlation_id: Option<&str>) -> ClientResult<()>;

    /// Deletes a session (open or closed) and returns it as it was; with `version`, only if
    /// the session is still at it.
    ///
    /// # Errors
    /// `Conflict` (`SESSION_VERSION_CONFLICT`) for a stale version.
    async fn delete_session_by_id(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>>;

    /// Refreshes `request_time` (and `expire_time`) of an open session (extension).
    ///
    /// # Errors
    /// As [`SessionsClientV1::store_session_data`].
    async fn touch_session(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>>;

    /// Whether a session is valid now, without touching it (extension).
    ///
    /// # Errors
    /// See [`SessionsClientError`].
    async fn validate_session(&self, correlation_id: Option<&str>, session_id: &str) -> ClientResult<SessionValidity>;

    /// Closes every open session of a user, except `except_session_id`; returns how many
    /// (extension).
    ///
    /// # Errors
    /// See [`SessionsClientError`].
    async fn close_user_sessions(
        &self,
        correlation_id: Option<&str>,
        user_id: &str,
        except_session_id: Option<&str>,
    ) -> ClientResult<u64>;

    /// Moves an open session to a fresh id; the old id stops working at once (extension).
    ///
    /// # Errors
    /// As [`SessionsClientV1::store_session_data`].
    async fn rotate_session_id(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>>;

    /// Deletes closed sessions past the retention period now; returns how many (extension).
    ///
    /// # Errors
    /// See [`SessionsClientError`].
    async fn purge_sessions(&self, correlation_id: Option<&str>) -> ClientResult<u64>;

    /// Replaces the session's data under a [`ConcurrencyControl`] policy.
    ///
    /// # Errors
    /// `Conflict` when `Strict` names a stale version or `Retry` runs out of attempts; `Closed`
    /// for a closed session.
    async fn update_data(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        data: Value,
        control: ConcurrencyControl,
    ) -> ClientResult<Option<SessionV1>> {
        let data = &data;
        controlled_write(self, correlation_id, session_id, control, |version| {
            self.store_session_data(correlation_id, session_id, data.clone(), version)
        })
        .await
    }

    /// Replaces the session's cached user under a [`ConcurrencyControl`] policy.
    ///
    /// # Errors
    /// As [`SessionsClientV1::update_data`].
    async fn update_user(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        user: Value,
        control: ConcurrencyControl,
    ) -> ClientResult<Option<SessionV1>> {
        let user = &user;
        controlled_write(self, correlation_id, session_id, control, |version| {
            self.update_session_user(correlation_id, session_id, user.clone(), version)
        })
        .await
    }

    /// Read-modify-write of the session's data: reads the session, computes the new data from
    /// the current data with `modify`, and stores it under the version it read. On
    /// `SESSION_VERSION_CONFLICT` it reads again and re-applies `modify` to the newest data, at
    /// most `attempts` writes in all (0 counts as 1), so concurrent changes are never lost.
    /// `None` for an unknown session.
    ///
    /// # Errors
    /// `Conflict` when every attempt met a concurrent write; `Closed` for a closed session.
    async fn modify_data(
        &self,
        correlation_id: Option<&str>,
        session_id: &str,
        attempts: u32,
        modify: &(dyn for<'v> Fn(&'v Value) -> Value + Send + Sync),
    ) -> ClientResult<Option<SessionV1>> {
        let mut left = attempts.max(1);
        loop {
            let Some(current) = self.get_session_by_id(correlation_id, session_id).await? else { return Ok(None) };
            let next = modify(current.data.as_ref().unwrap_or(&Value::Null));
            left -= 1;
            match self.store_session_data(correlation_id, session_id, next, Some(current.version)).await {
                Err(e) if left > 0 && e.is_version_conflict() => {}
                other => return other,
            }
        }
    }
}

/// One write under a concurrency policy; `write` is called with the version to send.
async fn controlled_write<C, F, Fut>(
    client: &C,
    correlation_id: Option<&str>,
    session_id: &str,
    control: ConcurrencyControl,
    write: F,
) -> ClientResult<Option<SessionV1>>
where
    C: SessionsClientV1 + ?Sized,
    F: Fn(Option<i64>) -> Fut + Send + Sync,
    Fut: Future<Output = ClientResult<Option<SessionV1>>> + Send,
{
    match control {
        ConcurrencyControl::LastWriteWins => write(None).await,
        ConcurrencyControl::Strict(version) => write(Some(version)).await,
        ConcurrencyControl::Retry { attempts } => {
            let Some(current) = client.get_session_by_id(correlation_id, session_id).await? else { return Ok(None) };
            let mut version = current.version;
            let mut left = attempts.max(1);
            loop {
                left -= 1;
                match write(Some(version)).await {
                    Err(e) if left > 0 && e.is_version_conflict() => {
                        // The conflict names the current version; re-read only if it does not.
                        version = match e.current_version() {
                            Some(v) => v,
                            None => match client.get_session_by_id(correlation_id, session_id).await? {
                                Some(s) => s.version,
                                None => return Ok(None),
                            },
                        };
                    }
                    other => return other,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::version1::errors::SESSION_EXISTS;

    fn map(e: ApplicationError) -> SessionsClientError {
        SessionsClientError::from(e)
    }

    #[test]
    fn every_category_maps_to_one_variant() {
        use ErrorCategory as C;
        use SessionsErrorKind as K;
        let cases = [
            (C::BadRequest, "INVALID_DATA", K::BadRequest),
            (C::Unsupported, "METHOD_NOT_ALLOWED", K::BadRequest),
            (C::Unauthorized, "UNAUTHORIZED", K::Unauthorized),
            (C::NotFound, "ROUTE_NOT_FOUND", K::NotFound),
            (C::Conflict, SESSION_CLOSED, K::Closed),
            (C::Conflict, SESSION_VERSION_CONFLICT, K::VersionConflict),
            (C::Conflict, SESSION_LIMIT, K::SessionLimit),
            (C::Conflict, SESSION_EXISTS, K::Conflict),
            (C::NoResponse, "MAINTENANCE", K::Unavailable),
            (C::Internal, "INTERNAL", K::Internal),
            (C::Unknown, "UNKNOWN", K::Internal),
            (C::Misconfiguration, "BAD_CONFIG", K::Internal),
            (C::InvalidState, "NOT_REFERENCED", K::Internal),
            (C::FailedInvocation, "EXEC_FAILED", K::Internal),
            (C::FileError, "READ_FAILED", K::Internal),
        ];
        for (category, code, expected) in cases {
            let source = ApplicationError::new(category, code, "message")
                .with_details("k", "v")
                .with_correlation_id(Some("cid"))
                .with_cause("why");
            let e = map(source.clone());
            assert_eq!(e.kind(), expected, "{category} {code}");
            assert_eq!(e.code(), code);
            assert_eq!(e.message(), "message");
            assert_eq!(e.details().get("k"), Some(&Value::from("v")));
            assert_eq!(e.correlation_id(), Some("cid"));
            assert_eq!(ApplicationError::from(e), source, "round trip of {category}");
        }
    }

    #[test]
    fn unknown_categories_fall_back_to_the_status() {
        use SessionsErrorKind as K;
        let e = |status| map(ApplicationError::new(ErrorCategory::Unknown, "X", "m").with_status(status)).kind();
        let got: Vec<K> = [503, 401, 403, 404, 409, 422, 500].into_iter().map(e).collect();
        assert_eq!(
            got,
            [K::Unavailable, K::Unauthorized, K::Unauthorized, K::NotFound, K::Conflict, K::BadRequest, K::Internal]
        );
    }

    #[test]
    fn version_conflicts_carry_the_current_version() {
        let e = map(ApplicationError::conflict(SESSION_VERSION_CONFLICT, "m").with_details("version", 4));
        assert!(e.is_version_conflict());
        assert_eq!(e.current_version(), Some(4));
        let limit = map(ApplicationError::conflict(SESSION_LIMIT, "m").with_details("version", 4));
        assert!(!limit.is_version_conflict());
        assert_eq!(limit.current_version(), None);
        let filled = limit.with_correlation_id(Some("c2"));
        assert_eq!(filled.correlation_id(), Some("c2"));
        assert_eq!(filled.to_string(), "Conflict: m (SESSION_LIMIT)");
    }
}
