//! Unit tests of `SyncMap` that look at its internals: operations against a model, what
//! leaves the map and when (drops, the filter, pages), exact counts under concurrency. A
//! shard's cycles are in `cycles`, splitting in `split`, removal by value in `removal`.

use super::*;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

mod cycles;
mod removal;
mod split;

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
