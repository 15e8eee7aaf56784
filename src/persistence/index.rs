//! [`SessionsIndex`]: the indexed in-memory engine shared by the memory and file backends.
//!
//! Compact records (one boxed record per session, its id allocated once and shared by every
//! index) plus ordered indexes keyed by `(Reverse(request_time), id)` — the list order itself —
//! for open sessions, closed sessions and each user, and an index of open sessions by
//! `expire_time`. So a lookup by id is O(1); a page of one user's sessions costs
//! O(log n + skip + take) without touching other users; the expiry sweep visits only expired
//! sessions and the purge only the oldest closed ones. The index is not synchronised: each
//! backend wraps it in its own lock and makes every method one atomic step.
//!
//! Write operations come in two shapes: the `plan_*` functions (and [`SessionsIndex::purgeable`])
//! compute what a step would change without changing anything; the others apply it. The file
//! backend logs exactly the records a step puts or deletes, in the order they apply.
//!
//! [`SessionsIndex::scan`] walks the index in list order in short resumable steps (the file
//! backend's compaction), and [`IndexBuilder`] loads many sessions at once (its start-up): it
//! keeps only a map up to date while changes are replayed, then sorts the keys once and builds
//! each ordered index in bulk.

use super::{
    is_alive, session_exists, session_limit, ExpiryPolicy, LimitPolicy, SessionChange, SessionLimit, SessionUpdate,
    UpdateOutcome, WriteCondition,
};
use crate::data::version1::{SessionV1, SessionsFilter};
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::errors::ApplicationError;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::borrow::Borrow;
use std::cmp::Reverse;
use std::collections::btree_set::Range;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::ops::Bound;
use std::sync::Arc;

/// Index key in list order: newest `request_time` first, then id ascending.
type Key = (Reverse<DateTime<Utc>>, Arc<str>);

/// A stored session, laid out compactly (payloads boxed, `null` costs nothing).
#[derive(Debug, Clone)]
struct Record {
    id: Arc<str>,
    user_id: Arc<str>,
    user_name: Option<Box<str>>,
    address: Option<Box<str>>,
    client: Option<Box<str>>,
    active: bool,
    open_time: DateTime<Utc>,
    request_time: DateTime<Utc>,
    close_time: Option<DateTime<Utc>>,
    expire_time: Option<DateTime<Utc>>,
    ttl: Option<i64>,
    user: Option<Box<Value>>,
    data: Option<Box<Value>>,
    version: i64,
}

/// A record in the id set, found by its id.
#[derive(Debug)]
struct Slot(Box<Record>);

impl Borrow<str> for Slot {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}
impl Hash for Slot {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.as_ref().hash(state);
    }
}
impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}
impl Eq for Slot {}

fn payload(v: Option<Value>) -> Option<Box<Value>> {
    v.filter(|v| !v.is_null()).map(Box::new)
}

fn text(v: Option<String>) -> Option<Box<str>> {
    v.map(String::into_boxed_str)
}

impl Record {
    /// The compact form of `s`, with its id and user id already allocated.
    fn new(id: Arc<str>, user_id: Arc<str>, s: SessionV1) -> Self {
        Self {
            id,
            user_id,
            user_name: text(s.user_name),
            address: text(s.address),
            client: text(s.client),
            active: s.active,
            open_time: s.open_time,
            request_time: s.request_time,
            close_time: s.close_time,
            expire_time: s.expire_time,
            ttl: s.ttl,
            user: payload(s.user),
            data: payload(s.data),
            version: s.version,
        }
    }

    fn key(&self) -> Key {
        (Reverse(self.request_time), self.id.clone())
    }

    fn to_session(&self) -> SessionV1 {
        let mut s = self.to_list_item();
        s.user = Some(self.user.as_deref().cloned().unwrap_or(Value::Null));
        s.data = Some(self.data.as_deref().cloned().unwrap_or(Value::Null));
        s
    }

    fn to_list_item(&self) -> SessionV1 {
        SessionV1 {
            id: self.id.to_string(),
            user_id: self.user_id.to_string(),
            user_name: self.user_name.as_deref().map(str::to_string),
            address: self.address.as_deref().map(str::to_string),
            client: self.client.as_deref().map(str::to_string),
            active: self.active,
            open_time: self.open_time,
            request_time: self.request_time,
            close_time: self.close_time,
            user: None,
            data: None,
            version: self.version,
            expire_time: self.expire_time,
            ttl: self.ttl,
        }
    }
}

/// The in-memory state with its indexes; also the engine of the file backend.
#[derive(Debug, Default)]
pub struct SessionsIndex {
    records: HashSet<Slot>,
    open: BTreeSet<Key>,
    closed: BTreeSet<Key>,
    by_user: HashMap<Arc<str>, BTreeSet<Key>>,
    by_expiry: BTreeSet<(DateTime<Utc>, Arc<str>)>,
}

impl SessionsIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored sessions.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether a session with this id exists.
    pub fn contains(&self, id: &str) -> bool {
        self.records.contains(id)
    }

    /// A session by id.
    pub fn get(&self, id: &str) -> Option<SessionV1> {
        self.records.get(id).map(|r| r.0.to_session())
    }

    /// Every stored session (any order).
    pub fn iter(&self) -> impl Iterator<Item = SessionV1> + '_ {
        self.records.iter().map(|r| r.0.to_session())
    }

    /// Up to `limit` sessions in list order, starting after the position `(request_time, id)` of
    /// `after` (from the first when `None`).
    ///
    /// This is a resumable cursor for walking a large index in short steps, releasing the lock
    /// between them: the position need not exist any more. A session that is not changed during
    /// the walk is visited exactly once; one that changes may be visited twice or not at all.
    pub fn scan(&self, after: Option<(DateTime<Utc>, &str)>, limit: usize) -> Vec<SessionV1> {
        let start: Bound<Key> =
            after.map_or(Bound::Unbounded, |(t, id)| Bound::Excluded((Reverse(t), Arc::<str>::from(id))));
        let open = self.open.range((start.clone(), Bound::Unbounded));
        let closed = self.closed.range((start, Bound::Unbounded));
        MergeSorted::new(open, closed)
            .take(limit)
            .filter_map(|(_, id)| self.records.get(&**id).map(|r| r.0.to_session()))
            .collect()
    }

    fn record(&mut self, s: SessionV1) -> Record {
        let id = match self.records.get(s.id.as_str()) {
            Some(old) => old.0.id.clone(),
            None => Arc::from(s.id.as_str()),
        };
        let user_id = match self.by_user.get_key_value(s.user_id.as_str()) {
            Some((u, _)) => u.clone(),
            None => Arc::from(s.user_id.as_str()),
        };
        Record::new(id, user_id, s)
    }

    fn index(&mut self, r: &Record) {
        let k = r.key();
        if r.active {
            self.open.insert(k.clone());
            if let Some(t) = r.expire_time {
                self.by_expiry.insert((t, r.id.clone()));
            }
        } else {
            self.closed.insert(k.clone());
        }
        self.by_user.entry(r.user_id.clone()).or_default().insert(k);
    }

    fn unindex(&mut self, r: &Record) {
        let k = r.key();
        self.open.remove(&k);
        self.closed.remove(&k);
        if let Some(t) = r.expire_time {
            self.by_expiry.remove(&(t, r.id.clone()));
        }
        if let Some(set) = self.by_user.get_mut(&*r.user_id) {
            set.remove(&k);
            if set.is_empty() {
                self.by_user.remove(&*r.user_id);
            }
        }
    }

    /// Inserts or replaces a session.
    pub fn put(&mut self, s: SessionV1) {
        let record = self.record(s);
        if let Some(old) = self.records.take(&*record.id) {
            self.unindex(&old.0);
        }
        self.index(&record);
        self.records.insert(Slot(Box::new(record)));
    }

    /// Removes a session, returning it.
    pub fn remove(&mut self, id: &str) -> Option<SessionV1> {
        let old = self.records.take(id)?;
        self.unindex(&old.0);
        Some(old.0.to_session())
    }

    /// Inserts a new session; `SESSION_EXISTS` if the id is taken.
    ///
    /// # Errors
    /// `Conflict` / `SESSION_EXISTS`.
    pub fn create(&mut self, s: SessionV1) -> Result<SessionV1, ApplicationError> {
        if self.contains(&s.id) {
            return Err(session_exists(&s.id));
        }
        self.put(s.clone());
        Ok(s)
    }

    /// Computes a conditional change without applying it.
    pub fn plan_update(&self, id: &str, update: &SessionUpdate) -> UpdateOutcome {
        match self.get(id) {
            None => UpdateOutcome::NotFound,
            Some(s) if !update.condition.holds(&s) => UpdateOutcome::ConditionFailed(s),
            Some(mut s) => {
                update.change.apply(&mut s, update.now, &update.policy);
                UpdateOutcome::Updated(s)
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

    /// Deletes a session if `condition` holds.
    pub fn delete_if(&mut self, id: &str, condition: &WriteCondition) -> UpdateOutcome {
        match self.get(id) {
            None => UpdateOutcome::NotFound,
            Some(s) if !condition.holds(&s) => UpdateOutcome::ConditionFailed(s),
            Some(_) => self.remove(id).map_or(UpdateOutcome::NotFound, UpdateOutcome::Updated),
        }
    }

    fn closed_copy(&self, id: &str, now: DateTime<Utc>) -> Option<SessionV1> {
        self.get(id).map(|mut s| {
            SessionChange::Close.apply(&mut s, now, &ExpiryPolicy::default());
            s
        })
    }

    /// The open sessions not alive at `now`, closed at `now` (not yet applied).
    pub fn plan_close_expired(&self, idle_cutoff: DateTime<Utc>, now: DateTime<Utc>) -> Vec<SessionV1> {
        self.plan_close_expired_at(now, Some(idle_cutoff))
    }

    /// The open sessions not alive at `now` (records without `expire_time` judged by
    /// `idle_cutoff`), closed at `now` (not yet applied).
    pub fn plan_close_expired_at(&self, now: DateTime<Utc>, idle_cutoff: Option<DateTime<Utc>>) -> Vec<SessionV1> {
        let mut ids: Vec<Arc<str>> =
            self.by_expiry.range(..(now, Arc::<str>::from(""))).map(|(_, id)| id.clone()).collect();
        if let Some(before) = idle_cutoff.and_then(|c| c.checked_sub_signed(chrono::Duration::milliseconds(1))) {
            // Records without an expire_time, idle since before the cutoff.
            let start = (Reverse(before), Arc::<str>::from(""));
            ids.extend(
                self.open
                    .range((Bound::Included(start), Bound::Unbounded))
                    .filter(|(_, id)| self.records.get(&**id).is_some_and(|r| r.0.expire_time.is_none()))
                    .map(|(_, id)| id.clone()),
            );
        }
        ids.iter()
            .filter(|id| self.get(id).is_some_and(|s| s.active && !is_alive(&s, Some(now), idle_cutoff)))
            .filter_map(|id| self.closed_copy(id, now))
            .collect()
    }

    /// Closes the open sessions of a user except one; returns them closed.
    pub fn close_user_sessions(
        &mut self,
        user_id: &str,
        except_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Vec<SessionV1> {
        let ids: Vec<Arc<str>> =
            self.by_user.get(user_id).map(|set| set.iter().map(|(_, id)| id.clone()).collect()).unwrap_or_default();
        let closed: Vec<SessionV1> = ids
            .iter()
            .filter(|id| Some(&***id) != except_id)
            .filter(|id| self.records.get(&***id).is_some_and(|r| r.0.active))
            .filter_map(|id| self.closed_copy(id, now))
            .collect();
        closed.iter().for_each(|s| self.put(s.clone()));
        closed
    }

    /// The ids of at most `limit` closed sessions closed before `closed_before`, oldest first.
    pub fn purgeable(&self, closed_before: DateTime<Utc>, limit: u64) -> Vec<String> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self.closed
            .iter()
            .rev()
            .take_while(|(Reverse(t), _)| *t < closed_before)
            .filter(|(_, id)| {
                self.records.get(&**id).is_some_and(|r| r.0.close_time.unwrap_or(r.0.request_time) < closed_before)
            })
            .take(limit)
            .map(|(_, id)| id.to_string())
            .collect()
    }

    /// Inserts a session within a per-user limit: returns the sessions closed to make room (under
    /// `CloseOldest`) or to drop expired ones, already applied.
    ///
    /// # Errors
    /// `SESSION_LIMIT` under `Deny`; `SESSION_EXISTS` if the id is taken.
    pub fn create_limited(&mut self, s: SessionV1, limit: &SessionLimit) -> Result<Vec<SessionV1>, ApplicationError> {
        if self.contains(&s.id) {
            return Err(session_exists(&s.id));
        }
        let mut open: Vec<SessionV1> = self
            .by_user
            .get(s.user_id.as_str())
            .map(|set| set.iter().filter_map(|(_, id)| self.get(id)).filter(|x| x.active).collect())
            .unwrap_or_default();
        let (alive, expired): (Vec<SessionV1>, Vec<SessionV1>) =
            open.drain(..).partition(|x| is_alive(x, Some(limit.now), limit.idle_cutoff));
        let mut to_close: Vec<String> = expired.into_iter().map(|x| x.id).collect();
        let count = alive.len() as u64;
        if count >= limit.max {
            match limit.policy {
                LimitPolicy::Deny => return Err(session_limit(&s.user_id, limit.max)),
                LimitPolicy::CloseOldest => {
                    let mut oldest = alive;
                    oldest.sort_by(|a, b| a.open_time.cmp(&b.open_time).then_with(|| a.id.cmp(&b.id)));
                    let excess = usize::try_from(count + 1 - limit.max).unwrap_or(usize::MAX);
                    to_close.extend(oldest.into_iter().take(excess).map(|x| x.id));
                }
            }
        }
        let closed: Vec<SessionV1> = to_close.iter().filter_map(|id| self.closed_copy(id, limit.now)).collect();
        closed.iter().for_each(|c| self.put(c.clone()));
        self.put(s);
        Ok(closed)
    }

    /// Moves a session to a new id when the update's condition holds.
    ///
    /// # Errors
    /// `SESSION_EXISTS` if `new_id` is taken.
    pub fn rotate_id(
        &mut self,
        id: &str,
        new_id: &str,
        update: &SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError> {
        if self.contains(new_id) {
            return Err(session_exists(new_id));
        }
        let outcome = self.plan_update(id, update);
        if let UpdateOutcome::Updated(s) = &outcome {
            self.remove(id);
            let mut moved = s.clone();
            moved.id = new_id.to_string();
            self.put(moved.clone());
            return Ok(UpdateOutcome::Updated(moved));
        }
        Ok(outcome)
    }

    /// Deletes everything.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// A page in list order, without `user` and `data`.
    pub fn page(&self, filter: &SessionsFilter, paging: &PagingParams, max_page_size: u64) -> DataPage<SessionV1> {
        let skip = usize::try_from(paging.skip()).unwrap_or(usize::MAX);
        let take = usize::try_from(paging.take(max_page_size)).unwrap_or(usize::MAX);
        let item = |id: &Arc<str>| {
            self.records
                .get(&**id)
                .map(|r| &r.0)
                .filter(|r| filter.matches_fields(&r.id, &r.user_id, r.active, r.request_time))
        };
        if let Some(id) = &filter.id {
            let found: Vec<SessionV1> = item(&Arc::from(id.as_str())).map(|r| r.to_list_item()).into_iter().collect();
            let total = paging.total.then_some(found.len() as u64);
            return DataPage { total, data: found.into_iter().skip(skip).take(take).collect() };
        }
        // Narrow to the time window first: keys are (Reverse(time), id), so `time < to` starts at
        // Reverse(to - 1ms) and `time >= from` ends before Reverse(from - 1ms).
        let before = |t: DateTime<Utc>| t.checked_sub_signed(chrono::Duration::milliseconds(1)).unwrap_or(t);
        let lower =
            filter.to_time.map_or(Bound::Unbounded, |t| Bound::Included((Reverse(before(t)), Arc::<str>::from(""))));
        let upper =
            filter.from_time.map_or(Bound::Unbounded, |t| Bound::Excluded((Reverse(before(t)), Arc::<str>::from(""))));
        if let (Bound::Included(l), Bound::Excluded(u)) = (&lower, &upper) {
            if l >= u {
                return DataPage { total: paging.total.then_some(0), data: Vec::new() };
            }
        }
        let empty = BTreeSet::new();
        fn within<'a>(set: &'a BTreeSet<Key>, lower: &Bound<Key>, upper: &Bound<Key>) -> Range<'a, Key> {
            set.range((lower.clone(), upper.clone()))
        }
        let range = |set| within(set, &lower, &upper);
        let keys: Box<dyn Iterator<Item = &Key> + '_> = match (&filter.user_id, filter.active) {
            (Some(u), _) => Box::new(range(self.by_user.get(u.as_str()).unwrap_or(&empty))),
            (None, Some(true)) => Box::new(range(&self.open)),
            (None, Some(false)) => Box::new(range(&self.closed)),
            (None, None) => Box::new(MergeSorted::new(range(&self.open), range(&self.closed))),
        };
        let mut data = Vec::new();
        let mut seen = 0usize;
        for r in keys.filter_map(|(_, id)| item(id)) {
            if seen >= skip && data.len() < take {
                data.push(r.to_list_item());
            }
            seen += 1;
            if !paging.total && data.len() >= take {
                break;
            }
        }
        let total = paging.total.then_some(seen as u64);
        DataPage { total, data }
    }
}

/// Merges two iterators that are each sorted ascending.
struct MergeSorted<'a, A: Iterator<Item = &'a Key>, B: Iterator<Item = &'a Key>> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<'a, A: Iterator<Item = &'a Key>, B: Iterator<Item = &'a Key>> MergeSorted<'a, A, B> {
    fn new(a: A, b: B) -> Self {
        Self { a: a.peekable(), b: b.peekable() }
    }
}

impl<'a, A: Iterator<Item = &'a Key>, B: Iterator<Item = &'a Key>> Iterator for MergeSorted<'a, A, B> {
    type Item = &'a Key;
    fn next(&mut self) -> Option<&'a Key> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if y < x => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
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

    /// The index: each session turned into its compact record once (user ids shared), the keys
    /// sorted once and each ordered set built from sorted input (the per-user sets on a second
    /// thread).
    pub fn build(self) -> SessionsIndex {
        let n = self.by_id.len();
        let mut records: HashSet<Slot> = HashSet::with_capacity(n);
        let mut users: HashMap<Arc<str>, Vec<Key>> = HashMap::new();
        let mut open: Vec<Key> = Vec::new();
        let mut closed: Vec<Key> = Vec::new();
        let mut by_expiry: Vec<(DateTime<Utc>, Arc<str>)> = Vec::new();
        for (id, s) in self.by_id {
            let user_id = match users.get_key_value(s.user_id.as_str()) {
                Some((u, _)) => u.clone(),
                None => Arc::from(s.user_id.as_str()),
            };
            let record = Record::new(id, user_id, s);
            let k = record.key();
            if record.active {
                open.push(k.clone());
                if let Some(t) = record.expire_time {
                    by_expiry.push((t, record.id.clone()));
                }
            } else {
                closed.push(k.clone());
            }
            users.entry(record.user_id.clone()).or_default().push(k);
            records.insert(Slot(Box::new(record)));
        }
        let by_user_of = |users: HashMap<Arc<str>, Vec<Key>>| -> HashMap<Arc<str>, BTreeSet<Key>> {
            users
                .into_iter()
                .map(|(u, mut ks)| {
                    ks.sort_unstable();
                    (u, ks.into_iter().collect())
                })
                .collect()
        };
        let sorted = |mut v: Vec<Key>| -> BTreeSet<Key> {
            v.sort_unstable();
            v.into_iter().collect()
        };
        let (by_user, open, closed, by_expiry) = std::thread::scope(|scope| {
            let users = scope.spawn(move || by_user_of(users));
            let open = sorted(open);
            let closed = sorted(closed);
            by_expiry.sort_unstable();
            let by_expiry: BTreeSet<(DateTime<Utc>, Arc<str>)> = by_expiry.into_iter().collect();
            // The thread cannot panic; should it anyway, the user index is rebuilt below.
            (users.join().ok(), open, closed, by_expiry)
        });
        let mut index = SessionsIndex { records, open, closed, by_user: by_user.unwrap_or_default(), by_expiry };
        if index.by_user.is_empty() && !index.records.is_empty() {
            let keys: Vec<(Arc<str>, Key)> = index.records.iter().map(|r| (r.0.user_id.clone(), r.0.key())).collect();
            for (u, k) in keys {
                index.by_user.entry(u).or_default().insert(k);
            }
        }
        index
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
        if s.active && i % 2 == 0 {
            s.expire_time = Some(t + Duration::milliseconds(1000 + i));
        }
        s
    }

    /// Everything an index holds, in a comparable form.
    type Fingerprint = (
        Vec<SessionV1>,
        BTreeSet<Key>,
        BTreeSet<Key>,
        Vec<(Arc<str>, BTreeSet<Key>)>,
        BTreeSet<(DateTime<Utc>, Arc<str>)>,
    );

    fn fingerprint(index: &SessionsIndex) -> Fingerprint {
        let mut sessions: Vec<SessionV1> = index.iter().collect();
        sessions.sort_by(|a, b| a.id.cmp(&b.id));
        let mut users: Vec<(Arc<str>, BTreeSet<Key>)> =
            index.by_user.iter().map(|(u, ks)| (u.clone(), ks.clone())).collect();
        users.sort();
        (sessions, index.open.clone(), index.closed.clone(), users, index.by_expiry.clone())
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
        assert_eq!(fingerprint(&built), fingerprint(&one_by_one));
        let mut cleared = IndexBuilder::new();
        cleared.put(session(1));
        cleared.clear();
        assert!(cleared.is_empty() && cleared.build().is_empty());
    }

    #[test]
    fn the_scan_walks_open_and_closed_sessions_in_list_order() {
        let mut index = SessionsIndex::new();
        (0..20).for_each(|i| index.put(session(i)));
        let update = SessionUpdate {
            condition: WriteCondition::default(),
            change: SessionChange::Close,
            now: DateTime::<Utc>::UNIX_EPOCH + Duration::milliseconds(50),
            policy: ExpiryPolicy::default(),
        };
        assert!(matches!(index.update("s004", &update), UpdateOutcome::Updated(_)));
        let mut rebuilt = IndexBuilder::new();
        index.iter().for_each(|s| rebuilt.put(s));
        assert_eq!(fingerprint(&rebuilt.build()), fingerprint(&index));
        let walked: Vec<String> = index.scan(None, 100).into_iter().map(|s| s.id).collect();
        let listed: Vec<String> = index
            .page(&SessionsFilter::default(), &PagingParams { skip: None, take: Some(100), total: false }, 100)
            .data
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(walked, listed);
        assert_eq!(walked[0], "s004");
        let after: Vec<String> =
            index.scan(Some((index.get("s004").unwrap().request_time, "s004")), 3).into_iter().map(|s| s.id).collect();
        assert_eq!(after, walked[1..4]);
    }
}
