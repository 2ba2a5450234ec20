//! Multi-threaded stress with invariants that fail when the map is wrong.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};

use syncmap_core::SyncMap;

const THREADS: usize = 4;
const KEYS: u64 = if cfg!(miri) { 16 } else { 2000 };

/// Concurrent `load_or_store` on shared keys: one winner per key, and every thread sees the
/// winner's value.
#[test]
fn load_or_store_has_one_winner_per_key() {
    let map = Arc::new(SyncMap::<u64, usize>::new());
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (map, barrier) = (Arc::clone(&map), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                (0..KEYS)
                    .map(|k| {
                        let (value, loaded) = map.load_or_store(k, t);
                        (k, value, loaded)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    for k in 0..KEYS {
        let seen: Vec<_> = results.iter().map(|r| r[k as usize]).collect();
        let winners: Vec<_> = seen.iter().filter(|(_, _, loaded)| !loaded).collect();
        assert_eq!(winners.len(), 1, "key {k}: {seen:?}");
        let winner = winners[0].1;
        assert!(
            seen.iter().all(|(_, v, _)| *v == winner),
            "key {k}: {seen:?}"
        );
        assert_eq!(map.load(&k), Some(winner));
    }
    assert_eq!(map.len() as u64, KEYS);
}

/// Writers advance per-key versions with compare-and-swap; readers never see a version go
/// back, and the final versions equal the number of successful swaps.
#[test]
fn versions_never_go_back() {
    let keys = KEYS.min(64);
    let map = Arc::new(SyncMap::<u64, u64>::new());
    for k in 0..keys {
        map.store(k, 0);
    }
    let rounds = if cfg!(miri) { 20 } else { 20_000 };
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let map = Arc::clone(&map);
            std::thread::spawn(move || {
                let mut successes = HashMap::new();
                for i in 0..rounds {
                    let k = (i * 7 + t) % keys;
                    let current = map.load(&k).unwrap();
                    if map.compare_and_swap(&k, &current, current + 1) {
                        *successes.entry(k).or_insert(0u64) += 1;
                    }
                }
                successes
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let map = Arc::clone(&map);
            std::thread::spawn(move || {
                let mut last = vec![0u64; keys as usize];
                for i in 0..rounds * 2 {
                    let k = i % keys;
                    let v = map.load(&k).unwrap();
                    assert!(
                        v >= last[k as usize],
                        "key {k} went back: {} -> {v}",
                        last[k as usize]
                    );
                    last[k as usize] = v;
                }
            })
        })
        .collect();
    let mut total: HashMap<u64, u64> = HashMap::new();
    for w in writers {
        for (k, n) in w.join().unwrap() {
            *total.entry(k).or_insert(0) += n;
        }
    }
    for r in readers {
        r.join().unwrap();
    }
    for k in 0..keys {
        assert_eq!(
            map.load(&k),
            Some(*total.get(&k).unwrap_or(&0)),
            "lost update on {k}"
        );
    }
}

/// Every operation at once, including clear and range; the map stays consistent: after the
/// writers finish, `len` equals what `range` visits and every value encodes its key.
#[test]
fn mixed_operations_stay_consistent() {
    let map = Arc::new(SyncMap::<u64, u64>::new());
    let rounds = if cfg!(miri) { 50 } else { 30_000 };
    let threads: Vec<_> = (0..THREADS as u64)
        .map(|t| {
            let map = Arc::clone(&map);
            std::thread::spawn(move || {
                let mut x = t + 1;
                for _ in 0..rounds {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = x % 128;
                    let v = k * 1000 + x % 1000;
                    match x % 13 {
                        0..=2 => map.store(k, v),
                        3 => {
                            map.swap(k, v);
                        }
                        4 | 5 => map.delete(&k),
                        6 => {
                            map.load_and_delete(&k);
                        }
                        7 => {
                            map.load_or_store(k, v);
                        }
                        8 => {
                            map.compare_and_delete(&k, &v);
                        }
                        9 if x % 997 == 0 => map.clear(),
                        10 => map.range(|k, v| {
                            assert_eq!(v / 1000, *k);
                            true
                        }),
                        _ => {
                            if let Some(v) = map.load(&k) {
                                assert_eq!(v / 1000, k);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut visited = 0;
    map.range(|k, v| {
        assert_eq!(v / 1000, *k);
        visited += 1;
        true
    });
    assert_eq!(visited, map.len());
}

/// A map splitting while threads read, write, insert and delete: a key that is always present
/// is always found, a key's own writer always reads its last write back, and every insert and
/// delete made during the split holds afterwards. (On a map that splits, a thread that chose
/// shard 0 before the split and searches its new, partial snapshot must not answer "absent".)
#[test]
fn a_split_loses_nothing_and_hides_nothing() {
    let rounds = if cfg!(miri) { 2 } else { 300 };
    let present = if cfg!(miri) { 16 } else { 1000 };
    for round in 0..rounds {
        let map: SyncMap<u64, u64> = SyncMap::splitting_into_shards_with_hasher(
            16,
            std::collections::hash_map::RandomState::new(),
        );
        for k in 0..present {
            map.store(k, k);
        }
        if round % 2 == 0 {
            map.range(|_, _| true); // in the snapshot (lock-free paths), or still dirty
        }
        let start = Barrier::new(4);
        std::thread::scope(|s| {
            // Reader: every present key, found on every pass.
            s.spawn(|| {
                start.wait();
                for pass in 0..3 {
                    for k in 0..present {
                        assert_eq!(map.load(&k), Some(k), "round {round} pass {pass}: key {k}");
                    }
                }
            });
            // Inserter and deleter of keys of its own.
            s.spawn(|| {
                start.wait();
                for k in present..present * 2 {
                    assert_eq!(
                        map.load_or_store(k, k),
                        (k, false),
                        "round {round}: insert {k}"
                    );
                    if k % 3 == 0 {
                        assert_eq!(
                            map.load_and_delete(&k),
                            Some(k),
                            "round {round}: delete {k}"
                        );
                    }
                }
            });
            // Writer of present keys: reads back what it wrote.
            s.spawn(|| {
                start.wait();
                for k in (0..present).step_by(7) {
                    assert_eq!(map.swap(k, k), Some(k), "round {round}: swap {k}");
                    assert!(map.compare_and_swap(&k, &k, k), "round {round}: cas {k}");
                }
            });
            s.spawn(|| {
                start.wait();
                map.split();
            });
        });
        assert_eq!(map.shards_in_use(), 16);
        let expected = (0..present * 2).filter(|k| *k < present || k % 3 != 0);
        let mut seen = HashMap::new();
        map.range(|k, v| {
            assert!(
                seen.insert(*k, *v).is_none(),
                "round {round}: {k} visited twice"
            );
            true
        });
        assert_eq!(seen.len(), map.len());
        for k in expected {
            assert_eq!(
                seen.get(&k),
                Some(&k),
                "round {round}: key {k} after the split"
            );
            assert_eq!(map.load(&k), Some(k));
        }
    }
}
