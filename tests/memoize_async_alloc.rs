//! The hit of a `#[memoize] async fn` allocates nothing and completes on its first poll (no
//! await point), and a miss nobody waits for allocates no wakeup state: counted by a global
//! allocator, polled by hand with a no-op waker.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use syncmemo::memoize;

#[path = "support/alloc_counter.rs"]
mod alloc_counter;

use alloc_counter::allocations_during;

/// Polls `future` once; panics if it is not ready.
fn first_poll<F: Future>(future: F) -> F::Output {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("a hit must complete on its first poll"),
    }
}

#[memoize]
async fn pair_len(a: &str, b: &str) -> usize {
    std::future::ready(()).await;
    a.len() + b.len()
}

#[memoize]
async fn double(x: u64) -> u64 {
    x * 2
}

#[memoize(ttl = "1h")]
async fn profile(user: &str) -> Result<String, String> {
    Ok(format!("profile of {user}"))
}

#[test]
fn async_hits_allocate_nothing_and_complete_on_the_first_poll() {
    // Misses allocate (owned keys, cells); warm up, including the promotion of the new keys to
    // the map's read snapshot, which allocates once.
    assert_eq!(
        futures::executor::block_on(pair_len("kitten", "sitting")),
        13
    );
    assert_eq!(futures::executor::block_on(double(21)), 42);
    assert!(futures::executor::block_on(profile("ana")).is_ok());
    for _ in 0..100 {
        first_poll(pair_len("kitten", "sitting"));
        first_poll(double(21));
        first_poll(profile("ana")).unwrap();
    }
    let mut profile_len = 0;
    let allocations = allocations_during(|| {
        for _ in 0..1000 {
            assert_eq!(first_poll(pair_len("kitten", "sitting")), 13);
            assert_eq!(first_poll(double(21)), 42);
            // Cloning the cached `String` allocates: measure the hit around it.
            profile_len += first_poll(profile("ana")).map(|p| p.len()).unwrap();
        }
    });
    // One allocation per hit of `profile`: the clone of its `String` value, nothing else.
    assert_eq!(allocations, 1000);
    assert_eq!(profile_len, 1000 * "profile of ana".len());
    let allocations = allocations_during(|| {
        for _ in 0..1000 {
            assert_eq!(first_poll(pair_len("kitten", "sitting")), 13);
            assert_eq!(first_poll(double(21)), 42);
        }
    });
    assert_eq!(allocations, 0);
    // And the counter does count: a miss allocates.
    assert!(
        allocations_during(|| {
            futures::executor::block_on(pair_len("new", "key"));
        }) > 0
    );
}

#[memoize]
async fn triple(x: u64) -> u64 {
    x * 3
}

#[test]
fn an_async_miss_nobody_waits_for_allocates_no_wakeup_state() {
    // Warm up the thread's first use of the map and counters.
    for k in 0..100 {
        assert_eq!(first_poll(triple(k)), k * 3);
    }
    let misses = 10_000;
    let allocations = allocations_during(|| {
        for k in 100..100 + misses {
            assert_eq!(first_poll(triple(k)), k * 3);
        }
    });
    // Four per miss: the boxed miss future (generated code), the map's entry, the map's box for
    // the cell's `Arc` and the cell, plus the map's amortized growth. The event that wakes
    // waiters allocates its state only when a caller waits: a computation nobody waited for
    // used to allocate it when it ended, and keep it (5.01 allocations per miss before).
    assert!(
        allocations * 2 <= misses * 9,
        "{allocations} allocations for {misses} async misses"
    );
}
