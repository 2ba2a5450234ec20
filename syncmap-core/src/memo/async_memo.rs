//! The async front of [`Memo`]: what `#[memoize] async fn` calls on a miss. Same map, same
//! cells, same statistics and registry as the synchronous form; only the waiting differs (see
//! [`super::flight`]).
//!
//! - **Hit**: the synchronous [`__hit`](Memo::__hit), called before any `.await`: the future
//!   of a hit completes on its first poll, without allocating or locking.
//! - **Miss**: the first caller of a missing key claims its cell and awaits the body; the
//!   others await an event that the computation fires when it ends, however it ends.
//! - **Cancellation and panics**: if the computing future is dropped (a timeout, a lost
//!   `select!`, an aborted task) or its body panics, the cell is removed from the map and the
//!   waiters are woken; one of them computes in turn, the others wait for it. A later call
//!   computes afresh. Nothing is left claimed by a future that no longer exists.
//! - **Results not kept** (`Err` without `cache_err`, `None` with `skip_none`): the computing
//!   caller gets its value; the waiters do not get it, they compute in turn, one at a time,
//!   exactly as after a panic (a waiter never sees an `Err` it did not compute, unless
//!   `cache_err` caches it).
//! - **Recursion**: a call to the key being computed, polled from inside that computation
//!   (through `Box::pin` on the same task), panics naming the function instead of hanging.

use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use super::flight::{self, Claim};
use super::slot::{same_key_recursion, SlotRef};
use super::stats::Counter;
use super::{FlightOrValue, Memo};

impl<K, V> Memo<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The async miss path: single flight across tasks. `key` is the owned key, `compute` the
    /// body's future (polled only if this caller computes), and the value is cached only if
    /// `keep(&value)`. Counts a miss if this caller runs `compute`, else a wait.
    ///
    /// # Panics
    ///
    /// Propagates a panic of `compute` (nothing is cached, waiters compute in turn). Panics,
    /// naming the function, if polled from inside the computation of the same key (recursion
    /// with the same arguments).
    #[doc(hidden)]
    pub async fn __miss_async<F>(
        &'static self,
        key: K,
        compute: F,
        keep: impl FnOnce(&V) -> bool,
    ) -> V
    where
        K: Clone,
        F: Future<Output = V>,
    {
        if let Some(mrc) = self.mrc.get() {
            mrc.record(&key);
        }
        let token = flight::next_token();
        let slot = match self.claim_or_join(&key, token).await {
            Ok(slot) => slot,
            Err((value, hit)) => {
                self.counters
                    .bump(if hit { Counter::Hit } else { Counter::Wait });
                return value;
            }
        };
        let abandon = Abandon {
            memo: self,
            key: &key,
            slot: &slot,
        };
        let (value, age, kept) = self.compute_async(&key, token, compute, keep).await;
        if kept {
            std::mem::forget(abandon);
            // SAFETY: this computation holds the claim (`claim_or_join` won it, and nothing
            // released it: `abandon` is forgotten), and the value was not stored (checked
            // after the claim; only the claim's owner stores).
            unsafe { slot.settle(value.clone(), age) };
            if self.bound.is_some() {
                self.admitted(&key, self.weighs_entries().then_some(&key), slot);
            } else {
                self.publish(&key, slot, None);
            }
        } else {
            drop(abandon);
        }
        value
    }

    /// The computation of a claimed cell: the value, its age (a value from the shared tier was
    /// computed earlier), and whether to keep it. For a `shared` cache, asks the tier first.
    async fn compute_async<F>(
        &'static self,
        key: &K,
        token: u64,
        compute: F,
        keep: impl FnOnce(&V) -> bool,
    ) -> (V, Duration, bool)
    where
        F: Future<Output = V>,
    {
        #[cfg(feature = "redis")]
        if let Some(shared) = self.shared_key(key) {
            return self
                .compute_shared_async(shared, token, compute, keep)
                .await;
        }
        #[cfg(not(feature = "redis"))]
        let _ = key;
        self.counters.bump(Counter::Miss);
        self.counters.bump(Counter::Computation);
        let value = flight::run_marked(token, compute).await;
        let kept = keep(&value);
        (value, Duration::ZERO, kept)
    }

    /// Finds the key's cell and either claims its computation (`Ok`) or returns a value: a
    /// cached one, or the one computed by the caller it waited for.
    async fn claim_or_join(&'static self, key: &K, token: u64) -> Result<SlotRef<V>, (V, bool)>
    where
        K: Clone,
    {
        loop {
            match self.flight_for(key, || key.clone(), true) {
                FlightOrValue::Cell(slot) => match self.claim_or_wait(&slot, token).await {
                    Some(claimed) => return claimed.map_err(|value| (value, false)),
                    None => continue,
                },
                FlightOrValue::Stored(value) => return Err((value, false)),
                // A hit in a bounded cache's window: counted as one, not as a wait.
                FlightOrValue::Hit(value) => return Err((value, true)),
                // Not given to a caller that asks for a cell; ended (as abandoned) if it were.
                FlightOrValue::Owned(flight) => drop(flight),
                // Claimed for a thread: given only to synchronous callers (`flight_for`).
                FlightOrValue::Claimed(_) => unreachable!("a cell claimed for an async caller"),
                // Invalidated while this caller replaced its expired value: start over.
                FlightOrValue::Invalidated => continue,
            }
        }
    }

    /// Claims the computation of `slot` (`Ok`), or returns its value: one stored, or the one
    /// computed by the caller it waited for. `None`: the computation waited for ended without
    /// a value, so the caller looks the key up again.
    async fn claim_or_wait(
        &'static self,
        slot: &SlotRef<V>,
        token: u64,
    ) -> Option<Result<SlotRef<V>, V>> {
        if let Some(stored) = slot.get() {
            return Some(Err(stored.value.clone()));
        }
        match slot.flight().try_claim(token) {
            Claim::Won => {
                // A computation may have ended between the look at the cell and the claim.
                if let Some(stored) = slot.get() {
                    slot.flight().release();
                    return Some(Err(stored.value.clone()));
                }
                Some(Ok(slot.clone()))
            }
            Claim::Dead => None,
            Claim::Busy(owner) => {
                if flight::inside(owner) {
                    same_key_recursion(self.name);
                }
                let waiting = self.counters.waiting().enter();
                slot.flight().wait(owner, || slot.get().is_some()).await;
                drop(waiting);
                // The value of the computation waited for, even if the key was invalidated
                // meanwhile; otherwise (it ended without one) start over.
                slot.get().map(|stored| Err(stored.value.clone()))
            }
        }
    }
}

/// Ends a computation that produced nothing to cache: dropped on return of a value not kept,
/// on a panic of the body, or with the computing future (cancellation). Removes the slot from
/// the map, then marks it dead and wakes the waiters, who look the key up again.
struct Abandon<'a, K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    memo: &'a Memo<K, V>,
    key: &'a K,
    slot: &'a SlotRef<V>,
}

impl<K, V> Drop for Abandon<'_, K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn drop(&mut self) {
        self.memo.remove_cell(self.key, self.slot);
        self.slot.flight().abandon();
    }
}
