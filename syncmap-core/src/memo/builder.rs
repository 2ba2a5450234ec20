//! Hand-written memoization: [`Memo::builder`] and [`Memo::get_or_compute`], for caches whose
//! configuration is known only at run time, or that are warmed or filled from outside.

use std::borrow::ToOwned;
use std::hash::Hash;
use std::marker::PhantomData;
use std::time::Duration;

use super::{registry, Memo, MemoConfig};
use crate::Equivalent;

/// Configures a [`Memo`] made by hand; from [`Memo::builder`].
///
/// ```
/// use std::time::Duration;
/// use syncmemo::Memo;
///
/// let capacity = 1000; // from a configuration file, say
/// let prices: Memo<String, u64> = Memo::builder("shop::prices")
///     .capacity(capacity)
///     .ttl(Duration::from_secs(60))
///     .build();
/// assert_eq!(prices.get_or_compute("apple", || 3), 3);
/// assert_eq!(prices.config().capacity, Some(1000));
/// ```
#[must_use = "a builder does nothing until `build` or `build_static`"]
pub struct MemoBuilder<K, V> {
    name: &'static str,
    config: MemoConfig,
    /// The miss-ratio curve's sampling rate, if on.
    miss_ratio_curve: Option<f64>,
    /// The weigher, with `max_weight`.
    weigher: Option<fn(&K, &V) -> u64>,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> std::fmt::Debug for MemoBuilder<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoBuilder")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish()
    }
}

impl<K, V> MemoBuilder<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// At most `capacity` entries, as `#[memoize(capacity = N)]`: past it, the eviction policy
    /// keeps the entries it judges most useful (see [`Memo`]'s "Capacity and eviction").
    ///
    /// # Panics
    ///
    /// If `capacity` is 0.
    ///
    /// ```
    /// let memo: syncmemo::Memo<u32, u32> = syncmemo::Memo::builder("f").capacity(10).build();
    /// for k in 0..100 {
    ///     memo.get_or_compute(&k, || k);
    /// }
    /// assert!(memo.len() <= 10);
    /// ```
    pub fn capacity(mut self, capacity: usize) -> Self {
        assert!(capacity >= 1, "a Memo's capacity must be at least 1");
        self.config.capacity = Some(capacity);
        self
    }

    /// At most `max_weight` in total weight of entries, as weighed by [`weigher`](Self::weigher)
    /// (which it needs), as `#[memoize(max_weight = N, weigher = f)]`: past it, the eviction
    /// policy keeps the entries it judges most useful, and a value heavier than `max_weight`
    /// alone is returned but not cached (counted in `rejections`). See [`Memo::weight`].
    ///
    /// # Panics
    ///
    /// If `max_weight` is 0; [`build`](Self::build) panics if there is no weigher, or a
    /// `capacity` too (a cache has one bound: entries or weight).
    ///
    /// ```
    /// use syncmemo::Memo;
    ///
    /// let memo = Memo::<u32, String>::builder("pages")
    ///     .max_weight(1_000) // bytes of text, say
    ///     .weigher(|_key, page| page.len() as u64)
    ///     .build();
    /// memo.get_or_compute(&1, || "x".repeat(400));
    /// memo.get_or_compute(&2, || "x".repeat(5_000)); // heavier than the bound: not kept
    /// assert_eq!(memo.get(&2), None);
    /// assert_eq!(memo.weight(), Some(400));
    /// assert_eq!(memo.config().max_weight, Some(1_000));
    /// ```
    pub fn max_weight(mut self, max_weight: u64) -> Self {
        assert!(max_weight >= 1, "a Memo's max_weight must be at least 1");
        self.config.max_weight = Some(max_weight);
        self
    }

    /// Weighs each entry for [`max_weight`](Self::max_weight), typically its size in bytes; a
    /// weight of 0 counts as 1. It is called once per value stored, after the value is stored
    /// and outside any lock: it may call this cache. If it panics, the value is returned to the
    /// waiting callers but not kept (the entry is removed and counted in `rejections`), and
    /// the panic propagates to the caller that computed the value.
    ///
    /// ```
    /// use syncmemo::Memo;
    ///
    /// // The types first, so that the closure's parameters are known.
    /// let memo = Memo::<String, Vec<u8>>::builder("blobs")
    ///     .max_weight(1 << 20)
    ///     .weigher(|key, blob| (key.len() + blob.len()) as u64)
    ///     .build();
    /// memo.get_or_compute("a", || vec![0; 10]);
    /// assert_eq!(memo.weight(), Some(11));
    /// ```
    pub fn weigher(mut self, weigher: fn(&K, &V) -> u64) -> Self {
        self.weigher = Some(weigher);
        self
    }

    /// Entries older than `ttl` are recomputed on access, as `#[memoize(ttl = "..")]`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let memo: syncmemo::Memo<u8, u8> =
    ///     syncmemo::Memo::builder("f").ttl(Duration::from_secs(30)).build();
    /// assert_eq!(memo.config().ttl, Some(Duration::from_secs(30)));
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = Some(ttl);
        self
    }

    /// The cache, owned by the caller (in a struct, an `Arc`, or a `static` `LazyLock`). It is
    /// not listed in [`registry`](fn@super::registry): use [`build_static`](Self::build_static)
    /// for that.
    ///
    /// ```
    /// use std::sync::LazyLock;
    /// use syncmemo::Memo;
    ///
    /// static LENGTHS: LazyLock<Memo<String, usize>> =
    ///     LazyLock::new(|| Memo::builder("lengths").capacity(100).build());
    /// assert_eq!(LENGTHS.get_or_compute("abc", || 3), 3);
    /// ```
    ///
    /// # Panics
    ///
    /// With [`max_weight`](Self::max_weight) but no [`weigher`](Self::weigher), with a weigher
    /// but no `max_weight`, or with both `max_weight` and [`capacity`](Self::capacity).
    pub fn build(self) -> Memo<K, V> {
        let config = self.config;
        assert!(
            config.max_weight.is_none() || config.capacity.is_none(),
            "a Memo has one bound: `capacity` (entries) or `max_weight` (weight), not both"
        );
        assert_eq!(
            config.max_weight.is_some(),
            self.weigher.is_some(),
            "a Memo's `max_weight` and `weigher` go together"
        );
        let debug = super::__private::MemoDebug {
            weigher: self.weigher,
            ..Default::default()
        };
        let memo = Memo::with_debug(self.name, config, debug);
        if let Some(rate) = self.miss_ratio_curve {
            memo.enable_miss_ratio_curve(rate);
        }
        memo
    }

    /// Estimates the cache's [miss-ratio curve](super::MissRatioCurve) from the start,
    /// sampling `sampling_rate` of the keys (see [`Memo::enable_miss_ratio_curve`], which also
    /// turns it on later, and for `#[memoize]` caches).
    ///
    /// # Panics
    ///
    /// In `build`, if `sampling_rate` is not in `(0, 1]` or below 2^-24.
    ///
    /// ```
    /// let memo: syncmemo::Memo<u32, u32> =
    ///     syncmemo::Memo::builder("f").miss_ratio_curve(0.01).build();
    /// memo.get_or_compute(&1, || 1);
    /// assert_eq!(memo.miss_ratio_curve().unwrap().sampling_rate, 0.01);
    /// ```
    pub fn miss_ratio_curve(mut self, sampling_rate: f64) -> Self {
        self.miss_ratio_curve = Some(sampling_rate);
        self
    }

    /// The cache, for the rest of the process, listed in [`registry`](fn@super::registry)
    /// (debugging tools see it, [`clear_all`](super::clear_all) clears it) like the caches of
    /// memoized functions. Its memory is never freed: build a fixed number of these, not one
    /// per request.
    ///
    /// ```
    /// let memo: &'static syncmemo::Memo<u64, u64> =
    ///     syncmemo::Memo::builder("app::squares").build_static();
    /// memo.get_or_compute(&3, || 9);
    /// assert!(syncmemo::memo::registry().iter().any(|c| c.name() == "app::squares"));
    /// ```
    pub fn build_static(self) -> &'static Memo<K, V> {
        let memo: &'static Memo<K, V> = Box::leak(Box::new(self.build()));
        registry::register(memo);
        memo
    }
}

impl<K, V> Memo<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A builder for a cache made by hand, named `name` (shown by the
    /// [`registry`](fn@super::registry) and in panic messages); unbounded and without TTL
    /// unless configured.
    ///
    /// `#[memoize]` is the usual way to cache a function; a hand-made cache is for a capacity
    /// or TTL known only at run time, several caches of one function, or a cache filled from
    /// outside (warmed at start-up, loaded from an export).
    ///
    /// ```
    /// use syncmemo::Memo;
    ///
    /// let squares: Memo<u64, u64> = Memo::builder("squares").capacity(1_000).build();
    /// // Warm it: compute-or-insert each key once.
    /// for k in 0..10 {
    ///     squares.get_or_compute(&k, || k * k);
    /// }
    /// assert_eq!(squares.len(), 10);
    /// assert_eq!(squares.get(&7), Some(49));
    /// ```
    pub fn builder(name: &'static str) -> MemoBuilder<K, V> {
        MemoBuilder {
            name,
            config: MemoConfig::default(),
            miss_ratio_curve: None,
            weigher: None,
            types: PhantomData,
        }
    }

    /// The cached value for `key`, or `compute()`'s, cached: what a memoized function does on
    /// each call, with the same semantics.
    ///
    /// The key is looked up by reference (`&str` for `String` keys: a hit allocates nothing);
    /// it is cloned into the cache only when a value is inserted.
    ///
    /// - **Single flight**: concurrent callers of one missing key run `compute` once; the others
    ///   wait for its value (counted as `waits` in [`stats`](Self::stats)). No lock is held while
    ///   `compute` runs, so it may use this cache for other keys.
    /// - **Panics**: a panic in `compute` caches nothing and propagates; a caller waiting on it
    ///   computes in turn.
    /// - **Capacity and TTL**: as configured (see [`MemoBuilder`]).
    ///
    /// # Panics
    ///
    /// Propagates a panic of `compute`. Panics if `compute` calls `get_or_compute` for the same
    /// key on the same thread (it would wait for itself forever), at the caller's location.
    ///
    /// ```
    /// use syncmemo::Memo;
    ///
    /// let names: Memo<String, usize> = Memo::builder("name_lengths").build();
    /// assert_eq!(names.get_or_compute("alice", || "alice".len()), 5); // computes
    /// assert_eq!(names.get_or_compute("alice", || unreachable!()), 5); // a hit
    /// let stats = names.stats();
    /// assert_eq!((stats.hits, stats.misses), (1, 1));
    /// ```
    #[track_caller]
    pub fn get_or_compute<Q>(&self, key: &Q, compute: impl FnOnce() -> V) -> V
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
        K: Clone,
    {
        match self.__hit(key) {
            Some(value) => value,
            None => self.__miss(key, || key.to_owned(), compute, |_| true),
        }
    }

    /// Stores `value` for `key` unless a value is cached already (a computation in flight wins
    /// over it); returns whether it was stored. Counts no hit, miss or wait. For warming a cache from
    /// an export, or from values computed elsewhere.
    ///
    /// ```
    /// #[syncmemo::memoize]
    /// fn population(city: &str) -> u64 {
    ///     unimplemented!("an expensive query for {city}")
    /// }
    /// // Filled from yesterday's export: the body never runs for these.
    /// for (city, n) in [("Lyon", 522_250), ("Nantes", 320_732)] {
    ///     population_cache().insert(city.to_string(), n);
    /// }
    /// assert_eq!(population("Lyon"), 522_250);
    /// ```
    pub fn insert(&self, key: K, value: V) -> bool
    where
        K: Clone,
    {
        let mut stored = false;
        self.miss(
            &key,
            || key.clone(),
            || {
                stored = true;
                value
            },
            |_| true,
            &std::cell::Cell::new(false),
        );
        stored
    }
}
