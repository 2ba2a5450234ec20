//! The allocator of the map's hash tables: the global allocator, except that a large table's
//! pages go back to the operating system when the table is freed.
//!
//! A map replaces its tables all the time: each promotion cycle allocates a dirty table with
//! room for the cycle, a promotion may rehash it to fit, and the snapshot it replaces is freed
//! once no reader holds it. glibc's malloc keeps the memory of a freed table below its mmap
//! threshold (128 KiB at first, raised up to 32 MiB by the first large frees) in its heap, and
//! the process's resident memory keeps it until other allocations reuse it: measured with the
//! memory bench's child, a memoized function's cache of 100k `u64` keys took 118.7 resident
//! bytes per key for 79.5 of heap, 75.2 for 68.4 at 1M (with every allocation of 32 KiB or
//! more mmapped, `MALLOC_MMAP_THRESHOLD_=32768`: 83.5 and 70.9). So a table of
//! [`RELEASE_FROM`] bytes or more is told to the kernel as not needed (`madvise`,
//! `MADV_DONTNEED`, on the whole pages inside it) just before it is given back to the global
//! allocator. That is equivalent to zeroing the table's own memory before freeing it: it holds
//! for any global allocator, which still gets every allocation and deallocation (so memory
//! profilers that wrap it see the tables). Elsewhere than Linux, and under Miri and loom, the
//! tables are freed as usual.
//!
//! Most tables are freed by the collector, outside any lock. One freed under a shard's lock (a
//! dirty table that grows, or one rehashed to fit at a promotion) makes the system call there,
//! after a pass over that table's entries that costs more: 9 µs per call on average while a
//! memoized cache grows to 1M keys (64 calls, `strace -c` on the memory bench's child).

use std::alloc::Layout;
use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator, Global};

/// Tables of this many bytes or more give their pages back when freed (about 3,600 buckets
/// and up: a shard of 1,600 keys or more). A smaller table's memory is reused soon by the next
/// tables and entries, and a shard of a small bounded cache, whose tables come and go with
/// its promotion cycles, makes no system call for them.
pub(crate) const RELEASE_FROM: usize = 32 * 1024;

/// The map's table allocator (see the module docs). Allocates with the global allocator.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TableAlloc;

// SAFETY: every block comes from `Global` and goes back to it with the layout it was
// allocated with; `release` only changes the contents of a block the caller owns and is about
// to free (see there), which a `deallocate` may do.
unsafe impl Allocator for TableAlloc {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        Global.allocate(layout)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() >= RELEASE_FROM {
            // SAFETY: the caller owns the block of `layout.size()` bytes at `ptr` and frees it
            // now (`Allocator::deallocate`'s contract).
            unsafe { release(ptr, layout.size()) };
        }
        // SAFETY: allocated by `Global` with `layout` (`allocate` above).
        unsafe { Global.deallocate(ptr, layout) }
    }
}

/// Gives the whole pages inside the `size` bytes at `ptr` back to the kernel; their contents
/// are lost (private anonymous memory, what allocators map, reads as zeros afterwards). A
/// failure (memory the kernel will not drop, such as locked or huge-TLB pages) leaves them as
/// they were.
///
/// # Safety
///
/// The caller owns the `size` bytes at `ptr` and needs none of their contents (they are about
/// to be freed).
#[cfg(all(target_os = "linux", not(miri), not(syncmap_loom)))]
unsafe fn release(ptr: NonNull<u8>, size: usize) {
    let page = page_size();
    let start = ptr.as_ptr().addr().next_multiple_of(page);
    let end = (ptr.as_ptr().addr() + size) / page * page;
    if end > start {
        // SAFETY: `[start, end)` lies inside the caller's block (the function's contract), so
        // the call changes no memory but that block's, whose contents no one needs. The
        // result is ignored: a page the kernel keeps keeps its contents.
        unsafe {
            libc::madvise(
                ptr.as_ptr().with_addr(start).cast(),
                end - start,
                libc::MADV_DONTNEED,
            );
        }
    }
}

/// Elsewhere, the pages stay with the allocator.
///
/// # Safety
///
/// None needed; the signature matches the Linux one.
#[cfg(not(all(target_os = "linux", not(miri), not(syncmap_loom))))]
unsafe fn release(_ptr: NonNull<u8>, _size: usize) {}

/// The kernel's page size (4 KiB on most machines; asked once).
#[cfg(all(target_os = "linux", not(miri), not(syncmap_loom)))]
fn page_size() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    // Relaxed: every thread that asks computes the same value.
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: `sysconf` has no preconditions.
            let asked = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let page = usize::try_from(asked)
                .ok()
                .filter(|p| p.is_power_of_two())
                .unwrap_or(4096);
            PAGE.store(page, Ordering::Relaxed);
            page
        }
        page => page,
    }
}

#[cfg(all(test, target_os = "linux", not(miri), not(syncmap_loom)))]
mod tests {
    use super::*;

    /// The resident pages of the block at `ptr` (`mincore`).
    fn resident_pages(ptr: *mut u8, size: usize) -> usize {
        let page = page_size();
        let start = ptr.addr() / page * page;
        let pages = (ptr.addr() + size - start).div_ceil(page);
        let mut vec = vec![0u8; pages];
        // SAFETY: `[start, start + pages * page)` covers mapped memory (the block, whose
        // first and last pages are mapped); `vec` has one byte per page.
        let result = unsafe {
            libc::mincore(
                ptr.with_addr(start).cast(),
                pages * page,
                vec.as_mut_ptr().cast(),
            )
        };
        assert_eq!(result, 0, "mincore failed");
        vec.iter().filter(|&&b| b & 1 != 0).count()
    }

    /// A large block's inner pages leave resident memory when it is freed, and the bytes
    /// around them are untouched; a small one's stay (no system call).
    #[test]
    fn a_large_table_gives_its_pages_back_and_keeps_its_edges() {
        let page = page_size();
        let size = RELEASE_FROM * 4 + 100;
        let layout = Layout::from_size_align(size, 16).unwrap();
        let block = TableAlloc.allocate(layout).unwrap().cast::<u8>();
        let ptr = block.as_ptr();
        // SAFETY: the block has `size` bytes, ours.
        unsafe { ptr.write_bytes(0xA5, size) };
        let before = resident_pages(ptr, size);
        assert!(before * page >= size, "the written block is resident");
        // SAFETY: the block is ours; the test reads what is left of its contents.
        unsafe { release(block, size) };
        let after = resident_pages(ptr, size);
        assert!(
            after <= 2,
            "{after} pages of {before} stay resident (only the partial edge pages may)"
        );
        let first_inner = ptr.addr().next_multiple_of(page) - ptr.addr();
        let last_inner = (ptr.addr() + size) / page * page - ptr.addr();
        // SAFETY: inside the block.
        unsafe {
            assert!((0..first_inner).all(|i| *ptr.add(i) == 0xA5), "head kept");
            assert!((last_inner..size).all(|i| *ptr.add(i) == 0xA5), "tail kept");
            assert!(
                (first_inner..last_inner).all(|i| *ptr.add(i) == 0),
                "inner zeroed"
            );
            TableAlloc.deallocate(block, layout);
        }
    }
}
