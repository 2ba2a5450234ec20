//! Loom models of the map's protocol: lock-free in-place updates racing with the dirty lock,
//! expunging by the incremental copy, promotion, and compare-and-swap/delete.
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

fn map() -> Arc<Map> {
    Arc::new(Map::default())
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
        let six = map.load(&6);
        let five = map.load(&5);
        let seven = map.load(&7);
        if six.is_some() {
            assert_eq!((five, seven), (None, None), "5 and 7 left before 6 came");
        }
        writer.join().unwrap();
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
        assert_eq!(map.load(&5), Some(5));
        assert_eq!(map.swap(5, 6), Some(5));
        promoter.join().unwrap();
        assert_eq!(map.load(&5), Some(6));
    });
}
