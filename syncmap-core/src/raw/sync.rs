//! Every synchronization primitive the map uses, in one place, so that a loom build
//! (`RUSTFLAGS="--cfg syncmap_loom"`) can swap in models that loom can see.
//!
//! Under loom, the collector never frees anything before it is dropped (loom checks the map's
//! protocol: promotion, expunging and in-place updates; the reclamation scheme itself is checked
//! by its own tests, miri and ThreadSanitizer), `ArcSwap` is a loom mutex around an `Arc`, and
//! the dirty lock is a loom mutex.

#[cfg(not(syncmap_loom))]
mod imp {
    pub(crate) use std::sync::atomic::{
        AtomicBool, AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
    };

    pub(crate) use arc_swap::ArcSwap;
    pub(crate) use parking_lot::{Mutex, MutexGuard};

    pub(crate) use crate::raw::epoch::Collector;

    /// A value written once by a single writer and then only read, for a type that orders
    /// both through an atomic of its own and knows whether it was written (the memo's cell
    /// and its flight word): nothing is dropped unless [`drop_value`](Self::drop_value) says.
    pub(crate) struct WriteOnce<T>(std::cell::UnsafeCell<std::mem::MaybeUninit<T>>);

    // SAFETY: shared access hands out `&T` (requires `T: Sync`), and the single write may come
    // from another thread than the one that drops the value (requires `T: Send`). The callers
    // of `write` and `get` order them (their safety contracts).
    unsafe impl<T: Send + Sync> Sync for WriteOnce<T> {}

    /// No panic can leave the cell half-written: the write moves a value in, and runs no user
    /// code (as `once_cell`'s cell, which is unwind-safe on the same terms).
    impl<T: std::panic::RefUnwindSafe + std::panic::UnwindSafe> std::panic::RefUnwindSafe
        for WriteOnce<T>
    {
    }

    impl<T> WriteOnce<T> {
        pub(crate) fn new() -> Self {
            WriteOnce(std::cell::UnsafeCell::new(std::mem::MaybeUninit::uninit()))
        }

        /// # Safety
        ///
        /// No other `write` and no `get` runs at the same time, and none ran before.
        pub(crate) unsafe fn write(&self, value: T) {
            // SAFETY: exclusive access, per the caller.
            unsafe { (*self.0.get()).write(value) };
        }

        /// # Safety
        ///
        /// The value was written, and the `write` happens before this call.
        pub(crate) unsafe fn get(&self) -> &T {
            // SAFETY: written, and never written again, per the caller.
            unsafe { (*self.0.get()).assume_init_ref() }
        }

        /// Drops the value.
        ///
        /// # Safety
        ///
        /// The value was written, and is not used afterwards.
        pub(crate) unsafe fn drop_value(&mut self) {
            // SAFETY: written and not used again, per the caller.
            unsafe { self.0.get_mut().assume_init_drop() }
        }
    }

    /// A thread's protection against reclamation, for the duration of one operation.
    pub(crate) type Guard<'c> = crate::raw::epoch::LocalGuard<'c>;

    /// Starts protecting the current thread's loads. Inlined always, as `Collector::enter`
    /// is: a call that returns the guard passes it through memory (SwapMostlyHits took 2.4 ns
    /// more when a change elsewhere made the heuristics stop inlining this one).
    #[inline(always)]
    pub(crate) fn enter(collector: &Collector) -> Guard<'_> {
        collector.enter()
    }

    /// Loads a pointer that stays valid while `guard` is held, if only retired through
    /// [`retire_box`].
    #[inline]
    pub(crate) fn protect<T>(guard: &Guard<'_>, ptr: &AtomicPtr<T>) -> *mut T {
        guard.protect(ptr, Ordering::Acquire)
    }

    /// Frees `ptr`, a `Box`, once no guard that may have loaded it remains.
    ///
    /// # Safety
    ///
    /// `ptr` came from `Box::into_raw` and was unlinked: threads that enter later cannot reach it.
    /// `birth` is at most the [`birth`] of every object only reachable through `ptr` (and of
    /// `ptr` itself): a thread may still use what it loaded only if it was born by then.
    #[inline]
    pub(crate) unsafe fn retire_box<T>(guard: &Guard<'_>, ptr: *mut T, birth: u64) {
        // SAFETY: forwarded from the caller; `boxed` matches `Box::into_raw`.
        unsafe { guard.defer_retire(ptr, crate::raw::epoch::boxed::<T>, birth) }
    }

    /// [`retire_box`] for a box that holds much memory (a shard's old snapshot): sealed at
    /// once, so that the pass at the end of `guard` frees it if no guard covers it any more
    /// (else the next pass of any thread does), instead of waiting for this thread's next
    /// batch of retirements. Costs a reclamation pass (one `membarrier`).
    ///
    /// # Safety
    ///
    /// As for [`retire_box`].
    #[inline]
    pub(crate) unsafe fn retire_box_promptly<T>(guard: &Guard<'_>, ptr: *mut T, birth: u64) {
        // SAFETY: forwarded from the caller; `boxed` matches `Box::into_raw`.
        unsafe { guard.defer_retire_promptly(ptr, crate::raw::epoch::boxed::<T>, birth) }
    }

    /// Calls `reclaim(ptr)` once no guard that may have loaded `ptr` remains.
    ///
    /// # Safety
    ///
    /// `ptr` (or the part of it that `reclaim` drops) was unlinked: threads that enter later
    /// cannot reach it. `reclaim(ptr)` is sound on any thread once no thread can reach it, and
    /// is retired once. `birth` is as for [`retire_box`].
    #[inline]
    pub(crate) unsafe fn retire_with<T>(
        guard: &Guard<'_>,
        ptr: *mut T,
        reclaim: unsafe fn(*mut T),
        birth: u64,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { guard.defer_retire(ptr, reclaim, birth) }
    }

    /// The current epoch of the guard's collector, as the birth of an object about to be
    /// published (for [`retire_box`]).
    #[inline]
    pub(crate) fn birth(guard: &Guard<'_>) -> u64 {
        guard.birth()
    }

    /// The birth of an object of [`alloc_recycled`].
    ///
    /// # Safety
    ///
    /// `ptr` came from [`alloc_recycled`] and is not freed.
    #[inline]
    pub(crate) unsafe fn birth_of<T>(ptr: *mut T) -> u64 {
        // SAFETY: forwarded from the caller.
        unsafe { crate::raw::epoch::birth_of(ptr) }
    }

    /// Allocates a map value or entry with its birth, reusing the memory of a reclaimed one
    /// when this thread has some. Retire it with [`retire_recycled`], or free it with
    /// [`free_recycled`].
    #[inline]
    pub(crate) fn alloc_recycled<T>(guard: &Guard<'_>, value: T) -> *mut T {
        guard.alloc(value)
    }

    /// Frees an object of [`alloc_recycled`] at once.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`alloc_recycled`], no other thread can reach it, and it is not used
    /// afterwards.
    #[inline]
    pub(crate) unsafe fn free_recycled<T>(ptr: *mut T) {
        // SAFETY: forwarded from the caller.
        unsafe { crate::raw::epoch::free_allocated(ptr) }
    }

    /// Takes back an object of [`alloc_recycled`] that was never published.
    ///
    /// # Safety
    ///
    /// As for [`free_recycled`].
    #[inline]
    pub(crate) unsafe fn unbox_recycled<T>(ptr: *mut T) -> T {
        // SAFETY: forwarded from the caller; the value is moved out once and the allocation is
        // freed without dropping it again.
        unsafe {
            let value = std::ptr::read(ptr);
            crate::raw::epoch::free_allocated(ptr.cast::<std::mem::ManuallyDrop<T>>());
            value
        }
    }

    /// Drops a map value or entry of [`alloc_recycled`] once no guard that may have loaded it
    /// remains, and keeps its memory for [`alloc_recycled`].
    ///
    /// # Safety
    ///
    /// `ptr` came from [`alloc_recycled`] and was unlinked: threads that enter later cannot
    /// reach it. It is retired once.
    #[inline]
    pub(crate) unsafe fn retire_recycled<T>(guard: &Guard<'_>, ptr: *mut T) {
        // SAFETY: forwarded from the caller.
        unsafe { guard.defer_recycle(ptr) }
    }

    /// A small number identifying the current thread while it lives: the id of its epoch
    /// record, which no other live thread has.
    #[inline]
    pub(crate) fn thread_id(guard: &Guard<'_>) -> usize {
        guard.thread_id()
    }

    /// The value of an atomic pointer owned exclusively.
    #[inline]
    pub(crate) fn get_mut<T>(ptr: &mut AtomicPtr<T>) -> *mut T {
        *ptr.get_mut()
    }

    /// Lets other threads run while this one waits for them (a bounded count to go down).
    #[cold]
    pub(crate) fn spin_wait() {
        std::thread::yield_now();
    }

    /// Opens a section during which no reclamation pass (no destructor of a retired value) runs
    /// on this thread; see [`Collector::hold_reclamation`].
    #[inline]
    pub(crate) fn hold_reclamation(collector: &Collector) {
        collector.hold_reclamation();
    }

    /// Closes a section opened by [`hold_reclamation`], running the pass it deferred, if any.
    #[inline]
    pub(crate) fn release_reclamation(collector: &Collector) {
        collector.release_reclamation();
    }

    /// Locks `mutex` so that no reclamation pass (no destructor of a retired value) runs on
    /// this thread until the lock is released: a value's `Drop` may then call into the map.
    #[inline]
    ///
    /// `guard` then covers every object found under the lock (see `LocalGuard::refresh`).
    pub(crate) fn lock<'a, T>(
        mutex: &'a Mutex<T>,
        collector: &'a Collector,
        guard: &Guard<'_>,
    ) -> Locked<'a, T> {
        lock_noting_contention(mutex, collector, guard, || {})
    }

    /// [`lock`], calling `contended` first if the mutex is held by another thread (before
    /// waiting for it).
    #[inline]
    pub(crate) fn lock_noting_contention<'a, T>(
        mutex: &'a Mutex<T>,
        collector: &'a Collector,
        guard: &Guard<'_>,
        contended: impl FnOnce(),
    ) -> Locked<'a, T> {
        collector.hold_reclamation();
        let held = mutex.try_lock().unwrap_or_else(|| {
            contended();
            crate::raw::spin::lock_after_spinning(mutex)
        });
        let locked = Locked {
            guard: std::mem::ManuallyDrop::new(held),
            collector,
        };
        guard.refresh();
        locked
    }

    /// A held lock; releasing it runs the reclamation passes deferred while it was held.
    pub(crate) struct Locked<'a, T> {
        guard: std::mem::ManuallyDrop<MutexGuard<'a, T>>,
        collector: &'a Collector,
    }

    impl<T> std::ops::Deref for Locked<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.guard
        }
    }

    impl<T> std::ops::DerefMut for Locked<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            &mut self.guard
        }
    }

    impl<T> Drop for Locked<'_, T> {
        fn drop(&mut self) {
            // SAFETY: dropped exactly once, here; `guard` is not used afterwards.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.guard) };
            self.collector.release_reclamation();
        }
    }
}

#[cfg(syncmap_loom)]
mod imp {
    use std::sync::Arc;

    pub(crate) use loom::sync::atomic::{
        AtomicBool, AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
    };
    pub(crate) use loom::sync::MutexGuard;

    /// A loom mutex with `parking_lot`'s signatures (no poisoning).
    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        }
        pub(crate) fn get_mut(&mut self) -> &mut T {
            self.0
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        }
    }

    /// `arc_swap::ArcSwap`'s operations the map uses, as a loom mutex around an `Arc`.
    pub(crate) struct ArcSwap<T>(loom::sync::Mutex<Arc<T>>);

    impl<T> ArcSwap<T> {
        pub(crate) fn new(value: Arc<T>) -> Self {
            ArcSwap(loom::sync::Mutex::new(value))
        }
        pub(crate) fn swap(&self, value: Arc<T>) -> Arc<T> {
            std::mem::replace(
                &mut *self.0.lock().unwrap_or_else(|p| p.into_inner()),
                value,
            )
        }
        pub(crate) fn load_full(&self) -> Arc<T> {
            Arc::clone(&self.0.lock().unwrap_or_else(|p| p.into_inner()))
        }
    }

    type Retired = (*mut (), unsafe fn(*mut ()));

    /// Keeps everything retired until it is dropped.
    pub(crate) struct Collector(loom::sync::Mutex<Vec<Retired>>);

    // SAFETY: the raw pointers are owned boxes of `Send` values (the map is only `Send`/`Sync`
    // when its keys and values are), freed once, by whoever drops the collector.
    unsafe impl Send for Collector {}
    // SAFETY: as above; the list is behind a mutex.
    unsafe impl Sync for Collector {}

    impl Collector {
        pub(crate) fn new() -> Self {
            Collector(loom::sync::Mutex::new(Vec::new()))
        }

        /// The real collector's signature; the loom one recycles nothing.
        pub(crate) fn recycling(_layouts: &[std::alloc::Layout]) -> Self {
            Self::new()
        }
    }

    impl Drop for Collector {
        fn drop(&mut self) {
            for (ptr, free) in self.0.get_mut().unwrap().drain(..) {
                // SAFETY: each pair was pushed by `retire_box` with the matching free function.
                unsafe { free(ptr) };
            }
        }
    }

    pub(crate) type Guard<'c> = &'c Collector;

    pub(crate) fn enter(collector: &Collector) -> Guard<'_> {
        collector
    }

    pub(crate) fn protect<T>(_guard: &Guard<'_>, ptr: &AtomicPtr<T>) -> *mut T {
        ptr.load(Ordering::Acquire)
    }

    /// # Safety
    ///
    /// As in the real implementation.
    pub(crate) unsafe fn retire_box<T>(guard: &Guard<'_>, ptr: *mut T, _birth: u64) {
        unsafe fn free<T>(ptr: *mut ()) {
            // SAFETY: pushed by `retire_box::<T>` from a `Box<T>`.
            drop(unsafe { Box::from_raw(ptr.cast::<T>()) });
        }
        guard.0.lock().unwrap().push((ptr.cast(), free::<T>));
    }

    /// # Safety
    ///
    /// As in the real implementation.
    pub(crate) unsafe fn retire_box_promptly<T>(guard: &Guard<'_>, ptr: *mut T, birth: u64) {
        // SAFETY: forwarded from the caller.
        unsafe { retire_box(guard, ptr, birth) }
    }

    /// # Safety
    ///
    /// As in the real implementation.
    pub(crate) unsafe fn retire_with<T>(
        guard: &Guard<'_>,
        ptr: *mut T,
        reclaim: unsafe fn(*mut T),
        _birth: u64,
    ) {
        // SAFETY: `*mut T` and `*mut ()` are ABI-compatible thin pointers: calling `reclaim`
        // through this type with the pointer cast back is calling it with `ptr`.
        let reclaim =
            unsafe { std::mem::transmute::<unsafe fn(*mut T), unsafe fn(*mut ())>(reclaim) };
        guard.0.lock().unwrap().push((ptr.cast(), reclaim));
    }

    /// No id with a counter stripe of its own: loom's threads share one OS thread, so they
    /// count on the shared stripe, with atomic adds that loom checks.
    pub(crate) fn thread_id(_guard: &Guard<'_>) -> usize {
        usize::MAX
    }

    pub(crate) fn alloc_recycled<T>(_guard: &Guard<'_>, value: T) -> *mut T {
        Box::into_raw(Box::new(value))
    }

    /// Births only matter to the real collector.
    pub(crate) fn birth(_guard: &Guard<'_>) -> u64 {
        0
    }

    /// # Safety
    ///
    /// As in the real implementation.
    pub(crate) unsafe fn birth_of<T>(_ptr: *mut T) -> u64 {
        0
    }

    /// # Safety
    ///
    /// As in the real implementation.
    pub(crate) unsafe fn free_recycled<T>(ptr: *mut T) {
        // SAFETY: from `alloc_recycled`, a `Box`.
        drop(unsafe { Box::from_raw(ptr) });
    }

    /// # Safety
    ///
    /// As in the real implementation.
    pub(crate) unsafe fn unbox_recycled<T>(ptr: *mut T) -> T {
        // SAFETY: from `alloc_recycled`, a `Box`.
        *unsafe { Box::from_raw(ptr) }
    }

    /// # Safety
    ///
    /// As in the real implementation.
    pub(crate) unsafe fn retire_recycled<T>(guard: &Guard<'_>, ptr: *mut T) {
        // SAFETY: forwarded from the caller.
        unsafe { retire_box(guard, ptr, 0) }
    }

    pub(crate) fn get_mut<T>(ptr: &mut AtomicPtr<T>) -> *mut T {
        ptr.with_mut(|p| *p)
    }

    /// See the non-loom `spin_wait`.
    pub(crate) fn spin_wait() {
        loom::thread::yield_now();
    }

    /// The loom collector never reclaims before it is dropped: nothing to hold.
    pub(crate) fn hold_reclamation(_collector: &Collector) {}

    /// See [`hold_reclamation`].
    pub(crate) fn release_reclamation(_collector: &Collector) {}

    /// The loom collector never reclaims before it is dropped: a plain lock.
    pub(crate) type Locked<'a, T> = MutexGuard<'a, T>;

    pub(crate) fn lock<'a, T>(
        mutex: &'a Mutex<T>,
        _collector: &'a Collector,
        _guard: &Guard<'_>,
    ) -> Locked<'a, T> {
        mutex.lock()
    }

    /// Never reports contention: loom models split maps explicitly.
    pub(crate) fn lock_noting_contention<'a, T>(
        mutex: &'a Mutex<T>,
        collector: &'a Collector,
        guard: &Guard<'_>,
        _contended: impl FnOnce(),
    ) -> Locked<'a, T> {
        lock(mutex, collector, guard)
    }

    /// `WriteOnce` on loom's `UnsafeCell`, which checks that the write and the reads never
    /// overlap.
    pub(crate) struct WriteOnce<T>(loom::cell::UnsafeCell<std::mem::MaybeUninit<T>>);

    // SAFETY: as in the real implementation.
    unsafe impl<T: Send + Sync> Sync for WriteOnce<T> {}

    impl<T> WriteOnce<T> {
        pub(crate) fn new() -> Self {
            WriteOnce(loom::cell::UnsafeCell::new(std::mem::MaybeUninit::uninit()))
        }

        /// # Safety
        ///
        /// As in the real implementation.
        pub(crate) unsafe fn write(&self, value: T) {
            // SAFETY: exclusive access, per the caller (loom checks it).
            self.0.with_mut(|slot| unsafe { (*slot).write(value) });
        }

        /// # Safety
        ///
        /// As in the real implementation.
        pub(crate) unsafe fn get(&self) -> &T {
            // SAFETY: written, per the caller (loom checks the ordering).
            self.0.with(|value| unsafe { (*value).assume_init_ref() })
        }

        /// # Safety
        ///
        /// As in the real implementation.
        pub(crate) unsafe fn drop_value(&mut self) {
            // SAFETY: written and not used again, per the caller.
            self.0
                .with_mut(|value| unsafe { (*value).assume_init_drop() });
        }
    }
}

pub(crate) use imp::*;
