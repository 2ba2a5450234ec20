//! Retired objects and their batches, the pools of spare allocations, and the birth header
//! of allocations.

use super::*;

/// A retired object and the function that frees it.
#[derive(Clone, Copy)]
pub(super) struct Retired {
    pub(super) ptr: *mut (),
    /// Frees the object; for an object of a pool, only drops it in place.
    pub(super) free: unsafe fn(*mut ()),
    /// The index of the collector's [`Pool`] whose layout the object's allocation has, or
    /// [`NO_POOL`]: once dropped in place, its memory goes to the reclaiming thread's spares of
    /// that pool (or back to the allocator).
    pub(super) pool: u8,
    /// A lower bound of the collector's epoch when the object became reachable (its birth).
    pub(super) birth: u64,
}

/// [`Retired::pool`] of an object freed whole by its `free` function.
pub(super) const NO_POOL: u8 = u8::MAX;

/// How many layouts a collector recycles at most (the map's values and entries).
pub(super) const POOLS: usize = 2;

/// Spare allocations of one layout, shared by the threads of a collector.
pub(super) struct Pool {
    /// The layout of the allocations, a [`Born`] header included.
    pub(super) layout: Layout,
    /// How many spares a slot keeps for this pool.
    pub(super) limit: usize,
    /// Spares no slot had room for, at most `2 * limit`.
    pub(super) shared: Mutex<Vec<NonNull<u8>>>,
    /// `shared.len()`, read without the lock to skip it when empty (a hint: refills check
    /// again under the lock).
    pub(super) shared_len: AtomicUsize,
    /// Where the pool's memory comes from if its objects are small (`pages.rs`); else from the
    /// global allocator, one allocation each.
    pub(super) pages: Option<PagesBox>,
}

impl Pool {
    /// Gives back the memory of an object of this pool (dropped already).
    ///
    /// # Safety
    ///
    /// `memory` was handed out by this pool (a spare, or from `Pages::alloc`) or allocated by
    /// the global allocator with `layout` if the pool has no pages, holds no object, and is
    /// not used afterwards.
    pub(super) unsafe fn dispose(&self, memory: NonNull<u8>) {
        if self.pages.is_some() {
            // SAFETY: a pool with pages hands out only their memory, per the caller.
            unsafe { pages::free(memory.as_ptr()) };
        } else {
            // SAFETY: per the caller.
            unsafe { alloc::dealloc(memory.as_ptr(), self.layout) };
        }
    }
}

/// Sealed retired objects, all unlinked before the collector's epoch took the value `tag`.
pub(super) struct Batch {
    pub(super) tag: u64,
    pub(super) items: Vec<Retired>,
}

/// An object allocated by [`LocalGuard::alloc`], followed by its birth: the collector's epoch
/// when it was allocated, read before the object could be published, and [`PAGED`] if its
/// memory is in a page (`pages.rs`) rather than an allocation of its own. The object comes
/// first, at the start of the allocation, so that it keeps the allocator's alignment and a
/// pointer to it is a pointer to the whole.
#[repr(C)]
pub(super) struct Born<T> {
    pub(super) object: T,
    pub(super) birth: u64,
}

/// [`Born::birth`]'s bit for memory in a page: an epoch never reaches it (one `fetch_add` per
/// 1024 retirements).
pub(super) const PAGED: u64 = 1 << 63;

impl<T> Born<T> {
    /// The object's birth, without the [`PAGED`] bit.
    #[inline]
    pub(super) fn birth(&self) -> u64 {
        self.birth & !PAGED
    }

    /// Whether the object's memory is in a page.
    #[inline]
    pub(super) fn is_paged(&self) -> bool {
        self.birth & PAGED != 0
    }

    /// The header of an object allocated by [`LocalGuard::alloc`].
    ///
    /// # Safety
    ///
    /// `object` came from `LocalGuard::alloc::<T>` (so it points at the `object` field of a
    /// `Born<T>`, with the whole allocation's provenance).
    #[inline]
    pub(super) unsafe fn of(object: *mut T) -> *mut Born<T> {
        const { assert!(mem::offset_of!(Born<T>, object) == 0) };
        // The object is the first field: its pointer is the `Born<T>`'s, with the whole
        // allocation's provenance (per the caller).
        object.cast::<Born<T>>()
    }

    /// The layout of a `Born<T>` given `T`'s (what `#[repr(C)]` lays out).
    pub(super) fn layout(object: Layout) -> Layout {
        let (layout, _) = object
            .extend(Layout::new::<u64>())
            .expect("a map value or entry layout is small");
        layout.pad_to_align()
    }
}

/// Frees an object of [`LocalGuard::alloc`] that was never published, or that no thread can
/// reach any more (the map's `Drop`).
///
/// # Safety
///
/// `object` came from `LocalGuard::alloc::<T>`, nothing else will use it, and it is freed once.
pub(crate) unsafe fn free_allocated<T>(object: *mut T) {
    // SAFETY: per the caller, `Born::of` gives the `Born<T>` that `alloc` made.
    let born = unsafe { Born::of(object) };
    // SAFETY: as above; the header is written before the object is handed out.
    if unsafe { (*born).is_paged() } {
        /// Gives the memory back when dropped, so also if the object's `Drop` panics (as a
        /// `Box` frees its memory then).
        struct GiveBack(*mut u8);
        impl Drop for GiveBack {
            fn drop(&mut self) {
                // SAFETY: memory of a page (its mark), whose object was dropped (or unwound
                // from), given back once.
                unsafe { pages::free(self.0) }
            }
        }
        let _give_back = GiveBack(born.cast());
        // SAFETY: the object is initialized and dropped once, here.
        unsafe { ptr::drop_in_place(born) };
    } else {
        // SAFETY: the `Box<Born<T>>` that `alloc` leaked (or a spare of a pool without pages:
        // an allocation of `Layout::new::<Born<T>>()`, as `Box` makes them).
        drop(unsafe { Box::from_raw(born) });
    }
}

/// The birth of an object of [`LocalGuard::alloc`].
///
/// # Safety
///
/// `object` came from `LocalGuard::alloc::<T>` and is not freed yet.
pub(crate) unsafe fn birth_of<T>(object: *mut T) -> u64 {
    // SAFETY: per the caller; the header is written before the object is handed out and never
    // again.
    unsafe { (*Born::of(object)).birth() }
}
