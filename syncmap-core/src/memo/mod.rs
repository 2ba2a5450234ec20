//! STUB: the memoization runtime behind `#[memoize]` (owned by the memo work).
use std::marker::PhantomData;

#[doc(hidden)]
pub mod __private {}

/// A per-function memoization cache (stub).
pub struct Memo<K, V> {
    _p: PhantomData<(K, V)>,
}

/// Counters of a [`Memo`] (stub).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoStats {
    /// Calls answered from the cache.
    pub hits: u64,
    /// Calls that computed.
    pub misses: u64,
    /// Entries in the cache.
    pub entries: usize,
}
