//! [`IndexBuilder`]: loads many sessions at once (the file backend's start-up).

use super::counted::CountedSet;
use super::record::{ExpiryKey, Key, ListKey, Record};
use super::slab::Records;
use super::{SessionsIndex, UserMap, UserSets};
use crate::data::version1::{SessionV1, SessionView};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Replays changes into the records, then builds a [`SessionsIndex`]'s ordered sets from them in
/// bulk.
#[derive(Debug, Default)]
pub(crate) struct IndexBuilder {
    records: Records,
    /// Each user id once: the records of one user share it.
    users: HashSet<Arc<str>>,
}

/// A session's record, made on any thread, for [`IndexBuilder::put_prepared`].
#[derive(Debug)]
pub(crate) struct Prepared(Record);

impl IndexBuilder {
    /// An empty builder.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The record of any view of a session (see [`Record::of`]): the work of loading a session
    /// that needs no builder, so that start-up does it on its decoding threads.
    pub(crate) fn prepare<S: SessionView + ?Sized>(s: &S) -> Prepared {
        Prepared(Record::of(Arc::from(s.id()), Arc::from(s.user_id()), s))
    }

    /// Inserts or replaces a session.
    pub(crate) fn put(&mut self, s: SessionV1) {
        self.put_prepared(Self::prepare(&s));
    }

    /// Inserts or replaces a session's prepared record.
    pub(crate) fn put_prepared(&mut self, Prepared(mut record): Prepared) {
        match self.users.get(&*record.user_id) {
            Some(u) => record.user_id = u.clone(),
            None => {
                self.users.insert(record.user_id.clone());
            }
        }
        // `None` only when every slot is taken (over a terabyte of records): not loaded.
        let _ = self.records.put(record);
    }

    /// Makes room for `additional` more sessions (saves rehashing a large table while loading).
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.records.reserve(additional);
    }

    /// Removes a session.
    #[cfg(test)]
    pub(crate) fn remove(&mut self, id: &str) {
        self.records.remove(id);
    }

    /// Removes every session.
    #[cfg(test)]
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// Number of sessions.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The index: the keys of every record sorted once and each ordered set built from sorted
    /// input (the per-user sets on a second thread).
    pub(crate) fn build(self) -> SessionsIndex {
        let records = self.records;
        let mut users: HashMap<Arc<str>, Vec<Key>> = HashMap::new();
        let mut open: Vec<ListKey> = Vec::new();
        let mut closed: Vec<ListKey> = Vec::new();
        let mut by_expiry: Vec<ExpiryKey> = Vec::new();
        let mut open_users: HashMap<Arc<str>, Vec<ListKey>> = HashMap::new();
        let mut untimed: Vec<ListKey> = Vec::new();
        for (slot, record) in records.iter() {
            let k = record.key(slot);
            let lk = k.list_key();
            if record.is_active() {
                open.push(lk.clone());
                open_users.entry(record.user_id.clone()).or_default().push(lk.clone());
                match record.expiry_key() {
                    Some(e) => by_expiry.push(e),
                    None => untimed.push(lk),
                }
            } else {
                closed.push(lk);
            }
            users.entry(record.user_id.clone()).or_default().push(k);
        }
        let (by_user, open, closed, by_expiry) = std::thread::scope(|scope| {
            let users = scope.spawn(move || by_user_of(users));
            let open = sorted(open);
            let closed = sorted(closed);
            by_expiry.sort_unstable();
            let by_expiry = CountedSet::from_sorted(by_expiry);
            // The thread cannot panic; should it anyway, the user index is rebuilt below.
            (users.join().ok(), open, closed, by_expiry)
        });
        let mut users: UserMap = by_user
            .unwrap_or_default()
            .into_iter()
            .map(|(u, all)| (u, UserSets { all, open: CountedSet::default() }))
            .collect();
        for (u, open) in by_user_of(open_users) {
            users.get_or_default(u).open = open;
        }
        let untimed = sorted(untimed);
        let mut index = SessionsIndex { records, open, closed, users, untimed, by_expiry, visits: AtomicU64::new(0) };
        if index.users.values().all(|sets| sets.all.is_empty()) && !index.records.is_empty() {
            let keys: Vec<(Arc<str>, Key)> = index.records.iter().map(|(s, r)| (r.user_id.clone(), r.key(s))).collect();
            for (u, k) in keys {
                index.users.get_or_default(u).all.insert(k);
            }
        }
        index
    }
}

/// Each user's keys as a set.
fn by_user_of<K: Ord>(users: HashMap<Arc<str>, Vec<K>>) -> HashMap<Arc<str>, CountedSet<K>> {
    users.into_iter().map(|(u, ks)| (u, sorted(ks))).collect()
}

/// The keys as a set.
fn sorted<K: Ord>(mut keys: Vec<K>) -> CountedSet<K> {
    keys.sort_unstable();
    CountedSet::from_sorted(keys)
}
