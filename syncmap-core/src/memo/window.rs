//! A bounded cache's window, outside its map: the cells of the keys it computed last, in a
//! small table beside each shard of the eviction policy, under the same lock.
//!
//! W-TinyLFU keeps every new entry in a small window (recency), and when an entry leaves the
//! window it duels with the main space's victim (frequency). Most candidates lose: on a Zipf
//! trace 84% of the misses end rejected (`docs/performance-notes.md`, "Cells inline in the
//! entries, built: not kept; the window outside the map"). With the window in the map, each of
//! those paid a locked insertion and a locked deletion of the map for a key that never
//! stayed. Here a new key's cell waits in its policy shard's window, and enters the map only
//! once admitted; a rejected one never touches it.
//!
//! # Invariants
//!
//! - A key's cell is in its shard's window or in the map, not both, except for an instant
//!   under the shard's lock: an admitted cell enters the map before it leaves the window. A
//!   caller whose map lookup missed looks in the window and then in the map again, under that
//!   lock: it finds the cell in one of them.
//! - Settled cells are queued in the order they were settled, with their weight; `weight` is
//!   the sum of the queued cells still in the table. Cells in flight are in the table only
//!   (they are never candidates).
//! - No user code runs under the shard's lock but the keys' `Eq`, in lookups that change
//!   nothing (as the map's own locked lookups): hashes are computed before, and what leaves
//!   the window (keys and cells, whose last handle may drop a value) is dropped after the
//!   lock is released. The lock holds back the map's reclamation passes (`sync::lock`).

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

use super::bounded::Bound;
use super::cells::CellStore;
use super::slot::{Found, SlotRef};
use super::{FlightOrValue, Memo, Store};
use crate::Equivalent;

/// A cell in a window, with its key.
struct Staged<K, V> {
    hash: u64,
    key: K,
    slot: SlotRef<V>,
    /// Its weight once settled (queued); `None` while in flight.
    weight: Option<u64>,
}

/// A settled cell, in the window's order: found in the table by its hash and address.
struct Queued {
    hash: u64,
    cell: usize,
}

/// What leaves a window: a key and its cell, dropped by the caller after the lock.
pub(super) type Left<K, V> = (K, SlotRef<V>);

/// One policy shard's window (see the module documentation).
pub(super) struct Window<K, V> {
    table: HashTable<Staged<K, V>>,
    queue: VecDeque<Queued>,
    weight: u64,
}

impl<K, V> Window<K, V> {
    pub(super) fn new() -> Self {
        Window {
            table: HashTable::new(),
            queue: VecDeque::new(),
            weight: 0,
        }
    }

    /// The total weight of the settled cells.
    pub(super) fn weight(&self) -> u64 {
        self.weight
    }

    /// The key's cell, if the window has one. Runs the key's `Eq`.
    pub(super) fn find<Q>(&self, hash: u64, key: &Q) -> Option<&SlotRef<V>>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let found = self
            .table
            .find(hash, |s| s.hash == hash && key.equivalent(&s.key));
        found.map(|staged| &staged.slot)
    }

    /// Adds the cell of a new computation of `key` (not in the window: the caller looked).
    pub(super) fn insert(&mut self, hash: u64, key: K, slot: SlotRef<V>) {
        let staged = Staged {
            hash,
            key,
            slot,
            weight: None,
        };
        self.table.insert_unique(hash, staged, |s| s.hash);
    }

    /// Queues `slot`, settled with a value of `weight`; returns whether it is still in the
    /// window (an invalidation may have taken it out during its computation).
    pub(super) fn settle(&mut self, hash: u64, slot: &SlotRef<V>, weight: u64) -> bool {
        let cell = slot.address();
        let Some(staged) = self.table.find_mut(hash, |s| s.slot.address() == cell) else {
            return false;
        };
        if staged.weight.is_none() {
            staged.weight = Some(weight);
            self.weight += weight;
            self.queue.push_back(Queued { hash, cell });
        }
        true
    }

    /// Takes the oldest settled cell out of the window: the next candidate of the policy,
    /// with its hash and weight.
    pub(super) fn pop_candidate(&mut self) -> Option<(u64, Left<K, V>, u64)> {
        while let Some(Queued { hash, cell }) = self.queue.pop_front() {
            let found = self.table.find_entry(hash, |s| s.slot.address() == cell);
            // Taken out meanwhile (invalidated): its weight left with it.
            let Ok(entry) = found else { continue };
            let (staged, _) = entry.remove();
            let weight = staged.weight.unwrap_or(0);
            self.weight -= weight;
            return Some((hash, (staged.key, staged.slot), weight));
        }
        None
    }

    /// Takes `slot` out of the window if it is there (by identity).
    pub(super) fn remove_same(&mut self, hash: u64, slot: &SlotRef<V>) -> Option<Left<K, V>> {
        let cell = slot.address();
        let entry = self
            .table
            .find_entry(hash, |s| s.slot.address() == cell)
            .ok()?;
        let staged = entry.remove().0;
        Some(self.removed(staged))
    }

    /// Takes the key's cell out of the window. Runs the key's `Eq`.
    pub(super) fn remove_key<Q>(&mut self, hash: u64, key: &Q) -> Option<Left<K, V>>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let found = self
            .table
            .find_entry(hash, |s| s.hash == hash && key.equivalent(&s.key));
        let staged = found.ok()?.remove().0;
        Some(self.removed(staged))
    }

    /// Accounts for a cell taken out of the table (its queued place is skipped later).
    fn removed(&mut self, staged: Staged<K, V>) -> Left<K, V> {
        if let Some(weight) = staged.weight {
            self.weight -= weight;
        }
        (staged.key, staged.slot)
    }

    /// Every cell of the window, for a caller that reads them after the lock: `clone_key`
    /// copies their keys (user code, a `Clone` that changes nothing here).
    pub(super) fn entries(&self, clone_key: fn(&K) -> K) -> Vec<(u64, K, SlotRef<V>)> {
        let each = |s: &Staged<K, V>| (s.hash, clone_key(&s.key), s.slot.clone());
        self.table.iter().map(each).collect()
    }

    /// The cells of the window, for counting or checking without user code.
    pub(super) fn slots(&self) -> impl Iterator<Item = &SlotRef<V>> {
        self.table.iter().map(|s| &s.slot)
    }

    /// Takes every cell out (`clear`).
    pub(super) fn take_all(&mut self) -> Vec<Left<K, V>> {
        self.queue.clear();
        self.weight = 0;
        self.table.drain().map(|s| (s.key, s.slot)).collect()
    }
}

impl<K, V> Memo<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// `flight_for` of a bounded cache, whose hit check just missed the map: the key's cell
    /// in its window (a hit of a key computed last), or in the map if admitted meanwhile
    /// (looked up again under the window's lock), else a new cell put in the window under the
    /// key `make_key` builds (claimed by the thread `claim_for` from the start, if given). An
    /// expired value's cell is taken out and the lookup starts over (`on_expired` is called
    /// for each).
    ///
    /// `make_key` (user code: the key's `Clone`) runs outside the lock. A key without drop
    /// glue is built before the lock is taken (its copy allocates nothing, and a real miss
    /// then takes the lock once); any other is built only once the lock found nothing, which
    /// is then taken again to insert the cell: a window hit builds no key (a hit allocates
    /// nothing).
    pub(super) fn flight_in_window<Q>(
        &self,
        cells: &CellStore<K, V>,
        bound: &Bound<K, V>,
        key: &Q,
        make_key: impl FnOnce() -> K,
        claim_for: Option<u64>,
        on_expired: impl Fn(),
    ) -> FlightOrValue<'_, K, V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let map = &cells.map;
        let hash = map.hasher().hash_one(key);
        let mut make_key = Some(make_key);
        let mut owned = None;
        if !std::mem::needs_drop::<K>() {
            owned = make_key.take().map(|make| make());
        }
        loop {
            let (slot, in_window) = {
                let mut shard = bound.lock(hash, map.collector());
                match shard.window.find(hash, key) {
                    Some(slot) => (slot.clone(), true),
                    None => match map.load(key) {
                        Some(slot) => (slot, false),
                        None => {
                            let Some(owned) = owned.take() else {
                                drop(shard);
                                owned = make_key.take().map(|make| make());
                                debug_assert!(owned.is_some(), "a key is built once");
                                continue;
                            };
                            let (slot, claimed) = match claim_for {
                                Some(thread) => (cells.new_claimed_slot(thread), true),
                                None => (cells.new_slot(), false),
                            };
                            shard.window.insert(hash, owned, slot.clone());
                            return match claimed {
                                true => FlightOrValue::Claimed(slot),
                                false => FlightOrValue::Cell(slot),
                            };
                        }
                    },
                }
            };
            let Some(stored) = slot.get() else {
                return FlightOrValue::Cell(slot);
            };
            if !cells.expired(stored.at) {
                let value = stored.value.clone();
                if in_window {
                    // A hit of a recent key: counted for the policy, as a map hit is.
                    slot.flight().touch();
                    return FlightOrValue::Hit(value);
                }
                return FlightOrValue::Stored(value);
            }
            on_expired();
            slot.mark_gone();
            if in_window {
                self.remove_from_window(hash, &slot);
            } else {
                map.compare_and_delete(key, &slot);
            }
        }
    }

    /// The key's value if its window holds one (not expired), for [`get`](Self::get), which
    /// records no hit: the second place to look, for the keys computed last.
    #[cold]
    pub(super) fn get_in_window<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let (Some(bound), Store::Cells(cells)) = (&self.bound, &self.store) else {
            return None;
        };
        let hash = cells.map.hasher().hash_one(key);
        let slot = bound
            .lock(hash, cells.map.collector())
            .window
            .find(hash, key)
            .cloned()?;
        slot.hit(false, |at| cells.expired(at))
    }

    /// Takes `slot` out of the window of the key of `hash`, if it is there; returns whether it
    /// was.
    pub(super) fn remove_from_window(&self, hash: u64, slot: &SlotRef<V>) -> bool {
        let (Some(bound), Some(map)) = (&self.bound, self.cells()) else {
            return false;
        };
        let left = bound
            .lock(hash, map.collector())
            .window
            .remove_same(hash, slot);
        left.is_some()
    }

    /// Takes the key's cell out of its window; returns whether it held a value.
    pub(super) fn invalidate_in_window<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let (Some(bound), Some(map)) = (&self.bound, self.cells()) else {
            return false;
        };
        let hash = map.hasher().hash_one(key);
        let left = bound
            .lock(hash, map.collector())
            .window
            .remove_key(hash, key);
        // No gone mark: only the policy reads it, and a window's cells are not in its queues.
        left.is_some_and(|(_, slot)| slot.get().is_some())
    }

    /// The windows' cells with a value that `live` accepts (not expired), with copies of their
    /// keys, read under each window's lock and returned for use after it.
    fn window_entries(&self, live: impl Fn(&Found<'_, V>) -> bool) -> Vec<(u64, K, SlotRef<V>)> {
        let (Some(bound), Some(map), Some(clone_key)) =
            (&self.bound, self.cells(), self.clone_key.get())
        else {
            // No key was ever inserted without a way to copy it: no window holds one.
            return Vec::new();
        };
        let mut entries = Vec::new();
        bound.each_locked(map.collector(), |shard| {
            entries.extend(shard.window.entries(*clone_key));
        });
        entries.retain(|(_, _, slot)| slot.get().is_some_and(|stored| live(&stored)));
        entries
    }

    /// The number of values of a bounded cache, in its map (`in_map()`) and its windows, that
    /// `live` accepts: counted with every shard locked, so that an entry moving from a window
    /// to the map, or a victim and the entry replacing it, is counted once (no user code).
    pub(super) fn len_with_windows(
        &self,
        bound: &Bound<K, V>,
        in_map: impl FnOnce() -> usize,
        live: impl Fn(&Found<'_, V>) -> bool,
    ) -> usize {
        let Some(map) = self.cells() else {
            return 0;
        };
        let shards = bound.lock_all(map.collector());
        let with_value = |slot: &&SlotRef<V>| slot.get().is_some_and(|stored| live(&stored));
        let windows: usize = (shards.iter())
            .map(|shard| shard.window.slots().filter(with_value).count())
            .sum();
        let count = in_map() + windows;
        drop(shards);
        count
    }

    /// Calls `f` with each key and value of the windows that `live` accepts, outside their
    /// locks; stops when `f` returns `false`. Returns whether it went through.
    pub(super) fn window_range(
        &self,
        live: impl Fn(&Found<'_, V>) -> bool,
        mut f: impl FnMut(&K, &V) -> bool,
    ) -> bool {
        for (_, key, slot) in self.window_entries(live) {
            if let Some(stored) = slot.get() {
                if !f(&key, stored.value) {
                    return false;
                }
            }
        }
        true
    }

    /// Takes out of the windows each cell holding a value for which `remove` returns `true`
    /// (called outside the locks), if it is still there; returns how many.
    pub(super) fn window_remove_where(
        &self,
        mut remove: impl FnMut(&K, &Found<'_, V>) -> bool,
    ) -> usize {
        let mut removed = 0;
        for (hash, key, slot) in self.window_entries(|_| true) {
            let Some(stored) = slot.get() else { continue };
            if remove(&key, &stored) && self.remove_from_window(hash, &slot) {
                removed += 1;
            }
        }
        removed
    }
}
