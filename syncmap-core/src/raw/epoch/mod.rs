//! Memory reclamation for the map: epochs per collector (one per map) with birth eras, in the
//! style of interval-based reclamation, whose reader side executes no locked instruction.
//! Pinning is a load of the thread's slot (is a guard of this collector already open?), a load
//! of the collector's epoch and one plain store to the slot; `protect` adds a load of the epoch
//! and a compare; unpinning is a plain (release) store.
//!
//! The collector and its slots are here; [`record`] holds the thread records and ids,
//! [`guard`] the guards that pin and protect, [`retired`] the batches of retired objects, the
//! pools of spare allocations and the birth header, [`pages`] the pages small objects are
//! carved from, and [`barrier`] the light and heavy memory barriers.
//!
//! # Design
//!
//! - Each [`Collector`] has its own `epoch`, advanced only by `fetch_add(1, AcqRel)` when a
//!   batch of retired objects is sealed, and one [`Slot`] per thread id (ids come from a
//!   global list of [`Record`]s, claimed by a thread on first use and given back at exit).
//! - A slot holds its thread's section in that collector: `lo`, the epoch read by the
//!   outermost guard (or `INACTIVE`), and `hi`, an epoch no older than the birth of anything
//!   the thread may hold. Guards of one thread nest (only the outermost one pins); guards of different
//!   collectors are independent, so a thread held inside one map holds back nothing in others.
//! - Every object the map allocates ([`LocalGuard::alloc`]) carries its *birth*, the epoch
//!   when it was allocated, in a header. `protect(p)` loads `p`, then the epoch; if the epoch
//!   moved past the guard's `hi`, it raises `hi`, issues the light barrier and loads `p`
//!   again. Allocating, taking the map's lock ([`LocalGuard::refresh`]) and retiring an object
//!   born later raise `hi` the same way.
//! - Retiring pushes `(ptr, free, birth)` onto the thread's bag in the collector. A full bag
//!   (`BATCH` items) is sealed: tagged `tag = epoch.fetch_add(1) + 1` and moved to the sealed
//!   list. The guard that sealed runs a reclamation pass when it is dropped, after unpinning,
//!   so its own section holds back nothing. A pass: `cur = epoch.load(Acquire); heavy();` read
//!   every active slot's `(lo, hi)`; an object of a batch with `tag <= cur` is freed unless
//!   some slot has `lo < tag` and `hi >= birth`.
//! - `light()` is a compiler fence when `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` is
//!   registered, a `SeqCst` fence otherwise (and always under miri and `cfg(syncmap_tsan)`);
//!   `heavy()` is the `membarrier` syscall, or a `SeqCst` fence. The kernel guarantees that
//!   `membarrier` makes every running thread of the process execute a full barrier, so for the
//!   proof below a light barrier paired with a heavy barrier behaves as two `SeqCst` fences.
//! - A thread that exits gives its record back; if it left objects in some bag, the record is
//!   an orphan that no new thread takes until every collector's next pass has sealed that bag
//!   (passes run [`Collector::adopt_orphans`] when the count of exits changed; a retirement
//!   notices the change and asks for a pass). So the next write that replaces or removes a
//!   value in the map frees what exited threads left.
//!
//! # Why a freed object cannot be in use (the proof)
//!
//! Take an object `x` with birth `b`, unlinked by `U` (the map's swap/CAS) before it was
//! pushed to a bag; so `U` happens-before the sealing `fetch_add` `A` that wrote its batch's
//! tag `t`. Take a reclaimer `C` whose pass frees it: `C` read `cur >= t` from the epoch with
//! acquire; `A` heads a release sequence of RMWs containing that write, so `U` happens-before
//! `C`'s heavy fence `F_C` and its scan. Take a reader `R` whose section pinned with `P` (epoch
//! `e`) and whose load `L` of `x` read a value coherence-ordered before `U`, after the store
//! `H` of the `hi` it checked and the light fence `F_R` that followed `H` (at the pin, or in
//! `protect`'s retry).
//!
//! 1. `F_R` precedes `F_C` in the SC order: otherwise `F_C <S F_R`, `U` hb `F_C`, `F_R` sb `L`
//!    would force `L` to observe `U` or later (C++20 [atomics.order]/4.4). Hence `C`'s scan,
//!    after `F_C`, reads `P`'s `lo` or a later one, and (read after `lo`, both with acquire,
//!    and `hi` stored before `lo` at a pin) `H`'s `hi` or a later one.
//! 2. If it reads a later `lo` (the unpin, or a later pin, both release stores), all of the
//!    section happens-before the scan, hence before the free.
//! 3. Otherwise it reads `lo = e`. Had `e >= t`, `R`'s pin read the epoch from `A`'s release
//!    sequence, so `U` hb `L`, and `L` could not read `x`; so `e < t`. And the `hi` it reads is
//!    at least `H`'s: `protect` returned `x` only after reading from the epoch a value equal to
//!    `H`'s, and that read comes after `L`'s acquire of `x`, which is after `x`'s allocation
//!    read `b` from the same epoch, so `b <= hi` by coherence. (A later `hi` is larger; after
//!    a later pin it is at least this section's by the same coherence.) So `lo < t` and
//!    `hi >= b`: the object is kept.
//!
//! Objects a thread gets other than by `protect` are covered the same way: under the map's
//! lock (the lock orders their publication before the `refresh` read of the epoch), its own
//! allocations (`hi` raised before publication, and the publication is what another thread's
//! unlink reads), and objects it unlinks itself (`hi` raised before the seal's RMW, which the
//! reclaimer's acquire of `cur` synchronizes with). A slot allocated just before a pin is seen
//! by the scan by the argument of step 1, applied to the bucket pointer. An orphan's bag is
//! sealed by a pass that took its record with an acquire that synchronizes with the exiting
//! owner's release, so every unlink in it happens-before the seal.
//!
//! The objects are retired by the map only after they are unlinked, and values are `Send`, so
//! any thread may run the reclaim functions.
//!
//! # Bound
//!
//! With `T` threads writing to a map: bags hold fewer than `T·BATCH` objects, and batches
//! between their seal and their sealer's pass at most `T·BATCH`. A section that stays open (a
//! thread preempted inside an operation, or blocked in a `range`, `load_with` or key `Eq`
//! callback) holds back only objects born at or before its `hi` and sealed after its `lo`:
//! those live when the epoch last moved past its `hi` (the `L` live values and entries), those
//! then waiting in bags or in flight (`2·T·BATCH`), and those born in the epoch `hi` itself
//! (at most one batch per writer, which the previous term already counts for the swaps that
//! retire them). So the pending objects of one map stay under
//! `2·T·BATCH + s·(L + 2·T·BATCH)` with `s` sections held open; `tests/reclamation.rs` checks it
//! with 2 writers doing 2M swaps each on 64 keys (measured peak: about 3,100 values, against a
//! bound of 8,320; 108,642-146,752 with the former process-wide epoch), with a `range`
//! blocked in its closure during 200k swaps (about 2,170 against 4,224), and that what exited
//! writers left is freed by the next write. Recycled allocations ("Recycling" on
//! [`Collector`]) add at most [`SPARE_BYTES`] per thread and twice that shared, per pool and
//! collector.
//!
//! # Measured (map copy in a scratch crate, foldhash, 2 shared cores, noisy)
//!
//! Before births and per-map epochs: LoadMostlyHits (1023 keys): seize 11.6-13.8 ns/op at 1
//! thread, 11.1-13.6 at 2; this scheme 5.3-5.6 (one outlier 7.4) at 1 thread, 5.5-5.6 at 2.
//! StoreExisting (storing to existing keys): seize 59-64 / 77-81 ns/op at 1 / 2 threads, this
//! scheme 49-58 / 58-86. seize (a collector per map, as papaya uses) was not adopted: its read
//! side measured twice as slow here.
//!
//! Births and per-map epochs, against the former process-wide scheme, binaries alternated on
//! a quiet machine (`cargo bench --bench go_workloads -- --workloads
//! LoadMostlyHits,SwapMostlyHits --threads 1,2`, which times the whole call, hashing
//! included): LoadMostlyHits with the default SipHash 18.2 → 19.9 ns at 1 thread (+9%), 9.5-9.8
//! → 10.4-10.5 at 2 (+7-10%); with foldhash 6.9-7.0 → 8.5-8.6 (+23%) and 3.6-3.8 → 4.5 (+20%);
//! SwapMostlyHits 39.5-40.2 → 42.0-42.1 at 1 thread, 76.7-80.0 → 70.9-75.5 at 2. Where the
//! added 1.6-1.7 ns go, by variants measured on the way: the epoch check in `protect` 0.5 ns;
//! looking the slot up by id through a bucket pointer 1.6 ns (so the first [`FIRST_SLOTS`]
//! ids have theirs inside the collector); loading the id from the record 0.3 ns (so the
//! thread-local holds it); storing `hi` at every pin as well as `lo` 3 ns (so the pin stores
//! `lo` only and readers take `max(lo, hi)`). Dropped: a depth counter (no better than the
//! outermost flag), the birth in a header before the object (no different from after it), a
//! thread-local cache of the last collector's slot (1 ns worse).
//!
//! The guard of a lookup lives in registers: nothing takes its address out of line (the first
//! guard of a thread registers through a function that returns the record, not a guard; the
//! rare end of a guard takes its fields by value; the map's locked lookup opens a nested guard
//! of its own). That cut the instructions of a `load` hit from 118 to 106 under callgrind
//! (82.7 before per-map epochs) and LoadMostlyMisses by 7-19%, but not LoadMostlyHits. Where
//! the rest goes, from builds made only to measure (unsound, never committed), each alternated
//! with this build in `--quick` runs (medians of 7, foldhash, 1 thread): without the epoch
//! checks of `protect` 5.9 ns against 6.1; without the pin as well 5.3-5.5 against 5.8-6.3;
//! that and one shard whose snapshot pointer is loaded before hashing 5.1 against 6.3; 9b89db1
//! (process-wide epoch, one snapshot) 4.4-4.7 in the same runs. So the pin and the checks cost
//! about 0.5-0.8 ns together (the checks 0.2), the shard pointer's wait for the hash about
//! 0.4, and 0.4-0.6 remain that none of these explain. Measured and dropped: no epoch check for a first value that lives in its
//! entry (-0.2 ns with foldhash, +0.3 with SipHash, within noise); the shard index without a
//! bounds check; the `membarrier` flag read from the epoch's line instead of a static (both no
//! change).
//!
//! Issue 16's last item (the hit path within 10% of 9b89db1) then cut the instructions of the
//! pin, counted with callgrind on a loop of `load` hits (u64 keys, 1023 of them, fixed hash
//! seeds; `valgrind --tool=callgrind`, inclusive cost of the calling function over 200,000
//! calls, one call and return included): foldhash 112.1 → 96.1 (9b89db1: 92.1), SipHash 186.1
//! → 170.1 (165.0). What went, read in the generated code: `enter` was inlined only by luck of
//! the heuristics (a one-line change made it a call returning the guard through memory, 117
//! instructions): it is `#[inline(always)]`; the guard no longer carries the record, which
//! `LOCAL` holds while it lives (one register and one store, and the flags stop being merged
//! from two paths: 7 instructions to build them became 1); the thread-local `NEAR` gives the
//! slot's byte offset in `first` directly (one load and compare instead of a check of
//! `LOCAL`, a load of the id, a compare, a shift and two adds); the `membarrier` flag is read
//! from the epoch's line (2 instructions). Tried and dropped: the nested case of `enter_with`
//! and the `SeqCst` fence of `light` out of line as `#[cold]` functions (104-105: a call in the
//! function moves the map's pointer to a callee-saved register, and the flags spill to the
//! stack).
//!
//! # Limits
//!
//! A guard leaked with `mem::forget` keeps its section open for good: everything born before
//! its `hi` and retired later stays until the collector is dropped (a bounded amount, as
//! above). A map that is never written again keeps an exited thread's bag until it is dropped.
//! A bag holds up to `BATCH - 1` objects until its thread retires more: an object that holds
//! much memory (a shard's old snapshot, see `shard.rs`) is retired with
//! [`LocalGuard::defer_retire_promptly`], which seals the bag at once, so that the next pass
//! frees it.

use std::alloc::{self, Layout};
use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomData;
use std::mem;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::raw::unwind::Panics;

/// The value of a record's epoch while its thread holds no guard.
const INACTIVE: u64 = u64::MAX;

/// How many retired objects a thread accumulates per collector before sealing a batch and
/// running a reclamation pass (one `membarrier` syscall per pass).
///
/// The syscall interrupts every other running thread of the process (an IPI per core), which
/// showed in profiles of swap-heavy workloads at 2 threads with 256; 1024 made
/// `SwapMostlyHits` at 2 threads go from 54-58 to about 40 ns/op in a quick run (BENCHMARKS.md,
/// "What was tried"), at the cost of more memory pending reclamation (see "Limits").
#[cfg(not(miri))]
pub(crate) const BATCH: usize = 1024;
#[cfg(miri)]
pub(crate) const BATCH: usize = 8;

mod barrier;
mod guard;
mod pages;
mod record;
mod retired;
#[cfg(test)]
mod tests;

pub(crate) use guard::LocalGuard;
use guard::*;
use pages::{Page, Pages, PagesBox};
use record::*;
use retired::*;
pub(crate) use retired::{birth_of, free_allocated};

/// A thread's section in one collector and its bag of retired objects there, and its spare
/// allocations of each pool. Exclusive to the owner of the record with the slot's id (see
/// [`Collector::slot`]), except `lo` and `hi`, which reclaimers read.
///
/// # Invariants
///
/// - `lo == INACTIVE` exactly when no guard of this collector is alive on the owner's thread.
///   Otherwise `lo` is the epoch the outermost guard read when it was created. Guards of one
///   collector on one thread are dropped in the reverse order of their creation (they live on
///   the stack of the map's operations and of the callbacks these run), so the outermost one
///   is dropped last.
/// - While `lo != INACTIVE`, every object the owner may still use, among those reachable from
///   the collector's structures or retired to it, has a birth `<= max(lo, hi)`:
///   `protect` raises `hi` before it returns a pointer loaded with an older `hi`, `alloc`
///   before it hands out an object, the map's locked sections when they take the lock
///   ([`LocalGuard::refresh`]), and retiring before it seals an object born later.
/// - `hi` only grows during a section; each pin sets it to `lo`.
#[repr(align(128))]
struct Slot {
    lo: AtomicU64,
    hi: AtomicU64,
    bag: UnsafeCell<Vec<Retired>>,
    /// An empty vector with capacity for a batch, kept from a freed batch for the next one
    /// (a fresh one would be cold in the cache when the bag fills it).
    next_bag: UnsafeCell<Vec<Retired>>,
    /// `spares[i]`: allocations of the layout of `Collector::pools[i]` whose objects were
    /// dropped: uninitialized memory, owned by the collector, at most that pool's `limit`.
    spares: [UnsafeCell<Vec<NonNull<u8>>>; POOLS],
    /// `pages[i]`: the page this slot takes new objects of `Collector::pools[i]` from, if that
    /// pool has pages (null until the first).
    pages: [UnsafeCell<*mut Page>; POOLS],
    /// `boxed[i]`: objects of `Collector::pools[i]` this slot allocated one by one, counted
    /// up to the pool's `Pages::boxed_first`, after which it takes them from pages.
    boxed: [UnsafeCell<usize>; POOLS],
}

impl Slot {
    const fn new() -> Self {
        Slot {
            lo: AtomicU64::new(INACTIVE),
            hi: AtomicU64::new(0),
            bag: UnsafeCell::new(Vec::new()),
            next_bag: UnsafeCell::new(Vec::new()),
            spares: [const { UnsafeCell::new(Vec::new()) }; POOLS],
            pages: [const { UnsafeCell::new(ptr::null_mut()) }; POOLS],
            boxed: [const { UnsafeCell::new(0) }; POOLS],
        }
    }
}

/// How many bytes of spare allocations a thread keeps per collector, at most.
const SPARE_BYTES: usize = 32 * 1024;

/// Slots kept in the collector itself, for ids `0 .. FIRST_SLOTS`: the first threads to use
/// any map find their slot without loading a bucket pointer (1.6 ns of a 7 ns LoadMostlyHits).
const FIRST_SLOTS: usize = 4;

/// Number of buckets of further slots: bucket `k` holds `2^k` slots, for ids
/// `FIRST_SLOTS + 2^k - 1 .. FIRST_SLOTS + 2^(k+1) - 1`.
const BUCKETS: usize = usize::BITS as usize - 3;

/// The bucket and the index in it of the slot of id `id >= FIRST_SLOTS`.
#[inline]
fn bucket_of(id: usize) -> (usize, usize) {
    let n = id - FIRST_SLOTS + 1;
    let bucket = (usize::BITS - 1 - n.leading_zeros()) as usize;
    (bucket, n - (1 << bucket))
}

/// The collector's epoch, alone in its cache line: readers load it on every `protect`, and
/// only sealing a batch writes it. With [`barrier::fast`], read once when the collector was
/// made (its final value: `detect` has run), which every pin reads: from this line, already
/// in the cache for the epoch, with no load of the static's address.
#[repr(align(128))]
struct Epoch(AtomicU64, bool);

/// The reclamation domain of one map.
///
/// # Invariants
///
/// - `epoch` starts at 1 and is only advanced by `fetch_add(1, AcqRel)` (so every write to it
///   is an RMW and heads a release sequence containing all later ones).
/// - `first[i]` is the slot of id `i`; `buckets[k]` is null or a leaked `Box<[Slot]>` of length
///   `2^k` (the slots of the ids `bucket_of` maps to it), never replaced once set.
/// - The slot for id `i` is only accessed by the thread owning the record with id `i` (see
///   [`Record`]), never across a call to user code (a destructor could re-enter the
///   collector); or by `Drop`. Reclaimers only read its `lo` and `hi`.
/// - Every retired pointer is in exactly one slot's bag or one batch until it is freed, once.
/// - Every spare of pool `i` is memory of that pool (see [`Pool::dispose`]) with layout
///   `pools[i].layout`, holding no object, in exactly one slot's `spares[i]` or in
///   `pools[i].shared`; it leaves by being handed out (then it is the caller's, as if from
///   `Box::new` or a page) or disposed of, once.
/// - A slot's `pages[i]` is null or a page of `pools[i].pages` that the slot owns (see
///   `pages.rs`); every page of a pool is owned by one slot or in the pool's unowned list
///   until it is deallocated.
/// - No two pools have the same layout.
///
/// # Recycling
///
/// The map replaces a value by boxing the new one and retiring the old one, so a write costs a
/// `malloc` and, a batch later, a `free`; with glibc, freeing a batch of 256 overflows the
/// thread cache and both calls take the slow path (60% of a `swap` in a profile). A new key
/// deleted again does the same with its entry. So the collector keeps the memory of retired
/// objects of its pools' layouts (the map's values and entries): a reclamation pass drops each
/// in place and gives its allocation to the reclaiming thread's spares, and the map's next
/// allocation of that layout on that thread takes one. A pass often frees more than its thread
/// will reuse (the batches of other threads too), so what does not fit goes to the pool's
/// shared list, from which a thread that ran out refills (one lock per refill, not per
/// allocation). Spares are bounded (a pool's `limit`, about [`SPARE_BYTES`] per thread, pool
/// and collector, and twice that shared); what exceeds them goes back to its page or to the
/// allocator.
///
/// A pool of small objects (at most `pages::MAX_PAGED` bytes) takes their memory from pages
/// (`pages.rs`) once a thread has allocated `Pages::boxed_first` of them one by one: then only
/// page memory is recycled, and the objects allocated one by one are freed whole. Whether an
/// object is in a page is a bit of its birth word ([`PAGED`]), so it can be freed without the
/// collector (`free_allocated`).
pub(crate) struct Collector {
    epoch: Epoch,
    first: [Slot; FIRST_SLOTS],
    buckets: [AtomicPtr<Slot>; BUCKETS],
    sealed: Mutex<Vec<Batch>>,
    /// The value of [`EXITS`] when this collector last adopted the bags of exited threads.
    adopted: AtomicU64,
    /// The layouts whose allocations [`LocalGuard::defer_recycle`] keeps, first ones first.
    pools: [Option<Pool>; POOLS],
}

// SAFETY: the collector holds retired objects, which the map only retires when they are `Send`
// (the map is `Send`/`Sync` only then), and frees them on whichever thread reclaims. Slots are
// accessed exclusively per the invariants above; the sealed list is behind a mutex.
unsafe impl Send for Collector {}
// SAFETY: as above.
unsafe impl Sync for Collector {}

impl Default for Collector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector {
    /// A collector that recycles nothing.
    pub(crate) fn new() -> Self {
        barrier::detect();
        Collector {
            epoch: Epoch(AtomicU64::new(1), barrier::fast()),
            first: [const { Slot::new() }; FIRST_SLOTS],
            buckets: [const { AtomicPtr::new(ptr::null_mut()) }; BUCKETS],
            sealed: Mutex::new(Vec::new()),
            adopted: AtomicU64::new(EXITS.load(Ordering::Relaxed)),
            pools: [const { None }; POOLS],
        }
    }

    /// A collector that recycles the memory of objects with these layouts (see "Recycling").
    /// Zero-sized layouts, duplicates and layouts beyond the first [`POOLS`] are ignored.
    pub(crate) fn recycling(layouts: &[Layout]) -> Self {
        let mut collector = Self::new();
        let mut next = 0;
        for &object in layouts {
            let layout = Born::<()>::layout(object);
            let known = collector.pools.iter().flatten().any(|p| p.layout == layout);
            if object.size() == 0 || known || next == POOLS {
                continue;
            }
            collector.pools[next] = Some(Pool {
                layout,
                pages: pages::pages_fit(layout).then(|| PagesBox::new(Pages::new(layout))),
                limit: (SPARE_BYTES / layout.size()).clamp(1, BATCH),
                shared: Mutex::new(Vec::new()),
                shared_len: AtomicUsize::new(0),
            });
            next += 1;
        }
        collector
    }

    /// The pool recycling allocations of `Born<T>`, and its index, if any.
    #[inline]
    fn pool_of<T>(&self) -> Option<(usize, &Pool)> {
        let layout = Layout::new::<Born<T>>();
        self.pools
            .iter()
            .enumerate()
            .find_map(|(index, pool)| Some((index, pool.as_ref().filter(|p| p.layout == layout)?)))
    }

    /// Starts a critical section: pointers loaded through the guard stay allocated until it is
    /// dropped.
    #[inline(always)]
    pub(crate) fn enter(&self) -> LocalGuard<'_> {
        let near = NEAR.with(Cell::get);
        let (slot, transient) = if near < FIRST_SLOTS * mem::size_of::<Slot>() {
            // SAFETY: `near` is `id * size_of::<Slot>()` for the id `< FIRST_SLOTS` of this
            // thread's record (`NEAR`'s invariant), so this is `&self.first[id]`, the slot the
            // thread owns, derived from `&self.first` (whose provenance covers the array).
            let slot = unsafe { &*self.first.as_ptr().byte_add(near) };
            (slot, false)
        } else {
            let (id, transient) = match LOCAL.with(Cell::get) {
                Some(record) => (record.id, false),
                None => register(),
            };
            (self.slot(id), transient)
        };
        let guard = self.enter_with(slot);
        if transient {
            guard.state.set(guard.state.get() | TRANSIENT);
        }
        guard
    }

    /// Opens a guard in `slot`, the slot here of the current thread's record. Inlined always,
    /// as `enter` is: the guard then lives in the caller's registers (an out-of-line `enter`
    /// returns it through memory: 117 instructions per `load` hit against 99 inlined).
    #[inline(always)]
    fn enter_with<'c>(&'c self, slot: &'c Slot) -> LocalGuard<'c> {
        let outermost = slot.lo.load(Ordering::Relaxed) == INACTIVE;
        let hi = if outermost {
            // Pin. The slot's `hi` is left as the last section left it (older, so smaller):
            // reclaimers take `max(lo, hi)` as the section's upper end.
            let epoch = self.epoch.0.load(Ordering::Acquire);
            slot.lo.store(epoch, Ordering::Release);
            barrier::light(self.epoch.1);
            epoch
        } else {
            slot.hi
                .load(Ordering::Relaxed)
                .max(slot.lo.load(Ordering::Relaxed))
        };
        LocalGuard {
            collector: self,
            slot,
            hi: Cell::new(hi),
            state: Cell::new(if outermost { OUTERMOST } else { 0 }),
            _not_send: PhantomData,
        }
    }

    /// The slot of the owner of record `id` (only that thread may use it).
    #[inline]
    fn slot(&self, id: usize) -> &Slot {
        if let Some(slot) = self.first.get(id) {
            return slot;
        }
        let (bucket, index) = bucket_of(id);
        let mut slots = self.buckets[bucket].load(Ordering::Acquire);
        if slots.is_null() {
            slots = self.allocate_bucket(bucket);
        }
        // SAFETY: `slots` is a live `[Slot; 2^bucket]` (invariant) and `index < 2^bucket`.
        unsafe { &*slots.add(index) }
    }

    #[cold]
    fn allocate_bucket(&self, bucket: usize) -> *mut Slot {
        let new: Box<[Slot]> = (0..1usize << bucket).map(|_| Slot::new()).collect();
        let new = Box::into_raw(new).cast::<Slot>();
        match self.buckets[bucket].compare_exchange(
            ptr::null_mut(),
            new,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => new,
            Err(existing) => {
                // SAFETY: `new` was never published; rebuild the box we leaked above.
                drop(unsafe {
                    Box::from_raw(ptr::slice_from_raw_parts_mut(new, 1usize << bucket))
                });
                existing
            }
        }
    }

    /// Every slot allocated so far.
    fn slots(&self) -> impl Iterator<Item = &Slot> {
        let buckets = self.buckets.iter().enumerate().flat_map(|(bucket, slots)| {
            let slots = slots.load(Ordering::Acquire);
            let len = if slots.is_null() { 0 } else { 1usize << bucket };
            // SAFETY: a published bucket is a live `[Slot; 2^bucket]` (invariant).
            (0..len).map(move |index| unsafe { &*slots.add(index) })
        });
        self.first.iter().chain(buckets)
    }

    /// Puts `item`, retired by `guard`'s thread, in its bag; seals the bag when full, or at once
    /// if `seal_now` (an object that holds much memory: a map's old snapshot, whose table
    /// would otherwise wait in the bag for up to `BATCH - 1` more retirements). Asks for a
    /// pass at the end of the guard when it sealed or when threads exited since the last
    /// adoption.
    fn retire(&self, guard: &LocalGuard<'_>, item: Retired, seal_now: bool) {
        // Before the object can be sealed, hence freed by another thread's pass, while this
        // thread may still use it (the seal's RMW publishes this store to that pass).
        guard.cover(item.birth);
        let slot = guard.slot;
        debug_assert!(ptr::eq(slot, self.slot(guard.record().id)));
        let full = {
            // SAFETY: the caller owns the record and holds a guard; no other reference to this
            // slot's vector exists (invariants), and none is held across user code.
            let bag = unsafe { &mut *slot.bag.get() };
            if bag.is_empty() {
                guard.record().bags.fetch_add(1, Ordering::Relaxed);
            }
            bag.push(item);
            if bag.len() < BATCH && !seal_now {
                if EXITS.load(Ordering::Relaxed) != self.adopted.load(Ordering::Relaxed) {
                    guard.set_pass_due();
                }
                return;
            }
            // SAFETY: as for `bag`.
            let next = mem::take(unsafe { &mut *slot.next_bag.get() });
            let next = if next.capacity() >= BATCH {
                next
            } else {
                Vec::with_capacity(BATCH)
            };
            mem::replace(bag, next)
        };
        guard.record().bags.fetch_sub(1, Ordering::Relaxed);
        self.seal(full);
        guard.set_pass_due();
    }

    /// Tags retired objects with a new epoch and moves them to the sealed list. Every object
    /// in `items` was unlinked before this call.
    fn seal(&self, items: Vec<Retired>) {
        let tag = self.epoch.0.fetch_add(1, Ordering::AcqRel) + 1;
        self.sealed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Batch { tag, items });
    }

    /// Seals the bags that exited threads left, if threads exited since the last time.
    fn adopt_orphans(&self) {
        let exits = EXITS.load(Ordering::Acquire);
        let seen = self.adopted.load(Ordering::Relaxed);
        if exits == seen
            || self
                .adopted
                .compare_exchange(seen, exits, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        for record in records() {
            if !record.take_orphan() {
                continue;
            }
            // This pass owns the record for a moment, hence its slot (invariants): an exited
            // thread's slot is inactive, and what it retired was unlinked before its release,
            // which happens-before the claim.
            let allocated = record.id < FIRST_SLOTS
                || !self.buckets[bucket_of(record.id).0]
                    .load(Ordering::Acquire)
                    .is_null();
            if allocated {
                let slot = self.slot(record.id);
                // SAFETY: this thread owns the record; the borrow ends before any user code.
                let bag = mem::take(unsafe { &mut *slot.bag.get() });
                if !bag.is_empty() {
                    record.bags.fetch_sub(1, Ordering::Relaxed);
                    self.seal(bag);
                }
            }
            record.release();
        }
    }

    /// Marks the start of a section (the map's locked sections) during which no reclamation
    /// pass, hence no destructor, may run on this thread.
    #[inline]
    pub(crate) fn hold_reclamation(&self) {
        HOLD.with(|hold| hold.set(hold.get() + 1));
    }

    /// Ends a section started by [`hold_reclamation`](Self::hold_reclamation); runs the pass it
    /// deferred, if any, once no section is open. Call it after releasing the lock.
    #[inline]
    pub(crate) fn release_reclamation(&self) {
        let open = HOLD.with(|hold| {
            let open = hold.get() - 1;
            hold.set(open);
            open
        });
        // While unwinding (a panic in user code under the lock), a destructor that panicked
        // too would abort: the pass stays deferred to this thread's next unlock.
        if open == 0 && !std::thread::panicking() && DEFERRED.with(|d| d.replace(false)) {
            self.reclaim(LOCAL.try_with(Cell::get).ok().flatten());
        }
    }

    /// Runs a pass now, or once the thread's locked section ends; never while unwinding.
    fn pass_when_allowed(&self, record: Option<&'static Record>) {
        if std::thread::panicking() {
            return;
        }
        if HOLD.with(Cell::get) > 0 {
            // The caller holds its map's lock: destructors must not run now (one could call back
            // into the map). The pass runs when the lock is released (`release_reclamation`).
            DEFERRED.with(|deferred| deferred.set(true));
        } else {
            self.reclaim(record);
        }
    }

    /// The sections open in this collector: `(lo, hi)` of every active slot. Call after
    /// `barrier::heavy`.
    fn reservations(&self) -> Vec<(u64, u64)> {
        self.slots()
            .filter_map(|slot| {
                let lo = slot.lo.load(Ordering::Acquire);
                (lo != INACTIVE).then(|| (lo, slot.hi.load(Ordering::Acquire).max(lo)))
            })
            .collect()
    }

    /// A reclamation pass: frees every retired object that no open section may still use (the
    /// proof is in the module docs). `record` is the calling thread's, whose spares get the
    /// memory recycled.
    fn reclaim(&self, record: Option<&'static Record>) {
        self.adopt_orphans();
        // Batches with tag <= `current` were sealed (and their objects unlinked) before this
        // acquire load, hence before the heavy barrier.
        let current = self.epoch.0.load(Ordering::Acquire);
        barrier::heavy();
        let reservations = self.reservations();
        let mut ready: Vec<Retired> = Vec::new();
        let mut emptied: Option<Vec<Retired>> = None;
        {
            let mut sealed = self.sealed.lock().unwrap_or_else(PoisonError::into_inner);
            sealed.retain_mut(|batch| {
                if batch.tag > current {
                    return true;
                }
                // A section that may use an object of the batch pinned before the tag, and
                // the object was born at or before its `hi`.
                let held = reservations
                    .iter()
                    .filter(|&&(lo, _)| lo < batch.tag)
                    .map(|&(_, hi)| hi)
                    .max();
                match held {
                    None => {
                        ready.extend_from_slice(&batch.items);
                        batch.items.clear();
                        if emptied.is_none() {
                            emptied = Some(mem::take(&mut batch.items));
                        }
                    }
                    Some(held) => batch.items.retain(|item| {
                        let free = item.birth > held;
                        if free {
                            ready.push(*item);
                        }
                        !free
                    }),
                }
                !batch.items.is_empty()
            });
        }
        // User code (destructors) runs with no lock held and no slot borrowed. A destructor
        // that panics does not stop the pass: every ready object is freed (and its memory
        // recycled) first, then the first panic is resumed (see `unwind`).
        let mut panics = Panics::default();
        for item in &ready {
            // SAFETY: no section can still use the object (proof in the module docs); it
            // leaves the collector here, so it is freed (or, for an object of a pool, dropped)
            // once, with the function it was retired with. After a panic in its destructor, the
            // object's fields were dropped by the unwind and its memory is handled below like
            // any other.
            panics.run(|| unsafe { (item.free)(item.ptr) });
        }
        for (index, pool) in self.pools.iter().enumerate() {
            let Some(pool) = pool else { continue };
            let mut memory = ready
                .iter()
                .filter(|item| usize::from(item.pool) == index)
                .map(|item| {
                    // SAFETY: retired pointers are live allocations, so not null.
                    unsafe { NonNull::new_unchecked(item.ptr.cast::<u8>()) }
                })
                .peekable();
            if memory.peek().is_none() {
                continue;
            }
            if let Some(record) = record {
                // SAFETY: this thread owns `record`, and this borrow of its slot ends before any
                // user code runs (slot invariants).
                let spares = unsafe { &mut *self.slot(record.id).spares[index].get() };
                let room = pool.limit.saturating_sub(spares.len());
                spares.extend(memory.by_ref().take(room));
            }
            if memory.peek().is_some() {
                let mut shared = pool.shared.lock().unwrap_or_else(PoisonError::into_inner);
                let room = (2 * pool.limit).saturating_sub(shared.len());
                shared.extend(memory.by_ref().take(room));
                pool.shared_len.store(shared.len(), Ordering::Relaxed);
            }
            for p in memory {
                // SAFETY: `p` was allocated by the pool (`defer_recycle`'s contract) and its
                // object was dropped above; nothing else refers to it.
                unsafe { pool.dispose(p) };
            }
        }
        if let (Some(record), Some(bag)) = (record, emptied) {
            // SAFETY: this thread owns `record`; no user code runs during the borrow.
            let next_bag = unsafe { &mut *self.slot(record.id).next_bag.get() };
            if next_bag.capacity() < BATCH {
                *next_bag = bag;
            }
        }
        panics.resume();
    }

    /// Memory for a `Born<T>` if a pool recycles its layout: from this thread's spares, or
    /// else from the slot's page if the pool has pages (`true` then: see [`PAGED`]).
    /// `None` if no pool has the layout, or it has no pages and no spare is there.
    #[inline]
    fn pool_memory<T>(&self, slot: &Slot) -> Option<(NonNull<Born<T>>, bool)> {
        let (index, pool) = self.pool_of::<T>()?;
        let paged = pool.pages.is_some();
        if let Some(spare) = self.take_spare_of(slot, index, pool) {
            return Some((spare.cast(), paged));
        }
        let pages = pool.pages.as_ref()?;
        // SAFETY: the caller owns `slot`; the borrow ends here, before any user code.
        let boxed = unsafe { &mut *slot.boxed[index].get() };
        if *boxed < pages.boxed_first {
            *boxed += 1;
            return None;
        }
        // SAFETY: the caller owns `slot`, whose page of pool `index` is of `pages`; the borrow
        // ends here, before any user code.
        let memory = unsafe { pages.alloc(&mut *slot.pages[index].get()) };
        Some((memory.cast(), true))
    }

    /// The pages of all pools, owned or not (for tests: reads every slot's page, so no other
    /// thread may use the collector meanwhile).
    #[cfg(test)]
    pub(crate) fn page_count(&self) -> usize {
        let pools = self.pools.iter().enumerate();
        pools
            .filter_map(|(index, pool)| Some((index, pool.as_ref()?.pages.as_ref()?)))
            .map(|(index, pages)| {
                // SAFETY: no other thread uses the collector (the caller's contract).
                let owned = self
                    .slots()
                    .filter(|slot| !unsafe { *slot.pages[index].get() }.is_null());
                pages.count(owned.count())
            })
            .sum()
    }

    /// Memory for a `Born<T>`, from this thread's spares if a pool recycles its layout and a
    /// spare is there; `None` otherwise.
    #[cfg(test)]
    fn take_spare<T>(&self, slot: &Slot) -> Option<NonNull<Born<T>>> {
        let (index, pool) = self.pool_of::<T>()?;
        self.take_spare_of(slot, index, pool).map(NonNull::cast)
    }

    /// A spare of pool `index` from `slot` (refilled from the shared list if empty).
    #[inline(always)]
    fn take_spare_of(&self, slot: &Slot, index: usize, pool: &Pool) -> Option<NonNull<u8>> {
        // SAFETY: the caller owns `slot` and holds a guard; the borrow ends here, before any
        // user code.
        let spares = unsafe { &mut *slot.spares[index].get() };
        if spares.is_empty() && pool.shared_len.load(Ordering::Relaxed) > 0 {
            let mut shared = pool.shared.lock().unwrap_or_else(PoisonError::into_inner);
            let keep = shared.len().saturating_sub(pool.limit);
            spares.extend(shared.drain(keep..));
            pool.shared_len.store(shared.len(), Ordering::Relaxed);
        }
        spares.pop()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let mut items: Vec<Retired> = Vec::new();
        for batch in self
            .sealed
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            items.extend(batch.items);
        }
        // Ids whose bag here was not empty: their records count one bag less.
        let mut emptied: Vec<usize> = Vec::new();
        let pools = &self.pools;
        // The slots' pages, freed last.
        let mut owned: [Vec<*mut Page>; POOLS] = [const { Vec::new() }; POOLS];
        let mut drain = |id: usize, slot: &mut Slot| {
            let bag = mem::take(slot.bag.get_mut());
            if !bag.is_empty() {
                emptied.push(id);
            }
            items.extend(bag);
            for (index, spares) in slot.spares.iter_mut().enumerate() {
                for spare in spares.get_mut().drain(..) {
                    let pool = pools[index].as_ref().expect("spares imply a pool");
                    // SAFETY: a spare is memory of its pool holding no object, owned by the
                    // collector (invariants); disposed of once, here.
                    unsafe { pool.dispose(spare) };
                }
            }
            for (index, page) in slot.pages.iter_mut().enumerate() {
                let page = mem::replace(page.get_mut(), ptr::null_mut());
                if !page.is_null() {
                    owned[index].push(page);
                }
            }
        };
        for (id, slot) in self.first.iter_mut().enumerate() {
            drain(id, slot);
        }
        for (bucket, slots) in self.buckets.iter_mut().enumerate() {
            let slots = mem::replace(slots.get_mut(), ptr::null_mut());
            if slots.is_null() {
                continue;
            }
            // SAFETY: a published bucket is a leaked `Box<[Slot]>` of length `2^bucket`, and
            // `&mut self` means no guard of this collector exists.
            let mut slots =
                unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(slots, 1usize << bucket)) };
            for (index, slot) in slots.iter_mut().enumerate() {
                drain(FIRST_SLOTS + (1usize << bucket) + index - 1, slot);
            }
        }
        if !emptied.is_empty() {
            for record in records().filter(|record| emptied.contains(&record.id)) {
                record.bag_emptied();
            }
        }
        for pool in self.pools.iter_mut().flatten() {
            let shared = mem::take(
                pool.shared
                    .get_mut()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            for spare in shared {
                // SAFETY: as for the slots' spares above.
                unsafe { pool.dispose(spare) };
            }
        }
        // Every object is freed even if destructors panic; the first panic is resumed after.
        let mut panics = Panics::default();
        for item in items {
            // SAFETY: no guard of this collector exists, so no thread can reach the object;
            // it is freed once, with its own function.
            panics.run(|| unsafe { (item.free)(item.ptr) });
            if item.pool != NO_POOL {
                let pool = self.pools[usize::from(item.pool)]
                    .as_ref()
                    .expect("an object of a pool implies the pool");
                // SAFETY: `free` only dropped the object (by return or unwind); its memory was
                // allocated by the pool (`defer_recycle`'s contract) and is disposed of once,
                // here.
                unsafe { pool.dispose(NonNull::new_unchecked(item.ptr.cast())) };
            }
        }
        // Last: the destructors above may have freed objects into pages.
        for (pool, owned) in self.pools.iter().zip(owned) {
            if let Some(pages) = pool.as_ref().and_then(|pool| pool.pages.as_ref()) {
                // SAFETY: every object of the collector was dropped and disposed of above, and
                // `owned` holds each slot's page once.
                unsafe { pages.free_all(owned.into_iter()) };
            }
        }
        panics.resume();
    }
}

/// Frees a pointer obtained from `Box::into_raw`; the usual `reclaim` for `defer_retire`.
///
/// # Safety
///
/// `ptr` came from `Box::into_raw` and is not used afterwards.
pub(crate) unsafe fn boxed<T>(ptr: *mut T) {
    // SAFETY: forwarded from the caller.
    drop(unsafe { Box::from_raw(ptr) });
}
