//! Session lifecycle metrics:
//! - `sessions_events_total{event}`: `opened`, `rotated`, `purged` (deleted by retention),
//!   `deleted` (by `delete_session_by_id`);
//! - `sessions_closed_total{reason}`: `close` (by `close_session`), `expired` (by
//!   `close_expired_sessions` and the sweep, or on the spot when a call meets an expired
//!   session), `revoked` (by `close_user_sessions`); a rotation moves a session and is not a
//!   close;
//! - `sessions_active`: open sessions, counted in the store by the controller's
//!   `refresh_metrics` on every scrape.

use crate::toolkit::metrics::{counter_vec, gauge_vec};
use prometheus::{IntCounterVec, IntGaugeVec};
use std::sync::LazyLock;

/// The session counters and gauge.
#[derive(Debug)]
pub struct SessionMetrics {
    /// Lifecycle events by kind: opened, rotated, purged, deleted.
    pub events: IntCounterVec,
    /// Closed sessions by reason: close, expired, revoked.
    pub closed: IntCounterVec,
    /// Open sessions now.
    pub active: IntGaugeVec,
}

/// The metrics (registered on first use; `None` only for an invalid definition).
pub fn sessions() -> Option<&'static SessionMetrics> {
    static M: LazyLock<Option<SessionMetrics>> = LazyLock::new(|| {
        Some(SessionMetrics {
            events: counter_vec("sessions_events_total", "Session lifecycle events", &["event"])?,
            closed: counter_vec("sessions_closed_total", "Closed sessions by reason", &["reason"])?,
            active: gauge_vec("sessions_active", "Open sessions", &[])?,
        })
    });
    M.as_ref()
}

/// Counts `n` lifecycle events (`opened`, `rotated`, `purged`, `deleted`).
pub fn event(kind: &str, n: u64) {
    if let (Some(m), true) = (sessions(), n > 0) {
        m.events.with_label_values(&[kind]).inc_by(n);
    }
}

/// Counts `n` sessions closed for `reason` (`close`, `expired`, `revoked`).
pub fn closed(reason: &str, n: u64) {
    if let (Some(m), true) = (sessions(), n > 0) {
        m.closed.with_label_values(&[reason]).inc_by(n);
    }
}
