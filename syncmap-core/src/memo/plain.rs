//! The storage of a cache with no bound, no TTL and no shared tier (a plain `#[memoize]`): its
//! values in the map itself, and its computations in flight beside it.
//!
//! A cache with a bound or a TTL maps each key to a cell ([`SlotRef`]): the value, its single
//! flight, the hits the eviction policy reads and the stamp a TTL needs, in an allocation of
//! its own. A plain cache needs none of that once a value is computed, so its map holds the
//! values themselves: an entry costs what a `SyncMap` entry costs, and a hit reads the bucket
//! and the entry, not a third line (`docs/performance-notes.md`). Single flight then lives in a
//! small table of the keys being computed, split into [`STRIPES`] mutexes by hash: a miss
//! finds there the cell of a computation in flight to wait for, or puts one for its own.
//!
//! # Invariants
//!
//! - A key is never in both the table and the map at a moment a caller can see under the
//!   stripe's lock: a computation's value enters the map and its cell leaves the table in one
//!   locked step ([`PlainStore::publish`]), and a new cell is put in the table only if no value
//!   entered the map from that stripe since the caller last looked the key up there
//!   ([`PlainStore::flight_for`], `Stripe::published`). So a caller never starts a second
//!   computation of a value that is already stored, and an invalidation (which empties both
//!   under the lock) cannot be undone by a computation that started before it.
//! - The table holds the cells of computations in flight only: every cell put there leaves it
//!   when its computation ends (stored, not kept, panicked or cancelled), is invalidated, or
//!   the cache is cleared.
//!
//! User code under a stripe's lock: only the key's `Eq`, in lookups of the table, and its
//! `Hash` and `Eq` in the map's operations of a publication or an invalidation (as in the
//! map's own locked lookups). Keys and cells leave the table under the
//! lock but are dropped after it; a value is cloned before the lock is taken. The map's
//! reclamation passes (which drop replaced values) are held back while a stripe is locked.

use std::hash::{BuildHasher, Hash};
use std::panic::{RefUnwindSafe, UnwindSafe};

use smallvec::SmallVec;

use super::slot::SlotRef;
use super::{FlightOrValue, MemoHasher};
use crate::raw::sync::{self, AtomicU64, Locked, Mutex, Ordering};
use crate::{Equivalent, SyncMap};

/// The number of mutexes the table of computations in flight is split into: misses of keys in
/// different stripes do not wait for each other (each holds its stripe for a lookup or two).
const STRIPES: usize = 32;

/// A computation in flight: its key (with its hash, so that the table never calls the key's
/// `Hash`) and the cell its callers share.
struct Flying<K, V> {
    hash: u64,
    key: K,
    slot: SlotRef<V>,
}

/// The computations in flight of one stripe: rarely more than one at a time, so a short list
/// kept inline, next to its lock (a miss at two threads then moves one cache line of the
/// stripe's between the cores, not the lock's and a table's).
type Flights<K, V> = SmallVec<[Flying<K, V>; 2]>;

/// Takes out of `flights` the first one that `matches`, if any (the order does not matter).
fn take<K, V>(
    flights: &mut Flights<K, V>,
    matches: impl Fn(&Flying<K, V>) -> bool,
) -> Option<Flying<K, V>> {
    let index = flights.iter().position(matches)?;
    Some(flights.swap_remove(index))
}

/// One stripe of the table, on cache lines of its own.
#[repr(align(64))]
struct Stripe<K, V> {
    flights: Mutex<Flights<K, V>>,
    /// How many values entered the map from this stripe (bumped under the lock, after the
    /// value is stored): a caller that read it before looking the key up in the map, and finds
    /// it unchanged under the lock, knows that its lookup is still true, without looking the
    /// key up again under the lock (which could wait there for the map's own lock).
    published: AtomicU64,
}

/// The values of a plain cache, and its computations in flight (see the module's invariants).
pub(super) struct PlainStore<K, V> {
    pub(super) map: SyncMap<K, V, MemoHasher>,
    stripes: Box<[Stripe<K, V>]>,
}

/// A panic under a stripe's lock can only come from the key's `Hash` or `Eq` in a lookup,
/// before the list changes (a push or a removal runs no user code, and what leaves the list is
/// dropped after the lock), so no panic leaves a list half-changed, and the locks do not
/// poison.
impl<K: RefUnwindSafe, V: RefUnwindSafe> RefUnwindSafe for PlainStore<K, V> {}

/// See the `RefUnwindSafe` implementation.
impl<K: UnwindSafe, V: UnwindSafe> UnwindSafe for PlainStore<K, V> {}

impl<K, V> PlainStore<K, V>
where
    K: Hash + Eq,
    V: Clone,
{
    pub(super) fn new() -> Self {
        PlainStore {
            map: SyncMap::default(),
            stripes: (0..STRIPES)
                .map(|_| Stripe {
                    flights: Mutex::new(SmallVec::new()),
                    published: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// The map's hash of `key`.
    fn hash<Q: ?Sized + Hash>(&self, key: &Q) -> u64 {
        self.map.hasher().hash_one(key)
    }

    /// Locks `stripe`, holding back the map's reclamation passes until it is
    /// unlocked.
    fn lock<'a>(&'a self, stripe: &'a Stripe<K, V>) -> Locked<'a, Flights<K, V>> {
        let guard = sync::enter(self.map.collector());
        sync::lock(&stripe.flights, self.map.collector(), &guard)
    }

    /// The stripe of `hash`, from its top bits (the map's tables and shards index by lower
    /// ones).
    fn stripe(&self, hash: u64) -> &Stripe<K, V> {
        &self.stripes[(hash >> 59) as usize % STRIPES]
    }

    /// The cell of `key`'s computation in flight, else its stored value, else a new cell for a
    /// computation of `key` (whose owned form `make_key` makes, before the lock is taken).
    pub(super) fn flight_for<Q>(&self, key: &Q, make_key: impl FnOnce() -> K) -> FlightOrValue<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let hash = self.hash(key);
        let stripe = self.stripe(hash);
        let mut owned = Some(make_key());
        loop {
            // Acquire: pairs with the bump of a value's publication, which follows its store.
            let published = stripe.published.load(Ordering::Acquire);
            if let Some(value) = self.map.load(key) {
                return FlightOrValue::Stored(value);
            }
            let mut table = self.lock(stripe);
            if let Some(flying) = table
                .iter()
                .find(|flying| flying.hash == hash && key.equivalent(&flying.key))
            {
                return FlightOrValue::Cell(flying.slot.clone());
            }
            // Relaxed: the lock orders it after every bump made under it before.
            if stripe.published.load(Ordering::Relaxed) != published {
                // A value entered the map from this stripe since the lookup: look again.
                continue;
            }
            if let Some(key) = owned.take() {
                // A plain cache has no TTL: its cells carry no stamp.
                let slot = SlotRef::new(false);
                table.push(Flying {
                    hash,
                    key,
                    slot: slot.clone(),
                });
                return FlightOrValue::Cell(slot);
            }
        }
    }

    /// Stores the value of `slot`'s computation, which just ended, and takes its cell out of
    /// the table, unless the key was invalidated or the cache cleared since it started (then
    /// the cell is no longer there, and nothing is stored).
    pub(super) fn publish<Q>(&self, key: &Q, slot: &SlotRef<V>)
    where
        Q: ?Sized + Hash,
    {
        let Some(stored) = slot.get() else {
            return;
        };
        let mut value = Some(stored.value.clone());
        let stripe = self.stripe(self.hash(key));
        let cell = {
            let mut table = self.lock(stripe);
            let flying = take(&mut table, |flying| flying.slot == *slot);
            flying.map(|Flying { key, slot, .. }| {
                if let Some(value) = value.take() {
                    // The map holds no value for the key (the module's invariants): `store`
                    // replaces nothing, so drops nothing under the lock.
                    self.map.store(key, value);
                    // Release: after the store (see `Stripe::published`).
                    stripe.published.fetch_add(1, Ordering::Release);
                }
                slot
            })
        };
        drop((cell, value));
    }

    /// Takes `slot`'s cell out of the table (its computation ended without a value to keep).
    pub(super) fn remove<Q>(&self, key: &Q, slot: &SlotRef<V>)
    where
        Q: ?Sized + Hash,
    {
        let flying = {
            let mut table = self.lock(self.stripe(self.hash(key)));
            take(&mut table, |flying| flying.slot == *slot)
        };
        drop(flying);
    }

    /// Removes `key`'s value and forgets its computation in flight, if any (which then ends
    /// without storing); returns whether there was a value.
    pub(super) fn invalidate<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let hash = self.hash(key);
        let (flying, had) = {
            let mut table = self.lock(self.stripe(hash));
            let flying = take(&mut table, |flying| {
                flying.hash == hash && key.equivalent(&flying.key)
            });
            (flying, self.map.delete_reporting(key))
        };
        drop(flying);
        had
    }

    /// Removes each value for which `matches` returns `true`, if it is still the one
    /// `matches` saw (a newer one, stored after an invalidation, was not offered to it);
    /// returns how many.
    pub(super) fn invalidate_if(&self, mut matches: impl FnMut(&K, &V) -> bool) -> usize {
        let mut removed = 0;
        self.map.range(|key, value| {
            if matches(key, value) && self.map.compare_and_delete_same(key, value) {
                removed += 1;
            }
            true
        });
        removed
    }

    /// Removes every value and forgets every computation in flight: each stripe is emptied
    /// before the map, so that a computation ending meanwhile either finds its cell gone or
    /// stores before the map is cleared.
    pub(super) fn clear(&self) {
        for stripe in self.stripes.iter() {
            let forgotten = std::mem::take(&mut *self.lock(stripe));
            drop(forgotten);
        }
        self.map.clear();
    }

    /// Stores `value` for `key` unless a value is stored or being computed; returns whether
    /// it did.
    #[cfg(feature = "serde")]
    pub(super) fn insert_if_absent(&self, key: K, value: V) -> bool {
        let hash = self.hash(&key);
        let stripe = self.stripe(hash);
        let mut entry = Some((key, value));
        {
            let table = self.lock(stripe);
            if let Some((key, _)) = &entry {
                let absent = !table
                    .iter()
                    .any(|flying| flying.hash == hash && flying.key == *key)
                    && !self.map.contains_key(key);
                if absent {
                    if let Some((key, value)) = entry.take() {
                        // Absent under the lock, so `store` inserts (the module's invariants).
                        self.map.store(key, value);
                        stripe.published.fetch_add(1, Ordering::Release);
                    }
                }
            }
        }
        // Not stored: the key and the value are dropped here, outside the lock.
        entry.is_none()
    }
}

#[cfg(all(test, not(syncmap_loom)))]
mod tests {
    use super::super::{Memo, MemoConfig};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Barrier;

    fn plain() -> Memo<u64, String> {
        Memo::new("plain::tests", MemoConfig::default())
    }

    #[test]
    fn a_plain_cache_stores_values_in_its_map_and_nothing_else_stays_in_flight() {
        let memo = plain();
        assert!(matches!(memo.store, super::super::Store::Plain(_)));
        assert_eq!(memo.get_or_compute(&1, || "one".to_string()), "one");
        assert_eq!(memo.get(&1).as_deref(), Some("one"));
        assert_eq!(memo.len(), 1);
        let super::super::Store::Plain(store) = &memo.store else {
            unreachable!("checked above")
        };
        assert_eq!(store.map.len(), 1);
        let in_flight: usize = store.stripes.iter().map(|s| s.flights.lock().len()).sum();
        assert_eq!(in_flight, 0, "a finished computation leaves the table");
    }

    /// Threads calling one missing key run its body once and all get its value; the cell
    /// leaves the table and the value is in the map afterwards.
    #[test]
    fn concurrent_callers_of_a_plain_cache_share_one_computation() {
        let memo = plain();
        let runs = AtomicUsize::new(0);
        let threads = if cfg!(miri) { 3 } else { 8 };
        let start = Barrier::new(threads);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    start.wait();
                    let value = memo.get_or_compute(&7, || {
                        runs.fetch_add(1, SeqCst);
                        std::thread::yield_now();
                        "seven".to_string()
                    });
                    assert_eq!(value, "seven");
                });
            }
        });
        assert_eq!(runs.load(SeqCst), 1, "the body ran more than once");
        assert_eq!(memo.get(&7).as_deref(), Some("seven"));
        let stats = memo.stats();
        assert_eq!((stats.misses, stats.entries), (1, 1));
    }

    /// An invalidation while the value is computed wins: the computing caller gets its value,
    /// but it is not stored, and the next call computes again. Likewise for `clear`.
    #[test]
    fn a_value_computed_across_an_invalidation_or_a_clear_is_not_stored() {
        for clear in [false, true] {
            let memo = plain();
            let value = memo.get_or_compute(&3, || {
                if clear {
                    memo.clear();
                } else {
                    assert!(!memo.invalidate(&3), "no value yet");
                }
                "stale".to_string()
            });
            assert_eq!(value, "stale");
            assert_eq!(memo.get(&3), None, "the value survived the invalidation");
            assert_eq!(memo.get_or_compute(&3, || "fresh".to_string()), "fresh");
            assert!(memo.invalidate(&3));
            assert_eq!(memo.len(), 0);
        }
    }

    /// A body that panics leaves nothing in flight: the next caller computes.
    #[test]
    fn a_panicking_body_leaves_no_cell_behind() {
        let memo = plain();
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            memo.get_or_compute(&5, || panic!("body"))
        }));
        assert!(unwound.is_err());
        assert_eq!(memo.get_or_compute(&5, || "five".to_string()), "five");
        let super::super::Store::Plain(store) = &memo.store else {
            unreachable!("a plain cache")
        };
        let in_flight: usize = store.stripes.iter().map(|s| s.flights.lock().len()).sum();
        assert_eq!(in_flight, 0);
    }

    /// `invalidate_if` removes the values it was shown, not a newer one stored meanwhile.
    #[test]
    fn invalidate_if_removes_only_the_values_it_was_shown() {
        let memo = plain();
        for k in 0..10 {
            memo.get_or_compute(&k, || k.to_string());
        }
        let removed = memo.invalidate_if(|k, _| {
            if *k == 4 {
                // Replace key 4's value while `f` looks at it: the new one must stay.
                assert!(memo.invalidate(&4));
                memo.get_or_compute(&4, || "new".to_string());
            }
            k % 2 == 0
        });
        assert_eq!(removed, 4, "0, 2, 6, 8: key 4's value changed under `f`");
        assert_eq!(memo.get(&4).as_deref(), Some("new"));
        assert_eq!(memo.len(), 6);
    }
}
