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
/// assert!(cache.invalidate(&("kitten".to_string(), "sitting".to_string())));
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
/// Every cache also appears in [`memo::registry()`], for debugging tools.
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
/// `capacity = N`: at most `N` entries. When full, inserting evicts a batch (about `N / 8`)
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
/// Redis is down, slow or returns bytes that do not decode, calls compute locally. See
/// the `syncmemo::tier` module (documented when the feature is on).
///
/// ```ignore
/// #[syncmemo::memoize(shared, ttl = "10m")]
/// fn render(page: &str, lang: &str) -> String {
///     format!("<h1>{page}</h1> ({lang})")
/// }
/// syncmemo::tier::redis::install("redis://127.0.0.1:6379/0")?;
/// render("home", "en"); // computed once across the fleet
/// render_cache().invalidate_shared(&("home".to_string(), "en".to_string())); // everywhere
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
/// Generic functions get one cache per instantiation (type parameters must be `'static`):
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
/// Misuse is a compile error pointing at the offending token: no return type, `&mut` arguments
/// or receiver, `impl Trait`, pattern arguments, `const fn`, `async fn` (not supported yet),
/// unknown, duplicated or mistyped options, arguments that are not `Hash + Eq`.
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
