//! A cache hit through the runtime's `__call` allocates nothing: the key is looked up by a
//! borrowed view, the counters live on per-thread stripes, and with a TTL the clock is read
//! without allocating. Counted by a global allocator, per thread (the test harness's own threads
//! allocate meanwhile).

use std::sync::Arc;
use std::time::Duration;

use syncmemo::__private::{KeyRef, MemoDebug, MemoOptions, StaticMemo};

#[path = "support/alloc_counter.rs"]
mod alloc_counter;

static PAIRS: StaticMemo<(String, Vec<u8>), usize> =
    StaticMemo::new("memo_runtime_alloc::pairs", MemoOptions::DEFAULT);
static NAMES: StaticMemo<String, Arc<str>> = StaticMemo::new(
    "memo_runtime_alloc::names",
    MemoOptions {
        capacity: Some(100),
        ttl: Some(Duration::from_secs(3600)),
        ..MemoOptions::DEFAULT
    },
);

fn pairs(a: &str, b: &[u8]) -> usize {
    PAIRS.get(MemoDebug::default).__call(
        &KeyRef((a, b)),
        || (a.to_string(), b.to_vec()),
        || a.len() + b.len(),
        |_| true,
    )
}

fn names(a: &str) -> Arc<str> {
    NAMES
        .get(MemoDebug::default)
        .__call(a, || a.to_string(), || a.to_uppercase().into(), |_| true)
}

/// Allocations made by `f`.
fn allocations(f: impl FnOnce()) -> u64 {
    alloc_counter::allocations_during(f)
}

#[test]
fn hits_allocate_nothing() {
    // Warm up: the caches, the thread's stripe and the keys exist.
    assert_eq!(pairs("abc", b"de"), 5);
    assert_eq!(&*names("abc"), "ABC");
    // The counter itself works: a miss allocates (the owned key, the slot).
    assert!(allocations(|| assert_eq!(pairs("new", b"key"), 6)) > 0);
    // A key just inserted sits in the map's dirty part: its first hits count map misses until
    // the map promotes its dirty part to a new read snapshot (after 64 misses in a small map),
    // which allocates once (Go's sync.Map design). Steady-state hits come after that.
    let first_hits = allocations(|| {
        for _ in 0..100 {
            pairs("abc", b"de");
            pairs("new", b"key");
            names("abc");
        }
    });
    let again = allocations(|| {
        for _ in 0..3 {
            pairs("abc", b"de");
            names("abc");
        }
    });
    assert_eq!(
        again, 0,
        "hits after warm-up ({first_hits} allocations) still allocate"
    );

    let tuple_hits = allocations(|| {
        for _ in 0..1000 {
            assert_eq!(pairs("abc", b"de"), 5);
        }
    });
    let str_hits = allocations(|| {
        for _ in 0..1000 {
            assert_eq!(&*names("abc"), "ABC");
        }
    });
    assert_eq!(
        (tuple_hits, str_hits),
        (0, 0),
        "1000 cache hits allocated (tuple key, str key with TTL)"
    );
    assert_eq!(PAIRS.get(MemoDebug::default).stats().hits, 1203);
}
