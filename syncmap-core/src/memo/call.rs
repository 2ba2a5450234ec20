//! The synchronous front of [`Memo`]: what `#[memoize] fn` calls. The hit path looks the key
//! up in the store and counts a hit; the miss path finds the key's cell in the store (or
//! puts one there), computes or waits in it (single flight), and hands the value back to the
//! store (a plain cache's map, a bounded cache's eviction policy). The async front
//! (`async_memo.rs`) shares everything but the waiting.

use std::hash::Hash;
use std::time::Duration;

use super::plain::OwnedFlight;
use super::slot::{Outcome, SlotRef};
use super::stats::Counter;
use super::{FlightOrValue, Memo, Store};
use crate::Equivalent;

impl<K, V> Memo<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The whole cached call: [`__hit`](Self::__hit), else [`__miss`](Self::__miss).
    ///
    /// # Panics
    ///
    /// See [`__miss`](Self::__miss).
    #[doc(hidden)]
    #[inline]
    pub fn __call<Q>(
        &'static self,
        key: &Q,
        make_key: impl FnOnce() -> K,
        compute: impl FnOnce() -> V,
        keep: impl FnOnce(&V) -> bool,
    ) -> V
    where
        Q: ?Sized + Hash + Equivalent<K>,
        K: Clone,
    {
        match self.__hit(key) {
            Some(value) => value,
            None => self.__miss(key, make_key, compute, keep),
        }
    }

    /// The hit path, as `#[memoize]` generates it: a clone of the cached value, looked up by a
    /// borrowed view of the key, with no allocation, no lock and no shared write (a bounded
    /// cache bumps the entry's hit counter until it saturates). Counts a hit;
    /// `None` (counting nothing) when the value is absent, being computed or expired.
    #[doc(hidden)]
    #[inline]
    pub fn __hit<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let value = match &self.store {
            Store::Plain(plain) => plain.map.load(key)?,
            // The keys a bounded cache computed last wait in its windows, under locks: the
            // miss path looks there (and counts a hit) before it builds a key, so that a real
            // miss takes a window's lock once.
            Store::Cells(cells) => cells.get(key, self.bound.is_some())?,
        };
        self.counters.bump(Counter::Hit);
        if let Some(mrc) = self.mrc.get() {
            mrc.record(key);
        }
        Some(value)
    }

    /// The miss path: single flight. `make_key` builds the owned key if the cell must be
    /// inserted, `compute` runs the body outside any lock (at most once per call, and only if no
    /// other caller's value arrives first), and the value is cached only if `keep(&value)`.
    /// Counts a miss if this caller runs `compute`, else a wait.
    ///
    /// # Panics
    ///
    /// Propagates a panic of `compute` (nothing is cached, the cell is removed, waiters compute in
    /// turn). Panics if the current thread is already computing this key (recursion with the same
    /// arguments), naming the function.
    #[doc(hidden)]
    #[track_caller]
    pub fn __miss<Q>(
        &self,
        key: &Q,
        make_key: impl FnOnce() -> K,
        compute: impl FnOnce() -> V,
        keep: impl FnOnce(&V) -> bool,
    ) -> V
    where
        Q: ?Sized + Hash + Equivalent<K>,
        K: Clone,
    {
        if let Some(mrc) = self.mrc.get() {
            mrc.record(key);
        }
        // A miss if this caller runs the body, a wait if another caller's value arrives first
        // (a hit if it was in a bounded cache's window).
        let mut computed = false;
        let hit = std::cell::Cell::new(false);
        let value = self.miss(
            key,
            make_key,
            || {
                computed = true;
                self.counters.bump(Counter::Miss);
                compute()
            },
            keep,
            &hit,
        );
        if hit.get() {
            self.counters.bump(Counter::Hit);
        } else if !computed {
            self.counters.bump(Counter::Wait);
        }
        value
    }

    /// [`__miss`](Self::__miss) with the key already owned, for generated code that moves the
    /// arguments into the body: the key is cloned once more if its cell must be inserted.
    #[doc(hidden)]
    #[track_caller]
    pub fn __miss_owned(
        &self,
        key: K,
        compute: impl FnOnce() -> V,
        keep: impl FnOnce(&V) -> bool,
    ) -> V
    where
        K: Clone,
    {
        self.__miss(&key, || key.clone(), compute, keep)
    }

    #[cold]
    #[track_caller]
    pub(super) fn miss<Q>(
        &self,
        key: &Q,
        make_key: impl FnOnce() -> K,
        compute: impl FnOnce() -> V,
        keep: impl FnOnce(&V) -> bool,
        hit: &std::cell::Cell<bool>,
    ) -> V
    where
        Q: ?Sized + Hash + Equivalent<K>,
        K: Clone,
    {
        self.clone_key.get_or_init(|| K::clone);
        // A cache with a weigher keeps a copy of the key to weigh the entry once its value is
        // stored; a shared one, the key's name in the tier.
        let mut policy_key = None;
        #[cfg(feature = "redis")]
        let mut shared = None;
        let flight = self.flight_for(
            key,
            || {
                let owned = make_key();
                if self.weighs_entries() {
                    policy_key = Some(owned.clone());
                }
                #[cfg(feature = "redis")]
                {
                    shared = self.shared_key(&owned);
                }
                owned
            },
            false,
        );
        let (slot, claimed) = match flight {
            FlightOrValue::Cell(slot) => (slot, false),
            FlightOrValue::Claimed(slot) => (slot, true),
            FlightOrValue::Owned(flight) => return self.compute_owned(flight, compute, keep),
            FlightOrValue::Stored(value) => return value,
            FlightOrValue::Hit(value) => {
                hit.set(true);
                return value;
            }
            // Invalidated while this caller replaced its expired value: computed for this
            // caller only, as a call that starts during an invalidation may be.
            FlightOrValue::Invalidated => return compute(),
        };
        #[cfg(feature = "redis")]
        if let Some(shared) = shared {
            // A cache with a tier is given no claimed cell (see `flight_for`).
            debug_assert!(!claimed);
            return self.miss_shared(key, slot, policy_key, shared, compute, keep);
        }
        let counters = &self.counters;
        // Remove the empty cell if the body panics, so later callers start afresh; armed only
        // once this call's body starts, so the panic that reports a same-key recursion does not
        // remove the cell the outer call is still computing.
        let started = std::cell::Cell::new(false);
        let cleanup = RemoveOnUnwind {
            memo: self,
            key,
            slot: &slot,
            started: &started,
        };
        #[cfg(feature = "tracing")]
        let mut span = None;
        let body = || {
            started.set(true);
            counters.bump(Counter::Computation);
            #[cfg(feature = "tracing")]
            let compute = || {
                span.insert(super::trace::ComputeSpan::start(self.name))
                    .in_scope(compute)
            };
            (compute(), Duration::ZERO)
        };
        let outcome = if claimed {
            // SAFETY: `flight_for` put this cell claimed by this thread, and only this call
            // ends that claim.
            unsafe { slot.compute_claimed(body, keep) }
        } else {
            self.compute_or_wait(&slot, body, keep)
        };
        #[cfg(feature = "tracing")]
        if let Some(span) = span {
            span.finish(matches!(outcome, Outcome::Cached(_)));
        }
        std::mem::forget(cleanup);
        self.settle(key, slot, outcome, started.get(), policy_key)
    }

    /// The key's stored value, or the computation to run or wait for (see
    /// [`FlightOrValue`]); `make_key` builds the owned key, which a new computation needs. An
    /// `in_cell` caller (an async one) gets a cell for a new computation, never an owned one.
    pub(super) fn flight_for<Q>(
        &self,
        key: &Q,
        make_key: impl FnOnce() -> K,
        in_cell: bool,
    ) -> FlightOrValue<'_, K, V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        match &self.store {
            Store::Plain(plain) => plain.flight_for(key, make_key, in_cell),
            Store::Cells(cells) => {
                // A shared tier's miss waits in the cell for the tier's answer: its cells are
                // claimed as they are reached, not at creation.
                #[cfg(feature = "redis")]
                let claimed_at_creation = !in_cell && self.shared.is_none();
                #[cfg(not(feature = "redis"))]
                let claimed_at_creation = !in_cell;
                let claim_for = claimed_at_creation.then(super::slot::current_thread_id);
                let on_expired = || self.counters.bump(Counter::Expiration);
                match &self.bound {
                    Some(bound) => {
                        self.flight_in_window(cells, bound, key, make_key, claim_for, on_expired)
                    }
                    None => cells.flight_for(key, make_key(), claim_for, on_expired),
                }
            }
        }
    }

    /// Runs the body for a computation this caller owns without a cell (a plain cache's):
    /// its end stores the value and hands it to the callers that came to wait meanwhile. If
    /// the body panics, `flight` is dropped: the waiters compute in turn, nothing is stored.
    fn compute_owned(
        &self,
        flight: OwnedFlight<'_, K, V>,
        compute: impl FnOnce() -> V,
        keep: impl FnOnce(&V) -> bool,
    ) -> V {
        self.counters.bump(Counter::Computation);
        #[cfg(feature = "tracing")]
        let span = super::trace::ComputeSpan::start(self.name);
        #[cfg(feature = "tracing")]
        let value = span.in_scope(compute);
        #[cfg(not(feature = "tracing"))]
        let value = compute();
        let kept = keep(&value);
        flight.end(&value, kept);
        #[cfg(feature = "tracing")]
        span.finish(kept);
        value
    }

    /// `slot`'s value, computed by `compute` unless another caller's value arrives first (see
    /// `Slot::get_or_compute_aged`). A caller that finds a computation in flight is counted in
    /// [`MemoStats::waiting`](super::MemoStats::waiting) until it has the value or starts
    /// computing in turn.
    #[track_caller]
    pub(crate) fn compute_or_wait(
        &self,
        slot: &SlotRef<V>,
        compute: impl FnOnce() -> (V, Duration),
        keep: impl FnOnce(&V) -> bool,
    ) -> Outcome<V> {
        slot.get_or_compute_aged(self.name, Some(self.counters.waiting()), compute, keep)
    }

    /// The end of a miss whose cell `slot` is settled. If this caller `computed` the value
    /// and it is kept, the value enters a plain cache's map, or the cell goes to a bounded
    /// cache's eviction policy (with `policy_key`, the key, if the cache weighs its entries). A
    /// value not kept leaves the cache (so the next caller computes again).
    pub(super) fn settle<Q>(
        &self,
        key: &Q,
        slot: SlotRef<V>,
        outcome: Outcome<V>,
        computed: bool,
        policy_key: Option<K>,
    ) -> V
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        match outcome {
            Outcome::Cached(value) => {
                if computed {
                    self.publish(key, slot, policy_key);
                }
                value
            }
            Outcome::Uncached(value) => {
                self.remove_cell(key, &slot);
                value
            }
            Outcome::Unstored(value) => value,
        }
    }

    /// After this caller stored a value in `slot`: stores it in a plain cache's map (taking
    /// the cell out of its computations in flight), or hands the cell to a bounded cache's
    /// eviction policy (with `policy_key`, the key, if the cache weighs its entries).
    pub(super) fn publish<Q>(&self, key: &Q, slot: SlotRef<V>, policy_key: Option<K>)
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        match &self.store {
            Store::Plain(plain) => plain.publish(key, &slot),
            Store::Cells(_) => self.admitted(key, policy_key.as_ref(), slot),
        }
    }
}

/// Removes a slot that a panicking computation leaves empty.
pub(super) struct RemoveOnUnwind<'a, K, V, Q: ?Sized>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    Q: Hash + Equivalent<K>,
{
    pub(super) memo: &'a Memo<K, V>,
    pub(super) key: &'a Q,
    pub(super) slot: &'a SlotRef<V>,
    /// Whether this call's computation started (only then is the cell this call's to remove).
    pub(super) started: &'a std::cell::Cell<bool>,
}

impl<K, V, Q: ?Sized> Drop for RemoveOnUnwind<'_, K, V, Q>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    Q: Hash + Equivalent<K>,
{
    fn drop(&mut self) {
        if self.started.get() && self.slot.get().is_none() {
            self.memo.remove_cell(self.key, self.slot);
        }
    }
}
