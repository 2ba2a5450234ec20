//! What the memo runtime needs of the map beyond Go's API: deletions that report or compare by
//! identity (an invalidation, an eviction), and hints and access for callers that hold locks of
//! their own across calls to the map.

use super::*;

/// Values whose `PartialEq` compares identities (pointers) and runs no user code, so that
/// [`SyncMap::compare_and_remove`] may compare them under the map's lock.
pub(crate) trait IdentityEq: PartialEq {}

impl<K, V, S> SyncMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// Deletes `key`; returns whether it had a value (the memo's `invalidate`, which needs no
    /// clone of it).
    pub(crate) fn delete_reporting<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.delete_with(key, |old| old.is_some())
    }

    /// Deletes `key`'s value if it is the very value `old` refers to (compared by address, so
    /// without `PartialEq`); returns whether it did. `old` must have been read from this map
    /// under a guard that the caller still holds (inside [`range`](Self::range)'s callback),
    /// so that its memory cannot have been reused for a newer value.
    pub(crate) fn compare_and_delete_same<Q>(&self, key: &Q, old: &V) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let guard = sync::enter(&self.collector);
        self.with_entry(self.hash(key), key, &guard, |entry| {
            entry.delete_if(
                |current| std::ptr::eq(current, old),
                &guard,
                Unlink::Staying,
                |delta| self.count(delta, &guard),
            )
        })
        .unwrap_or(false)
    }

    /// [`load`](Self::load) of `key`, whose hash by [`hasher`](Self::hasher) is `hash`, for a
    /// caller that hashed the key already (a memo miss, which looks the key up again after its
    /// hit check).
    #[inline]
    pub(crate) fn load_hashed<Q>(&self, hash: u64, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        let guard = sync::enter(&self.collector);
        self.with_entry(hash, key, &guard, |entry| entry.load(&guard).cloned())
            .flatten()
    }

    /// Stores `value` for `key`, whose hash by [`hasher`](Self::hasher) is `hash`, unless the
    /// key has a value; returns what it did not keep (the key, when the entry already had one
    /// or took `value` in place; `value`, when not stored), for the caller to drop where it
    /// chooses. For a caller that holds a lock of its own (a bounded memo's policy shard): it
    /// runs the key's `Eq` (in lookups that change nothing), never its `Hash`, and drops
    /// nothing.
    pub(crate) fn store_new_hashed(&self, hash: u64, key: K, value: V) -> (Option<K>, Option<V>) {
        let guard = sync::enter(&self.collector);
        let (_, key, value) = self.load_or_store_leaving(hash, key, value, &guard);
        (key, value)
    }

    /// Asks for the memory an insertion of a key will probe under the lock (the start of its
    /// probe in the dirty table, as `load_or_store` does before its lock-free lookup), for a
    /// caller that knows it will insert the key a while later (a memo miss, before its
    /// computation): in a large map that probe is a cache miss, and the time between hides it.
    /// `hash` is the key's hash by [`hasher`](Self::hasher). Only a hint: no effect on the map.
    #[inline]
    pub(crate) fn prefetch_insert(&self, hash: u64) {
        self.shard(hash).probe_hint.prefetch::<K, V>(hash);
    }

    /// The map's collector, for a caller that holds a lock of its own across calls to the map
    /// and must hold back the reclamation passes (the destructors) meanwhile.
    pub(crate) fn collector(&self) -> &Collector {
        &self.collector
    }

    /// [`compare_and_delete`](Self::compare_and_delete) for values compared by identity, which
    /// also takes an entry that only the dirty map has out of it at once, under the lock
    /// (as [`delete`](Self::delete) does), instead of leaving it there deleted: such an entry
    /// would be promoted into the next snapshot as a deleted entry, copied (expunged) by the
    /// next dirty map's copy, and leave only at the promotion after that. A bounded memo deletes
    /// this way what its policy evicts, mostly keys it rejects a few hundred misses after
    /// inserting them, which are not promoted yet.
    ///
    /// The entry is found by `hash` (the key's, by [`hasher`](Self::hasher)) and its value
    /// alone, so the caller needs no copy of the key, and no user code runs: [`IdentityEq`]
    /// values compare by identity. A value other than `old` is never deleted, nor `old` under
    /// a key of another hash.
    pub(crate) fn compare_and_remove(&self, hash: u64, old: &V) -> bool
    where
        V: IdentityEq,
    {
        let shard = self.shard(hash);
        let guard = sync::enter(&self.collector);
        let read = shard.snapshot(&guard);
        if let Some(entry) = find_by(&read.table, hash, |entry| {
            entry.hashed_as(hash) && entry.holds(old, &guard)
        }) {
            return entry.compare_and_delete(old, &guard, Unlink::Staying, |delta| {
                self.count(delta, &guard)
            });
        }
        if !read.may_be_dirty(hash) && !self.resharded(shard) {
            return false;
        }
        self.compare_and_remove_locked(shard, hash, old, read, &guard)
    }
}
