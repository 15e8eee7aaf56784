//! The memory backend (`service-sessions:persistence:memory:*:1.0`): [`SessionsIndex`] under one
//! `RwLock`. Every method holds the lock for its whole step, which makes each one atomic — except
//! the bulk ones (`close_expired`, `close_user_sessions`), which work in batches of
//! [`BULK_BATCH`] and release the lock between them so that other requests keep flowing. Totals,
//! with or without a time window, are O(log n) rank differences in the index.

use super::index::SessionsIndex;
use super::{
    in_batches, MustAct, OpenLimits, PageOptions, SessionAnswer, SessionLimit, SessionUpdate, SessionsPersistence,
    UpdateOutcome, WriteCondition,
};
use crate::data::version1::{SessionV1, SessionsFilter};
use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::json::JsonText;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use std::sync::Arc;

/// Most sessions one step of a bulk operation changes while holding the lock.
pub const BULK_BATCH: usize = 1000;

/// The memory persistence component.
#[derive(Debug, Default)]
pub struct SessionsMemoryPersistence {
    state: Arc<RwLock<SessionsIndex>>,
    options: PageOptions,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct MemorySettings {
    options: PageOptions,
}

impl SessionsMemoryPersistence {
    /// An empty store with default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the store from its entry (`options.max_page_size`).
    ///
    /// # Errors
    /// `BAD_CONFIG` for invalid settings.
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let s: MemorySettings = config.section()?;
        Ok(Self { state: Arc::new(RwLock::new(SessionsIndex::new())), options: s.options })
    }
}

impl Component for SessionsMemoryPersistence {}

#[async_trait]
impl SessionsPersistence for SessionsMemoryPersistence {
    async fn get_page_by_filter(
        &self,
        _cid: Option<&str>,
        filter: &SessionsFilter,
        paging: &PagingParams,
    ) -> Result<DataPage<SessionV1>, ApplicationError> {
        Ok(self.state.read().page(filter, paging, self.options.max_page_size))
    }

    async fn get_page_json(
        &self,
        _cid: Option<&str>,
        filter: &SessionsFilter,
        paging: &PagingParams,
    ) -> Result<JsonText, ApplicationError> {
        Ok(self.state.read().page_json(filter, paging, self.options.max_page_size))
    }

    async fn get_one_by_id(&self, _cid: Option<&str>, id: &str) -> Result<Option<SessionV1>, ApplicationError> {
        Ok(self.state.read().get(id))
    }

    async fn get_one_json(
        &self,
        _cid: Option<&str>,
        id: &str,
        must_act: MustAct<'_>,
    ) -> Result<Option<SessionAnswer>, ApplicationError> {
        Ok(self.state.read().get_json(id, must_act))
    }

    async fn create(&self, _cid: Option<&str>, session: SessionV1) -> Result<SessionV1, ApplicationError> {
        self.state.write().create(session)
    }

    async fn create_json(
        &self,
        _cid: Option<&str>,
        session: SessionV1,
        limits: &OpenLimits,
    ) -> Result<JsonText, ApplicationError> {
        // The session as it will be stored, encoded before the lock; then it moves into the store.
        let text = JsonText::write(&session);
        self.state.write().create_within(session, limits)?;
        Ok(text)
    }

    async fn update(
        &self,
        _cid: Option<&str>,
        id: &str,
        update: SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError> {
        Ok(self.state.write().update(id, update))
    }

    async fn update_json(
        &self,
        _cid: Option<&str>,
        id: &str,
        update: SessionUpdate,
    ) -> Result<UpdateOutcome<JsonText>, ApplicationError> {
        Ok(self.state.write().update_json(id, update))
    }

    async fn close_expired(
        &self,
        _cid: Option<&str>,
        idle_cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, ApplicationError> {
        // Nearly always nothing is expired: look under the shared lock first, so listings (which
        // sweep before they read) do not serialise on the exclusive one.
        if self.state.read().plan_close_expired_limited(now, Some(idle_cutoff), 1).is_empty() {
            return Ok(0);
        }
        in_batches(|| async {
            let mut state = self.state.write();
            let closed = state.plan_close_expired_limited(now, Some(idle_cutoff), BULK_BATCH);
            let len = closed.len();
            closed.into_iter().for_each(|s| state.put(s));
            Ok(len)
        })
        .await
    }

    async fn delete_by_id(&self, _cid: Option<&str>, id: &str) -> Result<Option<SessionV1>, ApplicationError> {
        Ok(self.state.write().remove(id))
    }

    async fn delete_if(
        &self,
        _cid: Option<&str>,
        id: &str,
        condition: &WriteCondition,
    ) -> Result<UpdateOutcome, ApplicationError> {
        Ok(self.state.write().delete_if(id, condition))
    }

    async fn create_limited(
        &self,
        _cid: Option<&str>,
        session: SessionV1,
        limit: &SessionLimit,
    ) -> Result<SessionV1, ApplicationError> {
        self.state.write().create_limited(session.clone(), limit)?;
        Ok(session)
    }

    async fn create_within(
        &self,
        _cid: Option<&str>,
        session: SessionV1,
        limits: &OpenLimits,
    ) -> Result<SessionV1, ApplicationError> {
        self.state.write().create_within(session.clone(), limits)?;
        Ok(session)
    }

    async fn close_user_sessions(
        &self,
        _cid: Option<&str>,
        user_id: &str,
        except_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<u64, ApplicationError> {
        in_batches(|| async {
            Ok(self.state.write().close_user_sessions_limited(user_id, except_id, now, BULK_BATCH).len())
        })
        .await
    }

    async fn purge_closed(
        &self,
        _cid: Option<&str>,
        closed_before: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, ApplicationError> {
        let mut state = self.state.write();
        let ids = state.purgeable(closed_before, limit);
        ids.iter().for_each(|id| {
            state.remove(id);
        });
        Ok(ids.len() as u64)
    }

    async fn rotate_id(
        &self,
        _cid: Option<&str>,
        id: &str,
        new_id: &str,
        update: &SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError> {
        self.state.write().rotate_id(id, new_id, update)
    }

    async fn scan(
        &self,
        _cid: Option<&str>,
        after: Option<(DateTime<Utc>, &str)>,
        limit: u64,
    ) -> Result<Vec<SessionV1>, ApplicationError> {
        Ok(self.state.read().scan(after, usize::try_from(limit).unwrap_or(usize::MAX)))
    }

    async fn clear(&self, _cid: Option<&str>) -> Result<(), ApplicationError> {
        self.state.write().clear();
        Ok(())
    }
}
