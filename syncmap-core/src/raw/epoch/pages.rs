//! Pages: the memory of a pool's objects (the map's entries and small values), carved from
//! blocks of [`PAGE`] bytes instead of one allocation each. glibc puts a 40-byte entry in a
//! 48-byte chunk (its 8-byte header, rounded to 16); a page puts it in 40, which took a
//! memoized `u64 -> u64` entry at 1M from 70.8 to 63.3 resident bytes.
//!
//! A page is aligned to its size, so the page of an object is its address rounded down, and
//! freeing one needs neither the collector nor the pool: [`free`] runs wherever an object of
//! [`LocalGuard::alloc`](super::LocalGuard::alloc) is freed (a reclamation pass, the map's
//! `Drop`, a value that was never published, the last hold of a counted entry).
//!
//! # Design
//!
//! - A page is owned by at most one [`Slot`](super::Slot) (the thread holding its id) at a
//!   time, which takes objects from it without atomics: first from its local list of free
//!   slots, then from the page's never used tail.
//! - Any thread frees an object by pushing it on the page's `remote` stack (a compare and
//!   swap); the owner takes that stack whole when its local list and the tail run out. Only
//!   whole-stack takes pop, so the stack has no ABA problem.
//! - `used` counts the objects handed out and not freed, as far as the owner published its
//!   count: the owner counts what it hands out in a plain field and adds it when it gives the
//!   page up, and holds one more while it owns the page. So `used` is exact once the page is
//!   unowned, and 0 there means every object in it is free; while owned it may read 0 or less
//!   (frees of objects whose count is not published yet), which the list check below ignores.
//! - A page whose local list, tail and `remote` stack are all empty is given up: it goes to its
//!   pool's list of unowned pages, or, if nothing in it is used any more, back to the
//!   allocator. The free that takes `used` of an unowned page to 0 gives it back too. A thread
//!   that needs a page takes an unowned one that objects were freed to since (the pool's
//!   `maybe_free` hint saves the scan when none was), or allocates a new one.
//! - Pages nobody gave back are freed with the collector, after everything it holds.
//!
//! So a map keeps no more pages than its objects (and spares) need, plus one page per thread
//! that allocated, plus pages whose objects are only partly freed (a page goes back once all
//! of its objects are: as with any allocator, a few long-lived objects keep their pages).

use std::alloc::{self, Layout};
use std::cell::Cell;
use std::mem;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicPtr, Ordering};
use std::sync::{Mutex, PoisonError};

/// The size and alignment of a page. Large, so that the few pages a big map holds waste
/// little around them: glibc makes an aligned block from a larger one and writes the headers of
/// the free pieces it leaves (64 KiB pages cost 4.4 more resident bytes per memoized entry at
/// 1M than 1 MiB pages, 256 KiB 1.1 more). A small map takes no page at all (see
/// [`Pages::boxed_first`]). Smaller under Miri, which checks every byte.
#[cfg(not(miri))]
pub(super) const PAGE: usize = 1024 * 1024;
#[cfg(miri)]
pub(super) const PAGE: usize = 16 * 1024;

/// The largest objects (a `Born` header included) a pool puts in pages. Larger ones are
/// allocated one by one (the allocator's header is a small part of them).
pub(super) const MAX_PAGED: usize = 256;

/// The head of a page; its objects follow, from [`Pages::first`].
///
/// # Invariants
///
/// - `pages` points at the [`Pages`] that allocated the page, which outlives it.
/// - Every object slot of the page is exactly one of: handed out (the caller's until it is
///   given to [`free`]), in `local`, in `remote`, or at or after `fresh` (never used).
/// - `local`, `fresh` and `handed_out` are accessed only by the owner, or under the pool's
///   lock while the page is unowned (in `unowned`), or by the collector's `Drop`.
/// - `used` equals the objects handed out and not freed, minus the owner's `handed_out`, plus 1
///   while the page is owned. The page is deallocated only when it is unowned and `used` is 0
///   (every object free), under the pool's lock, out of `unowned` (or by the collector's
///   `Drop`).
#[repr(C, align(128))]
pub(super) struct Page {
    pages: *const Pages,
    /// Slots freed by [`free`], linked through their first word.
    remote: AtomicPtr<u8>,
    used: AtomicIsize,
    /// The owner's fields below, which it writes at every allocation, stay off the line that
    /// other threads' frees write.
    _apart: [u8; 128 - 3 * size_of::<usize>()],
    /// Free slots the owner took from `remote`, linked through their first word.
    local: Cell<*mut u8>,
    /// The offset of the first never used slot.
    fresh: Cell<usize>,
    /// Objects the owner handed out since it took the page, not yet counted in `used`.
    handed_out: Cell<isize>,
}

/// The pages of one pool.
pub(super) struct Pages {
    /// An object slot's layout (size and alignment).
    slot: Layout,
    /// The offset of a page's first slot.
    first: usize,
    /// Pages no thread owns, with objects in use (or whose last free is about to give them
    /// back).
    unowned: Mutex<Vec<NonNull<Page>>>,
    /// Set when a free finds a page's `remote` stack empty (so a page of `unowned` may have
    /// free slots); cleared by the scan that looks for one.
    maybe_free: AtomicBool,
    /// How many objects a thread allocates one by one (from the global allocator, with its
    /// header) before it takes pages: a quarter of a page's worth, so that a map that stays
    /// small takes no page, and a page is at most four times what the thread had allocated.
    pub(super) boxed_first: usize,
}

// SAFETY: the raw pointers are pages, shared per the invariants of `Page`; the list is behind a
// mutex.
unsafe impl Send for Pages {}
// SAFETY: as above.
unsafe impl Sync for Pages {}

/// A pool's [`Pages`], at an address that stays put while the collector moves with its map
/// (every page points at it). A raw pointer, not a `Box`: a `Box` asserts it is the only way
/// to its contents whenever its owner is borrowed mutably, while pages read through theirs.
pub(super) struct PagesBox(NonNull<Pages>);

impl PagesBox {
    pub(super) fn new(pages: Pages) -> PagesBox {
        PagesBox(NonNull::from(Box::leak(Box::new(pages))))
    }
}

impl std::ops::Deref for PagesBox {
    type Target = Pages;

    fn deref(&self) -> &Pages {
        // SAFETY: leaked in `new` and freed only in `drop`; only shared references are made.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for PagesBox {
    fn drop(&mut self) {
        // SAFETY: leaked by `new`; the collector dropped its pages already (`free_all`).
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

// SAFETY: as for `Pages`.
unsafe impl Send for PagesBox {}
// SAFETY: as for `Pages`.
unsafe impl Sync for PagesBox {}

/// The page that owns `object`'s memory.
#[inline]
fn page_of(object: *mut u8) -> *mut Page {
    object.map_addr(|a| a & !(PAGE - 1)).cast::<Page>()
}

/// Whether objects of `layout` go in pages.
pub(super) fn pages_fit(layout: Layout) -> bool {
    layout.size() <= MAX_PAGED && layout.align() <= 128 && layout.size() >= size_of::<usize>()
}

impl Pages {
    /// The pages of objects of `slot` (see [`pages_fit`]).
    pub(super) fn new(slot: Layout) -> Pages {
        debug_assert!(pages_fit(slot));
        Pages {
            slot,
            first: size_of::<Page>().next_multiple_of(slot.align()),
            unowned: Mutex::new(Vec::new()),
            maybe_free: AtomicBool::new(false),
            boxed_first: if cfg!(miri) {
                8
            } else {
                PAGE / 4 / slot.size()
            },
        }
    }

    fn page_layout() -> Layout {
        Layout::from_size_align(PAGE, PAGE).expect("a page is a power of two")
    }

    /// Memory for one object, from `*current` (the calling slot's page, null if none), which
    /// it may replace.
    ///
    /// # Safety
    ///
    /// `current` is a slot's page of this pool (or null), and the caller owns that slot.
    #[inline]
    pub(super) unsafe fn alloc(&self, current: &mut *mut Page) -> NonNull<u8> {
        loop {
            let page = *current;
            if !page.is_null() {
                // SAFETY: the caller owns the page (its slot's); live while owned.
                let head = unsafe { &*page };
                let taken = head.local.get();
                let object = if !taken.is_null() {
                    // SAFETY: a free slot of the page, whose first word links the next.
                    head.local.set(unsafe { taken.cast::<*mut u8>().read() });
                    taken
                } else if head.fresh.get() + self.slot.size() <= PAGE {
                    let offset = head.fresh.get();
                    head.fresh.set(offset + self.slot.size());
                    // In bounds of the page's allocation, whose provenance `page` has.
                    page.cast::<u8>().wrapping_add(offset)
                } else {
                    // Acquire: the frees' writes of the links happen before our reads.
                    head.local
                        .set(head.remote.swap(ptr::null_mut(), Ordering::Acquire));
                    if !head.local.get().is_null() {
                        continue;
                    }
                    // SAFETY: owned by the caller, and exhausted.
                    unsafe { self.give_up(page) };
                    *current = ptr::null_mut();
                    continue;
                };
                head.handed_out.set(head.handed_out.get() + 1);
                // SAFETY: inside a live allocation.
                return unsafe { NonNull::new_unchecked(object) };
            }
            *current = self.take_or_allocate();
        }
    }

    /// Gives up an owned page: to the unowned list, or back to the allocator if nothing in it
    /// is used.
    ///
    /// # Safety
    ///
    /// The caller owns `page` and does not use it afterwards.
    #[cold]
    #[inline(never)]
    unsafe fn give_up(&self, page: *mut Page) {
        let mut unowned = self.unowned.lock().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: owned by the caller until this ends.
        let head = unsafe { &*page };
        let published = head.handed_out.replace(0) - 1;
        // AcqRel: frees' decrements (and their pushes before) happen before a deallocation.
        if head.used.fetch_add(published, Ordering::AcqRel) + published == 0 {
            // SAFETY: unowned, every object free, and never in `unowned`.
            unsafe { alloc::dealloc(page.cast(), Self::page_layout()) };
        } else {
            // SAFETY: a page pointer is never null.
            unowned.push(unsafe { NonNull::new_unchecked(page) });
        }
    }

    /// An unowned page with freed slots, or a new page; the caller owns it.
    #[cold]
    #[inline(never)]
    fn take_or_allocate(&self) -> *mut Page {
        let mut unowned = self.unowned.lock().unwrap_or_else(PoisonError::into_inner);
        // SeqCst with the frees' push and hint: a free either sees the hint cleared (and sets
        // it again) or pushed before the scan below reads its page's stack.
        if self.maybe_free.swap(false, Ordering::SeqCst) {
            // Newest first: the pages freed to most recently are likelier at the end.
            let found = unowned.iter().rposition(|page| {
                // SAFETY: pages in `unowned` are live (they leave it before deallocation).
                !unsafe { page.as_ref() }
                    .remote
                    .load(Ordering::SeqCst)
                    .is_null()
            });
            if let Some(index) = found {
                // Others may have freed slots too.
                self.maybe_free.store(true, Ordering::Relaxed);
                let page = unowned.swap_remove(index);
                // SAFETY: live, now ours; the owner's count of `used`.
                unsafe { page.as_ref() }
                    .used
                    .fetch_add(1, Ordering::Relaxed);
                return page.as_ptr();
            }
        }
        drop(unowned);
        let layout = Self::page_layout();
        // SAFETY: the layout's size is not zero.
        let page = unsafe { alloc::alloc(layout) }.cast::<Page>();
        if page.is_null() {
            alloc::handle_alloc_error(layout);
        }
        // SAFETY: a fresh allocation of a page, aligned for `Page`.
        unsafe {
            page.write(Page {
                pages: self,
                remote: AtomicPtr::new(ptr::null_mut()),
                used: AtomicIsize::new(1),
                _apart: [0; 128 - 3 * size_of::<usize>()],
                local: Cell::new(ptr::null_mut()),
                fresh: Cell::new(self.first),
                handed_out: Cell::new(0),
            })
        };
        page
    }

    /// Deallocates every page: those of `owned` (the slots' pages) and the unowned ones.
    ///
    /// # Safety
    ///
    /// No object in them is used any more, nothing else frees into them, and `owned` are the
    /// pages the collector's slots own (each once).
    pub(super) unsafe fn free_all(&self, owned: impl Iterator<Item = *mut Page>) {
        let unowned = mem::take(&mut *self.unowned.lock().unwrap_or_else(PoisonError::into_inner));
        for page in owned.chain(unowned.into_iter().map(NonNull::as_ptr)) {
            // SAFETY: each page once, per the caller.
            unsafe { alloc::dealloc(page.cast(), Self::page_layout()) };
        }
    }

    /// Pages this pool holds: `owned` plus the unowned ones (for tests).
    #[cfg(test)]
    pub(super) fn count(&self, owned: usize) -> usize {
        owned
            + self
                .unowned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
    }
}

/// Frees the memory of an object of a page (the object is dropped already).
///
/// # Safety
///
/// `object` was handed out by [`Pages::alloc`] (with the page's provenance), is not used
/// afterwards, and is freed once.
pub(super) unsafe fn free(object: *mut u8) {
    let page = page_of(object);
    // SAFETY: the page is live: `object` in it is used until this decrement below.
    let (head, pages) = unsafe { (&*page, &*(*page).pages) };
    let mut top = head.remote.load(Ordering::Relaxed);
    loop {
        // SAFETY: the object's memory is ours, and a slot holds a pointer (`pages_fit`).
        unsafe { object.cast::<*mut u8>().write(top) };
        // Release: the link is written before the owner reads it. SeqCst: see the hint.
        match head
            .remote
            .compare_exchange_weak(top, object, Ordering::SeqCst, Ordering::Relaxed)
        {
            Ok(_) => break,
            Err(actual) => top = actual,
        }
    }
    if top.is_null() && !pages.maybe_free.load(Ordering::SeqCst) {
        pages.maybe_free.store(true, Ordering::SeqCst);
    }
    // AcqRel: the push happens before whoever deallocates the page.
    if head.used.fetch_sub(1, Ordering::AcqRel) == 1 {
        // Nothing of the page may be touched from here but through the list.
        pages.release_if_unused(page);
    }
}

impl Pages {
    /// Deallocates `page` if it is unowned and nothing in it is used (its last object was
    /// freed; a thread may have taken the page since, or even given it back).
    #[cold]
    #[inline(never)]
    fn release_if_unused(&self, page: *mut Page) {
        let mut unowned = self.unowned.lock().unwrap_or_else(PoisonError::into_inner);
        // Compared by address only: `page` may be gone, or another page now.
        let Some(index) = unowned.iter().position(|p| p.as_ptr() == page) else {
            return;
        };
        // SAFETY: pages in `unowned` are live. Acquire: every free's decrement (and its push)
        // happens before the deallocation.
        if unsafe { unowned[index].as_ref() }
            .used
            .load(Ordering::Acquire)
            == 0
        {
            let page = unowned.swap_remove(index);
            // SAFETY: unowned, every object free, out of the list: nobody reaches it.
            unsafe { alloc::dealloc(page.as_ptr().cast(), Self::page_layout()) };
        }
    }
}
