//! The standard traits of `SyncMap`: unwind safety, `Drop`, `Default`, `Debug`, `FromIterator`
//! and `Extend`.

use super::*;

/// A panic in user code (a closure, `Hash`, `Eq`, `PartialEq`, `Clone`) leaves the map consistent,
/// and its lock does not poison, so the map may be used across `catch_unwind`.
///
/// ```
/// use syncmap_core::SyncMap;
///
/// let map = SyncMap::new();
/// map.store(1, 1);
/// let caught = std::panic::catch_unwind(|| map.load_with(&1, |_| panic!("in a closure")));
/// assert!(caught.is_err());
/// assert_eq!(map.load(&1), Some(1));
/// ```
impl<K, V, S> std::panic::RefUnwindSafe for SyncMap<K, V, S>
where
    K: std::panic::RefUnwindSafe,
    V: std::panic::RefUnwindSafe,
    S: std::panic::RefUnwindSafe,
{
}

/// See the `RefUnwindSafe` implementation.
impl<K, V, S> std::panic::UnwindSafe for SyncMap<K, V, S>
where
    K: std::panic::UnwindSafe,
    V: std::panic::UnwindSafe,
    S: std::panic::UnwindSafe,
{
}

impl<K, V, S> Drop for SyncMap<K, V, S> {
    fn drop(&mut self) {
        // Their values are retired to the collector, which drops them when it is dropped, right
        // after this (it is the last field). No pass runs meanwhile (a destructor that panicked
        // there would stop the detaching).
        sync::hold_reclamation(&self.collector);
        let mut all = Vec::new();
        for i in 0..self.shards.allocated() {
            let dirty = std::mem::take(self.shards.get_mut(i).dirty.get_mut());
            let shard = self.shard_at(i, self.split_mask());
            all.extend(self.detach_all_locked(shard, &dirty, &sync::enter(&self.collector)));
        }
        // Every entry is freed even if a key's or value's `Drop` panics (then resumed, after
        // which the collector, dropped by the unwind, still frees everything retired).
        let mut panics = crate::raw::unwind::Panics::default();
        for entry in all {
            // SAFETY: `&mut self`: no other thread can reach the map; `detach_all_locked`
            // returns each entry once.
            panics.run(|| unsafe { entry.free() });
        }
        sync::release_reclamation(&self.collector);
        panics.resume();
    }
}

impl<K, V, S: Default> Default for SyncMap<K, V, S> {
    /// An empty map with the hasher's default; see [`SyncMap::new`].
    fn default() -> Self {
        Self::with_hasher(S::default())
    }
}

/// Prints like `HashMap`: `{k1: v1, k2: v2}` (visits entries with [`SyncMap::range`]).
///
/// ```
/// use syncmap_core::SyncMap;
///
/// let map = SyncMap::new();
/// map.store("a", 1);
/// assert_eq!(format!("{map:?}"), r#"{"a": 1}"#);
/// ```
impl<K, V, S> fmt::Debug for SyncMap<K, V, S>
where
    K: Hash + Eq + fmt::Debug,
    V: fmt::Debug,
    S: BuildHasher,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_map();
        self.range(|k, v| {
            out.entry(k, v);
            true
        });
        out.finish()
    }
}

/// Collects pairs; a later pair for the same key replaces the earlier one.
///
/// ```
/// use syncmap_core::SyncMap;
///
/// let map: SyncMap<&str, i32> = [("a", 1), ("a", 2)].into_iter().collect();
/// assert_eq!(map.load("a"), Some(2));
/// ```
impl<K, V, S> FromIterator<(K, V)> for SyncMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher + Default,
{
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let map = Self::with_hasher(S::default());
        map.extend_shared(iter);
        map
    }
}

impl<K, V, S> SyncMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    fn extend_shared<I: IntoIterator<Item = (K, V)>>(&self, iter: I) {
        for (key, value) in iter {
            self.store(key, value);
        }
    }
}

/// Stores every pair, as [`SyncMap::store`] does.
///
/// ```
/// use syncmap_core::SyncMap;
///
/// let mut map = SyncMap::new();
/// map.extend([(1, "a"), (2, "b")]);
/// assert_eq!(map.len(), 2);
/// ```
impl<K, V, S> Extend<(K, V)> for SyncMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        self.extend_shared(iter);
    }
}

/// Stores every pair through a shared reference, so several threads can extend one map.
///
/// ```
/// use syncmap_core::SyncMap;
///
/// let map = SyncMap::new();
/// (&map).extend([(1, "a")]);
/// assert_eq!(map.load(&1), Some("a"));
/// ```
impl<K, V, S> Extend<(K, V)> for &SyncMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        self.extend_shared(iter);
    }
}
