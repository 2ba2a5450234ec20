//! The memory of single-flight cells, kept per thread for reuse.
//!
//! A bounded cache allocates a cell at every miss and frees one at every eviction (most of
//! them when the map's epoch reclamation frees the evicted entries, a batch at a time).
//! glibc's per-thread cache holds 7 chunks of a size; past them, its frees and allocations
//! went through its shared bins (`_int_malloc`, `malloc_consolidate`: about 9% of a
//! zipf-bounded profile). Here each thread keeps up to `KEPT` freed blocks of each size
//! class and hands them out again. `KEPT` is the epoch's batch (1,024 objects): a reclamation
//! pass frees up to a batch of entries at once, and so of cells, which the thread's next
//! misses take back. With 64 kept, the rest of each batch went to glibc's shared bins again
//! (5% of a zipf-bounded profile on one host; with 1,024 kept, 0.85x-1.03x the time at 1
//! thread and 0.91x-0.96x at 2 in three runs, `docs/performance-notes.md`); 4,096 measured as
//! 1,024.
//!
//! A block may move between threads (allocated by one, freed and kept by another): it is
//! plain memory of its class's layout, whoever holds it. A thread's blocks go back to the
//! allocator when it exits (or directly, if a cell is freed after that).

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::mem::{align_of, size_of};
use std::ptr::{self, NonNull};

/// Size classes: blocks of 8, 16, ..., 128 bytes, aligned to 8. Larger or more aligned cells
/// (values of more than about 100 bytes, or of types aligned to 16) are not kept.
const CLASSES: usize = 16;

/// The class of `T`'s blocks, if it has one.
const fn class_of<T>() -> Option<usize> {
    let size = size_of::<T>();
    if size == 0 || size > 8 * CLASSES || align_of::<T>() > 8 {
        None
    } else {
        Some(size.div_ceil(8) - 1)
    }
}

/// The layout of the blocks of `class`.
fn class_layout(class: usize) -> Layout {
    Layout::from_size_align(8 * (class + 1), 8).expect("a valid layout")
}

/// This thread's kept blocks.
#[cfg(not(syncmap_loom))]
mod kept {
    use std::alloc::dealloc;
    use std::cell::UnsafeCell;
    use std::ptr::{self, NonNull};

    use super::{class_layout, CLASSES};

    /// The most blocks a thread keeps per class: a reclamation batch (128 KiB for the largest
    /// class, 24 or 32 KiB for the cells of a `u64`).
    pub(super) const KEPT: usize = crate::raw::epoch::BATCH;

    /// One thread's kept blocks: for each class, a list linked through the blocks' first word.
    ///
    /// # Invariants
    ///
    /// `heads[c]` is null or a block of `class_layout(c)` from the global allocator, not in use,
    /// whose first word is the next block of the list (or null); the list holds `counts[c]`
    /// blocks, at most [`KEPT`].
    struct Spares {
        heads: [*mut u8; CLASSES],
        counts: [usize; CLASSES],
    }

    impl Drop for Spares {
        fn drop(&mut self) {
            for (class, head) in self.heads.iter_mut().enumerate() {
                let mut block = std::mem::replace(head, ptr::null_mut());
                while !block.is_null() {
                    // SAFETY: a kept block (the invariants): its first word links the list, and
                    // it was allocated with this layout.
                    unsafe {
                        let next = block.cast::<*mut u8>().read();
                        dealloc(block, class_layout(class));
                        block = next;
                    }
                }
            }
        }
    }

    thread_local! {
        /// Only [`take`] and [`keep`] touch it, in a closure that calls no other code, so no two
        /// references to it exist at once.
        static SPARES: UnsafeCell<Spares> = const {
            UnsafeCell::new(Spares {
                heads: [ptr::null_mut(); CLASSES],
                counts: [0; CLASSES],
            })
        };
    }

    /// A kept block of `class` from this thread's list, if it has one.
    pub(super) fn take(class: usize) -> Option<NonNull<u8>> {
        SPARES
            .try_with(|spares| {
                // SAFETY: the only reference to this thread's spares while it lives (see there).
                let spares = unsafe { &mut *spares.get() };
                let block = NonNull::new(spares.heads[class])?;
                // SAFETY: a kept block: its first word is the next one (the invariants).
                spares.heads[class] = unsafe { block.cast::<*mut u8>().read() };
                spares.counts[class] -= 1;
                Some(block)
            })
            .ok()
            .flatten()
    }

    /// Keeps `block` of `class` in this thread's list; `false` if the list is full (or the thread
    /// is exiting), and the caller frees it.
    pub(super) fn keep(class: usize, block: NonNull<u8>) -> bool {
        SPARES
            .try_with(|spares| {
                // SAFETY: as in `take`.
                let spares = unsafe { &mut *spares.get() };
                if spares.counts[class] == KEPT {
                    return false;
                }
                // SAFETY: the caller gives up the block, of this class's layout (at least 8 bytes,
                // aligned to 8): its first word may hold the link.
                unsafe { block.cast::<*mut u8>().write(spares.heads[class]) };
                spares.heads[class] = block.as_ptr();
                spares.counts[class] += 1;
                true
            })
            .unwrap_or(false)
    }
}

/// Under loom, cells are leaked rather than freed (see `SlotRef`'s `Drop`), and loom's threads
/// share one OS thread: nothing is kept.
#[cfg(syncmap_loom)]
mod kept {
    use std::ptr::NonNull;

    pub(super) fn take(_: usize) -> Option<NonNull<u8>> {
        None
    }

    pub(super) fn keep(_: usize, _: NonNull<u8>) -> bool {
        false
    }
}

/// Moves `value` to memory of its own: a kept block of its class, or a new allocation. The
/// result is freed by [`free`] only.
pub(super) fn allocate<T>(value: T) -> NonNull<T> {
    const { assert!(size_of::<T>() != 0, "cells are never zero-sized") };
    let block = match class_of::<T>() {
        Some(class) => kept::take(class).unwrap_or_else(|| fresh(class_layout(class))),
        None => fresh(Layout::new::<T>()),
    };
    let block = block.cast::<T>();
    // SAFETY: a block of at least `size_of::<T>()` bytes, aligned for `T`, not in use.
    unsafe { block.as_ptr().write(value) };
    block
}

/// New memory of `layout` (not zero-sized) from the global allocator.
fn fresh(layout: Layout) -> NonNull<u8> {
    // SAFETY: the layout is not zero-sized (`class_of`, and `allocate`'s assertion).
    NonNull::new(unsafe { alloc(layout) }).unwrap_or_else(|| handle_alloc_error(layout))
}

/// Drops the value at `ptr` and frees its memory (keeping it for this thread when there is
/// room).
///
/// # Safety
///
/// `ptr` came from [`allocate`] with this `T`, and is not used after this call.
pub(super) unsafe fn free<T>(ptr: NonNull<T>) {
    // If the value's `Drop` panics, the block is leaked, never kept half-dropped.
    // SAFETY: a live `T` (the caller's contract), dropped once.
    unsafe { ptr::drop_in_place(ptr.as_ptr()) };
    let block = ptr.cast::<u8>();
    match class_of::<T>() {
        Some(class) => {
            if !kept::keep(class, block) {
                // SAFETY: allocated with this class's layout (`allocate`).
                unsafe { dealloc(block.as_ptr(), class_layout(class)) };
            }
        }
        // SAFETY: allocated with `T`'s own layout (`allocate`).
        None => unsafe { dealloc(block.as_ptr(), Layout::new::<T>()) },
    }
}

#[cfg(all(test, not(syncmap_loom)))]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn classes_cover_small_cells_and_leave_large_or_aligned_ones() {
        assert_eq!(class_of::<u64>(), Some(0));
        assert_eq!(class_of::<[u8; 9]>(), Some(1));
        assert_eq!(class_of::<[u64; 3]>(), Some(2));
        assert_eq!(class_of::<[u64; 16]>(), Some(15));
        assert_eq!(class_of::<[u64; 17]>(), None);
        assert_eq!(class_of::<u128>().is_some(), align_of::<u128>() <= 8);
        assert_eq!(class_of::<()>(), None);
    }

    /// A block freed is handed out again to the next allocation of its class on this thread,
    /// every value is dropped once, and a full list sends blocks back to the allocator.
    #[test]
    fn freed_blocks_are_reused_and_values_dropped_once() {
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        struct Counted(#[allow(dead_code)] [u64; 3]);
        impl Drop for Counted {
            fn drop(&mut self) {
                DROPS.fetch_add(1, Ordering::Relaxed);
            }
        }
        let first = allocate(Counted([1, 2, 3]));
        // SAFETY: from `allocate`, not used after.
        unsafe { free(first) };
        let second = allocate(Counted([4, 5, 6]));
        assert_eq!(first, second, "the kept block is reused");
        // SAFETY: a live value from `allocate`.
        assert_eq!(unsafe { second.as_ref() }.0, [4, 5, 6]);
        // More than a list keeps: the rest is freed.
        let many: Vec<_> = (0..kept::KEPT as u64 + 10)
            .map(|i| allocate(Counted([i; 3])))
            .collect();
        for ptr in many.into_iter().chain([second]) {
            // SAFETY: each from `allocate`, freed once.
            unsafe { free(ptr) };
        }
        assert_eq!(DROPS.load(Ordering::Relaxed), kept::KEPT + 12);
    }

    /// Blocks freed on another thread are kept there and freed when it exits (miri checks
    /// that nothing leaks and nothing is freed twice).
    #[test]
    fn blocks_cross_threads_and_go_back_when_a_thread_exits() {
        struct Blocks(Vec<NonNull<[u64; 2]>>);
        // SAFETY: the blocks are handed over whole: only the receiving thread uses them.
        unsafe impl Send for Blocks {}
        let blocks = Blocks((0..8u64).map(|i| allocate([i; 2])).collect());
        std::thread::spawn(move || {
            let blocks = blocks;
            for ptr in blocks.0 {
                // SAFETY: from `allocate` on the parent thread, freed once, here.
                unsafe { free(ptr) };
            }
            let again = allocate([9u64; 2]);
            // SAFETY: from `allocate`, freed once.
            unsafe { free(again) };
        })
        .join()
        .unwrap();
    }
}
