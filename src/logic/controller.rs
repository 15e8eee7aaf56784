//! `SessionsController` (`service-sessions:controller:default:*:1.0`): the eight operations of
//! the sessions contract with expiry, closed-session rules and the background sweep.
//!
//! Expiry is checked on every read and write, not only by the sweep: a write is one conditional
//! step (open, not idle-expired) and when the condition fails the outcome tells why, so an
//! expired session is closed on the spot and reported closed. Time comes from the optional
//! `*:clock:*:*:1.0` reference (the system clock by default). The sweep task is owned by the
//! controller: started on open, cancelled and joined on close.

use super::commands::sessions_command_set;
use crate::data::version1::{new_session_id, SessionV1, SessionsFilter};
use crate::persistence::{SessionChange, SessionUpdate, SessionsPersistence, UpdateOutcome, WriteCondition};
use crate::toolkit::commands::{CommandSet, Commandable};
use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::descriptor::Descriptor;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::references::References;
use crate::toolkit::time::{Clock, SystemClock};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::Value;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// `options.*` of the controller.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ControllerOptions {
    /// Idle timeout in ms (default 86 400 000 = 24 h); 0 disables idle expiry.
    pub expire_timeout: u64,
    /// Period of the expiry sweep in ms (default 900 000 = 15 min); 0 disables the sweep.
    pub cleanup_interval: u64,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self { expire_timeout: 86_400_000, cleanup_interval: 900_000 }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ControllerSettings {
    options: ControllerOptions,
    dependencies: ControllerDependencies,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ControllerDependencies {
    persistence: Option<String>,
    clock: Option<String>,
}

/// Parameters of `open_session`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenSessionRequest {
    /// The user (required).
    pub user_id: String,
    /// Display name.
    pub user_name: Option<String>,
    /// Client address.
    pub address: Option<String>,
    /// Client description.
    pub client: Option<String>,
    /// Cached user object (any JSON).
    pub user: Value,
    /// Initial session data (any JSON).
    pub data: Value,
}

/// The `SESSION_CLOSED` conflict.
fn session_closed(id: &str) -> ApplicationError {
    ApplicationError::conflict("SESSION_CLOSED", "Session is closed").with_details("session_id", id)
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
    sweep: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
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
            sweep: Mutex::new(None),
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

    /// The idle cutoff at `now`: sessions with `request_time` before it are expired.
    fn idle_cutoff(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let ms = i64::try_from(self.options.expire_timeout).unwrap_or(i64::MAX);
        (ms > 0).then(|| now - chrono::Duration::milliseconds(ms))
    }

    fn is_expired(&self, s: &SessionV1, now: DateTime<Utc>) -> bool {
        s.active && self.idle_cutoff(now).is_some_and(|c| s.request_time < c)
    }

    /// Closes an expired session found by a command; returns the session as it is afterwards.
    async fn expire(
        &self,
        cid: Option<&str>,
        s: SessionV1,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionV1>, ApplicationError> {
        let update = SessionUpdate {
            condition: WriteCondition { require_active: true, idle_cutoff: None, expected_version: Some(s.version) },
            change: SessionChange::Close,
            now,
        };
        Ok(match self.persistence()?.update(cid, &s.id, &update).await? {
            UpdateOutcome::Updated(s) | UpdateOutcome::ConditionFailed(s) => Some(s),
            UpdateOutcome::NotFound => None,
        })
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

    /// A session by id; an expired one is closed on the spot and returned closed.
    ///
    /// # Errors
    /// Store failures.
    pub async fn get_session_by_id(&self, cid: Option<&str>, id: &str) -> Result<Option<SessionV1>, ApplicationError> {
        let now = self.now();
        match self.persistence()?.get_one_by_id(cid, id).await? {
            Some(s) if self.is_expired(&s, now) => self.expire(cid, s, now).await,
            other => Ok(other),
        }
    }

    /// Opens a session with a fresh 128-bit id.
    ///
    /// # Errors
    /// Store failures.
    pub async fn open_session(
        &self,
        cid: Option<&str>,
        request: OpenSessionRequest,
    ) -> Result<SessionV1, ApplicationError> {
        let now = self.now();
        let mut attempt = 0;
        loop {
            let mut s = SessionV1::open(new_session_id()?, request.user_id.clone(), now);
            s.user_name = request.user_name.clone();
            s.address = request.address.clone();
            s.client = request.client.clone();
            s.user = Some(request.user.clone());
            s.data = Some(request.data.clone());
            match self.persistence()?.create(cid, s).await {
                // A 128-bit collision is practically impossible; one retry covers it anyway.
                Err(e) if e.code == "SESSION_EXISTS" && attempt == 0 => attempt += 1,
                other => return other,
            }
        }
    }

    async fn write(
        &self,
        cid: Option<&str>,
        id: &str,
        change: SessionChange,
        expected_version: Option<i64>,
    ) -> Result<Option<SessionV1>, ApplicationError> {
        let now = self.now();
        let condition = WriteCondition { require_active: true, idle_cutoff: self.idle_cutoff(now), expected_version };
        match self.persistence()?.update(cid, id, &SessionUpdate { condition, change, now }).await? {
            UpdateOutcome::Updated(s) => Ok(Some(s)),
            UpdateOutcome::NotFound => Ok(None),
            UpdateOutcome::ConditionFailed(current) => {
                if self.is_expired(&current, now) {
                    self.expire(cid, current, now).await?;
                    Err(session_closed(id))
                } else if !current.active {
                    Err(session_closed(id))
                } else {
                    Err(ApplicationError::conflict(
                        "SESSION_VERSION_CONFLICT",
                        "Session was changed by another request",
                    )
                    .with_details("session_id", id)
                    .with_details("version", current.version))
                }
            }
        }
    }

    /// Replaces the session's data and refreshes `request_time`.
    ///
    /// # Errors
    /// `SESSION_CLOSED` (409) for a closed or expired session; store failures.
    pub async fn store_session_data(
        &self,
        cid: Option<&str>,
        id: &str,
        data: Value,
    ) -> Result<Option<SessionV1>, ApplicationError> {
        self.write(cid, id, SessionChange::StoreData(data), None).await
    }

    /// Replaces the session's cached user and refreshes `request_time`.
    ///
    /// # Errors
    /// `SESSION_CLOSED` (409) for a closed or expired session; store failures.
    pub async fn update_session_user(
        &self,
        cid: Option<&str>,
        id: &str,
        user: Value,
    ) -> Result<Option<SessionV1>, ApplicationError> {
        self.write(cid, id, SessionChange::UpdateUser(user), None).await
    }

    /// Closes a session; closing a closed session returns it unchanged.
    ///
    /// # Errors
    /// Store failures.
    pub async fn close_session(&self, cid: Option<&str>, id: &str) -> Result<Option<SessionV1>, ApplicationError> {
        let now = self.now();
        let condition = WriteCondition { require_active: true, ..WriteCondition::default() };
        Ok(
            match self
                .persistence()?
                .update(cid, id, &SessionUpdate { condition, change: SessionChange::Close, now })
                .await?
            {
                UpdateOutcome::Updated(s) | UpdateOutcome::ConditionFailed(s) => Some(s),
                UpdateOutcome::NotFound => None,
            },
        )
    }

    /// Closes every expired open session; returns how many were closed.
    ///
    /// # Errors
    /// Store failures.
    pub async fn close_expired_sessions(&self, cid: Option<&str>) -> Result<u64, ApplicationError> {
        let now = self.now();
        match self.idle_cutoff(now) {
            Some(cutoff) => self.persistence()?.close_expired(cid, cutoff, now).await,
            None => Ok(0),
        }
    }

    /// Deletes a session (open or closed); returns it as it was.
    ///
    /// # Errors
    /// Store failures.
    pub async fn delete_session_by_id(
        &self,
        cid: Option<&str>,
        id: &str,
    ) -> Result<Option<SessionV1>, ApplicationError> {
        self.persistence()?.delete_by_id(cid, id).await
    }

    /// One run of the expiry sweep (the step the background task repeats).
    pub async fn sweep_once(&self) {
        match self.close_expired_sessions(Some("cleanup")).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(closed = n, "Closed expired sessions."),
            Err(e) => tracing::warn!(error = %e, code = %e.code, "Expiry sweep failed; it will run again."),
        }
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
        if self.options.cleanup_interval == 0 || self.sweep.lock().is_some() {
            return Ok(());
        }
        let period = Duration::from_millis(self.options.cleanup_interval);
        let token = CancellationToken::new();
        let me = self.me.clone();
        let stop = token.clone();
        let first = tokio::time::Instant::now() + period;
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(first, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = ticks.tick() => match me.upgrade() {
                        Some(c) => c.sweep_once().await,
                        None => break,
                    },
                }
            }
        });
        *self.sweep.lock() = Some((token, task));
        Ok(())
    }

    async fn close(&self, _cid: Option<&str>) -> Result<(), ApplicationError> {
        let sweep = self.sweep.lock().take();
        if let Some((token, task)) = sweep {
            token.cancel();
            let _ = task.await;
        }
        Ok(())
    }
}
