//! [`SessionsIndex`]: the in-memory indexed engine shared by the memory and file backends.
//!
//! A map by id plus ordered indexes keyed by `(Reverse(request_time), id)` — the list order
//! itself — for all sessions, for each user and for open sessions. So a lookup by id is O(1), a
//! page of one user's sessions costs O(log n + skip + take) without scanning other users, and the
//! expiry sweep visits only the expired open sessions. The index is not synchronised: each backend
//! wraps it in its own lock and makes every method one atomic step.
//!
//! [`IndexBuilder`] loads many sessions at once (the file backend's start-up): it keeps only the
//! map up to date while changes are replayed, then sorts the keys once and builds each ordered
//! index in bulk, several times faster than inserting sessions one by one.

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

/// The ordered indexes, apart from the map so that they can change while a stored session is
/// borrowed (no clone of a session just to re-index it).
#[derive(Debug, Default, PartialEq)]
struct Orders {
    all: BTreeSet<Key>,
    open: BTreeSet<Key>,
    by_user: HashMap<Arc<str>, BTreeSet<Key>>,
}

impl Orders {
    fn insert(&mut self, k: Key, active: bool, user_id: &str) {
        self.all.insert(k.clone());
        if active {
            self.open.insert(k.clone());
        }
        match self.by_user.get_mut(user_id) {
            Some(set) => {
                set.insert(k);
            }
            None => {
                self.by_user.insert(Arc::from(user_id), BTreeSet::from([k]));
            }
        }
    }

    fn remove(&mut self, k: &Key, user_id: &str) {
        self.all.remove(k);
        self.open.remove(k);
        if let Some(set) = self.by_user.get_mut(user_id) {
            set.remove(k);
            if set.is_empty() {
                self.by_user.remove(user_id);
            }
        }
    }
}

/// Replays changes into a map, then builds a [`SessionsIndex`] from it in bulk.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    by_id: HashMap<Arc<str>, SessionV1>,
}

impl IndexBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces a session.
    pub fn put(&mut self, s: SessionV1) {
        match self.by_id.get_mut(s.id.as_str()) {
            Some(slot) => *slot = s,
            None => {
                self.by_id.insert(Arc::from(s.id.as_str()), s);
            }
        }
    }

    /// Makes room for `additional` more sessions (saves rehashing a large map while loading).
    pub fn reserve(&mut self, additional: usize) {
        self.by_id.reserve(additional);
    }

    /// Removes a session.
    pub fn remove(&mut self, id: &str) {
        self.by_id.remove(id);
    }

    /// Removes every session.
    pub fn clear(&mut self) {
        self.by_id.clear();
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The index: keys sorted once, each ordered set built from sorted input (the per-user sets
    /// on a second thread).
    pub fn build(self) -> SessionsIndex {
        let mut keys: Vec<(Key, bool, &str)> =
            self.by_id.iter().map(|(id, s)| (key(s, id), s.active, s.user_id.as_str())).collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let by_user_of = |keys: &[(Key, bool, &str)]| {
            let mut users: HashMap<&str, Vec<Key>> = HashMap::new();
            for (k, _, user) in keys {
                users.entry(user).or_default().push(k.clone());
            }
            users.into_iter().map(|(u, ks)| (Arc::from(u), ks.into_iter().collect())).collect()
        };
        let (by_user, open, all) = std::thread::scope(|scope| {
            let users = scope.spawn(|| by_user_of(&keys));
            let open: BTreeSet<Key> = keys.iter().filter(|(_, active, _)| *active).map(|(k, _, _)| k.clone()).collect();
            let all: BTreeSet<Key> = keys.iter().map(|(k, _, _)| k.clone()).collect();
            // The thread cannot panic; should it anyway, build the sets here.
            (users.join().unwrap_or_else(|_| by_user_of(&keys)), open, all)
        });
        drop(keys);
        SessionsIndex { by_id: self.by_id, orders: Orders { all, open, by_user } }
    }
}

/// The in-memory state with its indexes; also the engine of the file backend.
#[derive(Debug, Default, PartialEq)]
pub struct SessionsIndex {
    by_id: HashMap<Arc<str>, SessionV1>,
    orders: Orders,
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
        self.orders.all.range((start, Bound::Unbounded)).take(limit).filter_map(|(_, id)| self.by_id.get(id)).collect()
    }

    /// Inserts or replaces a session.
    pub fn put(&mut self, s: SessionV1) {
        let id: Arc<str> = match self.by_id.get_key_value(s.id.as_str()) {
            Some((k, old)) => {
                let k = k.clone();
                self.orders.remove(&key(old, &k), &old.user_id);
                k
            }
            None => Arc::from(s.id.as_str()),
        };
        self.orders.insert(key(&s, &id), s.active, &s.user_id);
        self.by_id.insert(id, s);
    }

    /// Removes a session, returning it.
    pub fn remove(&mut self, id: &str) -> Option<SessionV1> {
        let (k, s) = self.by_id.remove_entry(id)?;
        self.orders.remove(&key(&s, &k), &s.user_id);
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

    /// Applies a conditional change (in place: the only copy made is the returned record).
    pub fn update(&mut self, id: &str, update: &SessionUpdate) -> UpdateOutcome {
        let k = match self.by_id.get_key_value(id) {
            None => return UpdateOutcome::NotFound,
            Some((_, s)) if !update.condition.holds(s) => return UpdateOutcome::ConditionFailed(s.clone()),
            Some((k, s)) => {
                let k = k.clone();
                self.orders.remove(&key(s, &k), &s.user_id);
                k
            }
        };
        let Some(s) = self.by_id.get_mut(id) else { return UpdateOutcome::NotFound };
        update.change.apply(s, update.now);
        // A change never touches `user_id`, so the session stays in its user's index.
        self.orders.insert(key(s, &k), s.active, &s.user_id);
        UpdateOutcome::Updated(s.clone())
    }

    /// The open sessions idle since before `idle_cutoff`, closed at `now` (not yet applied).
    pub fn plan_close_expired(&self, idle_cutoff: DateTime<Utc>, now: DateTime<Utc>) -> Vec<SessionV1> {
        // Keys are in descending time order; expired ones (time < cutoff) are at the end.
        let start = (Reverse(idle_cutoff - chrono::Duration::milliseconds(1)), Arc::<str>::from(""));
        self.orders
            .open
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
            (Some(u), _) => self.orders.by_user.get(u.as_str()).unwrap_or(&empty),
            (None, Some(true)) => &self.orders.open,
            _ => &self.orders.all,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::persistence::{SessionChange, WriteCondition};
    use chrono::Duration;

    fn session(i: i64) -> SessionV1 {
        let t = DateTime::<Utc>::UNIX_EPOCH + Duration::milliseconds(i % 7);
        let mut s = SessionV1::open(format!("s{i:03}"), format!("u{}", i % 4), t);
        s.active = i % 3 != 0;
        s
    }

    #[test]
    fn the_builder_builds_what_one_by_one_inserts_build() {
        let mut one_by_one = SessionsIndex::new();
        let mut builder = IndexBuilder::new();
        for i in 0..200 {
            one_by_one.put(session(i));
            builder.put(session(i));
        }
        for i in (0..200).step_by(5) {
            let mut s = session(i);
            s.request_time += Duration::milliseconds(100);
            one_by_one.put(s.clone());
            builder.put(s);
            one_by_one.remove(&format!("s{:03}", i + 1));
            builder.remove(&format!("s{:03}", i + 1));
        }
        assert_eq!(builder.len(), 160);
        let built = builder.build();
        assert_eq!(built, one_by_one);
        let mut cleared = IndexBuilder::new();
        cleared.put(session(1));
        cleared.clear();
        assert!(cleared.is_empty() && cleared.build().is_empty());
    }

    #[test]
    fn in_place_updates_keep_the_orders_right() {
        let mut index = SessionsIndex::new();
        (0..20).for_each(|i| index.put(session(i)));
        let update = SessionUpdate {
            condition: WriteCondition::default(),
            change: SessionChange::Close,
            now: DateTime::<Utc>::UNIX_EPOCH + Duration::milliseconds(50),
        };
        assert!(matches!(index.update("s004", &update), UpdateOutcome::Updated(_)));
        let mut rebuilt = IndexBuilder::new();
        index.iter().cloned().for_each(|s| rebuilt.put(s));
        assert_eq!(rebuilt.build(), index);
        let walked: Vec<&str> = index.scan(None, 100).iter().map(|s| s.id.as_str()).collect();
        assert_eq!(walked[0], "s004");
        let after: Vec<&str> = index
            .scan(Some((index.get("s004").unwrap().request_time, "s004")), 3)
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(after, walked[1..4]);
    }
}
