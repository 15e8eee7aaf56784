//! [`SessionsIndex`]: the in-memory indexed engine shared by the memory and file backends.
//!
//! A map by id plus ordered indexes keyed by `(Reverse(request_time), id)` — the list order
//! itself — for all sessions, for each user and for open sessions. So a lookup by id is O(1), a
//! page of one user's sessions costs O(log n + skip + take) without scanning other users, and the
//! expiry sweep visits only the expired open sessions. The index is not synchronised: each backend
//! wraps it in its own lock and makes every method one atomic step.

use super::{session_exists, SessionUpdate, UpdateOutcome};
use crate::data::version1::{SessionV1, SessionsFilter};
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::errors::ApplicationError;
use chrono::{DateTime, Utc};
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

/// Index key in list order: newest `request_time` first, then id ascending.
type Key = (Reverse<DateTime<Utc>>, Arc<str>);

fn key(s: &SessionV1, id: &Arc<str>) -> Key {
    (Reverse(s.request_time), id.clone())
}

/// The in-memory state with its indexes; also the engine of the file backend.
#[derive(Debug, Default)]
pub struct SessionsIndex {
    by_id: HashMap<Arc<str>, SessionV1>,
    all: BTreeSet<Key>,
    open: BTreeSet<Key>,
    by_user: HashMap<Arc<str>, BTreeSet<Key>>,
}

impl SessionsIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored sessions.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// A session by id.
    pub fn get(&self, id: &str) -> Option<&SessionV1> {
        self.by_id.get(id)
    }

    /// Every stored session (any order).
    pub fn iter(&self) -> impl Iterator<Item = &SessionV1> {
        self.by_id.values()
    }

    /// Up to `limit` sessions in list order, starting after the position `(request_time, id)` of
    /// `after` (from the first when `None`).
    ///
    /// This is a resumable cursor for walking a large index in short steps, releasing the lock
    /// between them: the position need not exist any more. A session that is not changed during
    /// the walk is visited exactly once; one that changes may be visited twice or not at all.
    pub fn scan(&self, after: Option<(DateTime<Utc>, &str)>, limit: usize) -> Vec<&SessionV1> {
        let start = after.map_or(Bound::Unbounded, |(t, id)| Bound::Excluded((Reverse(t), Arc::<str>::from(id))));
        self.all.range((start, Bound::Unbounded)).take(limit).filter_map(|(_, id)| self.by_id.get(id)).collect()
    }

    /// Reserves room for `additional` more sessions (bulk loading).
    pub fn reserve(&mut self, additional: usize) {
        self.by_id.reserve(additional);
    }

    fn index(&mut self, id: &Arc<str>, s: &SessionV1) {
        let k = key(s, id);
        self.all.insert(k.clone());
        if s.active {
            self.open.insert(k.clone());
        }
        let user: Arc<str> = match self.by_user.get_key_value(s.user_id.as_str()) {
            Some((u, _)) => u.clone(),
            None => Arc::from(s.user_id.as_str()),
        };
        self.by_user.entry(user).or_default().insert(k);
    }

    fn unindex(&mut self, id: &Arc<str>, s: &SessionV1) {
        let k = key(s, id);
        self.all.remove(&k);
        self.open.remove(&k);
        if let Some(set) = self.by_user.get_mut(s.user_id.as_str()) {
            set.remove(&k);
            if set.is_empty() {
                self.by_user.remove(s.user_id.as_str());
            }
        }
    }

    /// Inserts or replaces a session.
    pub fn put(&mut self, s: SessionV1) {
        let id: Arc<str> = match self.by_id.get_key_value(s.id.as_str()) {
            Some((k, old)) => {
                let (k, old) = (k.clone(), old.clone());
                self.unindex(&k, &old);
                k
            }
            None => Arc::from(s.id.as_str()),
        };
        self.index(&id, &s);
        self.by_id.insert(id, s);
    }

    /// Removes a session, returning it.
    pub fn remove(&mut self, id: &str) -> Option<SessionV1> {
        let (k, s) = self.by_id.remove_entry(id)?;
        self.unindex(&k, &s);
        Some(s)
    }

    /// Inserts a new session; `SESSION_EXISTS` if the id is taken.
    ///
    /// # Errors
    /// `Conflict` / `SESSION_EXISTS`.
    pub fn create(&mut self, s: SessionV1) -> Result<SessionV1, ApplicationError> {
        if self.by_id.contains_key(s.id.as_str()) {
            return Err(session_exists(&s.id));
        }
        self.put(s.clone());
        Ok(s)
    }

    /// Computes a conditional change without applying it.
    pub fn plan_update(&self, id: &str, update: &SessionUpdate) -> UpdateOutcome {
        match self.by_id.get(id) {
            None => UpdateOutcome::NotFound,
            Some(s) if !update.condition.holds(s) => UpdateOutcome::ConditionFailed(s.clone()),
            Some(s) => {
                let mut next = s.clone();
                update.change.apply(&mut next, update.now);
                UpdateOutcome::Updated(next)
            }
        }
    }

    /// Applies a conditional change.
    pub fn update(&mut self, id: &str, update: &SessionUpdate) -> UpdateOutcome {
        let outcome = self.plan_update(id, update);
        if let UpdateOutcome::Updated(s) = &outcome {
            self.put(s.clone());
        }
        outcome
    }

    /// The open sessions idle since before `idle_cutoff`, closed at `now` (not yet applied).
    pub fn plan_close_expired(&self, idle_cutoff: DateTime<Utc>, now: DateTime<Utc>) -> Vec<SessionV1> {
        // Keys are in descending time order; expired ones (time < cutoff) are at the end.
        let start = (Reverse(idle_cutoff - chrono::Duration::milliseconds(1)), Arc::<str>::from(""));
        self.open
            .range((Bound::Included(start), Bound::Unbounded))
            .filter_map(|(_, id)| self.by_id.get(id))
            .filter(|s| s.active && s.request_time < idle_cutoff)
            .map(|s| {
                let mut closed = s.clone();
                super::SessionChange::Close.apply(&mut closed, now);
                closed
            })
            .collect()
    }

    /// Deletes everything.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// A page in list order, without `user` and `data`.
    pub fn page(&self, filter: &SessionsFilter, paging: &PagingParams, max_page_size: u64) -> DataPage<SessionV1> {
        let skip = usize::try_from(paging.skip()).unwrap_or(usize::MAX);
        let take = usize::try_from(paging.take(max_page_size)).unwrap_or(usize::MAX);
        if let Some(id) = &filter.id {
            let found: Vec<SessionV1> = self
                .by_id
                .get(id.as_str())
                .filter(|s| filter.matches(s))
                .map(SessionV1::without_payload)
                .into_iter()
                .collect();
            let total = paging.total.then_some(found.len() as u64);
            return DataPage { total, data: found.into_iter().skip(skip).take(take).collect() };
        }
        let empty = BTreeSet::new();
        let set = match (&filter.user_id, filter.active) {
            (Some(u), _) => self.by_user.get(u.as_str()).unwrap_or(&empty),
            (None, Some(true)) => &self.open,
            _ => &self.all,
        };
        // Narrow to the time window first: keys are (Reverse(time), id), so `time < to` starts at
        // Reverse(to - 1ms) and `time >= from` ends before Reverse(from - 1ms).
        let ms = chrono::Duration::milliseconds(1);
        let lower =
            filter.to_time.map_or(Bound::Unbounded, |t| Bound::Included((Reverse(t - ms), Arc::<str>::from(""))));
        let upper =
            filter.from_time.map_or(Bound::Unbounded, |t| Bound::Excluded((Reverse(t - ms), Arc::<str>::from(""))));
        let valid_range = match (&lower, &upper) {
            (Bound::Included(l), Bound::Excluded(u)) => l < u,
            _ => true,
        };
        if !valid_range {
            return DataPage { total: paging.total.then_some(0), data: Vec::new() };
        }
        let matching = || {
            set.range((lower.clone(), upper.clone()))
                .filter_map(|(_, id)| self.by_id.get(id))
                .filter(|s| filter.matches(s))
        };
        let data: Vec<SessionV1> = matching().skip(skip).take(take).map(SessionV1::without_payload).collect();
        let total = paging.total.then(|| matching().count() as u64);
        DataPage { total, data }
    }
}
