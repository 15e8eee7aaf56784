//! The memory backend (`service-sessions:persistence:memory:*:1.0`).
//!
//! One `RwLock` over a [`SessionsIndex`] (the indexed engine shared with the file backend). Every
//! method holds the lock for its whole step, which makes each one atomic.

use super::index::SessionsIndex;
use super::{PageOptions, SessionUpdate, SessionsPersistence, UpdateOutcome};
use crate::data::version1::{SessionV1, SessionsFilter};
use crate::toolkit::component::Component;
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::errors::ApplicationError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::RwLock;

/// The memory persistence component.
#[derive(Debug, Default)]
pub struct SessionsMemoryPersistence {
    state: RwLock<SessionsIndex>,
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
        Ok(Self { state: RwLock::new(SessionsIndex::new()), options: s.options })
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

    async fn get_one_by_id(&self, _cid: Option<&str>, id: &str) -> Result<Option<SessionV1>, ApplicationError> {
        Ok(self.state.read().get(id).cloned())
    }

    async fn create(&self, _cid: Option<&str>, session: SessionV1) -> Result<SessionV1, ApplicationError> {
        self.state.write().create(session)
    }

    async fn update(
        &self,
        _cid: Option<&str>,
        id: &str,
        update: &SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError> {
        Ok(self.state.write().update(id, update))
    }

    async fn close_expired(
        &self,
        _cid: Option<&str>,
        idle_cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, ApplicationError> {
        let mut state = self.state.write();
        let closed = state.plan_close_expired(idle_cutoff, now);
        let n = closed.len() as u64;
        closed.into_iter().for_each(|s| state.put(s));
        Ok(n)
    }

    async fn delete_by_id(&self, _cid: Option<&str>, id: &str) -> Result<Option<SessionV1>, ApplicationError> {
        Ok(self.state.write().remove(id))
    }

    async fn clear(&self, _cid: Option<&str>) -> Result<(), ApplicationError> {
        self.state.write().clear();
        Ok(())
    }
}
