//! [`Records`]: the index's records in a slab, found by id through a table of slots.
//!
//! Each record lives in a numbered slot of fixed-size chunks (a slot never moves while its record
//! lives; a freed slot is reused by the next insert). The ordered indexes' keys carry the slot, so
//! a page reaches each of its records by position, without hashing its id; the id table (slot
//! numbers hashed by the ids of their records) serves lookups by id. Chunks never reallocate:
//! growing the store costs one chunk at a time, not a copy of every record. The id table is
//! split in [`SHARDS`] tables by bits of the id's hash, so that when one grows it rehashes a
//! [`SHARDS`]th of the ids: one large table stalled every request for as long as rehashing
//! every id took (reading each record and its id: about 90 ms at half a million records).

use super::record::{hex_id, Record, RecordHasher};
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// A record's position in the slab.
pub(crate) type SlotId = u32;

/// The most bytes a chunk takes: the allocator's largest block served from its shared pages.
/// A larger block gets pages of its own, rounded up to 64 KiB: a chunk of 1 024 records of 144
/// bytes (144 KiB) took 192 KiB, 64 bytes more per stored session.
const CHUNK_BYTES: usize = 128 * 1024;
/// Records per chunk: as many as [`CHUNK_BYTES`] holds.
const CHUNK: usize = CHUNK_BYTES / std::mem::size_of::<Option<Record>>();

/// Tables the id table (and the user map) is split in (a power of two).
pub(super) const SHARDS: usize = 256;

/// The records, in slots, with an id table.
#[derive(Debug)]
pub(crate) struct Records {
    /// Full chunks, then the last one, each allocated for [`CHUNK`] slots.
    chunks: Vec<Vec<Option<Record>>>,
    /// Empty slots, reused first.
    free: Vec<SlotId>,
    /// The occupied slots, hashed by their records' ids, in the shard [`shard`] picks.
    ids: Box<[HashTable<SlotId>; SHARDS]>,
    /// Records stored.
    len: usize,
    hasher: RecordHasher,
}

/// An empty slab (see [`Records::reserve`] to make room for many records at once).
impl Default for Records {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            free: Vec::new(),
            ids: Box::new(std::array::from_fn(|_| HashTable::new())),
            len: 0,
            hasher: RecordHasher::default(),
        }
    }
}

/// The shard of a key's hash: bits that neither a table's bucket index (the low bits) nor its
/// control bytes (the top seven) use, so that the keys of one shard still spread over its table.
pub(super) fn shard(hash: u64) -> usize {
    (hash >> 32) as usize & (SHARDS - 1)
}

/// The chunk and the place in it of `slot`.
fn split(slot: SlotId) -> (usize, usize) {
    (slot as usize / CHUNK, slot as usize % CHUNK)
}

fn cell(chunks: &[Vec<Option<Record>>], slot: SlotId) -> Option<&Record> {
    let (chunk, offset) = split(slot);
    chunks.get(chunk)?.get(offset)?.as_ref()
}

/// The hash of the id of the record in `slot`, for the id table's rehashing.
fn slot_hash(chunks: &[Vec<Option<Record>>], hasher: &RecordHasher, slot: SlotId) -> u64 {
    cell(chunks, slot).map_or(0, |r| hasher.hash_one(&*r.id))
}

impl Records {
    /// Number of records.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// The slot of the record with this id.
    pub(crate) fn slot(&self, id: &str) -> Option<SlotId> {
        self.slot_hashed(id, self.hash(id))
    }

    /// [`Records::slot`] with the id's hash already made.
    fn slot_hashed(&self, id: &str, hash: u64) -> Option<SlotId> {
        let (chunks, hex) = (&self.chunks, hex_id(id));
        self.ids[shard(hash)].find(hash, |&s| cell(chunks, s).is_some_and(|r| r.has_id(id, hex.as_ref()))).copied()
    }

    /// Whether a record has this id.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.slot(id).is_some()
    }

    /// The record with this id.
    pub(crate) fn get(&self, id: &str) -> Option<&Record> {
        self.slot(id).and_then(|s| self.at(s))
    }

    /// The record in `slot`.
    pub(crate) fn at(&self, slot: SlotId) -> Option<&Record> {
        cell(&self.chunks, slot)
    }

    /// Loads the record in `slot` (see [`Record::touch`]).
    pub(crate) fn touch(&self, slot: SlotId) {
        if let Some(r) = self.at(slot) {
            r.touch();
        }
    }

    /// The record in `slot`, to change in place (its id must stay the same).
    pub(crate) fn at_mut(&mut self, slot: SlotId) -> Option<&mut Record> {
        let (chunk, offset) = split(slot);
        self.chunks.get_mut(chunk)?.get_mut(offset)?.as_mut()
    }

    /// Makes room in the id table for `additional` more records (loading many saves the
    /// tables' growing on the way). Each shard gets its share and a margin for the spread of
    /// the ids over the shards.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let each = additional / SHARDS + additional / SHARDS / 8 + 8;
        let (chunks, hasher) = (&self.chunks, &self.hasher);
        for table in self.ids.iter_mut() {
            table.reserve(each, |&s| slot_hash(chunks, hasher, s));
        }
    }

    /// Stores a record whose id no record has (the caller checks), returning its slot; `None`
    /// (nothing stored) when all 2^32 slots are taken, which takes over a terabyte of records.
    pub(crate) fn insert(&mut self, record: Record) -> Option<SlotId> {
        let hash = self.hash(&record.id);
        self.insert_hashed(record, hash)
    }

    /// Stores a record in place of the one with its id, or as a new one when there is none (its
    /// id hashed once for both); its slot, `None` as for [`Records::insert`].
    pub(crate) fn put(&mut self, record: Record) -> Option<SlotId> {
        let hash = self.hash(&record.id);
        match self.slot_hashed(&record.id, hash) {
            Some(slot) => {
                *self.at_mut(slot)? = record;
                Some(slot)
            }
            None => self.insert_hashed(record, hash),
        }
    }

    /// [`Records::insert`] with the id's hash already made.
    fn insert_hashed(&mut self, record: Record, hash: u64) -> Option<SlotId> {
        let slot = match self.free.pop() {
            Some(slot) => {
                let (chunk, offset) = split(slot);
                *self.chunks.get_mut(chunk)?.get_mut(offset)? = Some(record);
                slot
            }
            None => {
                if self.chunks.last().is_none_or(|c| c.len() >= CHUNK) {
                    self.chunks.push(Vec::with_capacity(CHUNK));
                }
                let full = (self.chunks.len() - 1) * CHUNK;
                let last = self.chunks.last_mut()?;
                let slot = SlotId::try_from(full + last.len()).ok()?;
                last.push(Some(record));
                slot
            }
        };
        let (chunks, hasher) = (&self.chunks, &self.hasher);
        self.ids[shard(hash)].insert_unique(hash, slot, |&s| slot_hash(chunks, hasher, s));
        self.len += 1;
        Some(slot)
    }

    /// Removes the record with this id, returning its slot and itself; the slot is reused.
    pub(crate) fn remove(&mut self, id: &str) -> Option<(SlotId, Record)> {
        let hash = self.hash(id);
        let chunks = &self.chunks;
        let hex = hex_id(id);
        let entry = self.ids[shard(hash)]
            .find_entry(hash, |&s| cell(chunks, s).is_some_and(|r| r.has_id(id, hex.as_ref())))
            .ok()?;
        let (slot, _) = entry.remove();
        self.len -= 1;
        let (chunk, offset) = split(slot);
        let record = self.chunks.get_mut(chunk)?.get_mut(offset)?.take()?;
        self.free.push(slot);
        Some((slot, record))
    }

    /// Every record with its slot (slot order).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (SlotId, &Record)> + '_ {
        (0..).zip(self.chunks.iter().flatten()).filter_map(|(s, r)| r.as_ref().map(|r| (s, r)))
    }
}

/// Loads the first byte of `bytes` (if any) and drops it: a real load that the processor issues
/// without the code after it waiting for the result, so that a page's loads of many ids and texts
/// overlap instead of queueing one after another.
#[inline(always)]
pub(crate) fn touch(bytes: &[u8]) {
    std::hint::black_box(bytes.first().copied());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::data::version1::SessionV1;
    use chrono::DateTime;
    use std::sync::Arc;

    fn record(id: &str) -> Record {
        let s = SessionV1::open(id.to_string(), "u".into(), DateTime::UNIX_EPOCH);
        Record::of(Arc::from(id), Arc::from("u"), &s)
    }

    /// Slots stay where they are while others come and go, freed slots are reused, and the id
    /// table finds every record (across more than one chunk) and none that was removed.
    #[test]
    fn slots_are_stable_reused_and_found_by_id() {
        let mut records = Records::default();
        let n: SlotId = 2 * CHUNK as SlotId + 7;
        let slots: Vec<SlotId> = (0..n).map(|i| records.insert(record(&format!("s{i}"))).unwrap()).collect();
        assert_eq!(slots, (0..n).collect::<Vec<_>>());
        assert_eq!(records.len(), n as usize);
        // Remove every third record: the others keep their slots.
        for i in (0..n).step_by(3) {
            let (slot, r) = records.remove(&format!("s{i}")).unwrap();
            assert_eq!((slot, &*r.id), (i, format!("s{i}").as_str()));
        }
        assert!(records.remove("s0").is_none());
        for i in 0..n {
            let id = format!("s{i}");
            if i % 3 == 0 {
                assert!(!records.contains(&id) && records.at(i).is_none());
            } else {
                assert_eq!(records.slot(&id), Some(i));
                assert_eq!(&*records.get(&id).unwrap().id, id);
                assert_eq!(&*records.at(i).unwrap().id, id);
            }
        }
        let removed = n.div_ceil(3);
        assert_eq!(records.len(), (n - removed) as usize);
        // New records fill the freed slots before the slab grows.
        let mut refilled: Vec<SlotId> =
            (0..removed).map(|i| records.insert(record(&format!("t{i}"))).unwrap()).collect();
        refilled.sort_unstable();
        assert_eq!(refilled, (0..n).step_by(3).collect::<Vec<_>>());
        assert_eq!(records.insert(record("next")), Some(n));
        assert_eq!(records.len(), n as usize + 1);
        assert_eq!(records.iter().count(), n as usize + 1);
        assert!(records.iter().all(|(s, r)| records.slot(&r.id) == Some(s)));
        // A record changed in place stays found by its id.
        records.at_mut(1).unwrap().version = 7;
        assert_eq!(records.get("s1").unwrap().version, 7);
        // `put` replaces a record in its slot, and stores a new id as `insert` would.
        let mut changed = record("s1");
        changed.version = 8;
        assert_eq!(records.put(changed), Some(1));
        assert_eq!(records.get("s1").unwrap().version, 8);
        let len = records.len();
        assert_eq!(records.put(record("later")), Some(n + 1));
        assert_eq!((records.len(), records.slot("later")), (len + 1, Some(n + 1)));
    }

    /// Ids of the generated shape (32 lowercase hex digits, compared as the bytes they spell in
    /// the record) and ids of any other shape are found by exactly their own text: an id that
    /// differs only in the case of its digits, or by a digit, is another id.
    #[test]
    fn hex_and_other_ids_are_found_by_their_exact_text() {
        use crate::persistence::index::record::Whole;
        use crate::toolkit::json::JsonText;
        let hex = "0123456789abcdef0123456789abcdef";
        let upper = "0123456789ABCDEF0123456789ABCDEF";
        let mixed = "0123456789abcdef0123456789abcdeF";
        let ids = [hex, upper, "0123456789abcdef0123456789abcdee", "s-1", "0123456789abcdef0123456789abcdef0"];
        let mut records = Records::default();
        for id in ids {
            records.insert(record(id)).unwrap();
        }
        for id in ids {
            let r = records.get(id).unwrap();
            assert_eq!(&*r.id, id);
            // A record answers its id's text, whichever way it holds it.
            assert_eq!(JsonText::write(&Whole::new(r)), JsonText::write(&r.to_session()));
        }
        assert!(records.get(mixed).is_none());
        assert!(records.get(&hex[..31]).is_none());
        assert_eq!(records.remove(upper).map(|(_, r)| r.id), Some(Arc::from(upper)));
        assert!(records.get(upper).is_none() && records.get(hex).is_some());
        assert_eq!(records.remove(hex).map(|(_, r)| r.id), Some(Arc::from(hex)));
        assert!(records.get(hex).is_none() && records.get("s-1").is_some());
    }
}
