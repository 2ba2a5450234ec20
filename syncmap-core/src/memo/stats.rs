//! Hit and miss counters that add no shared write to the hit path: each thread counts on its own
//! stripe (chosen by a thread-local index), and readers sum the stripes.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Counters of one [`Memo`](super::Memo), as [`Memo::stats`](super::Memo::stats) reports them.
///
/// Counts are exact once no call runs concurrently; while calls run, each counter is some value
/// it had during the read.
///
/// ```
/// use std::time::Duration;
/// use syncmemo::MemoStats;
///
/// #[syncmemo::memoize]
/// fn slow_square(x: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(50));
///     x * x
/// }
/// // Four threads ask for the same key at once: one computes, the others wait for it.
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| slow_square(3));
///     }
/// });
/// slow_square(3); // a hit
/// let stats: MemoStats = slow_square_cache().stats();
/// assert_eq!((stats.misses, stats.computations, stats.entries), (1, 1, 1));
/// assert_eq!(stats.hits + stats.waits, 4);
/// assert_eq!(stats.hit_ratio(), Some(0.8));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct MemoStats {
    /// Calls answered from the cache: the value was there when the call looked.
    pub hits: u64,
    /// Calls that found no value and ran the function's body (one per computation, including
    /// computations that panicked and results not kept, such as an `Err` without `cache_err`).
    pub misses: u64,
    /// Calls that found no value but did not run the body: another caller was computing the
    /// same key, and this one waited for its result (single flight), or the value arrived
    /// between the lookup and the wait. A stampede of `n` concurrent first calls counts one
    /// miss and `n - 1` waits. In a `shared` cache, a value found in the shared tier also
    /// counts as a wait (the tier's own counters are in `Memo::shared_stats`).
    pub waits: u64,
    /// Times the body ran to fill a cache cell. At most `misses`: a call whose key is
    /// invalidated while it looks runs the body for itself only, and counts a miss alone.
    pub computations: u64,
    /// Entries removed to respect the capacity.
    pub evictions: u64,
    /// New entries the eviction policy declined to keep (they were used less often, recently,
    /// than the entries they would have displaced); counted apart from `evictions`.
    pub rejections: u64,
    /// Entries found expired: recomputed on access, or removed by
    /// [`Memo::purge_expired`](super::Memo::purge_expired).
    pub expirations: u64,
    /// Values in the cache when the statistics were read (entries being computed are not
    /// counted).
    pub entries: usize,
    /// Callers waiting, when the statistics were read, for another caller's computation of
    /// their key (a gauge, like `entries`; each counts a wait or a miss once it has its value,
    /// and an async call dropped while it waits counts neither). A steady non-zero value means
    /// calls pile up behind slow computations.
    #[cfg_attr(feature = "serde", serde(default))]
    pub waiting: usize,
}

impl MemoStats {
    /// The share of calls that did not run the body: `(hits + waits) / (hits + waits +
    /// misses)`, or `None` before the first call.
    ///
    /// ```
    /// use syncmemo::MemoStats;
    ///
    /// let mut stats = MemoStats::default();
    /// stats.hits = 2;
    /// stats.waits = 1;
    /// stats.misses = 1;
    /// assert_eq!(stats.hit_ratio(), Some(0.75));
    /// ```
    pub fn hit_ratio(&self) -> Option<f64> {
        let calls = self.hits + self.waits + self.misses;
        (calls > 0).then(|| (self.hits + self.waits) as f64 / calls as f64)
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
    Wait = 5,
    Rejection = 6,
}

/// One cache-line pair of counters.
#[repr(align(128))]
#[derive(Default)]
struct Stripe([AtomicU64; 7]);

/// Striped counters, and the gauge of waiting callers.
pub(crate) struct Counters {
    stripes: [Stripe; STRIPES + SHARED],
    /// Callers now waiting for another caller's computation.
    waiting: WaitingGauge,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            stripes: std::array::from_fn(|_| Stripe::default()),
            waiting: WaitingGauge(AtomicUsize::new(0)),
        }
    }
}

/// The number of callers now waiting for another caller's computation
/// ([`MemoStats::waiting`]): changed only on the wait path, so one shared atomic costs nothing
/// on hits and misses.
pub(crate) struct WaitingGauge(AtomicUsize);

impl WaitingGauge {
    /// Counts the current caller until the returned guard drops.
    pub(crate) fn enter(&self) -> WaitingCaller<'_> {
        self.0.fetch_add(1, Ordering::Relaxed);
        WaitingCaller(self)
    }
}

/// Counts its caller in [`MemoStats::waiting`] while it lives (it ends by drop, on return,
/// unwinding or cancellation alike).
pub(crate) struct WaitingCaller<'a>(&'a WaitingGauge);

impl Drop for WaitingCaller<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
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

    /// The gauge of waiting callers.
    pub(crate) fn waiting(&self) -> &WaitingGauge {
        &self.waiting
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
            waits: self.sum(Counter::Wait),
            computations: self.sum(Counter::Computation),
            evictions: self.sum(Counter::Eviction),
            expirations: self.sum(Counter::Expiration),
            rejections: self.sum(Counter::Rejection),
            entries,
            waiting: self.waiting.0.load(Ordering::Relaxed),
        }
    }
}
