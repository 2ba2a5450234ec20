//! The shared entry of Go's design: one per key, referenced by the read snapshot and the dirty
//! map at once, holding the value behind an atomic pointer so that a key already in the read
//! snapshot can be updated without the lock. A small first value lives in the entry's own
//! allocation (see [`Entry::INLINE`]); every later value has its own.

use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::mem::{self, MaybeUninit};
use std::ops::Deref;
use std::ptr::{self, NonNull};

use super::sync::{self, AtomicPtr, AtomicU64, Guard, Ordering};
use super::unwind::Panics;

/// The address of this static marks an entry as *expunged*; it is compared, never dereferenced.
static EXPUNGED_MARK: u8 = 0;

/// The expunged marker as a `*mut V`. Never dereferenced, never retired, never freed.
#[inline]
fn expunged<V>() -> *mut V {
    ptr::addr_of!(EXPUNGED_MARK) as *mut V
}

/// Whether `p` points at a live boxed value (neither null nor the expunged marker).
#[inline]
fn is_live<V>(p: *mut V) -> bool {
    !p.is_null() && p != expunged()
}

/// What a state change did to the number of live entries; the caller feeds it to the map's
/// length counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LiveDelta {
    /// The entry went from deleted to holding a value.
    Added,
    /// The entry went from holding a value to deleted.
    Removed,
    /// The entry held a value before and after, or held none before and after.
    Unchanged,
}

impl LiveDelta {
    /// The change to the number of live entries.
    pub(crate) fn as_isize(self) -> isize {
        match self {
            LiveDelta::Added => 1,
            LiveDelta::Removed => -1,
            LiveDelta::Unchanged => 0,
        }
    }
}

/// One key and its value slot.
///
/// # Invariants
///
/// - `value` is either null (deleted; may be revived without the lock), the expunged marker
///   (deleted and absent from the dirty map), a pointer obtained from `sync::alloc_recycled` that
///   this entry owns, or, when [`Entry::INLINE`], the address of the first value in the
///   entry's own allocation (see [`InlineEntry`]), which is never freed apart from the entry
///   (with drop glue, it is dropped apart from it: see [`CountedEntry`]).
/// - A pointer replaced in `value` is handed to the map's collector with
///   `LocalGuard::defer_retire`, never freed directly, because lock-free readers may still be
///   reading it under their own guard.
/// - null -> expunged happens only under the dirty lock while building a dirty map or clearing;
///   expunged -> null only under the dirty lock, immediately followed by re-inserting the
///   entry in the dirty map.
/// - Entries are owned by the map through [`EntryPtr`]s, see there for when they are freed.
/// - `hash_word` holds the map's hash of `key` but for bits 48..57 ([`Entry::hash`]),
///   computed once, before the entry is allocated, outside the map's lock, and never changed.
///   Every table operation under the lock (the incremental copy, growth, promotion) rehashes
///   with it, never with the user's `Hash`: so no user code that could panic runs between two
///   steps of a locked change of the tables (issue 16; the locked paths call only the user's
///   `Eq`, in lookups that change nothing), and an `Eq` or `Hash` that calls the same map
///   cannot be reached from inside the lock.
/// - Bits 48..57 of `hash_word` ([`HOLDS_BITS`]) are zero, except in a [`CountedEntry`], where
///   they are its holds (see there).
#[repr(C)]
pub(crate) struct Entry<K, V> {
    pub(crate) key: K,
    /// The hash and, in a [`CountedEntry`], its holds (see the invariants).
    hash_word: AtomicU64,
    value: AtomicPtr<V>,
}

/// The bits of [`Entry::hash_word`] that hold a [`CountedEntry`]'s holds instead of the hash.
/// No table reads them: hashbrown takes a bucket's index from the low bits (a table of fewer
/// than 2^48 buckets, 2 PiB of pointers, never reads bit 48) and its tag from the top seven,
/// the shard index comes from bits 32..36 and the snapshot's filter from bits 8..48. So the
/// stored hash, with these bits cleared, finds the same bucket and tag as the full hash a
/// lookup computes. Keeping the holds there saves a word per entry, which takes a counted entry
/// of a `u64` key from a 64-byte glibc chunk to a 48-byte one.
const HOLDS_BITS: u64 = 0x1FF << HOLDS_SHIFT;
/// Where the holds start in [`Entry::hash_word`].
const HOLDS_SHIFT: u32 = 48;
/// One hold.
const HOLD: u64 = 1 << HOLDS_SHIFT;
/// The count of holds (bits 48..56); bit 56 is [`FIRST_DROPS_WITH_ENTRY`].
const HOLDS_COUNT: u64 = 0xFF << HOLDS_SHIFT;
/// The most holds a [`CountedEntry`] takes at once (the count's field holds 255). Besides the
/// entry's own hold and that of a pending reclamation, each is an exchange in progress on the
/// entry: a thread past this many waits for one to end ([`Entry::hold_first`]).
const MAX_HOLDS: u64 = 255;

/// An entry followed by the first value stored for its key, in one allocation: what
/// [`EntryPtr`] allocates when [`Entry::INLINE`] and the value has no drop glue. That saves an
/// allocation per new key and a dependent load per lookup of a value never replaced.
///
/// # Invariants
///
/// `first` is written once, before the entry is published, and never again. Without drop
/// glue, a replaced first value stays readable for as long as the entry lives (it is never
/// dropped, only freed with the entry). Pointers to it are derived from the allocation's
/// pointer, never from a reference to the `Entry` alone.
#[repr(C)]
struct InlineEntry<K, V> {
    entry: Entry<K, V>,
    first: UnsafeCell<MaybeUninit<V>>,
}

/// An [`InlineEntry`] whose first value has drop glue (a `String`, an `Arc`, the memo's cell):
/// what [`EntryPtr`] allocates when [`Entry::COUNTED`]. The first value must be dropped once
/// no reader can hold it, like a boxed value, but its bytes are the entry's, so the entry's
/// memory must outlive that drop.
///
/// # Invariants
///
/// - `inline` is at offset 0, so the first value is at the same offset as in an
///   [`InlineEntry`] and a pointer to the entry is a pointer to the allocation.
/// - The holds (bits [`HOLDS_BITS`] of the entry's `hash_word`, read and changed only with
///   atomic operations on that word, whose hash bits never change) count, besides the mark
///   [`FIRST_DROPS_WITH_ENTRY`]: 1 for the entry itself, 1
///   for a first value unlinked from `value` whose own reclamation ([`drop_first_and_release`])
///   is pending, and 1 for each exchange about to try unlinking it ([`Entry::hold_first`]).
///   A hold is taken before the exchange that unlinks the first value, so whoever sees the
///   first value unlinked (the expunge or the delete that precedes an entry's retirement)
///   sees the hold. The decrement that reaches 0 frees the allocation without dropping
///   anything.
/// - The first value is dropped exactly once: by [`drop_first_and_release`] if it was
///   unlinked while the entry stays in the map ([`Unlink::Staying`]); else with the entry (it
///   is still the current value, or it was unlinked as the entry left the map, which sets the
///   mark). [`drop_first_and_release`] touches only `first` and the holds, so it may run while
///   the entry is still in use; nothing makes a `&mut` to the entry's fields while another
///   reclamation may be pending.
/// - When the entry leaves the map with its own hold alone (besides the mark), its first
///   value can no longer be unlinked on its own: the entry owns its whole allocation, which
///   is retired and recycled like any other ([`EntryPtr::retire`]).
#[repr(C)]
struct CountedEntry<K, V> {
    inline: InlineEntry<K, V>,
}

/// The mark in the holds of a [`CountedEntry`] of a first value unlinked as its entry left the
/// map ([`Unlink::LeavingMap`]): the entry's reclamation drops it.
const FIRST_DROPS_WITH_ENTRY: u64 = 1 << (HOLDS_SHIFT + 8);

/// The holds word of a [`CountedEntry`]: its entry's `hash_word`.
///
/// # Safety
///
/// `entry` points at a live `CountedEntry`.
#[inline]
unsafe fn holds<'a, K, V>(entry: *mut CountedEntry<K, V>) -> &'a AtomicU64 {
    // SAFETY: live, per the caller; a shared reference to the atomic alone.
    unsafe { &(*entry).inline.entry.hash_word }
}

/// Drops an entry that owns its whole allocation (its own hold is the only one left): the
/// current value, the first one in place if it is still current (else its own reclamation
/// dropped it), and the key.
impl<K, V> Drop for CountedEntry<K, V> {
    fn drop(&mut self) {
        let first = self.inline.first.get().cast::<V>();
        if first_drops_with_entry(
            sync::get_mut(&mut self.inline.entry.value),
            first,
            &self.inline.entry.hash_word,
        ) {
            // SAFETY: the first value is initialized (written in `new`) and, being the current
            // value or unlinked as the entry left the map, was not dropped on its own (the
            // type's invariants); `&mut self` makes it ours.
            unsafe { ptr::drop_in_place(first) };
        }
    }
}

/// Whether an entry being reclaimed, whose current value is `value`, drops its first value
/// `first` itself: the first value was never unlinked, or was unlinked as the entry left the
/// map (the mark in `holds`). Else its own reclamation drops it.
fn first_drops_with_entry<V>(value: *mut V, first: *mut V, holds: &AtomicU64) -> bool {
    value == first || holds.load(Ordering::Acquire) & FIRST_DROPS_WITH_ENTRY != 0
}

/// Whether a [`CountedEntry`] that left the map holds only its own hold (the mark aside): no
/// reclamation of its first value is pending, and none can start (see [`EntryPtr::retire`]),
/// so the entry owns its whole allocation and is retired or freed like any other.
///
/// # Safety
///
/// `entry` points at a live `CountedEntry`.
unsafe fn owns_its_allocation<K, V>(entry: *mut CountedEntry<K, V>) -> bool {
    // SAFETY: live, per the caller. Acquire: a first value's reclamation that gave up its
    // hold dropped the value before.
    unsafe { holds(entry).load(Ordering::Acquire) & HOLDS_COUNT == HOLD }
}

/// The first value of a [`CountedEntry`], with the allocation's provenance.
///
/// # Safety
///
/// `entry` points at a live `CountedEntry` (allocated by [`EntryPtr::new`]).
unsafe fn first_of<K, V>(entry: *mut CountedEntry<K, V>) -> *mut V {
    // SAFETY: in bounds of the live allocation, per the caller; no reference is made.
    unsafe { UnsafeCell::raw_get(ptr::addr_of!((*entry).inline.first)).cast::<V>() }
}

/// Gives up one hold of a [`CountedEntry`]; the last one frees its memory (its fields were
/// dropped by then, or moved: nothing is dropped here).
///
/// # Safety
///
/// `entry` points at a live `CountedEntry`, and the caller owns one of its holds, which it
/// does not use afterwards.
unsafe fn release<K, V>(entry: *mut CountedEntry<K, V>) {
    // SAFETY: live, per the caller.
    let holds = unsafe { holds(entry) };
    // Release: our accesses to the fields happen before the free; the Acquire of the last
    // decrement makes the other holder's accesses happen before it too (as `Arc` does).
    if holds.fetch_sub(HOLD, Ordering::AcqRel) & HOLDS_COUNT == HOLD {
        // SAFETY: from `alloc_recycled` (in `EntryPtr::new`); the last hold is ours, so no
        // other thread uses it. Freed as `ManuallyDrop`: its fields were dropped already.
        unsafe { sync::free_recycled(entry.cast::<mem::ManuallyDrop<CountedEntry<K, V>>>()) };
    }
}

/// Reclaims a first value unlinked from its [`CountedEntry`] (retired by [`Entry::retire`]):
/// drops it and gives up its hold. Runs on any thread, possibly while the entry itself is
/// still in the map, so it touches only `first` and the holds.
///
/// # Safety
///
/// `entry` is the allocation of an entry whose first value was unlinked, no reader can reach
/// that value any more, and this runs once per such unlink (there is at most one).
unsafe fn drop_first_and_release<K, V>(entry: *mut CountedEntry<K, V>) {
    let mut panics = Panics::default();
    // SAFETY: the first value is initialized (written in `new`), unlinked and unreachable, and
    // dropped only here (per the type's invariants).
    panics.run(|| unsafe { ptr::drop_in_place(first_of(entry)) });
    // SAFETY: this unlink's hold, taken by `Entry::hold_first` before the exchange.
    unsafe { release(entry) };
    panics.resume();
}

/// Reclaims a [`CountedEntry`] that left the map: drops its key, its current value, its first
/// value if that is the entry's to drop ([`first_drops_with_entry`]), and gives up the
/// entry's hold.
///
/// # Safety
///
/// `entry` left the map and no thread can reach it (its collector decided so, or the map is
/// being dropped); this runs once.
unsafe fn drop_entry_and_release<K, V>(entry: *mut CountedEntry<K, V>) {
    let mut panics = Panics::default();
    // SAFETY: the entry is unreachable: nobody else touches its key or its value. A pending
    // reclamation of its first value touches only `first` and the holds, in the same word as
    // the hash: so no `&mut` to the whole `Entry` is made here, only to the key.
    unsafe {
        let fields = ptr::addr_of_mut!((*entry).inline.entry);
        let first = first_of(entry);
        let current = (*fields).value.load(Ordering::Acquire);
        if first_drops_with_entry(current, first, holds(entry)) {
            panics.run(|| ptr::drop_in_place(first));
        }
        panics.run(|| ptr::drop_in_place(ptr::addr_of_mut!((*fields).key)));
        if is_live(current) && current != first {
            // A boxed current value, as `Entry`'s `Drop` frees it.
            panics.run(|| sync::free_recycled(current));
        }
        release(entry);
    }
    panics.resume();
}

// SAFETY: an `Entry` owns a `K` and (through `value`) a `V`; sharing it across threads hands out
// `&K` and `&V` (requires `Sync`) and may drop or replace them on another thread (requires `Send`).
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for Entry<K, V> {}
// SAFETY: as above: moving the entry moves ownership of its key and value.
unsafe impl<K: Send, V: Send> Send for Entry<K, V> {}

impl<K, V> Entry<K, V> {
    /// The map's hash of the key, but for bits 48..57 (zero here; see [`HOLDS_BITS`] for why
    /// no table tells the difference).
    #[inline]
    pub(crate) fn hash(&self) -> u64 {
        // Relaxed: the hash bits never change after the entry is published (which orders its
        // initialization before any reader).
        self.hash_word.load(Ordering::Relaxed) & !HOLDS_BITS
    }

    /// Whether the first value lives in the entry: small values do. A replaced first value
    /// keeps its bytes until the entry is freed, so that readers may still be reading it; the
    /// size bound caps what an updated key keeps this way (32 bytes, the size of the
    /// allocation it saved).
    const INLINE: bool = mem::size_of::<V>() <= 32;

    /// Whether the entry is a [`CountedEntry`]: its first value lives in it and has drop glue,
    /// so that it must be dropped when replaced (once no reader holds it) and the entry's
    /// memory must outlive that.
    pub(crate) const COUNTED: bool = Self::INLINE && mem::needs_drop::<V>();

    /// The address of the first value when [`Self::INLINE`] (0 otherwise), for comparisons
    /// only: it is computed from `&self`, whose provenance does not cover it.
    #[inline]
    fn first_addr(&self) -> usize {
        if Self::INLINE {
            ptr::from_ref(self).addr() + mem::offset_of!(InlineEntry<K, V>, first)
        } else {
            0
        }
    }

    /// Whether `p`, loaded from `value`, is a value of its own allocation (not the first
    /// value in the entry, not null, not the expunged marker).
    #[inline]
    fn is_boxed(&self, p: *mut V) -> bool {
        is_live(p) && p.addr() != self.first_addr()
    }

    /// The [`CountedEntry`] whose first value `current` (loaded from `value`) is, if it is one.
    #[inline]
    fn counted_of(&self, current: *mut V) -> Option<*mut CountedEntry<K, V>> {
        (Self::COUNTED && is_live(current) && !self.is_boxed(current)).then(|| {
            // `current` was loaded from `value`, which `new` derived from the allocation:
            // stepping back to the entry keeps its provenance.
            current
                .wrapping_byte_sub(mem::offset_of!(InlineEntry<K, V>, first))
                .cast::<CountedEntry<K, V>>()
        })
    }

    /// Before an exchange that may unlink the first value of a [`CountedEntry`] (`current`,
    /// loaded from `value` under a guard): takes the hold its retirement will need, so that
    /// the hold is there before anyone can see the first value unlinked (see
    /// [`EntryPtr::retire`]). Returns the entry if it took one, for [`Self::unhold`] should
    /// the exchange fail.
    #[inline]
    fn hold_first(&self, current: *mut V) -> Option<*mut CountedEntry<K, V>> {
        let counted = self.counted_of(current)?;
        // The holds share their word with the hash: a compare-and-swap that never takes the
        // count past its field. Relaxed: the exchange that follows publishes the hold
        // (Release), and whoever sees the first value unlinked acquires that exchange.
        let mut word = self.hash_word.load(Ordering::Relaxed);
        loop {
            if word & HOLDS_COUNT == MAX_HOLDS << HOLDS_SHIFT {
                // As many exchanges on this entry as the field counts: wait for one to end.
                sync::spin_wait();
                word = self.hash_word.load(Ordering::Relaxed);
                continue;
            }
            match self.hash_word.compare_exchange_weak(
                word,
                word + HOLD,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(counted),
                Err(actual) => word = actual,
            }
        }
    }

    /// Gives back a hold of [`Self::hold_first`] after the exchange failed.
    #[cold]
    fn unhold(counted: *mut CountedEntry<K, V>) {
        // SAFETY: live as in `hold_first` (same guard); the entry's own hold remains, so this
        // never reaches 0.
        unsafe { holds(counted).fetch_sub(HOLD, Ordering::Relaxed) };
    }

    /// `value.compare_exchange_weak(current, new)` (AcqRel, Acquire), holding a first value it
    /// unlinks (see [`Self::hold_first`]).
    #[inline]
    fn exchange(&self, current: *mut V, new: *mut V) -> bool {
        let held = self.hold_first(current);
        let exchanged = self
            .value
            .compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if !exchanged {
            if let Some(counted) = held {
                Self::unhold(counted);
            }
        }
        exchanged
    }

    /// `value.swap(new)` (AcqRel), holding a first value it unlinks (see
    /// [`Self::hold_first`]). The caller holds the dirty lock, but lock-free paths may still
    /// change `value` between the load and the swap.
    #[inline]
    fn swap_value(&self, new: *mut V) -> *mut V {
        if !Self::COUNTED {
            // No first value to hold: no load before the swap.
            return self.value.swap(new, Ordering::AcqRel);
        }
        let current = self.value.load(Ordering::Acquire);
        let held = self.hold_first(current);
        let old = self.value.swap(new, Ordering::AcqRel);
        if old != current {
            // Another thread unlinked the first value meanwhile (with its own hold): the first
            // value never comes back, so `old` is not it.
            if let Some(counted) = held {
                Self::unhold(counted);
            }
        }
        old
    }

    /// The current value, valid for as long as `guard` is held.
    #[inline]
    pub(crate) fn load<'g>(&self, guard: &'g Guard<'_>) -> Option<&'g V> {
        let p = sync::protect(guard, &self.value);
        if is_live(p) {
            // SAFETY: `p` is live, so it came from `alloc_recycled`; it was loaded through
            // `guard`, and replaced pointers are only retired through the same collector, so it
            // stays allocated until `guard` is dropped.
            Some(unsafe { &*p })
        } else {
            None
        }
    }

    /// Whether the entry is expunged.
    pub(crate) fn is_expunged(&self) -> bool {
        self.value.load(Ordering::Acquire) == expunged()
    }

    /// Retires a pointer that was just replaced in `value`: a value of its own allocation, or
    /// the first value of a [`CountedEntry`] (on its own, or with the entry for
    /// [`Unlink::LeavingMap`]). A first value without drop glue goes with the entry.
    #[inline]
    fn retire(&self, old: *mut V, guard: &Guard<'_>, unlink: Unlink) {
        if self.is_boxed(old) {
            // SAFETY: `old` was unlinked from `value` by the caller's successful swap or CAS,
            // so threads that enter later cannot reach it; it was created by `alloc_recycled`.
            unsafe { sync::retire_recycled(guard, old) };
        } else if let Some(counted) = self.counted_of(old) {
            match unlink {
                Unlink::Staying => Self::retire_first(counted, guard),
                // SAFETY: live (reached under `guard`); the hold taken before the exchange
                // becomes the mark, which only the entry's reclamation reads, after `guard`.
                // (The mark is set once, and the count is at least 1: the sum carries into the
                // mark's bit and no further.)
                Unlink::LeavingMap => unsafe {
                    holds(counted).fetch_add(FIRST_DROPS_WITH_ENTRY - HOLD, Ordering::Relaxed);
                },
            }
        }
    }

    /// Retires the first value of a [`CountedEntry`], just unlinked (with the hold taken by
    /// [`Self::hold_first`]): it is dropped once no reader can hold it, and the entry's memory
    /// stays until then.
    #[cold]
    fn retire_first(counted: *mut CountedEntry<K, V>, guard: &Guard<'_>) {
        // SAFETY: the entry is live (the caller reached it under `guard`) and its first value
        // was just unlinked, once for all (`value` never points at it again), with its hold
        // taken: `drop_first_and_release` runs once, after every reader of the value.
        unsafe {
            sync::retire_with(
                guard,
                counted,
                drop_first_and_release::<K, V>,
                sync::birth_of(counted),
            );
        }
    }

    /// Stores a new value unless the entry is expunged. Go's `trySwap`. On success calls `count`
    /// with how the live count changed, then retires the previous value, and returns it (still
    /// readable under `guard`).
    pub(crate) fn try_swap<'g>(
        &self,
        new: V,
        guard: &'g Guard<'_>,
        count: impl FnOnce(LiveDelta),
    ) -> Result<Option<&'g V>, V> {
        let mut current = sync::protect(guard, &self.value);
        if current == expunged() {
            return Err(new);
        }
        let new = sync::alloc_recycled(guard, new);
        loop {
            if current == expunged() {
                // SAFETY: `new` came from `alloc_recycled` above and was never published.
                return Err(unsafe { sync::unbox_recycled(new) });
            }
            if self.exchange(current, new) {
                return Ok(self.finish_replace(current, guard, true, Unlink::Staying, count));
            }
            // Reloaded through the guard: a pointer returned by a failed exchange is not
            // covered by it (see `LocalGuard::protect`).
            current = sync::protect(guard, &self.value);
        }
    }

    /// Turns a just-replaced pointer into the previous value (protected by `guard`), feeds the
    /// live-count change to `count`, and only then retires the pointer: retiring may run a
    /// reclamation pass, whose destructors may panic, and the count must be exact by then.
    #[inline]
    fn finish_replace<'g>(
        &self,
        old: *mut V,
        guard: &'g Guard<'_>,
        now_live: bool,
        unlink: Unlink,
        count: impl FnOnce(LiveDelta),
    ) -> Option<&'g V> {
        let was_live = is_live(old);
        count(match (was_live, now_live) {
            (false, true) => LiveDelta::Added,
            (true, false) => LiveDelta::Removed,
            _ => LiveDelta::Unchanged,
        });
        self.retire(old, guard, unlink);
        // SAFETY: a live `old` was retired through `guard`'s collector after `guard` entered,
        // so it stays allocated until `guard` is dropped.
        was_live.then(|| unsafe { &*old })
    }

    /// Stores a new value; the caller holds the dirty lock and knows the entry is not expunged.
    pub(crate) fn swap_locked<'g>(
        &self,
        new: V,
        guard: &'g Guard<'_>,
    ) -> (Option<&'g V>, LiveDelta) {
        let old = self.swap_value(sync::alloc_recycled(guard, new));
        debug_assert!(old != expunged::<V>(), "swap_locked on an expunged entry");
        let mut delta = LiveDelta::Unchanged;
        // Under the lock, retiring runs no destructor (passes wait for the unlock).
        let old = self.finish_replace(old, guard, true, Unlink::Staying, |d| delta = d);
        (old, delta)
    }

    /// Marks an expunged entry as deleted-but-present so the caller (holding the dirty lock) can
    /// put it back in the dirty map. Returns whether it was expunged.
    pub(crate) fn unexpunge_locked(&self) -> bool {
        self.value
            .compare_exchange(
                expunged(),
                ptr::null_mut(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Marks a deleted entry as expunged (caller holds the dirty lock and is building a new dirty
    /// map). Returns whether the entry is expunged afterwards, i.e. must not be copied.
    pub(crate) fn try_expunge_locked(&self) -> bool {
        let mut current = self.value.load(Ordering::Acquire);
        while current.is_null() {
            match self.value.compare_exchange_weak(
                ptr::null_mut(),
                expunged(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
        current == expunged()
    }

    /// Deletes the value and expunges the entry whatever its state (caller holds the dirty lock
    /// and is detaching the entry from the map, as `clear` does). Returns the live-count change.
    pub(crate) fn expunge_locked(&self, guard: &Guard<'_>) -> LiveDelta {
        let old = self.swap_value(expunged());
        let mut delta = LiveDelta::Unchanged;
        // Under the lock (or with reclamation held), retiring runs no destructor.
        self.finish_replace(old, guard, false, Unlink::LeavingMap, |d| delta = d);
        delta
    }

    /// Go's `tryLoadOrStore`: returns the existing value if there is one, or stores the value in
    /// `value` (taking it; it is boxed only then, so a present key allocates nothing) if the
    /// entry is deleted but not expunged. `None` when expunged, with
    /// `value` left in place for the caller's locked path.
    pub(crate) fn try_load_or_store<'g>(
        &self,
        value: &mut Option<V>,
        guard: &'g Guard<'_>,
    ) -> Option<LoadOrStored<'g, V>> {
        let mut current = sync::protect(guard, &self.value);
        loop {
            if current == expunged() {
                return None;
            }
            if is_live(current) {
                // SAFETY: live and loaded under `guard` (see `load`).
                return Some(LoadOrStored::Loaded(unsafe { &*current }));
            }
            let new =
                sync::alloc_recycled(guard, value.take().expect("the value to store is present"));
            match self.value.compare_exchange_weak(
                ptr::null_mut(),
                new,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                // SAFETY: `new` is now owned by the entry, which only retires it through
                // `guard`'s collector, so it outlives `guard`.
                Ok(_) => return Some(LoadOrStored::Stored(unsafe { &*new })),
                Err(_) => {
                    // SAFETY: `new` came from `alloc_recycled` and was never published; give it
                    // back for the next attempt.
                    *value = Some(unsafe { sync::unbox_recycled(new) });
                    current = sync::protect(guard, &self.value);
                }
            }
        }
    }

    /// Deletes the value; calls `count` with the change of the live count before retiring the
    /// previous value, and returns it (readable under `guard`) if there was one. `unlink` says
    /// whether the entry is leaving the map (see [`Unlink`]).
    pub(crate) fn delete<'g>(
        &self,
        guard: &'g Guard<'_>,
        unlink: Unlink,
        count: impl FnOnce(LiveDelta),
    ) -> Option<&'g V> {
        let mut current = sync::protect(guard, &self.value);
        loop {
            if !is_live(current) {
                return None;
            }
            if self.exchange(current, ptr::null_mut()) {
                return self.finish_replace(current, guard, false, unlink, count);
            }
            current = sync::protect(guard, &self.value);
        }
    }

    /// Replaces the value with `new()` while the current value equals `old`. Never inserts.
    pub(crate) fn compare_and_swap(&self, old: &V, new: V, guard: &Guard<'_>) -> bool
    where
        V: PartialEq,
    {
        let mut current = sync::protect(guard, &self.value);
        // Allocated only once the comparison succeeds: a failing CAS allocates nothing.
        let mut new = new;
        loop {
            // SAFETY: live and loaded under `guard` (see `load`).
            if !is_live(current) || unsafe { &*current } != old {
                return false;
            }
            let candidate = sync::alloc_recycled(guard, new);
            if self.exchange(current, candidate) {
                self.retire(current, guard, Unlink::Staying);
                return true;
            }
            // SAFETY: `candidate` came from `alloc_recycled` and was never published; held as
            // a value again so that a panicking `eq` drops it.
            new = unsafe { sync::unbox_recycled(candidate) };
            current = sync::protect(guard, &self.value);
        }
    }

    /// Deletes the value while it equals `old`. Returns whether it deleted; calls `count` with
    /// [`LiveDelta::Removed`] before retiring the old value if it did. `unlink` says whether
    /// the entry is leaving the map (see [`Unlink`]).
    pub(crate) fn compare_and_delete(
        &self,
        old: &V,
        guard: &Guard<'_>,
        unlink: Unlink,
        count: impl FnOnce(LiveDelta),
    ) -> bool
    where
        V: PartialEq,
    {
        let mut current = sync::protect(guard, &self.value);
        loop {
            // SAFETY: live and loaded under `guard` (see `load`).
            if !is_live(current) || unsafe { &*current } != old {
                return false;
            }
            if self.exchange(current, ptr::null_mut()) {
                count(LiveDelta::Removed);
                self.retire(current, guard, unlink);
                return true;
            }
            current = sync::protect(guard, &self.value);
        }
    }
}

/// What becomes of the entry whose value a deletion unlinks, for the first value of a
/// [`CountedEntry`]: dropped on its own once no reader holds it, or with the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unlink {
    /// The entry may stay in the map for long: its first value is retired on its own.
    Staying,
    /// The entry leaves the map in the same locked operation (it was or is about to be
    /// retired, and no lock-free path can reach it): its first value is dropped with it,
    /// which keeps the entry's memory recyclable (see [`EntryPtr::retire`]).
    LeavingMap,
}

/// The outcome of [`Entry::try_load_or_store`].
pub(crate) enum LoadOrStored<'g, V> {
    /// A value was already there.
    Loaded(&'g V),
    /// The new value was stored.
    Stored(&'g V),
}

impl<V> LoadOrStored<'_, V> {
    /// What the outcome did to the number of live entries.
    pub(crate) fn delta(&self) -> LiveDelta {
        match self {
            LoadOrStored::Loaded(_) => LiveDelta::Unchanged,
            LoadOrStored::Stored(_) => LiveDelta::Added,
        }
    }
}

impl<K, V> Drop for Entry<K, V> {
    fn drop(&mut self) {
        let p = sync::get_mut(&mut self.value);
        if self.is_boxed(p) {
            // SAFETY: the entry is being freed, which per `EntryPtr`'s invariants happens only
            // once no reader can reach it, hence its current value; the entry owns `p`, which
            // came from `alloc_recycled`.
            unsafe { sync::free_recycled(p) };
        }
    }
}

/// A pointer to an entry, as the tables hold it (no reference count: an `Arc` per entry costs
/// 16 bytes and two atomic read-modify-writes per entry per promotion cycle).
///
/// # Invariants
///
/// The map owns every entry it allocated until it frees or retires it. An entry leaves the map
/// in exactly one of these ways, always under the dirty lock or in `Drop`:
/// - at a promotion, if the copy into the dirty map expunged it and no store brought it back
///   (it is then in neither the new snapshot nor the dirty map): retired with the old snapshot;
/// - when `load_and_delete`/`delete` removes a key that only the dirty map has: retired;
/// - by `clear`: retired with the old snapshot; by the map's `Drop`: freed.
///
/// Retiring goes through the map's collector, so every thread that found the entry through a
/// snapshot, or through the dirty map under the lock, while holding a guard, can keep using it
/// until its guard is dropped. Every operation holds a guard from start to end, which is what
/// makes the safe [`Deref`] sound.
pub(crate) struct EntryPtr<K, V>(NonNull<Entry<K, V>>);

impl<K, V> Clone for EntryPtr<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for EntryPtr<K, V> {}

impl<K, V> EntryPtr<K, V> {
    /// Whether both point at the same entry (no user code runs).
    pub(crate) fn same(self, other: Self) -> bool {
        self.0 == other.0
    }
}

// SAFETY: an `EntryPtr` gives shared access to an `Entry` (like `Arc<Entry>`), so it may cross
// threads exactly when `Arc<Entry>` could.
unsafe impl<K: Send + Sync, V: Send + Sync> Send for EntryPtr<K, V> {}
// SAFETY: as above.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for EntryPtr<K, V> {}

impl<K, V> EntryPtr<K, V> {
    /// The layout of the allocations [`new`](Self::new) makes, for the collector's recycling.
    pub(crate) const LAYOUT: Layout = if Entry::<K, V>::COUNTED {
        Layout::new::<CountedEntry<K, V>>()
    } else if Entry::<K, V>::INLINE {
        Layout::new::<InlineEntry<K, V>>()
    } else {
        Layout::new::<Entry<K, V>>()
    };

    /// Allocates an entry holding `value` (in recycled memory if this thread has some); the
    /// map owns it from now on.
    pub(crate) fn new(key: K, hash: u64, value: V, guard: &Guard<'_>) -> Self {
        let ptr = if Entry::<K, V>::COUNTED {
            let counted = sync::alloc_recycled(
                guard,
                CountedEntry {
                    inline: InlineEntry {
                        entry: Entry {
                            key,
                            // The entry's own hold.
                            hash_word: AtomicU64::new(hash & !HOLDS_BITS | HOLD),
                            value: AtomicPtr::new(ptr::null_mut()),
                        },
                        first: UnsafeCell::new(MaybeUninit::new(value)),
                    },
                },
            );
            // SAFETY: `alloc_recycled` returns a valid pointer to its argument, not shared
            // yet; the first value's pointer derives from the allocation's.
            unsafe {
                let first = first_of(counted);
                // Not shared yet: the map publishes the entry under the lock or in a snapshot.
                (*counted)
                    .inline
                    .entry
                    .value
                    .store(first, Ordering::Relaxed);
            }
            counted.cast::<Entry<K, V>>()
        } else if Entry::<K, V>::INLINE {
            let inline = sync::alloc_recycled(
                guard,
                InlineEntry {
                    entry: Entry {
                        key,
                        hash_word: AtomicU64::new(hash & !HOLDS_BITS),
                        value: AtomicPtr::new(ptr::null_mut()),
                    },
                    first: UnsafeCell::new(MaybeUninit::new(value)),
                },
            );
            // SAFETY: `alloc_recycled` returns a valid pointer to its argument, not shared
            // yet; the first value's pointer derives from the allocation's.
            unsafe {
                let first = UnsafeCell::raw_get(ptr::addr_of!((*inline).first)).cast::<V>();
                // Not shared yet: the map publishes the entry under the lock or in a snapshot.
                (*inline).entry.value.store(first, Ordering::Relaxed);
            }
            inline.cast::<Entry<K, V>>()
        } else {
            sync::alloc_recycled(
                guard,
                Entry {
                    key,
                    hash_word: AtomicU64::new(hash & !HOLDS_BITS),
                    value: AtomicPtr::new(sync::alloc_recycled(guard, value)),
                },
            )
        };
        // SAFETY: `alloc_recycled` returns a pointer into a live allocation: not null.
        EntryPtr(unsafe { NonNull::new_unchecked(ptr) })
    }

    /// Retires the entry through `guard`'s collector, which frees it (and its value, if it
    /// still has one) once no guard that may have reached it remains.
    ///
    /// # Safety
    ///
    /// The entry has left the map (see the type's invariants): threads that enter later cannot
    /// reach it. It is retired or freed only once.
    pub(crate) unsafe fn retire(self, guard: &Guard<'_>) {
        if Entry::<K, V>::COUNTED {
            let entry = self.0.as_ptr().cast::<CountedEntry<K, V>>();
            // SAFETY: allocated as a `CountedEntry` in `new`, by `alloc_recycled`; unlinked per
            // the caller. No other thread can unlink its first value any more: its value is
            // expunged, or the entry was only in the dirty map, and the hold of a first value
            // unlinked before is visible here (taken before the exchange that unlinked it,
            // which the expunge or the locked removal read). The retiring thread may still
            // delete a live value (`delete_locked`), with `Unlink::LeavingMap`: the first value
            // then goes with the entry. So with the entry's own hold alone, the entry owns its
            // whole allocation and is retired like any other (its memory recycled); else the
            // last of the two reclamations frees it.
            unsafe {
                if owns_its_allocation(entry) {
                    sync::retire_recycled(guard, entry);
                } else {
                    sync::retire_with(
                        guard,
                        entry,
                        drop_entry_and_release::<K, V>,
                        sync::birth_of(entry),
                    );
                }
            }
        } else if Entry::<K, V>::INLINE {
            // SAFETY: allocated as an `InlineEntry` in `new` (the pointer keeps the whole
            // allocation's provenance); unlinked per the caller.
            unsafe { sync::retire_recycled(guard, self.0.as_ptr().cast::<InlineEntry<K, V>>()) };
        } else {
            // SAFETY: allocated as an `Entry` in `new`; unlinked per the caller.
            unsafe { sync::retire_recycled(guard, self.0.as_ptr()) };
        }
    }

    /// The entry's birth (see `sync::birth`): the epoch of its collector when it was allocated.
    pub(crate) fn birth(self) -> u64 {
        if Entry::<K, V>::COUNTED {
            // SAFETY: allocated as a `CountedEntry` by `alloc_recycled`, not freed while the map
            // holds the pointer (the entry's own hold).
            unsafe { sync::birth_of(self.0.as_ptr().cast::<CountedEntry<K, V>>()) }
        } else if Entry::<K, V>::INLINE {
            // SAFETY: allocated as an `InlineEntry` by `alloc_recycled`, not freed while the map
            // holds the pointer.
            unsafe { sync::birth_of(self.0.as_ptr().cast::<InlineEntry<K, V>>()) }
        } else {
            // SAFETY: allocated by `alloc_recycled`, not freed while the map holds the pointer.
            unsafe { sync::birth_of(self.0.as_ptr()) }
        }
    }

    /// Frees the entry (and its value, if it still has one).
    ///
    /// # Safety
    ///
    /// The entry has left the map (see the type's invariants) and no thread can reach it: either
    /// its collector decided so, or the map is being dropped.
    pub(crate) unsafe fn free(self) {
        if Entry::<K, V>::COUNTED {
            let entry = self.0.as_ptr().cast::<CountedEntry<K, V>>();
            // SAFETY: allocated as a `CountedEntry` in `new`, by `alloc_recycled`; unreachable
            // per the caller. A first value retired earlier and not reclaimed yet keeps the
            // memory until its own reclamation (see `retire`).
            unsafe {
                if owns_its_allocation(entry) {
                    sync::free_recycled(entry);
                } else {
                    drop_entry_and_release(entry);
                }
            }
        } else if Entry::<K, V>::INLINE {
            // SAFETY: allocated as an `InlineEntry` by `alloc_recycled` in `new`; unreachable
            // per the caller.
            unsafe { sync::free_recycled(self.0.as_ptr().cast::<InlineEntry<K, V>>()) };
        } else {
            // SAFETY: allocated by `alloc_recycled` in `new`; unreachable per the caller.
            unsafe { sync::free_recycled(self.0.as_ptr()) };
        }
    }
}

impl<K, V> Deref for EntryPtr<K, V> {
    type Target = Entry<K, V>;

    #[inline]
    fn deref(&self) -> &Entry<K, V> {
        // SAFETY: per the type's invariants, an `EntryPtr` is only obtained from a table of the
        // map, or a retired bundle, while holding a guard of the map's collector, and entries are
        // freed only once no such guard remains.
        unsafe { self.0.as_ref() }
    }
}

#[cfg(all(test, not(syncmap_loom)))]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::Arc;

    use super::{Entry, EntryPtr, HOLD, HOLDS_BITS, HOLDS_COUNT, HOLDS_SHIFT, MAX_HOLDS};
    use crate::raw::epoch::Collector;
    use crate::raw::sync;

    /// A counted entry is four words: its holds share the hash's word (a `u64` key and an
    /// `Arc` value take a 48-byte glibc chunk with the collector's header, not a 64-byte one).
    #[test]
    fn a_counted_entry_keeps_its_holds_in_the_hash_word() {
        assert!(Entry::<u64, Arc<u64>>::COUNTED);
        assert_eq!(EntryPtr::<u64, Arc<u64>>::LAYOUT.size(), 32);
        assert_eq!(EntryPtr::<u64, u64>::LAYOUT.size(), 32);
    }

    /// Every bit of the hash outside the holds' field comes back, whatever the holds.
    #[test]
    fn the_stored_hash_keeps_every_bit_a_table_reads() {
        let collector = Collector::new();
        let guard = sync::enter(&collector);
        for hash in [u64::MAX, 0, 0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210] {
            let counted = EntryPtr::new(1u64, hash, Arc::new(1u64), &guard);
            let plain = EntryPtr::new(1u64, hash, 1u64, &guard);
            assert_eq!(counted.hash(), hash & !HOLDS_BITS);
            assert_eq!(plain.hash(), hash & !HOLDS_BITS);
            let first = counted.value.load(SeqCst);
            let held = counted
                .hold_first(first)
                .expect("the first value is counted");
            assert_eq!(counted.hash(), hash & !HOLDS_BITS);
            Entry::unhold(held);
            // SAFETY: never published; freed once.
            unsafe {
                counted.free();
                plain.free();
            }
        }
    }

    /// An exchange past the holds' field waits for another to end instead of carrying into
    /// the mark and the hash.
    #[test]
    fn holds_never_overflow_into_the_hash() {
        let collector = Collector::new();
        let guard = sync::enter(&collector);
        let hash = 0x0123_4567_89ab_cdef;
        let entry = EntryPtr::new(7u64, hash, Arc::new(7u64), &guard);
        let first = entry.value.load(SeqCst);
        // The entry's own hold is the first.
        let held: Vec<_> = (1..MAX_HOLDS)
            .map(|_| entry.hold_first(first).expect("counted"))
            .collect();
        let count =
            |e: &Entry<u64, Arc<u64>>| (e.hash_word.load(SeqCst) & HOLDS_COUNT) >> HOLDS_SHIFT;
        assert_eq!(count(&entry), MAX_HOLDS);
        let taken = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                let held = entry.hold_first(entry.value.load(SeqCst)).expect("counted");
                taken.store(true, SeqCst);
                let full = count(&entry);
                Entry::unhold(held);
                full
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(
                !taken.load(SeqCst),
                "a hold past the field's capacity was taken"
            );
            Entry::unhold(held[0]);
            assert_eq!(waiter.join().expect("the waiter returns"), MAX_HOLDS);
            assert_eq!(entry.hash(), hash & !HOLDS_BITS);
        });
        for counted in held.into_iter().skip(1) {
            Entry::unhold(counted);
        }
        assert_eq!(entry.hash_word.load(SeqCst) & HOLDS_BITS, HOLD);
        // SAFETY: never published; freed once.
        unsafe { entry.free() };
    }
}
