//! The writes: data, user, touch, close, rotate and delete, each one conditional step on the
//! store, with the refusal it means when the condition fails.

use super::{version_conflict, SessionsController, MERGE_ATTEMPTS};
use crate::data::version1::errors::SESSION_VERSION_CONFLICT;
use crate::data::version1::is_session_id_shape;
use crate::data::version1::{new_session_id, SessionV1};
use crate::logic::metrics;
use crate::persistence::{
    create_within_limits, OpenLimits, SessionChange, SessionUpdate, SessionsPersistence, UpdateOutcome, WriteCondition,
};
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::json::{merge_patch, Json, JsonText};
use crate::toolkit::log::redact_id;
use futures::future::BoxFuture;
use serde_json::Value;

/// How an operation answers the session it opens or leaves: the session itself (typed callers),
/// or its JSON text, which the store encodes from what it holds (the commandable service).
pub(super) trait Answer: Sized + Send {
    /// A session the controller holds, as this answer.
    fn of(s: SessionV1) -> Self;

    /// The store's conditional write, answered this way (the update handed over to the store).
    fn updated<'a>(
        store: &'a dyn SessionsPersistence,
        cid: Option<&'a str>,
        id: &'a str,
        update: SessionUpdate,
    ) -> BoxFuture<'a, Result<UpdateOutcome<Self>, ApplicationError>>;

    /// The store's insert of a new session within `limits`, answered this way.
    fn created<'a>(
        store: &'a dyn SessionsPersistence,
        cid: Option<&'a str>,
        s: SessionV1,
        limits: &'a OpenLimits,
    ) -> BoxFuture<'a, Result<Self, ApplicationError>>;
}

impl Answer for SessionV1 {
    fn of(s: SessionV1) -> Self {
        s
    }

    fn updated<'a>(
        store: &'a dyn SessionsPersistence,
        cid: Option<&'a str>,
        id: &'a str,
        update: SessionUpdate,
    ) -> BoxFuture<'a, Result<UpdateOutcome, ApplicationError>> {
        store.update(cid, id, update)
    }

    fn created<'a>(
        store: &'a dyn SessionsPersistence,
        cid: Option<&'a str>,
        s: SessionV1,
        limits: &'a OpenLimits,
    ) -> BoxFuture<'a, Result<Self, ApplicationError>> {
        create_within_limits(store, cid, s, limits)
    }
}

impl Answer for JsonText {
    fn of(s: SessionV1) -> Self {
        JsonText::write(&s)
    }

    fn updated<'a>(
        store: &'a dyn SessionsPersistence,
        cid: Option<&'a str>,
        id: &'a str,
        update: SessionUpdate,
    ) -> BoxFuture<'a, Result<UpdateOutcome<Self>, ApplicationError>> {
        store.update_json(cid, id, update)
    }

    fn created<'a>(
        store: &'a dyn SessionsPersistence,
        cid: Option<&'a str>,
        s: SessionV1,
        limits: &'a OpenLimits,
    ) -> BoxFuture<'a, Result<Self, ApplicationError>> {
        store.create_json(cid, s, limits)
    }
}

impl SessionsController {
    async fn write<T: Answer>(
        &self,
        cid: Option<&str>,
        id: &str,
        change: SessionChange,
        expected_version: Option<i64>,
    ) -> Result<Option<T>, ApplicationError> {
        if !is_session_id_shape(id) {
            return Ok(None);
        }
        let now = self.now();
        let update = self.update(self.alive_condition(now, expected_version), change, now);
        match T::updated(self.persistence()?.as_ref(), cid, id, update).await? {
            UpdateOutcome::Updated(s) => Ok(Some(s)),
            UpdateOutcome::NotFound => Ok(None),
            // Boxed: the common write does not carry the refusal's future (it may close an
            // expired session: a second store call).
            UpdateOutcome::ConditionFailed(current) => Err(Box::pin(self.refused(cid, id, current, now)).await?),
        }
    }

    /// Replaces the session's data and refreshes `request_time`; with `version`, only if the
    /// session is still at that version.
    ///
    /// # Errors
    /// `SESSION_CLOSED` (409) for a closed or expired session, `SESSION_VERSION_CONFLICT` (409);
    /// store failures.
    pub async fn store_session_data(
        &self,
        cid: Option<&str>,
        id: &str,
        data: Value,
        version: Option<i64>,
    ) -> Result<Option<SessionV1>, ApplicationError> {
        self.write(cid, id, SessionChange::StoreData(data.into()), version).await
    }

    /// [`SessionsController::store_session_data`]'s session as its JSON text (encoded by the
    /// store); `data` as the command read it (its canonical text is stored as it is).
    ///
    /// # Errors
    /// As [`SessionsController::store_session_data`].
    pub async fn store_session_data_json(
        &self,
        cid: Option<&str>,
        id: &str,
        data: Json,
        version: Option<i64>,
    ) -> Result<Option<JsonText>, ApplicationError> {
        self.write(cid, id, SessionChange::StoreData(data), version).await
    }

    /// Applies an RFC 7396 merge patch to the session's data and refreshes `request_time`.
    ///
    /// The patch is applied to the data as stored and written only if the session is still at the
    /// version it was read at, so a concurrent change is never lost. With `version` that is the
    /// expected version (a stale one fails at once); without it a lost race re-reads and retries,
    /// up to [`MERGE_ATTEMPTS`] times in all.
    ///
    /// # Errors
    /// As [`SessionsController::store_session_data`]; `SESSION_VERSION_CONFLICT` (409) also when
    /// every attempt lost a race.
    pub async fn merge_session_data(
        &self,
        cid: Option<&str>,
        id: &str,
        patch: &Value,
        version: Option<i64>,
    ) -> Result<Option<SessionV1>, ApplicationError> {
        if !is_session_id_shape(id) {
            return Ok(None);
        }
        let mut attempt = 1;
        loop {
            // Read as stored: no expiry close and no touch here; the conditional write below
            // checks both, and a read that touched would make the caller's version stale.
            let Some(current) = self.persistence()?.get_one_by_id(cid, id).await? else { return Ok(None) };
            let mut data = current.data.unwrap_or(Value::Null);
            merge_patch(&mut data, patch);
            let expected = version.unwrap_or(current.version);
            match self.write(cid, id, SessionChange::StoreData(data.into()), Some(expected)).await {
                Err(e) if version.is_none() && e.code == SESSION_VERSION_CONFLICT && attempt < MERGE_ATTEMPTS => {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Replaces the session's cached user and refreshes `request_time`.
    ///
    /// # Errors
    /// As [`SessionsController::store_session_data`].
    pub async fn update_session_user(
        &self,
        cid: Option<&str>,
        id: &str,
        user: Value,
        version: Option<i64>,
    ) -> Result<Option<SessionV1>, ApplicationError> {
        self.write(cid, id, SessionChange::UpdateUser(user.into()), version).await
    }

    /// [`SessionsController::update_session_user`]'s session as its JSON text; `user` as the
    /// command read it (its canonical text is stored as it is).
    ///
    /// # Errors
    /// As [`SessionsController::store_session_data`].
    pub async fn update_session_user_json(
        &self,
        cid: Option<&str>,
        id: &str,
        user: Json,
        version: Option<i64>,
    ) -> Result<Option<JsonText>, ApplicationError> {
        self.write(cid, id, SessionChange::UpdateUser(user), version).await
    }

    /// Refreshes `request_time` (and so `expire_time`) without changing anything else.
    ///
    /// # Errors
    /// As [`SessionsController::store_session_data`].
    pub async fn touch_session(
        &self,
        cid: Option<&str>,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<SessionV1>, ApplicationError> {
        self.write(cid, id, SessionChange::Touch, version).await
    }

    /// [`SessionsController::touch_session`]'s session as its JSON text.
    ///
    /// # Errors
    /// As [`SessionsController::store_session_data`].
    pub async fn touch_session_json(
        &self,
        cid: Option<&str>,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<JsonText>, ApplicationError> {
        self.write(cid, id, SessionChange::Touch, version).await
    }

    /// Closes a session; closing a closed session returns it unchanged.
    ///
    /// # Errors
    /// `SESSION_VERSION_CONFLICT` (409) when `version` is stale; store failures.
    pub async fn close_session(
        &self,
        cid: Option<&str>,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<SessionV1>, ApplicationError> {
        self.close(cid, id, version).await
    }

    /// [`SessionsController::close_session`]'s session as its JSON text.
    ///
    /// # Errors
    /// As [`SessionsController::close_session`].
    pub async fn close_session_json(
        &self,
        cid: Option<&str>,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<JsonText>, ApplicationError> {
        self.close(cid, id, version).await
    }

    async fn close<T: Answer>(
        &self,
        cid: Option<&str>,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<T>, ApplicationError> {
        if !is_session_id_shape(id) {
            return Ok(None);
        }
        let now = self.now();
        let condition = WriteCondition { require_active: true, expected_version: version, ..Default::default() };
        let update = self.update(condition, SessionChange::Close, now);
        match T::updated(self.persistence()?.as_ref(), cid, id, update).await? {
            UpdateOutcome::Updated(s) => {
                metrics::closed(metrics::CloseReason::Close, 1);
                tracing::debug!(session = %redact_id(id), "Session closed.");
                Ok(Some(s))
            }
            UpdateOutcome::ConditionFailed(s) if !s.active => Ok(Some(T::of(s))),
            UpdateOutcome::ConditionFailed(s) => Err(version_conflict(id, s.version)),
            UpdateOutcome::NotFound => Ok(None),
        }
    }

    /// Closes every open session of a user, except one if given ("log out everywhere else").
    ///
    /// # Errors
    /// Store failures.
    pub async fn close_user_sessions(
        &self,
        cid: Option<&str>,
        user_id: &str,
        except_id: Option<&str>,
    ) -> Result<u64, ApplicationError> {
        // An id no session can have excludes nothing.
        let except_id = except_id.filter(|id| is_session_id_shape(id));
        let n = self.persistence()?.close_user_sessions(cid, user_id, except_id, self.now()).await?;
        metrics::closed(metrics::CloseReason::Revoked, n);
        Ok(n)
    }

    /// Moves a session to a fresh id (after a privilege change); the old id stops working at once.
    ///
    /// # Errors
    /// As [`SessionsController::store_session_data`].
    pub async fn rotate_session_id(
        &self,
        cid: Option<&str>,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<SessionV1>, ApplicationError> {
        if !is_session_id_shape(id) {
            return Ok(None);
        }
        let now = self.now();
        let update = self.update(self.alive_condition(now, version), SessionChange::Touch, now);
        let new_id = new_session_id()?;
        match self.persistence()?.rotate_id(cid, id, &new_id, &update).await? {
            UpdateOutcome::Updated(s) => {
                metrics::event(metrics::Event::Rotated, 1);
                tracing::debug!(from = %redact_id(id), to = %redact_id(&s.id), "Session id rotated.");
                Ok(Some(s))
            }
            UpdateOutcome::NotFound => Ok(None),
            // Boxed: the common write does not carry the refusal's future (it may close an
            // expired session: a second store call).
            UpdateOutcome::ConditionFailed(current) => Err(Box::pin(self.refused(cid, id, current, now)).await?),
        }
    }

    /// Deletes a session (open or closed); returns it as it was. With `version`, only if the
    /// session is still at that version.
    ///
    /// # Errors
    /// `SESSION_VERSION_CONFLICT` (409); store failures.
    pub async fn delete_session_by_id(
        &self,
        cid: Option<&str>,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<SessionV1>, ApplicationError> {
        if !is_session_id_shape(id) {
            return Ok(None);
        }
        let deleted = self.delete(cid, id, version).await?;
        if deleted.is_some() {
            metrics::event(metrics::Event::Deleted, 1);
            tracing::debug!(session = %redact_id(id), "Session deleted.");
        }
        Ok(deleted)
    }

    async fn delete(
        &self,
        cid: Option<&str>,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<SessionV1>, ApplicationError> {
        let store = self.persistence()?;
        match version {
            None => store.delete_by_id(cid, id).await,
            Some(v) => {
                let condition = WriteCondition { expected_version: Some(v), ..Default::default() };
                match store.delete_if(cid, id, &condition).await? {
                    UpdateOutcome::Updated(s) => Ok(Some(s)),
                    UpdateOutcome::NotFound => Ok(None),
                    UpdateOutcome::ConditionFailed(s) => Err(version_conflict(id, s.version)),
                }
            }
        }
    }
}
