//! The locked halves of the map's operations: what runs under a shard's dirty lock after a
//! lock-free attempt found the snapshot lacking (Go's `...Locked` functions), and promotion.

use super::*;

/// A promotion needs misses reaching the dirty map's length divided by this (Go: 1); see
/// "Promotion on fewer misses" in the documentation of `map.rs` for the measurements.
pub(super) const MISS_DIVISOR: usize = 2;
/// ... and at least this many misses, so that small maps do not promote every few operations.
pub(super) const MIN_PROMOTION_MISSES: usize = 64;
/// A dirty table that holds room for this many times its entries or more is mostly room its
/// cycle did not use: it promotes once its new keys were each missed once on average, rather
/// than after half its length (see [`SyncMap::miss_locked`]).
pub(super) const UNUSED_ROOM_FACTOR: usize = 4;

/// A map with one shard in use splits when that shard promotes a dirty map of this many keys or
/// more (5,504 for a map that only grows): a promotion's copy then takes the whole map, while a
/// map of 1,024 keys (Go's LoadMostlyHits) keeps the faster hits of one shard...
pub(super) const SPLIT_AT_LEN: usize = 4096;
/// ... or once a thread has found its lock held this many times: two threads that insert
/// new keys at once meet on it within microseconds, while a map that only takes the lock for
/// an occasional new key may never split.
pub(super) const SPLIT_AFTER_CONTENDED: usize = 8;

impl<K, V, S> SyncMap<K, V, S> {
    /// Removes every entry of one shard, under its lock.
    pub(super) fn clear_shard(&self, shard: ShardRef<'_, K, V>, guard: &Guard<'_>) {
        let read = shard.snapshot(guard);
        if read.table.is_empty() && !read.amended() {
            return; // already empty, as Go checks
        }
        let mut dirty = sync::lock(&shard.get().dirty, &self.collector, guard);
        let read = shard.snapshot(guard);
        if read.table.is_empty() {
            // Only dirty-only keys: no new snapshot needed, and the dirty table is reused.
            for entry in dirty.entries() {
                self.count(entry.expunge_locked(guard), guard);
                // SAFETY: the entry is only in the dirty table, which is emptied below before
                // the lock is released, so threads that take the lock later cannot reach it.
                // Retiring under the lock runs no destructor.
                unsafe { entry.retire(guard) };
            }
            dirty.clear_keeping_capacity(read);
        } else {
            let dead = self.detach_all_locked(shard, &dirty, guard);
            let dead_birth = dead
                .iter()
                .map(|entry| entry.birth())
                .fold(u64::MAX, u64::min);
            dirty.reset();
            shard.publish_empty_locked(&self.empty, dead, dead_birth, guard);
        }
    }

    /// Expunges every entry of `shard` and returns them, each once. Caller holds the shard's
    /// dirty lock and takes the entries out of the map.
    pub(super) fn detach_all_locked(
        &self,
        shard: ShardRef<'_, K, V>,
        dirty: &Dirty<K, V>,
        guard: &Guard<'_>,
    ) -> Vec<EntryPtr<K, V>> {
        let read = shard.snapshot(guard);
        let mut all = Vec::with_capacity(read.table.len() + dirty.entries().count());
        for entry in read.table.iter() {
            let delta = entry.expunge_locked(guard);
            self.count(delta, guard);
            all.push(*entry);
        }
        // After the pass above every entry of the snapshot is expunged, while entries that only
        // the dirty map has are never expunged: that tells them apart without hashing.
        for entry in dirty.entries() {
            if !entry.is_expunged() {
                let delta = entry.expunge_locked(guard);
                self.count(delta, guard);
                all.push(*entry);
            }
        }
        all
    }
}

impl<K, V, S> SyncMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// Takes the shard's lock and advances the incremental copy of its snapshot by one step.
    pub(super) fn lock_dirty<'a>(
        &'a self,
        shard: ShardRef<'a, K, V>,
        guard: &Guard<'_>,
    ) -> Locked<'a, Dirty<K, V>> {
        let mut dirty =
            sync::lock_noting_contention(&shard.get().dirty, &self.collector, guard, || {
                if shard.mask == 0 {
                    self.contended.fetch_add(1, Ordering::Relaxed);
                }
            });
        dirty.step(false);
        dirty
    }

    /// Takes the lock of the shard of `hash`, which is `shard` unless the map split since
    /// `shard` was chosen; then `shard` becomes the right one.
    ///
    /// Under the lock of a shard chosen with the current mask, that shard stays the key's: the
    /// mask changes only under shard 0's lock, and only from 0.
    pub(super) fn lock_routed<'a>(
        &'a self,
        shard: &mut ShardRef<'a, K, V>,
        hash: u64,
        guard: &Guard<'_>,
    ) -> Locked<'a, Dirty<K, V>> {
        loop {
            let dirty = self.lock_dirty(*shard, guard);
            if !self.resharded(*shard) {
                return dirty;
            }
            drop(dirty);
            *shard = self.shard(hash);
        }
    }

    /// Whether `shard`, locked, is shard 0 of a map that has not split yet but will. Reads the
    /// map's mask, not the one `shard` was chosen with: a promotion under the same lock may
    /// have split the map since.
    fn may_split(&self, shard: ShardRef<'_, K, V>) -> bool {
        shard.mask == 0 && !self.resharded(shard) && self.split_mask() != 0
    }

    /// Splits a map whose shard 0 holds every key into all its shards. Caller holds shard 0's
    /// lock, and the map's shard mask is 0.
    ///
    /// Shard 0's dirty map is promoted first, so its snapshot holds every entry and no dirty
    /// map exists; the snapshot's entries are then distributed by hash (no user code runs:
    /// entries carry their hash) into new snapshots of their shards. Those of the other shards
    /// are published first (no thread uses those shards before the mask changes, so their locks
    /// are not needed), then the mask, then shard 0's part. A thread that chose shard 0 with
    /// the old mask and finds its new snapshot lacking a key cannot conclude the key is absent:
    /// every path that would re-checks the mask ([`resharded`](Self::resharded)), and locked
    /// paths choose their shard again under the lock ([`lock_routed`](Self::lock_routed)).
    /// Entries themselves do not move: the old snapshot, still used by such threads, holds the
    /// same entries, so a lock-free load or store through it acts on the key's current entry.
    pub(super) fn split_locked(&self, dirty: &mut Dirty<K, V>, guard: &Guard<'_>) {
        debug_assert_eq!(self.shard_mask.load(Ordering::Relaxed), 0);
        let mask = self.split_mask();
        let first = self.shard_at(0, 0);
        let promotion = dirty.take_for_promotion();
        let current = first.snapshot(guard);
        let source = promotion.as_ref().map_or(&current.table, |p| &p.table);
        let per_shard = source.len() / (mask + 1);
        let mut tables: Vec<Table<K, V>> = (0..=mask)
            .map(|_| table_with_capacity(per_shard + per_shard / 8))
            .collect();
        for entry in source.iter() {
            tables[shard::index(entry.hash(), mask)]
                .insert_unique(entry.hash(), *entry, |e| e.hash());
        }
        let (dead, dead_birth) =
            promotion.map_or((Vec::new(), u64::MAX), |p| (p.dead, p.dead_birth));
        // The other shards exist from here on, before the mask routes keys to them.
        self.shards.allocate_rest(&self.empty);
        let mut tables = tables.into_iter().enumerate();
        let (_, first_table) = tables.next().expect("a map has a shard 0");
        for (index, table) in tables {
            if !table.is_empty() {
                self.shard_at(index, mask)
                    .publish_locked(table, Vec::new(), u64::MAX, guard);
            }
        }
        self.shard_mask.store(mask, Ordering::Release);
        self.shard_at(0, mask)
            .publish_locked(first_table, dead, dead_birth, guard);
    }

    /// Splits a map that has one shard in use into all its shards now, as it does by itself
    /// when that shard's lock is contended or it grows. Does nothing on a map already split,
    /// or one made with a fixed number of shards. For tests.
    #[doc(hidden)]
    pub fn split(&self) {
        let guard = &sync::enter(&self.collector);
        let mut dirty = self.lock_dirty(self.shard_at(0, 0), guard);
        if self.split_mask() != 0 && self.shard_mask.load(Ordering::Relaxed) == 0 {
            self.split_locked(&mut dirty, guard);
        }
    }

    /// Go's `missLocked`: counts a locked lookup and promotes the shard's dirty map once misses
    /// reach half of its length (at least [`MIN_PROMOTION_MISSES`]) and its copy is finished;
    /// see "Promotion on fewer misses" in the documentation of `map.rs`.
    ///
    /// A cycle that was given room for far more new keys than it took (a table with room for
    /// [`UNUSED_ROOM_FACTOR`] times its entries: a map that grew, then stopped) promotes as
    /// soon as the misses reach its new keys instead: its table, rehashed to fit at promotion,
    /// would otherwise hold that room until half its length in misses, on a map that stopped
    /// growing for good (1.5M memoized `u64` keys called three times each: 113.7 resident
    /// bytes per entry instead of 63, `cargo bench --bench memory -- --workloads 1.5M`). The
    /// promotion and the next copy cost two passes over the shard, paid for by the cycle
    /// before, which took about half the shard's length in new keys or more to be given that
    /// room.
    ///
    /// Unlike Go, it does not promote a dirty map that holds no key the snapshot lacks: that
    /// promotion would only drop deleted keys, and paying a new snapshot and a new copy for it
    /// on every few misses is what makes Go's delete-and-store-again loops slow.
    pub(super) fn miss_locked(
        &self,
        shard: ShardRef<'_, K, V>,
        dirty: &mut Dirty<K, V>,
        guard: &Guard<'_>,
    ) {
        dirty.misses += 1;
        if dirty.dirty_only > 0
            && dirty.copy_done()
            && dirty.misses >= MIN_PROMOTION_MISSES
            && (dirty.misses.saturating_mul(MISS_DIVISOR) >= dirty.len()
                || (dirty.misses >= dirty.dirty_only
                    && dirty.capacity() >= dirty.len().saturating_mul(UNUSED_ROOM_FACTOR)))
        {
            self.promote_locked(shard, dirty, guard);
        }
    }

    /// Makes the shard's dirty map its read snapshot (finishing its copy first, normally
    /// already done). A map whose one shard in use has then [`SPLIT_AT_LEN`] keys or more
    /// splits: the split's pass over the keys stays short, and since it follows a promotion,
    /// each shard starts where a shard of a map split from the start would be in its cycles
    /// (their tables, hence the memory a large map holds, are the same).
    pub(super) fn promote_locked(
        &self,
        shard: ShardRef<'_, K, V>,
        dirty: &mut Dirty<K, V>,
        guard: &Guard<'_>,
    ) {
        if let Some(mut promotion) = dirty.take_for_promotion() {
            promotion.fit_table();
            let len = promotion.table.len();
            shard.publish_locked(promotion.table, promotion.dead, promotion.dead_birth, guard);
            if self.may_split(shard) && len >= SPLIT_AT_LEN {
                self.split_locked(dirty, guard);
            }
        }
    }

    /// Puts an entry of the snapshot that was expunged back in the dirty map (Go's
    /// `unexpungeLocked` and `m.dirty[key] = e`).
    ///
    /// Runs no user code between the two steps (the insert rehashes with the entries' stored
    /// hashes), so the entry cannot be left unexpunged outside the dirty map.
    pub(super) fn unexpunge_locked(&self, dirty: &mut Dirty<K, V>, entry: EntryPtr<K, V>) {
        if entry.unexpunge_locked() {
            dirty.insert_revived(entry);
        }
    }

    /// Under the lock: the current snapshot, and the entry for `key` in it, unless it is
    /// `missed`, a snapshot this thread already searched for `key` in vain under `guard`. Its
    /// table never changes, and while `guard` is held its memory cannot become a new snapshot,
    /// so finding it current again means the search need not be repeated: that saves a probe
    /// (a cache miss in a large map) on every locked path that follows a lock-free miss.
    #[inline]
    pub(super) fn find_current_locked<'g, Q>(
        shard: ShardRef<'_, K, V>,
        hash: u64,
        key: &Q,
        missed: Option<&ReadOnly<K, V>>,
        guard: &'g Guard<'_>,
    ) -> (&'g ReadOnly<K, V>, Option<&'g EntryPtr<K, V>>)
    where
        Q: ?Sized + Equivalent<K>,
    {
        Self::find_current_locked_by(
            shard,
            hash,
            |entry| key.equivalent(&entry.key),
            missed,
            guard,
        )
    }

    /// [`find_current_locked`](Self::find_current_locked) for the entry of `hash` that
    /// `matches` accepts.
    #[inline]
    pub(super) fn find_current_locked_by<'g>(
        shard: ShardRef<'_, K, V>,
        hash: u64,
        matches: impl FnMut(&EntryPtr<K, V>) -> bool,
        missed: Option<&ReadOnly<K, V>>,
        guard: &'g Guard<'_>,
    ) -> (&'g ReadOnly<K, V>, Option<&'g EntryPtr<K, V>>) {
        let read = shard.snapshot(guard);
        if missed.is_some_and(|missed| std::ptr::eq(missed, read)) {
            return (read, None);
        }
        (read, find_by(&read.table, hash, matches))
    }

    /// The locked half of a lookup that missed in the snapshot `missed`: the entry for `key` in
    /// the current snapshot or, if that is amended, in the dirty table (counting a miss).
    ///
    /// The caller holds a guard of the map's collector, under which it found `missed` and
    /// will use the entry returned. This function opens a guard of its own, nested in the
    /// caller's: the two share the thread's slot, and what the nested one publishes there (the
    /// epoch read under the lock) stays published until the caller's guard unpins, so the
    /// entry stays covered. Taking no guard, and finding the shard from `hash` again, lets the
    /// hit path keep its guard and shard in registers (no reference to them escapes to this
    /// out-of-line call).
    #[cold]
    #[inline(never)]
    pub(super) fn find_locked<Q>(
        &self,
        hash: u64,
        key: &Q,
        missed: &ReadOnly<K, V>,
    ) -> Option<EntryPtr<K, V>>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let guard = &sync::enter(&self.collector);
        let mut shard = self.shard(hash);
        let mut dirty = self.lock_routed(&mut shard, hash, guard);
        let (read, found) = Self::find_current_locked(shard, hash, key, Some(missed), guard);
        if let Some(entry) = found {
            return Some(*entry);
        }
        if !read.amended() {
            return None;
        }
        let entry = dirty.find(hash, key).copied();
        self.miss_locked(shard, &mut dirty, guard);
        entry
    }

    /// Inserts an entry for a key that neither the snapshot nor the dirty table has, and
    /// splits the map if this shard, its only shard in use, has had its lock contended too
    /// often (or is large, see [`promote_locked`](Self::promote_locked)).
    pub(super) fn insert_new_locked(
        &self,
        shard: ShardRef<'_, K, V>,
        dirty: &mut Dirty<K, V>,
        read: &ReadOnly<K, V>,
        entry: EntryPtr<K, V>,
        guard: &Guard<'_>,
    ) {
        // The shared empty snapshot is never written: the shard's first new key gets it an
        // empty snapshot of its own, whose filter records the key. (Readers that still see the
        // shared one answer "absent", as they would have before this key.)
        let read = if read.is_shared_empty() {
            shard.own_snapshot_locked(guard)
        } else {
            read
        };
        dirty.ensure(|| shard.read.load_full());
        // Runs no user code from here on (the insert and a promotion rehash with the entries'
        // stored hashes), so the filter is never amended for an entry that does not arrive.
        dirty.note_new_key(read, entry.hash());
        shard.probe_hint.publish(dirty.insert(entry));
        if dirty.new_keys >= read.dirty_capacity() {
            self.promote_locked(shard, dirty, guard);
        }
        if self.may_split(shard) && self.contended.load(Ordering::Relaxed) >= SPLIT_AFTER_CONTENDED
        {
            self.split_locked(dirty, guard);
        }
    }

    /// Go's locked half of `LoadAndDelete`, after a miss in the snapshot `missed`: a key the
    /// current snapshot lacks leaves the dirty table.
    #[cold]
    pub(super) fn delete_locked<'a, 'g, Q>(
        &'a self,
        mut shard: ShardRef<'a, K, V>,
        hash: u64,
        key: &Q,
        missed: &ReadOnly<K, V>,
        guard: &'g Guard<'_>,
    ) -> Option<&'g V>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let mut dirty = self.lock_routed(&mut shard, hash, guard);
        let (read, found) = Self::find_current_locked(shard, hash, key, Some(missed), guard);
        let (entry, unlink) = if let Some(entry) = found {
            (*entry, Unlink::Staying)
        } else if read.amended() {
            let removed = dirty.remove(hash, key);
            if removed.is_some() {
                dirty.note_removed_new_key(read);
            } else {
                self.miss_locked(shard, &mut dirty, guard);
            }
            let removed = removed?;
            // SAFETY: the entry was only in the dirty map (never in a snapshot) and has just left
            // it under the lock, so threads that take the lock later cannot reach it. This
            // thread keeps using it below, protected by `guard` like any other thread that
            // found it earlier.
            unsafe { removed.retire(guard) };
            (removed, Unlink::LeavingMap)
        } else {
            return None;
        };
        entry.delete(guard, unlink, |delta| self.count(delta, guard))
    }

    /// The locked half of [`compare_and_remove`](Self::compare_and_remove), after a miss in the
    /// snapshot `missed`.
    #[cold]
    pub(super) fn compare_and_remove_locked<'a>(
        &'a self,
        mut shard: ShardRef<'a, K, V>,
        hash: u64,
        old: &V,
        missed: &ReadOnly<K, V>,
        guard: &Guard<'_>,
    ) -> bool
    where
        V: IdentityEq,
    {
        let holds_old = |entry: &EntryPtr<K, V>| entry.hashed_as(hash) && entry.holds(old, guard);
        let mut dirty = self.lock_routed(&mut shard, hash, guard);
        let (read, found) =
            Self::find_current_locked_by(shard, hash, holds_old, Some(missed), guard);
        if let Some(entry) = found {
            return entry.compare_and_delete(old, guard, Unlink::Staying, |delta| {
                self.count(delta, guard)
            });
        }
        if !read.amended() {
            return false;
        }
        // No user code runs from here on: the comparisons are by identity, and retiring under
        // the lock runs no destructor (passes wait for the unlock). An entry of the dirty table
        // may be in the snapshot too (the copy shares them), with a value that became `old`
        // after the search above: it is deleted in place, as one found there would be.
        let found = dirty.find_by(hash, holds_old).copied();
        let in_snapshot =
            |entry: &EntryPtr<K, V>| find_by(&read.table, hash, |e| e.same(*entry)).is_some();
        if let Some(entry) = found.filter(in_snapshot) {
            return entry.compare_and_delete(old, guard, Unlink::Staying, |delta| {
                self.count(delta, guard)
            });
        }
        let deleted = found.is_some_and(|entry| {
            // Removed from the dirty table just below: its first value goes with it.
            entry.compare_and_delete(old, guard, Unlink::LeavingMap, |delta| {
                self.count(delta, guard)
            })
        });
        if let (true, Some(entry)) = (deleted, found) {
            if dirty.remove_entry(entry) {
                dirty.note_removed_new_key(read);
                // SAFETY: the entry was only in the dirty map (the current snapshot lacks it, as
                // checked above, and snapshots change only under this lock) and has just left it
                // under the lock, so threads that take the lock later cannot reach it; threads
                // that found it before hold guards of the map's collector, which retiring waits
                // for. No store to it is lost: its value was deleted just above, stores reach
                // entries of the dirty map only under the lock, and a compare-and-swap outside
                // it (through an entry found before) fails on a deleted value.
                unsafe { entry.retire(guard) };
            }
        }
        if !deleted {
            self.miss_locked(shard, &mut dirty, guard);
        }
        deleted
    }

    /// `load_or_store` for `key` of `hash`, returning what it did not keep (the key, unless a
    /// new entry took it; the value, unless stored) for the caller to drop: nothing is
    /// dropped here, and the lock is released before it returns. Runs the key's `Eq`, never
    /// its `Hash`.
    pub(super) fn load_or_store_leaving<'g>(
        &self,
        hash: u64,
        key: K,
        value: V,
        guard: &'g Guard<'_>,
    ) -> (LoadOrStored<'g, V>, Option<K>, Option<V>) {
        let mut value = Some(value);
        let mut shard = self.shard(hash);
        shard.probe_hint.prefetch::<K, V>(hash);
        let read = shard.snapshot(guard);
        let found = find(&read.table, hash, &key);
        if let Some(entry) = found {
            if let Some(outcome) = entry.try_load_or_store(&mut value, guard) {
                self.count(outcome.delta(), guard);
                return (outcome, Some(key), value);
            }
        }
        let missed = found.is_none().then_some(read);
        let mut dirty = self.lock_routed(&mut shard, hash, guard);
        let (read, found) = Self::find_current_locked(shard, hash, &key, missed, guard);
        let outcome = if let Some(entry) = found {
            self.unexpunge_locked(&mut dirty, *entry);
            entry.try_load_or_store(&mut value, guard)
        } else if let Some(entry) = dirty.find(hash, &key) {
            let outcome = entry.try_load_or_store(&mut value, guard);
            self.miss_locked(shard, &mut dirty, guard);
            outcome
        } else {
            let value = value.take().expect("the value to store is present");
            let entry = EntryPtr::new(key, hash, value, guard);
            let stored = entry.load(guard).map(|v| v as *const V);
            self.insert_new_locked(shard, &mut dirty, read, entry, guard);
            self.count(LiveDelta::Added, guard);
            drop(dirty);
            // SAFETY: the value was just stored in an entry of this map; it is only ever retired
            // through `self.collector`, so it stays allocated while `guard` is held.
            let stored = unsafe { &*stored.expect("a new entry holds its value") };
            return (LoadOrStored::Stored(stored), None, None);
        };
        // Under the lock, an entry of the snapshot was just unexpunged if needed, and an entry of
        // the dirty table is never expunged: expunging needs the lock.
        let outcome = outcome.expect("entries are expunged only under the lock");
        self.count(outcome.delta(), guard);
        drop(dirty);
        (outcome, Some(key), value)
    }
}
