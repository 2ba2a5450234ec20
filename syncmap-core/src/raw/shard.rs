//! One read/dirty pair of a [`SyncMap`](crate::SyncMap): the keys whose hash selects it.
//!
//! A map has a power of two of shards (at most [`MAX_SHARDS`]), chosen by hash bits 32.. (see
//! [`index`]). Each shard is Go's whole design for its keys: a read snapshot, a dirty map behind
//! its own lock, its own filter and misses counter. The shards share the map's hasher, its live
//! counter and its epoch collector, so `len` stays O(1) and a snapshot retired by any shard is
//! reclaimed by the same passes.
//!
//! A map made by `SyncMap::new` starts with its first shard alone and splits once, into all of
//! them, when that shard's lock is contended or it grows large (`SyncMap::split_locked`): until
//! then, a lookup loads the one snapshot pointer without waiting for the hash.

use std::sync::{Arc, OnceLock};

use super::dirty::{Dirty, TablePlace};
use super::entry::EntryPtr;
use super::read::{empty_table, ReadOnly, Table};
use super::sync::{self, ArcSwap, AtomicPtr, Guard, Mutex, Ordering};

/// The most shards a map can have: hash bits 32..38 choose the shard. hashbrown takes a
/// bucket's index from the low bits (tables of fewer than 2^32 buckets never read bit 32) and
/// its tag from the top seven, and the snapshot's filter reads bits 8..32 and 42..48: so the
/// keys of one shard are spread over its table and its filter as well as in a single map.
///
/// 64 rather than 16: two threads inserting new keys into a split map meet on one shard's lock
/// a quarter as often, and a thread that finds the lock held usually parks (a few
/// microseconds, beside an insertion's few hundred nanoseconds). RapidGrow at 2 threads went
/// from 0.58-0.64x dashmap's throughput to 0.70-0.76x (`conc_map`, four alternated runs of 4-6
/// rounds); 32 shards measured as 16 (docs/performance-notes.md).
pub(crate) const MAX_SHARDS: usize = 64;

/// Where the hash bits that choose a key's shard start ([`index`]).
pub(crate) const INDEX_SHIFT: u32 = 32;

/// The bytes of an old snapshot's table (and of the entries leaving with it) from which it is
/// retired promptly ([`sync::retire_box_promptly`]): its thread's bag is sealed at once and a
/// reclamation pass follows, which frees it unless a guard still covers it (the lookup that
/// promoted holds one; the next pass frees it then). In a batch, it would wait for up to 1,023
/// more retirements of its thread, which a map that stops changing never makes: the old
/// snapshots of a 1M-entry map held 5.7 bytes per entry after its last promotion
/// (`benches/memory.rs`: 67.0 bytes per entry, 61.3 promptly). Below this size, what waits is
/// small; above it, the pass (a `membarrier`, a few microseconds) is small beside the cycle
/// that filled the table (thousands of entries copied). Under miri, 1 KiB, so that its tests'
/// small maps take this path too.
pub(crate) const PROMPT_RETIRE_BYTES: usize = if cfg!(miri) { 1024 } else { 64 * 1024 };

/// The shard of `hash` in a map of `mask + 1` shards.
#[inline]
pub(crate) fn index(hash: u64, mask: usize) -> usize {
    // The constant mask lets the compiler see that the index fits the map's array of snapshot
    // pointers (no bounds check on the hit path).
    (hash >> INDEX_SHIFT) as usize & mask & (MAX_SHARDS - 1)
}

/// Keeps the branch it is in a branch: an empty assembly block, which the compiler must assume
/// has an effect, so it neither merges that branch with the other one into a select nor hoists
/// the branch's loads above the condition.
#[inline(always)]
pub(crate) fn keep_branch() {
    #[cfg(all(not(miri), any(target_arch = "x86_64", target_arch = "aarch64")))]
    // SAFETY: the block has no instructions: it reads and writes no register, memory or flag.
    unsafe {
        std::arch::asm!("", options(nomem, nostack, preserves_flags));
    }
}

/// The writers' half of a shard, aligned to a pair of cache lines so that the locks of two
/// shards never share a line (adjacent-line prefetching pulls 128 bytes on x86). Readers do not
/// touch it: the pointer they follow lives in the map's compact array of snapshot pointers (see
/// [`ShardRef`]), so the hit path loads no more pointers than with one snapshot (but the load
/// now waits for the hash that picks it: lookups 3-12% slower on a quiet host, BENCHMARKS.md).
#[repr(align(128))]
pub(crate) struct Shard<K, V> {
    /// Owns the current read snapshot.
    pub(crate) read: ArcSwap<ReadOnly<K, V>>,
    pub(crate) dirty: Mutex<Dirty<K, V>>,
    /// Where the dirty table is, for writers to prefetch before they lock.
    pub(crate) probe_hint: ProbeHint,
}

/// Where the shard's dirty table is, published by the lock holder at each new key, so that a
/// writer can ask for the lines its locked probe will read while it still searches the
/// snapshot: in a map larger than the cache, the snapshot's probe and the dirty table's are
/// each a miss, and this lets them overlap instead of one waiting for the other.
///
/// A hint only, read and written with `Relaxed`: it may be stale (the table grown, promoted or
/// freed since), or its two words may come from different tables. Nothing dereferences it; the
/// prefetch of a wrong address costs only the hint.
#[derive(Default)]
pub(crate) struct ProbeHint {
    control: std::sync::atomic::AtomicUsize,
    mask: std::sync::atomic::AtomicUsize,
}

impl ProbeHint {
    /// Publishes where the dirty table is (lock holder only).
    #[inline]
    pub(crate) fn publish(&self, place: TablePlace) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.control.load(Relaxed) != place.control || self.mask.load(Relaxed) != place.mask {
            self.control.store(place.control, Relaxed);
            self.mask.store(place.mask, Relaxed);
        }
    }

    /// What was last published.
    #[cfg(test)]
    pub(crate) fn place(&self) -> TablePlace {
        use std::sync::atomic::Ordering::Relaxed;
        TablePlace {
            control: self.control.load(Relaxed),
            mask: self.mask.load(Relaxed),
        }
    }

    /// Asks for the lines where the dirty table's probe for `hash` starts, if a table was
    /// published.
    #[inline]
    pub(crate) fn prefetch<K, V>(&self, hash: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let control = self.control.load(Relaxed);
        if control != 0 {
            let mask = self.mask.load(Relaxed);
            TablePlace { control, mask }.prefetch_probe::<K, V>(hash);
        }
    }
}

/// The writers' halves of a map's shards: shard 0 in place, the others allocated when the map
/// splits, so that a map that never splits (small, or written by one thread at a time) pays for
/// one.
///
/// # Invariants
///
/// `rest` holds shards `1..count` once initialized, which happens before the map's shard mask
/// routes any key to them (under shard 0's lock in `SyncMap::split_locked`, or at creation for
/// a map split from the start): a [`ShardRef`] with an index above 0 was chosen with a mask
/// loaded (`Acquire`) after that.
pub(crate) struct Shards<K, V> {
    first: Shard<K, V>,
    rest: OnceLock<Box<[Shard<K, V>]>>,
    /// The number of shards once split, a power of two.
    count: usize,
}

/// Why [`Shards::get`] and [`Shards::get_mut`] find the shard they are asked for.
const ROUTED_AFTER_ALLOCATION: &str =
    "a shard past the first is allocated before keys are routed to it";

impl<K, V> Shards<K, V> {
    /// Shard 0 of a map that splits into `count` shards (a power of two, at most
    /// [`MAX_SHARDS`]); see [`Shard::new`] for `empty`.
    pub(crate) fn new(count: usize, empty: &Arc<ReadOnly<K, V>>) -> Self {
        debug_assert!(count.is_power_of_two() && count <= MAX_SHARDS);
        Shards {
            first: Shard::new(empty),
            rest: OnceLock::new(),
            count,
        }
    }

    /// The number of shards once split.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Allocates shards `1..count` (idempotent), before the map routes keys to them.
    pub(crate) fn allocate_rest(&self, empty: &Arc<ReadOnly<K, V>>) {
        self.rest
            .get_or_init(|| (1..self.count).map(|_| Shard::new(empty)).collect());
    }

    /// The shards allocated: shard 0 alone until [`allocate_rest`](Self::allocate_rest).
    pub(crate) fn allocated(&self) -> usize {
        if self.rest.get().is_some() {
            self.count
        } else {
            1
        }
    }

    /// Shard `index`, which must be allocated.
    fn get(&self, index: usize) -> &Shard<K, V> {
        match index {
            0 => &self.first,
            _ => &self.rest.get().expect(ROUTED_AFTER_ALLOCATION)[index - 1],
        }
    }

    /// Shard `index`, which must be allocated, for a map no other thread uses.
    pub(crate) fn get_mut(&mut self, index: usize) -> &mut Shard<K, V> {
        match index {
            0 => &mut self.first,
            _ => &mut self.rest.get_mut().expect(ROUTED_AFTER_ALLOCATION)[index - 1],
        }
    }
}

impl<K, V> Shard<K, V> {
    /// A shard whose snapshot is `empty`, the map's [shared empty
    /// snapshot](ReadOnly::shared_empty), and with no dirty map. Its snapshot pointer must be
    /// set to `Arc::as_ptr(empty)`.
    pub(crate) fn new(empty: &Arc<ReadOnly<K, V>>) -> Self {
        debug_assert!(empty.is_shared_empty());
        Shard {
            read: ArcSwap::new(Arc::clone(empty)),
            dirty: Mutex::new(Dirty::default()),
            probe_hint: ProbeHint::default(),
        }
    }
}

/// A shard and its snapshot pointer.
pub(crate) struct ShardRef<'a, K, V> {
    /// `Arc::as_ptr` of the snapshot in `shard.read`, for lock-free readers under a guard.
    /// Written only with the shard's dirty lock held, together with `shard.read`; the snapshot
    /// it pointed to before is retired through the map's collector.
    pub(crate) read_ptr: &'a AtomicPtr<ReadOnly<K, V>>,
    /// The map's shards and this one's index, looked up only by writers (the hit path needs
    /// `read_ptr` alone).
    pub(crate) shards: &'a Shards<K, V>,
    pub(crate) index: usize,
    /// The map's shard mask this shard was chosen with. If the map has split since (the mask
    /// is no longer this), a key may have moved from this shard (then shard 0) to another.
    pub(crate) mask: usize,
}

impl<K, V> Clone for ShardRef<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for ShardRef<'_, K, V> {}

impl<K, V> std::ops::Deref for ShardRef<'_, K, V> {
    type Target = Shard<K, V>;
    fn deref(&self) -> &Shard<K, V> {
        self.get()
    }
}

impl<'a, K, V> ShardRef<'a, K, V> {
    /// The writers' half of the shard.
    pub(crate) fn get(self) -> &'a Shard<K, V> {
        self.shards.get(self.index)
    }

    /// The current read snapshot, valid while `guard` (a guard of the map's collector) is held.
    #[inline]
    pub(crate) fn snapshot<'g>(self, guard: &'g Guard<'_>) -> &'g ReadOnly<K, V> {
        let p = sync::protect(guard, self.read_ptr);
        // SAFETY: `read_ptr` always points at the snapshot owned by `read`; a replaced snapshot
        // is retired through the map's collector (see `publish_locked`), so the one loaded
        // under `guard` stays allocated until `guard` is dropped.
        unsafe { &*p }
    }

    /// The raw snapshot pointer, for tests that check whether a promotion happened.
    #[cfg(test)]
    pub(crate) fn snapshot_ptr(self) -> *mut ReadOnly<K, V> {
        self.read_ptr.load(Ordering::Acquire)
    }

    /// Publishes an empty snapshot of the shard's own in place of the map's shared empty one,
    /// before the shard's first new key (whose filter bits it will record). Caller holds this
    /// shard's dirty lock, which has no dirty map yet.
    pub(crate) fn own_snapshot_locked<'g>(self, guard: &'g Guard<'_>) -> &'g ReadOnly<K, V> {
        self.publish_locked(empty_table(), Vec::new(), u64::MAX, guard);
        self.snapshot(guard)
    }

    /// Puts back the map's shared empty snapshot `empty`, retiring the current one together
    /// with `dead`, as `clear` does. Caller holds this shard's dirty lock and resets its dirty
    /// map.
    pub(crate) fn publish_empty_locked(
        self,
        empty: &Arc<ReadOnly<K, V>>,
        dead: Vec<EntryPtr<K, V>>,
        dead_birth: u64,
        guard: &Guard<'_>,
    ) {
        self.publish_arc_locked(Arc::clone(empty), dead, dead_birth, guard);
    }

    /// Replaces the read snapshot, retiring the old one together with `dead`, the entries that
    /// leave the map with it, and `dead_birth`, the earliest birth among them. Caller holds
    /// this shard's dirty lock and `guard` is a guard of the map's collector.
    pub(crate) fn publish_locked(
        self,
        table: Table<K, V>,
        dead: Vec<EntryPtr<K, V>>,
        dead_birth: u64,
        guard: &Guard<'_>,
    ) {
        self.publish_arc_locked(
            Arc::new(ReadOnly::new(table, sync::birth(guard))),
            dead,
            dead_birth,
            guard,
        );
    }

    /// [`publish_locked`](Self::publish_locked) with the snapshot made.
    fn publish_arc_locked(
        self,
        snapshot: Arc<ReadOnly<K, V>>,
        dead: Vec<EntryPtr<K, V>>,
        dead_birth: u64,
        guard: &Guard<'_>,
    ) {
        self.read_ptr
            .store(Arc::as_ptr(&snapshot).cast_mut(), Ordering::Release);
        let old_snapshot = self.get().read.swap(snapshot);
        // A thread may hold a dead entry found through the old snapshot (born before it) or,
        // earlier, through the dirty map (born before that thread took the lock).
        let birth = old_snapshot.birth.min(dead_birth);
        let large = old_snapshot.table.allocation_size()
            + dead.len() * std::mem::size_of::<super::entry::Entry<K, V>>()
            >= PROMPT_RETIRE_BYTES;
        let old = Box::into_raw(Box::new(Retired {
            _snapshot: old_snapshot,
            dead,
        }));
        // SAFETY: `read_ptr` no longer points at the old snapshot and `dead` entries are in no
        // table, so threads that enter later cannot reach them; `old` was created by
        // `Box::into_raw`. Readers that loaded them before are protected: the collector waits
        // for their guards.
        unsafe {
            if large {
                sync::retire_box_promptly(guard, old, birth);
            } else {
                sync::retire_box(guard, old, birth);
            }
        }
    }
}

/// A replaced snapshot and the entries that left the map with it, retired together.
struct Retired<K, V> {
    _snapshot: Arc<ReadOnly<K, V>>,
    dead: Vec<EntryPtr<K, V>>,
}

impl<K, V> Drop for Retired<K, V> {
    fn drop(&mut self) {
        // Every entry is freed even if a key's or value's `Drop` panics (then resumed).
        super::unwind::for_each(self.dead.drain(..), |entry| {
            // SAFETY: these entries left the map when the bundle was retired, and the collector
            // runs this only once no guard that could have reached them remains.
            unsafe { entry.free() };
        });
    }
}
