//! A shared tier behind the local cache: `#[memoize(shared)]` functions keep their results in
//! Redis too, so that a fleet of processes computes each key once (feature `redis`).
//!
//! ```no_run
//! # mod syncmemo { pub use syncmap_core::tier; }
//! // #[memoize(shared, ttl = "10m")]
//! // fn render(page: &str, lang: &str) -> Html { ... }
//!
//! // Once at start-up (or set SYNCMEMO_REDIS_URL and call nothing):
//! syncmemo::tier::redis::install("redis://127.0.0.1:6379/0")?;
//! # Ok::<(), syncmemo::tier::redis::Error>(())
//! ```
//!
//! # How a call goes
//!
//! 1. A local hit returns at once and never touches the network.
//! 2. A local miss runs the local single flight (one caller per key in this process), and that
//!    caller asks Redis in one round trip (a Lua script): the value, or else the key's lock
//!    (`SET NX PX` with a random token).
//! 3. A Redis hit fills the local cache, with the TTL Redis has left (a value is never kept
//!    locally longer than its TTL from its computation).
//! 4. The lock's owner computes, writes the value with the TTL (`PX`), deletes the lock only if
//!    it still holds its token, and announces the key on the namespace's channel. Other
//!    processes wait for that announcement (pub/sub), polling at a bounded interval as a
//!    fallback; if the lock expires without a value (its owner crashed) the next of them takes
//!    it, so a crashed owner delays the others by at most the lock's lifetime.
//!
//! # Failure is never the caller's problem
//!
//! Redis down, slow (past the connect or command timeout), full (`OOM`), or holding bytes that do
//! not decode: the call computes locally and returns its value. Each fault is counted in
//! [`TierStats`] (`f_cache().shared_stats()`), and logged once per burst through `tracing` with
//! the `tracing` feature. After a connection fault the tier backs off (100 ms, doubling up to
//! 2 s) without touching the network, then reconnects by itself.
//!
//! A function returning `Result<T, E>` may ask to see the faults instead:
//! `#[memoize(shared, tier_errors = "return")]`, with `E: From<`[`TierError`]`>`, returns
//! `Err(E::from(error))` (not cached) when Redis cannot answer, rather than computing without
//! it. A fault while writing a computed value is still only counted: the value is returned.
//!
//! # Consistency
//!
//! Redis is the source of truth for a key while it holds it; local copies expire with the TTL.
//! `f_cache()` of a shared function returns a [`SharedMemo`]: its
//! [`invalidate`](SharedMemo::invalidate) and [`clear`](SharedMemo::clear) delete here and in
//! Redis and announce it on the namespace's channel: other processes drop their local copies
//! when the message arrives, usually within a millisecond, but a process disconnected at that
//! moment keeps its copy until its TTL (eventual consistency).
//! [`invalidate_local`](SharedMemo::invalidate_local) and
//! [`clear_local`](SharedMemo::clear_local) act on this process only.

mod codec;
mod handle;
pub mod redis;

pub use handle::SharedMemo;

use std::any::Any;
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::memo::{Memo, MemoConfig};

/// What the shared tier did for one memoized function, as
/// [`Memo::shared_stats`](crate::Memo::shared_stats) reports it.
///
/// ```
/// # use syncmap_core::tier::TierStats;
/// let stats = TierStats::default();
/// assert_eq!(stats.faults(), 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierStats {
    /// Local misses answered by Redis (no computation).
    pub hits: u64,
    /// Local misses Redis could not answer: this process computed.
    pub misses: u64,
    /// Values written to Redis.
    pub writes: u64,
    /// Times this process waited for another process computing the same key.
    pub waits: u64,
    /// Waits that ended without a value after the lock's lifetime: this process computed.
    pub wait_timeouts: u64,
    /// Values not written because they exceed the maximum size.
    pub oversized: u64,
    /// Redis errors: refused or dropped connections, error replies (`OOM`...).
    pub errors: u64,
    /// Connect or command timeouts.
    pub timeouts: u64,
    /// Values in Redis that did not decode (wrong format, checksum or type): recomputed and
    /// overwritten.
    pub decode_errors: u64,
    /// Calls that did not ask Redis because it was backing off after a fault, or no tier was
    /// installed.
    pub skipped: u64,
    /// Invalidations and clears received from other processes.
    pub remote_invalidations: u64,
}

impl TierStats {
    /// Errors, timeouts and decode errors: the faults absorbed by computing locally.
    ///
    /// ```
    /// # use syncmap_core::tier::TierStats;
    /// let mut stats = TierStats::default();
    /// stats.timeouts = 2;
    /// stats.decode_errors = 1;
    /// assert_eq!(stats.faults(), 3);
    /// ```
    pub fn faults(&self) -> u64 {
        self.errors + self.timeouts + self.decode_errors
    }
}

/// Why the shared tier could not answer a call: what `#[memoize(shared, tier_errors =
/// "return")]` functions return, as `Err(E::from(error))`, instead of computing without the
/// tier.
///
/// ```
/// # mod syncmemo { pub use syncmap_core::*; }
/// use syncmemo::tier::{TierError, TierErrorKind};
///
/// #[derive(Debug)]
/// enum AppError {
///     Cache(TierErrorKind),
///     NotFound,
/// }
///
/// impl From<TierError> for AppError {
///     fn from(error: TierError) -> Self {
///         AppError::Cache(error.kind())
///     }
/// }
///
/// // #[memoize(shared, tier_errors = "return")]
/// // fn lookup(id: u64) -> Result<String, AppError> { .. }
/// # let _ = AppError::NotFound;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierError {
    kind: TierErrorKind,
}

/// What went wrong in the shared tier ([`TierError::kind`]).
///
/// ```
/// # mod syncmemo { pub use syncmap_core::*; }
/// use syncmemo::tier::TierErrorKind;
/// let kind = TierErrorKind::Timeout;
/// assert_ne!(kind, TierErrorKind::Unavailable);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TierErrorKind {
    /// Redis could not be reached (connection refused or dropped), or the tier is backing off
    /// after such a fault.
    Unavailable,
    /// Redis did not answer within the connect or command timeout.
    Timeout,
    /// Redis answered with an error (`OOM`, a script error) or an unexpected reply.
    Refused,
    /// The value in Redis did not decode (another format, a checksum mismatch, garbage).
    Decode,
}

impl TierError {
    pub(crate) fn new(kind: TierErrorKind) -> TierError {
        TierError::from(kind)
    }

    /// What went wrong.
    ///
    /// ```
    /// # mod syncmemo { pub use syncmap_core::*; }
    /// # fn error() -> syncmemo::tier::TierError { unimplemented!() }
    /// # fn ignore() {
    /// use syncmemo::tier::TierErrorKind;
    /// if error().kind() == TierErrorKind::Timeout {
    ///     eprintln!("Redis is slow");
    /// }
    /// # }
    /// ```
    pub fn kind(&self) -> TierErrorKind {
        self.kind
    }
}

impl std::fmt::Display for TierError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            TierErrorKind::Unavailable => "the shared cache (Redis) is unavailable",
            TierErrorKind::Timeout => "the shared cache (Redis) did not answer in time",
            TierErrorKind::Refused => "the shared cache (Redis) answered with an error",
            TierErrorKind::Decode => "a value in the shared cache (Redis) did not decode",
        })
    }
}

impl std::error::Error for TierError {}

/// An error of this kind (to test an `Err` conversion, say).
///
/// ```
/// # mod syncmemo { pub use syncmap_core::*; }
/// use syncmemo::tier::{TierError, TierErrorKind};
/// let error = TierError::from(TierErrorKind::Unavailable);
/// assert_eq!(error.kind(), TierErrorKind::Unavailable);
/// ```
impl From<TierErrorKind> for TierError {
    fn from(kind: TierErrorKind) -> Self {
        TierError { kind }
    }
}

/// The results of `tier_errors = "return"` functions: a `Result` whose error type has
/// `From<TierError>`.
#[diagnostic::on_unimplemented(
    message = "`tier_errors = \"return\"` returns the shared tier's errors as \
               `Err(E::from(syncmemo::tier::TierError))`: `{Self}` must be a `Result` whose \
               error type implements `From<syncmemo::tier::TierError>`",
    label = "no `From<TierError>` for this result's error type"
)]
pub trait FromTierError {
    /// `Err(E::from(error))`.
    #[doc(hidden)]
    fn from_tier_error(error: TierError) -> Self;
}

impl<T, E: From<TierError>> FromTierError for Result<T, E> {
    fn from_tier_error(error: TierError) -> Self {
        Err(E::from(error))
    }
}

/// Counters behind [`TierStats`] (the miss path talks to the network: plain atomics suffice).
#[derive(Default)]
pub(crate) struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    writes: AtomicU64,
    waits: AtomicU64,
    wait_timeouts: AtomicU64,
    oversized: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    decode_errors: AtomicU64,
    skipped: AtomicU64,
    remote_invalidations: AtomicU64,
}

/// What [`Counters::bump`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    Hit,
    Miss,
    Write,
    Wait,
    WaitTimeout,
    Oversized,
    Error,
    Timeout,
    DecodeError,
    Skipped,
    RemoteInvalidation,
}

impl Counters {
    pub(crate) fn bump(&self, event: Event) {
        let counter = match event {
            Event::Hit => &self.hits,
            Event::Miss => &self.misses,
            Event::Write => &self.writes,
            Event::Wait => &self.waits,
            Event::WaitTimeout => &self.wait_timeouts,
            Event::Oversized => &self.oversized,
            Event::Error => &self.errors,
            Event::Timeout => &self.timeouts,
            Event::DecodeError => &self.decode_errors,
            Event::Skipped => &self.skipped,
            Event::RemoteInvalidation => &self.remote_invalidations,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> TierStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TierStats {
            hits: get(&self.hits),
            misses: get(&self.misses),
            writes: get(&self.writes),
            waits: get(&self.waits),
            wait_timeouts: get(&self.wait_timeouts),
            oversized: get(&self.oversized),
            errors: get(&self.errors),
            timeouts: get(&self.timeouts),
            decode_errors: get(&self.decode_errors),
            skipped: get(&self.skipped),
            remote_invalidations: get(&self.remote_invalidations),
        }
    }
}

/// What a local miss gets from the shared tier.
pub(crate) enum Lookup<V> {
    /// Another process's value, computed `age` ago.
    Found { value: V, age: Duration },
    /// Compute: with the key's lock (the ticket then publishes or releases it), or without it
    /// (after a fault, a wait timeout or a decode error).
    Compute(redis::Ticket),
}

/// The shared tier as a [`Memo`] sees it: its key and value types' serde code, behind a trait
/// object so that `Memo` needs no serde bounds.
pub(crate) trait Hook<K, V>:
    Send + Sync + std::panic::RefUnwindSafe + std::panic::UnwindSafe
{
    /// The Redis key of `key`, or `None` (counted) if the key does not serialize.
    fn key(&self, key: &K) -> Option<String>;
    /// Subscribes `memo` (this hook's cache, now registered for the process's lifetime) to the
    /// invalidations other processes publish.
    fn attach(&self, memo: &'static Memo<K, V>);
    /// Asks Redis for `key` (see the module docs), waiting for another process's computation.
    fn lookup(&self, key: &str) -> Lookup<V>;
    /// [`lookup`](Self::lookup) for an `async fn`: never blocks the calling thread.
    fn lookup_async(&self, key: String) -> BoxFuture<'_, Lookup<V>>;
    /// Writes a computed value (the caller checked that it is to be kept), releasing the lock.
    fn publish(&self, ticket: redis::Ticket, value: &V);
    /// [`publish`](Self::publish) for an `async fn`.
    fn publish_async(&self, ticket: redis::Ticket, value: &V) -> BoxFuture<'_, ()>;
    /// Deletes `key` in Redis and tells the other processes.
    fn invalidate(&self, key: &K) -> bool;
    /// [`invalidate`](Self::invalidate) for the key whose postcard encoding is `bytes` (a
    /// borrowed view's), if it decodes to a key that `matches` (the view is equivalent to it).
    fn invalidate_view(&self, bytes: &[u8], matches: &dyn Fn(&K) -> bool) -> bool;
    /// Deletes the function's keys in Redis (`SCAN` on its prefix) and tells the other processes.
    fn clear(&self) -> u64;
    /// The counters.
    fn stats(&self) -> TierStats;
    /// Counts an event.
    fn bump(&self, event: Event);
}

/// A boxed future of the tier (the hook is a trait object).
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The erased hook a [`Memo`] receives from generated code (`MemoOptions::shared`).
pub(crate) struct HookBox<K, V>(pub(crate) Box<dyn Hook<K, V>>);

/// Marks the types a `shared` function's key and result may have.
#[diagnostic::on_unimplemented(
    message = "`#[memoize(shared)]` stores keys and results in Redis: `{Self}` must implement \
               serde's `Serialize` and `Deserialize`",
    label = "not `Serialize + DeserializeOwned`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait SharedType {
    /// Names the check in generated code.
    #[doc(hidden)]
    #[inline(always)]
    fn __assert() {}
}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> SharedType for T {}

/// The hook for a function with key `K` and value `V`, erased for `MemoOptions::shared`.
pub(crate) fn hook<K, V>(name: &'static str, config: MemoConfig) -> Box<dyn Any + Send + Sync>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let shared: Shared<K, V> = Shared {
        path: name,
        fingerprint: codec::fingerprint::<K, V>(),
        ttl: config.ttl,
        counters: Arc::default(),
        _types: PhantomData,
    };
    Box::new(HookBox::<K, V>(Box::new(shared)))
}

/// The serde side of one function's tier.
struct Shared<K, V> {
    /// The function's path (module and name).
    path: &'static str,
    fingerprint: String,
    ttl: Option<Duration>,
    counters: Arc<Counters>,
    _types: PhantomData<fn(K) -> V>,
}

impl<K, V> Shared<K, V> {
    /// `{path}:{fingerprint}`: a function's keys, without the namespace.
    fn function(&self) -> String {
        format!("{}:{}", self.path, self.fingerprint)
    }
}

impl<K, V: DeserializeOwned> Shared<K, V> {
    /// What a lookup of `key` found, decoded.
    fn decoded(&self, tier: Arc<redis::RedisTier>, key: &str, found: redis::Found) -> Lookup<V> {
        match found {
            redis::Found::Value { bytes, ttl_left } => match codec::decode_value::<V>(&bytes) {
                Ok(value) => {
                    self.counters.bump(Event::Hit);
                    let age = match (self.ttl, ttl_left) {
                        (Some(ttl), Some(left)) => ttl.saturating_sub(left),
                        _ => Duration::ZERO,
                    };
                    Lookup::Found { value, age }
                }
                Err(_) => {
                    self.counters.bump(Event::DecodeError);
                    tier.fault_seen("a value in Redis did not decode");
                    Lookup::Compute(
                        redis::Ticket::unlocked(tier, key).faulted(TierErrorKind::Decode),
                    )
                }
            },
            redis::Found::Compute(ticket) => {
                self.counters.bump(Event::Miss);
                Lookup::Compute(ticket)
            }
        }
    }
}

impl<K, V> Hook<K, V> for Shared<K, V>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn key(&self, key: &K) -> Option<String> {
        let tier = redis::current()?;
        match codec::encode_key(key) {
            Ok(encoded) => Some(format!(
                "{}:{}:{}",
                tier.namespace(),
                self.function(),
                encoded
            )),
            Err(_) => {
                self.counters.bump(Event::Error);
                None
            }
        }
    }

    fn attach(&self, memo: &'static Memo<K, V>) {
        redis::listen(self.function(), memo);
    }

    fn lookup(&self, key: &str) -> Lookup<V> {
        let Some(tier) = redis::current() else {
            self.counters.bump(Event::Skipped);
            return Lookup::Compute(redis::Ticket::none());
        };
        let found = tier.lookup(key, &self.counters);
        self.decoded(tier, key, found)
    }

    fn lookup_async(&self, key: String) -> BoxFuture<'_, Lookup<V>> {
        Box::pin(async move {
            let Some(tier) = redis::current() else {
                self.counters.bump(Event::Skipped);
                return Lookup::Compute(redis::Ticket::none());
            };
            let found =
                redis::lookup_async(Arc::clone(&tier), key.clone(), Arc::clone(&self.counters))
                    .await;
            self.decoded(tier, &key, found)
        })
    }

    fn publish_async(&self, ticket: redis::Ticket, value: &V) -> BoxFuture<'_, ()> {
        let bytes = codec::encode_value(value);
        Box::pin(async move {
            match bytes {
                Ok(bytes) => {
                    ticket
                        .publish_async(bytes, self.ttl, Arc::clone(&self.counters))
                        .await
                }
                Err(_) => {
                    self.counters.bump(Event::Error);
                    drop(ticket);
                }
            }
        })
    }

    fn publish(&self, ticket: redis::Ticket, value: &V) {
        match codec::encode_value(value) {
            Ok(bytes) => ticket.publish(bytes, self.ttl, &self.counters),
            Err(_) => {
                self.counters.bump(Event::Error);
                drop(ticket);
            }
        }
    }

    fn invalidate(&self, key: &K) -> bool {
        match (redis::current(), self.key(key)) {
            (Some(tier), Some(key)) => tier.invalidate(&key, &self.counters),
            _ => false,
        }
    }

    fn invalidate_view(&self, bytes: &[u8], matches: &dyn Fn(&K) -> bool) -> bool {
        match postcard::take_from_bytes::<K>(bytes) {
            Ok((key, [])) if matches(&key) => self.invalidate(&key),
            _ => {
                self.counters.bump(Event::Error);
                false
            }
        }
    }

    fn clear(&self) -> u64 {
        match redis::current() {
            Some(tier) => tier.clear(&self.function(), &self.counters),
            None => 0,
        }
    }

    fn stats(&self) -> TierStats {
        self.counters.snapshot()
    }

    fn bump(&self, event: Event) {
        self.counters.bump(event);
    }
}

/// A local cache that invalidation messages from other processes reach.
pub(crate) trait Listener: Send + Sync {
    /// Drops the local copy of the key whose encoding is `encoded`.
    fn invalidate_encoded(&self, encoded: &str);
    /// Drops every local copy.
    fn clear_local(&self);
}

impl<K, V> Listener for Memo<K, V>
where
    K: DeserializeOwned + Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn invalidate_encoded(&self, encoded: &str) {
        if let Some(key) = codec::decode_key::<K>(encoded) {
            self.invalidate(&key);
            if let Some(hook) = self.shared_hook() {
                hook.bump(Event::RemoteInvalidation);
            }
        }
    }

    fn clear_local(&self) {
        self.clear_here();
        if let Some(hook) = self.shared_hook() {
            hook.bump(Event::RemoteInvalidation);
        }
    }
}
