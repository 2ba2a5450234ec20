//! The bound of a `Memo` with a capacity: the eviction [`Policy`] under a mutex taken on the
//! miss path only, after the computing caller has stored its value. Hits never see it; they
//! bump the entry's own hit counter ([`Slot::touch`](super::slot::Slot::touch)).

use std::hash::{BuildHasher, Hash};
use std::panic::{RefUnwindSafe, UnwindSafe};

use parking_lot::Mutex;

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
        self.slot.0.take_hits()
    }

    fn is_live(&self) -> bool {
        !self.slot.0.is_gone()
    }
}

/// The policy of a bounded cache.
pub(super) struct Bound<K, V> {
    policy: Mutex<Policy<Tracked<K, V>>>,
}

impl<K, V> Bound<K, V> {
    /// A bound of `capacity` entries.
    pub(super) fn new(capacity: usize) -> Bound<K, V> {
        Bound {
            policy: Mutex::new(Policy::new(capacity as u64)),
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
    pub(super) fn admitted(&self, key: K, slot: SlotRef<V>) {
        let Some(bound) = &self.bound else {
            return;
        };
        let hash = self.map.hasher().hash_one(&key);
        let mut out = Vec::new();
        {
            let mut policy = bound.policy.lock();
            policy.insert(hash, 1, Tracked { key, slot }, &mut out);
            if policy.wants_sample() {
                let stats = self.counters.snapshot(0);
                policy.observe(stats.hits + stats.waits, stats.misses);
            }
        }
        let (mut evicted, mut rejected) = (0, 0);
        for (tracked, why) in out {
            if why == Removal::Gone {
                continue;
            }
            tracked.slot.0.mark_gone();
            if self.map.compare_and_delete(&tracked.key, &tracked.slot) {
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

    /// After `clear`: forgets every entry the policy held, and deletes from the map those an
    /// insertion racing with `clear` left there (so that no entry stays outside the bound).
    pub(super) fn forget_all(&self) {
        if let Some(bound) = &self.bound {
            let mut out = Vec::new();
            bound.policy.lock().drain(&mut out);
            // Outside the lock: deleting runs the key's `Eq`, dropping runs `Drop`.
            for (tracked, _) in out {
                tracked.slot.0.mark_gone();
                self.map.compare_and_delete(&tracked.key, &tracked.slot);
            }
        }
    }
}
