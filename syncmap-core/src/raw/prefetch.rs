//! Software prefetch, where a large map's memory is read in an order known ahead: the copy of
//! a snapshot into the next dirty table ([`Dirty::step`](super::dirty::Dirty::step)), whose
//! entries are scattered over the heap, and a new key's probe of the dirty table, which a
//! writer asks for before it searches the snapshot
//! ([`ProbeHint`](super::shard::ProbeHint)). Each would be a cache miss waiting for the one
//! before; asked for first, the misses overlap. Also the places a bounded cache's eviction
//! policy writes its next nodes to, asked for with write intent ([`prefetch_for_write`]).

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

/// Asks for the cache line at `address` in a state this core may write without asking again
/// (`prefetchw`), for a line the caller is about to write, which another core may hold. A
/// hint, as [`prefetch_address`] is.
#[inline(always)]
pub(crate) fn prefetch_for_write(address: usize) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: `prefetchw` neither faults nor changes memory, whatever the address (processors
    // without it run it as a no-op). `_mm_prefetch` with `_MM_HINT_ET0` emits `prefetcht0`
    // unless the crate is built for a target with `prfchw`, hence the instruction itself.
    unsafe {
        std::arch::asm!(
            "prefetchw byte ptr [{0}]",
            in(reg) address,
            options(nostack, preserves_flags, readonly)
        );
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = address;
}
