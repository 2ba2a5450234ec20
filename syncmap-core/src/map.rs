//! [`SyncMap`]: the read/dirty design of Go's `sync.Map` with typed keys and values.
//!
//! # Design
//!
//! - **Shards.** The map is a few independent read/dirty pairs (`raw/shard.rs`), chosen by hash
//!   bits that neither the tables nor the filters use; everything below holds per shard. New
//!   keys of different shards never wait on each other, and each promotion copies one shard's
//!   entries, not the map's. The shards share the hasher, the striped live counter (so `len`
//!   stays O(1)) and the epoch collector. `range` takes every shard's snapshot first (promoting
//!   those with new keys), then visits them one after the other; `clear` goes shard after
//!   shard.
//! - **One shard until it pays to split.** A map starts with shard 0 alone in use, and a lookup
//!   then loads its snapshot pointer without waiting for the hash to choose a shard: hits as
//!   fast as the unsharded map's (LoadMostlyHits, 1,024 keys: 1.04-1.07x the time of
//!   9b89db1, where a map split from the start takes 1.11-1.18x; 30 alternated runs). The map splits, once, into all its shards when shard 0 promotes
//!   [`SPLIT_AT_LEN`](locked::SPLIT_AT_LEN) keys or more, or a thread has found its lock held
//!   [`SPLIT_AFTER_CONTENDED`](locked::SPLIT_AFTER_CONTENDED) times: under shard 0's lock, right after promoting it, its snapshot's entries are distributed
//!   into new snapshots of their shards (entries do not move, only pointers to them), and the
//!   shard mask is published between the other shards' snapshots and shard 0's. A thread that
//!   chose shard 0 before the split and misses there checks the mask again before answering
//!   "absent", and locked paths choose their shard again under its lock (see
//!   [`split_locked`](SyncMap::split_locked)). The split costs one pass over the map's entries.
//! - **Read snapshot.** An immutable table of shared entries ([`ReadOnly`]), owned and published
//!   through an [`ArcSwap`](arc_swap::ArcSwap). Loads, and stores to keys the snapshot already
//!   has, never take a lock: each entry holds its value behind an atomic pointer, updated in
//!   place with CAS.
//! - **Dirty map.** A table behind a `parking_lot` mutex that holds every live entry plus the keys
//!   the snapshot lacks. New keys go there. Each locked lookup counts a *miss*; once misses reach
//!   half of the dirty map's length (Go: all of it; at least 64), the dirty map becomes the
//!   new snapshot (an O(1) swap). The first new key after that copies the live entries of the
//!   snapshot into a fresh dirty map and *expunges* deleted ones, so deleted keys do not
//!   survive the next promotion.
//! - **Reclamation.** A value replaced or deleted while readers may be cloning it, and a snapshot
//!   replaced while readers may be searching it, are retired through the map's own epoch
//!   collector (`raw/epoch/mod.rs`), whose epoch is the map's own. Entering it is a load of the
//!   map's epoch and plain stores to the thread's own slot, each protected load adds a load of
//!   the epoch and a compare, leaving it is a plain store: no locked instruction and no shared
//!   write, so the hit path costs one guard, one hash, one probe and one pointer load. Every
//!   allocation carries the epoch of its birth, so a thread held inside an operation holds
//!   back only what was born before it last read (a bounded amount, see `raw/epoch/mod.rs`). The
//!   writer side pays instead: every 1024 retirements a thread seals a batch and runs a pass
//!   (one `membarrier` system call and a scan of the map's thread slots), and the memory of the
//!   values it frees is kept for the thread's next writes (recycling, so that a write does not
//!   pay `malloc` and `free`). Why not arc-swap alone:
//!   one `ArcSwap::load` costs 11-13 ns on the reference machine, two of them (snapshot and
//!   per-entry value) 25 ns, and `load_full` writes a shared reference count; the hit-path
//!   budget is 8 ns. Why not `seize` (which this crate used first): leaving its guard is an
//!   `xchg`, which alone doubled the hit path (12 ns against 5.5 ns measured). So the
//!   snapshot's `Arc` lives in the `ArcSwap` (which owns and publishes it), while the hit path
//!   reads a mirror of its pointer under the same guard that protects values: old snapshots are
//!   retired through the collector, not dropped, when they are replaced. Everything retired is
//!   dropped at the latest when the map is dropped (the collector belongs to the map).
//!
//! # Departures from Go 1.19 (its known pathologies)
//!
//! - **Negative lookups do not serialize.** While the dirty map holds keys the snapshot lacks,
//!   Go sends every miss to the mutex. Here each snapshot carries a small Bloom filter of the
//!   keys inserted in the dirty map since it was published; a miss whose filter bits are clear
//!   answers without the lock. The dirty map is promoted once it holds as many new keys as the
//!   filter serves well (about twice as many as the snapshot has entries), which keeps the copy
//!   that follows a promotion amortized O(1) per insert (half an entry copied per new key).
//!   When the last of those keys is deleted again, the filter is emptied in place (in time
//!   proportional to the keys it had), so keys that come and go do not make negative lookups
//!   take the lock.
//! - **Promotion on fewer misses.** Go promotes once misses reach the dirty map's length, which
//!   pays for the O(n) copy that follows with n locked lookups. A locked lookup costs more than
//!   copying an entry (several times more when two threads contend for the lock), so here
//!   half of that suffices, once the copy is finished (a promotion never waits for a copy).
//!   Half, not an eighth (the rule before the shards) nor Go's whole length: on a memo whose
//!   keys keep arriving (Zipf 0.9 over 100k keys, unbounded) calls took 0.6-0.8x the time of
//!   an eighth at 1 and 2 threads (fewer promotions, each followed by a copy of the shard); a
//!   bounded memo was unchanged, and bustle's ReadHeavy after a bulk load within
//!   the noise (0.91 / 0.82 of papaya against 0.82 / 0.96); Go's rule made the bounded memo
//!   1.3-1.6x slower (`docs/performance-notes.md`). Small maps wait for at least 64 misses:
//!   a promotion costs a few allocations whatever the size, and Go's rule promoted a 3-entry
//!   map every 12 operations in bustle's Exchange. A removal that takes a key out of the dirty
//!   map is not a miss (Go's `LoadAndDelete` counts it): no lookup of that key is left for a
//!   promotion to make lock-free. A bounded memo removes most keys it rejects that way, and
//!   counting them doubled its promotions. A cycle whose table holds room for four times its
//!   entries or more (a map that grew, then stopped taking keys) promotes once the misses
//!   reach its new keys: its table is then rehashed to fit instead of keeping that room until
//!   half the shard's length in misses (1.5M memoized keys called three times each: 113.7 ->
//!   63 resident bytes per entry). The room was given because the cycle before took about
//!   half the shard's length in new keys or more, which pays for the two passes.
//! - **No O(n) pause after a promotion.** The copy of the snapshot into a new dirty map is
//!   spread over the locked operations that follow (32 buckets each), and the dirty table is
//!   allocated for the whole cycle, so inserts into a growing map never rehash (a table promoted
//!   before its cycle filled it is rehashed to fit its entries, a pass the promoting misses pay
//!   for: the snapshot never grows, and would keep its empty buckets). A shard whose
//!   last cycle ended on misses with far fewer new keys (a bounded cache, whose snapshot keeps
//!   its size) gets a table for twice those instead, which grows in the rare cycle that takes
//!   more: a table for the whole cycle was mostly empty buckets there, which its lookups and
//!   copies paid for in cache misses. In a table of 32,768 buckets or more, each step asks for
//!   the lines of the entries it is about to visit before it visits them, so that their cache
//!   misses overlap (3M new keys into one map: 0.94x the time per insert).
//! - **A new key's two probes overlap.** Before it searches the snapshot, a writer asks for
//!   the lines where the dirty table's probe for its key starts (control bytes and bucket),
//!   from a hint of where that table is that the lock holder publishes at each new key
//!   (`ProbeHint` in `raw/shard.rs`). In a map larger than the cache both probes miss; Go's
//!   order makes the second wait for the first, and then for the lock. 0.80x the time of
//!   LoadOrStoreUnique at 1 thread, 0.75x a memoized miss (`docs/performance-notes.md`).
//! - **A freed table leaves the resident set.** Cycles allocate and free tables all the time;
//!   glibc's malloc keeps a freed block below its mmap threshold (which its first large frees
//!   raise up to 32 MiB) for reuse, and the process keeps its pages until then. The tables'
//!   allocator (`raw/table_alloc.rs`) hands the whole pages inside a table of 32 KiB or more to
//!   `madvise(MADV_DONTNEED)` just before freeing it: resident bytes per memoized entry at 100k
//!   118.4 -> 85.2, 500k 80.5 -> 72.8, 1M 75.2 -> 70.8 (heap unchanged).
//! - **Deleting a key only the dirty map has takes it out of the dirty table** (`delete`, and
//!   the memo's evictions): left there deleted, it would be promoted, copied and dropped only a
//!   cycle later.
//! - **Small objects live in pages.** Entries and small values are carved from 1 MiB pages
//!   (`raw/epoch/pages.rs`) instead of one `malloc` each: glibc's 8-byte header made a 40-byte
//!   entry take a 48-byte chunk. Resident bytes per memoized `u64` entry at 1M 70.8 -> 63.3,
//!   100k 86.8 -> 79.5, 500k 73.4 -> 64.0. A page is aligned to its size, so freeing an object
//!   finds its page by masking the address (no collector needed: values are freed from
//!   `Drop`s too); the bit that says so is in the birth word the collector keeps anyway.
//!   1 MiB, not 64 KiB: glibc's aligned blocks leave free pieces whose headers it writes (64
//!   KiB pages gave 67.7 at 1M).
//! - **The first value shares the entry's allocation** when it is small (at most 32 bytes):
//!   one allocation per new key instead of two, and one dependent load less per lookup of a
//!   value never replaced. A replaced first value keeps its bytes until the entry is freed,
//!   since readers may still be reading it; one with drop glue (a `String`, an `Arc`, the
//!   memo's cell) is dropped once no reader holds it, and the entry counts that pending drop
//!   so that its memory outlives it (`CountedEntry` in `raw/entry/counted.rs`). Go boxes
//!   every value in an `interface{}`.
//! - **No per-entry reference count.** Entries are owned by the map through plain pointers and
//!   retired through the collector when they leave it (see `EntryPtr`), which saves 16 bytes and
//!   two atomic read-modify-writes per entry per promotion cycle.
//! - **Entries keep their key's hash**, so the copy, table growth and promotion rehash without
//!   calling the user's `Hash`: under the lock only `Eq` runs, in lookups that change nothing,
//!   and a panic in user code never leaves the tables half-changed (issue 16). Cost: 8 bytes per
//!   entry; the hit path runs the same instructions (98.0 per `load` hit at 1023 `u64` keys under
//!   callgrind, before and after), but its entries outgrow a 32 KiB L1d at that size (0.59 ->
//!   0.96 simulated L1d misses per hit). Wall-time comparisons so far were too noisy to show a
//!   difference (`docs/performance-notes.md`).
//! - **`len`** is kept in striped counters updated when an entry gains or loses its value.
//! - **`clear`** expunges every entry before detaching it, so a concurrent lock-free store to a
//!   detached entry fails over to the locked path instead of being lost silently.

use std::sync::Arc;

use crate::raw::counter::StripedCounter;
use crate::raw::dirty::Dirty;
use crate::raw::entry::{Entry, EntryPtr, LiveDelta, LoadOrStored, Unlink};
use crate::raw::read::{find, find_by, table_with_capacity, ReadOnly, Table};
use crate::raw::shard::{self, ShardRef, Shards, MAX_SHARDS};
use crate::raw::sync::{self, Collector, Guard, Locked};
use crate::raw::sync::{AtomicPtr, AtomicUsize, Ordering};
use crate::Equivalent;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};

pub(crate) use runtime::IdentityEq;
use shards::default_shards;

/// A concurrent map with the read/dirty design of Go's `sync.Map`, typed.
///
/// Optimized, like Go's, for two common cases: a key written once and read many times (caches
/// that only grow), and threads that read, write and overwrite disjoint sets of keys. Loads
/// take no lock and write no shared memory; writes to keys already published to the read
/// snapshot take no lock either (a compare-and-swap on the key's entry); inserting a new key
/// takes a mutex, which makes maps whose keys churn slower than a sharded or a locked `HashMap`
/// (see "When to use it" in the README of the `syncmemo` crate).
///
/// A map that grows large, or whose lock two threads contend for, splits into a few
/// independent shards chosen by the key's hash, each with Go's read snapshot, dirty map and
/// mutex, so new keys of different shards do not wait on each other and each promotion copies
/// only one shard; `len` stays O(1) and `range` still visits each key at most once. Until then
/// the map is one shard, whose lookups do not wait for the hash to choose a shard.
///
/// # Consistency
///
/// Each operation on one key is linearizable. A write *happens before* any read that observes
/// it. [`range`](Self::range) is **not a snapshot**: it visits each key at most once, may or may
/// not see changes made during the call, and never blocks writers. [`clear`](Self::clear)
/// removes each key atomically, shard after shard. [`len`](Self::len) is exact
/// when no writer runs concurrently.
///
/// # Reentrancy, deadlocks and panics
///
/// No user closure (`load_with`, `load_or_store_with`, `range`) runs while one of the map's
/// locks is held, so closures may call any method of the same map, nested `range` included. The lock is
/// a `parking_lot` mutex, which does not poison: a panic in a closure, in `Hash`, `Eq`,
/// `PartialEq` or `Clone`, propagates to the caller and leaves the map consistent and usable.
/// Under the lock the map calls no user code but `Eq` in lookups that change nothing: each
/// entry keeps its key's hash, so copying, growing and promoting tables never call `Hash`.
///
/// A value (or key) whose `Drop` panics makes the operation during which it is dropped panic
/// after that operation is complete (its change made and counted): like std's collections, the
/// map and its collector drop every other pending value first, then resume the panic (a second
/// panicking `Drop` in the same pass is discarded rather than aborting). Dropping the map drops
/// everything even then. [`len`](Self::len) stays exact.
///
/// # Memory
///
/// Replaced and deleted values are dropped by the map's collector once no reader can still see
/// them: typically after about two thousand later replacements on the same thread (batches of
/// 1024), and at the latest when the map is dropped. The values waiting stay under a bound:
/// with `T` threads writing, `2·T·1024`, plus, for each thread held inside an operation of
/// this map (preempted, or blocked in a `load_with`, `range` or key `Eq` callback), the values
/// live when it last read and `2·T·1024` more; a thread held in another map holds back
/// nothing here. What a thread that exits leaves is freed by the next write that replaces or
/// removes a value. Those drops run at the end of later writes, but
/// never while the map's lock is held (passes that would start there wait for the unlock), so a
/// value's `Drop` may call back into the map (`tests/reentrant_drop.rs`).
/// Deleted keys leave the map at the next promotion of the dirty map, as in Go.
///
/// Each key takes one object holding the key and, when the value type is at most 32 bytes
/// (integers, `String`, `Arc<T>`, `Vec<T>`, small tuples), its first value; larger values and
/// every later value have an object of their own. A replaced first value is dropped like
/// any other (once no reader holds it) but keeps its bytes in the key's object until the
/// key leaves the map.
///
/// Objects of up to 256 bytes live in pages of 1 MiB, taken from the global allocator, once a
/// thread has allocated a quarter page's worth of them one by one (so a small map takes no
/// page): a page spares them the allocator's header (8 bytes of each with glibc). Each
/// thread that allocates takes its own page; a page goes back to the allocator once every
/// object in it is freed, and its freed objects are reused by the map's next writes until then.
/// As with any allocator, a few long-lived keys keep their pages: a map that loses most of
/// its keys but not all may keep pages mostly empty until new keys fill them.
///
/// The memory of dropped values (and of entries deleted before a promotion) is kept for the
/// next writes: at most 32 KiB per writing thread for each of the two (and twice that shared
/// between threads); beyond that it goes back to its page or to the allocator.
///
/// Besides the keys' allocations, each shard holds its read snapshot's table: 9 bytes per
/// bucket, a power of two of buckets and at least 8/7 of one per key, rehashed to fit at
/// each promotion. After new keys, until lookups of them promote the dirty map, the shard also
/// holds the dirty table, which has every key again and room for the new keys of a whole
/// cycle: two to four times the snapshot's buckets. The promotion comes after as many locked
/// lookups as half the shard's keys or, when the table is mostly room its cycle did not use
/// (a map that grew, then stopped), as many as the new keys. 1.5M `u64` keys take 64 resident
/// bytes per key once promoted, and a memoized function's cache of as many, after three calls
/// per key, 63 (`cargo bench --bench memory -- --workloads 1.5M`).
///
/// Tables come from the global allocator. On Linux, the pages inside a table of 32 KiB or more
/// go back to the kernel (`madvise`) when it is freed, so that the memory of the tables a map
/// outgrew leaves the process's resident set even where the allocator keeps it for reuse
/// (glibc's malloc does, for blocks below its mmap threshold).
///
/// # Hashing
///
/// The default hasher, [`RandomState`], is keyed per process and resists hash flooding. For
/// trusted keys a faster hasher cuts the hit path by several nanoseconds, for example
/// `foldhash::fast::RandomState` (which is still randomly seeded):
///
/// ```
/// use syncmap_core::SyncMap;
///
/// let map: SyncMap<u64, &str, foldhash::fast::RandomState> = SyncMap::default();
/// map.store(1, "one");
/// assert_eq!(map.load(&1), Some("one"));
/// ```
///
/// # Thread safety
///
/// `SyncMap<K, V, S>` is `Send` and `Sync` when `K` and `V` are `Send + Sync` (values are read
/// through shared references from any thread and dropped on whichever thread reclaims them) and
/// `S` is `Send`/`Sync`. A map of `Rc`s cannot be shared:
///
/// ```compile_fail
/// use std::rc::Rc;
/// use syncmap_core::SyncMap;
///
/// fn share<T: Sync>(_: &T) {}
/// share(&SyncMap::<u8, Rc<u8>>::new());
/// ```
pub struct SyncMap<K, V, S = RandomState> {
    /// The snapshot pointer of each shard (null past the last shard), kept together and in the
    /// map itself: a lookup follows one of them as it followed the one snapshot pointer of an
    /// unsharded map, with no load of the shards' address first.
    read_ptrs: [AtomicPtr<ReadOnly<K, V>>; MAX_SHARDS],
    /// The read/dirty pairs (their writers' half); their number is a power of two, and those
    /// past the first are allocated when the map splits.
    shards: Shards<K, V>,
    /// The mask of the shards in use: 0 while shard 0 holds every key, `shards.count() - 1` once
    /// the map has split (from the start, for a map made with a number of shards). Changes
    /// once, from 0, with shard 0's lock held (see [`split_locked`](Self::split_locked)).
    shard_mask: AtomicUsize,
    /// How often a thread found shard 0's lock held before the split.
    contended: AtomicUsize,
    /// The empty snapshot shards start with and return to after `clear`, shared so that an
    /// empty map allocates one snapshot, not one per shard.
    empty: Arc<ReadOnly<K, V>>,
    /// The number of entries holding a value.
    live: StripedCounter,
    hasher: S,
    /// Declared last: dropped after the tables, it reclaims everything retired.
    collector: Collector,
}

impl<K, V> SyncMap<K, V, RandomState> {
    /// Creates an empty map with the default, flooding-resistant hasher.
    ///
    /// ```
    /// use syncmap_core::SyncMap;
    ///
    /// let map: SyncMap<String, u32> = SyncMap::new();
    /// assert!(map.is_empty());
    /// ```
    ///
    /// # In a `static`
    ///
    /// `new` is not a `const fn`: a map starts with allocated shards and a randomly seeded
    /// hasher. Make a global map with [`LazyLock`](std::sync::LazyLock), which creates it
    /// on first use (one atomic load per access afterwards):
    ///
    /// ```
    /// use std::sync::LazyLock;
    /// use syncmap_core::SyncMap;
    ///
    /// static SESSIONS: LazyLock<SyncMap<u64, String>> = LazyLock::new(SyncMap::new);
    ///
    /// SESSIONS.store(7, "alice".to_string());
    /// assert_eq!(SESSIONS.load(&7).as_deref(), Some("alice"));
    /// ```
    ///
    /// To cache a function's results, `#[memoize]` (in the `syncmemo` crate) does this for you.
    pub fn new() -> Self {
        Self::with_hasher(RandomState::new())
    }
}

impl<K, V, S> SyncMap<K, V, S> {
    /// Creates an empty map that hashes keys with `hasher`.
    ///
    /// ```
    /// use std::collections::hash_map::RandomState;
    /// use syncmap_core::SyncMap;
    ///
    /// let map = SyncMap::with_hasher(RandomState::new());
    /// map.store("k", 1);
    /// assert_eq!(map.load("k"), Some(1));
    /// ```
    pub fn with_hasher(hasher: S) -> Self {
        Self::splitting_into_shards_with_hasher(default_shards(), hasher)
    }

    /// Creates an empty map with `shards` read/dirty shards from the start (rounded up to a
    /// power of two, at most 64), which never splits. For tests and measurements; the default
    /// suits the machine.
    #[doc(hidden)]
    pub fn with_shards_and_hasher(shards: usize, hasher: S) -> Self {
        let map = Self::splitting_into_shards_with_hasher(shards, hasher);
        map.shards.allocate_rest(&map.empty);
        map.shard_mask.store(map.split_mask(), Ordering::Relaxed);
        map
    }

    /// Creates an empty map with one shard in use, which splits into `shards` (rounded up to a
    /// power of two, at most 64) when its lock is contended or it grows, as the maps of
    /// [`new`](SyncMap::new) do, or when [`split`](Self::split) is called. For tests.
    #[doc(hidden)]
    pub fn splitting_into_shards_with_hasher(shards: usize, hasher: S) -> Self {
        let shards = shards.clamp(1, MAX_SHARDS).next_power_of_two();
        let empty = Arc::new(ReadOnly::shared_empty());
        SyncMap {
            read_ptrs: std::array::from_fn(|i| {
                AtomicPtr::new(if i < shards {
                    Arc::as_ptr(&empty).cast_mut()
                } else {
                    std::ptr::null_mut()
                })
            }),
            shards: Shards::new(shards, &empty),
            shard_mask: AtomicUsize::new(0),
            contended: AtomicUsize::new(0),
            empty,
            live: StripedCounter::default(),
            hasher,
            collector: Collector::recycling(&[
                std::alloc::Layout::new::<V>(),
                EntryPtr::<K, V>::LAYOUT,
            ]),
        }
    }

    /// A reference to the hasher.
    ///
    /// ```
    /// use syncmap_core::SyncMap;
    ///
    /// let map: SyncMap<u8, u8> = SyncMap::new();
    /// let _hasher: &std::collections::hash_map::RandomState = map.hasher();
    /// ```
    pub fn hasher(&self) -> &S {
        &self.hasher
    }

    /// Applies a change of an entry's state to the live count.
    #[inline]
    fn count(&self, delta: LiveDelta, guard: &Guard<'_>) {
        if delta != LiveDelta::Unchanged {
            self.live.add(sync::thread_id(guard), delta.as_isize());
        }
    }

    /// The number of entries.
    ///
    /// Exact when no writer runs concurrently; otherwise some value the count had during the call
    /// or one in flight. O(1): the map keeps striped counters.
    ///
    /// ```
    /// use syncmap_core::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.store(1, "a");
    /// map.store(2, "b");
    /// map.delete(&1);
    /// assert_eq!(map.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        usize::try_from(self.live.sum()).unwrap_or(0)
    }

    /// Whether the map has no entries (same consistency as [`len`](Self::len)).
    ///
    /// ```
    /// use syncmap_core::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// assert!(map.is_empty());
    /// map.store((), ());
    /// assert!(!map.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K, V, S> SyncMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    #[inline]
    fn hash<Q: ?Sized + Hash>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Finds the entry for `key`, whose hash by [`hasher`](Self::hasher) is `hash`: lock-free
    /// in the snapshot, then under the lock when the snapshot's filter says the dirty table may
    /// have it. Calls `f` with the entry, outside the lock.
    #[inline]
    fn with_entry<Q, R>(
        &self,
        hash: u64,
        key: &Q,
        guard: &Guard<'_>,
        f: impl FnOnce(&Entry<K, V>) -> R,
    ) -> Option<R>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let shard = self.shard(hash);
        let read = shard.snapshot(guard);
        let locked;
        let entry: &Entry<K, V> = match find(&read.table, hash, key) {
            Some(entry) => entry,
            None if read.may_be_dirty(hash) || self.resharded(shard) => {
                locked = self.find_locked(hash, key, read)?;
                &locked
            }
            None => return None,
        };
        // One call of `f`, so that it is inlined into the hit path.
        Some(f(entry))
    }

    /// Calls `f` with the value stored for `key`, without cloning it, and returns its result;
    /// `None` if the key is absent.
    ///
    /// The hit path takes no lock and writes no shared memory. `f` runs outside any lock and may
    /// call any method of this map; the value it sees stays valid during the call even if another
    /// thread replaces it.
    ///
    /// # Panics
    ///
    /// Propagates a panic of `f`; the map stays consistent.
    ///
    /// ```
    /// use syncmap_core::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.store("greeting", String::from("hello"));
    /// assert_eq!(map.load_with("greeting", |s| s.len()), Some(5));
    /// assert_eq!(map.load_with("missing", |s| s.len()), None);
    /// ```
    #[inline]
    pub fn load_with<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let guard = sync::enter(&self.collector);
        self.with_entry(self.hash(key), key, &guard, |entry| {
            entry.load(&guard).map(f)
        })
        .flatten()
    }

    /// Returns a clone of the value stored for `key` (Go's `Load`).
    ///
    /// Keys are looked up by any borrowed form, as with `std::collections::HashMap`.
    ///
    /// ```
    /// use syncmap_core::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.store(String::from("a"), 1);
    /// assert_eq!(map.load("a"), Some(1));
    /// assert_eq!(map.load("b"), None);
    /// ```
    #[inline]
    pub fn load<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        self.load_with(key, V::clone)
    }

    /// Whether `key` has a value.
    ///
    /// ```
    /// use syncmap_core::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.store(7, ());
    /// assert!(map.contains_key(&7));
    /// assert!(!map.contains_key(&8));
    /// ```
    #[inline]
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.load_with(key, |_| ()).is_some()
    }

    /// Stores `value` and calls `previous` with the value it replaced, if any, while that value
    /// is still readable.
    fn swap_with<R>(&self, key: K, mut value: V, previous: impl FnOnce(Option<&V>) -> R) -> R {
        let hash = self.hash(&key);
        let mut shard = self.shard(hash);
        shard.probe_hint.prefetch::<K, V>(hash);
        let guard = sync::enter(&self.collector);
        let read = shard.snapshot(&guard);
        let found = find(&read.table, hash, &key);
        if let Some(entry) = found {
            match entry.try_swap(value, &guard, |delta| self.count(delta, &guard)) {
                Ok(old) => {
                    // Leftovers are dropped before the result exists: a panic in their `Drop`
                    // would leak a result already made (rust-lang/rust#47949).
                    drop(key);
                    return previous(old);
                }
                Err(unstored) => value = unstored,
            }
        }
        let missed = found.is_none().then_some(read);
        let (old, unused_key) = {
            let mut dirty = self.lock_routed(&mut shard, hash, &guard);
            let (read, found) = Self::find_current_locked(shard, hash, &key, missed, &guard);
            let (old, delta, unused_key) = if let Some(entry) = found {
                self.unexpunge_locked(&mut dirty, *entry);
                let (old, delta) = entry.swap_locked(value, &guard);
                (old, delta, Some(key))
            } else if let Some(entry) = dirty.find(hash, &key).copied() {
                // Unlike Go, a store to a key only the dirty map has counts as a miss: promotion
                // is what lets the next stores to it skip the lock.
                let (old, delta) = entry.swap_locked(value, &guard);
                self.miss_locked(shard, &mut dirty, &guard);
                (old, delta, Some(key))
            } else {
                self.insert_new_locked(
                    shard,
                    &mut dirty,
                    read,
                    EntryPtr::new(key, hash, value, &guard),
                    &guard,
                );
                (None, LiveDelta::Added, None)
            };
            self.count(delta, &guard);
            (old, unused_key)
        };
        // The key's `Drop` runs outside the lock, and before the result exists (see above).
        drop(unused_key);
        previous(old)
    }

    /// Stores `value` for `key` (Go's `Store`).
    ///
    /// Lock-free when the key is already in the read snapshot; otherwise takes the map's lock.
    ///
    /// ```
    /// use syncmap_core::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.store("k", 1);
    /// map.store("k", 2);
    /// assert_eq!(map.load("k"), Some(2));
    /// ```
    pub fn store(&self, key: K, value: V) {
        self.swap_with(key, value, |_| ());
    }

    /// Stores `value` for `key` and returns the previous value, if any (Go's `Swap`).
    ///
    /// ```
    /// use syncmap_core::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// assert_eq!(map.swap("k", 1), None);
    /// assert_eq!(map.swap("k", 2), Some(1));
    /// ```
    pub fn swap(&self, key: K, value: V) -> Option<V>
    where
        V: Clone,
    {
        self.swap_with(key, value, |old| old.cloned())
    }

    /// Returns the existing value for `key` if present; otherwise stores `value` and returns it.
    /// The `bool` is `true` if the value was loaded, `false` if stored (Go's `LoadOrStore`).
    ///
    /// ```
    /// use syncmap_core::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// assert_eq!(map.load_or_store("k", 1), (1, false));
    /// assert_eq!(map.load_or_store("k", 2), (1, true));
    /// ```
    pub fn load_or_store(&self, key: K, value: V) -> (V, bool)
    where
        V: Clone,
    {
        let hash = self.hash(&key);
        let guard = sync::enter(&self.collector);
        self.load_or_store_hashed(hash, key, value, &guard)
    }

    /// Returns the existing value for `key` if present; otherwise stores the value made by `f`.
    ///
    /// `f` runs only when the key is absent, outside any lock and with no reclamation guard
    /// held, so it may be slow (it holds back no reclamation, in this map or any other) and may
    /// use this map. If another thread stores the key while `f` runs, that value wins: it is returned
    /// with `true`, and `f`'s value is dropped. (For exactly-once computation per key, see
    /// `#[memoize]`'s single flight.)
    ///
    /// # Panics
    ///
    /// Propagates a panic of `f`; nothing is stored.
    ///
    /// ```
    /// use syncmap_core::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// assert_eq!(map.load_or_store_with("k", || 40 + 2), (42, false));
    /// assert_eq!(map.load_or_store_with("k", || unreachable!()), (42, true));
    /// ```
    pub fn load_or_store_with(&self, key: K, f: impl FnOnce() -> V) -> (V, bool)
    where
        V: Clone,
    {
        let hash = self.hash(&key);
        {
            let guard = sync::enter(&self.collector);
            let shard = self.shard(hash);
            shard.probe_hint.prefetch::<K, V>(hash);
            let read = shard.snapshot(&guard);
            if let Some(entry) = find(&read.table, hash, &key) {
                if let Some(value) = entry.load(&guard) {
                    return (value.clone(), true);
                }
            } else if read.may_be_dirty(hash) || self.resharded(shard) {
                if let Some(entry) = self.find_locked(hash, &key, read) {
                    if let Some(value) = entry.load(&guard) {
                        return (value.clone(), true);
                    }
                }
            }
        }
        // `f` runs with no guard held: however slow, it holds back no reclamation.
        let value = f();
        let guard = sync::enter(&self.collector);
        self.load_or_store_hashed(hash, key, value, &guard)
    }

    fn load_or_store_hashed(&self, hash: u64, key: K, value: V, guard: &Guard<'_>) -> (V, bool)
    where
        V: Clone,
    {
        let (outcome, key, value) = self.load_or_store_leaving(hash, key, value, guard);
        // Leftovers are dropped before the result exists: a panic in their `Drop` would leak a
        // result already made (rust-lang/rust#47949).
        drop((key, value));
        Self::cloned_outcome(outcome)
    }

    /// What `load_or_store` returns for `outcome`.
    fn cloned_outcome(outcome: LoadOrStored<'_, V>) -> (V, bool)
    where
        V: Clone,
    {
        match outcome {
            LoadOrStored::Loaded(value) => (value.clone(), true),
            LoadOrStored::Stored(value) => (value.clone(), false),
        }
    }

    /// Deletes `key` and calls `previous` with the value it had, if any, while that value is
    /// still readable.
    fn delete_with<Q, R>(&self, key: &Q, previous: impl FnOnce(Option<&V>) -> R) -> R
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        let guard = sync::enter(&self.collector);
        let read = shard.snapshot(&guard);
        let old = if let Some(entry) = find(&read.table, hash, key) {
            entry.delete(&guard, Unlink::Staying, |delta| self.count(delta, &guard))
        } else if read.may_be_dirty(hash) || self.resharded(shard) {
            self.delete_locked(shard, hash, key, read, &guard)
        } else {
            None
        };
        previous(old)
    }

    /// Deletes `key` and returns the value it had, if any (Go's `LoadAndDelete`).
    ///
    /// ```
    /// use syncmap_core::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.store("k", 1);
    /// assert_eq!(map.load_and_delete("k"), Some(1));
    /// assert_eq!(map.load_and_delete("k"), None);
    /// ```
    pub fn load_and_delete<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        self.delete_with(key, |old| old.cloned())
    }

    /// Deletes `key` (Go's `Delete`).
    ///
    /// ```
    /// use syncmap_core::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.store("k", 1);
    /// map.delete("k");
    /// assert!(!map.contains_key("k"));
    /// ```
    pub fn delete<Q>(&self, key: &Q)
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.delete_with(key, |_| ());
    }

    /// Stores `new` for `key` if its current value equals `old`; returns whether it did (Go's
    /// `CompareAndSwap`). Never inserts: an absent key compares unequal.
    ///
    /// `PartialEq` runs outside the lock.
    ///
    /// ```
    /// use syncmap_core::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.store("k", 1);
    /// assert!(map.compare_and_swap("k", &1, 2));
    /// assert!(!map.compare_and_swap("k", &1, 3));
    /// assert!(!map.compare_and_swap("absent", &0, 1));
    /// assert_eq!(map.load("k"), Some(2));
    /// assert!(!map.contains_key("absent"));
    /// ```
    pub fn compare_and_swap<Q>(&self, key: &Q, old: &V, new: V) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: PartialEq,
    {
        let guard = sync::enter(&self.collector);
        self.with_entry(self.hash(key), key, &guard, |entry| {
            entry.compare_and_swap(old, new, &guard)
        })
        .unwrap_or(false)
    }

    /// Deletes `key` if its current value equals `old`; returns whether it did (Go's
    /// `CompareAndDelete`).
    ///
    /// ```
    /// use syncmap_core::SyncMap;
    ///
    /// let map = SyncMap::new();
    /// map.store("k", 1);
    /// assert!(!map.compare_and_delete("k", &2));
    /// assert!(map.compare_and_delete("k", &1));
    /// assert!(map.is_empty());
    /// ```
    pub fn compare_and_delete<Q>(&self, key: &Q, old: &V) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: PartialEq,
    {
        let guard = sync::enter(&self.collector);
        self.with_entry(self.hash(key), key, &guard, |entry| {
            entry.compare_and_delete(old, &guard, Unlink::Staying, |delta| {
                self.count(delta, &guard)
            })
        })
        .unwrap_or(false)
    }

    /// Calls `f` for each key and value; stops when `f` returns `false` (Go's `Range`).
    ///
    /// **Not a snapshot**: each key is visited at most once; a key stored or deleted during the
    /// call may or may not be visited; values are read when visited. Keys inserted after the
    /// call starts are not visited. If the dirty map of one of the map's shards holds new keys,
    /// `range` first promotes it (O(1)), so every key present when the call starts is visited.
    ///
    /// `f` runs outside any lock and may call any method of this map, nested `range` included.
    /// Values replaced while `range` runs are not dropped before it returns.
    ///
    /// # Panics
    ///
    /// Propagates a panic of `f`; the map stays consistent.
    ///
    /// ```
    /// use syncmap_core::SyncMap;
    ///
    /// let map: SyncMap<u32, u32> = (0..10).map(|i| (i, i * i)).collect();
    /// let mut sum = 0;
    /// map.range(|_, v| {
    ///     sum += v;
    ///     true
    /// });
    /// assert_eq!(sum, 285);
    /// ```
    pub fn range(&self, mut f: impl FnMut(&K, &V) -> bool) {
        let guard = sync::enter(&self.collector);
        // Every shard's snapshot is taken before `f` first runs, so that keys `f` (or another
        // thread) inserts during the call are not visited, as with one snapshot.
        let mut snapshots: [Option<&ReadOnly<K, V>>; MAX_SHARDS] = [None; MAX_SHARDS];
        self.for_each_shard_in_use(|shard| {
            if shard.snapshot(&guard).amended() {
                let mut dirty = self.lock_dirty(shard, &guard);
                if shard.snapshot(&guard).amended() {
                    self.promote_locked(shard, &mut dirty, &guard);
                }
            }
            snapshots[shard.index] = Some(shard.snapshot(&guard));
        });
        for snapshot in snapshots.into_iter().flatten() {
            for entry in snapshot.table.iter() {
                if let Some(value) = entry.load(&guard) {
                    if !f(&entry.key, value) {
                        return;
                    }
                }
            }
        }
    }

    /// Removes every entry (Go's `Clear`).
    ///
    /// The shards are cleared one after the other, each under its lock: concurrent operations
    /// see each key either before or after the clear. O(n): every entry is marked expunged so
    /// that a concurrent lock-free store cannot land in a detached entry.
    ///
    /// ```
    /// use syncmap_core::SyncMap;
    ///
    /// let map: SyncMap<u8, u8> = (0..4).map(|i| (i, i)).collect();
    /// map.clear();
    /// assert!(map.is_empty());
    /// assert_eq!(map.load(&1), None);
    /// ```
    pub fn clear(&self) {
        let guard = sync::enter(&self.collector);
        self.for_each_shard_in_use(|shard| self.clear_shard(shard, &guard));
    }
}

mod locked;
mod runtime;
mod shards;
#[cfg(test)]
mod tests;
mod traits;
