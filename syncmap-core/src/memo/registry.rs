//! Every memoized function's cache, type-erased, for debugging tools.

use std::fmt;
use std::hash::Hash;

use parking_lot::Mutex;

use super::{format_with, Memo, MemoConfig, MemoStats, MissRatioCurve};

/// What a tool can do with a cache without knowing its types.
trait ErasedMemo: Send + Sync {
    fn name(&self) -> &'static str;
    fn config(&self) -> MemoConfig;
    fn len(&self) -> usize;
    fn stats(&self) -> MemoStats;
    fn clear(&self);
    fn dump(&self) -> Vec<(String, String)>;
    fn for_each_entry(&self, f: &mut dyn FnMut(&str, &str) -> bool);
    fn invalidate_debug(&self, key: &str) -> usize;
    fn miss_ratio_curve(&self) -> Option<MissRatioCurve>;
}

impl<K, V> ErasedMemo for Memo<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        Memo::name(self)
    }
    fn config(&self) -> MemoConfig {
        Memo::config(self)
    }
    fn len(&self) -> usize {
        Memo::len(self)
    }
    fn stats(&self) -> MemoStats {
        Memo::stats(self)
    }
    fn clear(&self) {
        Memo::clear(self)
    }
    fn dump(&self) -> Vec<(String, String)> {
        Memo::dump(self)
    }
    fn for_each_entry(&self, f: &mut dyn FnMut(&str, &str) -> bool) {
        self.range(|key, value| {
            f(
                &format_with(self.debug.key, key),
                &format_with(self.debug.value, value),
            )
        });
    }
    fn invalidate_debug(&self, key: &str) -> usize {
        if self.debug.key.is_none() {
            return 0;
        }
        self.invalidate_if(|k, _| format_with(self.debug.key, k) == key)
    }
    fn miss_ratio_curve(&self) -> Option<MissRatioCurve> {
        Memo::miss_ratio_curve(self)
    }
}

static REGISTRY: Mutex<Vec<&'static dyn ErasedMemo>> = Mutex::new(Vec::new());

/// Adds a cache to the registry (once per cache: callers guarantee it).
pub(crate) fn register<K, V>(memo: &'static Memo<K, V>)
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    REGISTRY.lock().push(memo);
    #[cfg(feature = "redis")]
    memo.attach_to_tier();
}

/// A handle on one memoized function's cache, whatever its key and value types.
///
/// ```
/// #[syncmemo::memoize]
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// square(3);
/// let handles: Vec<syncmemo::memo::MemoHandle> = syncmemo::memo::registry();
/// assert!(handles.iter().any(|cache| cache.name().ends_with("::square")));
/// for cache in &handles {
///     println!("{}: {} entries, {:?}", cache.name(), cache.len(), cache.stats());
/// }
/// ```
#[derive(Clone, Copy)]
pub struct MemoHandle(&'static dyn ErasedMemo);

impl MemoHandle {
    /// The memoized function's path.
    ///
    /// ```
    /// for cache in syncmemo::memo::registry() {
    ///     assert!(!cache.name().is_empty());
    /// }
    /// ```
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// The cache's configuration: `capacity` and `ttl`, as set by `#[memoize(...)]` or
    /// [`Memo::builder`].
    ///
    /// ```
    /// #[syncmemo::memoize(capacity = 64)]
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// square(3);
    /// let handle = syncmemo::memo::registry()
    ///     .into_iter()
    ///     .find(|cache| cache.name().ends_with("::square"))
    ///     .unwrap();
    /// assert_eq!(handle.config().capacity, Some(64));
    /// ```
    pub fn config(&self) -> MemoConfig {
        self.0.config()
    }

    /// The number of cached values.
    ///
    /// ```
    /// let total: usize = syncmemo::memo::registry().iter().map(|c| c.len()).sum();
    /// # let _ = total;
    /// ```
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is cached.
    ///
    /// ```
    /// let empty = syncmemo::memo::registry().iter().filter(|c| c.is_empty()).count();
    /// # let _ = empty;
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// Hits, misses and the other counters (see [`MemoStats`]).
    ///
    /// ```
    /// for cache in syncmemo::memo::registry() {
    ///     let _ratio = cache.stats().hit_ratio();
    /// }
    /// ```
    pub fn stats(&self) -> MemoStats {
        self.0.stats()
    }

    /// Calls `f` with the `Debug` text of each cached key and value (`<not Debug>` for a type
    /// without `Debug`) until it returns `false`, without collecting them: memory stays
    /// constant however large the cache. Not a snapshot, like [`Memo::range`]; `f` may call
    /// any method of this cache.
    ///
    /// ```
    /// for cache in syncmap_core::memo::registry() {
    ///     let mut shown = 0;
    ///     cache.for_each_entry(|key, value| {
    ///         println!("{key} = {value}");
    ///         shown += 1;
    ///         shown < 10 // the first ten only
    ///     });
    /// }
    /// ```
    pub fn for_each_entry(&self, mut f: impl FnMut(&str, &str) -> bool) {
        self.0.for_each_entry(&mut f)
    }

    /// Removes the entries whose key's `Debug` text is exactly `key`; returns how many (0 for
    /// a key type without `Debug`). For tools that know keys only as text, such as the
    /// inspector; code that has the key calls [`Memo::invalidate`]. Takes time linear in the
    /// number of entries.
    ///
    /// ```
    /// for cache in syncmap_core::memo::registry() {
    ///     cache.invalidate_by_debug("42");
    /// }
    /// ```
    pub fn invalidate_by_debug(&self, key: &str) -> usize {
        self.0.invalidate_debug(key)
    }

    /// Removes every cached value ([`Memo::clear`]: for a `#[memoize(shared)]` function, in
    /// Redis and in the other processes too).
    ///
    /// ```
    /// for cache in syncmemo::memo::registry() {
    ///     cache.clear();
    /// }
    /// ```
    pub fn clear(&self) {
        self.0.clear()
    }

    /// The cached entries as `(key, value)` text: their `Debug` form, or `<not Debug>` for a type
    /// that does not implement `Debug` (or is a type parameter of a generic function).
    ///
    /// ```
    /// for cache in syncmemo::memo::registry() {
    ///     for (key, value) in cache.dump() {
    ///         println!("{}({key}) = {value}", cache.name());
    ///     }
    /// }
    /// ```
    pub fn dump(&self) -> Vec<(String, String)> {
        self.0.dump()
    }

    /// The cache's estimated miss-ratio curve, or `None` if it is off (see
    /// [`Memo::enable_miss_ratio_curve`]).
    ///
    /// ```
    /// for cache in syncmemo::memo::registry() {
    ///     if let Some(curve) = cache.miss_ratio_curve() {
    ///         println!("{}: {:.0}% hits with 1,000 entries", cache.name(), 100.0 * curve.hit_ratio_at(1_000));
    ///     }
    /// }
    /// ```
    pub fn miss_ratio_curve(&self) -> Option<MissRatioCurve> {
        self.0.miss_ratio_curve()
    }
}

impl fmt::Debug for MemoHandle {
    /// The name and statistics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoHandle")
            .field("name", &self.name())
            .field("stats", &self.stats())
            .finish()
    }
}

impl fmt::Display for MemoHandle {
    /// A report for humans: the name, the statistics, then one `key = value` line per entry
    /// (see [`dump`](Self::dump)).
    ///
    /// ```
    /// for cache in syncmemo::memo::registry() {
    ///     println!("{cache}");
    /// }
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stats = self.stats();
        write!(
            f,
            "{}: {} entries, {} hits, {} misses, {} computations",
            self.name(),
            stats.entries,
            stats.hits,
            stats.misses,
            stats.computations
        )?;
        for (key, value) in self.dump() {
            write!(f, "\n  {key} = {value}")?;
        }
        Ok(())
    }
}

/// A handle on every memoized function's cache that has been used so far in this process, in
/// the order of first use.
///
/// Caches are created on the first call of their function, so a function never called is not
/// listed. The list is a copy: caches created later are not added to it.
///
/// ```
/// let table: Vec<(String, usize)> = syncmemo::memo::registry()
///     .iter()
///     .map(|cache| (cache.name().to_string(), cache.len()))
///     .collect();
/// # let _ = table;
/// ```
pub fn registry() -> Vec<MemoHandle> {
    REGISTRY.lock().iter().copied().map(MemoHandle).collect()
}

/// Removes every cached value from every cache in the [`registry`](fn@registry) (every
/// memoized function called so far, and every cache made with
/// [`MemoBuilder::build_static`](super::MemoBuilder::build_static)); returns how many caches it
/// cleared. Computations in flight finish and return their values to their callers, but those
/// values are not cached. Statistics are kept. As [`Memo::clear`], it also deletes the keys of
/// `#[memoize(shared)]` functions in Redis (feature `redis`) and tells the other processes.
///
/// For tests that must start cold, or after a change that invalidates everything (a new
/// configuration, a reloaded data set).
///
/// ```
/// #[syncmemo::memoize]
/// fn double(x: u64) -> u64 {
///     x * 2
/// }
/// double(1);
/// assert_eq!(double_cache().len(), 1);
/// assert!(syncmemo::memo::clear_all() >= 1);
/// assert!(double_cache().is_empty());
/// ```
pub fn clear_all() -> usize {
    // Copy the list first: clearing runs no user code, but must not hold the registry's lock
    // while a cache is being created and registered on another thread.
    let caches = registry();
    for cache in &caches {
        cache.clear();
    }
    caches.len()
}
