//! [`IndexBuilder`]: loads many sessions at once (the file backend's start-up).

use super::counted::CountedSet;
use super::record::{ExpiryKey, Key, ListKey, Record};
use super::slab::Records;
use super::{SessionsIndex, UserMap, UserSets};
use crate::data::version1::SessionV1;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Replays changes into a map, then builds a [`SessionsIndex`] from it in bulk.
#[derive(Debug, Default)]
pub(crate) struct IndexBuilder {
    by_id: HashMap<Arc<str>, SessionV1>,
}

impl IndexBuilder {
    /// An empty builder.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces a session.
    pub(crate) fn put(&mut self, s: SessionV1) {
        match self.by_id.get_mut(s.id.as_str()) {
            Some(slot) => *slot = s,
            None => {
                self.by_id.insert(Arc::from(s.id.as_str()), s);
            }
        }
    }

    /// Makes room for `additional` more sessions (saves rehashing a large map while loading).
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.by_id.reserve(additional);
    }

    /// Removes a session.
    #[cfg(test)]
    pub(crate) fn remove(&mut self, id: &str) {
        self.by_id.remove(id);
    }

    /// Removes every session.
    #[cfg(test)]
    pub(crate) fn clear(&mut self) {
        self.by_id.clear();
    }

    /// Number of sessions.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The index: each session turned into its compact record once (user ids shared), the keys
    /// sorted once and each ordered set built from sorted input (the per-user sets on a second
    /// thread).
    pub(crate) fn build(self) -> SessionsIndex {
        let n = self.by_id.len();
        let mut records = Records::with_capacity(n);
        let mut users: HashMap<Arc<str>, Vec<Key>> = HashMap::new();
        let mut open: Vec<ListKey> = Vec::new();
        let mut closed: Vec<ListKey> = Vec::new();
        let mut by_expiry: Vec<ExpiryKey> = Vec::new();
        let mut open_users: HashMap<Arc<str>, Vec<ListKey>> = HashMap::new();
        let mut untimed: Vec<ListKey> = Vec::new();
        for (id, s) in self.by_id {
            let user_id = match users.get_key_value(s.user_id.as_str()) {
                Some((u, _)) => u.clone(),
                None => Arc::from(s.user_id.as_str()),
            };
            let record = Record::new(id, user_id, s);
            let Some((slot, record)) = records.insert(record).and_then(|s| Some((s, records.at(s)?))) else { continue };
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
