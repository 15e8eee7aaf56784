//! The background work: the expiry sweep (closing expired sessions and purging closed ones past
//! retention, under the store's sweep lease) and the open-sessions gauge refreshed for scrapes.

use super::SessionsController;
use crate::data::version1::SessionsFilter;
use crate::logic::metrics;
use crate::persistence::SWEEP_LEASE;
use crate::toolkit::data::PagingParams;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::metrics::MetricsSource;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// How many cleanup intervals a sweep lease lasts: the holder renews it every interval, so another
/// instance takes over within this many intervals after the holder stops.
const SWEEP_LEASE_INTERVALS: i32 = 2;

/// A name for this process as a lease owner: host name, process id and a random part.
pub(super) fn instance_name() -> String {
    let host = hostname::get().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    let mut nonce = [0u8; 4];
    let _ = getrandom::fill(&mut nonce);
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}:{}:{nonce}", std::process::id())
}

impl SessionsController {
    /// Closes every expired open session; returns how many were closed.
    ///
    /// # Errors
    /// Store failures.
    pub async fn close_expired_sessions(&self, cid: Option<&str>) -> Result<u64, ApplicationError> {
        let now = self.now();
        let cutoff = self.idle_cutoff(now).unwrap_or(DateTime::<Utc>::MIN_UTC);
        let n = self.persistence()?.close_expired(cid, cutoff, now).await?;
        metrics::closed(metrics::CloseReason::Expired, n);
        Ok(n)
    }

    /// Deletes closed sessions older than `retention`, in batches; returns how many.
    ///
    /// # Errors
    /// Store failures.
    pub async fn purge_sessions(&self, cid: Option<&str>) -> Result<u64, ApplicationError> {
        let Some(retention) = Self::ms(self.options.retention) else { return Ok(0) };
        let Some(before) = chrono::Duration::try_milliseconds(retention).and_then(|d| self.now().checked_sub_signed(d))
        else {
            return Ok(0);
        };
        let batch = self.options.purge_batch_size.max(1);
        let mut total = 0;
        loop {
            let n = self.persistence()?.purge_closed(cid, before, batch).await?;
            total += n;
            if n < batch {
                metrics::event(metrics::Event::Purged, total);
                return Ok(total);
            }
            // Let other requests in between batches.
            tokio::task::yield_now().await;
        }
    }

    /// One run of the expiry sweep (the step the background task repeats), if this instance
    /// holds the sweep lease of the store (taken or renewed here, for twice the cleanup interval):
    /// of a fleet of instances on one store, one sweeps at a time, and another takes over once the
    /// holder's lease runs out. Returns whether it swept.
    pub async fn sweep_once(&self) -> bool {
        let now = self.now();
        let hold = chrono::Duration::milliseconds(Self::ms(self.options.cleanup_interval).unwrap_or(60_000))
            * SWEEP_LEASE_INTERVALS;
        let until = now.checked_add_signed(hold).unwrap_or(now);
        let lease = match self.persistence() {
            Ok(p) => p.acquire_lease(Some("cleanup"), SWEEP_LEASE, &self.instance, now, until).await,
            Err(e) => Err(e),
        };
        match lease {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!("Another instance holds the sweep lease; not sweeping this time.");
                return false;
            }
            Err(e) => {
                tracing::warn!(error = %e, code = %e.code, "The sweep lease could not be taken; the sweep will run again.");
                return false;
            }
        }
        match self.close_expired_sessions(Some("cleanup")).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(closed = n, "Closed expired sessions."),
            Err(e) => tracing::warn!(error = %e, code = %e.code, "Expiry sweep failed; it will run again."),
        }
        match self.purge_sessions(Some("cleanup")).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "Purged closed sessions past retention."),
            Err(e) => tracing::warn!(error = %e, code = %e.code, "Purge failed; it will run again."),
        }
        true
    }
}

#[async_trait]
impl MetricsSource for SessionsController {
    async fn refresh_metrics(&self) {
        let active = SessionsFilter { active: Some(true), ..Default::default() };
        let count = match self.persistence() {
            Ok(p) => p.get_page_by_filter(Some("metrics"), &active, &PagingParams::new(0, 1, true)).await.ok(),
            Err(_) => None,
        };
        if let (Some(m), Some(total)) = (metrics::sessions(), count.and_then(|page| page.total)) {
            m.active.with_label_values(&[] as &[&str]).set(i64::try_from(total).unwrap_or(i64::MAX));
        }
    }
}
