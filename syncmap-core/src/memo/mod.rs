//! The memoization runtime behind `#[memoize]`: [`Memo`], one per memoized function, and the
//! [`registry`](fn@registry) of every cache in the process, for debugging tools.
//!
//! A `Memo<K, V>` is a [`SyncMap`](crate::SyncMap) from the key to its value, for a cache with
//! no bound, no TTL and no shared tier, or else to a single-flight cell that holds the value
//! with what the bound or the TTL needs:
//!
//! - **Hits** look the key up by a borrowed view (no allocation), read the value (or its cell)
//!   without a lock and return a clone of it. Hit and miss counts go to per-thread stripes: no
//!   shared write on the hit path.
//! - **Misses** register the computation where concurrent callers of the same key find it (an
//!   empty cell in the map, or for a plain cache an entry in a small striped table beside it,
//!   which gets a cell only when a caller comes to wait): those callers wait for that one
//!   computation (single flight), callers of other keys are not blocked, and no lock is held
//!   while the body runs. A plain cache then moves the value into its map.
//! - **A panic** in the body leaves the cell empty and removes it; it propagates to the caller,
//!   and a caller that was waiting computes in turn (nobody hangs).
//! - **A recursive call with the same key** on the computing thread panics with a message naming
//!   the function, instead of deadlocking. Recursion through *other* keys works (memoized `fib`).
//!   A cycle through two threads (`f(a)` on one waiting for `f(b)` on another, which waits for
//!   `f(a)`) is not detected and deadlocks, as it would with any lock.
//!
//! ```
//! use syncmemo::{memoize, Memo};
//!
//! #[memoize]
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//! assert_eq!(square(12), 144); // a miss: computes
//! assert_eq!(square(12), 144); // a hit
//! let cache: &'static Memo<u64, u64> = square_cache();
//! let stats = cache.stats();
//! assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
//! ```
//!
//! A cache can also be made by hand, with a configuration known at run time
//! ([`Memo::builder`]), and filled with [`Memo::get_or_compute`], which has the semantics of a
//! memoized call:
//!
//! ```
//! use syncmemo::Memo;
//!
//! let lengths: Memo<String, usize> = Memo::builder("lengths").capacity(1_000).build();
//! assert_eq!(lengths.get_or_compute("abc", || 3), 3);
//! assert_eq!(lengths.get("abc"), Some(3));
//! ```
//!
//! [`clear_all`] empties every cache at once; [`registry`](fn@registry) lists them.

mod async_memo;
mod bounded;
mod builder;
mod call;
mod cells;
mod checks;
mod flight;
mod key;
mod mrc;
mod plain;
mod registry;
#[cfg(feature = "redis")]
mod shared;
mod slot;
#[cfg(feature = "serde")]
mod snapshot;
mod spare_slots;
mod stats;
#[cfg(feature = "tracing")]
mod trace;
#[cfg(feature = "serde")]
mod warm;
mod window;

#[doc(hidden)]
pub mod __private;

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

pub use builder::MemoBuilder;
pub use checks::{KeyPart, MemoValue};
pub use key::KeyRef;
pub use mrc::{CurvePoint, MissRatioCurve};
pub use registry::{clear_all, registry, MemoHandle};
pub use stats::MemoStats;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub use {
    snapshot::{MemoSnapshot, RegistrySnapshot, SnapshotEntry, SnapshotPage},
    warm::WarmStartError,
};

use crate::Equivalent;
use cells::{CellMap, CellStore};
use plain::{OwnedFlight, PlainStore};
use slot::SlotRef;
use stats::{Counter, Counters};

/// The caches' hasher: fast, seeded per cache.
#[cfg(not(syncmap_loom))]
type MemoHasher = foldhash::fast::RandomState;
/// Loom replays executions and needs them deterministic: a fixed-key hasher.
#[cfg(syncmap_loom)]
type MemoHasher = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;

/// Where a cache keeps its values.
enum Store<K, V> {
    /// A cache with a bound, a TTL or a shared tier: a cell per key, holding the value, its
    /// single flight, the hits its eviction policy reads and the stamp its TTL needs
    /// (`cells.rs`).
    Cells(CellStore<K, V>),
    /// Any other cache: the values themselves in the map, and the computations in flight
    /// beside them (`plain.rs`), so that an entry costs what a map entry costs.
    Plain(PlainStore<K, V>),
}

/// What a store gives a caller whose hit check missed.
enum FlightOrValue<'a, K: Hash + Eq, V: Clone> {
    /// The cell of the key's computation: one in flight, or a new one this caller put.
    Cell(SlotRef<V>),
    /// A new cell this caller put, claimed by its thread from the start (a synchronous caller
    /// of a cache that keeps cells, without a shared tier): it computes there with
    /// `SlotRef::compute_claimed`, without claiming.
    Claimed(SlotRef<V>),
    /// A new computation of the key, which this caller owns without a cell (a plain cache's
    /// synchronous callers only).
    Owned(OwnedFlight<'a, K, V>),
    /// The key's value, stored.
    Stored(V),
    /// The key's value, stored in a bounded cache's window (`window.rs`): a hit.
    Hit(V),
    /// The key's expired cell was removed (an invalidation) while this caller replaced it: no
    /// cell is left to compute in (a bounded or TTL cache only).
    Invalidated,
}

/// How a [`Memo`] was configured (by `#[memoize(...)]` options).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct MemoConfig {
    /// At most this many entries (`capacity = N`); `None`: unbounded.
    pub capacity: Option<usize>,
    /// Entries older than this are recomputed (`ttl = "30s"`); `None`: they never expire.
    pub ttl: Option<Duration>,
    /// Whether results are shared through a tier behind the local cache (`shared`, feature
    /// `redis`).
    pub shared: bool,
    /// At most this total weight of entries, as weighed by the cache's weigher
    /// (`max_weight = N, weigher = f`); `None`: no weight bound. See [`Memo::weight`].
    #[cfg_attr(feature = "serde", serde(default))]
    pub max_weight: Option<u64>,
}

/// The cache of one memoized function: a [`SyncMap`](crate::SyncMap) from its key (the tuple
/// of its cached arguments, owned) to its result, with single flight, statistics,
/// invalidation and introspection.
///
/// `#[memoize] fn f(..)` generates `f_cache() -> &'static Memo<K, V>`; see the `syncmemo` crate's
/// documentation of `#[memoize]`. Every method may be called while other threads call the
/// function, and from inside the function itself. [`Memo::builder`] makes one by hand.
///
/// ```
/// #[syncmemo::memoize(capacity = 10_000)]
/// fn word_count(text: &str) -> usize {
///     text.split_whitespace().count()
/// }
/// word_count("a b c");
/// let cache = word_count_cache();
/// assert_eq!(cache.get("a b c"), Some(3)); // a peek: borrowed key, no computation
/// assert_eq!(cache.config().capacity, Some(10_000));
/// cache.invalidate("a b c");
/// assert!(cache.is_empty());
/// ```
///
/// # Capacity and eviction
///
/// Without `capacity`, a cache grows with every distinct key: **on untrusted input that is a
/// memory-exhaustion hazard**; bound it. With `capacity = N`, the cache keeps the entries an
/// adaptive W-TinyLFU policy judges most useful: a new value first enters a small window
/// (recency); when it leaves the window it is kept only if it was used more often, recently,
/// than the entry it would displace (frequency), so one-time scans do not flush the hot set;
/// the window's size follows the workload by hill climbing. The window is kept beside the map,
/// in a small table per policy: a new key enters the map only once admitted, so the keys turned
/// away (most new keys, in a skewed workload) never cost the map an insertion and a removal.
/// A hit in the map only bumps a small counter in the entry (a load, and a store until the
/// counter saturates): no lock, no allocation; a hit of a key still in the window takes its
/// policy's lock, without allocating. The policy's bookkeeping runs under that lock on the
/// miss path, after the body ran, and is amortized O(1) per insertion; from 1,024 entries on,
/// the keys are split by hash between up to 16 policies of at least 512 entries each, each
/// with its own lock, so that misses of different keys rarely wait for each other. Entries
/// being computed are never evicted. Each caller evicts right after storing its value, so
/// callers inserting at the same instant may exceed the bound by at most their number.
/// [`stats`](Self::stats) counts `evictions` and `rejections` (new values not kept).
///
/// With `max_weight = N, weigher = f` instead, the same policy bounds the total weight of the
/// entries, as `f(&key, &value)` weighs each one (say, its size in bytes): a value heavier
/// than `N` alone is returned but not kept (a rejection), and [`weight`](Self::weight) is the
/// current total. The weigher runs once per value stored, outside any lock; if it panics,
/// the value is removed (a rejection) and the panic propagates to the caller that computed it.
///
/// # Allocation
///
/// A hit allocates nothing and writes no shared memory. Two exceptions: by the map's design
/// (Go's `sync.Map`), the first hits of a key inserted since the map's last promotion are looked
/// up under the map's lock and may trigger the promotion, which allocates a new read snapshot
/// once; and a bounded cache's hits of the keys still in its window take that window's lock.
///
/// # Panics, reentrancy and deadlocks
///
/// No method holds a lock while user code (the function's body, `range` callbacks, `Debug` of
/// keys and values) runs, so every method may be called from inside them. (Keys' `Eq`, and in
/// a bounded cache their `Clone` for `range` and `len`, run under internal locks: they must not
/// call the cache.) A computation that
/// panics caches nothing; if a caller waiting on it then computes instead while the panicking
/// caller has already removed the cell, that value is returned but not cached (the next call
/// computes again). A recursive call with the same key on the computing thread panics, at
/// the recursive call, with a message naming the function, instead of deadlocking; a cycle
/// through two threads is not detected.
///
/// # Consistency
///
/// [`range`](Self::range), [`len`](Self::len) and [`stats`](Self::stats) are not snapshots while
/// other threads call the function (see [`SyncMap::range`](crate::SyncMap::range)). Entries
/// being computed are not visited and not counted.
pub struct Memo<K, V> {
    name: &'static str,
    config: MemoConfig,
    store: Store<K, V>,
    counters: Counters,
    debug: __private::MemoDebug<K, V>,
    /// The eviction policy, with a capacity.
    bound: Option<bounded::Bound<K, V>>,
    /// The shared tier's hook (`#[memoize(shared)]`).
    #[cfg(feature = "redis")]
    shared: Option<Box<dyn crate::tier::Hook<K, V>>>,
    /// The miss-ratio curve's estimator, once enabled (one load on each call while off).
    mrc: std::sync::OnceLock<Box<mrc::Estimator>>,
    /// Copies a key: set by the first miss (the miss paths require `K: Clone`), so that the
    /// keys of a bounded cache's windows can be read outside their locks (`window.rs`).
    clone_key: std::sync::OnceLock<fn(&K) -> K>,
}

impl<K, V> Memo<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An empty cache named `name`, unbounded and without TTL unless `config` says otherwise
    /// (`MemoConfig::default()` is both). `#[memoize]` creates caches for you;
    /// [`Memo::builder`] is the usual way to make one by hand.
    ///
    /// ```
    /// use syncmemo::memo::{Memo, MemoConfig};
    ///
    /// let memo: Memo<u64, u64> = Memo::new("demo", MemoConfig::default());
    /// assert!(memo.is_empty());
    /// assert_eq!(memo.config(), MemoConfig::default());
    /// ```
    pub fn new(name: &'static str, config: MemoConfig) -> Self {
        Self::with_debug(name, config, __private::MemoDebug::default())
    }

    pub(crate) fn with_debug(
        name: &'static str,
        config: MemoConfig,
        debug: __private::MemoDebug<K, V>,
    ) -> Self {
        let (shared, weigher) = (debug.shared, debug.weigher);
        let plain = config.capacity.is_none()
            && config.max_weight.is_none()
            && config.ttl.is_none()
            && !config.shared
            && shared.is_none();
        Memo {
            name,
            config,
            store: if plain {
                Store::Plain(PlainStore::new())
            } else {
                Store::Cells(CellStore::new(config.ttl))
            },
            counters: Counters::default(),
            debug,
            bound: (config.capacity.map(|n| n as u64))
                .or(config.max_weight)
                .map(|max| bounded::Bound::new(max, weigher)),
            #[cfg(feature = "redis")]
            shared: None,
            mrc: std::sync::OnceLock::new(),
            clone_key: std::sync::OnceLock::new(),
        }
        .with_shared(shared)
    }

    /// Attaches the shared tier's hook that `factory` makes (generated code; a no-op without
    /// the `redis` feature).
    fn with_shared(self, factory: Option<__private::SharedFactory>) -> Self {
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
    /// mod parser {
    ///     #[syncmemo::memoize]
    ///     pub fn parse(line: &str) -> usize {
    ///         line.len()
    ///     }
    /// }
    /// assert!(parser::parse_cache().name().ends_with("parser::parse"));
    /// ```
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The configuration (capacity, TTL).
    ///
    /// ```
    /// #[syncmemo::memoize(capacity = 100, ttl = "30s")]
    /// fn lookup(id: u32) -> String {
    ///     id.to_string()
    /// }
    /// let config = lookup_cache().config();
    /// assert_eq!(config.capacity, Some(100));
    /// assert_eq!(config.ttl, Some(std::time::Duration::from_secs(30)));
    /// ```
    pub fn config(&self) -> MemoConfig {
        self.config
    }

    /// The cached value for `key`, without computing anything (a peek: counts no hit or miss).
    /// `None` if absent, being computed, or expired.
    ///
    /// The key is borrowed: `&str` for a `String` key, [`KeyRef`] for a tuple key.
    ///
    /// ```
    /// use syncmemo::memo::KeyRef;
    ///
    /// #[syncmemo::memoize]
    /// fn len(s: &str) -> usize {
    ///     s.len()
    /// }
    /// #[syncmemo::memoize]
    /// fn distance(a: &str, b: &str) -> usize {
    ///     a.len().abs_diff(b.len())
    /// }
    /// assert_eq!(len_cache().get("abc"), None);
    /// len("abc");
    /// assert_eq!(len_cache().get("abc"), Some(3));
    /// distance("ab", "abcd");
    /// assert_eq!(distance_cache().get(&KeyRef(("ab", "abcd"))), Some(2));
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        match &self.store {
            Store::Plain(plain) => plain.map.load(key),
            Store::Cells(cells) => (cells.get(key, false)).or_else(|| self.get_in_window(key)),
        }
    }

    /// The cells of a cache that keeps them (a bound, a TTL or a shared tier).
    fn cells(&self) -> Option<&CellMap<K, V>> {
        match &self.store {
            Store::Cells(cells) => Some(&cells.map),
            Store::Plain(_) => None,
        }
    }

    /// Takes the cell of a computation that ended without a value to keep out of the cache
    /// (if it is still there, and still that one).
    fn remove_cell<Q>(&self, key: &Q, slot: &SlotRef<V>)
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        match &self.store {
            Store::Plain(plain) => plain.remove(key, slot),
            // A bounded cache's cells in flight are in its windows.
            Store::Cells(cells) if self.bound.is_some() => {
                self.remove_from_window(cells.map.hasher().hash_one(key), slot);
            }
            Store::Cells(cells) => cells.remove(key, slot),
        }
    }

    /// The number of cached values (entries being computed and expired entries, which `get`
    /// and `range` do not show either, are not counted). O(1) for a cache with no bound, no
    /// TTL and no shared tier, whose map holds only values; otherwise it takes time linear in
    /// the number of entries: it visits them to leave out those.
    ///
    /// ```
    /// #[syncmemo::memoize]
    /// fn double(x: u8) -> u8 {
    ///     x * 2
    /// }
    /// double(1);
    /// double(1);
    /// double(2);
    /// assert_eq!(double_cache().len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        match &self.store {
            Store::Plain(plain) => plain.map.len(),
            Store::Cells(cells) => match &self.bound {
                Some(bound) => {
                    let live = |stored: &slot::Found<'_, V>| !cells.expired(stored.at);
                    self.len_with_windows(bound, || cells.len(), live)
                }
                None => cells.len(),
            },
        }
    }

    /// Whether no value is cached.
    ///
    /// ```
    /// #[syncmemo::memoize]
    /// fn double(x: u8) -> u8 {
    ///     x * 2
    /// }
    /// assert!(double_cache().is_empty());
    /// double(1);
    /// assert!(!double_cache().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with each cached key and value; stops when `f` returns `false`.
    ///
    /// Not a snapshot (see [`SyncMap::range`](crate::SyncMap::range)); entries being computed
    /// and expired entries are skipped. `f` may call any method of this cache and the memoized
    /// function itself.
    ///
    /// # Panics
    ///
    /// Propagates a panic of `f`; the cache stays consistent and usable.
    ///
    /// ```
    /// #[syncmemo::memoize]
    /// fn square(x: u8) -> u16 {
    ///     u16::from(x) * u16::from(x)
    /// }
    /// square(2);
    /// square(3);
    /// let mut entries = Vec::new();
    /// square_cache().range(|k, v| {
    ///     entries.push((*k, *v));
    ///     true // keep going
    /// });
    /// entries.sort();
    /// assert_eq!(entries, [(2, 4), (3, 9)]);
    /// ```
    pub fn range(&self, f: impl FnMut(&K, &V) -> bool) {
        match &self.store {
            Store::Plain(plain) => plain.map.range(f),
            Store::Cells(cells) => {
                let mut f = f;
                let mut went_through = true;
                cells.range(|key, value| {
                    went_through = f(key, value);
                    went_through
                });
                if went_through {
                    self.window_range(|stored| !cells.expired(stored.at), f);
                }
            }
        }
    }

    /// Removes the cached value for `key`; returns whether there was one. A computation in
    /// flight for the key finishes and returns its value to its callers, but is not cached.
    ///
    /// The key is borrowed as for [`get`](Self::get): [`KeyRef`] for a tuple key.
    ///
    /// This process only: for a `#[memoize(shared)]` function (feature `redis`), `f_cache()`
    /// returns a `SharedMemo` whose own `invalidate` also deletes the key in Redis and in the
    /// other processes; through a plain `&Memo` the key is removed here only.
    ///
    /// ```
    /// use syncmemo::memo::KeyRef;
    ///
    /// #[syncmemo::memoize]
    /// fn user_name(id: u32) -> String {
    ///     format!("user{id}")
    /// }
    /// #[syncmemo::memoize]
    /// fn price(shop: &str, item: &str) -> u64 {
    ///     (shop.len() + item.len()) as u64
    /// }
    /// user_name(1);
    /// assert!(user_name_cache().invalidate(&1)); // the next call computes again
    /// assert!(!user_name_cache().invalidate(&1));
    /// price("a", "b");
    /// assert!(price_cache().invalidate(&KeyRef(("a", "b"))));
    /// ```
    pub fn invalidate<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        match &self.store {
            Store::Plain(plain) => plain.invalidate(key),
            Store::Cells(cells) => cells.invalidate(key) | self.invalidate_in_window(key),
        }
    }

    /// Removes every cached value for which `f` returns `true`; returns how many. Entries being
    /// computed are not offered to `f`. `f` may call any method of this cache.
    ///
    /// # Panics
    ///
    /// Propagates a panic of `f`; the entries removed before it stay removed.
    ///
    /// ```
    /// #[syncmemo::memoize]
    /// fn double(x: u8) -> u8 {
    ///     x * 2
    /// }
    /// for k in 0..10 {
    ///     double(k);
    /// }
    /// assert_eq!(double_cache().invalidate_if(|k, _| k % 2 == 0), 5);
    /// assert_eq!(double_cache().len(), 5);
    /// ```
    pub fn invalidate_if(&self, f: impl FnMut(&K, &V) -> bool) -> usize {
        match &self.store {
            Store::Plain(plain) => plain.invalidate_if(f),
            Store::Cells(cells) => {
                let mut f = f;
                let in_map = cells.invalidate_if(&mut f);
                in_map + self.window_remove_where(|key, stored| f(key, stored.value))
            }
        }
    }

    /// Removes every cached value (computations in flight finish but are not cached).
    ///
    /// On a `#[memoize(shared)]` cache (feature `redis`) it also deletes the function's keys in
    /// Redis (`SCAN` on its prefix, never `FLUSHDB`) and tells the other processes to clear
    /// their local caches; see `SharedMemo::clear` in the `tier` module.
    ///
    /// ```
    /// #[syncmemo::memoize]
    /// fn double(x: u8) -> u8 {
    ///     x * 2
    /// }
    /// double(1);
    /// double_cache().clear();
    /// assert!(double_cache().is_empty());
    /// ```
    pub fn clear(&self) {
        self.clear_here();
        #[cfg(feature = "redis")]
        if let Some(hook) = &self.shared {
            hook.clear();
        }
    }

    /// [`clear`](Self::clear) in this process only.
    pub(crate) fn clear_here(&self) {
        match &self.store {
            Store::Plain(plain) => plain.clear(),
            Store::Cells(cells) => {
                cells.map.clear();
                self.forget_all();
            }
        }
    }

    /// Removes the entries older than the TTL; returns how many. Does nothing without a TTL.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// #[syncmemo::memoize(ttl = "1ms")]
    /// fn fresh(x: u8) -> u8 {
    ///     x
    /// }
    /// fresh(1);
    /// std::thread::sleep(Duration::from_millis(5));
    /// assert_eq!(fresh_cache().purge_expired(), 1);
    /// assert!(fresh_cache().is_empty());
    /// ```
    pub fn purge_expired(&self) -> usize {
        let Store::Cells(cells) = &self.store else {
            return 0;
        };
        let purged = cells.purge_expired()
            + match cells.has_ttl() {
                true => self.window_remove_where(|_, stored| cells.expired(stored.at)),
                false => 0,
            };
        self.counters.add(Counter::Expiration, purged as u64);
        purged
    }

    /// Hits, misses, waits, computations, evictions, expirations and the number of entries
    /// (see [`MemoStats`] for what each counts).
    ///
    /// ```
    /// #[syncmemo::memoize]
    /// fn double(x: u8) -> u8 {
    ///     x * 2
    /// }
    /// double(1); // a miss
    /// double(1); // a hit
    /// let stats = double_cache().stats();
    /// assert_eq!((stats.hits, stats.misses, stats.computations, stats.entries), (1, 1, 1, 1));
    /// assert_eq!(stats.hit_ratio(), Some(0.5));
    /// ```
    pub fn stats(&self) -> MemoStats {
        self.counters.snapshot(self.len())
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
