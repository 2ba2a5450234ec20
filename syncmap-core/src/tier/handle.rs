//! [`SharedMemo`]: what `f_cache()` returns for a `#[memoize(shared)]` function, so that the
//! plain `invalidate` and `clear` act on both tiers.

use std::fmt;
use std::hash::Hash;
use std::ops::Deref;

use serde::Serialize;

use crate::memo::{KeyRef, Memo};
use crate::Equivalent;

/// The cache of a `#[memoize(shared)]` function, as `f_cache()` returns it: a copyable handle to
/// its [`Memo`] (every `Memo` method is available through `Deref`), whose
/// [`invalidate`](Self::invalidate) and [`clear`](Self::clear) act on both tiers: this
/// process's cache, Redis, and (by a message on the namespace's channel) the other processes'
/// local caches.
///
/// ```no_run
/// # mod syncmemo { pub use syncmap_core::*; }
/// # let render_cache = || -> syncmemo::tier::SharedMemo<(String, String), String> { unimplemented!() };
/// use syncmemo::memo::KeyRef;
///
/// // #[syncmemo::memoize(shared, ttl = "10m")]
/// // fn render(page: &str, lang: &str) -> String { .. }
///
/// syncmemo::tier::redis::install("redis://127.0.0.1:6379/0")?;
/// // Everywhere: here, in Redis, and in the other processes (borrowed key, no allocation
/// // of a `(String, String)`).
/// render_cache().invalidate(&KeyRef(("home", "en")));
/// // Here only (Redis and the other processes keep theirs).
/// render_cache().invalidate_local(&KeyRef(("about", "en")));
/// // Every key of `render`, everywhere (`SCAN` on its prefix, never `FLUSHDB`).
/// render_cache().clear();
/// println!("{:?}", render_cache().stats()); // any `Memo` method
/// # Ok::<(), syncmemo::tier::redis::Error>(())
/// ```
///
/// # Consistency
///
/// The other processes drop their copies when the message reaches them, usually within a
/// millisecond; a process disconnected from Redis at that moment keeps its copy until its TTL
/// (eventual consistency). A computation in flight when the key is invalidated, here or in
/// another process, may still write its value to Redis afterwards (it started before the
/// invalidation). If Redis cannot be reached, only the local copy is removed and the fault is
/// counted in [`shared_stats`](Memo::shared_stats).
///
/// `invalidate` and `clear` talk to Redis with the blocking client on the calling thread,
/// bounded by the tier's command timeout (`clear` takes one round trip per 1,000 keys of the
/// function); from async code, call them where blocking is allowed (`spawn_blocking`).
///
/// A `&Memo` of a shared cache (from [`memo`](Self::memo) or `Deref`) keeps
/// [`Memo::invalidate`]'s borrowed-key signature, which cannot name a Redis key: it acts on
/// this process only. [`Memo::clear`] acts on both tiers either way.
pub struct SharedMemo<K: 'static, V: 'static> {
    memo: &'static Memo<K, V>,
}

impl<K, V> Clone for SharedMemo<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for SharedMemo<K, V> {}

impl<K, V> SharedMemo<K, V> {
    /// The handle of a `shared` cache (generated code).
    #[doc(hidden)]
    pub fn __new(memo: &'static Memo<K, V>) -> Self {
        SharedMemo { memo }
    }

    /// The cache itself, for code that takes a `&Memo` (every `Memo` method is also reachable
    /// through `Deref`).
    ///
    /// ```no_run
    /// # mod syncmemo { pub use syncmap_core::*; }
    /// # let square_cache = || -> syncmemo::tier::SharedMemo<u64, u64> { unimplemented!() };
    /// // #[syncmemo::memoize(shared)] fn square(x: u64) -> u64 { x * x }
    /// let memo: &'static syncmemo::Memo<u64, u64> = square_cache().memo();
    /// # let _ = memo;
    /// ```
    pub fn memo(&self) -> &'static Memo<K, V> {
        self.memo
    }
}

impl<K, V> Deref for SharedMemo<K, V> {
    type Target = Memo<K, V>;

    fn deref(&self) -> &Memo<K, V> {
        self.memo
    }
}

impl<K, V> SharedMemo<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Removes `key` here, in Redis, and (by a message) in the other processes' local caches;
    /// returns whether this process or Redis held a value. Whether or not this process ever
    /// computed the key.
    ///
    /// The key may be borrowed as for [`Memo::get`] (`&str` for a `String`, [`KeyRef`] for a
    /// tuple), as long as it serializes as the owned key does (true of `str` and `String`, `[T]`
    /// and `Vec<T>`, `KeyRef` and tuples, and of a type and itself). Its encoding is checked: if
    /// it does not decode to a key it is [`Equivalent`] to, Redis is left alone and the fault is
    /// counted (`errors` in [`shared_stats`](Memo::shared_stats)). See the type's docs for the
    /// consistency model.
    ///
    /// ```no_run
    /// # mod syncmemo { pub use syncmap_core::*; }
    /// # let profile_cache = || -> syncmemo::tier::SharedMemo<String, String> { unimplemented!() };
    /// // #[syncmemo::memoize(shared)] fn profile(user: &str) -> String { .. }
    /// // profile("ada") ran in some process of the fleet.
    /// profile_cache().invalidate("ada"); // here, in Redis, everywhere
    /// ```
    pub fn invalidate<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K> + Serialize,
    {
        let local = self.memo.invalidate(key);
        match self.memo.shared_hook() {
            Some(hook) => match postcard::to_stdvec(key) {
                Ok(bytes) => hook.invalidate_view(&bytes, &|owned| key.equivalent(owned)) || local,
                Err(_) => {
                    hook.bump(super::Event::Error);
                    local
                }
            },
            None => local,
        }
    }

    /// Removes every value here, the function's keys in Redis (`SCAN` on its prefix and
    /// `UNLINK`; never `FLUSHDB`), and tells the other processes to clear theirs; returns the
    /// number of Redis keys deleted. The same as [`Memo::clear`], with that count.
    ///
    /// ```no_run
    /// # mod syncmemo { pub use syncmap_core::*; }
    /// # let square_cache = || -> syncmemo::tier::SharedMemo<u64, u64> { unimplemented!() };
    /// // #[syncmemo::memoize(shared)] fn square(x: u64) -> u64 { x * x }
    /// let deleted_in_redis = square_cache().clear();
    /// println!("{deleted_in_redis} keys deleted in Redis");
    /// ```
    pub fn clear(&self) -> u64 {
        self.memo.clear_here();
        match self.memo.shared_hook() {
            Some(hook) => hook.clear(),
            None => 0,
        }
    }

    /// Removes `key` from this process's cache only: Redis and the other processes keep their
    /// copies, and the next call here is a Redis hit ([`Memo::invalidate`]).
    ///
    /// ```no_run
    /// # mod syncmemo { pub use syncmap_core::*; }
    /// # let square_cache = || -> syncmemo::tier::SharedMemo<u64, u64> { unimplemented!() };
    /// // #[syncmemo::memoize(shared)] fn square(x: u64) -> u64 { x * x }
    /// square_cache().invalidate_local(&3); // frees memory here; Redis still has it
    /// ```
    pub fn invalidate_local<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.memo.invalidate(key)
    }

    /// Removes every value from this process's cache only (Redis and the other processes keep
    /// theirs).
    ///
    /// ```no_run
    /// # mod syncmemo { pub use syncmap_core::*; }
    /// # let square_cache = || -> syncmemo::tier::SharedMemo<u64, u64> { unimplemented!() };
    /// // #[syncmemo::memoize(shared)] fn square(x: u64) -> u64 { x * x }
    /// square_cache().clear_local();
    /// assert!(square_cache().is_empty());
    /// ```
    pub fn clear_local(&self) {
        self.memo.clear_here();
    }
}

impl<K, V> fmt::Debug for SharedMemo<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.memo, f)
    }
}

/// A [`KeyRef`] serializes as the tuple it views, so that it encodes as the owned tuple key
/// does (postcard writes `&str` and `String` alike).
impl<T: Serialize> Serialize for KeyRef<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}
