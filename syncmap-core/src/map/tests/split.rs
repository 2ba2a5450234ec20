//! Splitting a map whose one shard in use grew large or had its lock contended into all its
//! shards, and threads that chose a shard before the split.

use super::super::locked::{SPLIT_AFTER_CONTENDED, SPLIT_AT_LEN};
use super::*;

#[test]
fn a_map_splits_when_its_one_shard_grows_large() {
    let map: SyncMap<u64, u64> = SyncMap::new();
    assert_eq!(map.shards_in_use(), 1);
    assert_eq!(
        map.shards.allocated(),
        1,
        "a map allocates its other shards when it splits"
    );
    let mut n = 0;
    if cfg!(miri) {
        n = 200;
        for k in 0..n {
            map.store(k, k);
        }
        assert_eq!(map.shards_in_use(), 1, "a small map keeps one shard");
        map.split();
    } else {
        // A map that only grows promotes at 128, 384, 1,408 and 5,504 keys.
        while map.shards_in_use() == 1 {
            map.store(n, n);
            n += 1;
            assert!(n <= 2 * SPLIT_AT_LEN as u64, "no split after {n} keys");
        }
        assert!(n >= SPLIT_AT_LEN as u64, "split after {n} keys");
    }
    assert_eq!(map.shards_in_use(), map.shards.count());
    assert_eq!(map.shards.allocated(), map.shards.count());
    assert!(map.shards.count() >= 4);
    // Every key is found in its shard, and each shard's snapshot holds only its own keys.
    let guard = sync::enter(&map.collector);
    let mask = map.split_mask();
    for k in 0..n {
        assert_eq!(map.load(&k), Some(k));
    }
    let mut total = 0;
    for index in 0..=mask {
        let read = map.shard_at(index, mask).snapshot(&guard);
        for entry in read.table.iter() {
            assert_eq!(shard::index(entry.hash(), mask), index, "key {}", entry.key);
        }
        total += read.table.len();
    }
    drop(guard);
    assert!(total <= n as usize);
    assert_eq!(map.len(), n as usize);
    let mut seen = std::collections::HashSet::new();
    map.range(|k, v| {
        assert_eq!(k, v);
        assert!(seen.insert(*k), "{k} visited twice");
        true
    });
    assert_eq!(seen.len(), n as usize);

    // A map made with a number of shards never splits, and one made with one stays whole.
    let fixed: SyncMap<u64, u64> = SyncMap::with_shards_and_hasher(1, RandomState::new());
    for k in 0..n {
        fixed.store(k, k);
    }
    fixed.split();
    assert_eq!(fixed.shards_in_use(), 1);
}

#[test]
fn a_map_splits_when_its_one_shard_lock_is_contended() {
    let map: SyncMap<u64, u64> = SyncMap::new();
    map.store(0, 0);
    // Holds shard 0's lock while another thread inserts a new key, SPLIT_AFTER_CONTENDED times.
    for round in 1..=SPLIT_AFTER_CONTENDED as u64 {
        assert_eq!(map.shards_in_use(), 1, "round {round}");
        let guard = sync::enter(&map.collector);
        let held = map.lock_dirty(map.shard_at(0, 0), &guard);
        std::thread::scope(|s| {
            let inserter = s.spawn(|| map.store(round, round));
            while map.contended.load(Ordering::Relaxed) < round as usize {
                std::thread::yield_now();
            }
            drop(held);
            inserter.join().unwrap();
        });
    }
    // The insert that found the lock held for the last time split the map.
    assert_eq!(map.shards_in_use(), map.shards.count());
    for k in 0..=SPLIT_AFTER_CONTENDED as u64 {
        assert_eq!(map.load(&k), Some(k));
    }
    assert_eq!(map.len(), SPLIT_AFTER_CONTENDED + 1);
}

/// A thread that chose shard 0 before the map split, and searches that shard's new snapshot
/// (which lacks the keys that moved), must not answer "absent"; its locked paths lock the key's
/// new shard.
#[test]
fn a_shard_chosen_before_the_split_is_chosen_again() {
    let map: SyncMap<u64, u64> = SyncMap::new();
    for k in 0..64 {
        map.store(k, k);
    }
    let stale = map.shard_at(0, 0);
    map.split();
    let moved = (0..64).find(|k| map.shard_of(k) != 0).expect("a key moved");
    let guard = sync::enter(&map.collector);
    let read = stale.snapshot(&guard);
    assert!(find(&read.table, map.hash(&moved), &moved).is_none());
    assert!(map.resharded(stale), "the stale choice is seen as stale");
    let mut shard = stale;
    let dirty = map.lock_routed(&mut shard, map.hash(&moved), &guard);
    assert_eq!(shard.index, map.shard_of(&moved));
    assert!(!map.resharded(shard));
    drop(dirty);
}

/// A new key whose promotion splits the map (its one shard reached `SPLIT_AT_LEN` keys) while
/// the lock's contention also asks for a split splits it once: the second check sees the map
/// split (it once read the mask the shard was chosen with, and split again).
#[test]
#[cfg_attr(
    miri,
    ignore = "4,096 inserts, each with a look under the lock (176 s): a check of logic, not memory"
)]
fn a_promotion_that_splits_is_not_followed_by_a_second_split() {
    let map: SyncMap<u64, u64> = SyncMap::new();
    let mut k = 0;
    loop {
        let promotes = {
            let guard = sync::enter(&map.collector);
            let shard = map.shard_at(0, 0);
            let read = shard.snapshot(&guard);
            let dirty = sync::lock(&shard.get().dirty, &map.collector, &guard);
            dirty.len() + 1 >= SPLIT_AT_LEN && dirty.new_keys + 1 >= read.dirty_capacity()
        };
        if promotes {
            break;
        }
        map.store(k, k);
        k += 1;
        assert_eq!(
            map.shard_mask.load(Ordering::Relaxed),
            0,
            "split before the test"
        );
    }
    map.contended
        .store(SPLIT_AFTER_CONTENDED, Ordering::Relaxed);
    map.store(k, k);
    assert_ne!(map.shard_mask.load(Ordering::Relaxed), 0, "the map split");
    for key in 0..=k {
        assert_eq!(map.load(&key), Some(key));
    }
    assert_eq!(map.len(), k as usize + 1);
}
