//! Hit and miss counters that add no shared write to the hit path: each thread counts on its own
//! stripe (chosen by a thread-local index), and readers sum the stripes.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Counters of one [`Memo`](super::Memo), as [`Memo::stats`](super::Memo::stats) reports them.
///
/// Counts are exact once no call runs concurrently; while calls run, each counter is some value
/// it had during the read.
///
/// ```
/// use syncmap_core::MemoStats;
///
/// let stats = MemoStats::default();
/// assert_eq!(stats.hits + stats.misses, 0);
/// assert_eq!(stats.hit_ratio(), None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoStats {
    /// Calls answered from the cache.
    pub hits: u64,
    /// Calls that did not find a value (each computed, or waited for another caller's result).
    pub misses: u64,
    /// Times the function body ran.
    pub computations: u64,
    /// Entries removed to respect the capacity.
    pub evictions: u64,
    /// New entries the eviction policy declined to keep (they were used less often, recently,
    /// than the entries they would have displaced); counted apart from `evictions`.
    pub rejections: u64,
    /// Entries found expired (recomputed on access, or purged).
    pub expirations: u64,
    /// Entries in the cache now.
    pub entries: usize,
}

impl MemoStats {
    /// `hits / (hits + misses)`, or `None` before the first call.
    ///
    /// ```
    /// use syncmap_core::MemoStats;
    ///
    /// let mut stats = MemoStats::default();
    /// stats.hits = 3;
    /// stats.misses = 1;
    /// assert_eq!(stats.hit_ratio(), Some(0.75));
    /// ```
    pub fn hit_ratio(&self) -> Option<f64> {
        let calls = self.hits + self.misses;
        (calls > 0).then(|| self.hits as f64 / calls as f64)
    }
}

/// What a stripe counts.
#[derive(Clone, Copy)]
pub(crate) enum Counter {
    Hit = 0,
    Miss = 1,
    Computation = 2,
    Eviction = 3,
    Expiration = 4,
    Rejection = 5,
}

/// One cache-line pair of counters.
#[repr(align(128))]
#[derive(Default)]
struct Stripe([AtomicU64; 6]);

/// Striped counters.
pub(crate) struct Counters {
    stripes: [Stripe; STRIPES + SHARED],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            stripes: std::array::from_fn(|_| Stripe::default()),
        }
    }
}

/// Stripes each owned by one live thread, updated with a plain load and store.
const STRIPES: usize = 64;
/// Stripes for the threads beyond the first 64 alive at once, and for threads being torn down:
/// updated with atomic adds only, never by an owner's load and store (which would lose them).
const SHARED: usize = 8;

/// Which stripes a live thread owns alone.
static CLAIMED: [AtomicBool; STRIPES] = [const { AtomicBool::new(false) }; STRIPES];

/// The current thread's stripe, and whether no other live thread uses it.
struct StripeToken {
    index: usize,
    exclusive: bool,
}

impl StripeToken {
    fn claim() -> StripeToken {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        for (index, claimed) in CLAIMED.iter().enumerate() {
            if !claimed.swap(true, Ordering::AcqRel) {
                return StripeToken {
                    index,
                    exclusive: true,
                };
            }
        }
        StripeToken {
            index: STRIPES + NEXT.fetch_add(1, Ordering::Relaxed) % SHARED,
            exclusive: false,
        }
    }
}

impl Drop for StripeToken {
    fn drop(&mut self) {
        if self.exclusive {
            CLAIMED[self.index].store(false, Ordering::Release);
        }
    }
}

thread_local! {
    static STRIPE: StripeToken = StripeToken::claim();
}

impl Counters {
    /// Adds one on the current thread's stripe.
    #[inline]
    pub(crate) fn bump(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Adds `n` on the current thread's stripe: a plain load and store when the thread owns the
    /// stripe (no locked instruction on the hit path), an atomic add when more than 64 threads
    /// live at once and it shares one.
    #[inline]
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let add = |token: &StripeToken| {
            let cell = &self.stripes[token.index].0[counter as usize];
            if token.exclusive {
                cell.store(cell.load(Ordering::Relaxed) + n, Ordering::Relaxed);
            } else {
                cell.fetch_add(n, Ordering::Relaxed);
            }
        };
        if STRIPE.try_with(add).is_err() {
            // During thread teardown: count on a shared stripe, atomically.
            self.stripes[STRIPES].0[counter as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    fn sum(&self, counter: Counter) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0[counter as usize].load(Ordering::Relaxed))
            .sum()
    }

    /// A report, with the number of entries supplied by the caller.
    pub(crate) fn snapshot(&self, entries: usize) -> MemoStats {
        MemoStats {
            hits: self.sum(Counter::Hit),
            misses: self.sum(Counter::Miss),
            computations: self.sum(Counter::Computation),
            evictions: self.sum(Counter::Eviction),
            expirations: self.sum(Counter::Expiration),
            rejections: self.sum(Counter::Rejection),
            entries,
        }
    }
}
