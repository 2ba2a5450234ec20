//! A cache hit allocates nothing, `&str` arguments included, and a miss allocates little:
//! counted by a global allocator.

use syncmemo::memoize;

#[path = "support/alloc_counter.rs"]
mod alloc_counter;

use alloc_counter::allocations_during;

#[memoize]
fn pair_len(a: &str, b: &str) -> usize {
    a.len() + b.len()
}

#[memoize]
fn double(x: u64) -> u64 {
    x * 2
}

#[memoize]
fn sum(xs: &[u32]) -> u32 {
    xs.iter().sum()
}

#[test]
fn hits_allocate_nothing() {
    // Misses allocate (owned keys, cells); warm up, including the thread's first use of the
    // map's reclamation and counters, and the promotion of the new keys to the map's read
    // snapshot (after 64 locked hits in a small map), which allocates once.
    assert_eq!(pair_len("kitten", "sitting"), 13);
    assert_eq!(double(21), 42);
    assert_eq!(sum(&[1, 2, 3]), 6);
    for _ in 0..100 {
        pair_len("kitten", "sitting");
        double(21);
        sum(&[1, 2, 3]);
    }
    let allocations = allocations_during(|| {
        for _ in 0..1000 {
            assert_eq!(pair_len("kitten", "sitting"), 13);
            assert_eq!(double(21), 42);
            assert_eq!(sum(&[1, 2, 3]), 6);
        }
    });
    assert_eq!(allocations, 0);
    // And the counter does count: a miss allocates.
    assert!(
        allocations_during(|| {
            pair_len("new", "key");
        }) > 0
    );
}

#[memoize(capacity = 1_000)]
fn bounded_double(x: u64) -> u64 {
    x * 2
}

#[test]
fn an_evicting_miss_allocates_no_list_of_evictions() {
    // Fill the cache past its capacity, so that every later miss evicts or is rejected.
    for k in 0..5_000 {
        bounded_double(k);
    }
    let misses = 20_000;
    let allocations = allocations_during(|| {
        for k in 5_000..5_000 + misses {
            assert_eq!(bounded_double(k), k * 2);
        }
    });
    // Two per miss: the map's entry and the key's single-flight cell (the map's box for the
    // cell's `Arc` comes from its recycled allocations), plus the map's amortized growth. The
    // list of entries the policy evicts is reused: it made a third (3.06 per miss before).
    assert!(
        allocations * 2 <= misses * 5,
        "{allocations} allocations for {misses} evicting misses"
    );
    assert!(bounded_double_cache().len() <= 1_000);
}
