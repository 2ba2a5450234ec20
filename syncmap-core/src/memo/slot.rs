//! The per-key cell of single flight: the first caller computes, concurrent callers wait on the
//! same cell, and a caller that recurses into its own key is told so instead of deadlocking.

use std::cell::{Cell, RefCell};
use std::num::NonZeroU64;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use std::marker::PhantomData;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::ptr::NonNull;

// The count is a std atomic even under loom, as triomphe's was: loom would explore every clone
// and drop of a handle (its models ran out of memory); miri and ThreadSanitizer check it.
use std::sync::atomic::{fence, AtomicUsize, Ordering};

use crate::raw::sync::WriteOnce;

use super::flight::{Flight, SyncClaim};
use super::spare_slots;
use super::stats::WaitingGauge;

/// A value and when it was computed: what the cell of a cache with a TTL stores. The value
/// first (`repr(C)`), at the same offset as in [`Plain`], so that a hit finds it without
/// asking the slot's kind.
#[repr(C)]
pub(crate) struct Stored<V> {
    pub(crate) value: V,
    pub(crate) at: Stamp,
}

/// What the cell of a cache without a TTL stores: the value alone (8 bytes less per entry than
/// [`Stored`], which takes the cell of a `u64` with its count from a 48-byte glibc chunk to a
/// 32-byte one).
#[repr(transparent)]
pub(crate) struct Plain<V>(V);

/// What a cell stores: [`Plain`] or [`Stored`].
pub(crate) trait Payload<V> {
    /// Whether the payload keeps when its value was computed (else no clock is read).
    const TIMED: bool;
    fn new(value: V, at: Stamp) -> Self;
    fn value(&self) -> &V;
}

impl<V> Payload<V> for Plain<V> {
    const TIMED: bool = false;

    fn new(value: V, _: Stamp) -> Self {
        Plain(value)
    }

    fn value(&self) -> &V {
        &self.0
    }
}

impl<V> Payload<V> for Stored<V> {
    const TIMED: bool = true;

    fn new(value: V, at: Stamp) -> Self {
        Stored { value, at }
    }

    fn value(&self) -> &V {
        &self.value
    }
}

/// A cell's value as its readers see it: the value, and when it was computed
/// ([`Stamp::NONE`] in a cache without a TTL).
pub(crate) struct Found<'a, V> {
    pub(crate) value: &'a V,
    pub(crate) at: Stamp,
}

/// When a value was computed, in 8 bytes (an `Option<Instant>` takes 16): nanoseconds from a
/// process-wide origin, offset by [`Stamp::BIAS`] so that instants before the origin (a value
/// aged by the shared tier) are represented too, or [`Stamp::NONE`] for a cache without a TTL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp(NonZeroU64);

impl Stamp {
    /// No timestamp: the cache has no TTL, and its values never expire.
    pub(crate) const NONE: Stamp = Stamp(NonZeroU64::MIN);
    /// The origin's encoding: 2^62 ns (146 years) either side of it can be represented.
    const BIAS: u64 = 1 << 62;

    /// The process-wide origin of stamps, fixed at the first stamp taken.
    fn origin() -> Instant {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        *ORIGIN.get_or_init(Instant::now)
    }

    /// The stamp of `at`, saturating 146 years away from the origin.
    pub(crate) fn of(at: Instant) -> Stamp {
        let origin = Self::origin();
        let nanos = |d: Duration| {
            u64::try_from(d.as_nanos())
                .unwrap_or(u64::MAX)
                .min(Self::BIAS - 2)
        };
        let encoded = match at.checked_duration_since(origin) {
            Some(after) => Self::BIAS + nanos(after),
            None => Self::BIAS - nanos(origin.duration_since(at)),
        };
        // At least `BIAS - (BIAS - 2) = 2`: never 0, never `NONE`.
        Stamp(NonZeroU64::new(encoded.max(2)).unwrap_or(NonZeroU64::MAX))
    }

    /// The stamp of a value computed now, `age` ago (a value of the shared tier), or
    /// [`NONE`](Self::NONE) when `stamp` is false (no TTL: no clock read).
    pub(crate) fn taken(stamp: bool, age: Duration) -> Stamp {
        if !stamp {
            return Stamp::NONE;
        }
        let now = Instant::now();
        Stamp::of(now.checked_sub(age).unwrap_or(now))
    }

    /// Whether at least `ttl` elapsed since this stamp (never for [`NONE`](Self::NONE)).
    pub(crate) fn older_than(self, ttl: Duration) -> bool {
        if self == Stamp::NONE {
            return false;
        }
        let now = Stamp::of(Instant::now()).0.get();
        let elapsed = Duration::from_nanos(now.saturating_sub(self.0.get()));
        elapsed >= ttl
    }
}

/// A key's cell: its handles' count and its flight word (the [`Header`], common to both
/// kinds), then its value (`P` is [`Plain`] in a cache without a TTL, [`Stored`] with one).
/// Shared through [`SlotRef`]s by the map and by callers waiting on it.
///
/// # Invariants
///
/// `value` is written at most once, by the owner of the claim in `flight` (the thread or the
/// async computation that computes it), before the owner sets the flight word's ready bit
/// (`Release`); it is read only after that bit is seen (`Acquire`), and never written again.
/// The bit is set only by [`Slot::settle`], right after the write: a slot marked ready holds a
/// value. The flight word's timed bit, set at creation and never changed, says which `P`.
#[repr(C)]
pub(crate) struct Slot<P> {
    header: Header,
    value: WriteOnce<P>,
}

/// The part of a [`Slot`] that does not depend on its kind, first in both (`repr(C)`).
#[repr(C)]
pub(crate) struct Header {
    /// The number of [`SlotRef`]s: the last one to go frees the slot.
    count: AtomicUsize,
    /// Who computes the value (the thread of a synchronous caller, or an `async fn` caller's
    /// claim, see `flight.rs`), whether the value is stored, the slot's kind, the hits since
    /// the eviction policy last looked (bounded caches only; saturating, lossy), and whether
    /// the entry left the map other than by the policy (so the policy drops it): one word.
    pub(crate) flight: Flight,
}

/// The map's value: a counted handle to a slot, compared by identity, so that
/// `compare_and_delete` removes exactly the slot a caller saw (and not a newer one for the
/// same key). One pointer, whatever the slot's kind: the kind is a bit of the slot's flight
/// word, so that a cache without a TTL has slots without a stamp (a `u64`'s slot is 24 bytes,
/// a 32-byte glibc chunk) and every handle stays 8 bytes. (A two-variant enum took 16, which
/// cost more than the smaller slot saved: `docs/performance-notes.md`.)
///
/// # Invariants
///
/// `slot` points at a live `Slot<Plain<V>>` or `Slot<Stored<V>>` (as its timed bit says),
/// allocated by [`SlotRef::with_flight`] (with `spare_slots::allocate`), whose count includes
/// this handle.
pub(crate) struct SlotRef<V> {
    slot: NonNull<Header>,
    _value: PhantomData<V>,
}

// SAFETY: a handle shares the slot's value with other threads (`&V`: requires `V: Sync`) and
// may drop it on any thread (requires `V: Send`); the count and the flight word are atomics.
unsafe impl<V: Send + Sync> Send for SlotRef<V> {}
// SAFETY: as above.
unsafe impl<V: Send + Sync> Sync for SlotRef<V> {}

/// Nothing a panic could leave half-changed: the count and the flight word are atomics, and
/// the value is written once, by a move.
impl<V: RefUnwindSafe> RefUnwindSafe for SlotRef<V> {}
/// See the `RefUnwindSafe` implementation.
impl<V: RefUnwindSafe> UnwindSafe for SlotRef<V> {}

impl<V> SlotRef<V> {
    /// A new, empty slot: one that keeps when its value was computed if `timed`.
    pub(crate) fn new(timed: bool) -> Self {
        Self::with_flight(Flight::new(timed))
    }

    /// A new, empty slot (one that keeps when its value was computed if `timed`) whose
    /// computation thread `thread` (an id of [`current_thread_id`]) owns from the start:
    /// callers wait for that thread, which alone may [`settle`](Self::settle) it or release
    /// its claim (see [`compute_claimed`](Self::compute_claimed)).
    pub(crate) fn claimed_by_thread(thread: u64, timed: bool) -> Self {
        Self::with_flight(Flight::claimed_by_thread(thread, timed))
    }

    /// A slot with `flight`, of the kind its timed bit says (the type's invariants).
    fn with_flight(flight: Flight) -> Self {
        if flight.is_timed() {
            Self::of_kind::<Stored<V>>(flight)
        } else {
            Self::of_kind::<Plain<V>>(flight)
        }
    }

    /// A slot of kind `P` with `flight`, whose timed bit says `P`.
    fn of_kind<P>(flight: Flight) -> Self {
        let slot = spare_slots::allocate(Slot::<P> {
            header: Header {
                count: AtomicUsize::new(1),
                flight,
            },
            value: WriteOnce::new(),
        });
        SlotRef {
            slot: slot.cast(),
            _value: PhantomData,
        }
    }

    /// The cell's address: names it (identity) without a handle.
    pub(crate) fn address(&self) -> usize {
        self.slot.as_ptr() as usize
    }

    #[inline]
    fn header(&self) -> &Header {
        // SAFETY: live while this handle is (the type's invariants); `Header` is the first
        // field of either kind (`repr(C)`).
        unsafe { self.slot.as_ref() }
    }

    /// The slot as the kind it is.
    ///
    /// # Safety
    ///
    /// `P` is the slot's kind: `Stored<V>` if its timed bit is set, else `Plain<V>`.
    #[inline]
    unsafe fn slot<P>(&self) -> &Slot<P> {
        // SAFETY: live, and of kind `P` per the caller; the pointer came from that `Box`.
        unsafe { self.slot.cast::<Slot<P>>().as_ref() }
    }

    /// The slot's single-flight word.
    #[inline]
    pub(crate) fn flight(&self) -> &Flight {
        &self.header().flight
    }

    /// The value, if computed, and when.
    #[inline]
    pub(crate) fn get(&self) -> Option<Found<'_, V>> {
        let timed = self.flight().ready()?;
        // SAFETY: the kind is the one the timed bit says; the value is stored (the ready bit,
        // seen with `Acquire`).
        unsafe {
            Some(if timed {
                let stored = self.slot::<Stored<V>>().value.get();
                Found {
                    value: &stored.value,
                    at: stored.at,
                }
            } else {
                Found {
                    value: &self.slot::<Plain<V>>().value.get().0,
                    at: Stamp::NONE,
                }
            })
        }
    }

    /// The hit path: a clone of the value unless it is absent or `expired`, recording the hit
    /// for the eviction policy if `touch`.
    #[inline]
    pub(crate) fn hit(&self, touch: bool, expired: impl FnOnce(Stamp) -> bool) -> Option<V>
    where
        V: Clone,
    {
        let found = self.get()?;
        if expired(found.at) {
            return None;
        }
        if touch {
            self.flight().touch();
        }
        Some(found.value.clone())
    }

    /// The hits since the last call, resetting them (writes only if there were any).
    pub(crate) fn take_hits(&self) -> u32 {
        self.flight().take_hits()
    }

    /// Marks the entry as removed from the map (so the policy forgets it).
    pub(crate) fn mark_gone(&self) {
        self.flight().mark_gone();
    }

    /// Whether [`mark_gone`](Self::mark_gone) was called.
    pub(crate) fn is_gone(&self) -> bool {
        self.flight().is_gone()
    }

    /// Stores the value computed `age` ago and wakes the waiters: for the owner of the claim
    /// only, once.
    ///
    /// # Safety
    ///
    /// As [`Slot::settle`].
    pub(crate) unsafe fn settle(&self, value: V, age: Duration) {
        // SAFETY: the kind is the one the timed bit says; the rest is forwarded from the
        // caller.
        unsafe {
            if self.flight().is_timed() {
                self.slot::<Stored<V>>().settle(value, age);
            } else {
                self.slot::<Plain<V>>().settle(value, age);
            }
        }
    }

    /// Runs `compute` for a slot whose claim this thread holds since its creation, and
    /// stores the value if `keep(&value)` (else, and if `compute` panics, releases the claim:
    /// a waiter computes in turn). No same-key recursion check is needed before: the slot is
    /// new; a recursive call finds it claimed by this thread and panics (see
    /// [`get_or_compute_aged`](Self::get_or_compute_aged)).
    ///
    /// # Safety
    ///
    /// The current thread holds the slot's claim, from its creation
    /// ([`claimed_by_thread`](Self::claimed_by_thread) with its id), and nothing else settles
    /// or releases it.
    pub(crate) unsafe fn compute_claimed(
        &self,
        compute: impl FnOnce() -> (V, Duration),
        keep: impl FnOnce(&V) -> bool,
    ) -> Outcome<V>
    where
        V: Clone,
    {
        let claimed = Claimed(self.flight());
        let (value, age) = compute();
        if !keep(&value) {
            return Outcome::Uncached(value);
        }
        std::mem::forget(claimed);
        // SAFETY: this thread holds the claim (the caller's contract; not released: the guard
        // is forgotten) and nobody else stores.
        unsafe { self.settle(value, age) };
        let stored = self.get().expect("a settled slot holds its value");
        Outcome::Cached(stored.value.clone())
    }

    /// [`Slot::get_or_compute_aged`] on this slot.
    #[track_caller]
    pub(crate) fn get_or_compute_aged(
        &self,
        name: &str,
        gauge: Option<&WaitingGauge>,
        compute: impl FnOnce() -> (V, Duration),
        keep: impl FnOnce(&V) -> bool,
    ) -> Outcome<V>
    where
        V: Clone,
    {
        // SAFETY: the kind is the one the timed bit says.
        unsafe {
            if self.flight().is_timed() {
                self.slot::<Stored<V>>()
                    .get_or_compute_aged(name, gauge, compute, keep)
            } else {
                self.slot::<Plain<V>>()
                    .get_or_compute_aged(name, gauge, compute, keep)
            }
        }
    }
}

impl<V> Clone for SlotRef<V> {
    fn clone(&self) -> Self {
        // Relaxed, as `Arc`: a new handle is made from an existing one, which keeps the slot.
        let before = self.header().count.fetch_add(1, Ordering::Relaxed);
        if before > isize::MAX as usize {
            // As `Arc`: billions of leaked handles; the count must not wrap.
            std::process::abort();
        }
        SlotRef {
            slot: self.slot,
            _value: PhantomData,
        }
    }
}

impl<V> Drop for SlotRef<V> {
    fn drop(&mut self) {
        let count = &self.header().count;
        // Release, then Acquire by the last holder, as `Arc`: every other holder's use of the
        // slot happens before it is freed.
        if count.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Under loom the slot is leaked instead: loom does not see the count (a std atomic,
        // see its import), so it would take the free for a race with the reads of the holders
        // that dropped their handles before (a plain cache frees a cell as soon as its callers
        // are done with it). Miri and ThreadSanitizer check the free.
        if cfg!(syncmap_loom) {
            return;
        }
        // ThreadSanitizer does not model fences: an `Acquire` load instead (as std's `Arc`).
        #[cfg(syncmap_tsan)]
        count.load(Ordering::Acquire);
        #[cfg(not(syncmap_tsan))]
        fence(Ordering::Acquire);
        let timed = self.flight().is_timed();
        // SAFETY: the last handle: nobody else reaches the slot; it was allocated by
        // `spare_slots::allocate` as the kind its timed bit says (the type's invariants).
        unsafe {
            if timed {
                spare_slots::free(self.slot.cast::<Slot<Stored<V>>>());
            } else {
                spare_slots::free(self.slot.cast::<Slot<Plain<V>>>());
            }
        }
    }
}

impl<V> PartialEq for SlotRef<V> {
    fn eq(&self, other: &Self) -> bool {
        self.slot == other.slot
    }
}

/// Compared by address: no user code.
impl<V> crate::map::IdentityEq for SlotRef<V> {}

#[cfg(not(syncmap_loom))]
thread_local! {
    static THREAD_ID: Cell<u64> = const { Cell::new(0) };
    /// The addresses of the slots this thread computes synchronously, innermost last.
    static COMPUTING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

// Loom runs its threads on one OS thread: a std thread-local would be shared between them.
#[cfg(syncmap_loom)]
loom::thread_local! {
    static THREAD_ID: Cell<u64> = Cell::new(0);
    static COMPUTING: RefCell<Vec<usize>> = RefCell::new(Vec::new());
}

/// A process-unique, non-zero id for the current thread, from the counter of the async
/// computations' tokens (so that a thread's id is never mistaken for a token).
pub(crate) fn current_thread_id() -> u64 {
    THREAD_ID.with(|id| {
        if id.get() == 0 {
            id.set(super::flight::next_token());
        }
        id.get()
    })
}

/// Panics for a call of memoized function `name` made inside its own computation of the same
/// key (waiting for it would never end), at the caller's location.
#[cold]
#[track_caller]
pub(crate) fn same_key_recursion(name: &str) -> ! {
    panic!(
        "#[memoize] function `{name}` called itself with the same arguments while computing \
         them: this recursion would never end"
    )
}

/// Whether this thread is computing `slot` synchronously (it is inside the slot's `compute`).
/// Kept apart from the claim word, which an async computation of the same slot may hold: a
/// recursion is detected whoever holds the claim.
fn computing_here(slot: usize) -> bool {
    COMPUTING.with(|computing| computing.borrow().contains(&slot))
}

/// Pops the slot pushed on [`COMPUTING`] when its computation ends, by return or by unwinding.
struct ComputingHere;

impl ComputingHere {
    fn push(slot: usize) -> ComputingHere {
        COMPUTING.with(|computing| computing.borrow_mut().push(slot));
        ComputingHere
    }
}

impl Drop for ComputingHere {
    fn drop(&mut self) {
        COMPUTING.with(|computing| {
            computing.borrow_mut().pop();
        });
    }
}

/// Frees the claim of a synchronous computation that ends without storing a value, by return
/// or by unwinding (a waiter then computes in turn).
struct Claimed<'a>(&'a Flight);

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// How a [`Slot::get_or_compute_aged`] call ended.
pub(crate) enum Outcome<V> {
    /// Another caller's value, or ours, is in the cell.
    Cached(V),
    /// We computed a value that is not to be kept (for example an `Err`).
    Uncached(V),
    /// We computed a value while an async computation held the cell, or after it abandoned
    /// the cell: that computation stores its own, or the cell is out of the map.
    Unstored(V),
}

impl<P> Drop for Slot<P> {
    fn drop(&mut self) {
        if self.header.flight.is_ready() {
            // SAFETY: the ready bit is set only after the write (the type's invariants), and
            // `&mut self` leaves no reader.
            unsafe { self.value.drop_value() }
        }
    }
}

impl<P> Slot<P> {
    /// The value, if computed.
    #[inline]
    pub(crate) fn get(&self) -> Option<&P> {
        if !self.header.flight.is_ready() {
            return None;
        }
        // SAFETY: the value was written before the ready bit was set (`Release`), which this
        // thread saw (`Acquire`), and is never written again (the type's invariants).
        Some(unsafe { self.value.get() })
    }

    /// Stores the value computed `age` ago (stamped if this kind keeps a stamp) and wakes the
    /// waiters: for the owner of the claim only, once.
    ///
    /// # Safety
    ///
    /// The caller holds the claim in `flight` (from `try_claim` or `try_claim_sync`), and
    /// the value is not stored yet.
    pub(crate) unsafe fn settle<V>(&self, value: V, age: Duration) -> &P
    where
        P: Payload<V>,
    {
        let stored = P::new(value, Stamp::taken(P::TIMED, age));
        // SAFETY: the claim makes the caller the only writer, and nobody reads the value
        // before the ready bit, set below.
        unsafe { self.value.write(stored) };
        self.header.flight.settle();
        // SAFETY: written just above, by this thread.
        unsafe { self.value.get() }
    }

    /// Returns the value, computing it if no caller has: concurrent callers wait for the one
    /// computing. If the computation panics or produces a value not to keep, the cell stays
    /// empty and a waiting caller computes in turn. `compute` returns the value and its age: a
    /// value from a shared tier may be already `age` old, and its timestamp is set back by that
    /// much, so that it expires when its first copy does.
    ///
    /// A caller blocked on another thread's computation is counted in `gauge` until it has
    /// the value or computes in turn. An `async fn` computation of the same cell (only a
    /// hand-made call, `get_or_compute`, on an `async fn`'s cache mixes the two) is not waited
    /// for: its future may be waiting for this very thread to poll it. The caller computes
    /// then without storing its value ([`Outcome::Unstored`]).
    ///
    /// # Panics
    ///
    /// If the current thread is already computing this slot (a recursive call with the same
    /// key), with a message naming `name`, at the caller's location; propagates a panic of
    /// `compute`.
    #[track_caller]
    pub(crate) fn get_or_compute_aged<V>(
        &self,
        name: &str,
        gauge: Option<&WaitingGauge>,
        compute: impl FnOnce() -> (V, Duration),
        keep: impl FnOnce(&V) -> bool,
    ) -> Outcome<V>
    where
        P: Payload<V>,
        V: Clone,
    {
        if let Some(stored) = self.get() {
            return Outcome::Cached(stored.value().clone());
        }
        let me = current_thread_id();
        let address = self as *const Self as usize;
        if computing_here(address) {
            same_key_recursion(name);
        }
        let mut waiting = None;
        loop {
            match self.header.flight.try_claim_sync(me) {
                SyncClaim::Won => {
                    drop(waiting.take());
                    let claimed = Claimed(&self.header.flight);
                    // A computation may have ended between the look at the value and the claim.
                    if let Some(stored) = self.get() {
                        return Outcome::Cached(stored.value().clone());
                    }
                    let (value, age) = {
                        let _here = ComputingHere::push(address);
                        compute()
                    };
                    if !keep(&value) {
                        return Outcome::Uncached(value);
                    }
                    std::mem::forget(claimed);
                    // SAFETY: this thread holds the claim (won above, not released: the
                    // guard is forgotten) and the value was not stored (checked after the
                    // claim; only the claim's owner stores).
                    let stored = unsafe { self.settle(value, age) };
                    return Outcome::Cached(stored.value().clone());
                }
                // The claim of a computation this thread owns without the cell (a plain
                // cache's), which a waiter made in its name: this call is inside it.
                SyncClaim::Thread(owner) if owner == me => same_key_recursion(name),
                SyncClaim::Thread(owner) => {
                    if waiting.is_none() {
                        waiting = gauge.map(WaitingGauge::enter);
                    }
                    self.header
                        .flight
                        .wait_blocking(owner, || self.header.flight.is_ready());
                    if let Some(stored) = self.get() {
                        return Outcome::Cached(stored.value().clone());
                    }
                }
                SyncClaim::Task | SyncClaim::Dead => {
                    drop(waiting.take());
                    if let Some(stored) = self.get() {
                        return Outcome::Cached(stored.value().clone());
                    }
                    let _here = ComputingHere::push(address);
                    return Outcome::Unstored(compute().0);
                }
            }
        }
    }
}

#[cfg(all(test, not(syncmap_loom)))]
mod tests {
    use super::*;

    #[test]
    fn stamps_order_instants_and_measure_age() {
        let now = Instant::now();
        let earlier = now.checked_sub(Duration::from_secs(5)).unwrap_or(now);
        let (a, b) = (Stamp::of(earlier), Stamp::of(now));
        assert!(a.0 <= b.0);
        assert_ne!(a, Stamp::NONE);
        assert!(Stamp::taken(true, Duration::from_secs(5)).older_than(Duration::from_secs(4)));
        assert!(!Stamp::taken(true, Duration::ZERO).older_than(Duration::from_secs(60)));
        // Without a TTL nothing is stamped and nothing expires.
        assert_eq!(Stamp::taken(false, Duration::from_secs(5)), Stamp::NONE);
        assert!(!Stamp::NONE.older_than(Duration::ZERO));
    }

    /// The last of several threads to drop its handle frees the slot and drops its value, after
    /// the others' last reads: miri reports a data race or a use after free otherwise.
    #[test]
    fn a_slot_shared_by_threads_is_freed_once_by_the_last_holder() {
        for timed in [false, true] {
            let slot = SlotRef::<String>::new(timed);
            slot.get_or_compute_aged(
                "f",
                None,
                || ("value".to_string(), Duration::ZERO),
                |_| true,
            );
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    let slot = slot.clone();
                    std::thread::spawn(move || {
                        let value = slot.get().map(|stored| stored.value.clone());
                        assert_eq!(value.as_deref(), Some("value"));
                    })
                })
                .collect();
            drop(slot);
            for reader in readers {
                reader.join().unwrap();
            }
        }
    }

    /// A thread that finds another computing blocks until the value is stored, then reads it:
    /// the body runs once, and both threads get its value. Under miri, an unordered write and
    /// read of the value is a reported data race.
    #[test]
    fn a_thread_waits_for_the_computing_thread_and_reads_its_value() {
        for timed in [false, true] {
            let slot = SlotRef::<String>::new(timed);
            let counters = super::super::stats::Counters::default();
            let gauge = counters.waiting();
            let waiting = || counters.snapshot(0).waiting;
            let runs = std::sync::atomic::AtomicUsize::new(0);
            let call = || {
                let outcome = slot.get_or_compute_aged(
                    "f",
                    Some(gauge),
                    || {
                        runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        // Ends once the other thread waits for this computation.
                        while waiting() == 0 {
                            std::thread::yield_now();
                        }
                        ("value".to_string(), Duration::ZERO)
                    },
                    |_| true,
                );
                match outcome {
                    Outcome::Cached(value) => value,
                    _ => panic!("the value is kept"),
                }
            };
            let (a, b) = std::thread::scope(|scope| {
                let other = scope.spawn(call);
                (call(), other.join().unwrap())
            });
            assert_eq!((a.as_str(), b.as_str()), ("value", "value"));
            assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
            assert_eq!(waiting(), 0);
        }
    }

    /// A slot drops its value once if it has one, and nothing if its computation kept none or
    /// panicked (the value's memory is uninitialized until stored).
    #[test]
    fn a_slot_drops_its_value_once_and_only_if_it_has_one() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        #[derive(Clone)]
        struct Counted;
        impl Drop for Counted {
            fn drop(&mut self) {
                DROPS.fetch_add(1, SeqCst);
            }
        }
        for timed in [false, true] {
            DROPS.store(0, SeqCst);
            let kept = SlotRef::<Counted>::new(timed);
            let value = kept.get_or_compute_aged("f", None, || (Counted, Duration::ZERO), |_| true);
            drop(value);
            assert_eq!(DROPS.load(SeqCst), 1, "the clone returned");
            drop(kept);
            assert_eq!(DROPS.load(SeqCst), 2, "the stored value, with the slot");

            DROPS.store(0, SeqCst);
            let refused = SlotRef::<Counted>::new(timed);
            let value =
                refused.get_or_compute_aged("f", None, || (Counted, Duration::ZERO), |_| false);
            drop(value);
            assert_eq!(DROPS.load(SeqCst), 1, "the value not kept, returned");
            drop(refused);
            assert_eq!(DROPS.load(SeqCst), 1, "an empty slot drops nothing");

            let panicked = SlotRef::<Counted>::new(timed);
            let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                panicked.get_or_compute_aged("f", None, || panic!("body"), |_| true)
            }));
            assert!(unwound.is_err());
            drop(panicked);
            assert_eq!(
                DROPS.load(SeqCst),
                1,
                "a slot whose body panicked drops nothing"
            );
        }
    }

    #[test]
    fn the_cell_of_a_small_value_takes_no_more_than_the_value_and_its_stamp() {
        // The flight word packs the computing thread, the async claim, the ready and timed
        // bits, the hits and the `gone` mark, and the waiters' event is one of the process's
        // stripes. Without a TTL the slot of a `u64` (count, word, value) is 24 bytes, a
        // 32-byte glibc chunk; with one, its stamp makes 32, a 48-byte chunk (it was 40 with a
        // once-cell's state word, 56 with an event per slot and `std::sync::Arc`'s two counts,
        // 72 with four fields).
        assert_eq!(std::mem::size_of::<Slot<Plain<u64>>>(), 24);
        assert_eq!(std::mem::size_of::<Slot<Stored<u64>>>(), 32);
        // The handle in the map's entry: one pointer.
        assert_eq!(std::mem::size_of::<SlotRef<u64>>(), 8);
    }
}
