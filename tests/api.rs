//! The user-facing API around `#[memoize]`: registry names, constant options, borrowed tuple
//! lookups, `clear_all`, hand-made caches (`Memo::builder`, `get_or_compute`, `insert`), memoized
//! provided methods of traits, and where the same-key recursion panic points.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use syncmemo::memo::{self, KeyRef, MemoHandle};
use syncmemo::{memoize, Memo};

fn handle(name: &str) -> MemoHandle {
    memo::registry()
        .into_iter()
        .find(|cache| cache.name() == name)
        .unwrap_or_else(|| {
            let names: Vec<_> = memo::registry().iter().map(|c| c.name()).collect();
            panic!("no cache named {name:?} in {names:?}")
        })
}

mod c_debug {
    #[derive(Clone, Hash, PartialEq, Eq)]
    pub struct A(pub u32);
    #[derive(Clone, Hash, PartialEq, Eq)]
    pub struct B(pub u32);

    impl A {
        #[syncmemo::memoize]
        pub fn get(&self) -> u32 {
            self.0
        }
    }

    impl B {
        #[syncmemo::memoize]
        pub fn get(&self) -> u32 {
            self.0 + 1
        }
    }

    #[derive(Clone, Hash, PartialEq, Eq)]
    pub struct Wrapper<T>(pub T);

    impl<T: Clone + std::hash::Hash + Eq + Send + Sync + 'static> Wrapper<T> {
        #[syncmemo::memoize]
        pub fn size(&self) -> usize {
            std::mem::size_of::<T>()
        }
    }
}

#[memoize]
fn describe<T: 'static>(n: u32) -> String {
    format!("{n} as {}", std::any::type_name::<T>())
}

#[test]
fn registry_names_tell_methods_and_instantiations_apart() {
    assert_eq!(c_debug::A(1).get(), 1);
    assert_eq!(c_debug::B(1).get(), 2);
    assert_eq!(handle("api::c_debug::A::get").len(), 1);
    assert_eq!(handle("api::c_debug::B::get").len(), 1);
    assert_eq!(c_debug::Wrapper(1u8).size(), 1);
    assert_eq!(c_debug::Wrapper(1u64).size(), 8);
    assert_eq!(handle("api::c_debug::Wrapper<u8>::size").len(), 1);
    assert_eq!(handle("api::c_debug::Wrapper<u64>::size").len(), 1);

    // The type parameter is in neither the key nor the value: each instantiation still has
    // its own cache (a shared one would return `u8`'s answer for `String`).
    assert_eq!(describe::<u8>(1), "1 as u8");
    assert_eq!(describe::<String>(1), "1 as alloc::string::String");
    assert_eq!(describe_cache::<u8>().len(), 1);
    assert_eq!(handle("api::describe::<u8>").len(), 1);
    assert_eq!(handle("api::describe::<String>").len(), 1);
}

const CACHE_SIZE: usize = 4;

#[memoize(capacity = CACHE_SIZE)]
fn bounded_by_const(x: u32) -> u32 {
    x
}

#[memoize(capacity = 2 * 3, ttl = "1h")]
fn bounded_by_expr(x: u32) -> u32 {
    x
}

#[test]
fn options_take_constant_expressions_and_the_handle_shows_them() {
    for x in 0..100 {
        bounded_by_const(x);
        bounded_by_expr(x);
    }
    assert_eq!(bounded_by_const_cache().config().capacity, Some(4));
    assert!(bounded_by_const_cache().len() <= 4);
    assert_eq!(bounded_by_expr_cache().config().capacity, Some(6));
    assert!(bounded_by_expr_cache().len() <= 6);
    let config = handle("api::bounded_by_expr").config();
    assert_eq!(config.capacity, Some(6));
    assert_eq!(config.ttl, Some(Duration::from_secs(3600)));
}

#[memoize]
fn price(shop: &str, item: &str) -> u64 {
    (shop.len() * 100 + item.len()) as u64
}

#[test]
fn tuple_keys_are_looked_up_and_invalidated_by_borrowed_parts() {
    assert_eq!(price("ab", "c"), 201);
    let cache: &Memo<(String, String), u64> = price_cache();
    assert_eq!(cache.get(&KeyRef(("ab", "c"))), Some(201));
    assert_eq!(cache.get(&KeyRef(("ab", "x"))), None);
    assert!(cache.invalidate(&KeyRef(("ab", "c"))));
    assert!(!cache.invalidate(&KeyRef(("ab", "c"))));
    assert_eq!(cache.get(&("ab".to_string(), "c".to_string())), None);
}

#[memoize]
fn cleared_a(x: u32) -> u32 {
    x
}

#[memoize]
fn cleared_b(x: &str) -> usize {
    x.len()
}

#[test]
fn clear_all_clears_every_registered_cache() {
    cleared_a(1);
    cleared_b("abc");
    let hand_made: &'static Memo<u8, u8> = Memo::builder("api::hand_made").build_static();
    hand_made.get_or_compute(&1, || 2);
    assert!(memo::clear_all() >= 3);
    assert!(cleared_a_cache().is_empty());
    assert!(cleared_b_cache().is_empty());
    assert!(hand_made.is_empty());
    assert!(handle("api::hand_made").is_empty());
    // Statistics are kept.
    assert_eq!(cleared_a_cache().stats().misses, 1);
}

#[test]
fn a_hand_made_cache_is_configured_warmed_and_filled() {
    let capacity = 8; // known only at run time
    let squares: Memo<u64, u64> = Memo::builder("api::squares")
        .capacity(capacity)
        .ttl(Duration::from_secs(60))
        .build();
    assert_eq!(squares.config().capacity, Some(8));
    assert_eq!(squares.config().ttl, Some(Duration::from_secs(60)));
    assert_eq!(squares.name(), "api::squares");
    for k in 0..100 {
        assert_eq!(squares.get_or_compute(&k, || k * k), k * k);
    }
    assert!(squares.len() <= 8, "{}", squares.len());
    let stats = squares.stats();
    assert_eq!((stats.misses, stats.computations), (100, 100));
    assert_eq!(stats.evictions + stats.rejections, 92, "{stats:?}");

    // Borrowed lookups, and filling from outside.
    let names: Memo<String, usize> = Memo::builder("api::names").build();
    assert!(names.insert("bob".to_string(), 3));
    assert!(
        !names.insert("bob".to_string(), 99),
        "an existing value is kept"
    );
    assert_eq!(names.get_or_compute("bob", || unreachable!()), 3);
    assert_eq!(names.get_or_compute("alice", || 5), 5);
    assert_eq!(names.get("alice"), Some(5));
    let stats = names.stats();
    assert_eq!((stats.hits, stats.misses, stats.waits), (1, 1, 0));
}

#[test]
fn get_or_compute_is_single_flight() {
    const THREADS: usize = 6;
    let memo: Arc<Memo<u32, u32>> = Arc::new(Memo::builder("api::flight").build());
    let runs = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (memo, runs, barrier) = (memo.clone(), runs.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                memo.get_or_compute(&7, || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(100));
                    49
                })
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), 49);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let stats = memo.stats();
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.hits + stats.waits, THREADS as u64 - 1);
}

#[test]
#[should_panic(expected = "capacity must be at least 1")]
fn a_zero_capacity_is_refused() {
    let _ = Memo::<u8, u8>::builder("api::zero").capacity(0);
}

trait Shape: Clone + std::hash::Hash + Eq + Send + Sync + 'static {
    fn sides(&self) -> u64;

    #[syncmemo::memoize]
    fn perimeter(&self) -> u64 {
        self.sides() * 10
    }
}

trait Named: 'static {
    const NAME: &'static str;

    #[syncmemo::memoize(ignore(self))]
    fn shout(&self, suffix: &str) -> String {
        format!("{}{suffix}", Self::NAME.to_uppercase())
    }
}

impl Named for Square {
    const NAME: &'static str = "square";
}

impl Named for Triangle {
    const NAME: &'static str = "triangle";
}

#[test]
fn a_provided_method_that_ignores_self_still_has_one_cache_per_type() {
    assert_eq!(Square.shout("!"), "SQUARE!");
    assert_eq!(Triangle.shout("!"), "TRIANGLE!");
    assert_eq!(Square::shout_cache().len(), 1);
}

#[derive(Clone, Hash, PartialEq, Eq)]
struct Square;
impl Shape for Square {
    fn sides(&self) -> u64 {
        4
    }
}

#[derive(Clone, Hash, PartialEq, Eq)]
struct Triangle;
impl Shape for Triangle {
    fn sides(&self) -> u64 {
        3
    }
}

#[test]
fn provided_methods_of_a_trait_with_the_key_traits_are_memoized_per_type() {
    assert_eq!(Square.perimeter(), 40);
    assert_eq!(Square.perimeter(), 40);
    assert_eq!(Triangle.perimeter(), 30);
    assert_eq!(Square::perimeter_cache().stats().hits, 1);
    assert_eq!(Triangle::perimeter_cache().len(), 1);
    assert_eq!(handle("api::Square::perimeter").len(), 1);
}

#[memoize]
fn recurses(n: u64) -> u64 {
    recurses(n) + 1
}

#[test]
fn the_same_key_recursion_panic_points_at_the_recursive_call() {
    static LOCATION: Mutex<Option<(String, u32)>> = Mutex::new(None);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        if message.contains("recurses") {
            let location = info.location().unwrap();
            *LOCATION.lock().unwrap() = Some((location.file().to_string(), location.line()));
        }
    }));
    let result = std::panic::catch_unwind(|| recurses(1));
    std::panic::set_hook(previous);
    assert!(result.is_err());
    let (file, line) = LOCATION
        .lock()
        .unwrap()
        .clone()
        .expect("the panic was seen");
    assert_eq!(file, "tests/api.rs");
    // The line of the recursive call in the body, not a line of the runtime.
    let body_line = include_str!("api.rs")
        .lines()
        .position(|l| l == "    recurses(n) + 1")
        .unwrap() as u32
        + 1;
    assert_eq!(line, body_line);
}

#[derive(Clone, Hash, PartialEq, Eq, Debug)]
struct Config {
    level: u8,
}

#[memoize]
fn threshold(config: &Config, path: &std::path::Path, tags: &[u8]) -> usize {
    usize::from(config.level) + path.as_os_str().len() + tags.len()
}

#[test]
fn borrowed_arguments_are_keyed_by_their_owned_forms() {
    let config = Config { level: 2 };
    assert_eq!(threshold(&config, "ab".as_ref(), &[1]), 5);
    assert_eq!(threshold(&config, "ab".as_ref(), &[1]), 5);
    let cache: &Memo<(Config, std::path::PathBuf, Vec<u8>), usize> = threshold_cache();
    assert_eq!(cache.stats().hits, 1);
    let path: &std::path::Path = "ab".as_ref();
    assert_eq!(cache.get(&KeyRef((&config, path, &[1u8][..]))), Some(5));
}

#[memoize(ignore(log))]
fn logged_square(x: u32, log: std::rc::Rc<std::cell::Cell<u32>>) -> u32 {
    log.set(log.get() + 1);
    x * x
}

#[test]
fn a_single_threaded_argument_can_be_left_out_of_the_key() {
    let log = std::rc::Rc::new(std::cell::Cell::new(0));
    assert_eq!(logged_square(3, log.clone()), 9);
    assert_eq!(logged_square(3, log.clone()), 9);
    assert_eq!(log.get(), 1, "the second call is a hit");
}
