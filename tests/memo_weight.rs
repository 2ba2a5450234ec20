//! Size-aware bounds: `#[memoize(max_weight = N, weigher = f)]` and `Memo::builder(..)
//! .max_weight(n).weigher(f)`. The total weight under concurrent churn, values heavier than the
//! bound, and a weigher that panics.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;

use syncmemo::{memoize, Memo};

// A fn pointer for the builder, which takes `fn(&K, &V) -> u64` exactly.
#[allow(clippy::ptr_arg)]
fn bytes(_key: &u64, value: &Vec<u8>) -> u64 {
    value.len() as u64
}

/// The total weight of the entries `range` shows.
fn shown_weight(memo: &Memo<u64, Vec<u8>>) -> u64 {
    let mut total = 0;
    memo.range(|key, value| {
        total += bytes(key, value);
        true
    });
    total
}

/// The size of the value of `key`: 1 to `MAX_VALUE` bytes, a fixed pseudo-random function
/// of the key so that every computation of a key weighs the same.
fn size_of(key: u64) -> usize {
    const MAX_VALUE: u64 = 2_000;
    let mixed = key.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    (mixed % MAX_VALUE + 1) as usize
}

/// With `threads` callers churning through 5,000 keys of 1 to 2,000 bytes (about 5 MB in
/// all) under a 100,000-byte bound: the weight of the entries shown stays within the bound
/// plus what each caller inserting at the instant may hold (its new entry and those it is
/// evicting, whose sizes are at most 2,000 bytes each: 3 × 2,000 per caller, generously);
/// once every caller returned, it is within the bound, and equals what the policy accounts.
fn churn(threads: u64) {
    const MAX_WEIGHT: u64 = 100_000;
    const SLACK_PER_CALLER: u64 = 3 * 2_000;
    let memo: Memo<u64, Vec<u8>> = Memo::builder("weight::churn")
        .max_weight(MAX_WEIGHT)
        .weigher(bytes)
        .build();
    let barrier = Barrier::new(threads as usize);
    let worst = AtomicU64::new(0);
    thread::scope(|s| {
        for t in 0..threads {
            let (memo, barrier, worst) = (&memo, &barrier, &worst);
            s.spawn(move || {
                barrier.wait();
                let mut x = t + 1;
                for i in 0..10_000u64 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let key = (x >> 33) % 5_000;
                    let value = memo.get_or_compute(&key, || vec![key as u8; size_of(key)]);
                    assert_eq!(value.len(), size_of(key));
                    if i % 256 == 0 {
                        worst.fetch_max(shown_weight(memo), Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let worst = worst.into_inner();
    eprintln!("{threads} threads: at most {worst} bytes shown during the churn");
    let bound = MAX_WEIGHT + threads * SLACK_PER_CALLER;
    assert!(
        worst <= bound,
        "{threads} threads: {worst} bytes shown during the churn, over {bound}"
    );
    let shown = shown_weight(&memo);
    let accounted = memo.weight().expect("a bounded cache");
    assert!(shown <= MAX_WEIGHT, "{threads} threads: {shown} bytes kept");
    assert_eq!(shown, accounted, "{threads} threads: the policy's weight");
    let stats = memo.stats();
    // The bound was reached many times over (5 MB of values through a 100 kB cache), and the
    // cache is not trivially empty.
    assert!(stats.evictions + stats.rejections > 1_000, "{stats:?}");
    assert!(
        shown > MAX_WEIGHT / 4,
        "{threads} threads: only {shown} bytes kept"
    );
    assert!(stats.entries < 1_000, "{stats:?}");
}

#[test]
fn churn_one_thread() {
    churn(1);
}

#[test]
fn churn_two_threads() {
    churn(2);
}

#[test]
fn churn_four_threads() {
    churn(4);
}

/// Deref coercions apply: `&[u8]` for a `Vec<u8>` value.
fn byte_len(_key: &u64, value: &[u8]) -> u64 {
    value.len() as u64
}

#[memoize(max_weight = 1_000, weigher = byte_len)]
fn blob(len: u64) -> Vec<u8> {
    vec![7; len as usize]
}

#[test]
fn over_weight_value_is_returned_but_not_cached() {
    let cache = blob_cache();
    assert_eq!(cache.config().max_weight, Some(1_000));
    assert_eq!(cache.config().capacity, None);
    assert_eq!(blob(400).len(), 400);
    assert_eq!(blob(300).len(), 300);
    assert_eq!(cache.weight(), Some(700));
    // Heavier than the whole bound: returned, not kept, counted as a rejection.
    assert_eq!(blob(5_000), vec![7; 5_000]);
    assert_eq!(cache.get(&5_000), None);
    assert_eq!(cache.stats().rejections, 1);
    assert_eq!(cache.weight(), Some(700));
    // The entries that fit are still there, and the heavy one is computed again.
    assert_eq!(cache.get(&400).map(|v| v.len()), Some(400));
    assert_eq!(cache.get(&300).map(|v| v.len()), Some(300));
    blob(5_000);
    assert_eq!(cache.stats().computations, 4);
    cache.clear();
    assert_eq!(cache.weight(), Some(0));
}

/// Weighs by key and value: the key of a `&str` argument is a `String`, of several arguments
/// their tuple (`&str` for a `String` value: deref coercion).
fn text_weight(key: &(String, u32), value: &str) -> u64 {
    (key.0.len() + value.len()) as u64
}

#[memoize(max_weight = 64 * 1024, weigher = text_weight)]
fn repeat(text: &str, times: u32) -> String {
    text.repeat(times as usize)
}

#[test]
fn weigher_sees_the_key_tuple() {
    assert_eq!(repeat("ab", 3), "ababab");
    assert_eq!(repeat_cache().weight(), Some(2 + 6));
    assert_eq!(repeat_cache().config().max_weight, Some(64 * 1024));
}

fn fragile(_key: &u64, value: &u64) -> u64 {
    assert!(*value != 13, "the weigher refuses 13");
    *value
}

#[memoize(max_weight = 100, weigher = fragile)]
fn identity(x: u64) -> u64 {
    x
}

#[test]
fn panicking_weigher_leaves_the_cache_consistent() {
    let cache = identity_cache();
    assert_eq!(identity(5), 5);
    let panic = catch_unwind(AssertUnwindSafe(|| identity(13))).unwrap_err();
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(message.contains("refuses 13"), "{message}");
    // The value was stored before the weigher ran: it is removed, not left outside the bound.
    assert_eq!(cache.get(&13), None);
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.weight(), Some(5));
    assert_eq!(cache.stats().rejections, 1);
    // The cache still works, for that key (computed again, panics again) and others.
    assert!(catch_unwind(AssertUnwindSafe(|| identity(13))).is_err());
    assert_eq!(identity(20), 20);
    assert_eq!(identity(5), 5);
    assert_eq!(cache.weight(), Some(25));
    let stats = cache.stats();
    assert_eq!(
        (stats.computations, stats.hits, stats.rejections),
        (4, 1, 2)
    );
}

#[test]
#[should_panic(expected = "go together")]
fn builder_weigher_needs_max_weight() {
    let _: Memo<u64, Vec<u8>> = Memo::builder("weight::no_max").weigher(bytes).build();
}

#[test]
#[should_panic(expected = "not both")]
fn builder_one_bound() {
    let _: Memo<u64, Vec<u8>> = Memo::builder("weight::both")
        .capacity(10)
        .max_weight(10)
        .weigher(bytes)
        .build();
}

#[memoize(max_weight = 1_000, weigher = byte_len)]
async fn fetch(len: u64) -> Vec<u8> {
    vec![1; len as usize]
}

#[test]
fn async_functions_are_weighed_too() {
    futures::executor::block_on(async {
        assert_eq!(fetch(600).await.len(), 600);
        assert_eq!(fetch(300).await.len(), 300);
        assert_eq!(fetch_cache().weight(), Some(900));
        assert_eq!(fetch(2_000).await.len(), 2_000);
        assert_eq!(fetch_cache().get(&2_000), None);
        assert_eq!(fetch_cache().stats().rejections, 1);
        // 600 + 300 + 500 > 1,000: something goes, and the total stays within the bound.
        fetch(500).await;
        let weight = fetch_cache().weight().unwrap();
        assert!(weight <= 1_000, "{weight}");
        let mut shown = 0;
        fetch_cache().range(|_, v| {
            shown += v.len() as u64;
            true
        });
        assert_eq!(shown, weight);
    });
}

struct Store;

impl Store {
    fn size(key: &(u32, String), value: &str) -> u64 {
        (key.1.len() + value.len()) as u64
    }

    /// In an `impl`, the weigher may be an associated function; `&self` is not part of the
    /// key here (a unit struct), so the key is `(u32, String)`.
    #[memoize(max_weight = 100, weigher = Self::size, ignore(self))]
    fn describe(&self, id: u32, name: &str) -> String {
        format!("{id}:{name}")
    }
}

#[test]
fn methods_take_associated_weighers() {
    let store = Store;
    assert_eq!(store.describe(7, "ab"), "7:ab");
    assert_eq!(Store::describe_cache().weight(), Some(2 + 4));
}

fn refuses_thirteen(_key: &u64, value: &u64) -> u64 {
    assert!(*value != 13, "the weigher refuses 13");
    1
}

/// A caller waiting on a computation whose weigher then panics does not hang: it gets the
/// value (it was stored before the weigher ran), or, if it arrives after the entry was removed,
/// computes in turn (and its own weigher call panics); either way nothing stays cached.
#[test]
fn panicking_weigher_with_a_waiter() {
    let memo: &'static Memo<u64, u64> = Memo::builder("weight::waiter")
        .max_weight(10)
        .weigher(refuses_thirteen)
        .build_static();
    let outcomes: Vec<_> = thread::scope(|s| {
        let computing = s.spawn(|| {
            catch_unwind(|| {
                memo.get_or_compute(&13, || {
                    thread::sleep(std::time::Duration::from_millis(100));
                    13
                })
            })
        });
        thread::sleep(std::time::Duration::from_millis(20));
        let waiting = s.spawn(|| catch_unwind(|| memo.get_or_compute(&13, || 13)));
        [computing.join().unwrap(), waiting.join().unwrap()]
            .into_iter()
            .collect()
    });
    assert!(outcomes[0].is_err(), "the computing caller gets the panic");
    // Ok: it waited and got the value; Err: it computed in turn, and its weigher panicked.
    if let Ok(value) = &outcomes[1] {
        assert_eq!(*value, 13);
    }
    eprintln!(
        "the waiter's outcome: {:?}",
        outcomes[1].as_ref().map_err(|_| "panic")
    );
    assert_eq!(memo.get(&13), None);
    assert_eq!(memo.len(), 0);
    assert_eq!(memo.weight(), Some(0));
    assert_eq!(memo.get_or_compute(&1, || 1), 1);
    assert_eq!(memo.weight(), Some(1));
}
