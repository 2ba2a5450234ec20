//! A shard's cycles: when the dirty map is promoted, how large the tables of the next cycle
//! and the promoted snapshot are, the copy of the snapshot into the next dirty map, and when
//! an old snapshot is freed.

use super::*;

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
