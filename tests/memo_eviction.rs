//! The eviction policy of bounded caches, through the runtime `#[memoize(capacity = N)]` uses:
//! the bound under concurrent churn, what stays, statistics, and TTL agreeing with `len`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use syncmemo::__private::MemoOptions;
use syncmemo::{memoize, Memo};

fn bounded(name: &'static str, capacity: usize) -> &'static Memo<u64, u64> {
    let options = MemoOptions {
        capacity: Some(capacity),
        ..MemoOptions::DEFAULT
    };
    Box::leak(Box::new(Memo::new(name, options.into())))
}

fn call(memo: &'static Memo<u64, u64>, key: u64) -> u64 {
    memo.__call(&key, || key, || key * 3, |_| true)
}

/// `len() <= capacity + threads` after every call returns, with `threads` callers churning
/// through many more keys than fit.
fn churn(threads: u64) {
    churn_keys(threads, 64, 5_000);
}

/// As [`churn`], with `capacity` entries and keys drawn from `0..keys`.
fn churn_keys(threads: u64, capacity: usize, keys: u64) {
    let memo = bounded("eviction::churn", capacity);
    let barrier = Barrier::new(threads as usize);
    let worst = AtomicU64::new(0);
    thread::scope(|s| {
        for t in 0..threads {
            let (barrier, worst) = (&barrier, &worst);
            s.spawn(move || {
                barrier.wait();
                let mut x = t + 1;
                for i in 0..20_000u64 {
                    // Mostly fresh keys, some repeated: inserts and hits interleave.
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let key = if i % 3 == 0 { x % 32 } else { x % keys };
                    assert_eq!(call(memo, key), key * 3);
                    if i % 16 == 0 {
                        let len = memo.len();
                        worst.fetch_max(len as u64, Ordering::Relaxed);
                        assert!(
                            len <= capacity + threads as usize,
                            "len {len} > {capacity} + {threads}"
                        );
                    }
                }
            });
        }
    });
    assert!(
        memo.len() <= capacity,
        "{} entries after the threads returned",
        memo.len()
    );
    let stats = memo.stats();
    assert!(stats.evictions + stats.rejections > 1000, "{stats:?}");
    eprintln!(
        "{threads} threads: largest len seen {}",
        worst.load(Ordering::Relaxed)
    );
}

#[test]
fn the_bound_holds_with_two_threads_churning() {
    churn(2);
}

#[test]
fn the_bound_holds_with_four_threads_churning() {
    churn(4);
}

/// A cache of 10,000 entries splits its policy into shards (16): the bound holds for the whole.
#[test]
fn the_bound_holds_with_a_sharded_policy_and_two_threads_churning() {
    churn_keys(2, 10_000, 200_000);
}

/// The shards' capacities add up to the cache's, remainder included: filled with many more
/// distinct keys than fit, the cache holds exactly its capacity.
#[test]
fn a_sharded_policy_holds_exactly_its_capacity() {
    const CAP: usize = 10_003;
    let memo = bounded("eviction::sharded_exact", CAP);
    for k in 0..100_000 {
        call(memo, k);
    }
    assert_eq!(memo.weight(), Some(CAP as u64));
    assert_eq!(memo.len(), CAP);
    let stats = memo.stats();
    assert_eq!(stats.evictions + stats.rejections, 100_000 - CAP as u64);
    // `clear` empties every shard, and each takes its share again.
    memo.clear();
    assert_eq!((memo.weight(), memo.len()), (Some(0), 0));
    for k in 200_000..300_000 {
        call(memo, k);
    }
    assert_eq!((memo.weight(), memo.len()), (Some(CAP as u64), CAP));
}

/// Calls each of `hot` keys four times, then scans `scanned` new keys while calling a hot key
/// after every fourth: only the scanned keys run their body (no hot key is recomputed), and
/// the policy turned some of them away.
fn a_hot_set_survives_a_scan_of(name: &'static str, capacity: usize, hot: u64, scanned: u64) {
    let memo = bounded(name, capacity);
    let runs = AtomicU64::new(0);
    let f = |k: u64| {
        memo.__call(
            &k,
            || k,
            || {
                runs.fetch_add(1, Ordering::Relaxed);
                k
            },
            |_| true,
        )
    };
    for _ in 0..4 {
        (0..hot).for_each(|k| {
            f(k);
        });
    }
    let before = runs.load(Ordering::Relaxed);
    for (i, k) in (1_000_000..1_000_000 + scanned).enumerate() {
        f(k);
        if i % 4 == 0 {
            f(i as u64 / 4 % hot);
        }
    }
    assert_eq!(runs.load(Ordering::Relaxed) - before, scanned);
    let stats = memo.stats();
    assert!(stats.rejections > 0, "{stats:?}");
    assert!(memo.len() <= capacity);
}

#[test]
fn a_hot_set_survives_a_scan() {
    a_hot_set_survives_a_scan_of("eviction::scan", 400, 100, 4_000);
}

/// With a sharded policy (8,192 entries: 16 shards), each shard's frequency filter still keeps
/// its part of the hot set.
#[test]
fn a_hot_set_survives_a_scan_with_a_sharded_policy() {
    a_hot_set_survives_a_scan_of("eviction::scan_sharded", 8_192, 2_000, 80_000);
}

#[test]
fn invalidated_and_cleared_entries_free_their_room() {
    let memo = bounded("eviction::invalidate", 10);
    for k in 0..10 {
        call(memo, k);
    }
    for k in 0..10 {
        assert!(memo.invalidate(&k));
    }
    for k in 100..110 {
        call(memo, k);
    }
    // The new keys fill the room the removed ones left: none was evicted for them.
    assert_eq!(memo.len(), 10);
    assert_eq!(memo.stats().evictions + memo.stats().rejections, 0);
    memo.clear();
    for k in 200..210 {
        call(memo, k);
    }
    assert_eq!(memo.len(), 10);
    assert_eq!(memo.stats().evictions + memo.stats().rejections, 0);
    for k in 200..210 {
        assert_eq!(memo.get(&k), Some(k * 3));
    }
}

#[memoize(capacity = 4, ttl = "30ms")]
fn short_lived(x: u64) -> u64 {
    x
}

#[test]
fn expired_entries_are_not_counted() {
    for x in 0..3 {
        short_lived(x);
    }
    assert_eq!(short_lived_cache().len(), 3);
    thread::sleep(Duration::from_millis(60));
    let cache = short_lived_cache();
    let mut shown = 0;
    cache.range(|_, _| {
        shown += 1;
        true
    });
    assert_eq!(shown, 0);
    assert_eq!(cache.get(&0), None);
    assert_eq!(cache.len(), 0);
    assert_eq!(cache.stats().entries, 0);
    // Recomputed entries are counted again.
    short_lived(1);
    assert_eq!(cache.len(), 1);
}
