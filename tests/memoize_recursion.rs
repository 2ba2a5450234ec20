//! Same-key recursion (issue 16, item 6): the panic that reports it must not remove the cell
//! the outer call is still computing, or a caller that catches that panic breaks single flight
//! for the key (its value would not be cached, and another thread would compute it again).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use syncmemo::memoize;

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// Calls itself with the same key once, catches the panic that reports the recursion, and
/// returns normally.
#[memoize]
fn catches_its_own_recursion(n: u64) -> u64 {
    if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
        let inner = catch_unwind(AssertUnwindSafe(|| catches_its_own_recursion(n)));
        let message = inner
            .expect_err("same-key recursion panics")
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(message.contains("catches_its_own_recursion"), "{message}");
    }
    n * 2
}

#[test]
fn a_caught_recursion_panic_keeps_the_computing_cell() {
    assert_eq!(catches_its_own_recursion(21), 42);
    // The value was cached: another thread, and this one, get it without computing again.
    let from_other_thread = std::thread::spawn(|| catches_its_own_recursion(21))
        .join()
        .unwrap();
    assert_eq!(from_other_thread, 42);
    assert_eq!(catches_its_own_recursion(21), 42);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1, "the body ran again");
    assert_eq!(catches_its_own_recursion_cache().stats().computations, 1);
}
