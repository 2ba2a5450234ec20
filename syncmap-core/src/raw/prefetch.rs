//! Software prefetch: on a map larger than the cache, a new key's steps (the snapshot's probe,
//! the filter, the dirty table, the next copy) each wait for memory. Where the address of a
//! later step is known early, asking for its line first lets the misses overlap.

/// Asks the processor to bring `target`'s cache line in, without waiting for it: a hint that
/// reads nothing the program sees (a no-op where no instruction is used for it, and under
/// miri).
#[inline(always)]
pub(crate) fn prefetch<T>(target: &T) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: `prefetcht0` neither faults nor changes memory, whatever the address; this one is
    // a live reference's.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (target as *const T).cast(),
        );
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = target;
}
