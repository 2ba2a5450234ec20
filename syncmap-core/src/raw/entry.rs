//! The shared entry of Go's design: one per key, referenced by the read snapshot and the dirty
//! map at once, holding the value behind an atomic pointer so that a key already in the read
//! snapshot can be updated without the lock. A small first value without drop glue lives in
//! the entry's own allocation (see [`Entry::INLINE`]); every later value has its own.

use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::mem::{self, MaybeUninit};
use std::ops::Deref;
use std::ptr::{self, NonNull};

use super::sync::{self, AtomicPtr, Guard, Ordering};

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
///   entry's own allocation (see [`InlineEntry`]), which is never retired or freed apart from
///   the entry.
/// - A pointer replaced in `value` is handed to the map's collector with
///   `LocalGuard::defer_retire`, never freed directly, because lock-free readers may still be
///   reading it under their own guard.
/// - null -> expunged happens only under the dirty lock while building a dirty map or clearing;
///   expunged -> null only under the dirty lock, immediately followed by re-inserting the
///   entry in the dirty map.
/// - Entries are owned by the map through [`EntryPtr`]s, see there for when they are freed.
/// - `hash` is the map's hash of `key`, computed once, before the entry is allocated, outside
///   the map's lock. Every table operation under the lock (the incremental copy, growth,
///   promotion) rehashes with it, never with the user's `Hash`: so no user code that could
///   panic runs between two steps of a locked change of the tables (issue 16; the locked paths
///   call only the user's `Eq`, in lookups that change nothing), and an `Eq` or `Hash` that
///   calls the same map cannot be reached from inside the lock.
#[repr(C)]
pub(crate) struct Entry<K, V> {
    pub(crate) key: K,
    /// The map's hash of `key` (see the invariants).
    pub(crate) hash: u64,
    value: AtomicPtr<V>,
}

/// An entry followed by the first value stored for its key, in one allocation: what
/// [`EntryPtr`] allocates when [`Entry::INLINE`]. That saves an allocation per new key and a
/// dependent load per lookup of a value never replaced.
///
/// # Invariants
///
/// `first` is written once, before the entry is published, and never again: a replaced first
/// value stays readable for as long as the entry lives (it has no drop glue, so it is never
/// dropped, only freed with the entry). Pointers to it are derived from the allocation's
/// pointer, never from a reference to the `Entry` alone.
#[repr(C)]
struct InlineEntry<K, V> {
    entry: Entry<K, V>,
    first: UnsafeCell<MaybeUninit<V>>,
}

// SAFETY: an `Entry` owns a `K` and (through `value`) a `V`; sharing it across threads hands out
// `&K` and `&V` (requires `Sync`) and may drop or replace them on another thread (requires `Send`).
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for Entry<K, V> {}
// SAFETY: as above: moving the entry moves ownership of its key and value.
unsafe impl<K: Send, V: Send> Send for Entry<K, V> {}

impl<K, V> Entry<K, V> {
    /// Whether the first value lives in the entry: only small values without drop glue do. A
    /// replaced first value is never dropped (it has nothing to drop) and keeps its bytes until
    /// the entry is freed, so that readers may still be reading it; the size bound caps what
    /// an updated key keeps this way (32 bytes, the size of the allocation it saved).
    const INLINE: bool = !mem::needs_drop::<V>() && mem::size_of::<V>() <= 32;

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

    /// Retires a pointer that was just replaced in `value`, if it is a value of its own
    /// allocation (a first value in the entry has no drop glue and goes with the entry).
    #[inline]
    fn retire(&self, old: *mut V, guard: &Guard<'_>) {
        if self.is_boxed(old) {
            // SAFETY: `old` was unlinked from `value` by the caller's successful swap or CAS,
            // so threads that enter later cannot reach it; it was created by `alloc_recycled`.
            unsafe { sync::retire_recycled(guard, old) };
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
            match self.value.compare_exchange_weak(
                current,
                new,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(self.finish_replace(current, guard, true, count)),
                // Reloaded through the guard: a pointer returned by a failed exchange is not
                // covered by it (see `LocalGuard::protect`).
                Err(_) => current = sync::protect(guard, &self.value),
            }
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
        count: impl FnOnce(LiveDelta),
    ) -> Option<&'g V> {
        let was_live = is_live(old);
        count(match (was_live, now_live) {
            (false, true) => LiveDelta::Added,
            (true, false) => LiveDelta::Removed,
            _ => LiveDelta::Unchanged,
        });
        self.retire(old, guard);
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
        let old = self
            .value
            .swap(sync::alloc_recycled(guard, new), Ordering::AcqRel);
        debug_assert!(old != expunged::<V>(), "swap_locked on an expunged entry");
        let mut delta = LiveDelta::Unchanged;
        // Under the lock, retiring runs no destructor (passes wait for the unlock).
        let old = self.finish_replace(old, guard, true, |d| delta = d);
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
        let old = self.value.swap(expunged(), Ordering::AcqRel);
        let mut delta = LiveDelta::Unchanged;
        // Under the lock (or with reclamation held), retiring runs no destructor.
        self.finish_replace(old, guard, false, |d| delta = d);
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
    /// previous value, and returns it (readable under `guard`) if there was one.
    pub(crate) fn delete<'g>(
        &self,
        guard: &'g Guard<'_>,
        count: impl FnOnce(LiveDelta),
    ) -> Option<&'g V> {
        let mut current = sync::protect(guard, &self.value);
        loop {
            if !is_live(current) {
                return None;
            }
            match self.value.compare_exchange_weak(
                current,
                ptr::null_mut(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return self.finish_replace(current, guard, false, count),
                Err(_) => current = sync::protect(guard, &self.value),
            }
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
            match self.value.compare_exchange_weak(
                current,
                candidate,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.retire(current, guard);
                    return true;
                }
                Err(_) => {
                    // SAFETY: `candidate` came from `alloc_recycled` and was never published;
                    // held as a value again so that a panicking `eq` drops it.
                    new = unsafe { sync::unbox_recycled(candidate) };
                    current = sync::protect(guard, &self.value);
                }
            }
        }
    }

    /// Deletes the value while it equals `old`. Returns whether it deleted; calls `count` with
    /// [`LiveDelta::Removed`] before retiring the old value if it did.
    pub(crate) fn compare_and_delete(
        &self,
        old: &V,
        guard: &Guard<'_>,
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
            match self.value.compare_exchange_weak(
                current,
                ptr::null_mut(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    count(LiveDelta::Removed);
                    self.retire(current, guard);
                    return true;
                }
                Err(_) => current = sync::protect(guard, &self.value),
            }
        }
    }
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
    pub(crate) const LAYOUT: Layout = if Entry::<K, V>::INLINE {
        Layout::new::<InlineEntry<K, V>>()
    } else {
        Layout::new::<Entry<K, V>>()
    };

    /// Allocates an entry holding `value` (in recycled memory if this thread has some); the
    /// map owns it from now on.
    pub(crate) fn new(key: K, hash: u64, value: V, guard: &Guard<'_>) -> Self {
        let ptr = if Entry::<K, V>::INLINE {
            let inline = sync::alloc_recycled(
                guard,
                InlineEntry {
                    entry: Entry {
                        key,
                        hash,
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
                    hash,
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
        if Entry::<K, V>::INLINE {
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
        if Entry::<K, V>::INLINE {
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
        if Entry::<K, V>::INLINE {
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
