//! Model-based test: random sequences of every operation, applied to `SyncMap` and to a
//! `HashMap` reference; every result and the final contents must agree. Also on two threads at
//! once, each with its own keys and its own reference. The values are `u8`s, or `u8`s with drop
//! glue that count their live instances (stored in their entries like a `String` or an `Arc`):
//! once the map is dropped, none may be left, and none dropped twice.
//!
//! Cases: `PROPTEST_CASES` (default 256, fewer under miri). Long run:
//! `PROPTEST_CASES=100000 cargo test -p syncmap-core --release --test model`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use proptest::prelude::*;
use syncmap_core::SyncMap;

/// An operation on keys of type `K` (generated as `u8`, applied as a share's `u16`).
#[derive(Debug, Clone, Copy)]
enum Op<K = u8> {
    Load(K),
    LoadWith(K),
    Contains(K),
    Store(K, u8),
    LoadOrStore(K, u8),
    LoadOrStoreWith(K, u8),
    LoadAndDelete(K),
    Delete(K),
    Swap(K, u8),
    CompareAndSwap(K, u8, u8),
    CompareAndDelete(K, u8),
    Range(u8),
    Clear,
    Len,
    /// Splits a map that has one shard in use (a no-op otherwise); changes no key.
    Split,
}

fn op(keys: u8) -> impl Strategy<Value = Op> {
    let k = 0..keys;
    let v = 0..4u8;
    prop_oneof![
        4 => k.clone().prop_map(Op::Load),
        1 => k.clone().prop_map(Op::LoadWith),
        1 => k.clone().prop_map(Op::Contains),
        3 => (k.clone(), v.clone()).prop_map(|(k, v)| Op::Store(k, v)),
        2 => (k.clone(), v.clone()).prop_map(|(k, v)| Op::LoadOrStore(k, v)),
        1 => (k.clone(), v.clone()).prop_map(|(k, v)| Op::LoadOrStoreWith(k, v)),
        2 => k.clone().prop_map(Op::LoadAndDelete),
        2 => k.clone().prop_map(Op::Delete),
        2 => (k.clone(), v.clone()).prop_map(|(k, v)| Op::Swap(k, v)),
        2 => (k.clone(), v.clone(), v.clone()).prop_map(|(k, o, n)| Op::CompareAndSwap(k, o, n)),
        2 => (k.clone(), v.clone()).prop_map(|(k, o)| Op::CompareAndDelete(k, o)),
        1 => (0..8u8).prop_map(Op::Range),
        1 => Just(Op::Clear),
        1 => Just(Op::Len),
        1 => Just(Op::Split),
    ]
}

/// Which keys a sequence works on: its own share of the map when several run at once.
#[derive(Clone, Copy)]
struct Share {
    /// This sequence's index among `of`.
    index: u16,
    /// How many sequences share the map.
    of: u16,
}

impl Share {
    const ALONE: Share = Share { index: 0, of: 1 };

    fn key(self, k: u8) -> u16 {
        u16::from(k) * self.of + self.index
    }

    fn owns(self, key: u16) -> bool {
        key % self.of == self.index
    }
}

/// How a map is sharded: with a number of read/dirty shards from the start, or with one that
/// splits into that many (on an `Op::Split`, or by itself on contention or growth).
#[derive(Debug, Clone, Copy)]
enum Shards {
    Fixed(usize),
    Splitting(usize),
}

/// A map's value: a `u8`, possibly wrapped.
trait Value: Clone + PartialEq + Debug + Send + Sync {
    fn get(&self) -> u8;
}

impl Value for u8 {
    fn get(&self) -> u8 {
        *self
    }
}

/// A `u8` with drop glue that counts its live instances (+1 when made or cloned, -1 when
/// dropped): 16 bytes, so a first value lives in its entry and is dropped apart from it.
#[derive(Debug)]
struct Tracked(u8, Arc<AtomicIsize>);

impl Tracked {
    fn new(v: u8, live: &Arc<AtomicIsize>) -> Tracked {
        live.fetch_add(1, Ordering::Relaxed);
        Tracked(v, Arc::clone(live))
    }
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        Tracked::new(self.0, &self.1)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.1.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PartialEq for Tracked {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Value for Tracked {
    fn get(&self) -> u8 {
        self.0
    }
}

/// A map sharded as said (small key sets then still span several shards).
fn map<V>(shards: Shards) -> SyncMap<u16, V> {
    let hasher = std::collections::hash_map::RandomState::new();
    match shards {
        Shards::Fixed(n) => SyncMap::with_shards_and_hasher(n, hasher),
        Shards::Splitting(n) => SyncMap::splitting_into_shards_with_hasher(n, hasher),
    }
}

/// Shardings to test: one shard (a single read/dirty pair), a few, the most a map has, and one
/// shard splitting into a few or into the most.
fn shards() -> impl Strategy<Value = Shards> {
    prop::sample::select(vec![
        Shards::Fixed(1),
        Shards::Fixed(2),
        Shards::Fixed(16),
        Shards::Splitting(2),
        Shards::Splitting(16),
    ])
}

fn check<V: Value>(ops: &[Op], shards: Shards, make: &(impl Fn(u8) -> V + Sync)) {
    let map = map(shards);
    let model = run(&map, ops, Share::ALONE, make);
    let mut contents = HashMap::new();
    map.range(|k, v| {
        contents.insert(*k, v.get());
        true
    });
    assert_eq!(contents, model);
    assert_eq!(map.len(), model.len());
}

/// `check` with tracked values, then the drop accounting once the map is gone.
fn check_tracked(ops: &[Op], shards: Shards) {
    let live = Arc::new(AtomicIsize::new(0));
    check(ops, shards, &|v| Tracked::new(v, &live));
    assert_eq!(
        live.load(Ordering::Relaxed),
        0,
        "values leaked or dropped twice"
    );
}

/// Applies `ops` to `map` and to a reference model of this share's keys, checking every result;
/// returns the model. With other shares running concurrently, `Clear` is skipped (it would
/// remove their keys), `Len` is not checked, and `range` is checked on this share's keys only:
/// no other thread changes them, so even a non-snapshot `range` must see exactly the model.
fn run<V: Value>(
    map: &SyncMap<u16, V>,
    ops: &[Op],
    share: Share,
    make: &impl Fn(u8) -> V,
) -> HashMap<u16, u8> {
    let alone = share.of == 1;
    let mut model: HashMap<u16, u8> = HashMap::new();
    for (step, op) in ops.iter().enumerate() {
        let op: Op<u16> = match *op {
            Op::Load(k) => Op::Load(share.key(k)),
            Op::LoadWith(k) => Op::LoadWith(share.key(k)),
            Op::Contains(k) => Op::Contains(share.key(k)),
            Op::Store(k, v) => Op::Store(share.key(k), v),
            Op::LoadOrStore(k, v) => Op::LoadOrStore(share.key(k), v),
            Op::LoadOrStoreWith(k, v) => Op::LoadOrStoreWith(share.key(k), v),
            Op::LoadAndDelete(k) => Op::LoadAndDelete(share.key(k)),
            Op::Delete(k) => Op::Delete(share.key(k)),
            Op::Swap(k, v) => Op::Swap(share.key(k), v),
            Op::CompareAndSwap(k, o, n) => Op::CompareAndSwap(share.key(k), o, n),
            Op::CompareAndDelete(k, o) => Op::CompareAndDelete(share.key(k), o),
            Op::Range(n) => Op::Range(n),
            Op::Split => Op::Split,
            Op::Clear if alone => Op::Clear,
            Op::Len if alone => Op::Len,
            Op::Clear | Op::Len => continue,
        };
        match op {
            Op::Load(k) => assert_eq!(
                map.load(&k).map(|v| v.get()),
                model.get(&k).copied(),
                "{step}: {op:?}"
            ),
            Op::LoadWith(k) => assert_eq!(
                map.load_with(&k, |v| u16::from(v.get()) + 1),
                model.get(&k).map(|v| u16::from(*v) + 1),
                "{step}: {op:?}"
            ),
            Op::Contains(k) => assert_eq!(map.contains_key(&k), model.contains_key(&k)),
            Op::Store(k, v) => {
                map.store(k, make(v));
                model.insert(k, v);
            }
            Op::LoadOrStore(k, v) | Op::LoadOrStoreWith(k, v) => {
                let expected = match model.get(&k) {
                    Some(&old) => (old, true),
                    None => {
                        model.insert(k, v);
                        (v, false)
                    }
                };
                let (actual, loaded) = if matches!(op, Op::LoadOrStore(..)) {
                    map.load_or_store(k, make(v))
                } else {
                    let mut ran = false;
                    let result = map.load_or_store_with(k, || {
                        ran = true;
                        make(v)
                    });
                    assert_eq!(ran, !expected.1, "the closure runs only on a miss");
                    result
                };
                let actual = (actual.get(), loaded);
                assert_eq!(actual, expected, "{step}: {op:?}");
            }
            Op::LoadAndDelete(k) => {
                assert_eq!(
                    map.load_and_delete(&k).map(|v| v.get()),
                    model.remove(&k),
                    "{step}: {op:?}"
                )
            }
            Op::Delete(k) => {
                map.delete(&k);
                model.remove(&k);
            }
            Op::Swap(k, v) => assert_eq!(
                map.swap(k, make(v)).map(|v| v.get()),
                model.insert(k, v),
                "{step}: {op:?}"
            ),
            Op::CompareAndSwap(k, old, new) => {
                let expected = model.get(&k) == Some(&old);
                if expected {
                    model.insert(k, new);
                }
                assert_eq!(
                    map.compare_and_swap(&k, &make(old), make(new)),
                    expected,
                    "{step}: {op:?}"
                );
            }
            Op::CompareAndDelete(k, old) => {
                let expected = model.get(&k) == Some(&old);
                if expected {
                    model.remove(&k);
                }
                assert_eq!(
                    map.compare_and_delete(&k, &make(old)),
                    expected,
                    "{step}: {op:?}"
                );
            }
            Op::Range(stop_after) => {
                let mut seen = HashMap::new();
                let mut visited = std::collections::HashSet::new();
                map.range(|k, v| {
                    assert!(visited.insert(*k), "a key visited twice");
                    if share.owns(*k) {
                        seen.insert(*k, v.get());
                    }
                    visited.len() < usize::from(stop_after) + 1 || stop_after == 7
                });
                if stop_after == 7 {
                    assert_eq!(seen, model, "{step}: full range");
                } else {
                    assert!(
                        visited.len() <= usize::from(stop_after) + 1,
                        "range did not stop"
                    );
                    for (k, v) in &seen {
                        assert_eq!(model.get(k), Some(v), "{step}: range saw {k} -> {v}");
                    }
                }
            }
            Op::Clear => {
                map.clear();
                model.clear();
            }
            Op::Len => assert_eq!(map.len(), model.len(), "{step}: len"),
            Op::Split => {
                let before = map.shards_in_use();
                map.split();
                assert!(
                    map.shards_in_use() >= before,
                    "{step}: a split never merges"
                );
            }
        }
    }
    model
}

/// The values-with-drop-glue runs: under miri, half the cases of the plain runs (which cover
/// the map's logic there; these add the drops, and took miri as long again as the whole test).
fn config_with_drop_glue() -> ProptestConfig {
    let config = config();
    ProptestConfig {
        cases: if cfg!(miri) { 2 } else { config.cases },
        ..config
    }
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(if cfg!(miri) { 4 } else { 256 });
    ProptestConfig {
        cases,
        // A fixed seed: failures reproduce; the long run varies it with PROPTEST_RNG_SEED.
        rng_seed: proptest::test_runner::RngSeed::Fixed(
            std::env::var("PROPTEST_RNG_SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0x5eed),
        ),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Few keys: deleted keys are stored again (expunged entries come back).
    #[test]
    fn few_keys(
        ops in proptest::collection::vec(op(6), 1..if cfg!(miri) { 60 } else { 400 }),
        shards in shards(),
    ) {
        check(&ops, shards, &|v| v);
    }

    /// More keys: loads of absent keys drive promotions and the incremental copy.
    #[test]
    fn many_keys(
        ops in proptest::collection::vec(op(200), 1..if cfg!(miri) { 60 } else { 1500 }),
        shards in shards(),
    ) {
        check(&ops, shards, &|v| v);
    }



    /// Two sequences on two threads at once, each on its own keys of one map and checked
    /// against its own model: one thread's promotions, copies and expunges must never change
    /// what the other observes. (Which interleaving runs is up to the scheduler, so a failure
    /// may not reproduce from its seed; the sequences are printed.)
    #[test]
    fn two_threads_disjoint_keys(
        ops in proptest::collection::vec(
            proptest::collection::vec(op(100), 1..if cfg!(miri) { 40 } else { 1000 }),
            2,
        ),
        shards in shards(),
    ) {
        check_two_threads(&ops, shards, &|v| v);
    }

}

proptest! {
    #![proptest_config(config_with_drop_glue())]

    /// Few keys, values with drop glue: first values replaced, deleted and expunged in their
    /// entries, then every value dropped exactly once. (Shorter sequences under miri than the
    /// plain tests': the plain ones cover the map's logic there, these its drops.)
    #[test]
    fn few_keys_values_with_drop_glue(
        ops in proptest::collection::vec(op(6), 1..if cfg!(miri) { 30 } else { 400 }),
        shards in shards(),
    ) {
        check_tracked(&ops, shards);
    }

    /// More keys, values with drop glue.
    #[test]
    fn many_keys_values_with_drop_glue(
        ops in proptest::collection::vec(op(200), 1..if cfg!(miri) { 30 } else { 1500 }),
        shards in shards(),
    ) {
        check_tracked(&ops, shards);
    }

    /// Two threads, values with drop glue: a first value unlinked on one thread while the
    /// other's promotions and copies retire entries; every value dropped exactly once.
    #[test]
    fn two_threads_disjoint_keys_values_with_drop_glue(
        ops in proptest::collection::vec(
            proptest::collection::vec(op(100), 1..if cfg!(miri) { 20 } else { 1000 }),
            2,
        ),
        shards in shards(),
    ) {
        let live = Arc::new(AtomicIsize::new(0));
        check_two_threads(&ops, shards, &|v| Tracked::new(v, &live));
        prop_assert_eq!(live.load(Ordering::Relaxed), 0, "values leaked or dropped twice");
    }
}

/// Runs two sequences on two threads at once, each on its own keys of one map, and checks the
/// map's contents against the union of their models.
fn check_two_threads<V: Value>(ops: &[Vec<Op>], shards: Shards, make: &(impl Fn(u8) -> V + Sync)) {
    let map = map(shards);
    let models: Vec<HashMap<u16, u8>> = std::thread::scope(|s| {
        let threads: Vec<_> = ops
            .iter()
            .enumerate()
            .map(|(index, ops)| {
                let map = &map;
                let share = Share {
                    index: index as u16,
                    of: 2,
                };
                s.spawn(move || run(map, ops, share, make))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let expected: HashMap<u16, u8> = models.into_iter().flatten().collect();
    let mut contents = HashMap::new();
    map.range(|k, v| {
        assert!(
            contents.insert(*k, v.get()).is_none(),
            "a key visited twice"
        );
        true
    });
    assert_eq!(contents, expected);
    assert_eq!(map.len(), expected.len());
}
