//! `compare_and_remove`: the removal of an entry by its hash and its value (a bounded memo's
//! evictions), and what it leaves in the dirty map.

use super::*;

/// A value compared by identity (what `compare_and_remove` requires).
#[derive(Debug)]
struct Id(Arc<u64>);

impl PartialEq for Id {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl IdentityEq for Id {}

/// `compare_and_remove` takes a key that only the dirty map has out of it at once (not left
/// there deleted, to be promoted and copied): the dirty table and its count of keys the
/// snapshot lacks lose it, and with the last such key the filter is emptied, so negative
/// lookups stay lock-free. A value that is not the one given stays; keys of the snapshot are
/// deleted lock-free as by `compare_and_delete`; the count stays exact.
#[test]
fn compare_and_remove_takes_dirty_only_keys_out_of_the_dirty_map() {
    let map: SyncMap<u64, Id> = SyncMap::with_shards_and_hasher(1, RandomState::new());
    let values: Vec<Arc<u64>> = (0..8).map(Arc::new).collect();
    let id = |k: u64| Id(Arc::clone(&values[k as usize]));
    (&map).extend((0..4).map(|k| (k, id(k))));
    map.range(|_, _| true); // promotes 0..4 into the snapshot
    let snapshot = map.shard_at(0, 0).snapshot_ptr();
    map.store(4, id(4));
    map.store(5, id(5));
    let dirty_state = || {
        let guard = sync::enter(&map.collector);
        let read = map.shard_at(0, 0).snapshot(&guard);
        let dirty = sync::lock(&map.shard_at(0, 0).get().dirty, &map.collector, &guard);
        (dirty.dirty_only, dirty.len(), read.amended())
    };
    assert_eq!(dirty_state(), (2, 6, true));
    assert!(
        !map.compare_and_remove(map.hash(&4u64), &id(5)),
        "not its value"
    );
    assert!(map.compare_and_remove(map.hash(&4u64), &id(4)));
    assert_eq!(dirty_state(), (1, 5, true));
    assert!(
        !map.compare_and_remove(map.hash(&4u64), &id(4)),
        "already gone"
    );
    assert!(map.compare_and_remove(map.hash(&5u64), &id(5)));
    assert_eq!(dirty_state(), (0, 4, false), "the filter was emptied");
    assert!(
        map.compare_and_remove(map.hash(&1u64), &id(1)),
        "a key of the snapshot"
    );
    assert!(!map.compare_and_remove(map.hash(&2u64), &id(3)));
    assert_eq!(map.shard_at(0, 0).snapshot_ptr(), snapshot, "no promotion");
    assert_eq!(map.len(), 3);
    let mut keys = Vec::new();
    map.range(|k, _| {
        keys.push(*k);
        true
    });
    keys.sort_unstable();
    assert_eq!(keys, [0, 2, 3]);
    // Stored again after its removal: a new entry.
    map.store(4, id(6));
    assert_eq!(map.load_with(&4, |v| *v.0), Some(6));
    assert_eq!(map.len(), 4);
}

/// Removing a dirty-only key is not a miss: promotion pays for lookups that it would make
/// lock-free, and a removed key has none to come (a bounded cache removes most of the keys it
/// rejects while they are dirty-only; counting them doubled its promotions). Removals that find
/// nothing are misses, as lookups that find nothing are.
#[test]
fn removals_of_dirty_only_keys_do_not_hasten_promotion() {
    let len: u64 = if cfg!(miri) { 300 } else { 3000 };
    let map: SyncMap<u64, Id> = SyncMap::with_shards_and_hasher(1, RandomState::new());
    let values: Vec<Arc<u64>> = (0..len).map(Arc::new).collect();
    let id = |k: u64| Id(Arc::clone(&values[k as usize]));
    (&map).extend((0..len).map(|k| (k, id(k))));
    let snapshot = map.shard_at(0, 0).snapshot_ptr();
    let misses = || {
        let guard = sync::enter(&map.collector);
        sync::lock(&map.shard_at(0, 0).get().dirty, &map.collector, &guard).misses
    };
    let before = misses();
    // Half the keys, dirty-only after the bulk load, leave by `delete` and `compare_and_remove`.
    for k in (len / 2..len).rev() {
        if k % 2 == 0 {
            map.delete(&k);
        } else {
            assert!(map.compare_and_remove(map.hash(&k), &id(k)), "key {k}");
        }
    }
    assert_eq!(
        misses(),
        before,
        "removals that took a key out counted as misses"
    );
    assert_eq!(
        map.shard_at(0, 0).snapshot_ptr(),
        snapshot,
        "promoted by removals"
    );
    // A removal that finds no entry of the hash holding the value still counts (a dirty-only
    // key: the bulk load promoted the first 128 keys only, then 384 and 1,408).
    let last = len / 2 - 1;
    assert!(!map.compare_and_remove(map.hash(&last), &id(0)));
    assert_eq!(misses(), before + 1);
    assert!((0..len).all(|k| map.load_with(&k, |v| *v.0) == (k < len / 2).then_some(k)));
    assert_eq!(map.len(), (len / 2) as usize);
}

/// A hasher that gives every key the same hash.
#[derive(Default)]
struct SameHash;

impl std::hash::Hasher for SameHash {
    fn finish(&self) -> u64 {
        0x0123_4567_89ab_cdef
    }

    fn write(&mut self, _: &[u8]) {}
}

/// `compare_and_remove` finds the entry by the hash and the value alone: among keys of one
/// hash it removes the one whose value is the one given (by identity, not by equality), from
/// the dirty table or from the snapshot, and no other.
#[test]
fn compare_and_remove_finds_the_value_among_keys_of_one_hash() {
    let map: SyncMap<u64, Id, std::hash::BuildHasherDefault<SameHash>> =
        SyncMap::with_shards_and_hasher(1, Default::default());
    let values: Vec<Arc<u64>> = (0..6).map(Arc::new).collect();
    let id = |k: u64| Id(Arc::clone(&values[k as usize]));
    (&map).extend((0..3).map(|k| (k, id(k))));
    map.range(|_, _| true); // promotes 0..3 into the snapshot
    (&map).extend((3..6).map(|k| (k, id(k)))); // 3..6 only in the dirty map
    let hash = map.hash(&0u64);
    assert_eq!((0..6).map(|k| map.hash(&k)).collect::<Vec<_>>(), [hash; 6]);
    assert!(
        !map.compare_and_remove(hash, &Id(Arc::new(1))),
        "an equal value, not the one stored"
    );
    assert!(map.compare_and_remove(hash, &id(4)), "dirty-only");
    assert!(map.compare_and_remove(hash, &id(1)), "in the snapshot");
    assert!(!map.compare_and_remove(hash, &id(4)), "already gone");
    assert_eq!(map.len(), 4);
    let mut kept = Vec::new();
    map.range(|k, v| {
        kept.push((*k, *v.0));
        true
    });
    kept.sort_unstable();
    assert_eq!(kept, [(0, 0), (2, 2), (3, 3), (5, 5)]);
}
