//! `#[memoize]` end to end: key rules, options, generated items, single flight and recursion.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use syncmemo::memoize;

static EDIT_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Levenshtein distance (documented, to check docs are kept).
#[memoize]
pub fn edit_distance(a: &str, b: &str) -> usize {
    EDIT_CALLS.fetch_add(1, Ordering::SeqCst);
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

#[test]
fn borrowed_arguments_hit_and_introspect() {
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(EDIT_CALLS.load(Ordering::SeqCst), 1);
    let cache: &'static syncmemo::Memo<(String, String), usize> = edit_distance_cache();
    let mut seen = Vec::new();
    cache.range(|(a, b), d| {
        seen.push((a.clone(), b.clone(), *d));
        true
    });
    assert_eq!(seen, vec![("kitten".to_string(), "sitting".to_string(), 3)]);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
    assert!(cache.invalidate(&("kitten".to_string(), "sitting".to_string())));
    assert_eq!(edit_distance_uncached("a", "b"), 1);
    assert_eq!(cache.len(), 0);
    assert!(
        cache.name().ends_with("memoize_basic::edit_distance"),
        "{}",
        cache.name()
    );
}

#[memoize]
fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(n - 1).wrapping_add(fib(n - 2))
    }
}

#[test]
fn recursion_through_other_keys_is_memoized() {
    assert_eq!(fib(90), 2_880_067_194_370_816_120);
    assert_eq!(fib_cache().stats().computations, 91);
}

#[memoize]
fn loops_forever(n: u64) -> u64 {
    loops_forever(n) + 1
}

#[test]
fn same_key_recursion_panics_naming_the_function() {
    let error = std::panic::catch_unwind(|| loops_forever(1)).unwrap_err();
    let message = error.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("loops_forever"), "{message}");
    // Nothing was cached, and the cache still works for other callers.
    assert!(loops_forever_cache().is_empty());
}

static FALLIBLE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
fn fallible(x: u32) -> Result<u32, String> {
    FALLIBLE_CALLS.fetch_add(1, Ordering::SeqCst);
    if x == 0 {
        Err("zero".into())
    } else {
        Ok(x)
    }
}

#[test]
fn errors_are_not_cached_by_default() {
    assert!(fallible(0).is_err());
    assert!(fallible(0).is_err());
    assert_eq!(fallible(1), Ok(1));
    assert_eq!(fallible(1), Ok(1));
    assert_eq!(FALLIBLE_CALLS.load(Ordering::SeqCst), 3);
    assert_eq!(fallible_cache().len(), 1);
}

static STICKY_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache_err)]
fn sticky(x: u32) -> Result<u32, String> {
    STICKY_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(format!("no {x}"))
}

#[test]
fn cache_err_caches_errors() {
    assert!(sticky(1).is_err());
    assert!(sticky(1).is_err());
    assert_eq!(STICKY_CALLS.load(Ordering::SeqCst), 1);
}

static LOOKUP_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
fn lookup(x: u32) -> Option<u32> {
    LOOKUP_CALLS.fetch_add(1, Ordering::SeqCst);
    (x > 10).then_some(x)
}

#[memoize(skip_none)]
fn lookup_skip(x: u32) -> Option<u32> {
    LOOKUP_CALLS.fetch_add(100, Ordering::SeqCst);
    (x > 10).then_some(x)
}

#[test]
fn none_is_cached_unless_skip_none() {
    assert_eq!(lookup(1), None);
    assert_eq!(lookup(1), None);
    assert_eq!(LOOKUP_CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(lookup_skip(1), None);
    assert_eq!(lookup_skip(1), None);
    assert_eq!(LOOKUP_CALLS.load(Ordering::SeqCst), 201);
}

#[memoize(ignore(verbose))]
fn square(x: u64, verbose: bool) -> u64 {
    if verbose {
        println!("squaring {x}");
    }
    x * x
}

#[test]
fn ignored_arguments_are_not_in_the_key() {
    let _: &'static syncmemo::Memo<u64, u64> = square_cache();
    assert_eq!(square(3, true), 9);
    assert_eq!(square(3, false), 9);
    assert_eq!(square_cache().stats().computations, 1);
}

#[derive(Clone, Debug)]
struct Query {
    id: u64,
    _trace: String,
}

#[memoize(key: u64 = query.id)]
fn by_id(query: Query) -> u64 {
    query.id * 2
}

#[test]
fn explicit_keys() {
    let _: &'static syncmemo::Memo<u64, u64> = by_id_cache();
    by_id(Query {
        id: 4,
        _trace: "a".into(),
    });
    by_id(Query {
        id: 4,
        _trace: "b".into(),
    });
    assert_eq!(by_id_cache().stats().computations, 1);
}

#[memoize(capacity = 8)]
fn bounded(x: u64) -> u64 {
    x
}

#[test]
fn capacity_bounds_the_cache() {
    for x in 0..100 {
        assert_eq!(bounded(x), x);
        assert!(bounded_cache().len() <= 8, "{}", bounded_cache().len());
    }
    let stats = bounded_cache().stats();
    assert!(stats.evictions + stats.rejections >= 92, "{stats:?}");
}

#[memoize(ttl = "50ms")]
fn stamped(x: u64) -> u64 {
    x
}

#[test]
fn ttl_recomputes_and_purges() {
    stamped(1);
    stamped(1);
    assert_eq!(stamped_cache().stats().computations, 1);
    std::thread::sleep(Duration::from_millis(80));
    stamped(1);
    assert_eq!(stamped_cache().stats().computations, 2);
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(stamped_cache().purge_expired(), 1);
    assert!(stamped_cache().is_empty());
}

#[derive(Clone, Hash, PartialEq, Eq, Debug)]
struct Rect {
    w: u64,
    h: u64,
}

impl Rect {
    #[memoize]
    fn area(&self) -> u64 {
        self.w * self.h
    }

    #[memoize(ignore(self))]
    fn unit(&self) -> u64 {
        1
    }

    #[memoize(in_impl)]
    fn double(x: u64) -> u64 {
        x * 2
    }
}

#[test]
fn methods_key_on_the_receiver() {
    assert_eq!(Rect { w: 2, h: 3 }.area(), 6);
    assert_eq!(Rect { w: 4, h: 5 }.area(), 20);
    assert_eq!(Rect::area_cache().len(), 2);
    Rect { w: 2, h: 3 }.unit();
    Rect { w: 9, h: 9 }.unit();
    assert_eq!(Rect::unit_cache().stats().computations, 1);
    assert_eq!(Rect::double(21), 42);
}

#[memoize]
fn describe<T: std::fmt::Debug + Clone + std::hash::Hash + Eq + Send + Sync + 'static>(
    x: T,
) -> String {
    format!("{x:?}")
}

#[test]
fn generic_functions_have_one_cache_per_instantiation() {
    assert_eq!(describe(1u8), "1");
    assert_eq!(describe("a".to_string()), "\"a\"");
    assert_eq!(describe(2u8), "2");
    assert_eq!(describe_cache::<u8>().len(), 2);
    assert_eq!(describe_cache::<String>().len(), 1);
}

static SLOW_CALLS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
fn slow(x: u64) -> u64 {
    SLOW_CALLS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(50));
    x + 1
}

#[test]
fn concurrent_callers_compute_once() {
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                slow(41)
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), 42);
    }
    assert_eq!(SLOW_CALLS.load(Ordering::SeqCst), 1);
    // A stampede: one miss, and seven callers that waited for it (or came after it and hit).
    let stats = slow_cache().stats();
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.hits + stats.waits, 7);
    assert_eq!(stats.hit_ratio(), Some(7.0 / 8.0));
}

static GATE_OPEN: AtomicBool = AtomicBool::new(false);

#[memoize]
fn gated(x: u64) -> u64 {
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while !GATE_OPEN.load(Ordering::SeqCst) {
        assert!(std::time::Instant::now() < give_up, "the gate never opened");
        std::thread::sleep(Duration::from_millis(1));
    }
    x
}

#[test]
fn stats_show_the_callers_waiting_for_a_computation() {
    let threads: Vec<_> = (0..8).map(|_| std::thread::spawn(|| gated(5))).collect();
    // One caller computes behind the gate; the seven others are counted while they wait.
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while gated_cache().stats().waiting < 7 {
        assert!(std::time::Instant::now() < give_up, "callers never waited");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(gated_cache().stats().waiting, 7);
    GATE_OPEN.store(true, Ordering::SeqCst);
    for thread in threads {
        assert_eq!(thread.join().unwrap(), 5);
    }
    let stats = gated_cache().stats();
    assert_eq!(
        (stats.misses, stats.waits, stats.computations, stats.waiting),
        (1, 7, 1, 0)
    );
}

#[test]
fn the_registry_lists_used_caches() {
    fib(10);
    let names: Vec<_> = syncmemo::memo::registry()
        .iter()
        .map(|c| c.name())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("::fib")), "{names:?}");
    let fib_handle = syncmemo::memo::registry()
        .into_iter()
        .find(|c| c.name().ends_with("::fib"))
        .unwrap();
    assert!(fib_handle
        .dump()
        .iter()
        .any(|(k, v)| k == "10" && v == "55"));
}

struct First;
struct Second;

impl First {
    /// An associated function without `self` or `Self` needs no option.
    #[memoize]
    fn id(x: u64) -> u64 {
        x
    }
}

impl Second {
    /// The same name in another impl of the same module: a different cache.
    #[memoize]
    fn id(x: u64) -> u64 {
        x + 1
    }
}

#[test]
fn associated_functions_without_self_have_their_own_caches() {
    assert_eq!(First::id(1), 1);
    assert_eq!(Second::id(1), 2);
    assert_eq!(First::id(1), 1);
    assert_eq!(Second::id(1), 2);
    assert_eq!(First::id_cache().get(&1), Some(1));
    assert_eq!(Second::id_cache().get(&1), Some(2));
    assert_eq!(First::id_cache().stats().hits, 1);
    assert_eq!(First::id_uncached(5), 5);
}
