//! # syncmemo
//!
//! Go's `sync.Map` done right in Rust ([`SyncMap`]), plus [`#[memoize]`](macro@memoize), which
//! turns an expensive pure function into a cached one backed by a per-function static sync map.
//!
//! ```
//! use syncmemo::{memoize, SyncMap};
//!
//! let map: SyncMap<&str, u32> = SyncMap::new();
//! map.store("a", 1);
//! assert_eq!(map.load("a"), Some(1));
//!
//! #[memoize]
//! fn slow_square(x: u64) -> u64 {
//!     std::thread::sleep(std::time::Duration::from_millis(10));
//!     x * x
//! }
//! assert_eq!(slow_square(12), 144); // computes
//! assert_eq!(slow_square(12), 144); // cache hit
//! assert_eq!(slow_square_cache().stats().hits, 1);
//! ```
//!
//! The crate re-exports `syncmap-core` (the map and the memoization runtime) and
//! `syncmap-macros` (the attribute); depend on this one.
//!
//! # Cargo features
//!
//! None is on by default: the default build depends on no serialization, metrics, tracing or
//! HTTP crate.
//!
//! - `serde`: `Serialize`/`Deserialize` for [`MemoStats`], [`memo::MemoConfig`] and the
//!   snapshots `memo::MemoSnapshot` (one page of a cache's entries) and
//!   `memo::RegistrySnapshot` (every cache); warm starts with `Memo::export` and
//!   `Memo::import` (a compact, versioned, checked file).
//! - `metrics`: `metrics::report()` exports every cache's counters through the `metrics`
//!   facade with a `cache` label; nothing is added to the hit path.
//! - `tracing`: one `memo.compute` span per computation (function, duration, outcome); none
//!   on hits.
//! - `inspector` (implies `serde`): `inspector::Inspector`, a live debug page of every cache
//!   (an axum `Router`, or `serve(addr)` on its own thread), with JSON at the same paths.
//!   The only feature that brings an HTTP stack (axum, hyper).
//! - `redis` (and `redis-tls`): `#[memoize(shared)]`, a Redis tier behind the local cache (see
//!   `syncmemo::tier`, documented when the feature is on). Its async client runs on a private
//!   tokio runtime on one thread of its own, so `async fn`s may use any executor.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use syncmap_core::*;

/// Caches a function's results in a per-function static [`Memo`], backed by a [`SyncMap`].
///
/// ```
/// use syncmemo::memoize;
///
/// #[memoize]
/// fn edit_distance(a: &str, b: &str) -> usize {
///     // an expensive, pure computation
///     # a.len().abs_diff(b.len())
/// }
///
/// edit_distance("kitten", "sitting"); // computes
/// edit_distance("kitten", "sitting"); // cache hit: no allocation, no lock
/// let cache: &'static syncmemo::Memo<(String, String), usize> = edit_distance_cache();
/// cache.range(|(a, b), d| {
///     println!("{a} {b} -> {d}");
///     true
/// });
/// // A tuple key is looked up by its borrowed parts through `KeyRef`.
/// assert!(cache.invalidate(&syncmemo::memo::KeyRef(("kitten", "sitting"))));
/// ```
///
/// # What it generates
///
/// For `fn f(args) -> V` the attribute keeps `f` (name, visibility, signature, attributes and
/// docs) and adds, with the same visibility:
///
/// - `f_cache() -> &'static Memo<K, V>`: the cache, for introspection (`range`, `get`, `len`,
///   `stats`), invalidation (`invalidate`, `invalidate_if`, `clear`, `purge_expired`);
///   inside an `impl` it is an associated function, `Self::f_cache()`;
/// - `f_uncached(args) -> V`: the original body, without the cache.
///
/// Every cache also appears in [`memo::registry()`], for debugging tools, named after the
/// function's path: `module::f`, `module::Type::method` for a method taking `self` or using
/// `Self`, and `module::f::<u8>` for each instantiation of a generic function.
/// [`memo::clear_all()`] empties them all.
///
/// # The key
///
/// `K` is the tuple of the arguments' owned types; a single argument is its bare type; no
/// argument is `()`. Borrowed arguments become owned: `&str` → `String`, `&[T]` → `Vec<T>`,
/// `&T` → `<T as ToOwned>::Owned`. Lookups borrow the arguments, so **a hit allocates nothing**.
/// Key parts must be `Hash + Eq + Clone + Send + Sync + 'static`, and `V: Clone + Send + Sync +
/// 'static` (a hit returns a clone: wrap large values in `Arc`).
///
/// # Behaviour
///
/// - **Single flight**: concurrent callers of a missing key compute it once; the others wait
///   and receive the result. No lock is held while the body runs.
/// - **Panics**: a panic in the body caches nothing and propagates; a waiting caller computes in
///   turn instead of hanging.
/// - **Recursion** through other keys works (a memoized `fib(90)` is instant). A recursive call
///   with the *same* key on the computing thread panics with a message naming the function,
///   instead of deadlocking. A cycle across two threads deadlocks, as it would with any lock.
/// - **`Result`**: an `Err` is not cached (a transient failure must not stick); `cache_err`
///   caches errors too. **`Option`**: `None` is cached; `skip_none` skips it.
/// - **Unbounded by default**: every distinct key stays until invalidated. On untrusted input
///   that is a memory-exhaustion hazard: set a `capacity`.
///
/// # Options
///
/// `capacity = N`: at most `N` entries. `N` is a literal or any constant `usize` expression
/// (`capacity = CACHE_SIZE`, `capacity = 10 * 1024`), checked at compile time. When full, inserting evicts a batch (about `N / 8`)
/// in the map's iteration order, effectively random, never an entry being computed; hits do no
/// bookkeeping, so they stay free of shared writes.
///
/// ```
/// #[syncmemo::memoize(capacity = 100)]
/// fn parse(line: &str) -> usize {
///     line.split(',').count()
/// }
/// for i in 0..1000 {
///     parse(&format!("{i},{i}"));
/// }
/// assert!(parse_cache().len() <= 100);
/// ```
///
/// `max_weight = N, weigher = f`: bounds the total *weight* of the entries instead of their
/// number, for values of very different sizes (`capacity` and `max_weight` do not combine).
/// `f(&K, &V) -> u64` weighs an entry, typically its size in bytes: `K` is the cache's key
/// (the owned argument, `String` for a `&str`; the tuple of the arguments, `(String, u32)`,
/// for several), `V` the return type; `f` is called as `f(&key, &value)`, so deref coercions
/// apply (`&str` for a `String`, `&[T]` for a `Vec<T>`). `N` is a constant `u64` expression
/// as for `capacity`. A value heavier than `N` alone is returned but not cached (counted in
/// `rejections`); a weight of 0 counts as 1. The weigher runs once per value stored, outside
/// any lock; if it panics, the value is not kept and the panic propagates to the caller that
/// computed it. [`Memo::weight`] is the current total.
///
/// ```
/// fn bytes(_id: &u64, page: &str) -> u64 {
///     page.len() as u64
/// }
///
/// #[syncmemo::memoize(max_weight = 64 * 1024, weigher = bytes)]
/// fn render(id: u64) -> String {
///     "x".repeat(id as usize)
/// }
/// for id in 0..1000 {
///     render(id);
/// }
/// assert!(render_cache().weight().unwrap() <= 64 * 1024);
/// render(100_000); // heavier than the bound: returned, not cached
/// assert_eq!(render_cache().get(&100_000), None);
/// ```
///
/// `ttl = "30s"` (units `ms`, `s`, `m`, `h`): entries older than the TTL are recomputed on
/// access; [`Memo::purge_expired`] removes them. The clock is read only when a TTL is set.
///
/// ```
/// #[syncmemo::memoize(ttl = "20ms")]
/// fn now_ish(x: u8) -> std::time::Instant {
///     let _ = x;
///     std::time::Instant::now()
/// }
/// let first = now_ish(1);
/// assert_eq!(now_ish(1), first);
/// std::thread::sleep(std::time::Duration::from_millis(30));
/// assert_ne!(now_ish(1), first);
/// ```
///
/// `key: T = expr`: the key is `expr`, of type `T` (`Clone`), computed from the arguments on
/// every call; the other arguments are left out.
///
/// ```
/// #[derive(Clone)]
/// struct Request {
///     user: u64,
///     trace_id: String,
/// }
///
/// #[syncmemo::memoize(key: u64 = request.user)]
/// fn permissions(request: Request) -> Vec<String> {
///     let _ = request.trace_id;
///     vec![format!("user{}", request.user)]
/// }
/// permissions(Request { user: 7, trace_id: "a".into() });
/// permissions(Request { user: 7, trace_id: "b".into() }); // a hit: same key
/// assert_eq!(permissions_cache().stats().hits, 1);
/// ```
///
/// `ignore(arg, ...)`: leaves arguments out of the key (`ignore(self)` shares results between
/// all receivers of a method).
///
/// ```
/// #[syncmemo::memoize(ignore(log))]
/// fn cube(x: u64, log: bool) -> u64 {
///     if log {
///         println!("cube({x})");
///     }
///     x * x * x
/// }
/// assert_eq!(cube(3, true), cube(3, false));
/// assert_eq!(cube_cache().stats().computations, 1);
/// ```
///
/// `cache_err` (functions returning `Result`) and `skip_none` (functions returning `Option`):
///
/// ```
/// #[syncmemo::memoize(cache_err)]
/// fn lookup(name: &str) -> Result<u32, String> {
///     Err(format!("{name} not found"))
/// }
/// #[syncmemo::memoize(skip_none)]
/// fn find(x: u32) -> Option<u32> {
///     (x % 2 == 0).then_some(x / 2)
/// }
/// assert!(lookup("a").is_err());
/// assert_eq!(lookup_cache().len(), 1); // the error is cached
/// assert_eq!(find(3), None);
/// assert_eq!(find_cache().len(), 0); // None is not
/// ```
///
/// `shared` (feature `redis`): results are kept in Redis too, behind the local cache, and
/// concurrent misses across processes compute each key once (a lock in Redis). Keys and results
/// must be serde's `Serialize + Deserialize`; the tier is installed once per process with
/// `syncmemo::tier::redis::install(url)` or the `SYNCMEMO_REDIS_URL` environment variable. If
/// Redis is down, slow or returns bytes that do not decode, calls compute locally. `async fn`
/// works too (the tier's async client never blocks the executor). `f_cache()` returns a
/// `syncmemo::tier::SharedMemo`, whose `invalidate` and `clear` act on Redis and on the other
/// processes too. See the `syncmemo::tier` module (documented when the feature is on).
///
/// ```ignore
/// #[syncmemo::memoize(shared, ttl = "10m")]
/// fn render(page: &str, lang: &str) -> String {
///     format!("<h1>{page}</h1> ({lang})")
/// }
/// syncmemo::tier::redis::install("redis://127.0.0.1:6379/0")?;
/// render("home", "en"); // computed once across the fleet
/// render_cache().invalidate(&syncmemo::memo::KeyRef(("home", "en"))); // everywhere
/// ```
///
/// `tier_errors = "return"` (with `shared`, on a function returning `Result<T, E>` where
/// `E: From<syncmemo::tier::TierError>`): when Redis cannot answer (down, past its timeout,
/// an error reply, bytes that do not decode), the call returns `Err(E::from(TierError))`,
/// not cached, instead of computing without the tier. `tier_errors = "compute"` is the default.
///
/// ```ignore
/// #[syncmemo::memoize(shared, tier_errors = "return")]
/// fn quote(id: u64) -> Result<Quote, AppError> { .. } // AppError: From<TierError>
/// ```
///
/// Methods: `&self` (or `self`) is part of the key, so different receivers never share results
/// (`Self: Hash + Eq + Clone`). Associated functions without `self` work as they are (their
/// generated functions find the cache by source location); `in_impl` is accepted but not needed.
///
/// ```
/// #[derive(Clone, Hash, PartialEq, Eq)]
/// struct Matrix(Vec<u32>);
///
/// impl Matrix {
///     #[syncmemo::memoize]
///     fn trace(&self) -> u32 {
///         self.0.iter().sum()
///     }
///
///     #[syncmemo::memoize]
///     fn identity_trace(n: u32) -> u32 {
///         n
///     }
/// }
/// assert_eq!(Matrix(vec![1, 2]).trace(), 3);
/// assert_eq!(Matrix(vec![5]).trace(), 5);
/// assert_eq!(Matrix::trace_cache().len(), 2);
/// assert_eq!(Matrix::identity_trace(4), 4);
/// ```
///
/// A provided method of a trait is memoized per implementing type when the trait has the key's
/// traits as supertraits (`trait Shape: Clone + Hash + Eq + Send + Sync + 'static`); without
/// them, the attribute says which are missing.
///
/// Generic functions get one cache per instantiation, even when a type parameter appears in
/// neither the arguments nor the result (type parameters must be `'static`):
///
/// ```
/// #[syncmemo::memoize]
/// fn show<T: std::fmt::Display + Clone + std::hash::Hash + Eq + Send + Sync + 'static>(x: T) -> String {
///     x.to_string()
/// }
/// show(1u8);
/// show("a".to_string());
/// assert_eq!(show_cache::<u8>().len(), 1);
/// ```
///
/// # `async fn`
///
/// `#[memoize]` applies to `async fn` with every option above, the same key rules and the
/// same `f_cache()` (a [`Memo`] like any other, listed in the registry); `f_uncached` is the
/// `async fn` without the cache. The library depends on no executor: it runs on tokio, smol,
/// `futures`' executor or any other, and callers on different executors and threads share one
/// cache.
///
/// ```
/// # #[derive(Clone)] struct Profile { name: String }
/// #[syncmemo::memoize(ttl = "60s", capacity = 10_000)]
/// async fn fetch_profile(user: &str) -> Result<Profile, String> {
///     // an HTTP call, a database query...
///     Ok(Profile { name: user.to_string() })
/// }
///
/// # futures::executor::block_on(async {
/// let p = fetch_profile("ana").await?; // computes
/// let p = fetch_profile("ana").await?; // hit: completes on its first poll
/// assert_eq!(p.name, "ana");
/// fetch_profile_cache().invalidate(&"ana".to_string());
/// # Ok::<(), String>(()) }).unwrap();
/// ```
///
/// - **Hit**: no allocation, no lock, no await point: the future completes on its first poll.
///   The future a call returns holds the arguments and a pointer (the miss path, with the
///   body's state, is boxed when a miss needs it), so it stays small whatever the body holds
///   across its `.await`s.
/// - **Single flight**: concurrent callers of a missing key, on any tasks and threads, run the
///   body once; the others are woken when it ends (they do not poll, sleep or block their
///   executor thread, and no lock is held across an `.await`).
/// - **`Send`**: the returned future is `Send` when the arguments and the body's future are,
///   so `tokio::spawn(fetch_profile("ana"))` works on a multi-threaded runtime.
/// - **Cancellation**: if the computing future is dropped (a timeout, a `select!` that lost,
///   an aborted task), nothing is cached and nothing stays claimed: a waiting caller computes
///   in turn, or else the next call does. The dropped body's work is lost, so a body whose
///   side effects must not happen twice should not be cancelled half-way.
/// - **Panics** in the body propagate to the computing caller (from its `.await`); a waiting
///   caller computes in turn.
/// - **`Err`** (without `cache_err`): the computing caller gets its `Err`; the callers that
///   were waiting for that computation do not receive it: they compute in turn, one at a time
///   (one computes, the others wait for it), so each gets either its own result or the first
///   `Ok` computed after. With `cache_err`, they all get the `Err`. `None` with `skip_none`
///   behaves the same way.
/// - **Recursion**: through other keys it works, without `Box::pin` (`fib(n - 1).await`: the
///   miss path is boxed already); a call to the key being computed, polled from inside that
///   computation (the same task, directly or through `join`, ...), panics with a message naming
///   the function instead of hanging.
///   A cycle through two tasks (`f(a)` awaiting `f(b)` computed by another task, which awaits
///   `f(a)`) is not detected and never completes, as with any lock.
/// - **Invalidation** while a computation runs: its callers still get the value, which is not
///   cached.
///
/// Misuse is a compile error pointing at the offending token: no return type, a borrowed return
/// type (return an owned type or an `Arc`), `&mut` arguments or receiver, `&dyn Trait`
/// arguments, `Rc` / `RefCell` / `std::cell::Cell` in a key part or the result (the cache is
/// shared between threads: use `Arc`), `impl Trait`, a future returned by hand (`-> impl Future`, `Pin<Box<dyn Future>>`: write
/// `async fn` instead), a `static` or `const` holding a closure, an async closure or an async
/// block (write a function), pattern arguments, `const fn`, unknown, duplicated or mistyped options. An argument (or `self`) that is not a
/// [`memo::KeyPart`] (`Hash + Eq + Clone + Send + Sync`: not an `f32`, not a `HashMap`) is one
/// error at that argument, suggesting `ignore(arg)` or `key: T = expr`; a return type that is
/// not a [`memo::MemoValue`] (`Clone + Send + Sync`) is one error at the return type.
///
/// ```compile_fail
/// #[syncmemo::memoize]
/// fn scale(x: f32) -> f32 {
///     // error: `f32` cannot be part of a #[memoize] cache key ...
///     x * 2.0
/// }
/// ```
///
/// An unused memoized function gets the usual dead-code warning, and a same-key recursion
/// panics at the recursive call (the generated function is `#[track_caller]`).
pub use syncmap_macros::memoize;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Implementation details used by code that `#[memoize]` generates. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use syncmap_core::memo::__private::*;
}
