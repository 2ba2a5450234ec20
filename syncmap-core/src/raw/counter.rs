//! A striped counter: writers add to the stripe of their thread, readers sum the stripes, so
//! counting never makes two threads write the same cache line, and mostly needs no locked
//! instruction.

use super::sync::{AtomicIsize, Ordering};

/// Aligns its content to a cache line pair (adjacent-line prefetching pulls 128 bytes on x86).
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicIsize);

impl Padded {
    /// Adds `delta` with a plain load and store: for a stripe with a single writer at a time.
    #[inline]
    fn add_exclusive(&self, delta: isize) {
        self.0
            .store(self.0.load(Ordering::Relaxed) + delta, Ordering::Relaxed);
    }
}

/// A counter that threads update without contending.
///
/// # Invariants
///
/// - `owned[i]` is written only by the thread that currently owns the epoch collector's thread
///   record with id `i` (`Guard::thread_id`). A record has one owner at a time, and ownership
///   passes with a release store and an acquire CAS, so each owner sees its predecessor's count
///   and a plain load and store loses nothing.
/// - `shared` takes atomic adds from threads whose record id has no stripe of its own.
#[derive(Default)]
pub(crate) struct StripedCounter {
    owned: [Padded; Self::OWNED],
    shared: Padded,
}

impl StripedCounter {
    /// Threads (record ids) with a stripe of their own.
    const OWNED: usize = 8;

    /// Adds `delta` for the thread that owns the epoch record with id `owner`: a plain load and
    /// store on its own stripe, or an atomic add on the shared one if its id is too large.
    #[inline]
    pub(crate) fn add(&self, owner: usize, delta: isize) {
        match self.owned.get(owner) {
            Some(stripe) => stripe.add_exclusive(delta),
            None => {
                self.shared.0.fetch_add(delta, Ordering::Relaxed);
            }
        }
    }

    /// The sum of the stripes; exact when no thread adds concurrently.
    pub(crate) fn sum(&self) -> isize {
        self.owned
            .iter()
            .chain([&self.shared])
            .map(|stripe| stripe.0.load(Ordering::Relaxed))
            .sum()
    }
}
