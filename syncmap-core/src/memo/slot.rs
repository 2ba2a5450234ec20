//! The per-key cell of single flight: the first caller computes, concurrent callers wait on the
//! same cell, and a caller that recurses into its own key is told so instead of deadlocking.

use std::cell::{Cell, RefCell};
use std::num::NonZeroU64;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::raw::sync::WriteOnce;

use super::flight::{Flight, SyncClaim};
use super::stats::WaitingGauge;

/// A value and when it was computed.
pub(crate) struct Stored<V> {
    pub(crate) value: V,
    pub(crate) at: Stamp,
}

/// When a value was computed, in 8 bytes (an `Option<Instant>` takes 16): nanoseconds from a
/// process-wide origin, offset by [`Stamp::BIAS`] so that instants before the origin (a value
/// aged by the shared tier) are represented too, or [`Stamp::NONE`] for a cache without a TTL.
/// Never zero, so that `Option<Stored<V>>` (the memo cell) is no larger than `Stored<V>`.
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

/// A key's cell. Shared through a [`SlotRef`] by the map and by callers waiting on it.
///
/// # Invariants
///
/// `value` is written at most once, by the owner of the claim in `flight` (the thread or the
/// async computation that computes it), before the owner sets the flight word's ready bit
/// (`Release`); it is read only after that bit is seen (`Acquire`), and never written again.
/// The bit is set only by [`Slot::settle`], right after the write: a slot marked ready holds a
/// value.
pub(crate) struct Slot<V> {
    value: WriteOnce<Stored<V>>,
    /// Who computes the value (the thread of a synchronous caller, or an `async fn` caller's
    /// claim, see `flight.rs`), whether the value is stored, the hits since the eviction
    /// policy last looked (bounded caches only; saturating, lossy), and whether the entry left
    /// the map other than by the policy (so the policy drops it): one word.
    pub(crate) flight: Flight,
}

/// The map's value: a slot compared by identity, so that `compare_and_delete` removes exactly
/// the slot a caller saw (and not a newer one for the same key).
pub(crate) struct SlotRef<V>(pub(crate) SlotArc<Slot<V>>);

/// The slot's shared handle: `triomphe::Arc`, which has no weak count (nothing needs one), so
/// a small value's slot takes 8 bytes less than with `std::sync::Arc` (see the size test
/// below). Under ThreadSanitizer (`--cfg syncmap_tsan`) it is `std::sync::Arc`: TSan does not
/// model the `Acquire` fence after triomphe's last decrement and reports the free that follows
/// as a race, while std's `Arc` uses an `Acquire` load when built with TSan. miri, which models
/// fences, checks triomphe's (the test of a slot freed by the last of several threads, below).
#[cfg(not(syncmap_tsan))]
type SlotArc<T> = triomphe::Arc<T>;
#[cfg(syncmap_tsan)]
type SlotArc<T> = std::sync::Arc<T>;

impl<V> SlotRef<V> {
    /// A new, empty slot.
    pub(crate) fn new() -> Self {
        SlotRef(SlotArc::new(Slot::new()))
    }
}

impl<V> Clone for SlotRef<V> {
    fn clone(&self) -> Self {
        SlotRef(SlotArc::clone(&self.0))
    }
}

impl<V> PartialEq for SlotRef<V> {
    fn eq(&self, other: &Self) -> bool {
        SlotArc::ptr_eq(&self.0, &other.0)
    }
}

/// Compared by `Arc::ptr_eq`: no user code.
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

impl<V> Slot<V> {
    pub(crate) fn new() -> Self {
        Slot {
            value: WriteOnce::new(),
            flight: Flight::new(),
        }
    }

    /// Records a hit for the eviction policy (see [`Flight::touch`](super::flight::Flight::touch)).
    #[inline]
    pub(crate) fn touch(&self) {
        self.flight.touch();
    }

    /// The hits since the last call, resetting them (writes only if there were any).
    pub(crate) fn take_hits(&self) -> u32 {
        self.flight.take_hits()
    }

    /// Marks the entry as removed from the map (so the policy forgets it).
    pub(crate) fn mark_gone(&self) {
        self.flight.mark_gone();
    }

    /// Whether [`mark_gone`](Self::mark_gone) was called.
    pub(crate) fn is_gone(&self) -> bool {
        self.flight.is_gone()
    }

    /// The value, if computed.
    #[inline]
    pub(crate) fn get(&self) -> Option<&Stored<V>> {
        if !self.flight.is_ready() {
            return None;
        }
        // SAFETY: the value was written before the ready bit was set (`Release`), which this
        // thread saw (`Acquire`), and is never written again (the type's invariants); the bit
        // is set only after a write, so there is a value.
        Some(unsafe { self.value.get().unwrap_unchecked() })
    }

    /// Stores the value and wakes the waiters: for the owner of the claim only, once.
    ///
    /// # Safety
    ///
    /// The caller holds the claim in `flight` (from `try_claim` or `try_claim_sync`), and
    /// the value is not stored yet.
    pub(crate) unsafe fn settle(&self, stored: Stored<V>) -> &Stored<V> {
        // SAFETY: the claim makes the caller the only writer, and nobody reads the value
        // before the ready bit, set below.
        unsafe { self.value.write(stored) };
        self.flight.settle();
        // SAFETY: written just above, by this thread.
        unsafe { self.value.get() }.expect("the value was just stored")
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
    pub(crate) fn get_or_compute_aged(
        &self,
        name: &str,
        stamp: bool,
        gauge: Option<&WaitingGauge>,
        compute: impl FnOnce() -> (V, Duration),
        keep: impl FnOnce(&V) -> bool,
    ) -> Outcome<V>
    where
        V: Clone,
    {
        if let Some(stored) = self.get() {
            return Outcome::Cached(stored.value.clone());
        }
        let me = current_thread_id();
        let address = self as *const Self as usize;
        if computing_here(address) {
            panic!(
                "#[memoize] function `{name}` called itself with the same arguments while \
                 computing them: this recursion would never end"
            );
        }
        let mut waiting = None;
        loop {
            match self.flight.try_claim_sync(me) {
                SyncClaim::Won => {
                    drop(waiting.take());
                    let claimed = Claimed(&self.flight);
                    // A computation may have ended between the look at the value and the claim.
                    if let Some(stored) = self.get() {
                        return Outcome::Cached(stored.value.clone());
                    }
                    let (value, age) = {
                        let _here = ComputingHere::push(address);
                        compute()
                    };
                    if !keep(&value) {
                        return Outcome::Uncached(value);
                    }
                    std::mem::forget(claimed);
                    let stored = Stored {
                        value,
                        at: Stamp::taken(stamp, age),
                    };
                    // SAFETY: this thread holds the claim (won above, not released: the
                    // guard is forgotten) and the value was not stored (checked after the
                    // claim; only the claim's owner stores).
                    let stored = unsafe { self.settle(stored) };
                    return Outcome::Cached(stored.value.clone());
                }
                SyncClaim::Thread(owner) => {
                    if waiting.is_none() {
                        waiting = gauge.map(WaitingGauge::enter);
                    }
                    self.flight.wait_blocking(owner, || self.flight.is_ready());
                    if let Some(stored) = self.get() {
                        return Outcome::Cached(stored.value.clone());
                    }
                }
                SyncClaim::Task | SyncClaim::Dead => {
                    drop(waiting.take());
                    if let Some(stored) = self.get() {
                        return Outcome::Cached(stored.value.clone());
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
        let slot = SlotRef::<String>::new();
        slot.0.get_or_compute_aged(
            "f",
            false,
            None,
            || ("value".to_string(), Duration::ZERO),
            |_| true,
        );
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let slot = slot.clone();
                std::thread::spawn(move || {
                    let value = slot.0.get().map(|stored| stored.value.clone());
                    assert_eq!(value.as_deref(), Some("value"));
                })
            })
            .collect();
        drop(slot);
        for reader in readers {
            reader.join().unwrap();
        }
    }

    /// A thread that finds another computing blocks until the value is stored, then reads it:
    /// the body runs once, and both threads get its value. Under miri, an unordered write and
    /// read of the value is a reported data race.
    #[test]
    fn a_thread_waits_for_the_computing_thread_and_reads_its_value() {
        let slot = SlotRef::<String>::new();
        let counters = super::super::stats::Counters::default();
        let gauge = counters.waiting();
        let waiting = || counters.snapshot(0).waiting;
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let call = || {
            let outcome = slot.0.get_or_compute_aged(
                "f",
                false,
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

    #[test]
    fn the_cell_of_a_small_value_takes_no_more_than_the_value_and_its_stamp() {
        // The stamp's niche makes the empty state free: `Option<Stored<u64>>` is 16 bytes.
        assert_eq!(std::mem::size_of::<Option<Stored<u64>>>(), 16);
        // And the flight word packs the computing thread, the async claim, the ready bit, the
        // hits and the `gone` mark, and the waiters' event is one of the process's stripes: the
        // slot's allocation of a `u64` (one count + slot) is 32 bytes (it was 40 with a
        // once-cell's own state word, 56 with an event per slot and `std::sync::Arc`'s two
        // counts, 72 with four fields).
        assert_eq!(std::mem::size_of::<Slot<u64>>() + 8, 32);
    }
}
