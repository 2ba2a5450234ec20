//! Loom models of the map's protocol: lock-free in-place updates racing with the dirty lock,
//! expunging by the incremental copy, promotion, compare-and-swap/delete, and the holds of an
//! entry whose first value has drop glue.
//!
//! Run with `RUSTFLAGS="--cfg syncmap_loom" cargo test -p syncmap-core --release --test loom_map`.
//! Without that cfg this file compiles to nothing.
#![cfg(syncmap_loom)]

use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;

use loom::sync::Arc;
use loom::thread;
use syncmap_core::SyncMap;

/// Loom replays executions and needs them deterministic: a fixed-key hasher.
type Map = SyncMap<u64, u64, BuildHasherDefault<DefaultHasher>>;

/// A one-shard map: the models below race operations on keys that must share a dirty map.
fn map() -> Arc<Map> {
    Arc::new(Map::with_shards_and_hasher(1, Default::default()))
}

/// A two-shard map and two keys of each shard: `[shard 0 keys, shard 1 keys]`.
fn two_shards() -> (Arc<Map>, [[u64; 2]; 2]) {
    let map = Map::with_shards_and_hasher(2, Default::default());
    let mut keys = [Vec::new(), Vec::new()];
    for k in 1.. {
        let shard = map.shard_of(&k);
        if keys[shard].len() < 2 {
            keys[shard].push(k);
        }
        if keys.iter().all(|k| k.len() == 2) {
            break;
        }
    }
    let keys = keys.map(|k| [k[0], k[1]]);
    (Arc::new(map), keys)
}

/// Runs `f` on a thread of its own. The models run every side of a race this way, not on the
/// model's main thread: loom explored the interleavings of operations made on the main thread
/// after a spawn in one execution only (1 iteration, where the same race between two spawned
/// threads takes dozens; found with a mutant of the split that these tests then caught).
fn spawn_on<T: 'static>(
    map: &Arc<Map>,
    f: impl FnOnce(&Map) -> T + 'static,
) -> thread::JoinHandle<T> {
    let map = Arc::clone(map);
    thread::spawn(move || f(&map))
}

/// A map whose read snapshot holds key 0, so that keys stored next are dirty-only.
fn map_with_promoted_key_0() -> Arc<Map> {
    let map = map();
    map.store(0, 0);
    map.range(|_, _| true); // promotes
    map
}

#[test]
fn load_or_store_has_one_winner() {
    loom::model(|| {
        let map = map();
        let threads: Vec<_> = (0..2u64)
            .map(|t| {
                let map = Arc::clone(&map);
                thread::spawn(move || map.load_or_store(1, t))
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter(|(_, loaded)| !loaded).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        let winner = winners[0].0;
        assert!(
            results.iter().all(|(value, _)| *value == winner),
            "{results:?}"
        );
        assert_eq!(map.load(&1), Some(winner));
    });
}

#[test]
fn store_after_delete_survives_a_concurrent_copy_and_promotion() {
    loom::model(|| {
        let map = map();
        map.store(1, 1);
        map.range(|_, _| true); // promote: key 1 is in the read snapshot
        let writer = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                map.delete(&1);
                map.store(1, 2); // lock-free, or unexpunge under the lock
            })
        };
        let inserter = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                map.store(2, 2); // new key: starts the copy that may expunge key 1
                map.range(|_, _| true); // promotion
            })
        };
        writer.join().unwrap();
        inserter.join().unwrap();
        assert_eq!(map.load(&1), Some(2));
        assert_eq!(map.load(&2), Some(2));
        assert_eq!(map.len(), 2);
    });
}

#[test]
fn compare_and_swap_and_compare_and_delete_exclude_each_other() {
    loom::model(|| {
        let map = map();
        map.store(1, 0);
        let cas = {
            let map = Arc::clone(&map);
            thread::spawn(move || map.compare_and_swap(&1, &0, 7))
        };
        let cad = {
            let map = Arc::clone(&map);
            thread::spawn(move || map.compare_and_delete(&1, &0))
        };
        let swapped = cas.join().unwrap();
        let deleted = cad.join().unwrap();
        assert!(swapped != deleted, "exactly one succeeds");
        assert_eq!(map.load(&1), if swapped { Some(7) } else { None });
        assert_eq!(map.len(), usize::from(swapped));
    });
}

#[test]
fn a_dirty_only_key_is_seen_or_deleted_exactly_once() {
    loom::model(|| {
        let map = map_with_promoted_key_0();
        map.store(5, 5);
        let deleter = {
            let map = Arc::clone(&map);
            thread::spawn(move || map.load_and_delete(&5))
        };
        let loader = {
            let map = Arc::clone(&map);
            thread::spawn(move || map.load_or_store(5, 6))
        };
        let deleted = deleter.join().unwrap();
        let (value, loaded) = loader.join().unwrap();
        match (deleted, loaded) {
            // The load-or-store came first and found 5; the delete removed it.
            (Some(5), true) => {
                assert_eq!(value, 5);
                assert_eq!(map.load(&5), None);
            }
            // The delete came first; the load-or-store stored 6.
            (Some(5), false) => {
                assert_eq!(value, 6);
                assert_eq!(map.load(&5), Some(6));
            }
            other => panic!("impossible outcome {other:?}"),
        }
    });
}

/// A writer stores two new keys, deletes the first (the filter must keep the second's bits) and
/// stores a third. A reader that sees the third key must see the first gone and the second
/// present; once the writer is done, no key is missed through the filter.
#[test]
fn the_filter_never_hides_a_present_key() {
    loom::model(|| {
        let map = map_with_promoted_key_0();
        let writer = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                map.store(5, 5);
                map.store(7, 7);
                map.delete(&5);
                map.delete(&7); // the filter is emptied here
                map.store(6, 6);
            })
        };
        let reader = spawn_on(&map, |map| {
            let six = map.load(&6);
            let five = map.load(&5);
            let seven = map.load(&7);
            if six.is_some() {
                assert_eq!((five, seven), (None, None), "5 and 7 left before 6 came");
            }
        });
        writer.join().unwrap();
        reader.join().unwrap();
        assert_eq!(map.load(&5), None);
        assert_eq!(map.load(&7), None);
        assert_eq!(map.load(&6), Some(6));
        map.store(8, 8);
        map.store(9, 9);
        map.delete(&8);
        assert_eq!(map.load(&9), Some(9), "9 survives the delete of 8");
    });
}

/// A lookup that misses in the snapshot and then takes the lock must search the snapshot again
/// if a promotion replaced it in between: the key it wants has moved there.
#[test]
fn a_lookup_racing_a_promotion_finds_the_promoted_key() {
    loom::model(|| {
        let map = map_with_promoted_key_0();
        map.store(5, 5);
        let promoter = {
            let map = Arc::clone(&map);
            thread::spawn(move || map.range(|_, _| true))
        };
        let reader = spawn_on(&map, |map| {
            assert_eq!(map.load(&5), Some(5));
            assert_eq!(map.swap(5, 6), Some(5));
        });
        promoter.join().unwrap();
        reader.join().unwrap();
        assert_eq!(map.load(&5), Some(6));
    });
}

/// Two shards: one promotes its dirty map (a `range`) while a thread inserts a new key in the
/// other and reads back keys of both. Nothing is lost or duplicated, and the count is exact.
#[test]
fn a_promotion_in_one_shard_while_the_other_takes_a_new_key() {
    loom::model(|| {
        let (map, [[a, a_new], [b, _]]) = two_shards();
        map.store(a, 1);
        map.range(|_, _| true); // key `a` is in shard 0's snapshot
        map.store(a_new, 2); // dirty-only in shard 0
        let promoter = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                let mut seen = Vec::new();
                map.range(|k, v| {
                    seen.push((*k, *v));
                    true
                });
                seen
            })
        };
        let inserter = spawn_on(&map, move |map| {
            map.store(b, 3); // a new key of shard 1, during shard 0's promotion
            assert_eq!(map.load(&a_new), Some(2));
            assert_eq!(map.load(&b), Some(3));
        });
        let mut seen = promoter.join().unwrap();
        inserter.join().unwrap();
        seen.sort_unstable();
        // Keys present when the range started are visited; `b` may or may not be.
        let mut expected = vec![(a, 1), (a_new, 2)];
        if seen.contains(&(b, 3)) {
            expected.push((b, 3));
        }
        expected.sort_unstable();
        assert_eq!(seen, expected);
        assert_eq!(map.len(), 3);
        assert_eq!(map.load(&a), Some(1));
    });
}

/// `range` walks the shards one after the other while a writer moves keys: a new key in the
/// second shard, an update of a promoted key of the first, a delete in the second. Each key is
/// visited at most once, a key present throughout is visited with a value it had, and the
/// final contents are exact.
#[test]
fn range_across_shards_while_keys_move() {
    loom::model(|| {
        let (map, [[a, _], [b, c]]) = two_shards();
        map.store(a, 1);
        map.store(b, 1);
        map.range(|_, _| true); // both in their shard's snapshot
        let writer = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                map.store(c, 1); // new key of shard 1: takes its lock
                map.store(a, 2); // lock-free update in shard 0
                map.delete(&b);
            })
        };
        let ranger = spawn_on(&map, |map| {
            let mut seen = Vec::new();
            map.range(|k, v| {
                seen.push((*k, *v));
                true
            });
            seen
        });
        writer.join().unwrap();
        let seen = ranger.join().unwrap();
        let mut keys: Vec<_> = seen.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), seen.len(), "a key visited twice: {seen:?}");
        let a_seen = seen.iter().find(|(k, _)| *k == a).map(|(_, v)| *v);
        assert!(matches!(a_seen, Some(1 | 2)), "{seen:?}");
        assert!(seen.iter().all(|&(_, v)| v == 1 || v == 2), "{seen:?}");
        assert_eq!(map.len(), 2);
        assert_eq!(map.load(&a), Some(2));
        assert_eq!(map.load(&b), None);
        assert_eq!(map.load(&c), Some(1));
    });
}

/// A map with one shard in use that splits into two, and two keys of each of its final shards:
/// `[shard 0 keys, shard 1 keys]`.
fn splitting() -> (Arc<Map>, [[u64; 2]; 2]) {
    let (_, keys) = two_shards();
    let map = Map::splitting_into_shards_with_hasher(2, Default::default());
    (Arc::new(map), keys)
}

#[test]
fn lookups_racing_a_split_find_their_keys() {
    loom::model(|| {
        let (map, [[a, _], [b, _]]) = splitting();
        map.store(a, 1);
        map.store(b, 2);
        map.range(|_, _| true); // promote: both keys in shard 0's snapshot
        let splitter = spawn_on(&map, |map| map.split());
        // Shard 1's key may move while this looks it up: it is found before, during and after.
        let reader = spawn_on(&map, move |map| {
            assert_eq!(map.load(&b), Some(2));
            assert_eq!(map.load(&a), Some(1));
        });
        splitter.join().unwrap();
        reader.join().unwrap();
        assert_eq!(map.shards_in_use(), 2);
        assert_eq!(map.load(&b), Some(2));
    });
}

#[test]
fn writes_racing_a_split_land_in_their_shards() {
    loom::model(|| {
        let (map, [[a, _], [b, b_new]]) = splitting();
        map.store(a, 1);
        map.store(b, 2);
        let splitter = spawn_on(&map, |map| map.split());
        // A new key and a deleted one, both of shard 1, while the map splits.
        let writer = spawn_on(&map, move |map| {
            assert_eq!(map.load_or_store(b_new, 3), (3, false));
            assert_eq!(map.load_and_delete(&b), Some(2));
        });
        splitter.join().unwrap();
        writer.join().unwrap();
        assert_eq!(map.load(&b_new), Some(3));
        assert_eq!(map.load(&b), None);
        assert_eq!(map.load(&a), Some(1));
        assert_eq!(map.len(), 2);
        let mut seen = Vec::new();
        map.range(|k, v| {
            seen.push((*k, *v));
            true
        });
        seen.sort_unstable();
        let mut expected = vec![(a, 1), (b_new, 3)];
        expected.sort_unstable();
        assert_eq!(seen, expected);
    });
}

#[test]
fn range_racing_a_split_visits_each_key_once() {
    loom::model(|| {
        let (map, [[a, _], [b, c]]) = splitting();
        map.store(a, 1);
        map.store(b, 2);
        map.range(|_, _| true);
        map.store(c, 3); // dirty-only: range promotes shard 0 first
        let splitter = spawn_on(&map, |map| map.split());
        let ranger = spawn_on(&map, |map| {
            let mut seen = Vec::new();
            map.range(|k, _| {
                seen.push(*k);
                true
            });
            seen
        });
        splitter.join().unwrap();
        let mut seen = ranger.join().unwrap();
        seen.sort_unstable();
        let mut expected = vec![a, b, c];
        expected.sort_unstable();
        assert_eq!(seen, expected);
    });
}

#[test]
fn clear_racing_a_split_removes_every_key() {
    loom::model(|| {
        let (map, [[a, _], [b, _]]) = splitting();
        map.store(a, 1);
        map.store(b, 2);
        map.range(|_, _| true);
        let splitter = spawn_on(&map, |map| map.split());
        let clearer = spawn_on(&map, |map| map.clear());
        splitter.join().unwrap();
        clearer.join().unwrap();
        assert_eq!(map.load(&a), None);
        assert_eq!(map.load(&b), None);
        assert_eq!(map.len(), 0);
        map.range(|k, _| panic!("{k} survived the clear"));
    });
}

/// A value with drop glue that counts its drops: a map of these keeps a key's first value in
/// the entry and counts the holds on the entry's memory in its hash word.
struct Counted {
    id: u64,
    drops: Arc<loom::sync::atomic::AtomicUsize>,
}

impl Counted {
    fn new(id: u64) -> (Counted, Arc<loom::sync::atomic::AtomicUsize>) {
        let drops = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let value = Counted {
            id,
            drops: Arc::clone(&drops),
        };
        (value, drops)
    }
}

impl PartialEq for Counted {
    fn eq(&self, other: &Counted) -> bool {
        self.id == other.id
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops
            .fetch_add(1, loom::sync::atomic::Ordering::SeqCst);
    }
}

type CountedMap = SyncMap<u64, Counted, BuildHasherDefault<DefaultHasher>>;

#[test]
fn a_first_value_unlinked_by_racing_exchanges_is_dropped_once() {
    use loom::sync::atomic::Ordering::SeqCst;
    loom::model(|| {
        let map = Arc::new(CountedMap::with_shards_and_hasher(1, Default::default()));
        let (first, first_drops) = Counted::new(0);
        map.store(1, first);
        map.range(|_, _| true); // promotes: key 1's entry (and its first value) in the snapshot
        let (old, old_drops) = Counted::new(0);
        let (new, new_drops) = Counted::new(1);
        let swapper = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                let swapped = map.compare_and_swap(&1, &old, new);
                drop(old);
                swapped
            })
        };
        let deleter = {
            let map = Arc::clone(&map);
            thread::spawn(move || map.delete(&1))
        };
        let swapped = swapper.join().unwrap();
        deleter.join().unwrap();
        assert_eq!(old_drops.load(SeqCst), 1);
        // The first value was unlinked by the swap or the delete, and is dropped once (on
        // its own, while the entry stays in the map, or with the map).
        drop(map);
        assert_eq!(first_drops.load(SeqCst), 1);
        assert_eq!(new_drops.load(SeqCst), 1, "swapped: {swapped}");
    });
}
