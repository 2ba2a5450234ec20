//! The read snapshot: an immutable table of shared entries, plus what lock-free readers need to
//! know about keys that only the dirty map has.

use equivalent::Equivalent;
use hashbrown::HashTable;

use super::entry::{EntryPtr, HOLDS_BITS};
use super::shard;
use super::sync::{AtomicBool, AtomicU64, Ordering};
use super::table_alloc::TableAlloc;

/// The table both the read snapshot and the dirty map use: entries by the hash of their key.
pub(crate) type Table<K, V> = HashTable<EntryPtr<K, V>, TableAlloc>;

/// An empty table (no allocation).
pub(crate) fn empty_table<K, V>() -> Table<K, V> {
    HashTable::new_in(TableAlloc)
}

/// A table that holds `capacity` entries without growing.
pub(crate) fn table_with_capacity<K, V>(capacity: usize) -> Table<K, V> {
    HashTable::with_capacity_in(capacity, TableAlloc)
}

/// Finds the entry for `key` in `table`.
#[inline]
pub(crate) fn find<'t, K, V, Q>(
    table: &'t Table<K, V>,
    hash: u64,
    key: &Q,
) -> Option<&'t EntryPtr<K, V>>
where
    Q: ?Sized + Equivalent<K>,
{
    find_by(table, hash, |entry| key.equivalent(&entry.key))
}

/// Finds the entry of `hash` in `table` that `matches` accepts (it sees only entries whose
/// stored hash has the same tag as `hash`).
#[inline]
pub(crate) fn find_by<K, V>(
    table: &Table<K, V>,
    hash: u64,
    matches: impl FnMut(&EntryPtr<K, V>) -> bool,
) -> Option<&EntryPtr<K, V>> {
    table.find(hash, matches)
}

/// Where the filter's two bit positions come from in a key's hash (six bits each; see
/// [`ReadOnly::bits`]).
const FIRST_SHIFT: u32 = 26;
const SECOND_SHIFT: u32 = 42;

// Neither position reads a shard's index (one shard's keys would share a few positions) or a
// counted entry's holds (cleared in the hash it stores, so a filter written from it would
// disagree with a lookup's).
const _: () = {
    let positions = (63 << FIRST_SHIFT) | (63 << SECOND_SHIFT);
    let shard_index = (shard::MAX_SHARDS as u64 - 1) << shard::INDEX_SHIFT;
    assert!(positions & (shard_index | HOLDS_BITS) == 0);
};

/// A read snapshot, published by the map and read without locks.
///
/// # Invariants
///
/// - `table` never changes after publication; entries' values change in place.
/// - `amended` is true whenever the dirty map holds a key absent from `table`: it is set, under
///   the dirty lock, before such a key is inserted, and cleared, under the lock, only when the
///   dirty map holds no such key any more (its last one was deleted, or `clear` emptied it).
/// - For every key inserted in the dirty map while this snapshot is the current one and absent
///   from `table`, both of its filter bits are set (under the dirty lock) before the insertion
///   is visible. So a reader that misses in `table` and finds a bit clear may answer "absent"
///   without the lock: the key was not in the map when the reader loaded this snapshot.
/// - Filter bits are cleared (under the lock) only while the dirty map holds no key absent from
///   `table`, so every such key present at any moment has both of its bits set.
///
/// Only the lock holder writes the flag and the filter, so their writes are totally ordered by
/// the lock; readers store nothing here. Release stores and acquire loads are therefore enough:
/// `SeqCst` would only order them against a reader's own stores, and there are none.
pub(crate) struct ReadOnly<K, V> {
    pub(crate) table: Table<K, V>,
    /// The collector's epoch when the snapshot was built (see `sync::birth`).
    pub(crate) birth: u64,
    amended: AtomicBool,
    /// A two-bit Bloom filter of the hashes of dirty-only keys; its length is a power of two.
    filter: Box<[AtomicU64]>,
}

impl<K, V> ReadOnly<K, V> {
    /// Smallest and largest filter, in 64-bit words (64 B and 1 MiB). The smallest one lets a
    /// small map take 128 new keys between promotions (16 with one word): a promotion costs a
    /// few allocations whatever the size of the map, about a microsecond by SwapMostlyMisses on
    /// a 1-entry map (199 ns per iteration with a promotion every 16 keys, 137 without).
    const MIN_FILTER_WORDS: usize = 8;
    const MAX_FILTER_WORDS: usize = 1 << 17;

    /// New keys a promotion cycle takes per entry of the snapshot (whose length is rounded up
    /// to a power of two; this factor is one too, as the filter's length must be). Each
    /// promotion is followed by a copy of every live entry into the next dirty map, so a cycle
    /// of `n` entries and `c·n` new keys copies `1/c` entries per new key. With 2 instead of 1,
    /// inserts into large maps were 10-30% faster at one thread (go_workloads
    /// LoadOrStoreUnique, LoadOrStoreBalanced) with no change elsewhere; with 4, no faster than
    /// 2, and the dirty table allocated for the cycle (the snapshot after the next promotion)
    /// took the memory bench over 64 bytes per entry.
    const NEW_KEYS_PER_ENTRY: usize = 2;

    /// A snapshot of `table` with no dirty-only keys. The filter gets four bits per new key the
    /// cycle takes, so that it stays selective up to [`dirty_capacity`](Self::dirty_capacity)
    /// keys.
    pub(crate) fn new(table: Table<K, V>, birth: u64) -> Self {
        const { assert!(Self::NEW_KEYS_PER_ENTRY.is_power_of_two()) };
        let words = (table.len().next_power_of_two() * Self::NEW_KEYS_PER_ENTRY / 16)
            .clamp(Self::MIN_FILTER_WORDS, Self::MAX_FILTER_WORDS);
        ReadOnly {
            table,
            birth,
            amended: AtomicBool::new(false),
            filter: (0..words).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The empty snapshot every shard of a map starts with (and returns to after `clear`), one
    /// per map: it has no filter and is never amended, so it is never written and the shards
    /// can share it. A shard publishes a snapshot of its own before its first new key
    /// ([`is_shared_empty`](Self::is_shared_empty)).
    pub(crate) fn shared_empty() -> Self {
        ReadOnly {
            table: empty_table(),
            birth: 0,
            amended: AtomicBool::new(false),
            filter: Box::new([]),
        }
    }

    /// Whether this is a [`shared_empty`](Self::shared_empty) snapshot, which must not record
    /// dirty keys.
    #[inline]
    pub(crate) fn is_shared_empty(&self) -> bool {
        self.filter.is_empty()
    }

    /// Whether the dirty map may hold keys that `table` lacks.
    #[inline]
    pub(crate) fn amended(&self) -> bool {
        self.amended.load(Ordering::Acquire)
    }

    /// How many dirty-only keys the filter takes before false positives pass ~15%; the map
    /// promotes the dirty map when it holds that many, which keeps negative lookups lock-free.
    pub(crate) fn dirty_capacity(&self) -> usize {
        self.filter.len() * 64 / 4
    }

    /// The filter word of `hash` and its two bits in it, as a mask. Both bits lie in one word
    /// (a blocked Bloom filter), so that a new key and a lookup that consults the filter touch
    /// one cache line of it, not two: in a large map each is a cache miss. At four bits per
    /// key, the false positives of two bits in one 64-bit word stay near those of two bits
    /// anywhere (about 16% against 15% at full capacity). hashbrown uses the low bits for the
    /// bucket and the top seven for the tag, the shard index takes bits 32..38, and a
    /// [`CountedEntry`](super::entry) keeps its holds in bits 48..57 of its stored hash: the
    /// word comes from bits 8..25 (at most [`MAX_FILTER_WORDS`](Self::MAX_FILTER_WORDS)
    /// words), the bits from bits 26..32 and 42..48.
    #[inline]
    fn bits(&self, hash: u64) -> (usize, u64) {
        // The word's index stays below the first position's bits.
        const { assert!(Self::MAX_FILTER_WORDS <= 1 << (FIRST_SHIFT - 8)) };
        let word = (hash >> 8) as usize & (self.filter.len() - 1);
        let first = (hash >> FIRST_SHIFT) & 63;
        let second = (hash >> SECOND_SHIFT) & 63;
        (word, (1 << first) | (1 << second))
    }

    /// Whether a key with this hash, missing from `table`, may be in the dirty map.
    #[inline]
    pub(crate) fn may_be_dirty(&self, hash: u64) -> bool {
        if !self.amended() {
            return false;
        }
        let (word, bits) = self.bits(hash);
        self.filter[word].load(Ordering::Acquire) & bits == bits
    }

    /// Records that a key with this hash is about to be inserted in the dirty map while this
    /// snapshot is current, and adds to `touched` each filter word that was zero before. Caller
    /// holds the dirty lock.
    pub(crate) fn note_dirty_key(&self, hash: u64, touched: &mut Vec<usize>) {
        debug_assert!(
            !self.is_shared_empty(),
            "a shared empty snapshot is never written"
        );
        // Only the lock holder writes, so load-then-store is race-free (no locked
        // read-modify-write), and it skips the store when the bits are already set.
        let (word, bits) = self.bits(hash);
        let current = self.filter[word].load(Ordering::Relaxed);
        if current & bits != bits {
            if current == 0 {
                touched.push(word);
            }
            self.filter[word].store(current | bits, Ordering::Release);
        }
        if !self.amended.load(Ordering::Relaxed) {
            self.amended.store(true, Ordering::Release);
        }
    }

    /// Records that the dirty map holds no key absent from `table` any more, and clears the
    /// filter words in `touched` (every word set since the filter was last empty), which
    /// empties the filter in time proportional to the keys noted, not to its size. Caller
    /// holds the dirty lock.
    pub(crate) fn forget_dirty_keys(&self, touched: &mut Vec<usize>) {
        self.amended.store(false, Ordering::Release);
        for word in touched.drain(..) {
            self.filter[word].store(0, Ordering::Release);
        }
    }
}

#[cfg(all(test, not(miri), not(syncmap_loom)))]
mod tests {
    use super::{empty_table, AtomicU64, ReadOnly};

    /// The hashes the memo's hasher gives `seed..`.
    fn hashes(seed: u64) -> impl Iterator<Item = u64> {
        use std::hash::BuildHasher;
        let hasher = foldhash::fast::FixedState::with_seed(7);
        (seed..).map(move |i| hasher.hash_one(i))
    }

    /// Every key noted is "maybe dirty" (no false negatives), and with the filter at its
    /// capacity about one negative lookup in six still takes the lock (two bits in one word of
    /// a blocked filter: 16%, against 15% for two bits anywhere and 22% for one). Fails if the
    /// word or the bits stop depending on the hash.
    #[test]
    fn the_filter_has_no_false_negatives_and_stays_selective_at_capacity() {
        let read: ReadOnly<u64, u64> = ReadOnly {
            table: empty_table(),
            birth: 0,
            amended: Default::default(),
            filter: (0..1024).map(|_| AtomicU64::new(0)).collect(),
        };
        let noted: Vec<u64> = hashes(1).take(read.dirty_capacity()).collect();
        let mut touched = Vec::new();
        for &hash in &noted {
            read.note_dirty_key(hash, &mut touched);
        }
        assert!(noted.iter().all(|&hash| read.may_be_dirty(hash)));
        let lookups = 100_000;
        let positives = hashes(1 << 40)
            .take(lookups)
            .filter(|&hash| read.may_be_dirty(hash))
            .count();
        let rate = positives as f64 / lookups as f64;
        assert!((0.12..0.19).contains(&rate), "false positive rate {rate}");
        read.forget_dirty_keys(&mut touched);
        assert!(!noted.iter().any(|&hash| read.may_be_dirty(hash)));
    }
}
