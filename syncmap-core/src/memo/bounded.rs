//! The bound of a `Memo` with a capacity: the eviction [`Policy`] under a mutex taken on the
//! miss path only, after the computing caller has stored its value. Hits never see it; they
//! bump the entry's own hit counter ([`Flight::touch`](super::flight::Flight::touch)).

use std::hash::{BuildHasher, Hash};
use std::panic::{RefUnwindSafe, UnwindSafe};

use parking_lot::Mutex;
use smallvec::SmallVec;

use super::slot::SlotRef;
use super::stats::Counter;
use super::Memo;
use crate::policy::{Policy, Removal, Resident};

/// What the policy holds of an entry: its key (to delete it from the map) and its slot
/// (compared by identity, so that a newer value for the same key is never deleted instead).
pub(super) struct Tracked<K, V> {
    key: K,
    slot: SlotRef<V>,
}

impl<K, V> Resident for Tracked<K, V> {
    fn take_hits(&self) -> u32 {
        self.slot.take_hits()
    }

    fn is_live(&self) -> bool {
        !self.slot.is_gone()
    }
}

/// Weighs an entry (`#[memoize(weigher = f)]`, [`MemoBuilder::weigher`](super::MemoBuilder::weigher)).
pub(super) type Weigher<K, V> = fn(&K, &V) -> u64;

/// What [`Policy::insert`] hands back: the entries to remove, and why. A miss evicts at most a
/// few (the rejected candidate or the victims it displaced, and entries already gone that the
/// policy met), so the list lives on the caller's stack.
type Removals<K, V> = SmallVec<[(Tracked<K, V>, Removal); 4]>;

/// The policy of a bounded cache.
pub(super) struct Bound<K, V> {
    policy: Mutex<Policy<Tracked<K, V>>>,
    /// Each entry weighs 1 without it.
    weigher: Option<Weigher<K, V>>,
}

impl<K, V> Bound<K, V> {
    /// A bound of `max` in total weight: `capacity` entries, or `max_weight` as weighed by
    /// `weigher` (each entry weighs 1 without one).
    pub(super) fn new(max: u64, weigher: Option<Weigher<K, V>>) -> Bound<K, V> {
        Bound {
            policy: Mutex::new(match weigher {
                Some(_) => Policy::weighted(max),
                None => Policy::new(max),
            }),
            weigher,
        }
    }
}

/// Removes the entry whose weigher panicked (see [`Memo::admitted`]), so that no entry stays in
/// the cache outside the bound.
struct RemoveUnweighed<'a, K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    memo: &'a Memo<K, V>,
    key: &'a K,
    slot: &'a SlotRef<V>,
}

impl<K, V> Drop for RemoveUnweighed<'_, K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn drop(&mut self) {
        self.slot.mark_gone();
        if self.memo.map.compare_and_delete(self.key, self.slot) {
            self.memo.counters.add(Counter::Rejection, 1);
        }
    }
}

/// No user code runs under the policy's lock (keys are hashed before, compared and dropped
/// after), so a panic never leaves the policy half-updated, and the lock does not poison.
impl<K: RefUnwindSafe, V: RefUnwindSafe> RefUnwindSafe for Bound<K, V> {}

/// See the `RefUnwindSafe` implementation.
impl<K: UnwindSafe, V: UnwindSafe> UnwindSafe for Bound<K, V> {}

impl<K, V> Memo<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// After this caller computed and stored the value of `key` in `slot`: hands the entry to
    /// the policy and removes what it evicts, outside the policy's lock. With several callers
    /// inserting at once, the cache may hold one more entry per such caller until they return.
    ///
    /// The weigher (user code) runs here, before the policy's lock is taken. If it panics, the
    /// entry is removed from the cache (counted as a rejection: it was never inside the bound)
    /// and the panic propagates to this caller.
    pub(super) fn admitted(&self, key: K, slot: SlotRef<V>) {
        let Some(bound) = &self.bound else {
            return;
        };
        let weight = match (bound.weigher, slot.get()) {
            (Some(weigher), Some(stored)) => {
                let remove = RemoveUnweighed {
                    memo: self,
                    key: &key,
                    slot: &slot,
                };
                let weight = weigher(&key, stored.value);
                std::mem::forget(remove);
                // A weight of 0 would let the window grow without bound.
                weight.max(1)
            }
            _ => 1,
        };
        let hash = self.map.hasher().hash_one(&key);
        let mut out = Removals::new();
        {
            let mut policy = bound.policy.lock();
            policy.insert(hash, weight, Tracked { key, slot }, &mut out);
            if policy.wants_sample() {
                let stats = self.counters.snapshot(0);
                policy.observe(stats.hits + stats.waits, stats.misses);
            }
        }
        let (mut evicted, mut rejected) = (0, 0);
        // If a key's `Eq` or `Drop` panics here, the rest of the list is dropped with it.
        for (tracked, why) in out {
            if why == Removal::Gone {
                continue;
            }
            tracked.slot.mark_gone();
            // Most of these are keys rejected soon after their insertion, still only in the
            // map's dirty table: `compare_and_remove` takes them out of it at once.
            if self.map.compare_and_remove(&tracked.key, &tracked.slot) {
                match why {
                    Removal::Rejected => rejected += 1,
                    _ => evicted += 1,
                }
            }
        }
        if evicted > 0 {
            self.counters.add(Counter::Eviction, evicted);
        }
        if rejected > 0 {
            self.counters.add(Counter::Rejection, rejected);
        }
    }

    /// The total weight of the entries the eviction policy holds; `None` for an unbounded
    /// cache. Without a weigher each entry weighs 1 (so this counts entries).
    ///
    /// Entries invalidated, expired or cleared are subtracted when the policy next meets them
    /// (at once for [`clear`](Self::clear)), so this may exceed the weight of the entries
    /// [`range`](Self::range) shows. It is at most `max_weight` (or `capacity`) between calls;
    /// callers inserting at the same instant may exceed it by their own entries until they
    /// return. Takes the policy's lock briefly (no user code runs under it).
    ///
    /// ```
    /// fn bytes(_key: &u32, value: &Vec<u8>) -> u64 {
    ///     value.len() as u64
    /// }
    ///
    /// #[syncmemo::memoize(max_weight = 1_000, weigher = bytes)]
    /// fn blob(id: u32) -> Vec<u8> {
    ///     vec![0; id as usize]
    /// }
    /// blob(300);
    /// blob(200);
    /// assert_eq!(blob_cache().weight(), Some(500));
    /// blob(900); // over the bound: an older entry is evicted, or this one is not kept
    /// assert!(blob_cache().weight().unwrap() <= 1_000);
    /// ```
    pub fn weight(&self) -> Option<u64> {
        self.bound
            .as_ref()
            .map(|bound| bound.policy.lock().weight())
    }

    /// After `clear`: forgets every entry the policy held, and deletes from the map those an
    /// insertion racing with `clear` left there (so that no entry stays outside the bound).
    pub(super) fn forget_all(&self) {
        if let Some(bound) = &self.bound {
            let mut out = Vec::new();
            bound.policy.lock().drain(&mut out);
            // Outside the lock: deleting runs the key's `Eq`, dropping runs `Drop`.
            for (tracked, _) in out {
                tracked.slot.mark_gone();
                self.map.compare_and_delete(&tracked.key, &tracked.slot);
            }
        }
    }
}
