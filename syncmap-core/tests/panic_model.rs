//! Panic injection, checked against a reference model (issue 16): `model.rs`'s differential
//! test with a key type whose `Hash`, `Eq` and `Clone` and a value type whose `Clone`,
//! `PartialEq` and `Drop` panic at a chosen call. After every caught panic the operation must
//! have happened entirely or not at all, the map must equal the reference model (contents,
//! `len`, every key visited once), and at the end every key and value made must have been
//! dropped exactly once.
//!
//! Cases: `PROPTEST_CASES` (default 96, 4 under miri). Long run:
//! `PROPTEST_CASES=5000 cargo test -p syncmap-core --release --test panic_model`.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};

use proptest::prelude::*;
use syncmap_core::SyncMap;

thread_local! {
    /// User calls left before one panics; 0: disarmed. Counts every `Hash`, `Eq`, `Clone` of
    /// keys and `Clone`, `PartialEq`, `Drop` of values on this thread.
    static FUSE: Cell<u32> = const { Cell::new(0) };
    /// Keys and values alive (made or cloned, not yet dropped).
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

/// A user call: panics if it is the one the fuse was set for.
fn tick(what: &str) {
    let left = FUSE.with(Cell::get);
    if left > 0 {
        FUSE.with(|f| f.set(left - 1));
        if left == 1 {
            panic!("injected panic in {what}");
        }
    }
}

fn made() {
    LIVE.with(|l| l.set(l.get() + 1));
}

#[derive(Debug)]
struct Key(u8);

impl Key {
    fn new(k: u8) -> Self {
        made();
        Key(k)
    }
}
impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        tick("Key::hash");
        self.0.hash(h);
    }
}
impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        tick("Key::eq");
        self.0 == other.0
    }
}
impl Eq for Key {}
impl Clone for Key {
    fn clone(&self) -> Self {
        tick("Key::clone");
        Key::new(self.0)
    }
}
impl Drop for Key {
    fn drop(&mut self) {
        LIVE.with(|l| l.set(l.get() - 1));
    }
}

#[derive(Debug)]
struct Val(u8);

impl Val {
    fn new(v: u8) -> Self {
        made();
        Val(v)
    }
}
impl Clone for Val {
    fn clone(&self) -> Self {
        tick("Val::clone");
        Val::new(self.0)
    }
}
impl PartialEq for Val {
    fn eq(&self, other: &Self) -> bool {
        tick("Val::eq");
        self.0 == other.0
    }
}
impl Drop for Val {
    fn drop(&mut self) {
        LIVE.with(|l| l.set(l.get() - 1));
        tick("Val::drop");
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Load(u8),
    Store(u8, u8),
    Swap(u8, u8),
    LoadOrStore(u8, u8),
    LoadOrStoreWith(u8, u8),
    Delete(u8),
    LoadAndDelete(u8),
    CompareAndSwap(u8, u8, u8),
    CompareAndDelete(u8, u8),
    Range,
    Clear,
}

impl Op {
    /// The key the operation changes, if it changes one.
    fn key(self) -> Option<u8> {
        match self {
            Op::Store(k, _)
            | Op::Swap(k, _)
            | Op::LoadOrStore(k, _)
            | Op::LoadOrStoreWith(k, _)
            | Op::Delete(k)
            | Op::LoadAndDelete(k)
            | Op::CompareAndSwap(k, _, _)
            | Op::CompareAndDelete(k, _) => Some(k),
            Op::Load(k) => Some(k),
            Op::Range | Op::Clear => None,
        }
    }
}

fn op(keys: u8) -> impl Strategy<Value = Op> {
    let k = 0..keys;
    let v = 0..3u8;
    prop_oneof![
        2 => k.clone().prop_map(Op::Load),
        4 => (k.clone(), v.clone()).prop_map(|(k, v)| Op::Store(k, v)),
        2 => (k.clone(), v.clone()).prop_map(|(k, v)| Op::Swap(k, v)),
        2 => (k.clone(), v.clone()).prop_map(|(k, v)| Op::LoadOrStore(k, v)),
        1 => (k.clone(), v.clone()).prop_map(|(k, v)| Op::LoadOrStoreWith(k, v)),
        2 => k.clone().prop_map(Op::Delete),
        2 => k.clone().prop_map(Op::LoadAndDelete),
        2 => (k.clone(), v.clone(), v.clone()).prop_map(|(k, o, n)| Op::CompareAndSwap(k, o, n)),
        2 => (k.clone(), v.clone()).prop_map(|(k, o)| Op::CompareAndDelete(k, o)),
        1 => Just(Op::Range),
        1 => Just(Op::Clear),
    ]
}

/// Applies `op` to the model; returns what the map should return (as comparable numbers).
fn apply(model: &mut HashMap<u8, u8>, op: Op) -> Vec<Option<u8>> {
    match op {
        Op::Load(k) => vec![model.get(&k).copied()],
        Op::Store(k, v) => {
            model.insert(k, v);
            vec![]
        }
        Op::Swap(k, v) => vec![model.insert(k, v)],
        Op::LoadOrStore(k, v) | Op::LoadOrStoreWith(k, v) => match model.get(&k) {
            Some(&old) => vec![Some(old), Some(1)],
            None => {
                model.insert(k, v);
                vec![Some(v), Some(0)]
            }
        },
        Op::Delete(k) => {
            model.remove(&k);
            vec![]
        }
        Op::LoadAndDelete(k) => vec![model.remove(&k)],
        Op::CompareAndSwap(k, old, new) => {
            let hit = model.get(&k) == Some(&old);
            if hit {
                model.insert(k, new);
            }
            vec![Some(u8::from(hit))]
        }
        Op::CompareAndDelete(k, old) => {
            let hit = model.get(&k) == Some(&old);
            if hit {
                model.remove(&k);
            }
            vec![Some(u8::from(hit))]
        }
        Op::Range => vec![],
        Op::Clear => {
            model.clear();
            vec![]
        }
    }
}

/// Runs `op` on the map (the fuse may make any user call in it panic).
fn perform(map: &SyncMap<Key, Val>, op: Op) -> Vec<Option<u8>> {
    let v = |v: Option<Val>| v.map(|v| v.0);
    match op {
        Op::Load(k) => vec![v(map.load(&Key::new(k)))],
        Op::Store(k, x) => {
            map.store(Key::new(k), Val::new(x));
            vec![]
        }
        Op::Swap(k, x) => vec![v(map.swap(Key::new(k), Val::new(x)))],
        Op::LoadOrStore(k, x) => {
            let (value, loaded) = map.load_or_store(Key::new(k), Val::new(x));
            vec![Some(value.0), Some(u8::from(loaded))]
        }
        Op::LoadOrStoreWith(k, x) => {
            let (value, loaded) = map.load_or_store_with(Key::new(k), || Val::new(x));
            vec![Some(value.0), Some(u8::from(loaded))]
        }
        Op::Delete(k) => {
            map.delete(&Key::new(k));
            vec![]
        }
        Op::LoadAndDelete(k) => vec![v(map.load_and_delete(&Key::new(k)))],
        Op::CompareAndSwap(k, old, new) => {
            let hit = map.compare_and_swap(&Key::new(k), &Val::new(old), Val::new(new));
            vec![Some(u8::from(hit))]
        }
        Op::CompareAndDelete(k, old) => {
            let hit = map.compare_and_delete(&Key::new(k), &Val::new(old));
            vec![Some(u8::from(hit))]
        }
        Op::Range => {
            let mut seen = HashSet::new();
            map.range(|k, _| {
                assert!(seen.insert(k.0), "a key visited twice");
                true
            });
            vec![]
        }
        Op::Clear => {
            map.clear();
            vec![]
        }
    }
}

/// The map's contents (fuse disarmed), checking that `range` visits each key once and that
/// `len` and `load` agree with it.
fn contents(map: &SyncMap<Key, Val>, keys: u8) -> HashMap<u8, u8> {
    let mut seen = HashMap::new();
    map.range(|k, v| {
        assert!(seen.insert(k.0, v.0).is_none(), "a key visited twice");
        true
    });
    assert_eq!(map.len(), seen.len(), "len disagrees with range");
    // Every key's `load` too, for small key spaces (cheap there; range and len above suffice
    // to catch a lost or duplicated entry in large ones).
    for k in 0..keys.min(8) {
        assert_eq!(
            map.load(&Key::new(k)).map(|v| v.0),
            seen.get(&k).copied(),
            "load disagrees with range for {k}"
        );
    }
    seen
}

/// Silences the injected panics (thousands per run); other panics print as usual.
fn quiet_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let injected = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|m| m.starts_with("injected panic"));
            if !injected {
                default(info);
            }
        }));
    });
}

fn check(steps: &[(Op, Option<u32>)], keys: u8) {
    quiet_injected_panics();
    LIVE.with(|l| l.set(0));
    let mut panics = 0;
    {
        let map: SyncMap<Key, Val> = SyncMap::new();
        let mut model: HashMap<u8, u8> = HashMap::new();
        for (step, &(op, fuse)) in steps.iter().enumerate() {
            let before = model.clone();
            let expected = apply(&mut model, op);
            FUSE.with(|f| f.set(fuse.unwrap_or(0)));
            let outcome = catch_unwind(AssertUnwindSafe(|| perform(&map, op)));
            FUSE.with(|f| f.set(0));
            match outcome {
                Ok(actual) => assert_eq!(actual, expected, "{step}: {op:?}"),
                Err(_) => {
                    panics += 1;
                    // The operation happened entirely or not at all.
                    let now = contents(&map, keys);
                    if now == model {
                        continue;
                    }
                    assert_eq!(
                        now,
                        before,
                        "{step}: {op:?} panicked (fuse {fuse:?}) and left a state that is \
                         neither before nor after it (key {:?})",
                        op.key()
                    );
                    model = before;
                }
            }
        }
        assert_eq!(contents(&map, keys), model, "final contents");
    }
    let live = LIVE.with(Cell::get);
    assert_eq!(
        live, 0,
        "keys/values not dropped exactly once ({panics} panics)"
    );
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(if cfg!(miri) { 4 } else { 96 });
    ProptestConfig {
        cases,
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

/// An operation, and maybe the user call in it that panics (1: the first).
fn step(keys: u8) -> impl Strategy<Value = (Op, Option<u32>)> {
    (op(keys), proptest::option::weighted(0.3, 1..12u32))
}

proptest! {
    #![proptest_config(config())]

    /// Few keys: deleted keys are stored again (expunge and unexpunge under injected panics).
    #[test]
    fn few_keys_with_panics(
        steps in proptest::collection::vec(step(6), 1..if cfg!(miri) { 40 } else { 400 })
    ) {
        check(&steps, 6);
    }

    /// More keys: promotions, the incremental copy and table growth under injected panics.
    #[test]
    fn many_keys_with_panics(
        steps in proptest::collection::vec(step(120), 1..if cfg!(miri) { 60 } else { 800 })
    ) {
        check(&steps, 120);
    }
}
