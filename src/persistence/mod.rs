//! Sessions persistence: the [`SessionsPersistence`] contract and its backends.
//!
//! The contract is shaped so that every write is one atomic step on every backend: a write is a
//! [`SessionUpdate`] — a [`WriteCondition`] checked and a [`SessionChange`] applied together —
//! and its [`UpdateOutcome`] carries the current record when the condition failed, so the
//! controller can tell "closed", "expired" and "stale version" apart without a second read.
//! The in-process backends share [`WriteCondition::holds`] and [`SessionChange::apply`]; the
//! MongoDB backend expresses the same rules as a query filter and update document, the Redis
//! backend as Lua scripts; all of them choose the victims of a per-user limit with
//! [`limit_victims`].
//!
//! Expiry: each open session stores its `expire_time`, computed at every write by
//! [`ExpiryPolicy`] (idle timeout or the session's own `ttl`, capped by the absolute lifetime),
//! so "expired" is one indexed comparison on every backend. A change of the configured timeouts
//! applies to a session from its next write. Records without an `expire_time` (written by the
//! original service) fall back to the idle cutoff on `request_time`.

pub mod file;
pub(crate) mod index;
pub mod instrumented;
pub mod memory;
pub mod mongodb;
pub(crate) mod network;
pub mod node_json;
pub mod redis;

use crate::data::version1::errors::{MAX_SESSIONS, SESSION_EXISTS, SESSION_LIMIT, SESSION_UNREADABLE};
use crate::data::version1::{SessionV1, SessionsFilter};
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::json::{Json, JsonText};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Default largest page.
pub const DEFAULT_MAX_PAGE_SIZE: u64 = 100;

/// The lease the background sweep (expiry and purge) takes, so that of a fleet of instances on one
/// store one sweeps at a time (see [`SessionsPersistence::acquire_lease`]).
pub const SWEEP_LEASE: &str = "sweep";

/// How often a backend that reads, decides and then writes conditionally (MongoDB, Redis) tries
/// again when the record changed between its read and its write; after that many attempts the
/// record as read is the answer.
pub(crate) const WRITE_ATTEMPTS: usize = 5;

/// The read-decide-write loop of the backends whose conditional write is a second step
/// (MongoDB, Redis): `read` the record (`None`: `NotFound`); when `condition` fails on it, or
/// after [`WRITE_ATTEMPTS`] attempts, the record as read is the `ConditionFailed` answer;
/// otherwise `write` it conditionally — `None` from `write` means the record changed in between
/// and the loop reads again.
pub(crate) async fn read_decide_write<C, R, W>(
    condition: &WriteCondition,
    session: impl Fn(&C) -> &SessionV1,
    mut read: impl FnMut() -> R,
    mut write: impl FnMut(C) -> W,
) -> Result<UpdateOutcome, ApplicationError>
where
    R: std::future::Future<Output = Result<Option<C>, ApplicationError>>,
    W: std::future::Future<Output = Result<Option<UpdateOutcome>, ApplicationError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(current) = read().await? else { return Ok(UpdateOutcome::NotFound) };
        if !condition.holds(session(&current)) || attempt > WRITE_ATTEMPTS {
            return Ok(UpdateOutcome::ConditionFailed(session(&current).clone()));
        }
        if let Some(outcome) = write(current).await? {
            return Ok(outcome);
        }
    }
}

/// The order of every listing and scan: newest `request_time` first, then by id.
pub(crate) fn listing_order(a: &SessionV1, b: &SessionV1) -> std::cmp::Ordering {
    b.request_time.cmp(&a.request_time).then_with(|| a.id.cmp(&b.id))
}

/// Runs `batch` — one step that changes at most [`memory::BULK_BATCH`] sessions and says how many
/// — until a step comes back short, yielding between steps so that a bulk change (a mass expiry,
/// closing a user's sessions) does not hold the store's lock; returns the total.
pub(crate) async fn in_batches<F, Fut>(mut batch: F) -> Result<u64, ApplicationError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize, ApplicationError>>,
{
    let mut n = 0u64;
    loop {
        let changed = batch().await?;
        n += changed as u64;
        if changed < memory::BULK_BATCH {
            return Ok(n);
        }
        tokio::task::yield_now().await;
    }
}

/// What must hold for a write to apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCondition {
    /// The session must be open.
    pub require_active: bool,
    /// The session must be alive (not expired) at this time: `expire_time >= alive_at`.
    pub alive_at: Option<DateTime<Utc>>,
    /// For sessions without an `expire_time` (written before it existed): the session must not
    /// be idle-expired, `request_time >= idle_cutoff`.
    pub idle_cutoff: Option<DateTime<Utc>>,
    /// The session must be at this version.
    pub expected_version: Option<i64>,
}

impl WriteCondition {
    /// Whether `s` satisfies the condition.
    pub fn holds(&self, s: &SessionV1) -> bool {
        (!self.require_active || s.active)
            && is_alive(s, self.alive_at, self.idle_cutoff)
            && self.expected_version.is_none_or(|v| v == s.version)
    }
}

/// Whether a session is alive: its `expire_time` is not before `now`; a session without one
/// is alive while `request_time >= idle_cutoff`. Closed sessions are judged the same way (the
/// caller decides whether closed ones count).
pub fn is_alive(s: &SessionV1, now: Option<DateTime<Utc>>, idle_cutoff: Option<DateTime<Utc>>) -> bool {
    alive(s.expire_time, s.request_time, now, idle_cutoff)
}

fn alive(
    expire_time: Option<DateTime<Utc>>,
    request_time: DateTime<Utc>,
    now: Option<DateTime<Utc>>,
    idle_cutoff: Option<DateTime<Utc>>,
) -> bool {
    match expire_time {
        Some(t) => now.is_none_or(|now| t >= now),
        None => idle_cutoff.is_none_or(|c| request_time >= c),
    }
}

/// How `expire_time` is derived: `min(request_time + idle, open_time + max_lifetime)`, where
/// `idle` is the session's own `ttl` or the default idle timeout; `None` when neither applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpiryPolicy {
    /// The default idle timeout in ms (`None` = sessions without a `ttl` never idle-expire).
    pub idle_timeout: Option<i64>,
    /// The absolute lifetime in ms (`None` = unlimited).
    pub max_lifetime: Option<i64>,
}

impl ExpiryPolicy {
    /// The `expire_time` of `s` as it is now.
    pub fn expire_time(&self, s: &SessionV1) -> Option<DateTime<Utc>> {
        self.expire_at(s.ttl, s.open_time, s.request_time)
    }

    /// The `expire_time` of a session with this `ttl`, `open_time` and `request_time` (whole
    /// milliseconds, as every time the product stores).
    pub(crate) fn expire_at(
        &self,
        ttl: Option<i64>,
        open_time: DateTime<Utc>,
        request_time: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        self.expire_at_ms(ttl, open_time.timestamp_millis(), request_time.timestamp_millis())
            .and_then(DateTime::from_timestamp_millis)
    }

    /// [`ExpiryPolicy::expire_at`] in milliseconds since the Unix epoch, for stores that keep
    /// times so. A timeout that takes a bound past what a date can hold means "never" for it.
    pub(crate) fn expire_at_ms(&self, ttl: Option<i64>, open: i64, request: i64) -> Option<i64> {
        const RANGE: std::ops::RangeInclusive<i64> =
            DateTime::<Utc>::MIN_UTC.timestamp_millis()..=DateTime::<Utc>::MAX_UTC.timestamp_millis();
        let after = |t: i64, ms: i64| t.checked_add(ms).filter(|t| RANGE.contains(t));
        let idle = ttl.or(self.idle_timeout).and_then(|ms| after(request, ms));
        let life = self.max_lifetime.and_then(|ms| after(open, ms));
        match (idle, life) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The change a write makes. Every change refreshes `request_time` and increments `version`.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionChange {
    /// Replace `data` (kept as its canonical text when it came as one).
    StoreData(Json),
    /// Replace `user` (kept as its canonical text when it came as one).
    UpdateUser(Json),
    /// Only refresh `request_time` (and so `expire_time`).
    Touch,
    /// Close: `active=false`, `close_time=now`, `user`/`data` null, no `expire_time`.
    Close,
}

impl SessionChange {
    /// Applies the change to a record at time `now`, recomputing `expire_time` with `policy`.
    pub fn apply(&self, s: &mut SessionV1, now: DateTime<Utc>, policy: &ExpiryPolicy) {
        match self {
            Self::StoreData(v) => s.data = Some(v.value().into_owned()),
            Self::UpdateUser(v) => s.user = Some(v.value().into_owned()),
            Self::Touch => {}
            Self::Close => {
                s.active = false;
                s.close_time = Some(now);
                s.user = Some(Value::Null);
                s.data = Some(Value::Null);
            }
        }
        s.request_time = now;
        s.version += 1;
        s.expire_time = if s.active { policy.expire_time(s) } else { None };
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
    /// How the new `expire_time` is computed.
    pub policy: ExpiryPolicy,
}

/// What a conditional write did. `T` is how the record after the write is answered: the session
/// itself, or its JSON text ([`SessionsPersistence::update_json`]).
#[derive(Debug, Clone, PartialEq)]
// With the session as the answer (every backend's `update`) the variants are the same size; the
// text form's refusal is the rare outcome, and boxing it would change every backend.
#[allow(clippy::large_enum_variant)]
pub enum UpdateOutcome<T = SessionV1> {
    /// The write applied; the record after it (for a delete: the record as it was).
    Updated(T),
    /// No record has the id.
    NotFound,
    /// The condition failed; the record as it is.
    ConditionFailed(SessionV1),
}

impl UpdateOutcome {
    /// The same outcome with the updated session as its JSON text.
    pub fn into_json(self) -> UpdateOutcome<JsonText> {
        match self {
            Self::Updated(s) => UpdateOutcome::Updated(JsonText::write(&s)),
            Self::NotFound => UpdateOutcome::NotFound,
            Self::ConditionFailed(s) => UpdateOutcome::ConditionFailed(s),
        }
    }
}

/// What a read judges a stored session by before it answers it: its state, without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    /// Open.
    pub active: bool,
    /// Its `expire_time`.
    pub expire_time: Option<DateTime<Utc>>,
    /// Its `request_time`.
    pub request_time: DateTime<Utc>,
    /// Its version.
    pub version: i64,
}

impl SessionState {
    /// The state of `s`.
    pub fn of(s: &SessionV1) -> Self {
        Self { active: s.active, expire_time: s.expire_time, request_time: s.request_time, version: s.version }
    }

    /// Whether a session in this state is alive, as [`is_alive`] judges it.
    pub fn is_alive(&self, now: Option<DateTime<Utc>>, idle_cutoff: Option<DateTime<Utc>>) -> bool {
        alive(self.expire_time, self.request_time, now, idle_cutoff)
    }
}

/// The caller's test of a read ([`SessionsPersistence::get_one_json`]): whether it must act on the
/// session (close it, touch it) before answering it.
pub type MustAct<'a> = &'a (dyn Fn(&SessionState) -> bool + Sync);

/// A session as [`SessionsPersistence::get_one_json`] answers it.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionAnswer {
    /// Nothing to do: the session's JSON text, ready to send.
    Text(JsonText),
    /// The caller must act on it: the session (boxed: the rare answer; the text is the one
    /// moved through every layer).
    Session(Box<SessionV1>),
}

impl SessionAnswer {
    /// `s` as its text, or itself when `must_act` says so.
    pub fn judge(s: SessionV1, must_act: MustAct<'_>) -> Self {
        if must_act(&SessionState::of(&s)) {
            Self::Session(Box::new(s))
        } else {
            Self::Text(JsonText::write(&s))
        }
    }
}

/// The create `limits` stand for: [`SessionsPersistence::create`] without limits,
/// [`SessionsPersistence::create_limited`] with a per-user limit alone,
/// [`SessionsPersistence::create_within`] otherwise.
pub(crate) fn create_within_limits<'a, S: SessionsPersistence + ?Sized>(
    store: &'a S,
    cid: Option<&'a str>,
    session: SessionV1,
    limits: &'a OpenLimits,
) -> futures::future::BoxFuture<'a, Result<SessionV1, ApplicationError>> {
    match limits {
        OpenLimits { per_user: None, max_open: None } => store.create(cid, session),
        OpenLimits { per_user: Some(limit), max_open: None } => store.create_limited(cid, session, limit),
        _ => store.create_within(cid, session, limits),
    }
}

/// What to do when a user already has the most open sessions allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitPolicy {
    /// Refuse the new session (409 `SESSION_LIMIT`).
    Deny,
    /// Close the user's oldest open sessions to make room.
    CloseOldest,
}

/// A per-user limit of open (alive) sessions, enforced atomically with the insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimit {
    /// Most open sessions per user.
    pub max: u64,
    /// What happens at the limit.
    pub policy: LimitPolicy,
    /// Sessions expired at this time do not count (they are closed as part of the insert).
    pub now: DateTime<Utc>,
    /// Idle cutoff for sessions without an `expire_time`.
    pub idle_cutoff: Option<DateTime<Utc>>,
}

/// The ids of the user's open sessions `create_limited` closes before inserting: the expired
/// ones, and under `CloseOldest` the oldest alive ones (by `open_time`, then id) beyond the room
/// the new session needs — the rule every backend applies.
///
/// `None` when the user is at the limit under `Deny`. `open` may hold closed sessions too (they
/// are left out).
pub fn limit_victims(open: Vec<SessionV1>, limit: &SessionLimit) -> Option<Vec<String>> {
    let (mut alive, expired): (Vec<SessionV1>, Vec<SessionV1>) =
        open.into_iter().filter(|s| s.active).partition(|s| is_alive(s, Some(limit.now), limit.idle_cutoff));
    let mut victims: Vec<String> = expired.into_iter().map(|s| s.id).collect();
    let count = alive.len() as u64;
    if count >= limit.max {
        match limit.policy {
            LimitPolicy::Deny => return None,
            LimitPolicy::CloseOldest => {
                alive.sort_by(|a, b| a.open_time.cmp(&b.open_time).then_with(|| a.id.cmp(&b.id)));
                let excess = usize::try_from(count + 1 - limit.max).unwrap_or(usize::MAX);
                victims.extend(alive.into_iter().take(excess).map(|s| s.id));
            }
        }
    }
    Some(victims)
}

/// The limits an insert is checked against: the per-user limit and the cap on the open sessions of
/// the whole store (sessions with `active` set, including expired ones not yet closed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenLimits {
    /// The per-user limit, if any.
    pub per_user: Option<SessionLimit>,
    /// Most open sessions in the store, if capped.
    pub max_open: Option<u64>,
}

/// The 503 `MAX_SESSIONS` of an insert refused at the store's cap of open sessions.
pub fn max_sessions_reached(max: u64) -> ApplicationError {
    ApplicationError::no_response(
        MAX_SESSIONS,
        "The service holds the most open sessions allowed (max_sessions); try again later",
    )
    .with_details("max_sessions", max)
}

/// The `SESSION_LIMIT` conflict.
pub fn session_limit(user_id: &str, max: u64) -> ApplicationError {
    ApplicationError::conflict(SESSION_LIMIT, "The user has the most open sessions allowed")
        .with_details("user_id", user_id)
        .with_details("max_sessions", max)
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

    /// The page of [`SessionsPersistence::get_page_by_filter`] as its JSON text (what
    /// `get_sessions` answers). By default the sessions are encoded; a backend that holds its
    /// records in memory encodes them straight from there, to the same text.
    async fn get_page_json(
        &self,
        correlation_id: Option<&str>,
        filter: &SessionsFilter,
        paging: &PagingParams,
    ) -> Result<JsonText, ApplicationError> {
        Ok(JsonText::write(&self.get_page_by_filter(correlation_id, filter, paging).await?))
    }

    /// A full session by id.
    async fn get_one_by_id(
        &self,
        correlation_id: Option<&str>,
        id: &str,
    ) -> Result<Option<SessionV1>, ApplicationError>;

    /// A session by id as a read answers it: when `must_act` holds for its state, the session (for
    /// the caller to act on), otherwise its JSON text — the text of
    /// [`SessionsPersistence::get_one_by_id`]'s session. By default that session is read and
    /// judged; a backend that holds its records in memory judges and encodes the record under its
    /// lock, without building the session.
    async fn get_one_json(
        &self,
        correlation_id: Option<&str>,
        id: &str,
        must_act: MustAct<'_>,
    ) -> Result<Option<SessionAnswer>, ApplicationError> {
        Ok(self.get_one_by_id(correlation_id, id).await?.map(|s| SessionAnswer::judge(s, must_act)))
    }

    /// Stores a new session.
    ///
    /// # Errors
    /// `Conflict` / `SESSION_EXISTS` if the id is taken.
    async fn create(&self, correlation_id: Option<&str>, session: SessionV1) -> Result<SessionV1, ApplicationError>;

    /// Stores a new session within `limits` (as [`SessionsPersistence::create`],
    /// [`SessionsPersistence::create_limited`] or [`SessionsPersistence::create_within`] do, by
    /// the limits set) and answers it as its JSON text. By default the stored session is
    /// encoded; the memory backend encodes the new session before it stores it, without a copy.
    ///
    /// # Errors
    /// As the create it stands for.
    async fn create_json(
        &self,
        correlation_id: Option<&str>,
        session: SessionV1,
        limits: &OpenLimits,
    ) -> Result<JsonText, ApplicationError> {
        Ok(JsonText::write(&create_within_limits(self, correlation_id, session, limits).await?))
    }

    /// Applies a conditional change atomically. The change is handed over: a backend that keeps
    /// the record takes its payload as it is, without a copy.
    async fn update(
        &self,
        correlation_id: Option<&str>,
        id: &str,
        update: SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError>;

    /// [`SessionsPersistence::update`] with the session after the write as its JSON text (what
    /// the writes answer). By default the updated session is encoded; the memory backend encodes
    /// the record it changed, under its lock, without building the session.
    async fn update_json(
        &self,
        correlation_id: Option<&str>,
        id: &str,
        update: SessionUpdate,
    ) -> Result<UpdateOutcome<JsonText>, ApplicationError> {
        Ok(self.update(correlation_id, id, update).await?.into_json())
    }

    /// Closes every open session that is not alive at `now` (see [`is_alive`]); returns how many.
    async fn close_expired(
        &self,
        correlation_id: Option<&str>,
        idle_cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, ApplicationError>;

    /// Deletes a session; returns it as it was. By default [`SessionsPersistence::delete_if`]
    /// with no condition (backends with a cheaper unconditional delete override it).
    async fn delete_by_id(
        &self,
        correlation_id: Option<&str>,
        id: &str,
    ) -> Result<Option<SessionV1>, ApplicationError> {
        Ok(match self.delete_if(correlation_id, id, &WriteCondition::default()).await? {
            UpdateOutcome::Updated(s) => Some(s),
            UpdateOutcome::NotFound | UpdateOutcome::ConditionFailed(_) => None,
        })
    }

    /// Deletes a session if `condition` holds (`Updated` carries the record as it was).
    async fn delete_if(
        &self,
        correlation_id: Option<&str>,
        id: &str,
        condition: &WriteCondition,
    ) -> Result<UpdateOutcome, ApplicationError>;

    /// Stores a new session unless its user is at `limit`; with `CloseOldest`, closes the user's
    /// oldest open sessions (by `open_time`) first. Expired open sessions of the user are closed
    /// and do not count. Counting and inserting are one atomic step.
    ///
    /// # Errors
    /// `SESSION_LIMIT` (409) under `Deny`; `SESSION_EXISTS` if the id is taken.
    async fn create_limited(
        &self,
        correlation_id: Option<&str>,
        session: SessionV1,
        limit: &SessionLimit,
    ) -> Result<SessionV1, ApplicationError>;

    /// Stores a new session within `limits`: the per-user limit as [`SessionsPersistence::create_limited`]
    /// does, and the cap on the store's open sessions.
    ///
    /// This default cannot count and insert in one step: it inserts, then counts the open
    /// sessions, and when they are over the cap deletes what it inserted and refuses. So it never
    /// admits a session past the cap; at worst concurrent opens near the cap are all refused, and
    /// sessions that `CloseOldest` closed to make room stay closed. The memory and file backends
    /// override it with one atomic step.
    ///
    /// # Errors
    /// `MAX_SESSIONS` (503) at the cap; as [`SessionsPersistence::create_limited`] otherwise.
    async fn create_within(
        &self,
        correlation_id: Option<&str>,
        session: SessionV1,
        limits: &OpenLimits,
    ) -> Result<SessionV1, ApplicationError> {
        let created = match &limits.per_user {
            Some(limit) => self.create_limited(correlation_id, session, limit).await?,
            None => self.create(correlation_id, session).await?,
        };
        let Some(max) = limits.max_open else { return Ok(created) };
        let open = SessionsFilter { active: Some(true), ..SessionsFilter::default() };
        let counted = self.get_page_by_filter(correlation_id, &open, &PagingParams::new(0, 0, true)).await;
        match counted.map(|page| page.total) {
            Ok(Some(n)) if n <= max => Ok(created),
            other => {
                // Over the cap (or the count failed): take the insert back, whatever changed it since.
                self.delete_by_id(correlation_id, &created.id).await?;
                other?;
                Err(max_sessions_reached(max))
            }
        }
    }

    /// Closes every open session of `user_id` except `except_id` at `now`; returns how many.
    async fn close_user_sessions(
        &self,
        correlation_id: Option<&str>,
        user_id: &str,
        except_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<u64, ApplicationError>;

    /// Deletes at most `limit` closed sessions with `close_time < closed_before` (oldest first);
    /// returns how many.
    async fn purge_closed(
        &self,
        correlation_id: Option<&str>,
        closed_before: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, ApplicationError>;

    /// Moves a session to `new_id` if `update.condition` holds, applying `update.change`
    /// (normally `Touch`); the old id is gone in the same step.
    ///
    /// # Errors
    /// `SESSION_EXISTS` if `new_id` is taken.
    async fn rotate_id(
        &self,
        correlation_id: Option<&str>,
        id: &str,
        new_id: &str,
        update: &SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError>;

    /// Up to `limit` whole sessions (`user` and `data` included) in list order (`request_time`
    /// descending, then `id`), starting after the position `(request_time, id)` of `after` (from
    /// the first when `None`): a resumable cursor for export and import. A session that is not
    /// changed during the walk is visited exactly once.
    async fn scan(
        &self,
        correlation_id: Option<&str>,
        after: Option<(DateTime<Utc>, &str)>,
        limit: u64,
    ) -> Result<Vec<SessionV1>, ApplicationError>;

    /// Deletes everything (tests and tooling).
    async fn clear(&self, correlation_id: Option<&str>) -> Result<(), ApplicationError>;

    /// Takes the lease `name` for `owner` until `until` when it is free, past its deadline at
    /// `now`, or already `owner`'s (which renews it); returns whether `owner` holds it now. Only
    /// background work that any one instance may do uses leases (the sweep), and correctness never
    /// depends on them: a sweep run twice is harmless. A store that one process owns (memory,
    /// file) is swept by that process alone, so it holds every lease: the default.
    async fn acquire_lease(
        &self,
        _correlation_id: Option<&str>,
        _name: &str,
        _owner: &str,
        _now: DateTime<Utc>,
        _until: DateTime<Utc>,
    ) -> Result<bool, ApplicationError> {
        Ok(true)
    }
}

/// Why a stored record is not a session: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong ("missing", "must be a string", ...).
    pub reason: &'static str,
}

impl DecodeError {
    /// The field and what is wrong with it.
    pub fn new(field: &'static str, reason: &'static str) -> Self {
        Self { field, reason }
    }

    /// The 500 a call on this very record answers (code `SESSION_UNREADABLE`; no stored value
    /// is quoted).
    pub fn to_error(&self) -> ApplicationError {
        ApplicationError::internal(SESSION_UNREADABLE, "The stored session cannot be read")
            .with_details("field", self.field)
            .with_details("reason", self.reason)
    }
}

/// `store_bad_documents_total{backend}`: stored records that could not be read as sessions (one
/// family shared by the shared-store backends).
pub fn bad_records_counter(backend: &str) -> Option<prometheus::IntCounter> {
    static FAMILY: std::sync::LazyLock<Option<prometheus::IntCounterVec>> = std::sync::LazyLock::new(|| {
        crate::toolkit::metrics::counter_vec(
            "store_bad_documents_total",
            "Stored documents that could not be read as sessions",
            &["backend"],
        )
    });
    FAMILY.as_ref().map(|f| f.with_label_values(&[backend]))
}

/// The background connector of the shared-store backends: runs `attempt` (connect and prepare)
/// until it succeeds or `stop` is cancelled, waiting 250 ms after the first failure and twice as
/// long after each next one (at most 5 s). The first failure is a warning, later ones debug
/// lines; every failure's message goes to `failed` (for readiness), success to the log.
/// Returns whether it succeeded (false: stopped first).
pub(crate) async fn connect_in_background<F, Fut>(
    store: &str,
    target: &str,
    stop: tokio_util::sync::CancellationToken,
    mut attempt: F,
    mut failed: impl FnMut(String),
) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), ApplicationError>>,
{
    let mut delay = std::time::Duration::from_millis(250);
    let mut failures = 0u32;
    loop {
        match attempt().await {
            Ok(()) => {
                tracing::info!(store = %target, "{store} sessions store is ready.");
                return true;
            }
            Err(e) => {
                let text = format!("{} ({})", e.message, e.cause.as_deref().unwrap_or(""));
                if failures == 0 {
                    tracing::warn!(store = %target, error = %text,
                        "{store} sessions store is not reachable yet; retrying in the background.");
                } else {
                    tracing::debug!(store = %target, error = %text, "{store} still not reachable.");
                }
                failed(e.message);
                failures = failures.saturating_add(1);
            }
        }
        tokio::select! {
            () = stop.cancelled() => return false,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(std::time::Duration::from_secs(5));
    }
}

/// The `user:password` part of a connection URI, if any (a secret of the shared-store backends).
pub(crate) fn uri_userinfo(uri: &str) -> Option<&str> {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    authority.rsplit_once('@').map(|(userinfo, _)| userinfo).filter(|u| !u.is_empty())
}

/// Replaces every secret in a message with `***`.
pub(crate) fn redact(message: &str, secrets: &[String]) -> String {
    secrets.iter().filter(|s| !s.is_empty()).fold(message.to_string(), |m, s| m.replace(s.as_str(), "***"))
}

/// The `SESSION_EXISTS` conflict.
pub fn session_exists(id: &str) -> ApplicationError {
    ApplicationError::conflict(SESSION_EXISTS, "A session with this id already exists").with_details("session_id", id)
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
