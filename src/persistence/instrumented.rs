//! A decorator that times every store operation and counts its failures, per backend:
//! `store_operation_duration_seconds{backend, operation}` and
//! `store_operation_errors_total{backend, operation, category}`. The factory wraps every backend
//! in it, so no backend carries metrics code of its own. It also bounds the store's calls in flight
//! (`options.max_in_flight` of the persistence component): past the bound a call is refused at
//! once with 503 `OVERLOADED` and `Retry-After: 1`, so an instance over its store's capacity sheds
//! load instead of queueing calls that would only time out, and recovers as soon as the load drops.

use super::{
    MustAct, OpenLimits, SessionAnswer, SessionLimit, SessionUpdate, SessionsPersistence, UpdateOutcome, WriteCondition,
};
use crate::data::version1::{SessionV1, SessionsFilter};
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::http::RETRY_AFTER_DETAIL;
use crate::toolkit::json::JsonText;
use crate::toolkit::metrics::{counter_vec, histogram_vec};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use prometheus::{Histogram, HistogramVec, IntCounterVec};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::Instant;
use tokio::sync::Semaphore;

struct StoreMetrics {
    duration: HistogramVec,
    errors: IntCounterVec,
}

fn metrics() -> Option<&'static StoreMetrics> {
    static M: LazyLock<Option<StoreMetrics>> = LazyLock::new(|| {
        Some(StoreMetrics {
            duration: histogram_vec(
                "store_operation_duration_seconds",
                "Store operation latency",
                &["backend", "operation"],
            )?,
            errors: counter_vec(
                "store_operation_errors_total",
                "Failed store operations",
                &["backend", "operation", "category"],
            )?,
        })
    });
    M.as_ref()
}

/// A persistence that records metrics around another, and bounds its calls in flight.
pub struct InstrumentedPersistence {
    inner: Arc<dyn SessionsPersistence>,
    backend: &'static str,
    /// One histogram per operation, in the order of [`OPERATIONS`], resolved once (no label
    /// lookup or name search per call); empty when the metrics could not be registered.
    histograms: Vec<Histogram>,
    /// Permits for calls in flight and their number (`options.max_in_flight`); `None` =
    /// unbounded.
    in_flight: Option<(Semaphore, usize)>,
}

impl std::fmt::Debug for InstrumentedPersistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let limit = self.in_flight.as_ref().map(|(_, n)| n);
        f.debug_struct("InstrumentedPersistence")
            .field("backend", &self.backend)
            .field("max_in_flight", &limit)
            .finish()
    }
}

/// `options.max_in_flight` of a persistence component.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct InFlightSettings {
    options: InFlightOptions,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct InFlightOptions {
    max_in_flight: Option<usize>,
}

/// The 503 of a call refused because the store already has `limit` calls in flight: the service
/// sheds load at once instead of queueing calls that would time out.
fn overloaded(limit: usize) -> ApplicationError {
    ApplicationError::no_response("OVERLOADED", "The service is over capacity; retry shortly")
        .with_details("max_in_flight", limit)
        .with_details(RETRY_AFTER_DETAIL, 1)
}

/// The operations, by their metric label; [`Op`] indexes this list.
const OPERATIONS: &[&str] = &[
    "get_page_by_filter",
    "get_one_by_id",
    "create",
    "update",
    "close_expired",
    "delete_by_id",
    "delete_if",
    "create_limited",
    "create_within",
    "close_user_sessions",
    "purge_closed",
    "rotate_id",
    "scan",
    "clear",
    "acquire_lease",
];

/// An operation, as an index into [`OPERATIONS`] (and into the resolved histograms).
#[derive(Debug, Clone, Copy)]
enum Op {
    GetPageByFilter,
    GetOneById,
    Create,
    Update,
    CloseExpired,
    DeleteById,
    DeleteIf,
    CreateLimited,
    CreateWithin,
    CloseUserSessions,
    PurgeClosed,
    RotateId,
    Scan,
    Clear,
    AcquireLease,
}

impl Op {
    /// The operation's metric label.
    fn name(self) -> &'static str {
        OPERATIONS.get(self as usize).copied().unwrap_or("unknown")
    }
}

impl InstrumentedPersistence {
    /// Wraps the store of the component `config`: `options.max_in_flight` bounds its calls in
    /// flight (0 = unbounded; `default_max_in_flight` when absent). Past the bound a call is
    /// refused at once with 503 `OVERLOADED` and `Retry-After`.
    ///
    /// # Errors
    /// `BAD_CONFIG` for a malformed `options.max_in_flight`.
    pub fn wrap_configured(
        backend: &'static str,
        inner: Arc<dyn SessionsPersistence>,
        config: &ComponentConfig,
        default_max_in_flight: usize,
    ) -> Result<Arc<dyn SessionsPersistence>, ApplicationError> {
        let s: InFlightSettings = config.section()?;
        let limit = s.options.max_in_flight.unwrap_or(default_max_in_flight);
        Ok(Arc::new(Self::new(backend, inner, (limit > 0).then_some(limit))))
    }

    /// Wraps `inner`, labelling its metrics with `backend`, with at most `max_in_flight` calls in
    /// flight (`None` = unbounded).
    pub fn new(backend: &'static str, inner: Arc<dyn SessionsPersistence>, max_in_flight: Option<usize>) -> Self {
        let histograms = match metrics() {
            Some(m) => OPERATIONS.iter().map(|op| m.duration.with_label_values(&[backend, op])).collect(),
            None => Vec::new(),
        };
        Self { inner, backend, histograms, in_flight: max_in_flight.map(|n| (Semaphore::new(n), n)) }
    }

    /// How many calls are in flight now (0 when unbounded: they are not counted).
    pub fn calls_in_flight(&self) -> usize {
        self.in_flight.as_ref().map_or(0, |(permits, limit)| limit - permits.available_permits())
    }

    async fn observe<T>(
        &self,
        op: Op,
        call: impl Future<Output = Result<T, ApplicationError>>,
    ) -> Result<T, ApplicationError> {
        let started = Instant::now();
        let permit = match &self.in_flight {
            Some((permits, limit)) => match permits.try_acquire() {
                Ok(p) => Some(p),
                Err(_) => {
                    let (operation, e) = (op.name(), overloaded(*limit));
                    if let Some(m) = metrics() {
                        m.errors.with_label_values(&[self.backend, operation, e.category.as_str()]).inc();
                    }
                    return Err(e);
                }
            },
            None => None,
        };
        let result = call.await;
        drop(permit);
        if let Some(h) = self.histograms.get(op as usize) {
            h.observe(started.elapsed().as_secs_f64());
        }
        if let (Err(e), Some(m)) = (&result, metrics()) {
            let operation = op.name();
            m.errors.with_label_values(&[self.backend, operation, e.category.as_str()]).inc();
        }
        result
    }
}

#[async_trait]
impl SessionsPersistence for InstrumentedPersistence {
    async fn get_page_by_filter(
        &self,
        cid: Option<&str>,
        filter: &SessionsFilter,
        paging: &PagingParams,
    ) -> Result<DataPage<SessionV1>, ApplicationError> {
        self.observe(Op::GetPageByFilter, self.inner.get_page_by_filter(cid, filter, paging)).await
    }

    async fn get_page_json(
        &self,
        cid: Option<&str>,
        filter: &SessionsFilter,
        paging: &PagingParams,
    ) -> Result<JsonText, ApplicationError> {
        self.observe(Op::GetPageByFilter, self.inner.get_page_json(cid, filter, paging)).await
    }

    async fn get_one_by_id(&self, cid: Option<&str>, id: &str) -> Result<Option<SessionV1>, ApplicationError> {
        self.observe(Op::GetOneById, self.inner.get_one_by_id(cid, id)).await
    }

    // Written out (not `async`): the timed call is boxed as it is, with no `async` layer of the
    // wrapper's own around it (the common read; every command's `get_session_by_id` comes here).
    fn get_one_json<'a, 'b, 'c, 'd, 'async_trait>(
        &'a self,
        cid: Option<&'b str>,
        id: &'c str,
        must_act: MustAct<'d>,
    ) -> Pin<Box<dyn Future<Output = Result<Option<SessionAnswer>, ApplicationError>> + Send + 'async_trait>>
    where
        'a: 'async_trait,
        'b: 'async_trait,
        'c: 'async_trait,
        'd: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.observe(Op::GetOneById, self.inner.get_one_json(cid, id, must_act)))
    }

    async fn create(&self, cid: Option<&str>, session: SessionV1) -> Result<SessionV1, ApplicationError> {
        self.observe(Op::Create, self.inner.create(cid, session)).await
    }

    async fn create_json(
        &self,
        cid: Option<&str>,
        session: SessionV1,
        limits: &OpenLimits,
    ) -> Result<JsonText, ApplicationError> {
        // Counted as the create it stands for.
        let op = match limits {
            OpenLimits { per_user: None, max_open: None } => Op::Create,
            OpenLimits { per_user: Some(_), max_open: None } => Op::CreateLimited,
            _ => Op::CreateWithin,
        };
        self.observe(op, self.inner.create_json(cid, session, limits)).await
    }

    async fn update(
        &self,
        cid: Option<&str>,
        id: &str,
        update: SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError> {
        self.observe(Op::Update, self.inner.update(cid, id, update)).await
    }

    async fn update_json(
        &self,
        cid: Option<&str>,
        id: &str,
        update: SessionUpdate,
    ) -> Result<UpdateOutcome<JsonText>, ApplicationError> {
        self.observe(Op::Update, self.inner.update_json(cid, id, update)).await
    }

    async fn close_expired(
        &self,
        cid: Option<&str>,
        idle_cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, ApplicationError> {
        self.observe(Op::CloseExpired, self.inner.close_expired(cid, idle_cutoff, now)).await
    }

    async fn delete_by_id(&self, cid: Option<&str>, id: &str) -> Result<Option<SessionV1>, ApplicationError> {
        self.observe(Op::DeleteById, self.inner.delete_by_id(cid, id)).await
    }

    async fn delete_if(
        &self,
        cid: Option<&str>,
        id: &str,
        condition: &WriteCondition,
    ) -> Result<UpdateOutcome, ApplicationError> {
        self.observe(Op::DeleteIf, self.inner.delete_if(cid, id, condition)).await
    }

    async fn create_limited(
        &self,
        cid: Option<&str>,
        session: SessionV1,
        limit: &SessionLimit,
    ) -> Result<SessionV1, ApplicationError> {
        self.observe(Op::CreateLimited, self.inner.create_limited(cid, session, limit)).await
    }

    async fn create_within(
        &self,
        cid: Option<&str>,
        session: SessionV1,
        limits: &OpenLimits,
    ) -> Result<SessionV1, ApplicationError> {
        self.observe(Op::CreateWithin, self.inner.create_within(cid, session, limits)).await
    }

    async fn close_user_sessions(
        &self,
        cid: Option<&str>,
        user_id: &str,
        except_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<u64, ApplicationError> {
        self.observe(Op::CloseUserSessions, self.inner.close_user_sessions(cid, user_id, except_id, now)).await
    }

    async fn purge_closed(
        &self,
        cid: Option<&str>,
        closed_before: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, ApplicationError> {
        self.observe(Op::PurgeClosed, self.inner.purge_closed(cid, closed_before, limit)).await
    }

    async fn rotate_id(
        &self,
        cid: Option<&str>,
        id: &str,
        new_id: &str,
        update: &SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError> {
        self.observe(Op::RotateId, self.inner.rotate_id(cid, id, new_id, update)).await
    }

    async fn scan(
        &self,
        cid: Option<&str>,
        after: Option<(DateTime<Utc>, &str)>,
        limit: u64,
    ) -> Result<Vec<SessionV1>, ApplicationError> {
        self.observe(Op::Scan, self.inner.scan(cid, after, limit)).await
    }

    async fn clear(&self, cid: Option<&str>) -> Result<(), ApplicationError> {
        self.observe(Op::Clear, self.inner.clear(cid)).await
    }

    async fn acquire_lease(
        &self,
        cid: Option<&str>,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, ApplicationError> {
        self.observe(Op::AcquireLease, self.inner.acquire_lease(cid, name, owner, now, until)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_its_own_label() {
        let ops = [
            (Op::GetPageByFilter, "get_page_by_filter"),
            (Op::GetOneById, "get_one_by_id"),
            (Op::Create, "create"),
            (Op::Update, "update"),
            (Op::CloseExpired, "close_expired"),
            (Op::DeleteById, "delete_by_id"),
            (Op::DeleteIf, "delete_if"),
            (Op::CreateLimited, "create_limited"),
            (Op::CreateWithin, "create_within"),
            (Op::CloseUserSessions, "close_user_sessions"),
            (Op::PurgeClosed, "purge_closed"),
            (Op::RotateId, "rotate_id"),
            (Op::Scan, "scan"),
            (Op::Clear, "clear"),
            (Op::AcquireLease, "acquire_lease"),
        ];
        assert_eq!(ops.len(), OPERATIONS.len());
        for (op, label) in ops {
            assert_eq!(op.name(), label);
        }
    }
}
