//! The bound of a `Memo` with a capacity: the eviction [`Policy`] and its window
//! (`window.rs`), split by key hash into independent shards of the capacity for large caches,
//! each under a mutex taken on the miss path (to find or put the key's cell in the window, then
//! to hand the stored value to the policy), and by hits of the keys still in the window. Hits
//! of the map never see it; they bump the entry's own hit counter
//! ([`Flight::touch`](super::flight::Flight::touch)).

use std::hash::{BuildHasher, Hash};
use std::panic::{RefUnwindSafe, UnwindSafe};

use smallvec::SmallVec;

use super::slot::SlotRef;
use super::stats::Counter;
use super::window::Window;
use super::Memo;
use crate::policy::{Policy, Removal, Resident};
use crate::raw::sync::{self, Collector, Locked, Mutex};
use crate::Equivalent;

/// What the policy holds of an entry: its key's hash and its slot, which find it in the map
/// (the slot compared by identity, so that a newer value for the same key is never deleted
/// instead). No copy of the key: a miss clones none for the policy, and evicting runs no user
/// code (no `Eq`, no key's `Drop`).
pub(super) struct Tracked<V> {
    hash: u64,
    slot: SlotRef<V>,
}

impl<V> Resident for Tracked<V> {
    fn hash(&self) -> u64 {
        self.hash
    }

    fn take_hits(&self) -> u32 {
        self.slot.take_hits()
    }

    fn is_live(&self) -> bool {
        !self.slot.is_gone()
    }
}

/// Weighs an entry (`#[memoize(weigher = f)]`, [`MemoBuilder::weigher`](super::MemoBuilder::weigher)).
pub(super) type Weigher<K, V> = fn(&K, &V) -> u64;

/// What [`Policy::admit_candidate`] hands back: the entries to remove, and why. A miss evicts at most a
/// few (the rejected candidate or the victims it displaced, and entries already gone that the
/// policy met), so the list lives on the caller's stack.
type Removals<V> = SmallVec<[(Tracked<V>, Removal); 4]>;

/// A cache with a capacity of at least this many entries per shard splits its policy (see
/// [`Bound`]). Below it, splitting buys little (a small policy is quick to update) and each
/// shard's share of the hot keys would vary more with the hash. At two threads, the misses of
/// zipf bounded (capacity 10,000) mostly waited for each other's shard locks: 512 (16 shards)
/// ran it in 0.91x the time of 1,024 (8), 256 (32 shards) in 1.05x that of 512, and the
/// hit-ratio bench's rows stayed within their run-to-run noise (`docs/performance-notes.md`).
const MIN_SHARD_CAPACITY: u64 = 512;

/// The most shards a bounded cache's policy takes.
const MAX_SHARDS: u64 = 16;

/// One shard of the bound: its policy (the main space) and its window (`window.rs`).
pub(super) struct Shard<K, V> {
    pub(super) policy: Policy<Tracked<V>>,
    pub(super) window: Window<K, V>,
}

/// One shard, on cache lines of its own: the threads inserting into two shards do not
/// invalidate each other's lines.
#[repr(align(128))]
struct PolicyShard<K, V>(Mutex<Shard<K, V>>);

/// The policy of a bounded cache.
///
/// A cache of `capacity` entries (no weigher) of at least twice [`MIN_SHARD_CAPACITY`] splits
/// its policy into shards (a power of two, at most [`MAX_SHARDS`]), each a W-TinyLFU of its
/// share of the capacity, chosen by bits of the key's hash that the map's own shards do not
/// use: misses of keys in different shards take different locks and write different memory.
/// The count depends on the capacity only, so a cache evicts the same way on every machine.
/// Hot keys spread over the shards as they do over the map's, so the hit ratio stays that of
/// one policy (the hit-ratio bench, `docs/performance-notes.md`). A cache bounded by weight
/// keeps one policy: an entry may weigh up to the whole `max_weight`.
pub(super) struct Bound<K, V> {
    shards: Box<[PolicyShard<K, V>]>,
    /// Each entry weighs 1 without it.
    weigher: Option<Weigher<K, V>>,
}

impl<K, V> Bound<K, V> {
    /// A bound of `max` in total weight: `capacity` entries, or `max_weight` as weighed by
    /// `weigher` (each entry weighs 1 without one).
    pub(super) fn new(max: u64, weigher: Option<Weigher<K, V>>) -> Bound<K, V> {
        let shard = |policy| {
            PolicyShard(Mutex::new(Shard {
                policy,
                window: Window::new(),
            }))
        };
        let shards = match weigher {
            Some(_) => vec![shard(Policy::weighted(max))],
            None => {
                let count = shard_count(max);
                // The remainder goes to the first shards: the capacities add up to `max`.
                (0..count)
                    .map(|i| max / count + u64::from(i < max % count))
                    .map(|capacity| Policy::new(capacity).one_of(count))
                    .map(shard)
                    .collect()
            }
        };
        Bound {
            shards: shards.into_boxed_slice(),
            weigher,
        }
    }

    /// Whether the cache weighs its entries (its policy is then handed the keys).
    pub(super) fn weighs(&self) -> bool {
        self.weigher.is_some()
    }

    /// The shard of the policy that holds the key of `hash`, from the hash's top four bits.
    /// Within a shard those bits are the same for every key, so no part of the policy may
    /// index by them: the ghost's slot comes from bits below 47 (with bits 40..42 it filled
    /// a quarter of its slots, and the shifting trace lost half a point), the sketch mixes
    /// every bit.
    fn shard(&self, hash: u64) -> &Mutex<Shard<K, V>> {
        let index = (hash >> 60) as usize & (self.shards.len() - 1);
        &self.shards[index].0
    }

    /// Calls `f` with each shard, locked in turn (holding back the map's reclamation passes).
    pub(super) fn each_locked(&self, collector: &Collector, mut f: impl FnMut(&mut Shard<K, V>)) {
        for shard in self.shards.iter() {
            let guard = sync::enter(collector);
            f(&mut sync::lock(&shard.0, collector, &guard));
        }
    }

    /// Locks every shard, in order (no other path holds two): while they are held, the map of
    /// a bounded cache gains and loses entries only by invalidation.
    pub(super) fn lock_all<'a>(&'a self, collector: &'a Collector) -> Vec<Locked<'a, Shard<K, V>>> {
        let guard = sync::enter(collector);
        let lock = |shard: &'a PolicyShard<K, V>| sync::lock(&shard.0, collector, &guard);
        self.shards.iter().map(lock).collect()
    }

    /// Locks the shard of the key of `hash`, holding back the reclamation passes of the map
    /// (whose collector is `collector`) until it is unlocked: no destructor runs under it.
    pub(super) fn lock<'a>(
        &'a self,
        hash: u64,
        collector: &'a Collector,
    ) -> Locked<'a, Shard<K, V>> {
        let guard = sync::enter(collector);
        sync::lock(self.shard(hash), collector, &guard)
    }
}

/// The number of policy shards of a cache of `capacity` entries: the largest power of two, at
/// most [`MAX_SHARDS`], that leaves each shard at least [`MIN_SHARD_CAPACITY`] entries.
fn shard_count(capacity: u64) -> u64 {
    let mut count = MAX_SHARDS;
    while count > 1 && capacity / count < MIN_SHARD_CAPACITY {
        count /= 2;
    }
    count
}

/// Removes the entry whose weigher panicked (see [`Memo::admitted`]), so that no entry stays in
/// the cache outside the bound.
struct RemoveUnweighed<'a, K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    memo: &'a Memo<K, V>,
    hash: u64,
    slot: &'a SlotRef<V>,
}

impl<K, V> Drop for RemoveUnweighed<'_, K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn drop(&mut self) {
        // Still in the window (not in the policy, so no gone mark): a cell enters the map and
        // the policy only once admitted.
        if self.memo.remove_from_window(self.hash, self.slot) {
            self.memo.counters.add(Counter::Rejection, 1);
        }
    }
}

/// No user code runs under a shard's lock but the keys' `Eq` and `Clone` (the window's lookups
/// and copies, which change nothing): keys are hashed before it is taken, and what leaves the
/// shard is dropped after. So a panic never leaves a policy or a window half-updated, and the
/// locks do not poison.
impl<K: RefUnwindSafe, V: RefUnwindSafe> RefUnwindSafe for Bound<K, V> {}

/// See the `RefUnwindSafe` implementation.
impl<K: UnwindSafe, V: UnwindSafe> UnwindSafe for Bound<K, V> {}

impl<K, V> Memo<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// After this caller computed and stored the value of `key` in `slot`: hands the entry to
    /// its shard of the policy and removes what it evicts, outside the policy's lock. With
    /// several callers inserting at once, the cache may hold one more entry per such caller
    /// until they return.
    ///
    /// `owned` is the key itself for a cache that weighs its entries
    /// ([`weighs_entries`](Self::weighs_entries)); other caches need only its hash, and the
    /// caller makes no copy of the key for them.
    ///
    /// The key's `Hash` and the weigher (user code) run here, before the policy's lock is
    /// taken. If the weigher panics, the entry is removed from the cache (counted as a
    /// rejection: it was never inside the bound) and the panic propagates to this caller.
    pub(super) fn admitted<Q>(&self, key: &Q, owned: Option<&K>, slot: SlotRef<V>)
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let (Some(bound), Some(map)) = (&self.bound, self.cells()) else {
            return;
        };
        let hash = map.hasher().hash_one(key);
        debug_assert_eq!(
            bound.weighs(),
            owned.is_some(),
            "the key goes with a weigher only"
        );
        let weight = match (bound.weigher, owned, slot.get()) {
            (Some(weigher), Some(key), Some(stored)) => {
                let remove = RemoveUnweighed {
                    memo: self,
                    hash,
                    slot: &slot,
                };
                let weight = weigher(key, stored.value);
                std::mem::forget(remove);
                // A weight of 0 would let the window grow without bound.
                weight.max(1)
            }
            _ => 1,
        };
        let (mut out, mut left) = (
            Removals::new(),
            SmallVec::<[(Option<K>, Option<SlotRef<V>>); 2]>::new(),
        );
        let (mut evicted, mut rejected) = (0, 0);
        // Takes out of the map what the policy evicted (the map retires it: nothing is
        // dropped, and the lock holds back the passes that would drop it).
        let mut remove = |removals: &[(Tracked<V>, Removal)]| {
            for (tracked, why) in removals {
                // Only the policy reads the mark (`Tracked::is_live`): a gone entry has it, and
                // a rejected candidate was never in the policy's queues (nor in the map).
                match why {
                    Removal::Gone => {}
                    Removal::Rejected => rejected += 1,
                    Removal::Evicted => {
                        tracked.slot.mark_gone();
                        if map.compare_and_remove(tracked.hash, &tracked.slot) {
                            evicted += 1;
                        }
                    }
                }
            }
        };
        {
            let mut shard = bound.lock(hash, map.collector());
            let shard = &mut *shard;
            // Invalidated during its computation: the invalidation took it out.
            if !shard.window.settle(hash, &slot, weight) {
                return;
            }
            while shard.window.weight() > shard.policy.window_max() {
                let Some((hash, (key, slot), weight)) = shard.window.pop_candidate() else {
                    break;
                };
                // The window's handle of the cell moves to the policy: a rejected candidate
                // comes back in `out`, dropped after the lock; an admitted one is cloned once,
                // for the map. (Each change of a handle's count is a locked instruction, and
                // those were a quarter of a miss's time: `docs/performance-notes.md`.)
                let seen = out.len();
                let admitted = shard
                    .policy
                    .admit_candidate(weight, Tracked { hash, slot }, &mut out)
                    .map(|held| held.slot.clone());
                // Its victims leave the map before it enters, so that the map never holds
                // more than the bound but for the values of callers inserting at that instant.
                remove(&out[seen..]);
                let Some(slot) = admitted else {
                    left.push((Some(key), None));
                    continue;
                };
                // Into the map before it leaves the window's lock (the window's invariants).
                let (key, unused) = map.store_new_hashed(hash, key, slot);
                if let Some(unused) = &unused {
                    // The key has a cell in the map already (the window's invariants rule it
                    // out): this one is forgotten by the policy when met.
                    unused.mark_gone();
                }
                left.push((key, unused));
            }
            // The window may have grown since the main space filled (the climber moved).
            let seen = out.len();
            shard.policy.make_room(shard.window.weight(), &mut out);
            remove(&out[seen..]);
            if shard.policy.wants_sample() {
                let stats = self.counters.snapshot(0);
                shard.policy.observe(stats.hits + stats.waits, stats.misses);
            }
        }
        // Outside the lock: dropping a key or a cell's last handle runs user code. If a
        // value's `Drop` panics here, the rest of the lists is dropped with it.
        drop((left, out));
        if evicted > 0 {
            self.counters.add(Counter::Eviction, evicted);
        }
        if rejected > 0 {
            self.counters.add(Counter::Rejection, rejected);
        }
    }

    /// Whether this cache weighs its entries, so that a miss hands [`admitted`](Self::admitted)
    /// the key itself.
    pub(super) fn weighs_entries(&self) -> bool {
        self.bound.as_ref().is_some_and(Bound::weighs)
    }

    /// The total weight of the entries the eviction policy holds; `None` for an unbounded
    /// cache. Without a weigher each entry weighs 1 (so this counts entries).
    ///
    /// Entries invalidated, expired or cleared are subtracted when the policy next meets them
    /// (at once for [`clear`](Self::clear)), so this may exceed the weight of the entries
    /// [`range`](Self::range) shows. It is at most `max_weight` (or `capacity`) between calls;
    /// callers inserting at the same instant may exceed it by their own entries until they
    /// return. Takes the policy's locks briefly, one at a time (no user code runs under them).
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
        self.bound.as_ref().map(|bound| {
            bound
                .shards
                .iter()
                .map(|shard| {
                    let shard = shard.0.lock();
                    shard.policy.weight() + shard.window.weight()
                })
                .sum()
        })
    }

    /// After `clear`: forgets every entry the policy held, and deletes from the map those an
    /// insertion racing with `clear` left there (so that no entry stays outside the bound).
    pub(super) fn forget_all(&self) {
        if let (Some(bound), Some(map)) = (&self.bound, self.cells()) {
            let (mut out, mut left) = (Vec::new(), Vec::new());
            bound.each_locked(map.collector(), |shard| {
                shard.policy.drain(&mut out);
                left.extend(shard.window.take_all());
            });
            // Outside the lock: dropping a slot may drop its value (user code).
            for (tracked, _) in out {
                tracked.slot.mark_gone();
                map.compare_and_remove(tracked.hash, &tracked.slot);
            }
            // The windows' cells (`left`) were never in the policy: they need no gone mark.
            drop(left);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_a_power_of_two_of_at_least_the_minimum_capacity() {
        assert_eq!(shard_count(1), 1);
        assert_eq!(shard_count(2 * MIN_SHARD_CAPACITY - 1), 1);
        assert_eq!(shard_count(2 * MIN_SHARD_CAPACITY), 2);
        assert_eq!(shard_count(10_000), 16);
        assert_eq!(shard_count(u64::MAX), MAX_SHARDS);
        for capacity in [1, 4_095, 4_096, 10_003, 65_535, 1 << 20] {
            let count = shard_count(capacity);
            assert!(count.is_power_of_two() && count <= MAX_SHARDS);
            assert!(count == 1 || capacity / count >= MIN_SHARD_CAPACITY);
        }
    }
}
