//! Software prefetch, where a large map's memory is read in an order known ahead: the copy of
//! a snapshot into the next dirty table ([`Dirty::step`](super::dirty::Dirty::step)), whose
//! entries are scattered over the heap, and a new key's probe of the dirty table, which a
//! writer asks for before it searches the snapshot
//! ([`ProbeHint`](super::shard::ProbeHint)). Each would be a cache miss waiting for the one
//! before; asked for first, the misses overlap.

/// Asks the processor to bring `target`'s cache line in, without waiting for it.
#[inline(always)]
pub(crate) fn prefetch<T>(target: &T) {
    prefetch_address(target as *const T as usize);
}

/// Asks for the cache line at `address`, which may be stale or point anywhere: a hint that
/// neither faults nor reads anything the program sees, so a wrong guess costs only the hint (a
/// no-op where no instruction is used for it, and under miri).
#[inline(always)]
pub(crate) fn prefetch_address(address: usize) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: `prefetcht0` neither faults nor changes memory, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address as *const i8);
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = address;
}
