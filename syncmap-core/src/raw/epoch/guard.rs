//! Guards: a thread's protection in one collector.

use super::*;

/// A thread's protection: pointers loaded with [`protect`](Self::protect) stay allocated until
/// the guard is dropped. Not `Send`: it refers to the current thread's slot.
///
/// # Invariants
///
/// `slot` is the slot in `collector` of the current thread's record, which `LOCAL` holds for
/// as long as the guard lives (see [`current_record`]), so the guard does not carry the record.
pub(crate) struct LocalGuard<'a> {
    pub(super) collector: &'a Collector,
    pub(super) slot: &'a Slot,
    /// The `hi` this guard last published in the slot (the slot's may be higher, raised by a
    /// nested guard).
    pub(super) hi: Cell<u64>,
    /// [`OUTERMOST`], [`TRANSIENT`] and [`PASS_DUE`] flags, in one byte so that dropping a
    /// guard that only unpins tests one value.
    pub(super) state: Cell<u8>,
    pub(super) _not_send: PhantomData<*mut ()>,
}

/// [`LocalGuard::state`]: the guard pinned the slot (no other guard of the collector was alive
/// on the thread); it unpins when dropped.
pub(super) const OUTERMOST: u8 = 1;
/// [`LocalGuard::state`]: the record was claimed for this guard alone (the thread's TLS is being
/// destroyed); the guard gives it back when dropped.
pub(super) const TRANSIENT: u8 = 2;
/// [`LocalGuard::state`]: the guard sealed a batch, or saw threads exit: a pass runs when it is
/// dropped.
pub(super) const PASS_DUE: u8 = 4;

impl LocalGuard<'_> {
    /// Asks for a reclamation pass when the guard is dropped.
    #[inline]
    pub(super) fn set_pass_due(&self) {
        self.state.set(self.state.get() | PASS_DUE);
    }

    /// Loads a pointer that stays valid while the guard is held, if it is only retired
    /// through this guard's collector after being unlinked, and was allocated by
    /// [`alloc`](Self::alloc) (or retired with a birth no later than its publication).
    #[inline]
    pub(crate) fn protect<T>(&self, ptr: &AtomicPtr<T>, order: Ordering) -> *mut T {
        let mut p = ptr.load(order);
        loop {
            // Read after the pointer: the object was born at or before this epoch.
            let epoch = self.collector.epoch.0.load(Ordering::Acquire);
            if epoch == self.hi.get() {
                return p;
            }
            self.raise(epoch);
            // The raised `hi` is published (light barrier) before this load, as a pin is.
            barrier::light(self.collector.epoch.1);
            p = ptr.load(order);
        }
    }

    /// Publishes `hi >= epoch` in the slot.
    #[inline]
    pub(super) fn raise(&self, epoch: u64) {
        self.hi.set(epoch);
        if self.slot.hi.load(Ordering::Relaxed) < epoch {
            self.slot.hi.store(epoch, Ordering::Release);
        }
    }

    /// Makes sure the slot's `hi` covers an object born at `birth` that this thread holds.
    #[inline]
    pub(super) fn cover(&self, birth: u64) {
        if birth > self.hi.get() {
            self.raise(birth);
        }
    }

    /// Raises the guard's `hi` to the current epoch: call it after taking a lock, before using
    /// objects found under it (their births are before the lock was taken).
    #[inline]
    pub(crate) fn refresh(&self) {
        let epoch = self.collector.epoch.0.load(Ordering::Acquire);
        if epoch != self.hi.get() {
            self.raise(epoch);
        }
    }

    /// The current epoch, as the birth of an object this thread is about to publish (the guard
    /// covers it).
    #[inline]
    pub(crate) fn birth(&self) -> u64 {
        let epoch = self.collector.epoch.0.load(Ordering::Relaxed);
        self.cover(epoch);
        epoch
    }

    /// Frees `ptr` with `reclaim` once no guard that may have loaded it remains.
    ///
    /// # Safety
    ///
    /// `ptr` was unlinked (threads entering later cannot reach it), is retired once, its
    /// pointee may be dropped on any thread, and `reclaim(ptr)` is sound once unreachable.
    /// `birth` is at most the collector's epoch when `ptr` (or any object only reachable
    /// through it) first became reachable by other threads (0 is always correct).
    #[inline]
    pub(crate) unsafe fn defer_retire<T>(
        &self,
        ptr: *mut T,
        reclaim: unsafe fn(*mut T),
        birth: u64,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { self.defer_retire_sealing(ptr, reclaim, birth, false) }
    }

    /// [`defer_retire`](Self::defer_retire) for an object that holds much memory: seals this
    /// thread's bag at once, so that the pass at the end of this guard frees it unless a
    /// section still covers it (an enclosing guard of this thread, or another thread's), and
    /// otherwise the next pass of any thread does (rather than after the bag's next
    /// `BATCH - 1` retirements). Costs a seal and a pass.
    ///
    /// # Safety
    ///
    /// As for `defer_retire`.
    #[inline]
    pub(crate) unsafe fn defer_retire_promptly<T>(
        &self,
        ptr: *mut T,
        reclaim: unsafe fn(*mut T),
        birth: u64,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { self.defer_retire_sealing(ptr, reclaim, birth, true) }
    }

    /// # Safety
    ///
    /// As for `defer_retire`.
    #[inline]
    unsafe fn defer_retire_sealing<T>(
        &self,
        ptr: *mut T,
        reclaim: unsafe fn(*mut T),
        birth: u64,
        seal_now: bool,
    ) {
        // SAFETY: `*mut T` and `*mut ()` are ABI-compatible (thin raw pointers), so calling
        // `reclaim` through this type with the pointer cast back is calling it with `ptr`.
        let free = unsafe { mem::transmute::<unsafe fn(*mut T), unsafe fn(*mut ())>(reclaim) };
        self.collector.retire(
            self,
            Retired {
                ptr: ptr.cast(),
                free,
                pool: NO_POOL,
                birth,
            },
            seal_now,
        );
    }

    /// Allocates `value` with its birth (in a spare allocation of this thread if there is
    /// one). Free it with [`free_allocated`] if it is never published, or retire it with
    /// [`defer_recycle`](Self::defer_recycle).
    #[inline]
    pub(crate) fn alloc<T>(&self, value: T) -> *mut T {
        let birth = self.birth();
        let p = match self.collector.pool_memory::<T>(self.slot) {
            Some((memory, paged)) => {
                let p = memory.as_ptr();
                let birth = if paged { birth | PAGED } else { birth };
                // SAFETY: memory of the pool of `Born<T>`'s layout holding no object, now
                // ours; writing a `Born<T>` makes it exactly what `Box::new` returns, or an
                // object of a page.
                unsafe {
                    p.write(Born {
                        birth,
                        object: value,
                    })
                };
                p
            }
            None => Box::into_raw(Box::new(Born {
                birth,
                object: value,
            })),
        };
        // SAFETY: `p` is a valid `Born<T>`; the field pointer keeps the allocation's
        // provenance (`Born::of` steps back from it).
        unsafe { ptr::addr_of_mut!((*p).object) }
    }

    /// Retires an object of [`alloc`](Self::alloc) (dropped, then freed or its memory kept for
    /// `alloc` when a pool of the collector recycles its layout) once no guard that may have
    /// loaded it remains.
    ///
    /// # Safety
    ///
    /// As for `defer_retire`, and `ptr` came from [`alloc`](Self::alloc).
    #[inline]
    pub(crate) unsafe fn defer_recycle<T>(&self, ptr: *mut T) {
        // SAFETY: from `alloc`, per the caller.
        let born = unsafe { Born::of(ptr) };
        // SAFETY: the header is live until the object is freed.
        let birth = unsafe { (*born).birth() };
        unsafe fn free_born<T>(ptr: *mut ()) {
            // SAFETY: `ptr` is the retired `*mut Born<T>`, a `Box` leaked by `alloc`, freed once.
            drop(unsafe { Box::from_raw(ptr.cast::<Born<T>>()) });
        }
        unsafe fn drop_born<T>(ptr: *mut ()) {
            // SAFETY: `ptr` is the retired `*mut Born<T>`, dropped once (the collector's
            // invariants); its memory is handled by the pass.
            unsafe { ptr::drop_in_place(ptr.cast::<Born<T>>()) }
        }
        // SAFETY: as above.
        let paged = unsafe { (*born).is_paged() };
        let (free, pool) = match self.collector.pool_of::<T>() {
            // A pool with pages recycles only their memory; the objects a thread allocated
            // one by one before it took pages are freed whole.
            Some((index, pool)) if paged || pool.pages.is_none() => {
                (drop_born::<T> as unsafe fn(*mut ()), index as u8)
            }
            _ => (free_born::<T> as unsafe fn(*mut ()), NO_POOL),
        };
        self.collector.retire(
            self,
            Retired {
                ptr: born.cast(),
                free,
                pool,
                birth,
            },
            false,
        );
    }

    /// A small number identifying the current thread while it lives (reused after it exits).
    #[inline]
    pub(crate) fn thread_id(&self) -> usize {
        self.record().id
    }

    /// The record of the guard's thread, which owns `slot` (see [`current_record`]).
    #[inline]
    pub(super) fn record(&self) -> &'static Record {
        current_record()
    }
}

impl Drop for LocalGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        debug_assert_ne!(self.slot.lo.load(Ordering::Relaxed), INACTIVE);
        let state = self.state.get();
        if state & OUTERMOST != 0 {
            self.slot.lo.store(INACTIVE, Ordering::Release);
        }
        if state & !OUTERMOST != 0 {
            finish(self.collector, state);
        }
    }
}

/// The rare end of a guard in `collector` (of the thread's record, [`current_record`]): give a
/// transient record back, or run the pass the guard asked for. Takes the guard's fields by
/// value, so that no reference to a guard escapes its operation (it then lives in registers).
#[cold]
#[inline(never)]
pub(super) fn finish(collector: &Collector, state: u8) {
    let record = current_record();
    if state & TRANSIENT != 0 {
        // The outermost guard of the exiting thread (the guards opened meanwhile found the
        // record in `LOCAL`, so they were nested and are gone). What they retired waits in the
        // record's bag for adoption.
        set_local(None);
        record.release();
        EXITS.fetch_add(1, Ordering::Release);
    } else if state & PASS_DUE != 0 {
        // After the outermost guard the pass runs unpinned, so this thread's own section
        // holds back nothing it retired; after a nested one, it frees what the enclosing
        // section does not hold.
        collector.pass_when_allowed(Some(record));
    }
}
