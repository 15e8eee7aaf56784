//! `SessionsController` (`service-sessions:controller:default:*:1.0`): the eight operations of
//! the sessions contract with expiry, closed-session rules and the background sweep.
//!
//! An id that no session can have (see [`is_session_id_shape`]) is answered as an unknown id by
//! every operation without reaching the store, as the original answers any id it does not hold.
//!
//! Expiry is checked on every read and write, not only by the sweep: a write is one conditional
//! step (open, not idle-expired) and when the condition fails the outcome tells why, so an
//! expired session is closed on the spot and reported closed. Time comes from the optional
//! `*:clock:*:*:1.0` reference (the system clock by default). The sweep task is owned by the
//! controller: started on open, cancelled and joined on close.

mod options;
mod sweep;
mod writes;

use writes::Answer;

pub use options::ControllerOptions;
use options::ControllerSettings;
use sweep::instance_name;

use super::commands::sessions_command_set;
use super::metrics;
use crate::data::version1::errors::{SESSION_CLOSED, SESSION_EXISTS, SESSION_VERSION_CONFLICT};
use crate::data::version1::{
    is_session_id_shape, new_session_id, OpenSessionRequest, SessionV1, SessionValidity, SessionsFilter,
};
use crate::persistence::{
    is_alive, ExpiryPolicy, OpenLimits, SessionAnswer, SessionChange, SessionLimit, SessionState, SessionUpdate,
    SessionsPersistence, UpdateOutcome, WriteCondition,
};
use crate::toolkit::commands::{CommandSet, Commandable};
use crate::toolkit::component::{Component, OwnedTask};
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::json::JsonText;
use crate::toolkit::log::redact_id;
use crate::toolkit::references::References;
use crate::toolkit::time::{Clock, SystemClock};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// How many times [`SessionsController::merge_session_data`] reads and writes before it gives up
/// on a session that keeps changing under it.
pub const MERGE_ATTEMPTS: u32 = 8;

/// The `SESSION_VERSION_CONFLICT` conflict, with the current version.
fn version_conflict(id: &str, current: i64) -> ApplicationError {
    ApplicationError::conflict(SESSION_VERSION_CONFLICT, "Session was changed by another request")
        .with_details("session_id", id)
        .with_details("version", current)
}

/// The `SESSION_CLOSED` conflict.
fn session_closed(id: &str) -> ApplicationError {
    ApplicationError::conflict(SESSION_CLOSED, "Session is closed").with_details("session_id", id)
}

/// The sessions controller.
pub struct SessionsController {
    options: ControllerOptions,
    persistence_locator: Descriptor,
    clock_locator: Descriptor,
    persistence: OnceLock<Arc<dyn SessionsPersistence>>,
    clock: OnceLock<Arc<dyn Clock>>,
    commands: Arc<CommandSet>,
    me: Weak<SessionsController>,
    sweep: OwnedTask,
    /// This instance's name as the owner of the sweep lease (random, per process start).
    instance: String,
}

impl std::fmt::Debug for SessionsController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionsController").field("options", &self.options).finish()
    }
}

impl SessionsController {
    /// Builds the controller from its entry.
    ///
    /// # Errors
    /// `BAD_CONFIG` / `BAD_DESCRIPTOR` for invalid settings.
    pub fn from_config(config: &ComponentConfig) -> Result<Arc<Self>, ApplicationError> {
        let s: ControllerSettings = config.section()?;
        let persistence_locator = match &s.dependencies.persistence {
            Some(l) => l.parse()?,
            None => Descriptor::new("service-sessions", "persistence", "*", "*", "1.0"),
        };
        let clock_locator = match &s.dependencies.clock {
            Some(l) => l.parse()?,
            None => Descriptor::new("*", "clock", "*", "*", "1.0"),
        };
        Ok(Self::build(s.options, persistence_locator, clock_locator))
    }

    /// Builds a controller wired directly to a persistence and a clock (embedding, tests).
    pub fn with(
        options: ControllerOptions,
        persistence: Arc<dyn SessionsPersistence>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let c = Self::build(
            options,
            Descriptor::new("service-sessions", "persistence", "*", "*", "1.0"),
            Descriptor::new("*", "clock", "*", "*", "1.0"),
        );
        let _ = c.persistence.set(persistence);
        let _ = c.clock.set(clock);
        c
    }

    fn build(options: ControllerOptions, persistence_locator: Descriptor, clock_locator: Descriptor) -> Arc<Self> {
        Arc::new_cyclic(|me: &Weak<Self>| Self {
            options,
            persistence_locator,
            clock_locator,
            persistence: OnceLock::new(),
            clock: OnceLock::new(),
            commands: Arc::new(sessions_command_set(me.clone())),
            me: me.clone(),
            sweep: OwnedTask::new(),
            instance: instance_name(),
        })
    }

    fn persistence(&self) -> Result<&Arc<dyn SessionsPersistence>, ApplicationError> {
        self.persistence
            .get()
            .ok_or_else(|| ApplicationError::invalid_state("NOT_REFERENCED", "Sessions controller has no persistence"))
    }

    fn now(&self) -> DateTime<Utc> {
        match self.clock.get() {
            Some(c) => c.now(),
            None => SystemClock.now(),
        }
    }

    fn ms(v: u64) -> Option<i64> {
        (v > 0).then(|| i64::try_from(v).unwrap_or(i64::MAX))
    }

    /// How `expire_time` is computed from the options.
    pub fn policy(&self) -> ExpiryPolicy {
        ExpiryPolicy {
            idle_timeout: Self::ms(self.options.expire_timeout),
            max_lifetime: Self::ms(self.options.max_lifetime),
        }
    }

    /// The idle cutoff at `now` for records without an `expire_time`.
    fn idle_cutoff(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Self::ms(self.options.expire_timeout)
            .and_then(chrono::Duration::try_milliseconds)
            .and_then(|d| now.checked_sub_signed(d))
    }

    fn is_expired(&self, s: &SessionV1, now: DateTime<Utc>) -> bool {
        self.expired(&SessionState::of(s), now)
    }

    fn expired(&self, s: &SessionState, now: DateTime<Utc>) -> bool {
        s.active && !s.is_alive(Some(now), self.idle_cutoff(now))
    }

    /// Whether a read must act on a session in this state before answering it: close it (it
    /// expired) or, with `touch_on_read`, touch it (its touch is due).
    fn must_act_on_read(&self, s: &SessionState, now: DateTime<Utc>) -> bool {
        self.expired(s, now) || (self.options.touch_on_read && s.active && self.touch_due(s.request_time, now))
    }

    /// What a read does with a session it must act on (see [`Self::must_act_on_read`]); returns
    /// the session as it is afterwards.
    async fn act_on_read(
        &self,
        cid: Option<&str>,
        s: SessionV1,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionV1>, ApplicationError> {
        if self.is_expired(&s, now) {
            self.expire(cid, s, now).await
        } else {
            self.touch_on_read(cid, s, now).await
        }
    }

    /// The condition of a write to an open, unexpired session.
    fn alive_condition(&self, now: DateTime<Utc>, expected_version: Option<i64>) -> WriteCondition {
        WriteCondition {
            require_active: true,
            alive_at: Some(now),
            idle_cutoff: self.idle_cutoff(now),
            expected_version,
        }
    }

    fn update(&self, condition: WriteCondition, change: SessionChange, now: DateTime<Utc>) -> SessionUpdate {
        SessionUpdate { condition, change, now, policy: self.policy() }
    }

    /// Closes an expired session found by a command; returns the session as it is afterwards.
    async fn expire(
        &self,
        cid: Option<&str>,
        s: SessionV1,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionV1>, ApplicationError> {
        let condition =
            WriteCondition { require_active: true, expected_version: Some(s.version), ..Default::default() };
        Ok(match self.persistence()?.update(cid, &s.id, self.update(condition, SessionChange::Close, now)).await? {
            UpdateOutcome::Updated(s) => {
                metrics::closed(metrics::CloseReason::Expired, 1);
                tracing::debug!(session = %redact_id(&s.id), "Expired session closed.");
                Some(s)
            }
            UpdateOutcome::ConditionFailed(s) => Some(s),
            UpdateOutcome::NotFound => None,
        })
    }

    /// Turns a failed write condition into the error it means (closing an expired session).
    async fn refused(
        &self,
        cid: Option<&str>,
        id: &str,
        current: SessionV1,
        now: DateTime<Utc>,
    ) -> Result<ApplicationError, ApplicationError> {
        if self.is_expired(&current, now) {
            self.expire(cid, current, now).await?;
            Ok(session_closed(id))
        } else if !current.active {
            Ok(session_closed(id))
        } else {
            Ok(version_conflict(id, current.version))
        }
    }

    /// A page of sessions (expired ones are closed first, so the page shows them closed).
    ///
    /// # Errors
    /// Store failures.
    pub async fn get_sessions(
        &self,
        cid: Option<&str>,
        filter: &SessionsFilter,
        paging: &PagingParams,
    ) -> Result<DataPage<SessionV1>, ApplicationError> {
        self.close_expired_sessions(cid).await?;
        self.persistence()?.get_page_by_filter(cid, filter, paging).await
    }

    /// [`SessionsController::get_sessions`]'s page as its JSON text (encoded by the store, from
    /// its records where it holds them in memory).
    ///
    /// # Errors
    /// Store failures.
    pub async fn get_sessions_json(
        &self,
        cid: Option<&str>,
        filter: &SessionsFilter,
        paging: &PagingParams,
    ) -> Result<JsonText, ApplicationError> {
        self.close_expired_sessions(cid).await?;
        self.persistence()?.get_page_json(cid, filter, paging).await
    }

    /// A session by id; an expired one is closed on the spot and returned closed. With
    /// `touch_on_read`, a read refreshes `request_time` at most once per `touch_interval`.
    ///
    /// # Errors
    /// Store failures.
    pub async fn get_session_by_id(&self, cid: Option<&str>, id: &str) -> Result<Option<SessionV1>, ApplicationError> {
        if !is_session_id_shape(id) {
            return Ok(None);
        }
        let now = self.now();
        match self.persistence()?.get_one_by_id(cid, id).await? {
            // The writes are boxed: the common read does not carry their futures.
            Some(s) if self.must_act_on_read(&SessionState::of(&s), now) => {
                Box::pin(self.act_on_read(cid, s, now)).await
            }
            other => Ok(other),
        }
    }

    /// [`SessionsController::get_session_by_id`]'s session as its JSON text: the store judges the
    /// session under its lock and, when there is nothing to do (the common read), encodes it
    /// straight from its record; otherwise the session is closed or touched as
    /// `get_session_by_id` does, and then encoded.
    ///
    /// # Errors
    /// Store failures.
    pub async fn get_session_by_id_json(
        &self,
        cid: Option<&str>,
        id: &str,
    ) -> Result<Option<JsonText>, ApplicationError> {
        if !is_session_id_shape(id) {
            return Ok(None);
        }
        let now = self.now();
        let must_act = |s: &SessionState| self.must_act_on_read(s, now);
        match self.persistence()?.get_one_json(cid, id, &must_act).await? {
            Some(SessionAnswer::Text(text)) => Ok(Some(text)),
            Some(SessionAnswer::Session(s)) => {
                Ok(Box::pin(self.act_on_read(cid, *s, now)).await?.map(|s| JsonText::write(&s)))
            }
            None => Ok(None),
        }
    }

    /// `get_session_by_id`'s refresh of `request_time` (`touch_on_read`).
    async fn touch_on_read(
        &self,
        cid: Option<&str>,
        s: SessionV1,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionV1>, ApplicationError> {
        let condition = self.alive_condition(now, Some(s.version));
        let update = self.update(condition, SessionChange::Touch, now);
        Ok(match self.persistence()?.update(cid, &s.id, update).await? {
            UpdateOutcome::Updated(t) | UpdateOutcome::ConditionFailed(t) => Some(t),
            UpdateOutcome::NotFound => None,
        })
    }

    fn touch_due(&self, request_time: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        (now - request_time).num_milliseconds() >= Self::ms(self.options.touch_interval).unwrap_or(0)
    }

    /// Opens a session with a fresh random id (within the per-user limit, when configured).
    ///
    /// # Errors
    /// `INVALID_DATA` for a `ttl` out of range; `SESSION_LIMIT` (409); store failures.
    pub async fn open_session(
        &self,
        cid: Option<&str>,
        request: OpenSessionRequest,
    ) -> Result<SessionV1, ApplicationError> {
        self.open(cid, request).await
    }

    /// [`SessionsController::open_session`]'s session as its JSON text (encoded once, by the
    /// store, without a copy of the session).
    ///
    /// # Errors
    /// As [`SessionsController::open_session`].
    pub async fn open_session_json(
        &self,
        cid: Option<&str>,
        request: OpenSessionRequest,
    ) -> Result<JsonText, ApplicationError> {
        self.open(cid, request).await
    }

    async fn open<T: Answer>(&self, cid: Option<&str>, request: OpenSessionRequest) -> Result<T, ApplicationError> {
        if request.user_id.trim().is_empty() {
            return Err(ApplicationError::bad_request(
                "INVALID_DATA",
                "Validation failed: user_id must not be empty or blank",
            )
            .with_details("field", "user_id"));
        }
        let max_ttl = Self::ms(self.options.max_ttl).unwrap_or(i64::MAX);
        if let Some(ttl) = request.ttl.filter(|t| *t < 1000 || *t > max_ttl) {
            return Err(ApplicationError::bad_request(
                "INVALID_DATA",
                format!("Validation failed: ttl must be between 1000 and {max_ttl} ms"),
            )
            .with_details("ttl", ttl));
        }
        let now = self.now();
        let mut attempt = 0;
        loop {
            let mut s = SessionV1::open(new_session_id()?, request.user_id.clone(), now);
            s.user_name = request.user_name.clone();
            s.address = request.address.clone();
            s.client = request.client.clone();
            s.user = Some(request.user.clone());
            s.data = Some(request.data.clone());
            s.ttl = request.ttl;
            s.expire_time = self.policy().expire_time(&s);
            let store = self.persistence()?;
            let per_user = (self.options.max_sessions_per_user > 0).then(|| SessionLimit {
                max: self.options.max_sessions_per_user,
                policy: self.options.limit_policy,
                now,
                idle_cutoff: self.idle_cutoff(now),
            });
            let max_open = (self.options.max_sessions > 0).then_some(self.options.max_sessions);
            // The id for the log line, kept only when it is written.
            let logged = tracing::enabled!(tracing::Level::DEBUG).then(|| s.id.clone());
            match T::created(store.as_ref(), cid, s, &OpenLimits { per_user, max_open }).await {
                // A collision of 122 random bits is practically impossible; one retry covers it anyway.
                Err(e) if e.code == SESSION_EXISTS && attempt == 0 => attempt += 1,
                other => {
                    if other.is_ok() {
                        metrics::event(metrics::Event::Opened, 1);
                        if let Some(id) = logged {
                            tracing::debug!(session = %redact_id(&id), "Session opened.");
                        }
                    }
                    return other;
                }
            }
        }
    }

    /// Whether a session is valid now, without touching it. Unknown ids are simply not valid.
    ///
    /// # Errors
    /// Store failures.
    pub async fn validate_session(&self, cid: Option<&str>, id: &str) -> Result<SessionValidity, ApplicationError> {
        if !is_session_id_shape(id) {
            return Ok(SessionValidity { is_valid: false, expire_time: None, ttl: None });
        }
        let now = self.now();
        let s = self.persistence()?.get_one_by_id(cid, id).await?;
        Ok(match s {
            Some(s) if s.active && is_alive(&s, Some(now), self.idle_cutoff(now)) => {
                let expire_time = s.expire_time.or_else(|| self.policy().expire_time(&s));
                SessionValidity { is_valid: true, expire_time, ttl: expire_time.map(|t| (t - now).num_milliseconds()) }
            }
            _ => SessionValidity { is_valid: false, expire_time: None, ttl: None },
        })
    }
}

impl Commandable for SessionsController {
    fn command_set(&self) -> Arc<CommandSet> {
        self.commands.clone()
    }
}

#[async_trait]
impl Component for SessionsController {
    fn set_references(&self, references: &References) -> Result<(), ApplicationError> {
        if self.persistence.get().is_none() {
            let p = references.get_one_required::<dyn SessionsPersistence>(&self.persistence_locator)?;
            let _ = self.persistence.set(p);
        }
        if self.clock.get().is_none() {
            if let Some(c) = references.get_one_optional::<dyn Clock>(&self.clock_locator) {
                let _ = self.clock.set(c);
            }
        }
        Ok(())
    }

    async fn open(&self, _cid: Option<&str>) -> Result<(), ApplicationError> {
        if self.options.cleanup_interval == 0 {
            return Ok(());
        }
        let me = self.me.clone();
        self.sweep.start_periodic(Duration::from_millis(self.options.cleanup_interval), move || {
            let me = me.clone();
            async move {
                if let Some(c) = me.upgrade() {
                    c.sweep_once().await;
                }
            }
        });
        Ok(())
    }

    async fn close(&self, _cid: Option<&str>) -> Result<(), ApplicationError> {
        self.sweep.stop().await;
        Ok(())
    }
}
