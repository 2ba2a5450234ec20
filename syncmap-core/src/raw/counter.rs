//! A striped counter: writers add to the stripe of their thread, readers sum the stripes, so
//! counting never makes two threads write the same cache line.

use super::sync::{AtomicIsize, Ordering};

/// Aligns its content to a cache line pair (adjacent-line prefetching pulls 128 bytes on x86).
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicIsize);

/// A counter that threads update without contending.
///
/// # Invariants
///
/// Only the holder of the owning map's lock writes `locked`, so a plain load and store updates it
/// without losing counts; `stripes` take atomic adds from any thread.
#[derive(Default)]
pub(crate) struct StripedCounter {
    stripes: [Padded; Self::STRIPES],
    locked: Padded,
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

    /// Adds `delta` on the stripe of the lock holder: no locked instruction, which the paths
    /// that already hold the lock would otherwise pay on top of taking and releasing it. Caller
    /// holds the owning map's lock.
    #[inline]
    pub(crate) fn add_locked(&self, delta: isize) {
        let stripe = &self.locked.0;
        stripe.store(stripe.load(Ordering::Relaxed) + delta, Ordering::Relaxed);
    }

    /// The sum of the stripes; exact when no thread adds concurrently.
    pub(crate) fn sum(&self) -> isize {
        self.stripes
            .iter()
            .chain([&self.locked])
            .map(|stripe| stripe.0.load(Ordering::Relaxed))
            .sum()
    }
}
