//! A striped counter: writers add to the stripe of their thread, readers sum the stripes, so
//! counting never makes two threads write the same cache line.

use super::sync::{AtomicIsize, Ordering};

/// Aligns its content to a cache line pair (adjacent-line prefetching pulls 128 bytes on x86).
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicIsize);

/// A counter that threads update without contending.
#[derive(Default)]
pub(crate) struct StripedCounter {
    stripes: [Padded; Self::STRIPES],
}

impl StripedCounter {
    const STRIPES: usize = 8;

    /// Adds `delta` on the stripe of the thread with this numeric id.
    #[inline]
    pub(crate) fn add(&self, thread_id: usize, delta: isize) {
        self.stripes[thread_id % Self::STRIPES]
            .0
            .fetch_add(delta, Ordering::Relaxed);
    }

    /// The sum of the stripes; exact when no thread adds concurrently.
    pub(crate) fn sum(&self) -> isize {
        self.stripes
            .iter()
            .map(|stripe| stripe.0.load(Ordering::Relaxed))
            .sum()
    }
}
