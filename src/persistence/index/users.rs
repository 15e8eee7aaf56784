//! [`UserMap`]: each user's entry by user id, in [`SHARDS`] hash tables picked by bits of the
//! id's hash, so that growing the map rehashes a [`SHARDS`]th of the users at a time. One table
//! of a million users stalled every request while it grew (rehashing reads each user's id).
//! User ids are chosen by clients, so the tables hash with the standard DoS-resistant hasher.

use super::slab::{shard, SHARDS};
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

/// One shard: each user's id and value.
type Shard<V> = HashTable<(Arc<str>, V)>;

/// Values by user id (each id allocated once and shared: [`UserMap::key_value`]).
#[derive(Debug)]
pub(crate) struct UserMap<V> {
    shards: Box<[Shard<V>; SHARDS]>,
    hasher: RandomState,
}

impl<V> Default for UserMap<V> {
    fn default() -> Self {
        Self { shards: Box::new(std::array::from_fn(|_| HashTable::new())), hasher: RandomState::new() }
    }
}

impl<V> UserMap<V> {
    fn hash(&self, user: &str) -> u64 {
        self.hasher.hash_one(user)
    }

    /// The user's shared id and value.
    pub(crate) fn key_value(&self, user: &str) -> Option<(&Arc<str>, &V)> {
        let hash = self.hash(user);
        self.shards[shard(hash)].find(hash, |(u, _)| &**u == user).map(|(u, v)| (u, v))
    }

    /// The user's value.
    pub(crate) fn get(&self, user: &str) -> Option<&V> {
        self.key_value(user).map(|(_, v)| v)
    }

    /// The user's value, to change.
    pub(crate) fn get_mut(&mut self, user: &str) -> Option<&mut V> {
        let hash = self.hash(user);
        self.shards[shard(hash)].find_mut(hash, |(u, _)| &**u == user).map(|(_, v)| v)
    }

    /// Removes the user's entry, returning its value.
    pub(crate) fn remove(&mut self, user: &str) -> Option<V> {
        let hash = self.hash(user);
        let entry = self.shards[shard(hash)].find_entry(hash, |(u, _)| &**u == user).ok()?;
        Some(entry.remove().0 .1)
    }

    /// The user's entry, made with `key()` as its id and the default value when the user has
    /// none: one hash of the id either way.
    fn entry(&mut self, user: &str, key: impl FnOnce() -> Arc<str>) -> &mut (Arc<str>, V)
    where
        V: Default,
    {
        let hash = self.hash(user);
        let hasher = &self.hasher;
        match self.shards[shard(hash)].entry(hash, |(u, _)| &**u == user, |(u, _)| hasher.hash_one(&**u)) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert((key(), V::default())).into_mut(),
        }
    }

    /// The user's shared id and value, made (with `Arc::from(user)` and the default value) when
    /// the user has none.
    pub(crate) fn get_or_insert(&mut self, user: &str) -> (Arc<str>, &mut V)
    where
        V: Default,
    {
        let (id, value) = self.entry(user, || Arc::from(user));
        (id.clone(), value)
    }

    /// The value of `user` (this allocation of the id, when the user is new), made with the
    /// default value when the user has none.
    pub(crate) fn get_or_default(&mut self, user: Arc<str>) -> &mut V
    where
        V: Default,
    {
        let name = Arc::clone(&user);
        &mut self.entry(&name, move || user).1
    }

    /// Keeps the entries for which `keep` holds.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Arc<str>, &mut V) -> bool) {
        for table in self.shards.iter_mut() {
            table.retain(|(u, v)| keep(u, v));
        }
    }

    /// Every entry (in no particular order).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &V)> + '_ {
        self.shards.iter().flat_map(|t| t.iter().map(|(u, v)| (u, v)))
    }

    /// Every value (in no particular order).
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }

    /// Number of users.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(Shard::len).sum()
    }
}

impl<V: Default> FromIterator<(Arc<str>, V)> for UserMap<V> {
    /// The map of the users' values (a repeated user keeps its last value).
    fn from_iter<I: IntoIterator<Item = (Arc<str>, V)>>(entries: I) -> Self {
        let mut map = Self::default();
        for (user, value) in entries {
            *map.get_or_default(user) = value;
        }
        map
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The map answers as a `HashMap` does through inserts, changes and removals of many users
    /// (spread over every shard), and shares each user's id allocation.
    #[test]
    fn answers_as_a_hash_map() {
        let mut map: UserMap<u32> = UserMap::default();
        let mut model: HashMap<String, u32> = HashMap::new();
        for i in 0..5_000u32 {
            let user = format!("u{}", i % 3_001);
            let (id, v) = map.get_or_insert(&user);
            *v += i;
            *model.entry(user.clone()).or_default() += i;
            assert_eq!(&*id, user.as_str());
            assert!(Arc::ptr_eq(&id, map.key_value(&user).unwrap().0));
        }
        for i in (0..3_001u32).step_by(7) {
            let user = format!("u{i}");
            assert_eq!(map.remove(&user), model.remove(&user));
        }
        assert_eq!(map.remove("nobody"), None);
        *map.get_or_default(Arc::from("new")) = 9;
        model.insert("new".into(), 9);
        *map.get_mut("u1").unwrap() += 1;
        *model.get_mut("u1").unwrap() += 1;
        map.retain(|u, v| u.len() > 2 || *v % 2 == 0);
        model.retain(|u, v| u.len() > 2 || *v % 2 == 0);
        assert_eq!(map.len(), model.len());
        for (u, v) in &model {
            assert_eq!(map.get(u), Some(v));
        }
        let mut all: Vec<(String, u32)> = map.iter().map(|(u, v)| (u.to_string(), *v)).collect();
        all.sort();
        let mut expected: Vec<(String, u32)> = model.into_iter().collect();
        expected.sort();
        assert_eq!(all, expected);
        assert_eq!(map.values().count(), all.len());
        let rebuilt: UserMap<u32> = all.iter().map(|(u, v)| (Arc::from(u.as_str()), *v)).collect();
        assert_eq!(rebuilt.len(), all.len());
        assert!(all.iter().all(|(u, v)| rebuilt.get(u) == Some(v)));
    }
}
