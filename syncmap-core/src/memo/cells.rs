//! The storage of a cache with a bound, a TTL or a shared tier: a single-flight cell per key.
//!
//! Such a cache needs more per key than the value: the hits its eviction policy reads, a mark
//! that the entry left the map (so the policy forgets it), the stamp its TTL compares. So its
//! map holds, for each key, a [`SlotRef`]: a counted handle to a cell with the value, the
//! computation's flight word (which carries the hits and the mark) and the stamp. A miss puts
//! an empty cell in the map, where concurrent callers of the key find it and wait for the one
//! computation in it; the value stays in the cell, and a hit reads it there.
//!
//! A bounded cache puts a new key's cell in its policy's window instead, beside the map
//! (`window.rs`): the cell enters the map only once the policy admits it. A cache with none of
//! these needs keeps its values in the map itself (`plain.rs`); both stores answer a miss with
//! a [`FlightOrValue`].
//!
//! # Invariants
//!
//! - A cell leaves the map (deleted or replaced) only through a compare-and-delete or a
//!   compare-and-swap on that very cell, and whoever removes a cell holding a value marks it
//!   gone ([`SlotRef::mark_gone`]), so that the eviction policy, which holds its own handles,
//!   forgets it instead of counting it against the bound.
//! - An expired cell is never returned as a value: it is replaced by a fresh one (the
//!   computation starts over there) or, if someone else replaced or removed it, looked up
//!   again.
//!
//! User code here: the key's `Hash` and `Eq` in the map's operations, and the value's `Clone`
//! in [`CellStore::get`] and [`CellStore::flight_for`], outside any lock (the map runs none
//! under its own).

use std::hash::Hash;
use std::time::Duration;

use super::slot::{Found, SlotRef, Stamp};
use super::{FlightOrValue, MemoHasher};
use crate::{Equivalent, SyncMap};

/// The map of a cache that keeps a cell per key.
pub(super) type CellMap<K, V> = SyncMap<K, SlotRef<V>, MemoHasher>;

/// The cells of a cache, and the TTL that decides which of their values are stale.
pub(super) struct CellStore<K, V> {
    pub(super) map: CellMap<K, V>,
    ttl: Option<Duration>,
}

impl<K, V> CellStore<K, V>
where
    K: Hash + Eq,
    V: Clone,
{
    pub(super) fn new(ttl: Option<Duration>) -> Self {
        CellStore {
            map: SyncMap::default(),
            ttl,
        }
    }

    /// An empty cell (with a stamp if the cache has a TTL).
    pub(super) fn new_slot(&self) -> SlotRef<V> {
        SlotRef::new(self.ttl.is_some())
    }

    /// An empty cell (with a stamp if the cache has a TTL) whose computation the thread
    /// `thread` owns from the start.
    pub(super) fn new_claimed_slot(&self, thread: u64) -> SlotRef<V> {
        SlotRef::claimed_by_thread(thread, self.ttl.is_some())
    }

    /// Whether the cache has a TTL.
    pub(super) fn has_ttl(&self) -> bool {
        self.ttl.is_some()
    }

    /// Whether a value stored `at` is past the TTL.
    pub(super) fn expired(&self, at: Stamp) -> bool {
        self.ttl.is_some_and(|ttl| at.older_than(ttl))
    }

    /// The key's value, unless absent, being computed or expired; `touch` counts a hit in
    /// the cell, for the eviction policy.
    pub(super) fn get<Q>(&self, key: &Q, touch: bool) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.map
            .load_with(key, |slot| slot.hit(touch, |at| self.expired(at)))
            .flatten()
    }

    /// The number of values stored and not expired: linear in the number of cells.
    pub(super) fn len(&self) -> usize {
        let mut hidden = 0;
        self.map.range(|_, slot| {
            hidden += usize::from(slot.get().is_none_or(|stored| self.expired(stored.at)));
            true
        });
        self.map.len().saturating_sub(hidden)
    }

    /// Calls `f` with each key and its value, skipping cells being computed or expired.
    pub(super) fn range(&self, mut f: impl FnMut(&K, &V) -> bool) {
        self.map.range(|key, slot| match slot.get() {
            Some(stored) if !self.expired(stored.at) => f(key, stored.value),
            _ => true,
        });
    }

    /// Removes the key's cell; returns whether it held a value. A computation in flight in it
    /// ends for its callers, but what it stores there is not seen by later ones.
    pub(super) fn invalidate<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.map.load_and_delete(key).is_some_and(|slot| {
            slot.mark_gone();
            slot.get().is_some()
        })
    }

    /// Removes each cell whose value `matches` (cells being computed are not offered); returns
    /// how many.
    pub(super) fn invalidate_if(&self, mut matches: impl FnMut(&K, &V) -> bool) -> usize {
        self.remove_where(|key, stored| matches(key, stored.value))
    }

    /// Removes the cells whose value is past the TTL; returns how many.
    pub(super) fn purge_expired(&self) -> usize {
        if self.ttl.is_none() {
            return 0;
        }
        self.remove_where(|_, stored| self.expired(stored.at))
    }

    /// Removes each cell holding a value for which `remove` returns `true`, if it is still that
    /// cell (a newer one, put after an invalidation, was not offered to `remove`); returns how
    /// many.
    fn remove_where(&self, mut remove: impl FnMut(&K, &Found<'_, V>) -> bool) -> usize {
        let mut removed = 0;
        self.map.range(|key, slot| {
            if let Some(stored) = slot.get() {
                if remove(key, &stored) && self.map.compare_and_delete(key, slot) {
                    slot.mark_gone();
                    removed += 1;
                }
            }
            true
        });
        removed
    }

    /// Takes `slot` out of the map if it is still the key's cell (its computation ended
    /// without a value to keep).
    pub(super) fn remove<Q>(&self, key: &Q, slot: &SlotRef<V>)
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.map.compare_and_delete(key, slot);
    }

    /// The key's value if a cell holds one that is not expired; otherwise the cell to compute
    /// it in (or to wait in, if a computation is in flight there): the cell found, or a new one
    /// put in the map under `owned`. An expired value's cell is replaced by a new one (and
    /// `on_expired` is called once for each expired value found). With `claim_for`, a thread's
    /// id, the new cell put for a missing key is claimed by that thread from the start
    /// ([`FlightOrValue::Claimed`]): its computation starts without a claim's exchange.
    pub(super) fn flight_for<Q>(
        &self,
        key: &Q,
        owned: K,
        claim_for: Option<u64>,
        on_expired: impl Fn(),
    ) -> FlightOrValue<'_, K, V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        // The caller's hit check just missed, yet `load_or_store_with` looks the key up once
        // more before inserting: `load_or_store` would skip that lookup, but measured slower
        // (miss u64 and zipf bounded, 2026-12-04): each locked lookup of a fresh key counts
        // towards the map's next promotion, and promoting less often sends more lookups of
        // fresh keys to the lock.
        let new_slot = || match claim_for {
            Some(thread) => self.new_claimed_slot(thread),
            None => self.new_slot(),
        };
        let (mut slot, found) = self.map.load_or_store_with(owned, new_slot);
        if !found && claim_for.is_some() {
            return FlightOrValue::Claimed(slot);
        }
        loop {
            let Some(stored) = slot.get() else {
                return FlightOrValue::Cell(slot);
            };
            if !self.expired(stored.at) {
                return FlightOrValue::Stored(stored.value.clone());
            }
            on_expired();
            let fresh = self.new_slot();
            if self.map.compare_and_swap(key, &slot, fresh.clone()) {
                slot.mark_gone();
                return FlightOrValue::Cell(fresh);
            }
            // Another caller replaced the cell, or removed it, meanwhile.
            match self.map.load(key) {
                Some(current) => slot = current,
                None => return FlightOrValue::Invalidated,
            }
        }
    }
}
