//! Which shard holds a key: the routing by hash bits, the mask of the shards in use (one until
//! the map splits), and the check that a lookup's shard is still the key's.

use super::*;

/// The number of shards a map made by [`SyncMap::new`] or [`SyncMap::with_hasher`] splits into
/// (see "One shard until it pays to split" in the documentation of `map.rs`): all of them, 64.
/// Shards past the first are allocated only when the map splits, so a map that never splits
/// pays for one; once split, two threads inserting new keys meet on one lock a 64th of the
/// time. With 16 instead of 4 (this machine's default before, twice its threads), at 2
/// threads: RapidGrow 1.26x the throughput, LoadOrStoreBalanced and LoadOrStoreUnique 0.77x
/// and 0.89x the time (`conc_map`, `go_workloads`, 6 alternated full runs); 64 instead of 16,
/// RapidGrow 1.2-1.3x again ([`MAX_SHARDS`]; docs/performance-notes.md).
pub(super) fn default_shards() -> usize {
    MAX_SHARDS
}

impl<K, V, S> SyncMap<K, V, S> {
    /// Calls `f` with each shard in use, in order. If the map split meanwhile, shard 0 may have
    /// been handled before its keys moved to the other shards: then `f` is called again with
    /// every shard (at most once more, the map splits once).
    pub(super) fn for_each_shard_in_use(&self, mut f: impl FnMut(ShardRef<'_, K, V>)) {
        loop {
            let mask = self.shard_mask.load(Ordering::Acquire);
            for index in 0..=mask {
                f(self.shard_at(index, mask));
            }
            if self.shard_mask.load(Ordering::Acquire) == mask {
                return;
            }
        }
    }

    /// The shard with this index, in the map's shards chosen by `mask` (`index <= mask`).
    #[inline]
    pub(super) fn shard_at(&self, index: usize, mask: usize) -> ShardRef<'_, K, V> {
        ShardRef {
            read_ptr: &self.read_ptrs[index],
            shards: &self.shards,
            index,
            mask,
        }
    }

    /// The number of shards in use: 1 until the map splits. For tests and measurements.
    #[doc(hidden)]
    pub fn shards_in_use(&self) -> usize {
        self.shard_mask.load(Ordering::Acquire) + 1
    }

    /// The shard mask of the map once split: every shard in use.
    #[inline]
    pub(super) fn split_mask(&self) -> usize {
        self.shards.count() - 1
    }

    /// Whether the map split after `shard` was chosen, so that the key sought may have moved
    /// from it. Callers check this before answering that a key is absent.
    #[inline]
    pub(super) fn resharded(&self, shard: ShardRef<'_, K, V>) -> bool {
        self.shard_mask.load(Ordering::Acquire) != shard.mask
    }
}

impl<K, V, S> SyncMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// The index of the shard that holds `key` (`0..` the number of shards), for tests that
    /// place keys in chosen shards.
    #[doc(hidden)]
    pub fn shard_of<Q: ?Sized + Hash>(&self, key: &Q) -> usize {
        shard::index(self.hash(key), self.shard_mask.load(Ordering::Acquire))
    }

    /// The shard that holds the keys with this hash.
    #[inline]
    pub(super) fn shard(&self, hash: u64) -> ShardRef<'_, K, V> {
        let mask = self.shard_mask.load(Ordering::Acquire);
        if mask == 0 {
            // One shard: its snapshot pointer is loaded without waiting for the hash.
            self.shard_at(0, 0)
        } else {
            // Without this barrier the compiler sees that the index is 0 when the mask is, and
            // merges the branches into the split map's index computation, which makes every
            // lookup's snapshot load wait for the hash again (9% of a `load` hit, issue 16).
            shard::keep_branch();
            self.shard_at(shard::index(hash, mask), mask)
        }
    }
}
