//! The storage of a cache with no bound, no TTL and no shared tier (a plain `#[memoize]`): its
//! values in the map itself, and its computations in flight beside it.
//!
//! A cache with a bound or a TTL maps each key to a cell ([`SlotRef`]): the value, its single
//! flight, the hits the eviction policy reads and the stamp a TTL needs, in an allocation of
//! its own. A plain cache needs none of that once a value is computed, so its map holds the
//! values themselves: an entry costs what a `SyncMap` entry costs, and a hit reads the bucket
//! and the entry, not a third line (`docs/performance-notes.md`). Single flight then lives in a
//! small table of the keys being computed, split into [`STRIPES`] mutexes by hash: a miss
//! finds there a computation in flight to wait for, or registers its own.
//!
//! A synchronous caller that registers a computation owns it *without a cell*
//! ([`OwnedFlight`]): most computations have nobody waiting for them, and a cell (an
//! allocation, its claim, its release with a fence) would cost them a quarter of a miss at two
//! threads. The first caller that finds such a computation and must wait for it makes its
//! cell, claimed in the name of the owner's thread, and waits there; the owner settles or
//! releases it when it ends. An async computation registers with a cell at once (its waiting
//! and cancellation are the cell's protocol, `flight.rs`).
//!
//! # Invariants
//!
//! - A key is never in both the table and the map at a moment a caller can see under the
//!   stripe's lock: a computation's value enters the map and its entry leaves the table in one
//!   locked step ([`PlainStore::publish`], [`OwnedFlight::end`]), and a computation is
//!   registered only if no value entered the map from that stripe since the caller last looked
//!   the key up there ([`PlainStore::flight_for`], `Stripe::published`). So a caller never
//!   starts a second computation of a value that is already stored, and an invalidation
//!   cannot be undone by a computation that started before it.
//! - The table holds computations in flight only: every entry leaves it when its computation
//!   ends (stored, not kept, panicked or cancelled), or, for a computation with a cell, when
//!   it is invalidated or the cache cleared. An owned computation invalidated or cleared stays
//!   until its owner ends it, marked `forgotten`: no caller joins it any more, its value is
//!   not stored, and the owner still finds there the cell its waiters may have made.
//! - At most one computation per key is not `forgotten`; an owned one has a `ticket` unique in
//!   its stripe, by which its owner finds it.
//! - A cell made for an owned computation is claimed by the owner's thread from its creation:
//!   only the owner stores its value ([`SlotRef::settle`]) or releases it.
//!
//! User code under a stripe's lock: only the key's `Eq`, in lookups of the table, and its
//! `Hash` and `Eq` in the map's operations of a publication or an invalidation (as in the
//! map's own locked lookups). Keys and cells leave the table under the
//! lock but are dropped after it; a value is cloned before the lock is taken. The map's
//! reclamation passes (which drop replaced values) are held back while a stripe is locked.

use std::hash::{BuildHasher, Hash};
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::time::Duration;

use smallvec::SmallVec;

use super::slot::{current_thread_id, SlotRef};
use super::{FlightOrValue, MemoHasher};
use crate::raw::sync::{self, AtomicU64, Locked, Mutex, Ordering};
use crate::{Equivalent, SyncMap};

/// The number of mutexes the table of computations in flight is split into: misses of keys in
/// different stripes do not wait for each other (each holds its stripe for a lookup or two).
const STRIPES: usize = 32;

/// A computation in flight: its key (with its hash, so that the table never calls the key's
/// `Hash`), its owner if a synchronous caller computes it without a cell, and the cell its
/// callers share, once there is one.
struct Flying<K, V> {
    hash: u64,
    key: K,
    /// The owning caller's thread and the ticket it holds ([`OwnedFlight`]); `None` for a
    /// computation in a cell from the start (an async one).
    owner: Option<Owner>,
    /// Where callers wait: `None` until an owned computation's first waiter makes it.
    slot: Option<SlotRef<V>>,
    /// Invalidated or cleared while owned (see the module's invariants).
    forgotten: bool,
}

/// Who computes an owned flight.
#[derive(Clone, Copy)]
struct Owner {
    thread: u64,
    ticket: u64,
}

impl<K, V> Flying<K, V> {
    /// Whether a caller of `key` (hashed to `hash`) joins this computation.
    fn is_for<Q>(&self, hash: u64, key: &Q) -> bool
    where
        Q: ?Sized + Equivalent<K>,
    {
        !self.forgotten && self.hash == hash && key.equivalent(&self.key)
    }

    /// Whether this is the computation of `ticket`.
    fn has_ticket(&self, ticket: u64) -> bool {
        self.owner.is_some_and(|owner| owner.ticket == ticket)
    }

    /// Whether this is the computation in the cell `slot` (from the start).
    fn is_in(&self, slot: &SlotRef<V>) -> bool {
        self.owner.is_none() && self.slot.as_ref() == Some(slot)
    }
}

/// The computations in flight of one stripe: rarely more than one at a time, so a short list
/// kept inline, next to its lock (a miss at two threads then moves one cache line of the
/// stripe's between the cores, not the lock's and a table's).
struct Table<K, V> {
    flights: SmallVec<[Flying<K, V>; 2]>,
    /// The ticket of the next owned computation registered here.
    next_ticket: u64,
}

impl<K, V> Table<K, V> {
    /// Takes out the first computation that `matches`, if any (the order does not matter).
    fn take(&mut self, matches: impl Fn(&Flying<K, V>) -> bool) -> Option<Flying<K, V>> {
        let index = self.flights.iter().position(matches)?;
        Some(self.flights.swap_remove(index))
    }

    /// Forgets the computation at `index`: takes it out if it is in a cell from the start
    /// (its callers hold the cell), marks it `forgotten` if it is owned.
    fn forget_at(&mut self, index: usize) -> Option<Flying<K, V>> {
        let flying = &mut self.flights[index];
        if flying.owner.is_some() {
            flying.forgotten = true;
            None
        } else {
            Some(self.flights.swap_remove(index))
        }
    }

    /// Forgets every computation (see [`forget_at`](Self::forget_at)).
    fn forget_all(&mut self) -> SmallVec<[Flying<K, V>; 2]> {
        let mut taken = SmallVec::new();
        let mut index = self.flights.len();
        while index > 0 {
            index -= 1;
            taken.extend(self.forget_at(index));
        }
        taken
    }
}

/// One stripe of the table, on cache lines of its own.
#[repr(align(64))]
struct Stripe<K, V> {
    table: Mutex<Table<K, V>>,
    /// How many values entered the map from this stripe (bumped under the lock, after the
    /// value is stored): a caller that read it before looking the key up in the map, and finds
    /// it unchanged under the lock, knows that its lookup is still true, without looking the
    /// key up again under the lock (which could wait there for the map's own lock).
    published: AtomicU64,
}

impl<K, V> Stripe<K, V> {
    /// Counts a value that just entered the map from this stripe. The caller holds the
    /// stripe's lock, so no other bump runs at once: a load and a store, not a locked
    /// read-modify-write.
    fn bump_published(&self) {
        let published = self.published.load(Ordering::Relaxed);
        // Release: after the store of the value (see `published`).
        self.published
            .store(published.wrapping_add(1), Ordering::Release);
    }
}

/// The values of a plain cache, and its computations in flight (see the module's invariants).
pub(super) struct PlainStore<K, V> {
    pub(super) map: SyncMap<K, V, MemoHasher>,
    stripes: Box<[Stripe<K, V>]>,
}

/// A panic under a stripe's lock can only come from the key's `Hash` or `Eq` in a lookup,
/// before the list changes (a push, a removal or a mark runs no user code, and what leaves the
/// list is dropped after the lock), so no panic leaves a list half-changed, and the locks do
/// not poison.
impl<K: RefUnwindSafe, V: RefUnwindSafe> RefUnwindSafe for PlainStore<K, V> {}

/// See the `RefUnwindSafe` implementation.
impl<K: UnwindSafe, V: UnwindSafe> UnwindSafe for PlainStore<K, V> {}

/// A computation this caller registered and owns without a cell: it computes the value, then
/// calls [`end`](Self::end). Dropped without `end` (the body panicked), it ends the computation
/// without a value: waiters compute in turn, nothing is stored.
pub(super) struct OwnedFlight<'a, K, V>
where
    K: Hash + Eq,
    V: Clone,
{
    store: &'a PlainStore<K, V>,
    hash: u64,
    ticket: u64,
}

impl<K, V> OwnedFlight<'_, K, V>
where
    K: Hash + Eq,
    V: Clone,
{
    /// Ends the computation with its value: stored in the map if `kept` (and the key was not
    /// invalidated meanwhile), handed to the callers waiting if any (if not `kept`, they
    /// compute in turn, as after a panic).
    pub(super) fn end(self, value: &V, kept: bool) {
        let this = std::mem::ManuallyDrop::new(self);
        this.store
            .end_owned(this.hash, this.ticket, kept.then_some(value));
    }
}

impl<K, V> Drop for OwnedFlight<'_, K, V>
where
    K: Hash + Eq,
    V: Clone,
{
    fn drop(&mut self) {
        self.store.end_owned(self.hash, self.ticket, None);
    }
}

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
                    table: Mutex::new(Table {
                        flights: SmallVec::new(),
                        next_ticket: 0,
                    }),
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
    fn lock<'a>(&'a self, stripe: &'a Stripe<K, V>) -> Locked<'a, Table<K, V>> {
        let guard = sync::enter(self.map.collector());
        sync::lock(&stripe.table, self.map.collector(), &guard)
    }

    /// The stripe of `hash`, from its top bits (the map's tables and shards index by lower
    /// ones).
    fn stripe(&self, hash: u64) -> &Stripe<K, V> {
        &self.stripes[(hash >> 59) as usize % STRIPES]
    }

    /// `key`'s stored value; else the cell of its computation in flight (made now if its owner
    /// computes without one); else a new computation of `key` (whose owned form `make_key`
    /// makes, before the lock is taken): owned by this caller without a cell, or in a new cell
    /// if `in_cell` (an async caller).
    pub(super) fn flight_for<Q>(
        &self,
        key: &Q,
        make_key: impl FnOnce() -> K,
        in_cell: bool,
    ) -> FlightOrValue<'_, K, V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let hash = self.hash(key);
        // The value enters the map after the computation: ask now for the dirty table's lines
        // its insertion will probe (in a large map a cache miss, which the lock, the
        // registration and the body then hide).
        self.map.prefetch_insert(hash);
        let stripe = self.stripe(hash);
        let mut owned = Some(make_key());
        loop {
            // Acquire: pairs with the bump of a value's publication, which follows its store.
            let published = stripe.published.load(Ordering::Acquire);
            if let Some(value) = self.map.load_hashed(hash, key) {
                return FlightOrValue::Stored(value);
            }
            let mut table = self.lock(stripe);
            if let Some(flying) = table
                .flights
                .iter_mut()
                .find(|flying| flying.is_for(hash, key))
            {
                let owner = flying.owner;
                let slot = flying.slot.get_or_insert_with(|| {
                    // Made claimed by the owner's thread: callers wait for it as for any
                    // synchronous computation (and the owner's own recursive call is told).
                    let thread = owner.map_or(0, |owner| owner.thread);
                    SlotRef::claimed_by_thread(thread, false)
                });
                return FlightOrValue::Cell(slot.clone());
            }
            // Relaxed: the lock orders it after every bump made under it before.
            if stripe.published.load(Ordering::Relaxed) != published {
                // A value entered the map from this stripe since the lookup: look again.
                continue;
            }
            if let Some(key) = owned.take() {
                if in_cell {
                    // A plain cache has no TTL: its cells carry no stamp.
                    let slot = SlotRef::new(false);
                    table.flights.push(Flying {
                        hash,
                        key,
                        owner: None,
                        slot: Some(slot.clone()),
                        forgotten: false,
                    });
                    return FlightOrValue::Cell(slot);
                }
                let ticket = table.next_ticket;
                table.next_ticket = ticket.wrapping_add(1);
                table.flights.push(Flying {
                    hash,
                    key,
                    owner: Some(Owner {
                        thread: current_thread_id(),
                        ticket,
                    }),
                    slot: None,
                    forgotten: false,
                });
                return FlightOrValue::Owned(OwnedFlight {
                    store: self,
                    hash,
                    ticket,
                });
            }
        }
    }

    /// Takes the computation of `ticket` out of the table, storing `value` in the map if there
    /// is one to keep and the key was not invalidated meanwhile; then hands `value` to the
    /// callers waiting in its cell, if any, or releases them to compute in turn.
    fn end_owned(&self, hash: u64, ticket: u64, value: Option<&V>) {
        let mut stored = value.cloned();
        let stripe = self.stripe(hash);
        let flying = {
            let mut table = self.lock(stripe);
            let flying = table.take(|flying| flying.has_ticket(ticket));
            flying.map(
                |Flying {
                     key,
                     slot,
                     forgotten,
                     ..
                 }| {
                    if let (false, Some(stored)) = (forgotten, stored.take()) {
                        // The map holds no value for the key (the module's invariants): `store`
                        // replaces nothing, so drops nothing under the lock.
                        self.map.store(key, stored);
                        stripe.bump_published();
                        (None, slot)
                    } else {
                        (Some(key), slot)
                    }
                },
            )
        };
        let Some((key, slot)) = flying else {
            return;
        };
        drop(key);
        if let Some(slot) = slot {
            match value {
                // SAFETY: the cell was made claimed by this thread (`flight_for`), the owner,
                // which has not released it; only the owner stores, once.
                Some(value) => unsafe { slot.settle(value.clone(), Duration::ZERO) },
                None => slot.flight().release(),
            }
        }
        drop(stored);
    }

    /// Stores the value of `slot`'s computation (in a cell from the start), which just ended,
    /// and takes it out of the table, unless the key was invalidated or the cache cleared
    /// since it started (then it is no longer there, and nothing is stored).
    pub(super) fn publish<Q>(&self, key: &Q, slot: &SlotRef<V>)
    where
        Q: ?Sized + Hash,
    {
        let Some(stored) = slot.get() else {
            return;
        };
        let value = stored.value.clone();
        let stripe = self.stripe(self.hash(key));
        let cell = {
            let mut table = self.lock(stripe);
            let flying = table.take(|flying| flying.is_in(slot));
            flying.map(|Flying { key, slot, .. }| {
                // The map holds no value for the key (the module's invariants): `store`
                // replaces nothing, so drops nothing under the lock. (A computation in a cell
                // from the start is taken out, never marked, when it is forgotten.)
                self.map.store(key, value);
                stripe.bump_published();
                slot
            })
        };
        drop(cell);
    }

    /// Takes `slot`'s computation (in a cell from the start) out of the table: it ended
    /// without a value to keep.
    pub(super) fn remove<Q>(&self, key: &Q, slot: &SlotRef<V>)
    where
        Q: ?Sized + Hash,
    {
        let flying = self
            .lock(self.stripe(self.hash(key)))
            .take(|flying| flying.is_in(slot));
        drop(flying);
    }

    /// Removes `key`'s value and forgets its computation in flight, if any (which then ends
    /// without storing); returns whether there was a value.
    pub(super) fn invalidate<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let hash = self.hash(key);
        let (forgotten, had) = {
            let mut table = self.lock(self.stripe(hash));
            // The key's `Eq` runs before anything changes (at most one computation of the key
            // is not forgotten).
            let index = table
                .flights
                .iter()
                .position(|flying| flying.is_for(hash, key));
            let forgotten = index.and_then(|index| table.forget_at(index));
            (forgotten, self.map.delete_reporting(key))
        };
        drop(forgotten);
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

    /// Removes every value and forgets every computation in flight: each stripe's are
    /// forgotten before the map is cleared, so that a computation ending meanwhile either
    /// finds itself forgotten or stores before the map is cleared.
    pub(super) fn clear(&self) {
        for stripe in self.stripes.iter() {
            let forgotten = self.lock(stripe).forget_all();
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
                let absent = !table.flights.iter().any(|flying| flying.is_for(hash, key))
                    && !self.map.contains_key(key);
                if absent {
                    if let Some((key, value)) = entry.take() {
                        // Absent under the lock, so `store` inserts (the module's invariants).
                        self.map.store(key, value);
                        stripe.bump_published();
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
        let in_flight: usize = store
            .stripes
            .iter()
            .map(|s| s.table.lock().flights.len())
            .sum();
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
        let in_flight: usize = store
            .stripes
            .iter()
            .map(|s| s.table.lock().flights.len())
            .sum();
        assert_eq!(in_flight, 0);
    }

    /// The number of computations in the tables of a plain cache (forgotten ones included).
    fn in_flight(memo: &Memo<u64, String>) -> usize {
        let super::super::Store::Plain(store) = &memo.store else {
            unreachable!("a plain cache")
        };
        store
            .stripes
            .iter()
            .map(|s| s.table.lock().flights.len())
            .sum()
    }

    /// A caller that finds a computation owned without a cell makes the cell and waits there:
    /// it gets the owner's value, even when the key is invalidated (or the cache cleared)
    /// before the owner ends, which then stores nothing. The owner finds its forgotten
    /// computation, and the cell, in the table.
    #[test]
    fn a_waiter_gets_the_owners_value_even_across_an_invalidation() {
        for forget in [None, Some(false), Some(true)] {
            let memo = plain();
            std::thread::scope(|scope| {
                let mut waiter = None;
                let value = memo.get_or_compute(&1, || {
                    waiter = Some(
                        scope.spawn(|| memo.get_or_compute(&1, || "the waiter's".to_string())),
                    );
                    while memo.stats().waiting == 0 {
                        std::thread::yield_now();
                    }
                    match forget {
                        Some(true) => memo.clear(),
                        Some(false) => assert!(!memo.invalidate(&1)),
                        None => {}
                    }
                    "the owner's".to_string()
                });
                assert_eq!(value, "the owner's");
                let waited = waiter.expect("spawned").join().expect("no panic");
                assert_eq!(waited, "the owner's", "forget: {forget:?}");
            });
            let expected = forget.is_none().then_some("the owner's");
            assert_eq!(memo.get(&1).as_deref(), expected, "forget: {forget:?}");
            let stats = memo.stats();
            assert_eq!((stats.computations, stats.waits), (1, 1));
            assert_eq!(in_flight(&memo), 0, "forget: {forget:?}");
        }
    }

    /// An owned computation that ends without a value (not kept, or its body panics) releases
    /// the caller waiting in its cell, which computes in turn; nothing is left in flight.
    #[test]
    fn a_waiter_computes_in_turn_after_an_owned_computation_without_a_value() {
        for panics in [false, true] {
            let memo = plain();
            let turns = AtomicUsize::new(0);
            std::thread::scope(|scope| {
                let mut waiter = None;
                let owner = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    memo.__miss(
                        &2,
                        || 2,
                        || {
                            waiter = Some(scope.spawn(|| {
                                memo.get_or_compute(&2, || {
                                    turns.fetch_add(1, SeqCst);
                                    "in turn".to_string()
                                })
                            }));
                            while memo.stats().waiting == 0 {
                                std::thread::yield_now();
                            }
                            if panics {
                                panic!("the owner's body");
                            }
                            "not kept".to_string()
                        },
                        |value| value != "not kept",
                    )
                }));
                assert_eq!(owner.is_err(), panics);
                let waited = waiter.expect("spawned").join().expect("no panic");
                assert_eq!(waited, "in turn", "panics: {panics}");
            });
            assert_eq!(turns.load(SeqCst), 1);
            assert_eq!(in_flight(&memo), 0, "panics: {panics}");
            // The value computed in turn was not stored: it was computed in a cell the owner
            // had taken out of the table (as after a panic in a cell), so the next caller
            // computes.
            assert_eq!(memo.get_or_compute(&2, || "next".to_string()), "next");
        }
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
