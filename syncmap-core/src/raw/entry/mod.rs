//! The shared entry of Go's design: one per key, referenced by the read snapshot and the dirty
//! map at once, holding the value behind an atomic pointer so that a key already in the read
//! snapshot can be updated without the lock. A small first value lives in the entry's own
//! allocation (see [`Entry::INLINE`]); every later value has its own.
//!
//! `counted` keeps the memory of an entry whose first value has drop glue (its holds, and who
//! drops what); `pointer` allocates, retires and frees entries for the map.

mod counted;
mod pointer;
#[cfg(all(test, not(syncmap_loom)))]
mod tests;

use std::mem;
use std::ptr;

use super::sync::{self, AtomicPtr, AtomicU64, Guard, Ordering};

pub(crate) use counted::HOLDS_BITS;
use counted::{
    drop_first_and_release, holds, CountedEntry, InlineEntry, FIRST_DROPS_WITH_ENTRY, HOLD,
    HOLDS_COUNT, HOLDS_SHIFT, MAX_HOLDS,
};
pub(crate) use pointer::EntryPtr;

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

    /// Whether the entry's key has the map's hash `hash` (as far as the entry keeps it: all
    /// but [`HOLDS_BITS`]). A table's probe only matches 7 bits of it.
    #[inline]
    pub(crate) fn hashed_as(&self, hash: u64) -> bool {
        self.hash() == hash & !HOLDS_BITS
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

    /// Whether the current value is `value` (by `PartialEq`: identity for the memo's cells).
    #[inline]
    pub(crate) fn holds(&self, value: &V, guard: &Guard<'_>) -> bool
    where
        V: PartialEq,
    {
        self.load(guard).is_some_and(|current| current == value)
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
        self.delete_if(|current| current == old, guard, unlink, count)
    }

    /// Deletes the value while `matches` says so of it. Returns whether it deleted; calls
    /// `count` as [`compare_and_delete`](Self::compare_and_delete) does.
    pub(crate) fn delete_if(
        &self,
        matches: impl Fn(&V) -> bool,
        guard: &Guard<'_>,
        unlink: Unlink,
        count: impl FnOnce(LiveDelta),
    ) -> bool {
        let mut current = sync::protect(guard, &self.value);
        loop {
            // SAFETY: live and loaded under `guard` (see `load`).
            if !is_live(current) || !matches(unsafe { &*current }) {
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
