//! A small epoch-based reclamation scheme built for the map, whose reader side executes no
//! locked instruction: pinning is a load of the global epoch and a plain store to the thread's
//! record, unpinning is a plain (release) store. It exposes the subset of `seize`'s API the map
//! uses (`Collector::enter`, `LocalGuard::{protect, defer_retire, thread_id}`), so switching is a
//! type swap.
//!
//! # Design
//!
//! - `EPOCH`: one global counter, only ever advanced by `fetch_add(1, AcqRel)` (so every write
//!   to it is an RMW and each write heads a release sequence containing all later ones).
//! - A global, append-only list of cache-padded per-thread [`Record`]s. A thread claims one on
//!   first use (`in_use` CAS, acquire) and releases it from a TLS destructor (release), so ids
//!   stay small and are reused. A record's `epoch` is `INACTIVE` or the epoch its owner read
//!   when it last pinned.
//! - Pin (outermost guard only, nesting is counted in `depth`): `e = EPOCH.load(Acquire);
//!   record.epoch.store(e, Release); light()`. Unpin: `record.epoch.store(INACTIVE, Release)`.
//! - `light()` is a compiler fence when `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` is
//!   registered, a `SeqCst` fence otherwise (and always under miri and `cfg(syncmap_tsan)`);
//!   `heavy()` is the `membarrier` syscall, or a `SeqCst` fence. The kernel guarantees that
//!   `membarrier` makes every running thread of the process execute a full barrier, so for the
//!   proof below a light barrier paired with a heavy barrier behaves as two `SeqCst` fences.
//! - Retiring pushes `(ptr, free)` onto the calling thread's bag in the collector (indexed by
//!   its record id, exclusive to the record's owner). A full bag (`BATCH` items) is *sealed*:
//!   tagged `b = EPOCH.fetch_add(1, AcqRel) + 1` and moved to the collector's `sealed` list;
//!   then a reclamation pass runs: `cur = EPOCH.load(Acquire); heavy(); min = min over records
//!   of epoch (Acquire loads, INACTIVE counts as +inf)`; every sealed batch with
//!   `tag <= min(cur, min)` is freed.
//!
//! # Why a freed batch cannot be in use (the proof)
//!
//! Take an object `p` in batch `b`, unlinked by `U` (the map's swap/CAS) before it was pushed to
//! a bag; so `U` happens-before the sealing `fetch_add` `A_b` that wrote `b`. Take a reclaimer
//! `C` whose pass frees the batch: `C` read `cur >= b` from `EPOCH` with acquire; since `A_b`
//! heads a release sequence of RMWs containing the write of `cur`, `U` happens-before `C`'s
//! fence `F_C` (the heavy barrier) and its scan. Take a reader `R` whose critical section
//! loaded `p` by a load `L` (after its pin `P` and light barrier `F_R`), i.e. `L` read a value
//! coherence-ordered before `U`.
//!
//! 1. `F_R` precedes `F_C` in the SC order: otherwise `F_C <S F_R`, `U` hb `F_C`, `F_R` sb `L`
//!    would force `L` to observe `U` or later (C++20 [atomics.order]/4.4).
//! 2. Hence `C`'s scan load of `R.epoch` (after `F_C`) observes `P` or a later write (same rule,
//!    applied to the record's epoch; and to the list head for a record pushed just before `P`).
//! 3. If it observes `P`, whose value `e` `R` read from `EPOCH` with acquire: if `e >= b`, `R`'s
//!    load read from the release sequence of `A_b`, so `U` hb `L` and `L` could not read `p`,
//!    a contradiction; so `e < b`, `min < b`, and the batch is not freed.
//! 4. If it observes a later write, that is `R`'s unpin or a later pin (both release stores;
//!    or, after a thread exit, the release of the record and the next owner's stores, which are
//!    ordered after it by the `in_use` handover). Reading it with acquire makes all of the
//!    section that used `p` happen-before `C`'s scan, hence before the free.
//!
//! The objects are retired by the map only after they are unlinked, and values are `Send`, so
//! any thread may run the reclaim functions.
//!
//! # Promptness
//!
//! Each thread keeps at most `BATCH - 1` unsealed objects per collector (and a thread that
//! exits leaves its partial bag to the next thread that gets its id). The thread that seals a
//! batch is itself pinned at an older epoch (it retires under a guard), so its own pass cannot
//! free that batch: a sealed batch is freed by the next pass of any thread on the collector
//! once every thread has re-pinned or unpinned. So while no thread is held inside a guard, at
//! most about `2 * BATCH` objects per writing thread and collector are pending (2048 values of
//! the map); everything left is freed when the collector is dropped.
//!
//! **That is not a bound** (issue 16, items 4 and 5, open): the epoch and the records are
//! process-wide, so any thread of the process inside a guard of any collector holds back every
//! pass of every collector; a writer preempted in the middle of an operation does so for its
//! whole time slice. Measured (`tests/reclamation.rs`, ignored test): two threads doing 2M
//! stores each on 64 keys of one map, on 2 cores at load average 8, held 108,642-146,752 values
//! alive at peak. The partial bag of a thread that exits waits for the next thread that gets
//! its id. `load_or_store_with` runs its closure with no guard held; `load_with` and `range`
//! hold theirs while their closure runs (the references they hand out need it). Recycled allocations ("Recycling" on [`Collector`]) add at most
//! [`SPARE_BYTES`] per thread and twice that shared, per pool and collector. (Freeing the last
//! batch on the outermost unpin would be prompter but costs a flag check on the read path.)
//!
//! # Measured (map copy in a scratch crate, foldhash, 2 shared cores, noisy)
//!
//! LoadMostlyHits (1023 keys): seize 11.6-13.8 ns/op at 1 thread, 11.1-13.6 at 2; this scheme
//! 5.3-5.6 (one outlier 7.4) at 1 thread, 5.5-5.6 at 2. StoreExisting (storing to existing
//! keys): seize 59-64 / 77-81 ns/op at 1 / 2 threads, this scheme 49-58 / 58-86.
//!
//! # Limits
//!
//! A guard leaked with `mem::forget` keeps its thread pinned (nothing retired afterwards is
//! freed before the collectors are dropped); a thread that exits with a guard still alive (only
//! possible through a guard stored in a thread-local) keeps its record forever.

use std::alloc::{self, Layout};
use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomData;
use std::mem;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
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
/// "What was tried"), at the cost of more memory pending reclamation (see "Promptness").
#[cfg(not(miri))]
const BATCH: usize = 1024;
#[cfg(miri)]
const BATCH: usize = 8;

/// The global epoch. Starts at 1; only advanced with `fetch_add(1, AcqRel)`.
static EPOCH: AtomicU64 = AtomicU64::new(1);

/// Memory barriers: light on the reader side, heavy in reclamation passes.
mod barrier {
    use std::sync::atomic::{self, Ordering};

    #[cfg(all(target_os = "linux", not(miri), not(syncmap_tsan)))]
    mod imp {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Once;

        const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
        const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
        const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

        /// Whether `membarrier` private expedited is registered. Goes from false to true at
        /// most once, inside `detect`, which completes before the first `Collector` exists;
        /// every thread that pins or reclaims holds a collector obtained after that, so it
        /// reads the final value.
        static FAST: AtomicBool = AtomicBool::new(false);
        static DETECT: Once = Once::new();

        fn membarrier(cmd: libc::c_int) -> libc::c_long {
            // SAFETY: `membarrier(cmd, flags = 0, cpu_id = 0)` has no memory-safety
            // preconditions; it only returns an error code for unsupported commands.
            unsafe {
                libc::syscall(
                    libc::SYS_membarrier,
                    cmd,
                    0 as libc::c_int,
                    0 as libc::c_int,
                )
            }
        }

        pub(in super::super) fn detect() {
            DETECT.call_once(|| {
                let supported = membarrier(MEMBARRIER_CMD_QUERY);
                let wanted = (MEMBARRIER_CMD_PRIVATE_EXPEDITED
                    | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED)
                    as libc::c_long;
                if supported >= 0
                    && supported & wanted == wanted
                    && membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0
                {
                    FAST.store(true, Ordering::Relaxed);
                }
            });
        }

        #[inline]
        pub(in super::super) fn fast() -> bool {
            FAST.load(Ordering::Relaxed)
        }

        pub(in super::super) fn membarrier_all() {
            if membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 {
                // Readers rely on it: continuing would be unsound.
                std::process::abort();
            }
        }
    }

    #[cfg(not(all(target_os = "linux", not(miri), not(syncmap_tsan))))]
    mod imp {
        pub(in super::super) fn detect() {}
        #[inline]
        pub(in super::super) fn fast() -> bool {
            false
        }
        pub(in super::super) fn membarrier_all() {
            unreachable!("membarrier is never used on this target")
        }
    }

    pub(super) use imp::detect;

    /// The reader-side barrier between publishing the record's epoch and loading pointers.
    #[inline]
    pub(super) fn light() {
        if imp::fast() {
            atomic::compiler_fence(Ordering::SeqCst);
        } else {
            atomic::fence(Ordering::SeqCst);
        }
    }

    /// The reclaimer-side barrier, paired with every thread's `light` (see the module docs).
    pub(super) fn heavy() {
        atomic::fence(Ordering::SeqCst);
        if imp::fast() {
            imp::membarrier_all();
        }
    }
}

/// One thread's announcement of its critical section.
///
/// # Invariants
///
/// - `epoch`, `depth` are written only by the record's owner (the thread that won `in_use`);
///   ownership passes from one thread to the next by `in_use.store(false, Release)` and a
///   successful `compare_exchange(false, true, Acquire, _)`. Other threads only read `epoch`.
/// - `epoch == INACTIVE` exactly when `depth == 0` (between the owner's operations).
/// - Records are never freed (they are reachable from `REGISTRY` forever); `next` is written
///   before the record is published and never changes afterwards.
#[repr(align(128))]
struct Record {
    epoch: AtomicU64,
    depth: AtomicUsize,
    in_use: AtomicBool,
    id: usize,
    next: AtomicPtr<Record>,
}

/// The head of the list of all records ever created.
static REGISTRY: AtomicPtr<Record> = AtomicPtr::new(ptr::null_mut());
/// The id of the next record created.
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

impl Record {
    /// Claims a free record, or creates one.
    fn claim() -> &'static Record {
        let mut p = REGISTRY.load(Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: records are never freed and were fully initialized before publication
            // (release CAS on the head, acquire loads here).
            let record = unsafe { &*p };
            if !record.in_use.load(Ordering::Relaxed)
                && record
                    .in_use
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return record;
            }
            p = record.next.load(Ordering::Acquire);
        }
        let record: &'static Record = Box::leak(Box::new(Record {
            epoch: AtomicU64::new(INACTIVE),
            depth: AtomicUsize::new(0),
            in_use: AtomicBool::new(true),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            next: AtomicPtr::new(ptr::null_mut()),
        }));
        let mut head = REGISTRY.load(Ordering::Relaxed);
        loop {
            record.next.store(head, Ordering::Relaxed);
            match REGISTRY.compare_exchange_weak(
                head,
                record as *const Record as *mut Record,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return record,
                Err(actual) => head = actual,
            }
        }
    }

    /// Gives the record back for reuse by another thread. Its owner holds no guard on it.
    fn release(&self) {
        self.depth.store(0, Ordering::Relaxed);
        self.epoch.store(INACTIVE, Ordering::Release);
        self.in_use.store(false, Ordering::Release);
    }

    /// Announces a critical section (outermost guard).
    #[inline]
    fn pin(&self) {
        let epoch = EPOCH.load(Ordering::Acquire);
        self.epoch.store(epoch, Ordering::Release);
        barrier::light();
    }

    /// Ends the critical section: everything the owner did in it happens-before any reclaimer
    /// that reads this store.
    #[inline]
    fn unpin(&self) {
        self.epoch.store(INACTIVE, Ordering::Release);
    }
}

/// The smallest epoch of a pinned thread (`INACTIVE` if none). Call after `barrier::heavy`.
fn min_pinned_epoch() -> u64 {
    let mut min = INACTIVE;
    let mut p = REGISTRY.load(Ordering::Acquire);
    while !p.is_null() {
        // SAFETY: see `Record::claim`.
        let record = unsafe { &*p };
        min = min.min(record.epoch.load(Ordering::Acquire));
        p = record.next.load(Ordering::Acquire);
    }
    min
}

thread_local! {
    /// Open sections of this thread during which reclamation passes are deferred.
    static HOLD: Cell<usize> = const { Cell::new(0) };
    /// Whether a pass was deferred by such a section.
    static DEFERRED: Cell<bool> = const { Cell::new(false) };

    /// The current thread's record, for the hot path (no destructor, so no registration check).
    static LOCAL: Cell<Option<&'static Record>> = const { Cell::new(None) };
    /// Releases the current thread's record when the thread exits.
    static OWNER: RecordOwner = const { RecordOwner(Cell::new(None)) };
}

/// Owns the current thread's record; its destructor gives it back.
struct RecordOwner(Cell<Option<&'static Record>>);

impl Drop for RecordOwner {
    fn drop(&mut self) {
        let _ = LOCAL.try_with(|local| local.set(None));
        if let Some(record) = self.0.take() {
            // A guard still alive (one stored in another thread-local) keeps the record.
            if record.depth.load(Ordering::Relaxed) == 0 {
                record.release();
            }
        }
    }
}

/// A retired object and the function that frees it.
struct Retired {
    ptr: *mut (),
    /// Frees the object; for an object of a pool, only drops it in place.
    free: unsafe fn(*mut ()),
    /// The index of the collector's [`Pool`] whose layout the object's allocation has, or
    /// [`NO_POOL`]: once dropped in place, its memory goes to the reclaiming thread's spares of
    /// that pool (or back to the allocator).
    pool: u8,
}

/// [`Retired::pool`] of an object freed whole by its `free` function.
const NO_POOL: u8 = u8::MAX;

/// How many layouts a collector recycles at most (the map's values and entries).
const POOLS: usize = 2;

/// Spare allocations of one layout, shared by the threads of a collector.
struct Pool {
    layout: Layout,
    /// How many spares a slot keeps for this pool.
    limit: usize,
    /// Spares no slot had room for, at most `2 * limit`.
    shared: Mutex<Vec<NonNull<u8>>>,
    /// `shared.len()`, read without the lock to skip it when empty (a hint: refills check
    /// again under the lock).
    shared_len: AtomicUsize,
}

/// Sealed retired objects, all unlinked before `EPOCH` took the value `tag`.
struct Batch {
    tag: u64,
    items: Vec<Retired>,
}

/// A thread's bag of retired objects in one collector, and its spare allocations of each
/// pool, exclusive to the owner of the record with the slot's id (see [`Collector::slot`]).
#[repr(align(128))]
struct Slot {
    bag: UnsafeCell<Vec<Retired>>,
    /// An empty vector with capacity for a batch, kept from a freed batch for the next one
    /// (a fresh one would be cold in the cache when the bag fills it).
    next_bag: UnsafeCell<Vec<Retired>>,
    /// `spares[i]`: allocations of the layout of `Collector::pools[i]` whose objects were
    /// dropped: uninitialized memory, owned by the collector, at most that pool's `limit`.
    spares: [UnsafeCell<Vec<NonNull<u8>>>; POOLS],
}

impl Slot {
    fn new() -> Self {
        Slot {
            bag: UnsafeCell::new(Vec::new()),
            next_bag: UnsafeCell::new(Vec::new()),
            spares: [const { UnsafeCell::new(Vec::new()) }; POOLS],
        }
    }
}

/// How many bytes of spare allocations a thread keeps per collector, at most.
const SPARE_BYTES: usize = 32 * 1024;

/// Number of buckets of slots: bucket `k` holds `2^k` slots, for ids `2^k - 1 .. 2^(k+1) - 1`.
const BUCKETS: usize = usize::BITS as usize;

/// The reclamation domain of one map.
///
/// # Invariants
///
/// - `buckets[k]` is null or a leaked `Box<[Slot]>` of length `2^k`, never replaced once set.
/// - The slot for id `i` is only accessed by the thread owning the record with id `i`, never
///   across a call to user code (a destructor could re-enter the collector); or by `Drop`.
/// - Every retired pointer is in exactly one slot or batch until it is freed, once.
/// - Every spare of pool `i` is a live allocation of the global allocator with layout
///   `pools[i].layout`, holding no object, in exactly one slot's `spares[i]` or in
///   `pools[i].shared`; it leaves by being handed out (then it is the caller's, as if from
///   `Box::new`) or deallocated, once.
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
/// and collector, and twice that shared) and freed with the collector.
pub(crate) struct Collector {
    buckets: [AtomicPtr<Slot>; BUCKETS],
    sealed: Mutex<Vec<Batch>>,
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
            buckets: [const { AtomicPtr::new(ptr::null_mut()) }; BUCKETS],
            sealed: Mutex::new(Vec::new()),
            pools: [const { None }; POOLS],
        }
    }

    /// A collector that recycles the memory of objects with these layouts (see "Recycling").
    /// Zero-sized layouts (no memory), duplicates and layouts beyond the first [`POOLS`] are
    /// ignored.
    pub(crate) fn recycling(layouts: &[Layout]) -> Self {
        let mut collector = Self::new();
        let mut next = 0;
        for &layout in layouts {
            let known = collector.pools.iter().flatten().any(|p| p.layout == layout);
            if layout.size() == 0 || known || next == POOLS {
                continue;
            }
            collector.pools[next] = Some(Pool {
                layout,
                limit: (SPARE_BYTES / layout.size()).clamp(1, BATCH),
                shared: Mutex::new(Vec::new()),
                shared_len: AtomicUsize::new(0),
            });
            next += 1;
        }
        collector
    }

    /// The pool recycling allocations of `T`, and its index, if any.
    #[inline]
    fn pool_of<T>(&self) -> Option<(usize, &Pool)> {
        let layout = Layout::new::<T>();
        self.pools
            .iter()
            .enumerate()
            .find_map(|(index, pool)| Some((index, pool.as_ref().filter(|p| p.layout == layout)?)))
    }

    /// Starts a critical section: pointers loaded through the guard stay allocated until it is
    /// dropped.
    #[inline]
    pub(crate) fn enter(&self) -> LocalGuard<'_> {
        match LOCAL.with(Cell::get) {
            Some(record) => {
                let depth = record.depth.load(Ordering::Relaxed);
                record.depth.store(depth + 1, Ordering::Relaxed);
                if depth == 0 {
                    record.pin();
                }
                LocalGuard {
                    collector: self,
                    record,
                    transient: false,
                    _not_send: PhantomData,
                }
            }
            None => self.enter_slow(),
        }
    }

    #[cold]
    fn enter_slow(&self) -> LocalGuard<'_> {
        let record = Record::claim();
        let registered = OWNER
            .try_with(|owner| {
                owner.0.set(Some(record));
            })
            .is_ok();
        if registered {
            LOCAL.with(|local| local.set(Some(record)));
            self.enter()
        } else {
            // The thread is exiting: use the record for this guard only.
            record.depth.store(1, Ordering::Relaxed);
            record.pin();
            LocalGuard {
                collector: self,
                record,
                transient: true,
                _not_send: PhantomData,
            }
        }
    }

    /// The bag of the thread owning record `id`.
    #[inline]
    fn slot(&self, id: usize) -> &Slot {
        let n = id + 1;
        let bucket = (usize::BITS - 1 - n.leading_zeros()) as usize;
        let index = n - (1 << bucket);
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

    fn retire(&self, record: &Record, item: Retired) {
        let slot = self.slot(record.id);
        let full = {
            // SAFETY: the caller owns `record` and holds a guard; no other reference to this
            // slot's vector exists (invariants), and none is held across user code.
            let bag = unsafe { &mut *slot.bag.get() };
            bag.push(item);
            if bag.len() < BATCH {
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
        // Every object in `full` was unlinked before this RMW.
        let tag = EPOCH.fetch_add(1, Ordering::AcqRel) + 1;
        self.sealed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Batch { tag, items: full });
        if HOLD.with(Cell::get) > 0 {
            // The caller holds its map's lock: destructors must not run now (one could call back
            // into the map). The pass runs when the lock is released (`release_reclamation`).
            DEFERRED.with(|deferred| deferred.set(true));
        } else {
            self.reclaim();
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
            self.reclaim();
        }
    }

    /// A reclamation pass: frees every sealed batch no thread can still be reading.
    fn reclaim(&self) {
        // Batches with tag <= `current` were sealed (and their objects unlinked) before this
        // acquire load, hence before the heavy barrier (module docs, proof).
        let current = EPOCH.load(Ordering::Acquire);
        barrier::heavy();
        let bound = current.min(min_pinned_epoch());
        let mut ready: Vec<Batch> = {
            let mut sealed = self.sealed.lock().unwrap_or_else(PoisonError::into_inner);
            let mut ready = Vec::new();
            let mut i = 0;
            while i < sealed.len() {
                if sealed[i].tag <= bound {
                    ready.push(sealed.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            ready
        };
        // User code (destructors) runs with no lock held and no slot borrowed. A destructor
        // that panics does not stop the pass: every ready object is freed (and its memory
        // recycled) first, then the first panic is resumed (see `unwind`).
        let mut panics = Panics::default();
        for batch in &ready {
            for item in &batch.items {
                // SAFETY: no guard can still reach the object (proof in the module docs); it
                // leaves the collector here, so it is freed (or, for an object of a pool,
                // dropped) once, with the function it was retired with. After a panic in its
                // destructor, the object's fields were dropped by the unwind and its memory is
                // handled below like any other.
                panics.run(|| unsafe { (item.free)(item.ptr) });
            }
        }
        let record = LOCAL.try_with(Cell::get).ok().flatten();
        for (index, pool) in self.pools.iter().enumerate() {
            let Some(pool) = pool else { continue };
            let mut memory = ready
                .iter()
                .flat_map(|batch| &batch.items)
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
                // SAFETY: `p` was allocated with the pool's layout (`defer_recycle`'s contract)
                // and its object was dropped above; nothing else refers to it.
                unsafe { alloc::dealloc(p.as_ptr(), pool.layout) };
            }
        }
        if let (Some(record), Some(mut batch)) = (record, ready.pop()) {
            batch.items.clear();
            // SAFETY: this thread owns `record`; no user code runs during the borrow.
            let next_bag = unsafe { &mut *self.slot(record.id).next_bag.get() };
            if next_bag.capacity() < BATCH {
                *next_bag = batch.items;
            }
        }
        panics.resume();
    }

    /// Memory for a `T`, from this thread's spares if a pool recycles `T`'s layout and a spare
    /// is there; `None` otherwise.
    #[inline]
    fn take_spare<T>(&self, record: &Record) -> Option<NonNull<T>> {
        let (index, pool) = self.pool_of::<T>()?;
        // SAFETY: the caller owns `record` and holds a guard; the borrow ends here, before any
        // user code.
        let spares = unsafe { &mut *self.slot(record.id).spares[index].get() };
        if spares.is_empty() && pool.shared_len.load(Ordering::Relaxed) > 0 {
            let mut shared = pool.shared.lock().unwrap_or_else(PoisonError::into_inner);
            let keep = shared.len().saturating_sub(pool.limit);
            spares.extend(shared.drain(keep..));
            pool.shared_len.store(shared.len(), Ordering::Relaxed);
        }
        spares.pop().map(NonNull::cast)
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
        for (bucket, slots) in self.buckets.iter_mut().enumerate() {
            let slots = mem::replace(slots.get_mut(), ptr::null_mut());
            if slots.is_null() {
                continue;
            }
            // SAFETY: a published bucket is a leaked `Box<[Slot]>` of length `2^bucket`, and
            // `&mut self` means no guard of this collector exists.
            let slots =
                unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(slots, 1usize << bucket)) };
            for slot in Vec::from(slots) {
                items.extend(slot.bag.into_inner());
                for (index, spares) in slot.spares.into_iter().enumerate() {
                    for spare in spares.into_inner() {
                        let pool = self.pools[index].as_ref().expect("spares imply a pool");
                        // SAFETY: a spare is an allocation of its pool's layout holding no
                        // object, owned by the collector (invariants); deallocated once, here.
                        unsafe { alloc::dealloc(spare.as_ptr(), pool.layout) };
                    }
                }
            }
        }
        for pool in self.pools.iter_mut().flatten() {
            let shared = pool
                .shared
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner);
            for spare in shared.drain(..) {
                // SAFETY: as for the slots' spares above.
                unsafe { alloc::dealloc(spare.as_ptr(), pool.layout) };
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
                // allocated with the pool's layout (`defer_recycle`'s contract) and is
                // deallocated once, here.
                unsafe { alloc::dealloc(item.ptr.cast(), pool.layout) };
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

/// A thread's protection: pointers loaded with [`protect`](Self::protect) stay allocated until
/// the guard is dropped. Not `Send`: it refers to the current thread's record.
pub(crate) struct LocalGuard<'a> {
    collector: &'a Collector,
    record: &'static Record,
    /// The record was claimed for this guard alone (the thread's TLS is being destroyed).
    transient: bool,
    _not_send: PhantomData<*mut ()>,
}

impl LocalGuard<'_> {
    /// Loads a pointer that stays valid while the guard is held, if it is only retired
    /// through this guard's collector after being unlinked.
    #[inline]
    pub(crate) fn protect<T>(&self, ptr: &AtomicPtr<T>, order: Ordering) -> *mut T {
        ptr.load(order)
    }

    /// Frees `ptr` with `reclaim` once no guard that may have loaded it remains.
    ///
    /// # Safety
    ///
    /// `ptr` was unlinked (threads entering later cannot reach it), is retired once, its
    /// pointee may be dropped on any thread, and `reclaim(ptr)` is sound once unreachable.
    #[inline]
    pub(crate) unsafe fn defer_retire<T>(&self, ptr: *mut T, reclaim: unsafe fn(*mut T)) {
        // SAFETY: `*mut T` and `*mut ()` are ABI-compatible (thin raw pointers), so calling
        // `reclaim` through this type with the pointer cast back is calling it with `ptr`.
        let free = unsafe { mem::transmute::<unsafe fn(*mut T), unsafe fn(*mut ())>(reclaim) };
        self.collector.retire(
            self.record,
            Retired {
                ptr: ptr.cast(),
                free,
                pool: NO_POOL,
            },
        );
    }

    /// Boxes `value`, in a spare allocation of this thread if there is one. The result is a
    /// pointer as `Box::into_raw` returns it (and may be freed as one).
    #[inline]
    pub(crate) fn alloc<T>(&self, value: T) -> *mut T {
        match self.collector.take_spare::<T>(self.record) {
            Some(memory) => {
                let p = memory.as_ptr();
                // SAFETY: a spare is an allocation of `Layout::new::<T>()` holding no object,
                // now ours; writing a `T` makes it exactly what `Box::new` returns.
                unsafe { p.write(value) };
                p
            }
            None => Box::into_raw(Box::new(value)),
        }
    }

    /// Like [`defer_retire`](Self::defer_retire) with [`boxed`], but keeps the allocation for
    /// [`alloc`](Self::alloc) when a pool of the collector recycles `T`'s layout.
    ///
    /// # Safety
    ///
    /// As for `defer_retire`, and `ptr` came from `Box::into_raw` (or [`alloc`](Self::alloc)).
    #[inline]
    pub(crate) unsafe fn defer_recycle<T>(&self, ptr: *mut T) {
        let Some((pool, _)) = self.collector.pool_of::<T>() else {
            // SAFETY: forwarded from the caller.
            return unsafe { self.defer_retire(ptr, boxed::<T>) };
        };
        unsafe fn drop_in_place<T>(ptr: *mut ()) {
            // SAFETY: `ptr` is the retired `*mut T`, dropped once (the collector's invariants).
            unsafe { ptr::drop_in_place(ptr.cast::<T>()) }
        }
        self.collector.retire(
            self.record,
            Retired {
                ptr: ptr.cast(),
                free: drop_in_place::<T>,
                pool: pool as u8,
            },
        );
    }

    /// A small number identifying the current thread while it lives (reused after it exits).
    #[inline]
    pub(crate) fn thread_id(&self) -> usize {
        self.record.id
    }
}

impl Drop for LocalGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.transient {
            self.record.unpin();
            self.record.release();
            return;
        }
        let depth = self.record.depth.load(Ordering::Relaxed) - 1;
        self.record.depth.store(depth, Ordering::Relaxed);
        if depth == 0 {
            self.record.unpin();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicIsize;
    use std::sync::Arc;

    /// Counts live instances; each one checks it is dropped once.
    struct Tracked {
        live: Arc<AtomicIsize>,
        dropped: AtomicBool,
        value: u64,
    }

    impl Tracked {
        fn new(live: &Arc<AtomicIsize>, value: u64) -> *mut Tracked {
            Box::into_raw(Box::new(Tracked::value(live, value)))
        }

        fn value(live: &Arc<AtomicIsize>, value: u64) -> Tracked {
            live.fetch_add(1, Ordering::Relaxed);
            Tracked {
                live: live.clone(),
                dropped: AtomicBool::new(false),
                value,
            }
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            assert!(!self.dropped.swap(true, Ordering::Relaxed), "dropped twice");
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    #[cfg(not(miri))]
    const SCALE: usize = 100;
    #[cfg(miri)]
    const SCALE: usize = 1;

    #[test]
    fn drop_accounting() {
        let live = Arc::new(AtomicIsize::new(0));
        let collector = Collector::new();
        let n = BATCH * 10 * SCALE;
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for i in 0..n {
                        let guard = collector.enter();
                        let p = Tracked::new(&live, i as u64);
                        // SAFETY: never published, retired once.
                        unsafe { guard.defer_retire(p, boxed::<Tracked>) };
                    }
                });
            }
        });
        let remaining = live.load(Ordering::Relaxed);
        assert!(
            remaining >= 0 && (remaining as usize) < 2 * n,
            "nothing freed before drop: {remaining}"
        );
        drop(collector);
        assert_eq!(live.load(Ordering::Relaxed), 0);
    }

    /// Two writers replace the values of four slots (retiring each old one, or recycling it)
    /// while two readers load them: a reader must never see a value dropped, nor its memory
    /// reused (every value written is distinct, so reuse shows as a change under the reader);
    /// every value is dropped once.
    fn swap_under_readers(collector: Collector, recycle: bool) {
        let live = Arc::new(AtomicIsize::new(0));
        let slots: Vec<AtomicPtr<Tracked>> = (0..4)
            .map(|i| AtomicPtr::new(Tracked::new(&live, i)))
            .collect();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let mut reads = 0u64;
                    while !stop.load(Ordering::Relaxed) || reads < 10 {
                        let guard = collector.enter();
                        for slot in &slots {
                            let p = guard.protect(slot, Ordering::Acquire);
                            // SAFETY: loaded under `guard`; replaced values are retired.
                            let t = unsafe { &*p };
                            let first = t.value;
                            for _ in 0..16 {
                                std::hint::spin_loop();
                            }
                            assert!(!t.dropped.load(Ordering::Relaxed));
                            assert_eq!(t.value, first, "memory reused while protected");
                        }
                        reads += 1;
                    }
                });
            }
            let writers: Vec<_> = (0..2)
                .map(|w| {
                    let (slots, collector, live) = (&slots, &collector, &live);
                    s.spawn(move || {
                        for i in 0..BATCH * 8 * SCALE {
                            let guard = collector.enter();
                            let slot = &slots[(i + w) % slots.len()];
                            let value = Tracked::value(live, (4 + 2 * i + w) as u64);
                            let new = if recycle {
                                guard.alloc(value)
                            } else {
                                Box::into_raw(Box::new(value))
                            };
                            let old = slot.swap(new, Ordering::AcqRel);
                            // SAFETY: `old` was unlinked by the swap; retired once; from
                            // `Box::into_raw` or `alloc`.
                            unsafe {
                                if recycle {
                                    guard.defer_recycle(old)
                                } else {
                                    guard.defer_retire(old, boxed::<Tracked>)
                                }
                            };
                        }
                    })
                })
                .collect();
            for w in writers {
                w.join().unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        });
        for slot in &slots {
            // SAFETY: all threads are done; the current values are owned by the slots, and
            // `alloc` returns what `Box::into_raw` would.
            drop(unsafe { Box::from_raw(slot.load(Ordering::Relaxed)) });
        }
        drop(collector);
        assert_eq!(live.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn readers_never_see_freed_values() {
        swap_under_readers(Collector::new(), false);
    }

    /// With recycling, a value's memory is reused only once no guard can reach it.
    #[test]
    fn recycled_memory_is_not_reused_while_protected() {
        swap_under_readers(Collector::recycling(&[Layout::new::<Tracked>()]), true);
    }

    /// The reclaiming thread keeps the memory of what it reclaimed, and hands it out again.
    #[test]
    fn reclaimed_memory_is_handed_out_again() {
        let live = Arc::new(AtomicIsize::new(0));
        let collector = Collector::recycling(&[Layout::new::<Tracked>()]);
        // Threads of other tests may hold back a pass for a while (the epoch is global).
        let has_spares = |guard: &LocalGuard<'_>| {
            // SAFETY: this thread owns the record; the borrow ends here.
            !unsafe { &*collector.slot(guard.record.id).spares[0].get() }.is_empty()
        };
        let mut rounds = 0;
        loop {
            let guard = collector.enter();
            if has_spares(&guard) {
                break;
            }
            assert!(rounds < BATCH * 1000, "no spare after {rounds} retirements");
            let p = guard.alloc(Tracked::value(&live, rounds as u64));
            // SAFETY: never published; retired once.
            unsafe { guard.defer_recycle(p) };
            rounds += 1;
        }
        assert!(rounds >= BATCH, "spares before any reclamation pass");
        let guard = collector.enter();
        let spare = collector
            .take_spare::<Tracked>(guard.record)
            .expect("the slot has spares");
        // SAFETY: a spare is uninitialized memory for a `Tracked`, now ours; as a `Box` it is
        // freed below.
        unsafe { spare.as_ptr().write(Tracked::value(&live, 0)) };
        // SAFETY: as from `Box::into_raw`.
        drop(unsafe { Box::from_raw(spare.as_ptr()) });
        // Other types than the recycled one get no spare.
        assert!(collector.take_spare::<u64>(guard.record).is_none());
        drop(guard);
        drop(collector);
        assert_eq!(live.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn pools_skip_zero_sized_and_duplicate_layouts() {
        let collector = Collector::recycling(&[
            Layout::new::<()>(),
            Layout::new::<u64>(),
            Layout::new::<i64>(),
            Layout::new::<[u64; 4]>(),
            Layout::new::<u8>(),
        ]);
        let layouts: Vec<Layout> = collector.pools.iter().flatten().map(|p| p.layout).collect();
        assert_eq!(layouts, [Layout::new::<u64>(), Layout::new::<[u64; 4]>()]);
        assert_eq!(collector.pool_of::<i64>().map(|(i, _)| i), Some(0));
        assert_eq!(collector.pool_of::<[u64; 4]>().map(|(i, _)| i), Some(1));
        assert!(collector.pool_of::<u8>().is_none());
    }

    #[test]
    fn nested_guards() {
        let live = Arc::new(AtomicIsize::new(0));
        let collector = Collector::new();
        let other = Collector::new();
        let outer = collector.enter();
        let record = outer.record;
        let pinned = record.epoch.load(Ordering::Relaxed);
        assert_ne!(pinned, INACTIVE);
        let slot = AtomicPtr::new(Tracked::new(&live, 7));
        let seen = outer.protect(&slot, Ordering::Acquire);
        {
            let inner = collector.enter();
            let inner_other = other.enter();
            assert_eq!(inner.thread_id(), outer.thread_id());
            assert_eq!(inner_other.thread_id(), outer.thread_id());
            let old = slot.swap(ptr::null_mut(), Ordering::AcqRel);
            // SAFETY: unlinked by the swap, retired once.
            unsafe { inner.defer_retire(old, boxed::<Tracked>) };
            // Force several passes: the outer pin must keep `seen` alive.
            for i in 0..BATCH * 3 {
                // SAFETY: never published.
                unsafe { inner.defer_retire(Tracked::new(&live, i as u64), boxed::<Tracked>) };
            }
        }
        assert_eq!(
            record.epoch.load(Ordering::Relaxed),
            pinned,
            "inner drop unpinned"
        );
        // SAFETY: still protected by `outer`.
        assert_eq!(unsafe { &*seen }.value, 7);
        drop(outer);
        assert_eq!(record.epoch.load(Ordering::Relaxed), INACTIVE);
        drop(collector);
        assert_eq!(live.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn exited_threads_release_their_records() {
        let live = Arc::new(AtomicIsize::new(0));
        let collector = Collector::new();
        let mut ids = Vec::new();
        for round in 0..(8 * SCALE).min(40) {
            let (collector, live) = (&collector, &live);
            let id = std::thread::scope(|s| {
                s.spawn(move || {
                    let guard = collector.enter();
                    for i in 0..BATCH + 3 {
                        // SAFETY: never published.
                        unsafe {
                            guard.defer_retire(
                                Tracked::new(live, (round + i) as u64),
                                boxed::<Tracked>,
                            )
                        };
                    }
                    guard.thread_id()
                })
                .join()
                .unwrap()
            });
            ids.push(id);
        }
        // Records are reused: far fewer ids than threads (other tests run concurrently).
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert!(distinct.len() < ids.len(), "ids not reused: {ids:?}");
        // Exited threads' records are inactive, so a pass frees the sealed batches.
        let guard = collector.enter();
        drop(guard);
        drop(collector);
        assert_eq!(live.load(Ordering::Relaxed), 0);
    }
}
