//! The runtime of [`syncmemo`](https://docs.rs/syncmemo): [`SyncMap`], a concurrent map with the
//! read/dirty design of Go's `sync.Map`, and the [`memo`] runtime behind `#[memoize]`.
//!
//! Most users depend on the `syncmemo` crate, which re-exports everything here.
//!
//! ```
//! use std::sync::Arc;
//! use syncmap_core::SyncMap;
//!
//! let map = Arc::new(SyncMap::new());
//! let workers: Vec<_> = (0..4u64)
//!     .map(|t| {
//!         let map = Arc::clone(&map);
//!         std::thread::spawn(move || {
//!             for i in 0..100 {
//!                 map.load_or_store(i, t); // the first thread to store a key wins
//!             }
//!         })
//!     })
//!     .collect();
//! for worker in workers {
//!     worker.join().unwrap();
//! }
//! assert_eq!(map.len(), 100);
//! ```
//!
//! # Promises, and the tests that check them
//!
//! - Every operation on one key is linearizable; a write happens before a read that observes it.
//!   Checked against a sequential `HashMap` by `tests/model.rs` (proptest) and the unit model
//!   test, also with two threads at once on disjoint keys each against its own reference
//!   (`two_threads_disjoint_keys`), under concurrency by `tests/stress.rs` (one
//!   `load_or_store` winner per key; CAS versions never go back, none lost) and by the loom
//!   models in `tests/loom_map.rs`.
//! - Loads, and stores to keys already in the read snapshot, are lock-free and a load writes no
//!   shared memory (see the module docs of the map's design; `tests/memoize_alloc.rs` in the
//!   `syncmemo` crate proves hits allocate nothing).
//! - [`SyncMap::range`] is weakly consistent, not a snapshot: each key at most once, values that
//!   some writer stored. `tests/go_ports.rs` (concurrent range while writers store multiples of
//!   the key; nested range with writes) and the soak in the `syncmemo` crate's `tests/soak.rs`.
//! - No lock is held while user code runs (closures, and `PartialEq` in compare-and-swap);
//!   callbacks may re-enter the map (`tests/go_ports.rs`, nested range). The lock does not
//!   poison: after a panic in user code the map stays consistent and usable
//!   (`tests/panics.rs`, and the soak's injected panics).
//! - Every value stored is dropped exactly once: replaced and deleted values once no reader can
//!   still see them, the rest when the map is dropped (`tests/drops.rs`; miri's leak check over
//!   the unit and model tests; the soak's allocation baseline). The memory of a dropped value
//!   is reused only once no reader can still see it (`recycled_memory_is_not_reused_while_protected`
//!   in `raw/epoch/mod.rs`).
//! - [`SyncMap::len`] is exact when no writer runs concurrently, whichever threads and paths
//!   (lock-free or locked) changed it: the model tests compare it with the reference after
//!   every operation, and `len_is_exact_after_concurrent_lock_free_and_locked_updates` (unit
//!   test in `map.rs`) after four threads mix both kinds of paths.
//! - A memoized function's body runs once per key among concurrent callers, and a result not
//!   kept lets a waiting caller compute (loom models in `tests/loom_memo.rs`; with panicking
//!   bodies, `tests/memo_runtime.rs` in the `syncmemo` crate and the soak). The same for
//!   `async fn`, where a computing future dropped midway hands over to a waiter and no wakeup is
//!   lost (loom models of the claim word and the waiters' protocol in
//!   `tests/loom_memo_async.rs`; with tokio and `futures`' executor, random aborts and timeouts,
//!   `tests/memoize_async.rs`).
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "inspector")]
#[cfg_attr(docsrs, doc(cfg(feature = "inspector")))]
pub mod inspector;
mod map;
pub mod memo;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod policy;
mod raw;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod tier;

pub use equivalent::Equivalent;
pub use map::SyncMap;
pub use memo::{Memo, MemoStats};
