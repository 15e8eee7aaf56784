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
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec};
use std::sync::{LazyLock, OnceLock};

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
pub fn event(kind: Event, n: u64) {
    if n > 0 {
        if let Some(c) = kind.counter() {
            c.inc_by(n);
        }
    }
}

/// Counts `n` sessions closed for `reason` (`close`, `expired`, `revoked`).
pub fn closed(reason: CloseReason, n: u64) {
    if n > 0 {
        if let Some(c) = reason.counter() {
            c.inc_by(n);
        }
    }
}

/// A lifecycle event: the `event` label of `sessions_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A session opened.
    Opened,
    /// A session moved to a new id.
    Rotated,
    /// Closed sessions deleted by retention.
    Purged,
    /// A session deleted by `delete_session_by_id`.
    Deleted,
}

/// Why sessions closed: the `reason` label of `sessions_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// By `close_session`.
    Close,
    /// Past their expiry.
    Expired,
    /// By `close_user_sessions`.
    Revoked,
}

/// A counter of one label value, resolved on its first use (a series appears once it counts
/// something, as before) and kept, so a command does not hash the label on every call.
struct Resolved(OnceLock<Option<IntCounter>>);

impl Resolved {
    const fn new() -> Self {
        Self(OnceLock::new())
    }

    fn get(&self, family: fn(&SessionMetrics) -> &IntCounterVec, label: &str) -> Option<&IntCounter> {
        self.0.get_or_init(|| sessions().map(|m| family(m).with_label_values(&[label]))).as_ref()
    }
}

impl Event {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Rotated => "rotated",
            Self::Purged => "purged",
            Self::Deleted => "deleted",
        }
    }

    fn counter(self) -> Option<&'static IntCounter> {
        static COUNTERS: [Resolved; 4] = [Resolved::new(), Resolved::new(), Resolved::new(), Resolved::new()];
        COUNTERS[self as usize].get(|m| &m.events, self.label())
    }
}

impl CloseReason {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Close => "close",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    fn counter(self) -> Option<&'static IntCounter> {
        static COUNTERS: [Resolved; 3] = [Resolved::new(), Resolved::new(), Resolved::new()];
        COUNTERS[self as usize].get(|m| &m.closed, self.label())
    }
}
