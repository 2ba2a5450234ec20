//! Unit tests of `SyncMap` that look at its internals (shards, snapshots, the filter).

use super::locked::{SPLIT_AFTER_CONTENDED, SPLIT_AT_LEN};
use super::*;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

mod removal;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn random_operations_match_a_hash_map() {
    let rounds = if cfg!(miri) { 300 } else { 20_000 };
    // Key spaces from 5 to 10 000 keys: small ones re-store deleted (expunged) keys, large
    // ones make the dirty map's incremental copy of the snapshot take many steps.
    for seed in 1..=10u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let map: SyncMap<u64, u64> = SyncMap::new();
        let mut model: HashMap<u64, u64> = HashMap::new();
        let keys = if seed > 8 {
            10_000
        } else {
            1 + seed * seed * 4
        };
        for step in 0..rounds {
            let key = rng.next() % keys;
            let value = rng.next() % 4;
            match rng.next() % 11 {
                0 | 1 => assert_eq!(map.load(&key), model.get(&key).copied(), "step {step}"),
                2 => {
                    map.store(key, value);
                    model.insert(key, value);
                }
                3 => {
                    let expected = match model.get(&key) {
                        Some(&v) => (v, true),
                        None => {
                            model.insert(key, value);
                            (value, false)
                        }
                    };
                    assert_eq!(map.load_or_store(key, value), expected, "step {step}");
                }
                4 => assert_eq!(map.load_and_delete(&key), model.remove(&key), "step {step}"),
                5 => {
                    map.delete(&key);
                    model.remove(&key);
                }
                6 => assert_eq!(
                    map.swap(key, value),
                    model.insert(key, value),
                    "step {step}"
                ),
                7 => {
                    let old = rng.next() % 4;
                    let expected = model.get(&key) == Some(&old);
                    if expected {
                        model.insert(key, value);
                    }
                    assert_eq!(
                        map.compare_and_swap(&key, &old, value),
                        expected,
                        "step {step}"
                    );
                }
                8 => {
                    let old = rng.next() % 4;
                    let expected = model.get(&key) == Some(&old);
                    if expected {
                        model.remove(&key);
                    }
                    assert_eq!(map.compare_and_delete(&key, &old), expected, "step {step}");
                }
                9 => {
                    if rng.next() % 64 == 0 {
                        map.clear();
                        model.clear();
                    }
                    let mut seen = HashMap::new();
                    map.range(|k, v| {
                        assert!(seen.insert(*k, *v).is_none(), "key visited twice");
                        true
                    });
                    assert_eq!(seen, model, "step {step}");
                }
                _ => {
                    let expected = match model.get(&key) {
                        Some(&v) => (v, true),
                        None => {
                            model.insert(key, value);
                            (value, false)
                        }
                    };
                    assert_eq!(
                        map.load_or_store_with(key, || value),
                        expected,
                        "step {step}"
                    );
                }
            }
            assert_eq!(map.len(), model.len(), "len at step {step}");
        }
    }
}

/// A key that counts its drops, to see that entries expunged by a promotion cycle are freed.
struct CountedKey(u64, Arc<std::sync::atomic::AtomicUsize>);
impl PartialEq for CountedKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for CountedKey {}
impl std::hash::Hash for CountedKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}
impl Drop for CountedKey {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn entries_leave_the_map_through_promotion_delete_and_clear() {
    let drops = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let key = |k| CountedKey(k, Arc::clone(&drops));
    let map: SyncMap<CountedKey, u64> = SyncMap::new();
    let mut created = 0;
    for round in 0..50u64 {
        for k in 0..8 {
            map.store(key(round * 100 + k), k);
            created += 1;
        }
        map.range(|_, _| true); // promotes: the keys are now in the read snapshot
        for k in 0..4 {
            map.delete(&key(round * 100 + k));
            created += 1; // the lookup key itself
        }
        // A new key starts the copy into a new dirty map, which expunges the deleted
        // entries; the next promotion takes them out of the map.
        map.store(key(round * 100 + 50), 50);
        created += 1;
        map.range(|_, _| true);
        if round % 10 == 9 {
            map.clear();
        }
    }
    drop(map);
    assert_eq!(drops.load(Ordering::SeqCst), created);
}

/// New keys stored and deleted again leave no bits in the snapshot's filter: with one new
/// key present after 100 that came and went, negative lookups of other keys still answer
/// without the lock (before the filter was emptied in place, about one in ten took it).
#[test]
fn keys_that_come_and_go_leave_the_filter_empty() {
    // One shard, so that all the keys share its filter.
    let map: SyncMap<u64, u64> = SyncMap::with_shards_and_hasher(1, RandomState::new());
    (&map).extend((0..4).map(|k| (k, k)));
    map.range(|_, _| true); // promotes 0..4 into the snapshot
    let snapshot = map.shard_at(0, 0).snapshot_ptr();
    for k in 100..200 {
        map.store(k, k);
        map.delete(&k);
    }
    map.store(1000, 1000);
    assert_eq!(map.shard_at(0, 0).snapshot_ptr(), snapshot, "no promotion");
    let guard = sync::enter(&map.collector);
    let read = map.shard_at(0, 0).snapshot(&guard);
    assert!(read.amended());
    assert!(read.may_be_dirty(map.hash(&1000u64)));
    let locked = (0..10_000u64)
        .filter(|k| read.may_be_dirty(map.hash(&(k + 1_000_000))))
        .count();
    assert!(
        locked <= 100,
        "{locked} of 10000 negative lookups would lock"
    );
    drop(guard);
    assert_eq!(map.len(), 5);
    assert!((0..4).chain([1000]).all(|k| map.load(&k) == Some(k)));
    assert!((100..200).all(|k| map.load(&k).is_none()));
}

/// A value being read stays intact while the same thread replaces it, deletes its key and
/// clears the map: for first values kept in the entry (`u64`, and `String`, which has drop
/// glue) and for boxed ones (a pair of `String`s, too large for the entry, and a replaced
/// `u64`). Miri checks that nothing read was freed.
#[test]
fn a_value_being_read_survives_its_replacement_deletion_and_clear() {
    let small: SyncMap<u64, u64> = SyncMap::new();
    small.store(1, 10);
    small.range(|_, _| true); // in the snapshot: later swaps are lock-free
    for round in 0..3u64 {
        let seen = small.load_with(&1, |first| {
            let before = *first;
            small.store(1, before + 1);
            assert_eq!(*first, before, "the value read changed under the reader");
            small.delete(&1);
            small.clear();
            assert_eq!(*first, before);
            before
        });
        assert_eq!(seen, Some(10 + round));
        assert_eq!(small.load(&1), None);
        small.store(1, 11 + round);
    }
    let boxed: SyncMap<u64, String> = SyncMap::new();
    boxed.store(1, "first".to_string());
    let seen = boxed.load_with(&1, |first| {
        boxed.store(1, "second".to_string());
        boxed.clear();
        first.clone()
    });
    assert_eq!(seen.as_deref(), Some("first"));
    assert!(boxed.is_empty());
    let large: SyncMap<u64, (String, String)> = SyncMap::new();
    large.store(1, ("first".to_string(), String::new()));
    let seen = large.load_with(&1, |first| {
        large.store(1, ("second".to_string(), String::new()));
        large.clear();
        first.0.clone()
    });
    assert_eq!(seen.as_deref(), Some("first"));
    assert!(large.is_empty());
}

/// A value with drop glue that counts its drops, and can be told to panic in its `Drop`.
struct DropValue {
    drops: Arc<std::sync::atomic::AtomicUsize>,
    panics: bool,
}
/// Every value equals every other: `compare_and_delete` deletes whatever is there.
impl PartialEq for DropValue {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Drop for DropValue {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if self.panics && !std::thread::panicking() {
            panic!("a value's Drop panicked");
        }
    }
}

/// A first value with drop glue lives in its entry: replaced, deleted, expunged, cleared or
/// dropped with the map, it is dropped exactly once, after the readers that held it, and the
/// entry's memory outlives it (miri checks both, and the leak of any allocation). A first
/// value whose `Drop` panics still leaves every value dropped once and nothing leaked.
#[test]
fn first_values_with_drop_glue_are_dropped_once_whatever_leaves_first() {
    let drops = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let value = |panics| DropValue {
        drops: Arc::clone(&drops),
        panics,
    };
    const { assert!(Entry::<u64, DropValue>::COUNTED) };
    let mut made = 0;
    {
        let map: SyncMap<u64, DropValue> = SyncMap::new();
        for k in 0..40u64 {
            map.store(k, value(false));
            made += 1;
        }
        map.range(|_, _| true); // in the snapshot: the updates below are lock-free
        for k in 0..40u64 {
            match k % 5 {
                // The first value is unlinked while the entry stays.
                0 => {
                    map.store(k, value(false));
                    made += 1;
                }
                1 => map.delete(&k),
                // Unlinked while read: the reader's value is dropped after it.
                2 => {
                    map.load_with(&k, |_| {
                        map.store(k, value(false));
                        made += 1;
                    });
                }
                3 => {
                    let _ = map.compare_and_delete(&k, &value(false));
                    made += 1;
                }
                _ => {}
            }
        }
        // A new key starts a copy that expunges the deleted entries; the promotions retire
        // them, with their first values retired earlier or never unlinked.
        map.store(1_000, value(false));
        made += 1;
        map.range(|_, _| true);
        map.store(1_001, value(false));
        made += 1;
        for k in (0..40u64).step_by(3) {
            map.delete(&k);
        }
        map.clear();
        for k in 0..10u64 {
            map.store(k, value(false));
            made += 1;
        }
        map.range(|_, _| true);
        map.store(3, value(false)); // key 3's first value left while the map is dropped
        made += 1;
    }
    assert_eq!(drops.load(Ordering::SeqCst), made);

    // A panicking `Drop` of a replaced first value surfaces from a later operation (the
    // reclamation pass that runs it) or the map's drop; every value is still dropped once.
    // (Which operation runs the pass depends on the collector's batch size: the count of
    // values made stops there.)
    drops.store(0, Ordering::SeqCst);
    let made = std::cell::Cell::new(0);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let map: SyncMap<u64, DropValue> = SyncMap::new();
        let store = |k, panics| {
            made.set(made.get() + 1);
            map.store(k, value(panics));
        };
        store(1, true);
        map.range(|_, _| true);
        store(1, false);
        for k in 2..200u64 {
            store(k, false);
            map.delete(&k);
        }
    }));
    assert!(
        result.is_err(),
        "the panic of the first value's Drop was lost"
    );
    assert!(made.get() > 2);
    assert_eq!(drops.load(Ordering::SeqCst), made.get());
}

/// After a bulk load, the keys stored since the last promotion are only in the dirty map;
/// reading them must make them lock-free after half of the dirty map's length in misses
/// (not before a quarter, and not after Go's full length). One shard, so that the dirty
/// map holds every key.
#[test]
fn reads_of_dirty_only_keys_promote_after_half_the_length() {
    let len = 3000u64;
    let map: SyncMap<u64, u64> = SyncMap::with_shards_and_hasher(1, RandomState::new());
    (&map).extend((0..len).map(|k| (k, k)));
    let last = len - 1;
    let in_snapshot = |key: u64| {
        let guard = sync::enter(&map.collector);
        let hash = map.hash(&key);
        find(&map.shard(hash).snapshot(&guard).table, hash, &key).is_some()
    };
    assert!(!in_snapshot(last), "the bulk load left a dirty-only tail");
    for _ in 0..len / 4 {
        assert_eq!(map.load(&last), Some(last));
    }
    assert!(!in_snapshot(last), "not promoted after len / 4 misses");
    for _ in len / 4..len / 2 {
        assert_eq!(map.load(&last), Some(last));
    }
    assert!(in_snapshot(last), "promoted after len / 2 misses");
    assert!((0..len).all(|k| map.load(&k) == Some(k)));
    assert_eq!(map.len(), len as usize);
}

/// A map of one shard whose read snapshot holds keys `0..len` (each key its own value).
fn one_shard_promoted(len: u64) -> SyncMap<u64, u64> {
    let map: SyncMap<u64, u64> = SyncMap::with_shards_and_hasher(1, RandomState::new());
    (&map).extend((0..len).map(|k| (k, k)));
    map.range(|_, _| true); // promotes: a snapshot of `len` entries
    map
}

/// How many entries the dirty table of a one-shard map holds without growing.
fn dirty_table_capacity(map: &SyncMap<u64, u64>) -> usize {
    let guard = sync::enter(&map.collector);
    let dirty = sync::lock(&map.shard_at(0, 0).get().dirty, &map.collector, &guard);
    dirty.capacity()
}

/// How many entries the read snapshot's table of a one-shard map holds.
fn snapshot_table_capacity(map: &SyncMap<u64, u64>) -> usize {
    let guard = sync::enter(&map.collector);
    map.shard_at(0, 0).snapshot(&guard).table.capacity()
}

/// Reads `key`, a dirty-only key of a one-shard map, until its misses promote the dirty map.
fn read_until_promoted(map: &SyncMap<u64, u64>, key: u64) {
    let snapshot = map.shard_at(0, 0).snapshot_ptr();
    while map.shard_at(0, 0).snapshot_ptr() == snapshot {
        assert_eq!(map.load(&key), Some(key));
    }
}

/// A shard whose promotion cycles end on misses with few new keys (a bounded cache: the
/// snapshot keeps its size) gets a dirty table sized for twice the previous cycle's new keys,
/// not for the whole room of the cycle (which left most buckets empty); a cycle that takes
/// more new keys than that grows the table, loses none and stays exact.
#[test]
fn a_cycle_that_ended_on_misses_sizes_the_next_table_by_its_new_keys() {
    let len: u64 = if cfg!(miri) { 300 } else { 3000 };
    let map = one_shard_promoted(len);
    let shard = map.shard_at(0, 0);
    // A cycle of 100 new keys, ended by reading them (misses) rather than by its room.
    (&map).extend((len..len + 100).map(|k| (k, k)));
    read_until_promoted(&map, len + 99);
    let room = {
        let guard = sync::enter(&map.collector);
        shard.snapshot(&guard).dirty_capacity() as u64
    };
    // The next cycle: twice 100 new keys (at least SMALL_CYCLE) on top of the snapshot, not the
    // whole room.
    map.store(len + 100, 0);
    let sized = dirty_table_capacity(&map) as u64;
    let entries = len + 100;
    assert!(
        (entries + 200..entries + room).contains(&sized),
        "sized for {sized} entries ({entries} in the snapshot, room for {room} new keys)"
    );
    // A burst beyond that, within the room (no promotion): the table grows, every key arrives.
    let end = len + 101 + room * 3 / 4;
    assert!(
        end - entries > sized - entries,
        "the burst overflows the table"
    );
    (&map).extend((len + 101..end).map(|k| (k, k)));
    assert!(dirty_table_capacity(&map) as u64 > sized, "the table grew");
    assert_eq!(map.len(), end as usize);
    assert!((0..end).all(|k| map.load(&k) == Some(if k == len + 100 { 0 } else { k })));
}

/// A cycle allocates its dirty table for its whole room of new keys; one that ends on misses
/// after a few must not publish that table, mostly empty buckets, as the snapshot (which never
/// grows, and on a map that stops taking new keys stays for good): the snapshot is rehashed
/// into the fewest buckets that hold its entries.
#[test]
fn a_snapshot_promoted_early_in_its_cycle_fits_its_entries() {
    let len: u64 = if cfg!(miri) { 300 } else { 3000 };
    let map = one_shard_promoted(len);
    // A cycle of 100 new keys, ended by reading them (misses) rather than by its room.
    (&map).extend((len..len + 100).map(|k| (k, k)));
    let allocated = dirty_table_capacity(&map);
    let fitting = table_with_capacity::<u64, u64>((len + 100) as usize).capacity();
    assert!(
        allocated >= 2 * fitting,
        "the cycle allocated for its room: {allocated} entries, {fitting} fit"
    );
    read_until_promoted(&map, len + 99);
    assert_eq!(
        snapshot_table_capacity(&map),
        fitting,
        "the promoted snapshot fits its entries"
    );
    assert_eq!(map.len(), (len + 100) as usize);
    assert!((0..len + 100).all(|k| map.load(&k) == Some(k)));
}

/// A map that grew, then stopped: its last cycle was given room for many more new keys than it
/// took. Its table promotes (and is rehashed to fit) once its new keys were each missed once
/// on average, not after half its length in misses, so that the room's memory does not stay
/// on a map that takes no more keys. A cycle whose table has no such unused room still waits
/// for half its length.
#[test]
fn a_cycle_with_unused_room_promotes_once_its_new_keys_were_missed() {
    // Keys one at a time until a cycle fills its room (its last insert promotes): the next
    // cycle is given the whole room, as when a growing map stops.
    let map: SyncMap<u64, u64> = SyncMap::with_shards_and_hasher(1, RandomState::new());
    let min_len: u64 = if cfg!(miri) { 1000 } else { 3000 };
    let mut len = 0;
    loop {
        let snapshot = map.shard_at(0, 0).snapshot_ptr();
        map.store(len, len);
        len += 1;
        if len >= min_len && map.shard_at(0, 0).snapshot_ptr() != snapshot {
            break;
        }
    }
    // Enough locked operations to finish the copy of the snapshot (32 buckets each).
    let new_keys = len / 20 + locked::MIN_PROMOTION_MISSES as u64;
    (&map).extend((len..len + new_keys).map(|k| (k, k)));
    let entries = (len + new_keys) as usize;
    assert!(
        dirty_table_capacity(&map) >= locked::UNUSED_ROOM_FACTOR * entries,
        "the cycle was given room for {} entries, {entries} are there",
        dirty_table_capacity(&map)
    );
    let snapshot = map.shard_at(0, 0).snapshot_ptr();
    for k in len..len + new_keys - 1 {
        assert_eq!(map.load(&k), Some(k));
    }
    assert_eq!(
        map.shard_at(0, 0).snapshot_ptr(),
        snapshot,
        "not promoted before the misses reach the new keys"
    );
    assert_eq!(map.load(&(len + new_keys - 1)), Some(len + new_keys - 1));
    assert_ne!(
        map.shard_at(0, 0).snapshot_ptr(),
        snapshot,
        "promoted once the misses reach the new keys ({new_keys} of {entries} entries)"
    );
    assert_eq!(
        snapshot_table_capacity(&map),
        table_with_capacity::<u64, u64>(entries).capacity(),
        "the promoted snapshot fits its entries"
    );
    assert!((0..len + new_keys).all(|k| map.load(&k) == Some(k)));

    // The next cycle is sized by the new keys of this one: no unused room, Go's rule (halved).
    let more = len + new_keys;
    (&map).extend((more..more + new_keys).map(|k| (k, k)));
    let entries = (more + new_keys) as usize;
    assert!(dirty_table_capacity(&map) < locked::UNUSED_ROOM_FACTOR * entries);
    let snapshot = map.shard_at(0, 0).snapshot_ptr();
    for k in more..more + new_keys {
        assert_eq!(map.load(&k), Some(k));
    }
    assert_eq!(
        map.shard_at(0, 0).snapshot_ptr(),
        snapshot,
        "a table without unused room waits for half its length in misses"
    );
    read_until_promoted(&map, more);
    assert_eq!(map.len(), entries);
}

/// Threads delete and store again keys of the read snapshot (lock-free paths that change the
/// count, each thread on its own stripe) and new keys (locked paths); the count must come
/// out exact. A stripe written by two threads with plain stores would lose updates here.
#[test]
fn len_is_exact_after_concurrent_lock_free_and_locked_updates() {
    let threads = 4u64;
    let rounds = if cfg!(miri) { 50 } else { 20_000 };
    let map: Arc<SyncMap<u64, u64>> = Arc::new((0..threads * 10).map(|k| (k, k)).collect());
    map.range(|_, _| true); // promote: the keys above are in the read snapshot
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let map = Arc::clone(&map);
            std::thread::spawn(move || {
                for round in 0..rounds {
                    let own = t * 10 + round % 10;
                    assert_eq!(map.load_and_delete(&own), Some(own));
                    map.store(own, own);
                    let new = 1_000 + t * rounds + round;
                    map.store(new, new);
                    if round % 2 == 0 {
                        map.delete(&new);
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let expected = threads * 10 + threads * (rounds / 2);
    assert_eq!(map.len() as u64, expected);
    let mut counted = 0;
    map.range(|_, _| {
        counted += 1;
        true
    });
    assert_eq!(counted, expected);
}

/// Threads store, swap, delete, load and range over a few shared keys while the map promotes
/// and copies; every value read must be one some thread stored for that key, and miri (which
/// runs this too) checks that no value is read after it is freed.
#[test]
fn concurrent_mixed_operations_read_only_stored_values() {
    let rounds = if cfg!(miri) { 60 } else { 20_000 };
    let map: Arc<SyncMap<u64, Box<u64>>> = Arc::new(SyncMap::new());
    let threads: Vec<_> = (0..3u64)
        .map(|t| {
            let map = Arc::clone(&map);
            std::thread::spawn(move || {
                let mut rng = Rng(t + 1);
                for _ in 0..rounds {
                    let key = rng.next() % 8;
                    // Values encode their key, so a mixed-up entry is caught.
                    let value = Box::new(key * 1000 + rng.next() % 1000);
                    match rng.next() % 8 {
                        0 => map.store(key, value),
                        1 => {
                            map.swap(key, value);
                        }
                        2 => map.delete(&key),
                        3 => {
                            map.load_or_store(key + 8 * (rng.next() % 4), value);
                        }
                        4 => {
                            map.compare_and_swap(&key, &value, Box::new(key * 1000));
                        }
                        5 => map.range(|k, v| {
                            assert_eq!(**v / 1000, *k % 8, "{k} -> {v}");
                            true
                        }),
                        _ => {
                            if let Some(v) = map.load(&key) {
                                assert_eq!(*v / 1000, key);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let mut seen = 0;
    map.range(|_, _| {
        seen += 1;
        true
    });
    assert_eq!(seen, map.len());
}

#[test]
fn borrowed_lookups_and_debug() {
    let map: SyncMap<String, Vec<u8>> = SyncMap::new();
    map.store("a".to_string(), vec![1]);
    assert_eq!(map.load("a"), Some(vec![1]));
    assert_eq!(format!("{map:?}"), r#"{"a": [1]}"#);
}

#[test]
fn sync_map_is_send_and_sync_for_send_sync_types() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SyncMap<String, Vec<u8>>>();
}

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

#[test]
fn a_large_old_snapshot_is_freed_by_the_next_promotion() {
    let map: SyncMap<u64, u64> = SyncMap::with_shards_and_hasher(1, RandomState::new());
    // Under miri, large is 1 KiB (see `PROMPT_RETIRE_BYTES`) and a batch 8 retirements.
    let cycle = if cfg!(miri) { 200 } else { 20_000 };
    let promoted = |cycle_number: u64| {
        let keys = cycle_number * cycle..(cycle_number + 1) * cycle;
        for k in keys.clone() {
            map.store(k, k);
        }
        // Missed loads promote the dirty map.
        for _ in 0..2 {
            for k in keys.clone() {
                assert_eq!(map.load(&k), Some(k));
            }
        }
    };
    promoted(0);
    let first = Arc::downgrade(&map.shard_at(0, 0).read.load_full());
    assert!(
        first.upgrade().unwrap().table.allocation_size() >= crate::raw::shard::PROMPT_RETIRE_BYTES,
        "the test needs a snapshot large enough to be retired promptly"
    );
    promoted(1);
    // The promotion's pass ran under the lookup's guard, which still covered the snapshot it
    // retired; the next promotion's pass frees it. Retired in a batch, it would wait for
    // 1,023 more retirements (7 under miri), and none happen here.
    promoted(2);
    assert!(
        first.upgrade().is_none(),
        "an old snapshot outlived the next promotion"
    );
    assert_eq!(map.len(), 3 * cycle as usize);
}

#[test]
fn the_copy_of_a_large_snapshot_keeps_live_keys_and_leaves_deleted_ones_out() {
    // One shard of 40,000 keys: a snapshot table of 65,536 buckets, which the copy walks with
    // its prefetching (`Dirty::PREFETCH_FROM`), in steps and, at a promotion, to the end.
    let n: u64 = if cfg!(miri) { 300 } else { 40_000 };
    let map: SyncMap<u64, u64> = SyncMap::with_shards_and_hasher(1, RandomState::new());
    let snapshot_len = |map: &SyncMap<u64, u64>| {
        let guard = sync::enter(&map.collector);
        let read = map.shard_at(0, 0).snapshot(&guard);
        (read.table.len(), read.table.num_buckets())
    };
    for k in 0..n {
        map.store(k, k);
    }
    // Reads of dirty-only keys promote the dirty table.
    for _ in 0..4 {
        for k in 0..n {
            assert_eq!(map.load(&k), Some(k));
        }
    }
    let (len, buckets) = snapshot_len(&map);
    assert_eq!(len, n as usize);
    if !cfg!(miri) {
        assert!(buckets >= crate::raw::dirty::Dirty::<u64, u64>::PREFETCH_FROM);
    }
    // Deleted in the snapshot without the lock; the next new key starts a copy of it, which
    // leaves them out (expunged), and each later locked operation copies a step of it.
    for k in (0..n).step_by(3) {
        map.delete(&k);
    }
    let live = |k: u64| k % 3 != 0 || k >= n;
    let batch = if cfg!(miri) { 50 } else { 1_000 };
    let mut next = n;
    let mut promoted = false;
    for round in 0..64 {
        for k in next..next + batch {
            map.store(k, k);
        }
        next += batch;
        for k in n..next {
            assert_eq!(map.load(&k), Some(k), "round {round}");
        }
        if snapshot_len(&map).0 == (0..next).filter(|&k| live(k)).count() {
            promoted = true;
            break;
        }
    }
    assert!(
        promoted,
        "the snapshot holds the deleted keys or misses live ones"
    );
    for k in 0..next {
        assert_eq!(map.load(&k), live(k).then_some(k), "key {k}");
    }
    assert_eq!(map.len(), (0..next).filter(|&k| live(k)).count());
}

/// The hint writers prefetch from before they lock (`ProbeHint`) says where the shard's dirty
/// table is after each new key: the table's bucket mask, and the address of its control bytes,
/// below which hashbrown lays out bucket `i` at `i + 1` buckets' distance. If hashbrown changed
/// that layout, every prefetch would miss its lines (silently: a prefetch cannot fault); this
/// test fails instead.
#[test]
fn the_probe_hint_says_where_the_dirty_tables_buckets_are() {
    let n: u64 = if cfg!(miri) { 200 } else { 3_000 };
    let map: SyncMap<u64, u64> = SyncMap::with_shards_and_hasher(1, RandomState::new());
    let mut checked = 0;
    for k in 0..n {
        map.store(k, k);
        let shard = map.shard_at(0, 0);
        let dirty = shard.dirty.lock();
        let Some(table) = dirty.table() else {
            continue; // Promoted by this store: no dirty table until the next new key.
        };
        let place = shard.probe_hint.place();
        assert_eq!(place.mask, table.num_buckets() - 1, "key {k}");
        let size = std::mem::size_of::<EntryPtr<u64, u64>>();
        for index in 0..table.num_buckets() {
            if let Some(bucket) = table.get_bucket(index) {
                let address = bucket as *const EntryPtr<u64, u64> as usize;
                assert_eq!(address, place.control - (index + 1) * size, "key {k}");
                checked += 1;
            }
        }
    }
    assert!(checked as u64 >= n, "{checked} buckets checked");
}

/// A large map's entries live in pages (`raw/epoch/pages.rs`); once they are gone, the pages
/// go back to the allocator but for the one this thread still takes entries from.
#[test]
fn a_cleared_map_gives_its_entry_pages_back() {
    let map: SyncMap<u64, u64> = SyncMap::new();
    // Past the entries a thread allocates one by one (a quarter page's worth), then pages.
    let n = if cfg!(miri) { 1_500 } else { 200_000 };
    for k in 0..n {
        map.store(k, k);
    }
    let filled = map.collector.page_count();
    assert!(filled >= 3, "{n} entries took {filled} pages");
    let mut rounds = 0;
    // The entries are retired with the snapshot `clear` replaces, and freed by a pass that
    // no guard holds back (the clear's own runs after it ends; other tests' guards are of
    // other maps).
    while map.collector.page_count() > 1 {
        rounds += 1;
        assert!(
            rounds <= 8,
            "{} of {filled} pages left after {rounds} clears",
            map.collector.page_count()
        );
        map.clear();
    }
    // New entries take the freed memory of the page left, not new pages.
    for k in 0..n / 100 {
        map.store(k, k);
    }
    assert_eq!(map.collector.page_count(), 1);
    assert_eq!(map.len(), (n / 100) as usize);
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
