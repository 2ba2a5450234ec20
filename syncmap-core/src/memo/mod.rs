//! The memoization runtime behind `#[memoize]`: [`Memo`], one per memoized function, and the
//! [`registry`](fn@registry) of every cache in the process, for debugging tools.
//!
//! A `Memo<K, V>` is a [`SyncMap`] from the key to a single-flight cell:
//!
//! - **Hits** look the key up by a borrowed view (no allocation), read the cell without a lock
//!   and return a clone of the value. Hit and miss counts go to per-thread stripes: no shared
//!   write on the hit path.
//! - **Misses** insert an empty cell with `load_or_store` and compute in it: concurrent callers of
//!   the same key wait for that one computation (single flight), callers of other keys are not
//!   blocked, and no lock is held while the body runs.
//! - **A panic** in the body leaves the cell empty and removes it; it propagates to the caller,
//!   and a caller that was waiting computes in turn (nobody hangs).
//! - **A recursive call with the same key** on the computing thread panics with a message naming
//!   the function, instead of deadlocking. Recursion through *other* keys works (memoized `fib`).
//!   A cycle through two threads (`f(a)` on one waiting for `f(b)` on another, which waits for
//!   `f(a)`) is not detected and deadlocks, as it would with any lock.
//!
//! ```
//! use syncmap_core::memo::{Memo, __private::MemoOptions};
//!
//! // What `#[memoize]` generates, by hand:
//! static SQUARES: syncmap_core::memo::__private::StaticMemo<u64, u64> =
//!     syncmap_core::memo::__private::StaticMemo::new("example::square", MemoOptions::DEFAULT);
//! fn square(x: u64) -> u64 {
//!     let memo: &'static Memo<u64, u64> = SQUARES.get(Default::default);
//!     memo.__call(&x, || x, || x * x, |_| true)
//! }
//! assert_eq!(square(12), 144);
//! assert_eq!(square(12), 144);
//! let stats = SQUARES.get(Default::default).stats();
//! assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
//! ```

mod key;
mod registry;
#[cfg(feature = "redis")]
mod shared;
mod slot;
mod stats;

#[doc(hidden)]
pub mod __private;

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use registry::{registry, MemoHandle};
pub use stats::MemoStats;

use crate::{Equivalent, SyncMap};
use slot::{Outcome, Slot, SlotRef};
use stats::{Counter, Counters};

/// The caches' hasher: fast, seeded per cache.
#[cfg(not(syncmap_loom))]
type MemoHasher = foldhash::fast::RandomState;
/// Loom replays executions and needs them deterministic: a fixed-key hasher.
#[cfg(syncmap_loom)]
type MemoHasher = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;

/// How a [`Memo`] was configured (by `#[memoize(...)]` options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoConfig {
    /// At most this many entries (`capacity = N`); `None`: unbounded.
    pub capacity: Option<usize>,
    /// Entries older than this are recomputed (`ttl = "30s"`); `None`: they never expire.
    pub ttl: Option<Duration>,
    /// Whether results are shared through a tier behind the local cache (`shared`, feature
    /// `redis`).
    pub shared: bool,
}

/// The cache of one memoized function: a [`SyncMap`] from its key (the tuple of its cached
/// arguments, owned) to its result, with single flight, statistics, invalidation and
/// introspection.
///
/// `#[memoize] fn f(..)` generates `f_cache() -> &'static Memo<K, V>`; see the `syncmemo` crate's
/// documentation of `#[memoize]`. Every method may be called while other threads call the
/// function, and from inside the function itself.
///
/// # Capacity and eviction
///
/// Without `capacity`, a cache grows with every distinct key: **on untrusted input that is a
/// memory-exhaustion hazard**; bound it. With `capacity = N`, inserting a key into a full cache
/// first evicts a batch of entries (about an eighth of `N`, at least one) in the map's iteration
/// order, which is effectively random: no bookkeeping on hits, so hits stay free of shared
/// writes, at the price of evicting hot keys as readily as cold ones. Entries being computed are
/// never evicted. The bound is checked before each insertion, so callers inserting different
/// keys at the same instant may exceed it by at most their number until the next insertion.
///
/// # Allocation
///
/// A hit allocates nothing and writes no shared memory. One exception, by the map's design (Go's
/// `sync.Map`): the first hits of a key inserted since the map's last promotion are looked up
/// under the map's lock and may trigger the promotion, which allocates a new read snapshot once.
///
/// # Panics, reentrancy and deadlocks
///
/// No method holds a lock while user code (the function's body, `range` callbacks, `Debug` of
/// keys and values) runs, so every method may be called from inside them. A computation that
/// panics caches nothing; if a caller waiting on it then computes instead while the panicking
/// caller has already removed the cell, that value is returned but not cached (the next call
/// computes again). A recursive call with the same key on the computing thread panics (see
/// `__miss`); a cycle through two threads is not detected.
///
/// # Consistency
///
/// [`range`](Self::range), [`len`](Self::len) and [`stats`](Self::stats) are not snapshots while
/// other threads call the function (see [`SyncMap::range`]). Entries being computed are not
/// visited and not counted.
pub struct Memo<K, V> {
    name: &'static str,
    config: MemoConfig,
    map: SyncMap<K, SlotRef<V>, MemoHasher>,
    counters: Counters,
    debug: __private::MemoDebug<K, V>,
    /// The shared tier's hook (`#[memoize(shared)]`).
    #[cfg(feature = "redis")]
    shared: Option<Box<dyn crate::tier::Hook<K, V>>>,
}

impl<K, V> Memo<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An empty cache. `#[memoize]` creates them; call this directly only for hand-written
    /// memoization.
    ///
    /// ```
    /// use syncmap_core::memo::{Memo, MemoConfig};
    /// # use syncmap_core::memo::__private::MemoOptions;
    ///
    /// let memo: Memo<u64, u64> = Memo::new("demo", MemoOptions::DEFAULT.into());
    /// assert!(memo.is_empty());
    /// ```
    pub fn new(name: &'static str, config: MemoConfig) -> Self {
        Self::with_debug(name, config, __private::MemoDebug::default())
    }

    pub(crate) fn with_debug(
        name: &'static str,
        config: MemoConfig,
        debug: __private::MemoDebug<K, V>,
    ) -> Self {
        Memo {
            name,
            config,
            map: SyncMap::default(),
            counters: Counters::default(),
            debug,
            #[cfg(feature = "redis")]
            shared: None,
        }
    }

    /// Attaches the shared tier's hook that `factory` makes (generated code; a no-op without
    /// the `redis` feature).
    pub(crate) fn with_shared(self, factory: Option<__private::SharedFactory>) -> Self {
        #[cfg(feature = "redis")]
        if let Some(factory) = factory {
            return self.attach_shared(factory);
        }
        let _ = factory;
        self
    }

    /// The memoized function's path: module path and function name.
    ///
    /// ```
    /// # use syncmap_core::memo::{Memo, __private::MemoOptions};
    /// let memo: Memo<u8, u8> = Memo::new("my_crate::parse", MemoOptions::DEFAULT.into());
    /// assert_eq!(memo.name(), "my_crate::parse");
    /// ```
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The configuration (capacity, TTL).
    ///
    /// ```
    /// # use syncmap_core::memo::{Memo, __private::MemoOptions};
    /// let memo: Memo<u8, u8> = Memo::new("f", MemoOptions::DEFAULT.into());
    /// assert_eq!(memo.config().capacity, None);
    /// ```
    pub fn config(&self) -> MemoConfig {
        self.config
    }

    /// Whether a stored value is past its TTL.
    fn expired(&self, at: Option<Instant>) -> bool {
        match (self.config.ttl, at) {
            (Some(ttl), Some(at)) => at.elapsed() >= ttl,
            _ => false,
        }
    }

    /// The cached value for `key`, without computing anything (a peek: counts no hit or miss).
    /// `None` if absent, being computed, or expired.
    ///
    /// ```
    /// # use syncmap_core::memo::{Memo, __private::MemoOptions};
    /// let memo: &'static Memo<String, usize> =
    ///     Box::leak(Box::new(Memo::new("len", MemoOptions::DEFAULT.into())));
    /// assert_eq!(memo.get("abc"), None);
    /// memo.__call("abc", || "abc".to_string(), || 3, |_| true);
    /// assert_eq!(memo.get("abc"), Some(3));
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.map
            .load_with(key, |slot| {
                slot.0
                    .get()
                    .filter(|stored| !self.expired(stored.at))
                    .map(|stored| stored.value.clone())
            })
            .flatten()
    }

    /// The number of cached values (entries being computed are not counted). Takes time linear
    /// in the number of entries: it visits them to leave out the ones being computed.
    ///
    /// ```
    /// # use syncmap_core::memo::{Memo, __private::MemoOptions};
    /// let memo: &'static Memo<u8, u8> = Box::leak(Box::new(Memo::new("f", MemoOptions::DEFAULT.into())));
    /// memo.__call(&1, || 1, || 2, |_| true);
    /// assert_eq!(memo.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        let mut computing = 0;
        self.map.range(|_, slot| {
            computing += usize::from(slot.0.get().is_none());
            true
        });
        self.map.len().saturating_sub(computing)
    }

    /// Whether no value is cached.
    ///
    /// ```
    /// # use syncmap_core::memo::{Memo, __private::MemoOptions};
    /// let memo: Memo<u8, u8> = Memo::new("f", MemoOptions::DEFAULT.into());
    /// assert!(memo.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with each cached key and value; stops when `f` returns `false`.
    ///
    /// Not a snapshot (see [`SyncMap::range`]); entries being computed and expired entries are
    /// skipped. `f` may call any method of this cache and the memoized function itself.
    ///
    /// # Panics
    ///
    /// Propagates a panic of `f`; the cache stays consistent and usable.
    ///
    /// ```
    /// # use syncmap_core::memo::{Memo, __private::MemoOptions};
    /// let memo: &'static Memo<u8, u8> = Box::leak(Box::new(Memo::new("f", MemoOptions::DEFAULT.into())));
    /// memo.__call(&2, || 2, || 4, |_| true);
    /// memo.range(|k, v| {
    ///     assert_eq!((*k, *v), (2, 4));
    ///     true
    /// });
    /// ```
    pub fn range(&self, mut f: impl FnMut(&K, &V) -> bool) {
        self.map.range(|key, slot| match slot.0.get() {
            Some(stored) if !self.expired(stored.at) => f(key, &stored.value),
            _ => true,
        });
    }

    /// Removes the cached value for `key`; returns whether there was one. A computation in
    /// flight for the key finishes and returns its value to its callers, but is not cached.
    ///
    /// ```
    /// # use syncmap_core::memo::{Memo, __private::MemoOptions};
    /// let memo: &'static Memo<u8, u8> = Box::leak(Box::new(Memo::new("f", MemoOptions::DEFAULT.into())));
    /// memo.__call(&1, || 1, || 1, |_| true);
    /// assert!(memo.invalidate(&1));
    /// assert!(!memo.invalidate(&1));
    /// ```
    pub fn invalidate<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.map
            .load_and_delete(key)
            .is_some_and(|slot| slot.0.get().is_some())
    }

    /// Removes every cached value for which `f` returns `true`; returns how many. Entries being
    /// computed are not offered to `f`. `f` may call any method of this cache.
    ///
    /// # Panics
    ///
    /// Propagates a panic of `f`; the entries removed before it stay removed.
    ///
    /// ```
    /// # use syncmap_core::memo::{Memo, __private::MemoOptions};
    /// let memo: &'static Memo<u8, u8> = Box::leak(Box::new(Memo::new("f", MemoOptions::DEFAULT.into())));
    /// for k in 0..10 {
    ///     memo.__call(&k, || k, || k * 2, |_| true);
    /// }
    /// assert_eq!(memo.invalidate_if(|k, _| k % 2 == 0), 5);
    /// assert_eq!(memo.len(), 5);
    /// ```
    pub fn invalidate_if(&self, mut f: impl FnMut(&K, &V) -> bool) -> usize {
        let mut removed = 0;
        self.map.range(|key, slot| {
            if let Some(stored) = slot.0.get() {
                if f(key, &stored.value) && self.map.compare_and_delete(key, slot) {
                    removed += 1;
                }
            }
            true
        });
        removed
    }

    /// Removes every cached value (computations in flight finish but are not cached).
    ///
    /// ```
    /// # use syncmap_core::memo::{Memo, __private::MemoOptions};
    /// let memo: &'static Memo<u8, u8> = Box::leak(Box::new(Memo::new("f", MemoOptions::DEFAULT.into())));
    /// memo.__call(&1, || 1, || 1, |_| true);
    /// memo.clear();
    /// assert!(memo.is_empty());
    /// ```
    pub fn clear(&self) {
        self.map.clear();
    }

    /// Removes the entries older than the TTL; returns how many. Does nothing without a TTL.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use syncmap_core::memo::{Memo, __private::MemoOptions};
    /// let options = MemoOptions { ttl: Some(Duration::from_millis(1)), ..MemoOptions::DEFAULT };
    /// let memo: &'static Memo<u8, u8> = Box::leak(Box::new(Memo::new("f", options.into())));
    /// memo.__call(&1, || 1, || 1, |_| true);
    /// std::thread::sleep(Duration::from_millis(5));
    /// assert_eq!(memo.purge_expired(), 1);
    /// ```
    pub fn purge_expired(&self) -> usize {
        if self.config.ttl.is_none() {
            return 0;
        }
        let mut purged = 0;
        self.map.range(|key, slot| {
            if let Some(stored) = slot.0.get() {
                if self.expired(stored.at) && self.map.compare_and_delete(key, slot) {
                    purged += 1;
                }
            }
            true
        });
        self.counters.add(Counter::Expiration, purged as u64);
        purged
    }

    /// Hits, misses, computations, evictions, expirations and the number of entries.
    ///
    /// ```
    /// # use syncmap_core::memo::{Memo, __private::MemoOptions};
    /// let memo: &'static Memo<u8, u8> = Box::leak(Box::new(Memo::new("f", MemoOptions::DEFAULT.into())));
    /// memo.__call(&1, || 1, || 1, |_| true);
    /// memo.__call(&1, || 1, || 1, |_| true);
    /// let stats = memo.stats();
    /// assert_eq!((stats.hits, stats.misses, stats.computations, stats.entries), (1, 1, 1, 1));
    /// ```
    pub fn stats(&self) -> MemoStats {
        self.counters.snapshot(self.len())
    }

    /// The whole cached call: [`__hit`](Self::__hit), else [`__miss`](Self::__miss).
    ///
    /// # Panics
    ///
    /// See [`__miss`](Self::__miss).
    #[doc(hidden)]
    #[inline]
    pub fn __call<Q>(
        &'static self,
        key: &Q,
        make_key: impl FnOnce() -> K,
        compute: impl FnOnce() -> V,
        keep: impl FnOnce(&V) -> bool,
    ) -> V
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        match self.__hit(key) {
            Some(value) => value,
            None => self.__miss(key, make_key, compute, keep),
        }
    }

    /// The hit path, as `#[memoize]` generates it: a clone of the cached value, looked up by a
    /// borrowed view of the key, with no allocation, no lock and no shared write. Counts a hit;
    /// `None` (counting nothing) when the value is absent, being computed or expired.
    #[doc(hidden)]
    #[inline]
    pub fn __hit<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let value = self
            .map
            .load_with(key, |slot| match slot.0.get() {
                Some(stored) if !self.expired(stored.at) => Some(stored.value.clone()),
                _ => None,
            })
            .flatten()?;
        self.counters.bump(Counter::Hit);
        Some(value)
    }

    /// The miss path: single flight. `make_key` builds the owned key if the cell must be
    /// inserted, `compute` runs the body outside any lock (at most once per call, and only if no
    /// other caller's value arrives first), and the value is cached only if `keep(&value)`.
    /// Counts a miss.
    ///
    /// # Panics
    ///
    /// Propagates a panic of `compute` (nothing is cached, the cell is removed, waiters compute in
    /// turn). Panics if the current thread is already computing this key (recursion with the same
    /// arguments), naming the function.
    #[doc(hidden)]
    pub fn __miss<Q>(
        &'static self,
        key: &Q,
        make_key: impl FnOnce() -> K,
        compute: impl FnOnce() -> V,
        keep: impl FnOnce(&V) -> bool,
    ) -> V
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.counters.bump(Counter::Miss);
        self.miss(key, make_key, compute, keep)
    }

    /// [`__miss`](Self::__miss) with the key already owned, for generated code that moves the
    /// arguments into the body: the key is cloned once more if its cell must be inserted.
    #[doc(hidden)]
    pub fn __miss_owned(
        &'static self,
        key: K,
        compute: impl FnOnce() -> V,
        keep: impl FnOnce(&V) -> bool,
    ) -> V
    where
        K: Clone,
    {
        self.__miss(&key, || key.clone(), compute, keep)
    }

    #[cold]
    fn miss<Q>(
        &'static self,
        key: &Q,
        make_key: impl FnOnce() -> K,
        compute: impl FnOnce() -> V,
        keep: impl FnOnce(&V) -> bool,
    ) -> V
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        // The caller's hit check just missed: insert a cell right away (load_or_store_with
        // returns the existing one if another caller inserted it meanwhile). Room is made only
        // when a cell is about to be inserted (the closure runs on a miss, outside the map's
        // lock), not when joining a computation in flight.
        let owned = make_key();
        #[cfg(feature = "redis")]
        let shared = self.shared_key(&owned);
        let mut slot = self
            .map
            .load_or_store_with(owned, || {
                self.make_room();
                SlotRef(Arc::new(Slot::new()))
            })
            .0;
        if let Some(stored) = slot.0.get() {
            if !self.expired(stored.at) {
                return stored.value.clone();
            }
            // Expired: put a fresh cell in its place (or take the one another caller put).
            self.counters.bump(Counter::Expiration);
            let fresh = SlotRef(Arc::new(Slot::new()));
            slot = if self.map.compare_and_swap(key, &slot, fresh.clone()) {
                fresh
            } else {
                match self.map.load(key) {
                    Some(current) => current,
                    // Invalidated meanwhile: compute for this caller without caching.
                    None => return compute(),
                }
            };
            if let Some(stored) = slot.0.get() {
                return if self.expired(stored.at) {
                    compute()
                } else {
                    stored.value.clone()
                };
            }
        }
        #[cfg(feature = "redis")]
        if let Some((hook, shared_key)) = shared {
            return self.miss_shared(key, slot, hook, shared_key, compute, keep);
        }
        let counters = &self.counters;
        // Remove the empty cell if the body panics, so later callers start afresh.
        let cleanup = RemoveOnUnwind {
            memo: self,
            key,
            slot: &slot,
        };
        let outcome = slot.0.get_or_compute(
            self.name,
            self.config.ttl.is_some(),
            || {
                counters.bump(Counter::Computation);
                compute()
            },
            keep,
        );
        std::mem::forget(cleanup);
        match outcome {
            Outcome::Cached(value) => value,
            Outcome::Uncached(value) => {
                self.map.compare_and_delete(key, &slot);
                value
            }
        }
    }

    /// With a capacity, evicts a batch of settled entries when the cache is full.
    fn make_room(&self) {
        let Some(capacity) = self.config.capacity else {
            return;
        };
        let len = self.map.len();
        if len < capacity {
            return;
        }
        let mut to_evict = (len + 1 - capacity).max(capacity / 8).max(1);
        let mut evicted = 0;
        self.map.range(|key, slot| {
            if slot.0.get().is_some() && self.map.compare_and_delete(key, slot) {
                evicted += 1;
                to_evict -= 1;
            }
            to_evict > 0
        });
        self.counters.add(Counter::Eviction, evicted);
    }

    /// The entries as text, for tools that do not know the types: `Debug` of keys and values, or
    /// `<not Debug>`.
    pub(crate) fn dump(&self) -> Vec<(String, String)> {
        let mut entries = Vec::new();
        self.range(|key, value| {
            entries.push((
                format_with(self.debug.key, key),
                format_with(self.debug.value, value),
            ));
            true
        });
        entries
    }
}

/// Removes a slot that a panicking computation leaves empty.
struct RemoveOnUnwind<'a, K, V, Q: ?Sized>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    Q: Hash + Equivalent<K>,
{
    memo: &'a Memo<K, V>,
    key: &'a Q,
    slot: &'a SlotRef<V>,
}

impl<K, V, Q: ?Sized> Drop for RemoveOnUnwind<'_, K, V, Q>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    Q: Hash + Equivalent<K>,
{
    fn drop(&mut self) {
        if self.slot.0.get().is_none() {
            self.memo.map.compare_and_delete(self.key, self.slot);
        }
    }
}

/// Formats with an optional `Debug` function.
fn format_with<T>(
    debug: Option<fn(&T, &mut fmt::Formatter<'_>) -> fmt::Result>,
    value: &T,
) -> String {
    struct With<'a, T>(fn(&T, &mut fmt::Formatter<'_>) -> fmt::Result, &'a T);
    impl<T> fmt::Display for With<'_, T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            (self.0)(self.1, f)
        }
    }
    match debug {
        Some(debug) => With(debug, value).to_string(),
        None => "<not Debug>".to_string(),
    }
}

impl<K, V> fmt::Debug for Memo<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The name and statistics (entries are printed by [`MemoHandle::dump`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memo")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}
