//! The intent of Go's `sync/map_test.go`, written for `SyncMap`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use syncmap_core::SyncMap;

const SCALE: u64 = if cfg!(miri) { 8 } else { 1000 };

/// Go's TestConcurrentRange: writers keep storing multiples of each key as its value; every
/// value a concurrent `range` sees is a multiple of its key, and each key is seen once.
#[test]
fn concurrent_range_sees_multiples_of_the_key() {
    let map = Arc::new(SyncMap::<u64, u64>::new());
    for k in 1..=SCALE.min(64) {
        map.store(k, k);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (1..=2u64)
        .map(|seed| {
            let (map, stop) = (Arc::clone(&map), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut n = seed;
                while !stop.load(Ordering::Relaxed) {
                    n = n.wrapping_mul(6364136223846793005).wrapping_add(1);
                    for k in 1..=SCALE.min(64) {
                        map.store(k, k * (n % 1000 + 1));
                    }
                }
            })
        })
        .collect();
    for _ in 0..SCALE.min(200) {
        let mut seen = std::collections::HashSet::new();
        map.range(|k, v| {
            assert_eq!(v % k, 0, "value {v} of key {k} is not a multiple");
            assert!(seen.insert(*k), "key {k} visited twice");
            true
        });
        assert_eq!(seen.len() as u64, SCALE.min(64));
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
}

/// Go's TestMapRangeNoAllocations intent and issue 40999: store/delete churn on ever-new keys
/// does not make the map keep them.
#[test]
fn keys_do_not_leak_under_store_delete_churn() {
    let map = SyncMap::<u64, Vec<u8>>::new();
    for k in 0..SCALE * 20 {
        map.store(k, vec![0; 16]);
        map.delete(&k);
        if k % 7 == 0 {
            map.load(&(k + 1)); // misses drive promotions
        }
    }
    assert_eq!(map.len(), 0);
    let mut visited = 0;
    map.range(|_, _| {
        visited += 1;
        true
    });
    assert_eq!(visited, 0);
}

/// Go issue 46399: a range callback that stores and deletes keys of the same map neither
/// deadlocks nor corrupts it; nested ranges work too.
#[test]
fn nested_range_with_writes() {
    let map = SyncMap::<u64, u64>::new();
    for k in 0..16 {
        map.store(k, k);
    }
    let mut outer = 0;
    map.range(|k, _| {
        outer += 1;
        map.store(k + 100, *k);
        map.delete(k);
        let mut inner = 0;
        map.range(|_, _| {
            inner += 1;
            true
        });
        assert!(inner >= 1);
        true
    });
    assert!(outer >= 1);
    for k in 0..16 {
        if !map.contains_key(&k) {
            assert_eq!(map.load(&(k + 100)), Some(k));
        }
    }
}

/// Go's CompareAndSwap never inserts an absent key, even for a matching zero value.
#[test]
fn compare_and_swap_never_inserts() {
    let map = SyncMap::<u64, u64>::new();
    for k in 0..SCALE {
        assert!(!map.compare_and_swap(&k, &0, 1));
        assert!(!map.compare_and_delete(&k, &0));
    }
    assert!(map.is_empty());
    map.store(1, 0);
    map.delete(&1);
    assert!(!map.compare_and_swap(&1, &0, 1), "a deleted key is absent");
    assert!(map.is_empty());
}

/// Closures given to `load_with`, `load_or_store_with` and `range` may call any method of the
/// same map, in every state (keys only in the dirty map, after promotion, after clear): a
/// closure run under the dirty lock would deadlock here.
#[test]
fn closures_may_reenter_the_same_map() {
    let map = SyncMap::<u64, u64>::new();
    for round in 0..if cfg!(miri) { 2 } else { 20 } {
        let base = round * 100;
        // A miss whose closure writes other keys (new keys: the dirty path).
        let (v, loaded) = map.load_or_store_with(base, || {
            map.store(base + 1, 1);
            map.load_or_store_with(base + 2, || {
                map.delete(&(base + 1));
                2
            });
            map.range(|_, _| true);
            0
        });
        assert_eq!((v, loaded), (0, false));
        assert_eq!(map.load(&(base + 1)), None);
        assert_eq!(map.load(&(base + 2)), Some(2));
        // A hit whose closure writes, swaps and deletes the key being read.
        let seen = map.load_with(&(base + 2), |v| {
            map.store(base + 2, v + 10);
            assert!(map.compare_and_swap(&(base + 2), &(v + 10), v + 20));
            map.range(|k, _| {
                map.load_or_store_with(k + 50, || 5);
                true
            });
            *v
        });
        assert_eq!(seen, Some(2));
        assert_eq!(map.load(&(base + 2)), Some(22));
        // Promote (misses), then reenter again from range with deletes and clear.
        for k in 0..200 {
            map.load(&(base + 1_000 + k));
        }
        let mut visits = 0;
        map.range(|k, _| {
            visits += 1;
            map.load_and_delete(k);
            if visits == 2 {
                map.clear();
            }
            true
        });
        assert!(visits >= 2);
        map.range(|_, _| panic!("the map was cleared"));
        assert_eq!(map.len(), 0);
    }
}
