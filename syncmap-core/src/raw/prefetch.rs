//! Software prefetch, for the copy of a large snapshot into the next dirty table
//! ([`Dirty::step`](super::dirty::Dirty::step)): each entry it visits is a cache miss, and
//! asking for the lines of the next entries first lets the misses overlap.

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
