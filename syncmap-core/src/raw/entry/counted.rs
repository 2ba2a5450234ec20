//! The memory of an entry whose first value has drop glue: the holds on it, kept in its hash
//! word, and which of the entry's reclamation and the first value's drops what.

use std::cell::UnsafeCell;
use std::mem::{self, MaybeUninit};
use std::ptr;

use super::super::sync::{self, AtomicU64, Ordering};
use super::super::unwind::Panics;
use super::{is_live, Entry};
#[cfg(doc)]
use super::{EntryPtr, Unlink};

/// The bits of [`Entry::hash_word`] that hold a [`CountedEntry`]'s holds instead of the hash.
/// No table reads them: hashbrown takes a bucket's index from the low bits (a table of fewer
/// than 2^48 buckets, 2 PiB of pointers, never reads bit 48) and its tag from the top seven,
/// the shard index comes from bits 32..38 and the snapshot's filter from bits 8..32 and
/// 42..48 (both checked at compile time in `ReadOnly::bits`). So the stored hash, with these
/// bits cleared, finds the same bucket and tag as the full hash a lookup computes. Keeping the
/// holds there saves a word per entry, which takes a counted entry of a `u64` key from a
/// 64-byte glibc chunk to a 48-byte one.
pub(crate) const HOLDS_BITS: u64 = 0x1FF << HOLDS_SHIFT;
/// Where the holds start in [`Entry::hash_word`].
pub(super) const HOLDS_SHIFT: u32 = 48;
/// One hold.
pub(super) const HOLD: u64 = 1 << HOLDS_SHIFT;
/// The count of holds (bits 48..56); bit 56 is [`FIRST_DROPS_WITH_ENTRY`].
pub(super) const HOLDS_COUNT: u64 = 0xFF << HOLDS_SHIFT;
/// The most holds a [`CountedEntry`] takes at once (the count's field holds 255). Besides the
/// entry's own hold and that of a pending reclamation, each is an exchange in progress on the
/// entry: a thread past this many waits for one to end ([`Entry::hold_first`]).
pub(super) const MAX_HOLDS: u64 = 255;

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
pub(super) struct InlineEntry<K, V> {
    pub(super) entry: Entry<K, V>,
    pub(super) first: UnsafeCell<MaybeUninit<V>>,
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
pub(super) struct CountedEntry<K, V> {
    pub(super) inline: InlineEntry<K, V>,
}

/// The mark in the holds of a [`CountedEntry`] of a first value unlinked as its entry left the
/// map ([`Unlink::LeavingMap`]): the entry's reclamation drops it.
pub(super) const FIRST_DROPS_WITH_ENTRY: u64 = 1 << (HOLDS_SHIFT + 8);

/// The holds word of a [`CountedEntry`]: its entry's `hash_word`.
///
/// # Safety
///
/// `entry` points at a live `CountedEntry`.
#[inline]
pub(super) unsafe fn holds<'a, K, V>(entry: *mut CountedEntry<K, V>) -> &'a AtomicU64 {
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
pub(super) fn first_drops_with_entry<V>(value: *mut V, first: *mut V, holds: &AtomicU64) -> bool {
    value == first || holds.load(Ordering::Acquire) & FIRST_DROPS_WITH_ENTRY != 0
}

/// Whether a [`CountedEntry`] that left the map holds only its own hold (the mark aside): no
/// reclamation of its first value is pending, and none can start (see [`EntryPtr::retire`]),
/// so the entry owns its whole allocation and is retired or freed like any other.
///
/// # Safety
///
/// `entry` points at a live `CountedEntry`.
pub(super) unsafe fn owns_its_allocation<K, V>(entry: *mut CountedEntry<K, V>) -> bool {
    // SAFETY: live, per the caller. Acquire: a first value's reclamation that gave up its
    // hold dropped the value before.
    unsafe { holds(entry).load(Ordering::Acquire) & HOLDS_COUNT == HOLD }
}

/// The first value of a [`CountedEntry`], with the allocation's provenance.
///
/// # Safety
///
/// `entry` points at a live `CountedEntry` (allocated by [`EntryPtr::new`]).
pub(super) unsafe fn first_of<K, V>(entry: *mut CountedEntry<K, V>) -> *mut V {
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
pub(super) unsafe fn release<K, V>(entry: *mut CountedEntry<K, V>) {
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
pub(super) unsafe fn drop_first_and_release<K, V>(entry: *mut CountedEntry<K, V>) {
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
pub(super) unsafe fn drop_entry_and_release<K, V>(entry: *mut CountedEntry<K, V>) {
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
