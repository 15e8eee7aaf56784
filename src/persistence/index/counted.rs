//! [`CountedSet`]: a sorted set that knows the rank of every position, so the number of elements
//! between two bounds is O(log n) — what a time-window total needs — and a page can start at any
//! rank without walking the elements before it.
//!
//! The elements live in sorted blocks of at most [`BLOCK`] (a sorted list of sorted ring buffers),
//! with a Fenwick tree over the block lengths for prefix counts. An insert past the last element
//! (the common case: keys grow with time) appends to the last block or starts a new one (the tree
//! grows by one node, no rebuild); elsewhere a full block splits in two. A removal shifts the
//! shorter side of its block, so taking a block's first element (the oldest key of a refreshed
//! session, in a store whose sessions are refreshed in turn) moves nothing. A block that shrinks
//! below a quarter merges with its right neighbour when both fit in one. Searching is a binary
//! search over the blocks' last elements and then within one block; iterating walks contiguous
//! memory. A changed key ([`CountedSet::rekey`]) is found once and stays in place, or moves to the
//! end (a refreshed key becoming the newest) with no second search.

use std::cmp::Ordering;
use std::collections::VecDeque;

/// Most elements in one block.
const BLOCK: usize = 256;

/// Makes room in a block for one more element: a quarter more (at least 16), never past
/// [`BLOCK`]. Growing by a quarter rather than doubling leaves at most a fifth of a block unused
/// where doubling leaves up to half: the many small sets (one user's sessions) stay close to
/// their size, for a copy of the block every few inserts.
fn make_room<K>(block: &mut VecDeque<K>) {
    if block.len() == block.capacity() {
        let more = (block.len() / 4).max(16).min(BLOCK.saturating_sub(block.len()).max(1));
        block.reserve_exact(more);
    }
}

/// A sorted set with O(log n) rank queries.
#[derive(Debug, Clone)]
pub(crate) struct CountedSet<K> {
    /// Non-empty sorted blocks, each ordered after the one before.
    blocks: Vec<VecDeque<K>>,
    /// Fenwick tree over the block lengths (node `i` sums the blocks `i + 1 - lowbit(i + 1) ..= i`).
    tree: Vec<usize>,
    len: usize,
}

impl<K> Default for CountedSet<K> {
    fn default() -> Self {
        Self { blocks: Vec::new(), tree: Vec::new(), len: 0 }
    }
}

impl<K: Ord> CountedSet<K> {
    /// A set of already sorted, distinct elements.
    pub(crate) fn from_sorted(sorted: Vec<K>) -> Self {
        let len = sorted.len();
        let mut blocks = Vec::with_capacity(len.div_ceil(BLOCK));
        let mut rest = sorted.into_iter().peekable();
        while rest.peek().is_some() {
            blocks.push(rest.by_ref().take(BLOCK).collect::<VecDeque<K>>());
        }
        let mut set = Self { blocks, tree: Vec::new(), len };
        set.rebuild();
        set
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Brings the Fenwick tree up to date after the blocks from `from` on changed in number or
    /// length (a block split, merged, removed or appended there). A node covers only blocks at
    /// or before its own, so the nodes before `from` stand; each later one is the sum of the
    /// blocks it covers, from the prefix counts of the nodes before it: O(log n) a node. Near
    /// the end (where keys arrive and, in a store used in turn, leave) that is a few nodes; far
    /// from it, the whole tree is rebuilt in one O(n) pass instead.
    fn renumber(&mut self, from: usize) {
        let n = self.blocks.len();
        if (n - from.min(n)) * 8 > n {
            self.rebuild();
            return;
        }
        self.tree.truncate(from);
        for i in from..n {
            let covered = (i + 1) & (i + 1).wrapping_neg();
            let node = self.before(i) - self.before(i + 1 - covered) + self.blocks[i].len();
            self.tree.push(node);
        }
    }

    fn rebuild(&mut self) {
        let n = self.blocks.len();
        self.tree.clear();
        self.tree.extend(self.blocks.iter().map(VecDeque::len));
        for i in 0..n {
            let parent = i | (i + 1);
            if parent < n {
                self.tree[parent] += self.tree[i];
            }
        }
    }

    fn grow(&mut self, block: usize) {
        let mut i = block;
        while i < self.tree.len() {
            self.tree[i] += 1;
            i |= i + 1;
        }
    }

    fn shrink(&mut self, block: usize) {
        let mut i = block;
        while i < self.tree.len() {
            self.tree[i] -= 1;
            i |= i + 1;
        }
    }

    /// Number of elements in the blocks before `block`.
    fn before(&self, block: usize) -> usize {
        let mut sum = 0;
        let mut i = block;
        while i > 0 {
            sum += self.tree[i - 1];
            i &= i - 1;
        }
        sum
    }

    /// The position (block, offset) of the first element for which `pred` is false; `pred` must
    /// be true for a prefix of the set and false after it.
    fn locate(&self, pred: impl Fn(&K) -> bool) -> (usize, usize) {
        let block = self.blocks.partition_point(|b| b.back().is_some_and(&pred));
        let offset = self.blocks.get(block).map_or(0, |b| b.partition_point(&pred));
        (block, offset)
    }

    /// How many elements `pred` holds for (a prefix of the set: see [`CountedSet::locate`]).
    pub(crate) fn rank(&self, pred: impl Fn(&K) -> bool) -> usize {
        let (block, offset) = self.locate(pred);
        self.before(block) + offset
    }

    /// The position of the element of rank `rank` (`(blocks, 0)` past the end).
    fn position(&self, rank: usize) -> (usize, usize) {
        if rank >= self.len {
            return (self.blocks.len(), 0);
        }
        // Descend the Fenwick tree: the last block whose prefix count is at most `rank`.
        let mut block = 0;
        let mut left = rank;
        let mut step = self.tree.len().next_power_of_two();
        while step > 0 {
            let next = block + step;
            if next <= self.tree.len() && self.tree[next - 1] <= left {
                block = next;
                left -= self.tree[next - 1];
            }
            step /= 2;
        }
        (block, left)
    }

    /// Inserts `k`; false if it was there. A key past the last one (a new session: the newest
    /// time) is appended after one comparison, without a search.
    pub(crate) fn insert(&mut self, k: K) -> bool {
        if self.blocks.last().and_then(VecDeque::back).is_none_or(|l| *l < k) {
            self.push(k);
            return true;
        }
        let (mut block, mut offset) = self.locate(|x| x < &k);
        if self.blocks.get(block).and_then(|b| b.get(offset)).is_some_and(|x| *x == k) {
            return false;
        }
        if block == self.blocks.len() {
            self.push(k);
            return true;
        }
        if self.blocks[block].len() >= BLOCK {
            let split = block;
            let tail = self.blocks[block].split_off(BLOCK / 2);
            self.blocks.insert(block + 1, tail);
            if offset > BLOCK / 2 {
                block += 1;
                offset -= BLOCK / 2;
            }
            self.blocks[block].insert(offset, k);
            self.renumber(split);
        } else {
            make_room(&mut self.blocks[block]);
            self.blocks[block].insert(offset, k);
            self.grow(block);
        }
        self.len += 1;
        true
    }

    /// Appends `k`, which sorts after every element: to the last block, or to a new one when
    /// the last one is full. No search.
    fn push(&mut self, k: K) {
        match self.blocks.last_mut() {
            Some(last) if last.len() < BLOCK => {
                make_room(last);
                last.push_back(k);
                self.grow(self.blocks.len() - 1);
            }
            _ => {
                self.blocks.push(VecDeque::from([k]));
                self.renumber(self.blocks.len() - 1);
            }
        }
        self.len += 1;
    }

    /// Removes `k`; false if it was not there.
    pub(crate) fn remove(&mut self, k: &K) -> bool {
        let (block, offset) = self.locate(|x| x < k);
        if self.blocks.get(block).and_then(|b| b.get(offset)).is_none_or(|x| x != k) {
            return false;
        }
        self.remove_at(block, offset).is_some()
    }

    /// Removes and returns the element at `(block, offset)` (`None`, changing nothing, when there
    /// is none).
    fn remove_at(&mut self, block: usize, offset: usize) -> Option<K> {
        let k = self.blocks[block].remove(offset)?;
        self.len -= 1;
        let len = self.blocks[block].len();
        if len == 0 {
            self.blocks.remove(block);
            self.renumber(block);
        } else if len < BLOCK / 4 && self.blocks.get(block + 1).is_some_and(|next| len + next.len() <= BLOCK) {
            let next = self.blocks.remove(block + 1);
            self.blocks[block].extend(next);
            self.renumber(block);
        } else {
            self.shrink(block);
        }
        Some(k)
    }

    /// Replaces `old` by `new` (see [`CountedSet::rekey`]).
    #[cfg(test)]
    pub(crate) fn replace(&mut self, old: &K, new: K) {
        self.rekey(|x| x.cmp(old), |x| *x = new);
    }

    /// Finds the element `at` points to (`at(x)` is `x.cmp(target)`), changes it with `change`
    /// and puts it where it then belongs, in one search: in its place when it still sorts
    /// between its neighbours (nothing shifts, no count changes), at the end without a second
    /// search when it now sorts after every element (a refreshed key getting the newest time),
    /// elsewhere by a remove and an insert. The element keeps what `change` leaves alone (its
    /// shared id: no allocation, no reference count). False if no element matched.
    pub(crate) fn rekey(&mut self, at: impl Fn(&K) -> Ordering, change: impl FnOnce(&mut K)) -> bool {
        let (block, offset) = self.locate(|x| at(x) == Ordering::Less);
        let Some(x) = self.blocks.get_mut(block).and_then(|b| b.get_mut(offset)) else { return false };
        if at(x) != Ordering::Equal {
            return false;
        }
        change(x);
        let b = &self.blocks[block];
        let x = &b[offset];
        let prev = match offset.checked_sub(1) {
            Some(o) => b.get(o),
            None => block.checked_sub(1).and_then(|p| self.blocks.get(p)).and_then(VecDeque::back),
        };
        let next = b.get(offset + 1).or_else(|| self.blocks.get(block + 1).and_then(VecDeque::front));
        if prev.is_none_or(|p| p < x) && next.is_none_or(|n| x < n) {
            return true;
        }
        let last_before = next.is_some() && self.blocks.last().and_then(VecDeque::back).is_some_and(|l| l < x);
        let Some(k) = self.remove_at(block, offset) else { return false };
        if last_before {
            self.push(k);
        } else {
            self.insert(k);
        }
        true
    }

    /// The elements from rank `from` on, in order.
    #[cfg(test)]
    pub(crate) fn iter_from(&self, from: usize) -> impl Iterator<Item = &K> + '_ {
        let (block, offset) = self.position(from);
        let first = self.blocks.get(block).into_iter().flat_map(move |b| b.range(offset..));
        let rest = self.blocks.get(block + 1..).unwrap_or(&[]);
        first.chain(rest.iter().flatten())
    }

    /// The elements before rank `to`, last first.
    pub(crate) fn iter_back_from(&self, to: usize) -> impl Iterator<Item = &K> + '_ {
        let (block, offset) = self.position(to);
        let first = self.blocks.get(block).into_iter().flat_map(move |b| b.range(..offset).rev());
        let rest = self.blocks.get(..block).unwrap_or(&[]);
        first.chain(rest.iter().rev().flat_map(|b| b.iter().rev()))
    }

    /// Every element in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &K> + '_ {
        self.blocks.iter().flatten()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// A deterministic pseudo-random sequence (xorshift).
    fn numbers(seed: u64) -> impl Iterator<Item = u64> {
        let mut x = seed;
        std::iter::from_fn(move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Some(x)
        })
    }

    fn check(set: &CountedSet<u64>, model: &BTreeSet<u64>) {
        assert_eq!(set.len(), model.len());
        assert!(set.iter().eq(model.iter()));
        assert!(set.blocks.iter().all(|b| !b.is_empty() && b.len() <= BLOCK));
        // The tree kept up to date step by step is the one built from the blocks.
        let mut rebuilt = set.clone();
        rebuilt.rebuild();
        assert_eq!(set.tree, rebuilt.tree);
        for probe in [0, 1, 500, 999, 1000, 5000, u64::MAX] {
            let rank = model.range(..probe).count();
            assert_eq!(set.rank(|x| *x < probe), rank, "rank of {probe}");
            assert!(set.iter_from(rank).eq(model.range(probe..)), "from {probe}");
            assert!(set.iter_back_from(rank).eq(model.range(..probe).rev()), "back from {probe}");
        }
    }

    /// Random inserts and removes (growing, then mostly appending, then draining) keep the set
    /// equal to a `BTreeSet` model: contents, ranks, and both iteration directions at any rank.
    #[test]
    fn the_set_matches_a_btreeset_through_random_changes() {
        let mut set = CountedSet::default();
        let mut model = BTreeSet::new();
        let mut rng = numbers(0x9e37_79b9_7f4a_7c15);
        for step in 0..20_000u64 {
            let r = rng.next().unwrap();
            let k = if step % 3 == 0 { 1_000_000 + step } else { r % 5_000 };
            if r % 4 == 0 {
                assert_eq!(set.remove(&k), model.remove(&k));
            } else {
                assert_eq!(set.insert(k), model.insert(k));
            }
            if step % 2_000 == 0 {
                check(&set, &model);
            }
        }
        check(&set, &model);
        let keys: Vec<u64> = model.iter().copied().collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(set.remove(k), model.remove(k));
            if i % 700 == 0 {
                check(&set, &model);
            }
        }
        assert!(set.is_empty() && set.blocks.is_empty());
        // Replacing keeps the set equal to the model whether the new element stays in place
        // (moved within its neighbours) or moves.
        for k in 0..3_000u64 {
            set.insert(k * 4);
            model.insert(k * 4);
        }
        for step in 0..6_000u64 {
            let r = rng.next().unwrap();
            let old = (r % 3_000) * 4;
            let new = if step % 2 == 0 { old + 1 + r % 3 } else { r % 20_000 };
            if model.contains(&old) && !model.contains(&new) {
                set.replace(&old, new);
                model.remove(&old);
                model.insert(new);
            }
            if step % 1_000 == 0 {
                check(&set, &model);
            }
        }
        check(&set, &model);
        let keys: Vec<u64> = model.iter().copied().collect();
        keys.iter().for_each(|k| assert_eq!(set.remove(k), model.remove(k)));
        assert!(set.is_empty() && set.blocks.is_empty());

        let built = CountedSet::from_sorted((0..1_000).collect());
        check(&built, &(0..1_000).collect());
    }

    /// Rekeying an element finds it once and puts it where it belongs: at the end (the common
    /// case: a refreshed key becomes the newest), in place, forwards or backwards across
    /// blocks, and leaves the set alone when no element matches.
    #[test]
    fn rekeyed_elements_land_where_they_belong() {
        let mut set = CountedSet::from_sorted((0..2_000u64).map(|k| k * 4).collect());
        let mut model: BTreeSet<u64> = (0..2_000u64).map(|k| k * 4).collect();
        let mut rng = numbers(0x2545_f491_4f6c_dd1d);
        let mut top = 8_000u64;
        for step in 0..8_000u64 {
            let r = rng.next().unwrap();
            let old = *model.iter().nth(usize::try_from(r % model.len() as u64).unwrap()).unwrap();
            let new = match step % 5 {
                0..=2 => {
                    top += 1 + r % 3;
                    top
                }
                3 => old + 1 + r % 2,
                _ => r % top,
            };
            if model.contains(&new) {
                continue;
            }
            assert!(set.rekey(|x| x.cmp(&old), |x| *x = new));
            model.remove(&old);
            model.insert(new);
            if step % 1_000 == 0 {
                check(&set, &model);
            }
        }
        check(&set, &model);
        assert!(!set.rekey(|x| x.cmp(&(top + 1)), |x| *x = 0));
        assert!(!set.rekey(|x| x.cmp(&u64::MAX), |x| *x = 0));
        check(&set, &model);
    }

    /// Keys refreshed in turn (the oldest becomes the newest, again and again: what a store whose
    /// sessions are all in use does) keep the set, its counts and its tree equal to the model,
    /// through blocks that drain from their front, merge, and new blocks at the end.
    #[test]
    fn keys_refreshed_in_turn_keep_the_set_whole() {
        let mut set = CountedSet::from_sorted((0..3_000u64).collect());
        let mut model: BTreeSet<u64> = (0..3_000u64).collect();
        // Every other key first (removals inside blocks), then all of them in turn.
        for (step, top) in (0..12_000u64).zip(3_000u64..) {
            let old = if step < 1_500 { step * 2 } else { *model.iter().next().unwrap() };
            assert!(set.rekey(|x| x.cmp(&old), |x| *x = top));
            model.remove(&old);
            model.insert(top);
            if step % 997 == 0 {
                check(&set, &model);
            }
        }
        check(&set, &model);
    }
}
