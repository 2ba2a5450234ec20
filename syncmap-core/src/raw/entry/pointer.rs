//! The map's pointers to its entries: allocation, retirement and freeing.

use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::ops::Deref;
use std::ptr::{self, NonNull};

use super::super::sync::{self, AtomicPtr, AtomicU64, Guard, Ordering};
use super::counted::{
    drop_entry_and_release, first_of, owns_its_allocation, CountedEntry, InlineEntry, HOLD,
    HOLDS_BITS,
};
use super::Entry;

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
