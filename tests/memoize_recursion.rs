//! Same-key recursion (issue 16, item 6): the panic that reports it must not remove the cell
//! the outer call is still computing, or a caller that catches that panic breaks single flight
//! for the key (its value would not be cached, and another thread would compute it again).
//! Checked for each store: a plain cache's (its computations in flight beside the map), and the
//! cells of a bounded and of a TTL cache (a synchronous miss puts its cell claimed by its
//! thread, and the recursion finds that claim).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use syncmemo::memoize;

/// A function that calls itself with the same key once, catches the panic that reports the
/// recursion (which must name it), and returns normally; and the test that the value was
/// cached once.
macro_rules! recursion_case {
    ($test:ident, $function:ident, $cache:ident, [$($options:tt)*]) => {
        #[memoize($($options)*)]
        fn $function(n: u64) -> u64 {
            static CALLS: AtomicUsize = AtomicUsize::new(0);
            if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
                let inner = catch_unwind(AssertUnwindSafe(|| $function(n)));
                let message = inner
                    .expect_err("same-key recursion panics")
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_default();
                assert!(message.contains(stringify!($function)), "{message}");
            }
            n * 2
        }

        #[test]
        fn $test() {
            assert_eq!($function(21), 42);
            // The value was cached: another thread, and this one, get it without computing
            // again.
            let from_other_thread = std::thread::spawn(|| $function(21)).join().unwrap();
            assert_eq!(from_other_thread, 42);
            assert_eq!($function(21), 42);
            assert_eq!($cache().stats().computations, 1, "the body ran again");
        }
    };
}

recursion_case!(
    a_caught_recursion_panic_keeps_the_computing_cell,
    catches_its_own_recursion,
    catches_its_own_recursion_cache,
    []
);
recursion_case!(
    a_bounded_cache_keeps_its_cell_through_a_caught_recursion_panic,
    bounded_catches_its_own_recursion,
    bounded_catches_its_own_recursion_cache,
    [capacity = 100]
);
recursion_case!(
    a_ttl_cache_keeps_its_cell_through_a_caught_recursion_panic,
    timed_catches_its_own_recursion,
    timed_catches_its_own_recursion_cache,
    [ttl = "1h"]
);
