//! [`SessionsIndex`]: the indexed in-memory engine shared by the memory and file backends.
//!
//! Compact records (one slot of a slab per session, found by id through a table of slots; its id
//! allocated once and shared by every index, times in milliseconds) plus ordered indexes keyed by
//! `(request_time, Reverse(id))` (each user's keys also carry the record's slot, so a page by
//! user reaches its records without hashing their ids) —
//! the list order read backwards, so that new and refreshed sessions land at the end — for open sessions, closed
//! sessions and each user, and an index of open sessions by `expire_time`. The list-order
//! indexes are [`CountedSet`]s, which know the rank of every position: a lookup by id is O(1); a
//! page of one user's sessions costs O(log n + take) without touching other users, and its total
//! O(log n) with or without a time window; the expiry sweep visits only expired sessions and the
//! purge only the oldest closed ones. A write finds each of the record's keys once: a refresh
//! that does not change a record's place in a set (the newest session getting newer) rewrites its
//! key in place, one that makes it the newest moves the key to the set's end without a second
//! search, and a set whose key keeps its time is not touched. A page is encoded to JSON
//! straight from the records ([`SessionsIndex::page_json`]). The index is not synchronised: each
//! backend wraps it in its own lock and makes every method one atomic step.
//!
//! Write operations come in two shapes: the `plan_*` functions (and [`SessionsIndex::purgeable`])
//! compute what a step would change without changing anything; the others apply it. The file
//! backend logs exactly the records a step puts or deletes, in the order they apply.
//!
//! [`SessionsIndex::scan`] walks the index in list order in short resumable steps (the file
//! backend's compaction), and [`IndexBuilder`] loads many sessions at once (its start-up): it
//! keeps only the records and their id table up to date while changes are replayed (a record
//! can be made on any thread, from any view of a session), then sorts the keys once and builds
//! each ordered index in bulk.

mod answer;
mod builder;
mod counted;
mod record;
mod slab;
#[cfg(test)]
mod tests;
mod users;

pub(crate) use builder::IndexBuilder;
use counted::CountedSet;
pub(crate) use record::ceil_millis;
use record::{millis, ExpiryKey, Key, ListItem, ListKey, Millis, Place, Record, Spot, TimedKey};
use slab::Records;
use slab::SlotId;

use super::{
    is_alive, limit_victims, max_sessions_reached, session_exists, session_limit, ExpiryPolicy, OpenLimits,
    SessionChange, SessionLimit, SessionUpdate, UpdateOutcome, WriteCondition,
};
use crate::data::version1::{SessionV1, SessionsFilter};
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::json::JsonText;
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Most records a page looks up at once (see [`SessionsIndex::page_records`]).
const PAGE_BATCH: usize = 128;

/// A position in list order, `(request_time, id)`, that [`SessionsIndex::scan`] resumes after.
pub(crate) type ScanPosition = (DateTime<Utc>, String);

/// Each user's sets by user id ([`users::UserMap`]: a new session hashes its user id once).
type UserMap = users::UserMap<UserSets>;

/// A user's sessions (keys with the records' slots) and the user's open sessions.
#[derive(Debug, Default)]
struct UserSets {
    all: CountedSet<Key>,
    open: CountedSet<ListKey>,
}

impl UserSets {
    /// Puts a record's keys in the user's sets of its state.
    fn add(&mut self, active: bool, k: Key, lk: &ListKey) {
        if active {
            self.open.insert(lk.clone());
        }
        self.all.insert(k);
    }
}

/// The in-memory state with its indexes; also the engine of the file backend.
///
/// Besides the list-order sets, each user's open sessions and the open sessions without an
/// `expire_time` have sets of their own, and every set knows its size: totals without a time
/// window are O(1) and with one O(log n), closing a user's sessions and the per-user limit visit only that user's open
/// sessions, and the expiry sweep never walks sessions whose own `expire_time` is still ahead.
/// [`SessionsIndex::visits`] counts the records the queries touch (what the complexity tests
/// measure).
#[derive(Debug, Default)]
pub(crate) struct SessionsIndex {
    records: Records,
    open: CountedSet<ListKey>,
    closed: CountedSet<ListKey>,
    /// Each user's sets, in one map: a write hashes its user id once.
    users: UserMap,
    /// Open sessions without an `expire_time` (judged by the idle cutoff).
    untimed: CountedSet<ListKey>,
    /// Open sessions with an `expire_time`, by it.
    by_expiry: CountedSet<ExpiryKey>,
    visits: AtomicU64,
}

impl SessionsIndex {
    /// An empty index.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// How many index entries the queries have visited so far (list pages, the expiry sweep,
    /// per-user closes and limits): the cost model the complexity tests check.
    #[cfg(test)]
    pub(crate) fn visits(&self) -> u64 {
        self.visits.load(Ordering::Relaxed)
    }

    fn visited(&self, n: usize) {
        self.visits.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Whether nothing is stored.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether a session with this id exists.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.records.contains(id)
    }

    /// A session by id.
    pub(crate) fn get(&self, id: &str) -> Option<SessionV1> {
        self.records.get(id).map(Record::to_session)
    }

    /// Every stored session (any order).
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = SessionV1> + '_ {
        self.records.iter().map(|(_, r)| r.to_session())
    }

    /// Up to `limit` sessions in list order, starting after the position `(request_time, id)` of
    /// `after` (from the first when `None`).
    ///
    /// This is a resumable cursor for walking a large index in short steps, releasing the lock
    /// between them: the position need not exist any more. A session that is not changed during
    /// the walk is visited exactly once; one that changes may be visited twice or not at all.
    pub(crate) fn scan(&self, after: Option<(DateTime<Utc>, &str)>, limit: usize) -> Vec<SessionV1> {
        self.scan_records(after, limit).map(Record::to_session).collect()
    }

    /// [`SessionsIndex::scan`]'s step with each session visited as a view of its record (no
    /// session is built, its payloads not parsed): the count visited, and the position of the
    /// last one to resume after; the first error stops the step.
    pub(crate) fn scan_each<E>(
        &self,
        after: Option<(DateTime<Utc>, &str)>,
        limit: usize,
        mut visit: impl FnMut(&record::Whole<'_>) -> Result<(), E>,
    ) -> Result<(usize, Option<ScanPosition>), E> {
        let (mut count, mut last) = (0, None);
        for r in self.scan_records(after, limit) {
            visit(&record::Whole::new(r))?;
            count += 1;
            last = Some(r);
        }
        Ok((count, last.map(|r| (record::time(r.request_time), r.id.to_string()))))
    }

    /// The records of a [`SessionsIndex::scan`] step.
    fn scan_records(&self, after: Option<(DateTime<Utc>, &str)>, limit: usize) -> impl Iterator<Item = &Record> + '_ {
        // The keys after `(t, id)` in list order are the ones before it in key order.
        let end = |set: &CountedSet<ListKey>| match after {
            None => set.len(),
            Some((t, id)) => {
                // Keys before `(t, id)`; no key has `t` itself when `t` is not a whole millisecond.
                let (c, whole) = (ceil_millis(t), millis(t) == ceil_millis(t));
                set.rank(|k| k.t < c || (whole && k.t == c && &*k.id > id))
            }
        };
        let open = self.open.iter_back_from(end(&self.open));
        let closed = self.closed.iter_back_from(end(&self.closed));
        MergeBack::new(open, closed).take(limit).filter_map(|k| self.records.get(&k.id))
    }

    /// The shared allocation of a user id (a new one for a user without sessions).
    fn user_id(&self, user_id: &str) -> Arc<str> {
        match self.users.key_value(user_id) {
            Some((u, _)) => u.clone(),
            None => Arc::from(user_id),
        }
    }

    fn index(&mut self, p: Place) {
        let Place { active, user_id, key: k, expiry } = p;
        let lk = k.list_key();
        self.users.get_or_default(user_id).add(active, k, &lk);
        self.index_store(active, lk, expiry);
    }

    /// Puts a record's list key and expiry key in the store's sets of its state.
    fn index_store(&mut self, active: bool, lk: ListKey, expiry: Option<ExpiryKey>) {
        if active {
            self.open.insert(lk.clone());
            match expiry {
                Some(e) => {
                    self.by_expiry.insert(e);
                }
                None => {
                    self.untimed.insert(lk);
                }
            }
        } else {
            self.closed.insert(lk);
        }
    }

    fn unindex(&mut self, p: &Place) {
        let (k, lk) = (&p.key, &p.key.list_key());
        self.open.remove(lk);
        self.closed.remove(lk);
        self.untimed.remove(lk);
        if let Some(e) = &p.expiry {
            self.by_expiry.remove(e);
        }
        if let Some(sets) = self.users.get_mut(&p.user_id) {
            sets.open.remove(lk);
            sets.all.remove(k);
            if sets.all.is_empty() {
                self.users.remove(&p.user_id);
            }
        }
    }

    /// Moves a changed record's keys: set by set, in place where its order does not change; a
    /// record that changes state or user leaves its sets and joins the others.
    fn reindex(&mut self, old: Place, new: Place) {
        if old.active != new.active || old.user_id != new.user_id {
            self.unindex(&old);
            self.index(new);
            return;
        }
        let spot = |p: &Place| Spot { active: p.active, t: p.key.t, expiry: p.expiry.as_ref().map(|e| e.t) };
        self.rekey(&new.key.id, &new.user_id, spot(&old), spot(&new));
    }

    /// Moves the keys of the record with id `id` of user `user` from `old` to `new` (the same
    /// state): each set's key is found once and takes its new time where it now belongs (its id
    /// allocation moves with it); a set whose key keeps its time is not touched. A refreshed
    /// session's keys move to the end of their sets without a second search.
    fn rekey(&mut self, id: &Arc<str>, user: &str, old: Spot, new: Spot) {
        fn at<const D: bool, S>(t: Millis, id: &Arc<str>) -> impl Fn(&TimedKey<D, S>) -> std::cmp::Ordering + '_ {
            move |k| k.cmp_at(t, id)
        }
        fn to<const D: bool, S>(t: Millis) -> impl FnOnce(&mut TimedKey<D, S>) {
            move |k| k.t = t
        }
        if old.t != new.t {
            let sets = self.users.get_mut(user);
            if old.active {
                self.open.rekey(at(old.t, id), to(new.t));
                if old.expiry.is_none() && new.expiry.is_none() {
                    self.untimed.rekey(at(old.t, id), to(new.t));
                }
            } else {
                self.closed.rekey(at(old.t, id), to(new.t));
            }
            if let Some(sets) = sets {
                if old.active {
                    sets.open.rekey(at(old.t, id), to(new.t));
                }
                sets.all.rekey(at(old.t, id), to(new.t));
            }
        }
        if !old.active {
            return;
        }
        match (old.expiry, new.expiry) {
            (Some(a), Some(b)) if a != b => {
                self.by_expiry.rekey(at(a, id), to(b));
            }
            (Some(a), None) => {
                self.by_expiry.remove(&ExpiryKey::new(a, id.clone(), ()));
                self.untimed.insert(ListKey::new(new.t, id.clone(), ()));
            }
            (None, Some(b)) => {
                self.untimed.remove(&ListKey::new(old.t, id.clone(), ()));
                self.by_expiry.insert(ExpiryKey::new(b, id.clone(), ()));
            }
            _ => {}
        }
    }

    /// Inserts or replaces a session (a replaced one keeps its record's allocations for ids).
    pub(crate) fn put(&mut self, s: SessionV1) {
        let old = self.records.slot(&s.id).and_then(|slot| Some((slot, self.records.at(slot)?)));
        match old {
            Some((slot, old)) => {
                let user_id = if *old.user_id == *s.user_id { old.user_id.clone() } else { self.user_id(&s.user_id) };
                let record = Record::of(old.id.clone(), user_id, &s);
                let (old, new) = (old.place(slot), record.place(slot));
                if let Some(r) = self.records.at_mut(slot) {
                    *r = record;
                }
                self.reindex(old, new);
            }
            None => self.insert_new(s),
        }
    }

    /// Inserts a session whose id no record has (the caller checked): no lookup of the id first,
    /// and one of its user id, which finds both the user's shared id and sets.
    fn insert_new(&mut self, s: SessionV1) {
        let (user_id, sets) = self.users.get_or_insert(s.user_id.as_str());
        let record = Record::of(Arc::from(s.id.as_str()), user_id, &s);
        // A store of 2^32 sessions (over a terabyte of memory) takes no more.
        let Some((slot, record)) = self.records.insert(record).and_then(|slot| Some((slot, self.records.at(slot)?)))
        else {
            // Not even a new user's empty sets stay behind.
            if sets.all.is_empty() {
                self.users.retain(|_, sets| !sets.all.is_empty());
            }
            return;
        };
        let Place { active, key, expiry, .. } = record.place(slot);
        let lk = key.list_key();
        sets.add(active, key, &lk);
        self.index_store(active, lk, expiry);
    }

    /// Removes a session, returning it.
    pub(crate) fn remove(&mut self, id: &str) -> Option<SessionV1> {
        let (slot, old) = self.records.remove(id)?;
        self.unindex(&old.place(slot));
        Some(old.to_session())
    }

    /// Inserts a new session; `SESSION_EXISTS` if the id is taken.
    ///
    /// # Errors
    /// `Conflict` / `SESSION_EXISTS`.
    pub(crate) fn create(&mut self, s: SessionV1) -> Result<SessionV1, ApplicationError> {
        if self.contains(&s.id) {
            return Err(session_exists(&s.id));
        }
        self.insert_new(s.clone());
        Ok(s)
    }

    /// Applies a conditional change to the record in place: the condition is checked on the
    /// record, the change applied to it (its payload's text copied into the record) and its keys moved;
    /// the session is built once, for the answer.
    pub(crate) fn update(&mut self, id: &str, update: SessionUpdate) -> UpdateOutcome {
        self.update_answering(id, update, Record::to_session)
    }

    /// [`SessionsIndex::update`] answering `answer` of the record after the change.
    pub(crate) fn update_answering<T>(
        &mut self,
        id: &str,
        update: SessionUpdate,
        answer: impl FnOnce(&Record) -> T,
    ) -> UpdateOutcome<T> {
        let Some(slot) = self.records.slot(id) else { return UpdateOutcome::NotFound };
        let Some(record) = self.records.at_mut(slot) else { return UpdateOutcome::NotFound };
        if !record.satisfies(&update.condition) {
            return UpdateOutcome::ConditionFailed(record.to_session());
        }
        let old = record.spot();
        record.apply(update.change, update.now, &update.policy);
        let (new, answered) = (record.spot(), answer(record));
        if old.active == new.active {
            let (id, user) = (record.id.clone(), record.user_id.clone());
            self.rekey(&id, &user, old, new);
        } else {
            let new = record.place(slot);
            let key = Key::new(old.t, new.key.id.clone(), slot);
            let expiry = old.expiry.map(|t| ExpiryKey::new(t, new.key.id.clone(), ()));
            let old = Place { active: old.active, user_id: new.user_id.clone(), key, expiry };
            self.unindex(&old);
            self.index(new);
        }
        UpdateOutcome::Updated(answered)
    }

    /// Deletes a session if `condition` holds.
    pub(crate) fn delete_if(&mut self, id: &str, condition: &WriteCondition) -> UpdateOutcome {
        match self.records.get(id) {
            None => UpdateOutcome::NotFound,
            Some(r) if !r.satisfies(condition) => UpdateOutcome::ConditionFailed(r.to_session()),
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
    #[cfg(test)]
    pub(crate) fn plan_close_expired(&self, idle_cutoff: DateTime<Utc>, now: DateTime<Utc>) -> Vec<SessionV1> {
        self.plan_close_expired_at(now, Some(idle_cutoff))
    }

    /// The open sessions not alive at `now` (records without `expire_time` judged by
    /// `idle_cutoff`), closed at `now` (not yet applied).
    #[cfg(test)]
    pub(crate) fn plan_close_expired_at(
        &self,
        now: DateTime<Utc>,
        idle_cutoff: Option<DateTime<Utc>>,
    ) -> Vec<SessionV1> {
        self.plan_close_expired_limited(now, idle_cutoff, usize::MAX)
    }

    /// At most `limit` of the sessions [`SessionsIndex::plan_close_expired_at`] returns: a bulk
    /// expiry is applied in bounded batches, the lock released between them. Visits only expired
    /// sessions: those whose `expire_time` has passed and untimed ones idle since the cutoff.
    pub(crate) fn plan_close_expired_limited(
        &self,
        now: DateTime<Utc>,
        idle_cutoff: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Vec<SessionV1> {
        let now_ms = ceil_millis(now);
        let mut ids: Vec<Arc<str>> =
            self.by_expiry.iter().take_while(|e| e.t < now_ms).take(limit).map(|e| e.id.clone()).collect();
        if let Some(cutoff) = idle_cutoff.map(ceil_millis) {
            // Records without an expire_time, idle since before the cutoff (oldest first).
            let room = limit.saturating_sub(ids.len());
            ids.extend(self.untimed.iter().take_while(|k| k.t < cutoff).take(room).map(|k| k.id.clone()));
        }
        self.visited(ids.len());
        ids.iter()
            .filter(|id| self.get(id).is_some_and(|s| s.active && !is_alive(&s, Some(now), idle_cutoff)))
            .filter_map(|id| self.closed_copy(id, now))
            .collect()
    }

    /// Closes the open sessions of a user except one; returns them closed.
    #[cfg(test)]
    pub(crate) fn close_user_sessions(
        &mut self,
        user_id: &str,
        except_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Vec<SessionV1> {
        self.close_user_sessions_limited(user_id, except_id, now, usize::MAX)
    }

    /// Closes at most `limit` open sessions of a user except one (visiting only that user's open
    /// sessions); returns them closed. Fewer than `limit` means none is left.
    pub(crate) fn close_user_sessions_limited(
        &mut self,
        user_id: &str,
        except_id: Option<&str>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Vec<SessionV1> {
        let ids: Vec<Arc<str>> = self
            .users
            .get(user_id)
            .map(|sets| {
                sets.open.iter().map(|k| k.id.clone()).filter(|id| Some(&**id) != except_id).take(limit).collect()
            })
            .unwrap_or_default();
        self.visited(ids.len());
        let closed: Vec<SessionV1> = ids.iter().filter_map(|id| self.closed_copy(id, now)).collect();
        closed.iter().for_each(|s| self.put(s.clone()));
        closed
    }

    /// The ids of at most `limit` closed sessions closed before `closed_before`, oldest first.
    pub(crate) fn purgeable(&self, closed_before: DateTime<Utc>, limit: u64) -> Vec<String> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let before = ceil_millis(closed_before);
        self.closed
            .iter()
            .take_while(|k| k.t < before)
            .filter(|k| self.records.get(&k.id).is_some_and(|r| r.close_ms().unwrap_or(r.request_time) < before))
            .take(limit)
            .map(|k| k.id.to_string())
            .collect()
    }

    /// Inserts a session within a per-user limit: returns the sessions closed to make room (under
    /// `CloseOldest`) or to drop expired ones, already applied.
    ///
    /// # Errors
    /// `SESSION_LIMIT` under `Deny`; `SESSION_EXISTS` if the id is taken.
    pub(crate) fn create_limited(
        &mut self,
        s: SessionV1,
        limit: &SessionLimit,
    ) -> Result<Vec<SessionV1>, ApplicationError> {
        self.create_within(s, &OpenLimits { per_user: Some(*limit), max_open: None })
    }

    /// Inserts a session within `limits`, in one step: the per-user limit (closing what it
    /// closes) and the cap on the open sessions of the store, counted as they will be after the
    /// insert. Returns the sessions closed, already applied; on an error nothing changed.
    ///
    /// # Errors
    /// `SESSION_LIMIT` under `Deny`; `MAX_SESSIONS` at the cap; `SESSION_EXISTS` if the id is taken.
    pub(crate) fn create_within(
        &mut self,
        s: SessionV1,
        limits: &OpenLimits,
    ) -> Result<Vec<SessionV1>, ApplicationError> {
        if self.contains(&s.id) {
            return Err(session_exists(&s.id));
        }
        let closed: Vec<SessionV1> = match &limits.per_user {
            None => Vec::new(),
            Some(limit) => {
                let open: Vec<SessionV1> = self
                    .users
                    .get(s.user_id.as_str())
                    .map(|sets| sets.open.iter().filter_map(|k| self.get(&k.id)).collect())
                    .unwrap_or_default();
                self.visited(open.len());
                let to_close = limit_victims(open, limit).ok_or_else(|| session_limit(&s.user_id, limit.max))?;
                to_close.iter().filter_map(|id| self.closed_copy(id, limit.now)).collect()
            }
        };
        if let Some(max) = limits.max_open {
            // Every victim is open now and closed after the step.
            let after = (self.open.len() - closed.len()) as u64 + u64::from(s.active);
            if after > max {
                return Err(max_sessions_reached(max));
            }
        }
        closed.iter().for_each(|c| self.put(c.clone()));
        self.insert_new(s);
        Ok(closed)
    }

    /// Moves a session to a new id when the update's condition holds.
    ///
    /// # Errors
    /// `SESSION_EXISTS` if `new_id` is taken.
    pub(crate) fn rotate_id(
        &mut self,
        id: &str,
        new_id: &str,
        update: &SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError> {
        if self.contains(new_id) {
            return Err(session_exists(new_id));
        }
        match self.get(id) {
            None => Ok(UpdateOutcome::NotFound),
            Some(s) if !update.condition.holds(&s) => Ok(UpdateOutcome::ConditionFailed(s)),
            Some(mut moved) => {
                update.change.apply(&mut moved, update.now, &update.policy);
                self.remove(id);
                moved.id = new_id.to_string();
                self.put(moved.clone());
                Ok(UpdateOutcome::Updated(moved))
            }
        }
    }

    /// Deletes everything.
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// A page in list order, without `user` and `data`.
    pub(crate) fn page(
        &self,
        filter: &SessionsFilter,
        paging: &PagingParams,
        max_page_size: u64,
    ) -> DataPage<SessionV1> {
        let page = self.page_records(filter, paging, max_page_size);
        DataPage { total: page.total, data: page.data.into_iter().map(Record::to_list_item).collect() }
    }

    /// [`SessionsIndex::page`] as its JSON text, encoded straight from the records (no session
    /// is built): the same text as the page of sessions.
    pub(crate) fn page_json(&self, filter: &SessionsFilter, paging: &PagingParams, max_page_size: u64) -> JsonText {
        let page = self.page_records(filter, paging, max_page_size);
        JsonText::write(&DataPage { total: page.total, data: page.data.into_iter().map(ListItem::new).collect() })
    }

    /// The records of a page in list order.
    ///
    /// The time window and `skip` become ranks in the list-order set the filter reads, so the
    /// total costs O(log n) and the page O(log n + take) — except where the set holds sessions the
    /// filter leaves out (a user's closed sessions: their open ones are stepped over; no user and
    /// no state: the open and closed sets are merged, and `skip` steps over both).
    fn page_records(&self, filter: &SessionsFilter, paging: &PagingParams, max_page_size: u64) -> DataPage<&Record> {
        let skip = usize::try_from(paging.skip()).unwrap_or(usize::MAX);
        let take = usize::try_from(paging.take(max_page_size)).unwrap_or(usize::MAX);
        // `from_time <= request_time < to_time`, in whole milliseconds.
        let (from, to) = (filter.from_time.map(ceil_millis), filter.to_time.map(ceil_millis));
        let matches = |r: &Record| {
            filter.id.as_deref().is_none_or(|x| x == &*r.id)
                && filter.user_id.as_deref().is_none_or(|u| u == &*r.user_id)
                && filter.active.is_none_or(|a| a == r.is_active())
                && from.is_none_or(|f| r.request_time >= f)
                && to.is_none_or(|t| r.request_time < t)
        };
        if let Some(id) = &filter.id {
            let found: Vec<&Record> = self.records.get(id).filter(|r| matches(r)).into_iter().collect();
            let total = paging.total.then_some(found.len() as u64);
            return DataPage { total, data: found.into_iter().skip(skip).take(take).collect() };
        }
        let window = |set: &CountedSet<Key>| window_of(set, from, to);
        let list_window = |set: &CountedSet<ListKey>| window_of(set, from, to);
        let (empty, list_empty) = (CountedSet::default(), CountedSet::default());
        let user = |u: &str| self.users.get(u).map_or(&empty, |sets| &sets.all);
        let user_open = |u: &str| self.users.get(u).map_or(&list_empty, |sets| &sets.open);
        // The records to look at (newest first), how many the filter matches, and how many of
        // them the walk starts past.
        let (keys, total, skipped): (Box<dyn Iterator<Item = Target<'_>> + '_>, usize, usize) =
            match (&filter.user_id, filter.active) {
                (Some(u), Some(false)) => {
                    let ((lo, hi), (open_lo, open_hi)) = (window(user(u)), list_window(user_open(u)));
                    let keys = user(u).iter_back_from(hi).take(hi - lo).map(Target::of_key);
                    (Box::new(keys), (hi - lo) - (open_hi - open_lo), 0)
                }
                (None, None) => {
                    let ((lo, hi), (closed_lo, closed_hi)) = (list_window(&self.open), list_window(&self.closed));
                    let open = self.open.iter_back_from(hi).take(hi - lo);
                    let closed = self.closed.iter_back_from(closed_hi).take(closed_hi - closed_lo);
                    (
                        Box::new(MergeBack::new(open, closed).map(Target::of_list_key)),
                        (hi - lo) + (closed_hi - closed_lo),
                        0,
                    )
                }
                (Some(u), None) => {
                    let (lo, hi) = window(user(u));
                    let skipped = skip.min(hi - lo);
                    let keys = user(u).iter_back_from(hi - skipped).take(hi - lo - skipped).map(Target::of_key);
                    (Box::new(keys), hi - lo, skipped)
                }
                (u, active) => {
                    let set = match (u, active) {
                        (Some(u), _) => user_open(u),
                        (None, Some(true)) => &self.open,
                        (None, _) => &self.closed,
                    };
                    let (lo, hi) = list_window(set);
                    let skipped = skip.min(hi - lo);
                    (
                        Box::new(set.iter_back_from(hi - skipped).take(hi - lo - skipped).map(Target::of_list_key)),
                        hi - lo,
                        skipped,
                    )
                }
            };
        // Find the page's records first, then encode them. The keys of a user's sessions give the
        // records' slots: the loads of a batch of records are issued at once, and then those of
        // the found records' ids and texts, so that their cache misses overlap instead of
        // queueing one after another (the other sets' keys give ids, looked up one by one).
        // A batch is never larger than what the rest of the page needs when every key matches,
        // so the walk visits the same keys as one key at a time would.
        let mut keys = keys;
        let mut found: Vec<&Record> = Vec::with_capacity(take.min(1024));
        let mut batch: Vec<Target> = Vec::with_capacity(take.min(PAGE_BATCH));
        let (mut seen, mut visited) = (skipped, 0usize);
        while found.len() < take {
            let want = (take - found.len()).saturating_add(skip.saturating_sub(seen)).min(PAGE_BATCH);
            batch.clear();
            batch.extend(keys.by_ref().take(want));
            if batch.is_empty() {
                break;
            }
            batch.iter().for_each(|t| t.touch(&self.records));
            visited += batch.len();
            for r in batch.iter().filter_map(|t| t.record(&self.records)).filter(|r| matches(r)) {
                if seen >= skip {
                    r.touch_list_item();
                    found.push(r);
                }
                seen += 1;
            }
        }
        self.visited(visited);
        DataPage { total: paging.total.then_some(total as u64), data: found }
    }
}

/// The window `from <= t < to` of a list-order set as a range of ranks `[lo, hi)`.
fn window_of<S>(set: &CountedSet<TimedKey<true, S>>, from: Option<Millis>, to: Option<Millis>) -> (usize, usize) {
    let lo = from.map_or(0, |from| set.rank(|k| k.t < from));
    let hi = to.map_or(set.len(), |to| set.rank(|k| k.t < to));
    (lo, hi.max(lo))
}

/// Where a page finds a record: by its slot, or by its id.
enum Target<'a> {
    Slot(SlotId),
    Id(&'a str),
}

impl<'a> Target<'a> {
    fn of_key(k: &Key) -> Self {
        Self::Slot(k.slot)
    }

    fn of_list_key(k: &'a ListKey) -> Self {
        Self::Id(&k.id)
    }

    /// Loads what [`Target::record`] will read (see [`Record::touch`]).
    fn touch(&self, records: &slab::Records) {
        match self {
            Self::Slot(slot) => records.touch(*slot),
            Self::Id(id) => slab::touch(id.as_bytes()),
        }
    }

    fn record<'r>(&self, records: &'r slab::Records) -> Option<&'r Record> {
        match self {
            Self::Slot(slot) => records.at(*slot),
            Self::Id(id) => records.get(id),
        }
    }
}

/// Merges two iterators that are each sorted descending.
struct MergeBack<'a, A: Iterator<Item = &'a ListKey>, B: Iterator<Item = &'a ListKey>> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<'a, A: Iterator<Item = &'a ListKey>, B: Iterator<Item = &'a ListKey>> MergeBack<'a, A, B> {
    fn new(a: A, b: B) -> Self {
        Self { a: a.peekable(), b: b.peekable() }
    }
}

impl<'a, A: Iterator<Item = &'a ListKey>, B: Iterator<Item = &'a ListKey>> Iterator for MergeBack<'a, A, B> {
    type Item = &'a ListKey;
    fn next(&mut self) -> Option<&'a ListKey> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if y > x => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}
