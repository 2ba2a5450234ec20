//! The state behind the map's lock: Go's dirty map, filled incrementally.
//!
//! Go builds a new dirty map on the first new key after a promotion by copying every live entry
//! of the read snapshot, under the lock: an O(n) pause for one unlucky writer. Here the copy is
//! spread over the locked operations that follow: each visits a fixed number of the snapshot's
//! buckets. Entries not yet visited are, logically, already in the dirty map; every locked path
//! searches the snapshot first, so none of them needs to know which ones were copied.

use std::sync::Arc;

use equivalent::Equivalent;

use super::entry::EntryPtr;
use super::prefetch::prefetch_address;
use super::read::{find_by, table_with_capacity, ReadOnly, Table};
use super::table_alloc::TableAlloc;

/// Go's `dirty`, `misses` and an incremental copy of the read snapshot.
///
/// # Invariants
///
/// - No method runs user code, except the lookups [`find`](Self::find) and
///   [`remove`](Self::remove), which call the user's `Eq` before changing anything: tables are
///   rehashed with the hash each entry carries ([`Entry::hash`](super::entry::Entry)). So a
///   panic in user code never leaves the dirty state half-changed.
/// - While `copy` is `Some`, its `source` is the map's current read snapshot, `table` is `Some`,
///   and the logical dirty map is `table` plus the entries of `source` at buckets
///   `next_bucket..` (not yet visited). Promotion and `clear`, the only operations that replace
///   the snapshot, first finish or drop the copy.
/// - An entry is inserted in `table` at most once: by the copy when visited live, or, if the
///   copy expunged it, by a store that unexpunges it.
/// - `table` was allocated with room for every entry of the source plus the new keys the cycle
///   is expected to take ([`cycle_room`](Self::cycle_room)): the
///   [`dirty_capacity`](ReadOnly::dirty_capacity) new keys after which the map promotes, so
///   that inserts do not rehash (no O(n) pause from the table either), unless the previous
///   cycle ended on misses with far fewer new keys; then twice those, and the table grows
///   (rehashing with the stored hashes) in the rare cycle that takes more. Small cycles (at
///   most [`SMALL_CYCLE`](Self::SMALL_CYCLE) new keys) start small, as growing costs little.
pub(crate) struct Dirty<K, V> {
    table: Option<Table<K, V>>,
    copy: Option<Copy<K, V>>,
    /// Entries of the snapshot that the copy expunged: at promotion, those still expunged leave
    /// the map (the others were stored again and are in `table`).
    expunged: Vec<EntryPtr<K, V>>,
    /// The earliest birth among `expunged` (`u64::MAX` if none), taken while the copy has each
    /// entry in cache.
    expunged_birth: u64,
    /// Entries of `expunged` stored again since ([`insert_revived`](Self::insert_revived)):
    /// while none is, every entry of `expunged` leaves the map at promotion without a second
    /// look at each.
    revived: usize,
    /// Locked lookups since the last promotion.
    pub(crate) misses: usize,
    /// Keys the snapshot lacks inserted since the last promotion (deletions do not lower it).
    pub(crate) new_keys: usize,
    /// Keys the snapshot lacks that the dirty map holds now.
    pub(crate) dirty_only: usize,
    /// The snapshot's filter words set since the filter was last empty, each once.
    filter_words: Vec<usize>,
    /// The new keys the current cycle's table was sized for (0 before [`ensure`](Self::ensure)).
    room: usize,
    /// The new keys the previous cycle took, if it ended before filling its room (on misses);
    /// `None` after a cycle that filled it, or before the first.
    previous: Option<usize>,
}

/// Where a table's memory is: the address of its control bytes and its bucket mask (a table
/// probes for hash `h` from control byte `h & mask`). Only an address, for prefetching: nothing
/// dereferences it.
///
/// hashbrown lays a table's buckets out below its control bytes, in reverse: the bucket of
/// index `i` ends `i` buckets below them. Both directions of that layout are here, next to each
/// other; `map::tests::the_probe_hint_says_where_the_dirty_tables_buckets_are` checks it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TablePlace {
    pub(crate) control: usize,
    pub(crate) mask: usize,
}

impl TablePlace {
    /// Where the table of `inserted`, an entry just inserted, is.
    fn of<K, V>(
        inserted: hashbrown::hash_table::OccupiedEntry<'_, EntryPtr<K, V>, TableAlloc>,
    ) -> Self {
        let size = std::mem::size_of::<EntryPtr<K, V>>();
        let control =
            inserted.get() as *const EntryPtr<K, V> as usize + (inserted.bucket_index() + 1) * size;
        TablePlace {
            control,
            mask: inserted.into_table().num_buckets() - 1,
        }
    }

    /// Asks for the control group and the bucket where the table's probe for `hash` starts,
    /// where a new key's insert reads and writes. The place may be stale (see
    /// [`ProbeHint`](super::shard::ProbeHint)): the arithmetic wraps, and a prefetch of a
    /// wrong address costs only the hint.
    #[inline]
    pub(crate) fn prefetch_probe<K, V>(self, hash: u64) {
        let start = hash as usize & self.mask;
        let bucket = start
            .wrapping_add(1)
            .wrapping_mul(std::mem::size_of::<EntryPtr<K, V>>());
        prefetch_address(self.control.wrapping_add(start));
        prefetch_address(self.control.wrapping_sub(bucket));
    }
}

/// What a promotion publishes, and what leaves the map with the old snapshot.
pub(crate) struct Promotion<K, V> {
    /// The dirty table, complete, to become the read snapshot.
    pub(crate) table: Table<K, V>,
    /// Entries of the old snapshot that are in neither the new snapshot nor the dirty map.
    pub(crate) dead: Vec<EntryPtr<K, V>>,
    /// The earliest birth among `dead` (`u64::MAX` if none).
    pub(crate) dead_birth: u64,
}

impl<K, V> Promotion<K, V> {
    /// Rehashes the table into fewer buckets if its entries fit in them. The table was
    /// allocated for the whole cycle's room (up to four times the entries it started with, see
    /// [`Dirty::ensure`]); a cycle that ends on misses long before filling it would publish a
    /// snapshot of mostly empty buckets, which never grows and stays until the next promotion:
    /// on a map that stopped taking new keys, for good (1.5M `u64` keys settled: 101.8
    /// resident bytes per entry instead of 64.0, `cargo bench --bench memory -- --workloads
    /// 1.5M`). The rehash uses the entries' stored hashes (no user code) and
    /// costs a pass over the entries, paid for by the misses that triggered the promotion (as
    /// many as half the entries) or, for a table mostly room, by the cycle before, whose new
    /// keys earned that room (see `SyncMap::miss_locked`). A table that its cycle filled is not
    /// rehashed.
    pub(crate) fn fit_table(&mut self) {
        self.table.shrink_to(self.table.len(), |e| e.hash());
    }
}

struct Copy<K, V> {
    source: Arc<ReadOnly<K, V>>,
    next_bucket: usize,
    /// Entries of `source` at buckets `next_bucket..`.
    unvisited: usize,
}

impl<K, V> Default for Dirty<K, V> {
    fn default() -> Self {
        Dirty {
            table: None,
            copy: None,
            expunged: Vec::new(),
            expunged_birth: u64::MAX,
            revived: 0,
            misses: 0,
            new_keys: 0,
            dirty_only: 0,
            filter_words: Vec::new(),
            room: 0,
            previous: None,
        }
    }
}

impl<K, V> Dirty<K, V> {
    /// Snapshot buckets each locked operation copies. With hashbrown's load factor (at least
    /// 7/16 after growth) this is over a dozen entries, so the copy is done long before the
    /// misses or new keys that trigger the next promotion add up.
    const COPY_STEP: usize = 32;
    /// The snapshot tables whose copy prefetches entries: 32,768 buckets and more, about
    /// 16,000 entries and up, 768 KiB of entries (a core's L2 is 512 KiB here).
    pub(crate) const PREFETCH_FROM: usize = 1 << 15;

    /// The largest number of new keys between promotions for which the table is not allocated
    /// for all of them up front.
    const SMALL_CYCLE: usize = 128;

    /// The dirty table, if the dirty map exists.
    #[cfg(test)]
    pub(crate) fn table(&self) -> Option<&Table<K, V>> {
        self.table.as_ref()
    }

    /// The length of the logical dirty map.
    pub(crate) fn len(&self) -> usize {
        self.table.as_ref().map_or(0, Table::len) + self.copy.as_ref().map_or(0, |c| c.unvisited)
    }

    /// Whether the incremental copy of the snapshot is finished (or none is under way), so that
    /// a promotion now costs no pause.
    pub(crate) fn copy_done(&self) -> bool {
        self.copy.is_none()
    }

    /// Finds `key` among the entries already in the table (callers search the snapshot first).
    pub(crate) fn find<Q>(&self, hash: u64, key: &Q) -> Option<&EntryPtr<K, V>>
    where
        Q: ?Sized + Equivalent<K>,
    {
        self.find_by(hash, |entry| key.equivalent(&entry.key))
    }

    /// The entry of `hash` that `matches` accepts, if the dirty map has one.
    pub(crate) fn find_by(
        &self,
        hash: u64,
        matches: impl FnMut(&EntryPtr<K, V>) -> bool,
    ) -> Option<&EntryPtr<K, V>> {
        self.table
            .as_ref()
            .and_then(|table| find_by(table, hash, matches))
    }

    /// How many entries the dirty table holds without growing (0 without one).
    pub(crate) fn capacity(&self) -> usize {
        self.table.as_ref().map_or(0, Table::capacity)
    }

    /// The entries already in the table.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &EntryPtr<K, V>> {
        self.table.iter().flat_map(|table| table.iter())
    }

    /// Go's `dirtyLocked`: makes sure the dirty map exists, starting an incremental copy of
    /// `snapshot` (the current read snapshot) if it does not.
    pub(crate) fn ensure(&mut self, snapshot: impl FnOnce() -> Arc<ReadOnly<K, V>>) {
        if self.table.is_none() {
            let source = snapshot();
            self.room = source.dirty_capacity();
            let new_keys = Self::cycle_room(self.room, self.previous);
            self.table = Some(table_with_capacity(source.table.len() + new_keys));
            self.copy = Some(Copy {
                unvisited: source.table.len(),
                next_bucket: 0,
                source,
            });
        }
    }

    /// The new keys to allocate the dirty table for, in a cycle that promotes after `room` new
    /// keys and follows a cycle that ended on misses after `previous` new keys (`None`: it
    /// filled its room, or there was none).
    ///
    /// A small cycle starts small and may grow: rehashing a few hundred entries is no pause,
    /// while `clear` and the copy pay for every bucket allocated. A map that grows fills each
    /// cycle's room, and gets the whole room again: no rehash. A map whose cycles end on misses
    /// long before their room is full (a bounded cache's: keys come and go, so the snapshot
    /// stays the same size) gets twice what the previous cycle took: with the whole room, its
    /// tables were mostly empty buckets (16,384 for about 4,000 entries per shard in the zipf
    /// bounded workload of `benches/memoize.rs`), which the hit path's probes and the copy
    /// paid for in cache misses.
    fn cycle_room(room: usize, previous: Option<usize>) -> usize {
        if room <= Self::SMALL_CYCLE {
            return Self::SMALL_CYCLE / 8;
        }
        match previous {
            Some(previous) => room.min(previous.saturating_mul(2).max(Self::SMALL_CYCLE)),
            None => room,
        }
    }

    /// Copies the next [`COPY_STEP`](Self::COPY_STEP) buckets, or all remaining ones.
    ///
    /// Runs no user code (entries carry their hash), and records each bucket as visited as soon
    /// as it is handled, so that even an unwind from inside (an allocation failure aborts, so
    /// none is expected) could not make the next step copy or expunge an entry twice.
    pub(crate) fn step(&mut self, finish: bool) {
        let Some(copy) = &mut self.copy else { return };
        let table = self.table.as_mut().expect("a copy fills the dirty table");
        let buckets = copy.source.table.num_buckets();
        let end = if finish {
            buckets
        } else {
            buckets.min(copy.next_bucket + Self::COPY_STEP)
        };
        // The entries the copy visits are scattered over the heap: in a map larger than the
        // cache each is a miss. The load of the entry `COPY_STEP` buckets ahead is issued
        // before each is handled, so that the misses overlap instead of each waiting for the
        // one before. (In a smaller map the extra loads only cost.)
        let prefetching = buckets >= Self::PREFETCH_FROM;
        let prefetch = |bucket: usize| {
            if let Some(entry) = copy.source.table.get_bucket(bucket) {
                super::prefetch::prefetch(&**entry);
            }
        };
        if prefetching {
            (copy.next_bucket..end.min(copy.next_bucket + Self::COPY_STEP)).for_each(prefetch);
        }
        while copy.next_bucket < end {
            let bucket = copy.next_bucket;
            copy.next_bucket += 1;
            if prefetching && bucket + Self::COPY_STEP < end {
                prefetch(bucket + Self::COPY_STEP);
            }
            if let Some(entry) = copy.source.table.get_bucket(bucket) {
                copy.unvisited -= 1;
                if entry.try_expunge_locked() {
                    self.expunged_birth = self.expunged_birth.min(entry.birth());
                    self.expunged.push(*entry);
                } else {
                    table.insert_unique(entry.hash(), *entry, |e| e.hash());
                }
            }
        }
        if end == buckets {
            self.copy = None;
        }
    }

    /// Inserts an entry that is in neither the table nor the unvisited part of the snapshot.
    /// Runs no user code: the table grows with the hashes the entries carry. Returns where the
    /// table is, for [`ProbeHint`](super::shard::ProbeHint).
    pub(crate) fn insert(&mut self, entry: EntryPtr<K, V>) -> TablePlace {
        let table = self.table.as_mut().expect("ensure() runs before insert()");
        TablePlace::of(table.insert_unique(entry.hash(), entry, |e| e.hash()))
    }

    /// Inserts an entry of the snapshot that the copy expunged and a store just unexpunged.
    pub(crate) fn insert_revived(&mut self, entry: EntryPtr<K, V>) {
        self.revived += 1;
        let _ = self.insert(entry);
    }

    /// Records a key that `read` (the current snapshot) lacks, about to be inserted: sets its
    /// filter bits.
    pub(crate) fn note_new_key(&mut self, read: &ReadOnly<K, V>, hash: u64) {
        read.note_dirty_key(hash, &mut self.filter_words);
        self.new_keys += 1;
        self.dirty_only += 1;
    }

    /// Records that a key `read` (the current snapshot) lacks left the table. When it was the
    /// last one, empties the snapshot's filter, so that negative lookups of keys that came and
    /// went stay lock-free until the next promotion.
    pub(crate) fn note_removed_new_key(&mut self, read: &ReadOnly<K, V>) {
        self.dirty_only -= 1;
        if self.dirty_only == 0 {
            read.forget_dirty_keys(&mut self.filter_words);
        }
    }

    /// Removes `key` from the table (a key the snapshot lacks).
    pub(crate) fn remove<Q>(&mut self, hash: u64, key: &Q) -> Option<EntryPtr<K, V>>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let table = self.table.as_mut()?;
        let found = table
            .find_entry(hash, |entry| key.equivalent(&entry.key))
            .ok()?;
        Some(found.remove().0)
    }

    /// Removes `entry` from the table, found by identity (runs no user code); returns whether it
    /// was there.
    pub(crate) fn remove_entry(&mut self, entry: EntryPtr<K, V>) -> bool {
        let Some(table) = self.table.as_mut() else {
            return false;
        };
        match table.find_entry(entry.hash(), |e| e.same(entry)) {
            Ok(found) => {
                found.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Finishes the copy and hands over the table for promotion, with the entries of the old
    /// snapshot that leave the map; resets the dirty state.
    pub(crate) fn take_for_promotion(&mut self) -> Option<Promotion<K, V>> {
        self.step(true);
        let table = self.table.take();
        let mut dead = std::mem::take(&mut self.expunged);
        if self.revived > 0 {
            // Those stored again are in `table`. (A pass over every expunged entry, a cache
            // miss each in a large map: skipped when none came back.)
            dead.retain(|entry| entry.is_expunged());
        }
        // The birth of all expunged entries, revived ones included: an earlier birth only
        // makes the collector wait for more threads.
        let dead_birth = self.expunged_birth;
        let previous = (self.new_keys < self.room).then_some(self.new_keys);
        *self = Dirty::default();
        self.previous = previous;
        table.map(|table| Promotion {
            table,
            dead,
            dead_birth,
        })
    }

    /// Drops the dirty map, as `clear` does.
    pub(crate) fn reset(&mut self) {
        *self = Dirty::default();
    }

    /// Empties the dirty map but keeps its table's allocation, for `clear` on a map whose
    /// snapshot `read` is empty (no copy can be in progress then: there is nothing to copy).
    pub(crate) fn clear_keeping_capacity(&mut self, read: &ReadOnly<K, V>) {
        debug_assert!(self.copy.as_ref().is_none_or(|c| c.unvisited == 0));
        if let Some(table) = &mut self.table {
            table.clear();
        }
        read.forget_dirty_keys(&mut self.filter_words);
        self.copy = None;
        self.expunged.clear();
        self.expunged_birth = u64::MAX;
        self.revived = 0;
        self.misses = 0;
        self.new_keys = 0;
        self.dirty_only = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::Dirty;

    /// The dirty table's size for a cycle: the whole room after a cycle that filled its own (a
    /// growing map: no rehash), twice the previous cycle's new keys after one that ended on
    /// misses, never more than the room, and small cycles start small.
    #[test]
    fn cycle_room_follows_the_previous_cycle() {
        let small = Dirty::<u64, u64>::SMALL_CYCLE;
        assert_eq!(Dirty::<u64, u64>::cycle_room(small, None), small / 8);
        assert_eq!(Dirty::<u64, u64>::cycle_room(small, Some(1)), small / 8);
        assert_eq!(Dirty::<u64, u64>::cycle_room(8192, None), 8192);
        assert_eq!(Dirty::<u64, u64>::cycle_room(8192, Some(1000)), 2000);
        assert_eq!(Dirty::<u64, u64>::cycle_room(8192, Some(5000)), 8192);
        assert_eq!(Dirty::<u64, u64>::cycle_room(8192, Some(3)), small);
        assert_eq!(Dirty::<u64, u64>::cycle_room(8192, Some(usize::MAX)), 8192);
    }
}
