//! Sessions persistence: the [`SessionsPersistence`] contract and its backends.
//!
//! The contract is shaped so that every write is one atomic step on every backend: a write is a
//! [`SessionUpdate`] — a [`WriteCondition`] checked and a [`SessionChange`] applied together —
//! and its [`UpdateOutcome`] carries the current record when the condition failed, so the
//! controller can tell "closed", "expired" and "stale version" apart without a second read.
//! The in-process backends share [`WriteCondition::holds`] and [`SessionChange::apply`]; the
//! MongoDB backend expresses the same rules as a query filter and update document.

pub mod file;
pub mod index;
pub mod memory;

use crate::data::version1::{SessionV1, SessionsFilter};
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::errors::ApplicationError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Default largest page.
pub const DEFAULT_MAX_PAGE_SIZE: u64 = 100;

/// What must hold for a write to apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCondition {
    /// The session must be open.
    pub require_active: bool,
    /// The session must not be idle-expired: `request_time >= idle_cutoff`.
    pub idle_cutoff: Option<DateTime<Utc>>,
    /// The session must be at this version.
    pub expected_version: Option<i64>,
}

impl WriteCondition {
    /// Whether `s` satisfies the condition.
    pub fn holds(&self, s: &SessionV1) -> bool {
        (!self.require_active || s.active)
            && self.idle_cutoff.is_none_or(|c| s.request_time >= c)
            && self.expected_version.is_none_or(|v| v == s.version)
    }
}

/// The change a write makes. Every change refreshes `request_time` and increments `version`.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionChange {
    /// Replace `data`.
    StoreData(Value),
    /// Replace `user`.
    UpdateUser(Value),
    /// Close: `active=false`, `close_time=now`, `user`/`data` null.
    Close,
}

impl SessionChange {
    /// Applies the change to a record at time `now`.
    pub fn apply(&self, s: &mut SessionV1, now: DateTime<Utc>) {
        match self {
            Self::StoreData(v) => s.data = Some(v.clone()),
            Self::UpdateUser(v) => s.user = Some(v.clone()),
            Self::Close => {
                s.active = false;
                s.close_time = Some(now);
                s.user = Some(Value::Null);
                s.data = Some(Value::Null);
            }
        }
        s.request_time = now;
        s.version += 1;
    }
}

/// A conditional write.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionUpdate {
    /// What must hold.
    pub condition: WriteCondition,
    /// What changes.
    pub change: SessionChange,
    /// The time of the change.
    pub now: DateTime<Utc>,
}

/// What a conditional write did.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOutcome {
    /// The write applied; the record after it.
    Updated(SessionV1),
    /// No record has the id.
    NotFound,
    /// The condition failed; the record as it is.
    ConditionFailed(SessionV1),
}

/// Storage of sessions. Every method is one atomic step.
#[async_trait]
pub trait SessionsPersistence: Send + Sync {
    /// A page of sessions matching `filter`, ordered by `request_time` descending then `id`
    /// ascending, without `user` and `data`. `total` is counted only when `paging.total`.
    async fn get_page_by_filter(
        &self,
        correlation_id: Option<&str>,
        filter: &SessionsFilter,
        paging: &PagingParams,
    ) -> Result<DataPage<SessionV1>, ApplicationError>;

    /// A full session by id.
    async fn get_one_by_id(
        &self,
        correlation_id: Option<&str>,
        id: &str,
    ) -> Result<Option<SessionV1>, ApplicationError>;

    /// Stores a new session.
    ///
    /// # Errors
    /// `Conflict` / `SESSION_EXISTS` if the id is taken.
    async fn create(&self, correlation_id: Option<&str>, session: SessionV1) -> Result<SessionV1, ApplicationError>;

    /// Applies a conditional change atomically.
    async fn update(
        &self,
        correlation_id: Option<&str>,
        id: &str,
        update: &SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError>;

    /// Closes every open session with `request_time < idle_cutoff` at time `now`; returns how many.
    async fn close_expired(
        &self,
        correlation_id: Option<&str>,
        idle_cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, ApplicationError>;

    /// Deletes a session; returns it as it was.
    async fn delete_by_id(&self, correlation_id: Option<&str>, id: &str)
        -> Result<Option<SessionV1>, ApplicationError>;

    /// Deletes everything (tests and tooling).
    async fn clear(&self, correlation_id: Option<&str>) -> Result<(), ApplicationError>;
}

/// The `SESSION_EXISTS` conflict.
pub fn session_exists(id: &str) -> ApplicationError {
    ApplicationError::conflict("SESSION_EXISTS", "A session with this id already exists").with_details("session_id", id)
}

/// `max_page_size` option shared by every backend's settings.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default)]
pub struct PageOptions {
    /// Largest page `get_sessions` returns (default 100).
    pub max_page_size: u64,
}

impl Default for PageOptions {
    fn default() -> Self {
        Self { max_page_size: DEFAULT_MAX_PAGE_SIZE }
    }
}
