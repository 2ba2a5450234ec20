//! STUB: replaced by the real implementation shortly. Signatures are final.
use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};

use crate::Equivalent;

/// A concurrent map with the read/dirty design of Go's `sync.Map`.
pub struct SyncMap<K, V, S = RandomState> {
    _p: std::marker::PhantomData<(K, V, S)>,
}

impl<K, V> SyncMap<K, V, RandomState> {
    /// Creates an empty map.
    pub fn new() -> Self {
        todo!()
    }
}

impl<K, V, S> SyncMap<K, V, S> {
    /// Creates an empty map that uses `hasher`.
    pub fn with_hasher(_hasher: S) -> Self {
        todo!()
    }
}

impl<K, V, S> SyncMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// Returns a clone of the value stored for `key`.
    pub fn load<Q>(&self, _key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        todo!()
    }
    /// Calls `f` with the value stored for `key`, without cloning it.
    pub fn load_with<Q, R>(&self, _key: &Q, _f: impl FnOnce(&V) -> R) -> Option<R>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        todo!()
    }
    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, _key: &Q) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        todo!()
    }
    /// Stores `value` for `key`.
    pub fn store(&self, _key: K, _value: V) {
        todo!()
    }
    /// Returns the existing value if present, otherwise stores `value`.
    pub fn load_or_store(&self, _key: K, _value: V) -> (V, bool)
    where
        V: Clone,
    {
        todo!()
    }
    /// Like `load_or_store`, computing the value only on a miss.
    pub fn load_or_store_with(&self, _key: K, _f: impl FnOnce() -> V) -> (V, bool)
    where
        V: Clone,
    {
        todo!()
    }
    /// Deletes and returns the value for `key`.
    pub fn load_and_delete<Q>(&self, _key: &Q) -> Option<V>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        todo!()
    }
    /// Deletes the value for `key`.
    pub fn delete<Q>(&self, _key: &Q)
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        todo!()
    }
    /// Stores `value` and returns the previous value.
    pub fn swap(&self, _key: K, _value: V) -> Option<V>
    where
        V: Clone,
    {
        todo!()
    }
    /// Swaps `old` for `new` if the stored value equals `old`.
    pub fn compare_and_swap<Q>(&self, _key: &Q, _old: &V, _new: V) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: PartialEq,
    {
        todo!()
    }
    /// Deletes the entry if the stored value equals `old`.
    pub fn compare_and_delete<Q>(&self, _key: &Q, _old: &V) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: PartialEq,
    {
        todo!()
    }
    /// Calls `f` for each key and value; `false` stops.
    pub fn range(&self, _f: impl FnMut(&K, &V) -> bool) {
        todo!()
    }
    /// Removes every entry.
    pub fn clear(&self) {
        todo!()
    }
    /// The number of entries.
    pub fn len(&self) -> usize {
        todo!()
    }
    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        todo!()
    }
}

impl<K, V> Default for SyncMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq + fmt::Debug, V: fmt::Debug, S: BuildHasher> fmt::Debug for SyncMap<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().finish()
    }
}

impl<K: Hash + Eq, V, S: BuildHasher + Default> FromIterator<(K, V)> for SyncMap<K, V, S> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = Self::with_hasher(S::default());
        map.extend(iter);
        map
    }
}

impl<K: Hash + Eq, V, S: BuildHasher> Extend<(K, V)> for SyncMap<K, V, S> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.store(k, v);
        }
    }
}

impl<'a, K: Hash + Eq, V, S: BuildHasher> Extend<(K, V)> for &'a SyncMap<K, V, S> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.store(k, v);
        }
    }
}

#[allow(dead_code)]
fn _borrow_is_equivalent<K: Borrow<str>>() {}
