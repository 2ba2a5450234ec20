//! An online miss-ratio curve by spatial sampling (SHARDS, Waldspurger et al., FAST 2015).
//!
//! Only keys whose hash falls under a threshold (rate `R`: the top 24 bits of a fixed hash
//! below `R * 2^24`) are tracked. For each reference to a sampled key, its reuse (stack)
//! distance among sampled keys, the number of distinct sampled keys referenced since its
//! previous reference, is found in a Fenwick tree over reference times (O(log n)), scaled by
//! `1 / R`, and counted in a log-scale histogram. The LRU hit ratio at capacity `C` is the
//! share of sampled references whose scaled distance is below `C` (first references are
//! misses at every capacity).
//!
//! At most [`MAX_TRACKED`] sampled keys are remembered; past that the least recently
//! referenced one is forgotten, and its next reference counts as a first reference.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

// std's Mutex (RefUnwindSafe, unlike parking_lot's) keeps `Memo` usable across
// `catch_unwind`; no user code runs under it, and a poisoned one is still consistent enough for
// an estimate.
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::Memo;

/// The most sampled keys remembered at once (about 1.6M distinct keys at 1% sampling).
pub(crate) const MAX_TRACKED: usize = 1 << 14;
/// Reference-time slots before a compaction renumbers them.
const SLOTS: usize = 2 * MAX_TRACKED;
/// Sub-buckets per power of two in the distance histogram (relative width 1/16).
const SUB: usize = 16;
const SUB_BITS: u32 = 4;
/// Buckets: enough for any `u64` distance.
const BUCKETS: usize = SUB + (64 - SUB_BITS as usize) * SUB;
/// The sampling decision uses 24 bits of the hash.
const SAMPLE_BITS: u32 = 24;

/// The estimated LRU hit ratio of a cache at a range of capacities, from
/// [`Memo::miss_ratio_curve`](super::Memo::miss_ratio_curve): "with capacity N this cache would
/// hit X% of its calls", for a cache that evicts the least recently used entry.
///
/// Estimated from a sample of the keys (see
/// [`Memo::enable_miss_ratio_curve`](super::Memo::enable_miss_ratio_curve)). Accuracy, measured
/// against an exact LRU simulation (200k calls over 20k keys, Zipf 0.8 to 1.0): within 2.6
/// points at 1,000 and 5,000 entries with 1% or 10% of keys sampled. At capacities near
/// `1 / sampling_rate` entries and below (100 entries at 1%) the estimate is coarse and
/// overestimated (by 8 to 17 points at 100 entries on those traces): sample more keys to read
/// small capacities. The cache's own policy (W-TinyLFU when bounded) may do better or worse
/// than LRU at the same capacity.
///
/// ```
/// use syncmemo::Memo;
///
/// let memo: Memo<u64, u64> = Memo::builder("squares").miss_ratio_curve(1.0).build();
/// for round in 0..10 {
///     for k in 0..100u64 {
///         memo.get_or_compute(&k, || k * k + round);
///     }
/// }
/// let curve = memo.miss_ratio_curve().unwrap();
/// // Every key is sampled at rate 1.0: 100 entries hold the whole loop (90% hits), 50 nothing.
/// assert_eq!(curve.hit_ratio_at(100), 0.9);
/// assert_eq!(curve.hit_ratio_at(50), 0.0);
/// for point in &curve.points {
///     println!("capacity {:>8}: {:5.1}% hits", point.capacity, 100.0 * point.hit_ratio);
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct MissRatioCurve {
    /// The share of keys sampled (`0 < rate <= 1`).
    pub sampling_rate: f64,
    /// The references (calls) to sampled keys counted so far.
    pub sampled_references: u64,
    /// The estimated hit ratio at capacities 1, 2, 5, 10, 20, 50, ... up to the first
    /// capacity past which the curve no longer rises.
    pub points: Vec<CurvePoint>,
    /// The histogram, to read [`hit_ratio_at`](Self::hit_ratio_at) any capacity (not
    /// serialized: a deserialized curve reads its points).
    #[cfg_attr(feature = "serde", serde(skip, default = "Histogram::new"))]
    histogram: Histogram,
}

/// One point of a [`MissRatioCurve`].
///
/// ```
/// use syncmemo::memo::CurvePoint;
///
/// fn show(point: &CurvePoint) -> String {
///     format!("{} entries: {:.1}% misses", point.capacity, 100.0 * point.miss_ratio())
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct CurvePoint {
    /// A capacity (entries).
    pub capacity: usize,
    /// The estimated LRU hit ratio at that capacity, in `[0, 1]`.
    pub hit_ratio: f64,
}

impl CurvePoint {
    /// `1 - hit_ratio`.
    ///
    /// ```
    /// # use syncmemo::Memo;
    /// let memo: Memo<u8, u8> = Memo::builder("f").miss_ratio_curve(1.0).build();
    /// memo.get_or_compute(&1, || 1);
    /// let curve = memo.miss_ratio_curve().unwrap();
    /// assert!(curve.points.iter().all(|p| p.miss_ratio() == 1.0)); // one call: a miss
    /// ```
    pub fn miss_ratio(&self) -> f64 {
        1.0 - self.hit_ratio
    }
}

impl MissRatioCurve {
    /// The estimated LRU hit ratio at `capacity` entries (0 before any sampled reference).
    /// On a curve deserialized with serde (which carries only the points), the ratio of the
    /// largest point at or below `capacity`.
    ///
    /// ```
    /// # use syncmemo::Memo;
    /// let memo: Memo<u32, u32> = Memo::builder("f").miss_ratio_curve(1.0).build();
    /// for _ in 0..2 {
    ///     for k in 0..10 {
    ///         memo.get_or_compute(&k, || k);
    ///     }
    /// }
    /// let curve = memo.miss_ratio_curve().unwrap();
    /// assert_eq!(curve.hit_ratio_at(10), 0.5); // the second pass hits with 10 entries
    /// ```
    pub fn hit_ratio_at(&self, capacity: usize) -> f64 {
        if self.histogram.total == 0 {
            return self
                .points
                .iter()
                .take_while(|point| point.capacity <= capacity)
                .last()
                .map_or(0.0, |point| point.hit_ratio);
        }
        self.histogram.hit_ratio(capacity as u64)
    }
}

impl<K, V> Memo<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Starts estimating this cache's [miss-ratio curve](MissRatioCurve): the LRU hit ratio it
    /// would have at each capacity, from the calls made from now on. Returns `false` (and
    /// changes nothing) if it was already on. It stays on for the life of the cache.
    ///
    /// `sampling_rate` is the share of keys tracked: `0.01` (1%) suits caches seeing tens of
    /// thousands of distinct keys or more; raise it for fewer keys (1.0 tracks every key, an
    /// exact LRU curve for up to 16,384 distinct keys).
    ///
    /// # Cost
    ///
    /// Off (the default), a call pays one load of this field. On, every call hashes its key
    /// once more and compares the hash with the threshold; only calls of sampled keys take a
    /// lock (this cache's estimator's, never held while user code runs) and do O(log n) work.
    /// At most 16,384 sampled keys are remembered (about 1.6M distinct keys at 1%): past that,
    /// the least recently used one is forgotten, and the curve underestimates hits at
    /// capacities beyond that many keys / rate. Memory: about 400 KiB once on.
    ///
    /// # Panics
    ///
    /// If `sampling_rate` is not in `(0, 1]` or below 2^-24.
    ///
    /// ```
    /// #[syncmemo::memoize(capacity = 1_000)]
    /// fn render(page: u32) -> String {
    ///     format!("<p>{page}</p>")
    /// }
    /// assert!(render_cache().enable_miss_ratio_curve(0.01));
    /// for i in 0..100_000u32 {
    ///     render(i * 7919 % 5_000); // the workload
    /// }
    /// let curve = render_cache().miss_ratio_curve().unwrap();
    /// for capacity in [1_000, 5_000] {
    ///     println!("capacity {capacity}: {:.0}% hits", 100.0 * curve.hit_ratio_at(capacity));
    /// }
    /// ```
    pub fn enable_miss_ratio_curve(&self, sampling_rate: f64) -> bool {
        let mut estimator = Estimator::new(sampling_rate);
        estimator.baseline = self.references();
        self.mrc.set(Box::new(estimator)).is_ok()
    }

    /// The calls counted so far (each call is a hit, a miss or a wait).
    fn references(&self) -> u64 {
        let stats = self.counters.snapshot(0);
        stats.hits + stats.misses + stats.waits
    }

    /// The estimated [miss-ratio curve](MissRatioCurve) so far, or `None` if it was never
    /// enabled ([`enable_miss_ratio_curve`](Self::enable_miss_ratio_curve),
    /// [`MemoBuilder::miss_ratio_curve`](super::MemoBuilder::miss_ratio_curve)). Takes the
    /// estimator's lock briefly (a copy of a 10 KiB histogram).
    ///
    /// ```
    /// #[syncmemo::memoize]
    /// fn double(x: u32) -> u32 {
    ///     x * 2
    /// }
    /// assert!(double_cache().miss_ratio_curve().is_none()); // off by default
    /// ```
    pub fn miss_ratio_curve(&self) -> Option<MissRatioCurve> {
        let estimator = self.mrc.get()?;
        let references = self.references().saturating_sub(estimator.baseline);
        Some(estimator.curve(references))
    }
}

/// Scaled reuse distances, in log-scale buckets.
#[derive(Debug, Clone, PartialEq)]
struct Histogram {
    counts: Vec<u64>,
    /// References with no previous reference (misses at every capacity).
    cold: u64,
    total: u64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            cold: 0,
            total: 0,
        }
    }

    fn bucket(distance: u64) -> usize {
        if distance < SUB as u64 {
            return distance as usize;
        }
        let exp = 63 - distance.leading_zeros(); // >= SUB_BITS
        let sub = (distance >> (exp - SUB_BITS)) as usize & (SUB - 1);
        SUB + (exp - SUB_BITS) as usize * SUB + sub
    }

    /// The first distance of bucket `index`, and its width.
    fn bounds(index: usize) -> (u64, u64) {
        if index < SUB {
            return (index as u64, 1);
        }
        let shift = ((index - SUB) / SUB) as u32;
        let sub = ((index - SUB) % SUB) as u64;
        ((SUB as u64 + sub) << shift, 1 << shift)
    }

    fn add(&mut self, distance: Option<u64>) {
        self.total += 1;
        match distance {
            Some(distance) => self.counts[Self::bucket(distance)] += 1,
            None => self.cold += 1,
        }
    }

    /// The share of references whose distance is below `capacity` (a distance `d` hits in an
    /// LRU cache of more than `d` entries); a bucket straddling `capacity` counts in
    /// proportion, as if its distances were spread evenly.
    fn hit_ratio(&self, capacity: u64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let mut hits = 0.0;
        for (index, &count) in self.counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let (low, width) = Self::bounds(index);
            if low >= capacity {
                break;
            }
            let covered = (capacity - low).min(width);
            hits += count as f64 * covered as f64 / width as f64;
        }
        hits / self.total as f64
    }

    /// Makes the total `expected` by changing the count of distance 0 (never below 0).
    fn adjust(&mut self, expected: u64) {
        if expected > self.total {
            self.counts[0] += expected - self.total;
            self.total = expected;
        } else {
            let excess = (self.total - expected).min(self.counts[0]);
            self.counts[0] -= excess;
            self.total -= excess;
        }
    }

    /// One past the largest distance seen (the capacity past which the curve is flat).
    fn plateau(&self) -> u64 {
        match self.counts.iter().rposition(|&count| count > 0) {
            Some(index) => {
                let (low, width) = Self::bounds(index);
                low.saturating_add(width)
            }
            None => 1,
        }
    }
}

/// Distances among the sampled keys: a Fenwick tree over reference times marks, for each
/// remembered key, the time of its latest reference.
struct Tracker {
    /// Key hash -> time of its latest reference.
    last: HashMap<u64, u32, foldhash::fast::FixedState>,
    /// Time -> the key referenced then (meaningful where the tree marks the time).
    keys: Vec<u64>,
    /// Fenwick tree of marks (1 where a key's latest reference happened).
    tree: Vec<u32>,
    /// The next reference time.
    now: usize,
    histogram: Histogram,
}

impl Tracker {
    fn new() -> Self {
        Tracker {
            last: HashMap::with_hasher(foldhash::fast::FixedState::default()),
            keys: vec![0; SLOTS],
            tree: vec![0; SLOTS + 1],
            now: 0,
            histogram: Histogram::new(),
        }
    }

    fn update(&mut self, time: usize, delta: i32) {
        let mut i = time + 1;
        while i <= SLOTS {
            self.tree[i] = self.tree[i].wrapping_add_signed(delta);
            i += i & i.wrapping_neg();
        }
    }

    /// Marks at times `< end`.
    fn prefix(&self, end: usize) -> u32 {
        let mut i = end;
        let mut sum = 0;
        while i > 0 {
            sum += self.tree[i];
            i &= i - 1;
        }
        sum
    }

    /// The earliest marked time (the least recently referenced key), if any.
    fn earliest(&self) -> Option<usize> {
        if self.last.is_empty() {
            return None;
        }
        // Fenwick descent: the largest position whose prefix sum is 0.
        let mut pos = 0;
        let mut step = SLOTS.next_power_of_two();
        while step > 0 {
            if pos + step <= SLOTS && self.tree[pos + step] == 0 {
                pos += step;
            }
            step >>= 1;
        }
        Some(pos) // 0-based time `pos` is the first marked one
    }

    /// Renumbers the remembered keys' times 0.. in order, freeing the slots after them.
    fn compact(&mut self) {
        let mut live: Vec<(u32, u64)> = self.last.iter().map(|(&k, &t)| (t, k)).collect();
        live.sort_unstable();
        self.tree.iter_mut().for_each(|c| *c = 0);
        for (time, &(_, key)) in live.iter().enumerate() {
            self.keys[time] = key;
            self.last.insert(key, time as u32);
            // Linear Fenwick build: each node adds itself to its parent.
            self.tree[time + 1] += 1;
        }
        for i in 1..=SLOTS {
            let parent = i + (i & i.wrapping_neg());
            if parent <= SLOTS {
                self.tree[parent] += self.tree[i];
            }
        }
        self.now = live.len();
    }

    /// A reference to the sampled key `key`: its distance (distinct sampled keys referenced
    /// since its previous reference), scaled by `scale`, goes to the histogram.
    fn access(&mut self, key: u64, scale: f64) {
        if self.now == SLOTS {
            self.compact();
        }
        let distance = match self.last.get(&key) {
            Some(&time) => {
                let time = time as usize;
                let since = self.prefix(self.now) - self.prefix(time + 1);
                self.update(time, -1);
                Some((f64::from(since) * scale) as u64)
            }
            None => {
                if self.last.len() == MAX_TRACKED {
                    if let Some(oldest) = self.earliest() {
                        self.update(oldest, -1);
                        self.last.remove(&self.keys[oldest]);
                    }
                }
                None
            }
        };
        self.histogram.add(distance);
        self.keys[self.now] = key;
        self.last.insert(key, self.now as u32);
        self.update(self.now, 1);
        self.now += 1;
    }
}

/// The estimator of one cache: taken only for sampled keys.
pub(crate) struct Estimator {
    /// Sampled when the hash's top 24 bits are below this.
    threshold: u64,
    rate: f64,
    hasher: foldhash::fast::FixedState,
    tracker: Mutex<Tracker>,
    /// The cache's calls (hits, misses, waits) when the estimator started.
    baseline: u64,
}

impl Estimator {
    /// # Panics
    ///
    /// If `rate` is not in `(0, 1]`, or so small that no key would be sampled.
    pub(crate) fn new(rate: f64) -> Self {
        assert!(
            rate > 0.0 && rate <= 1.0,
            "the miss-ratio curve's sampling rate must be in (0, 1], got {rate}"
        );
        let threshold = (rate * (1u64 << SAMPLE_BITS) as f64).round() as u64;
        assert!(
            threshold > 0,
            "the miss-ratio curve's sampling rate {rate} is below 2^-24: no key would be sampled"
        );
        Estimator {
            threshold,
            rate,
            hasher: foldhash::fast::FixedState::with_seed(0x05EE_D0F5_A4D5),
            tracker: Mutex::new(Tracker::new()),
            baseline: 0,
        }
    }

    /// One reference to `key`: a hash and a compare, plus the tracker's work if sampled.
    #[inline]
    pub(crate) fn record<Q: ?Sized + Hash>(&self, key: &Q) {
        let hash = self.hasher.hash_one(key);
        if hash >> (64 - SAMPLE_BITS) < self.threshold {
            self.sampled(hash);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cold]
    fn sampled(&self, hash: u64) {
        self.lock().access(hash, 1.0 / self.rate);
    }

    /// The curve at capacities 1, 2, 5, 10, ... up to the plateau, given the number of
    /// references (sampled or not) since the estimator started.
    ///
    /// SHARDS_adj: the sampled references should be `rate * references`; the difference comes
    /// mostly from hot keys sampled more or less than their share, so it is added to (or taken
    /// from) the smallest distance's bucket.
    pub(crate) fn curve(&self, references: u64) -> MissRatioCurve {
        let mut histogram = self.lock().histogram.clone();
        histogram.adjust((references as f64 * self.rate).round() as u64);
        let plateau = histogram.plateau();
        let mut points = Vec::new();
        let mut decade = 1u64;
        'grid: loop {
            for step in [1, 2, 5] {
                let capacity = decade.saturating_mul(step);
                points.push(CurvePoint {
                    capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
                    hit_ratio: histogram.hit_ratio(capacity),
                });
                if capacity >= plateau || capacity == u64::MAX {
                    break 'grid;
                }
            }
            decade = decade.saturating_mul(10);
        }
        MissRatioCurve {
            sampling_rate: self.rate,
            sampled_references: histogram.total,
            points,
            histogram,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_distances_in_order() {
        let mut previous = 0;
        for d in (0..5000u64).chain([u64::MAX / 3, u64::MAX]) {
            let index = Histogram::bucket(d);
            assert!(index >= previous && index < BUCKETS, "{d}");
            let (low, width) = Histogram::bounds(index);
            assert!(low <= d && d - low < width, "{d}: {low} + {width}");
            previous = index;
        }
    }

    #[test]
    fn exact_distances_at_full_sampling() {
        // a b c a: a's distance is 2 (b and c since), so it hits with 3 entries, not 2.
        let estimator = Estimator::new(1.0);
        for key in ["a", "b", "c", "a"] {
            estimator.record(key);
        }
        let curve = estimator.curve(4);
        assert_eq!(curve.sampled_references, 4);
        assert_eq!(curve.hit_ratio_at(2), 0.0);
        assert_eq!(curve.hit_ratio_at(3), 0.25);
    }

    #[test]
    #[cfg_attr(miri, ignore = "50k tracker steps: too slow under miri")]
    fn forgets_the_least_recent_key_past_the_cap_and_survives_compactions() {
        let mut tracker = Tracker::new();
        // A loop over MAX_TRACKED keys, three times: every second-round reference has distance
        // MAX_TRACKED - 1, through several compactions.
        for _ in 0..3 {
            for key in 0..MAX_TRACKED as u64 {
                tracker.access(key, 1.0);
            }
        }
        let h = &tracker.histogram;
        assert_eq!(h.cold, MAX_TRACKED as u64);
        assert_eq!(h.hit_ratio(MAX_TRACKED as u64), 2.0 / 3.0);
        assert_eq!(h.hit_ratio(MAX_TRACKED as u64 / 2), 0.0);
        // One more key evicts key 0 (the least recent): its next reference is cold.
        tracker.access(u64::MAX, 1.0);
        tracker.access(0, 1.0);
        assert_eq!(tracker.histogram.cold, MAX_TRACKED as u64 + 2);
        assert_eq!(tracker.last.len(), MAX_TRACKED);
    }

    /// A deterministic Zipf-like trace: `len` references over `keys` keys, exponent `s`.
    fn zipf_trace(len: usize, keys: usize, s: f64, seed: u64) -> Vec<u64> {
        let mut cumulative = Vec::with_capacity(keys);
        let mut sum = 0.0;
        for rank in 1..=keys {
            sum += 1.0 / (rank as f64).powf(s);
            cumulative.push(sum);
        }
        let mut state = seed;
        (0..len)
            .map(|_| {
                // splitmix64
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                let u = (z >> 11) as f64 / (1u64 << 53) as f64 * sum;
                let rank = cumulative.partition_point(|&c| c < u) as u64;
                // Scatter ranks over the key space so that popularity and key order differ.
                rank.wrapping_mul(0x9E37_79B9) % 1_000_003
            })
            .collect()
    }

    /// The exact hit ratio of an LRU cache of `capacity` entries on `trace`.
    fn exact_lru(trace: &[u64], capacity: usize) -> f64 {
        let mut last: HashMap<u64, usize> = HashMap::new();
        let mut order = std::collections::BTreeMap::new(); // time -> key
        let mut hits = 0;
        for (time, &key) in trace.iter().enumerate() {
            if let Some(previous) = last.insert(key, time) {
                order.remove(&previous);
                hits += 1;
            } else if order.len() == capacity {
                let (_, oldest) = order.pop_first().unwrap();
                last.remove(&oldest);
            }
            order.insert(time, key);
        }
        hits as f64 / trace.len() as f64
    }

    /// Estimated against exact LRU on 200k references over 20k keys (three Zipf exponents),
    /// at 1% and 10% sampling: within `TOLERANCE` at capacities 1,000 and 5,000 (measured: at
    /// most 2.6 points off). Capacity 100 is printed, not asserted: there the hot keys' reuse
    /// distances are below the method's resolution and SHARDS_adj's correction (counted at
    /// distance 0) overestimates, by 8 to 17 points on these traces. Without the correction,
    /// the asserted points are 17 to 40 points off at 1%; with half the scale factor, 5 to 16.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "1.2M references and an LRU simulation: too slow under miri"
    )]
    fn sampled_curve_is_within_a_few_points_of_exact_lru() {
        const TOLERANCE: f64 = 0.04;
        let mut failures = Vec::new();
        for (s, seed) in [(0.9, 1), (0.8, 2), (1.0, 3)] {
            let trace = zipf_trace(200_000, 20_000, s, seed);
            let exact: Vec<f64> = [100, 1_000, 5_000]
                .iter()
                .map(|&capacity| exact_lru(&trace, capacity))
                .collect();
            for rate in [0.01, 0.1] {
                let estimator = Estimator::new(rate);
                for key in &trace {
                    estimator.record(key);
                }
                let curve = estimator.curve(trace.len() as u64);
                for (capacity, exact) in [100, 1_000, 5_000].into_iter().zip(&exact) {
                    let estimated = curve.hit_ratio_at(capacity);
                    println!(
                        "zipf {s}, rate {rate}, capacity {capacity}: estimated {:.2}%, exact {:.2}%",
                        100.0 * estimated,
                        100.0 * exact,
                    );
                    if capacity >= 1_000 && (estimated - exact).abs() > TOLERANCE {
                        failures.push(format!(
                            "zipf {s}, rate {rate}, capacity {capacity}: estimated {estimated}, exact {exact}"
                        ));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn through_a_memo_on_hits_and_misses_and_off_by_default() {
        let memo: Memo<u64, u64> = Memo::new("mrc_test", super::super::MemoConfig::default());
        memo.get_or_compute(&1, || 1);
        assert!(memo.miss_ratio_curve().is_none());
        assert!(memo.enable_miss_ratio_curve(1.0));
        assert!(!memo.enable_miss_ratio_curve(0.5));
        for _ in 0..3 {
            for k in 0..10 {
                memo.get_or_compute(&k, || k); // key 1 hits from the start
            }
        }
        let curve = memo.miss_ratio_curve().unwrap();
        assert_eq!(curve.sampled_references, 30);
        assert_eq!(curve.hit_ratio_at(10), 20.0 / 30.0);
        assert_eq!(curve.hit_ratio_at(9), 0.0);
        assert_eq!(curve.points.last().unwrap().hit_ratio, 20.0 / 30.0);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn a_deserialized_curve_reads_its_points() {
        let estimator = Estimator::new(1.0);
        for _ in 0..2 {
            for k in 0..10u32 {
                estimator.record(&k);
            }
        }
        let curve = estimator.curve(20);
        let json = serde_json::to_string(&curve).unwrap();
        assert!(!json.contains("histogram"), "{json}");
        let back: MissRatioCurve = serde_json::from_str(&json).unwrap();
        assert_eq!(back.points, curve.points);
        assert_eq!(back.hit_ratio_at(10), 0.5); // the point at 10
        assert_eq!(back.hit_ratio_at(15), 0.5); // the largest point at or below 15
        assert_eq!(back.hit_ratio_at(9), 0.0); // the point at 5
    }
}
