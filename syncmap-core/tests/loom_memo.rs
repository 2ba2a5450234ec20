//! Loom models of `#[memoize]`'s single flight (`Memo::__call`): one computation per key among
//! concurrent callers, a result not kept (the cell is emptied and removed, and a waiter computes
//! in turn), and invalidation racing with a computation. The key's cell is its flight word (the
//! claim of the caller computing, and the ready bit) and a value written once by that caller
//! (`raw::sync::WriteOnce`, on loom's `UnsafeCell`, which fails a model whose write and reads
//! are not ordered); a waiting thread blocks on the model of `event-listener`'s event.
//!
//! A *panicking* body takes the same path as a result not kept, plus a removal from a drop guard
//! during unwinding; it is not modelled here because loom runs its threads on one OS thread, so
//! another model thread that drops a lock guard while one is unwinding sees `panicking()` and
//! poisons loom's internal mutex (a spurious failure, tried). Panics are checked with real
//! threads instead: `tests/panics.rs`, the soak's injected panics, and both under TSan.
//!
//! Seeded bugs each caught by `concurrent_callers_share_one_computation`: the ready bit set
//! before the value is written (loom reports the unordered access), and a waiter that checks
//! the claim before it listens instead of after (loom reports the lost wakeup as a deadlock).
//! Earlier, with a once-cell beside the flight word: a cell that lets two initializers run,
//! and a miss path that stores a fresh cell instead of `load_or_store_with` (the body ran
//! twice).
//!
//! Two more models check the statistics' gauge of waiting callers: every caller blocked on a
//! computation is counted, and a caller that computes in turn after a result not kept is no
//! longer counted (bounded to 4 preemptions: its spinning body makes the full search too
//! long).
//!
//! Each model runs on both storages of a cache: a cell per key in the map (a cache with a
//! bound or a TTL), and a plain cache, whose values are in the map and whose computations in
//! flight are in a striped table beside it (`memo/plain.rs`); every execution is explored. A
//! plain cache's caller computes without a cell until another caller comes to wait (which
//! makes one); one more model, for the plain cache only, adds an invalidation to that (three
//! threads, bounded to 5 preemptions). And one for a bounded cache whose keys have drop glue,
//! whose miss builds its key between two looks at the window.
//!
//! Run with `RUSTFLAGS="--cfg syncmap_loom" cargo test -p syncmap-core --release --test loom_memo`.
//! Without that cfg this file compiles to nothing.
#![cfg(syncmap_loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use syncmap_core::memo::Memo;

#[path = "loom_support/kinds.rs"]
mod kinds;
use kinds::{for_each_kind, new_memo, Kind};

/// Loom runs a model's threads on small coroutine stacks, which building a `Memo` (its map's
/// shards) overflows: every thread of these models, the first one included, gets this much.
const STACK: usize = 1 << 20;

/// `thread::spawn` with a [`STACK`]-sized stack.
fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> thread::JoinHandle<T> {
    thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .expect("loom spawns the thread")
}

/// `loom::model`, with the model's body on a [`STACK`]-sized thread.
fn model(body: impl Fn() + Send + Sync + 'static) {
    let body = std::sync::Arc::new(body);
    loom::model(move || {
        let body = std::sync::Arc::clone(&body);
        spawn(move || body()).join().unwrap();
    });
}

/// [`model`] with loom's search bounded to `preemptions` preemptions per execution, for a model
/// whose spinning body would otherwise make the search too long.
fn model_with_preemptions(preemptions: usize, body: impl Fn() + Send + Sync + 'static) {
    let body = std::sync::Arc::new(body);
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder.check(move || {
        let body = std::sync::Arc::clone(&body);
        spawn(move || body()).join().unwrap();
    });
}

/// A fresh cache per execution (see [`new_memo`]).
fn memo(kind: Kind) -> &'static Memo<u64, u64> {
    new_memo(kind)
}

/// Checks `body` on a fresh cache of `kind`, every execution explored.
fn check(kind: Kind, body: impl Fn(&'static Memo<u64, u64>) + Send + Sync + 'static) {
    model(move || body(memo(kind)));
}

/// `f(key) = key * 10` through the cache, counting how often the body runs.
fn call(memo: &'static Memo<u64, u64>, key: u64, runs: &AtomicUsize) -> u64 {
    call_with(memo, key, runs, key * 10, |_| true)
}

/// A call whose body returns `value`, cached only if `keep(&value)`.
fn call_with(
    memo: &'static Memo<u64, u64>,
    key: u64,
    runs: &AtomicUsize,
    value: u64,
    keep: fn(&u64) -> bool,
) -> u64 {
    memo.__call(
        &key,
        || key,
        || {
            runs.fetch_add(1, Ordering::SeqCst);
            value
        },
        keep,
    )
}

for_each_kind!(
    concurrent_callers_share_one_computation,
    cells_concurrent_callers_share_one_computation,
    plain_concurrent_callers_share_one_computation,
    bounded_concurrent_callers_share_one_computation
);

fn concurrent_callers_share_one_computation(kind: Kind) {
    check(kind, |memo| {
        let runs = Arc::new(AtomicUsize::new(0));
        let other = {
            let runs = Arc::clone(&runs);
            spawn(move || call(memo, 1, &runs))
        };
        let mine = call(memo, 1, &runs);
        assert_eq!(mine, 10);
        assert_eq!(other.join().unwrap(), 10);
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "the body ran more than once"
        );
        assert_eq!(memo.get(&1), Some(10));
        assert_eq!(memo.len(), 1);
    });
}

for_each_kind!(
    an_uncached_result_is_not_kept_and_the_next_caller_computes,
    cells_an_uncached_result_is_not_kept,
    plain_an_uncached_result_is_not_kept,
    bounded_an_uncached_result_is_not_kept
);

fn an_uncached_result_is_not_kept_and_the_next_caller_computes(kind: Kind) {
    check(kind, |memo| {
        let runs = Arc::new(AtomicUsize::new(0));
        let rejecting = {
            let runs = Arc::clone(&runs);
            spawn(move || call_with(memo, 1, &runs, 99, |value| *value != 99))
        };
        let mine = call(memo, 1, &runs);
        let theirs = rejecting.join().unwrap();
        assert_eq!(mine, 10);
        // Either it computed (and did not keep) 99, or it found our 10.
        assert!(theirs == 99 || theirs == 10, "{theirs}");
        assert!(matches!(memo.get(&1), None | Some(10)));
        assert_eq!(call(memo, 1, &runs), 10);
        assert_eq!(memo.get(&1), Some(10));
    });
}

for_each_kind!(
    invalidation_racing_with_a_computation_leaves_no_stale_or_stuck_cell,
    cells_invalidation_racing_with_a_computation,
    plain_invalidation_racing_with_a_computation,
    bounded_invalidation_racing_with_a_computation
);

fn invalidation_racing_with_a_computation_leaves_no_stale_or_stuck_cell(kind: Kind) {
    check(kind, |memo| {
        let runs = Arc::new(AtomicUsize::new(0));
        let invalidator = spawn(move || memo.invalidate(&1));
        assert_eq!(call(memo, 1, &runs), 10);
        invalidator.join().unwrap();
        assert!(matches!(memo.get(&1), None | Some(10)));
        // Invalidation never blocks a later caller: it computes or hits.
        assert_eq!(call(memo, 1, &runs), 10);
        assert_eq!(memo.get(&1), Some(10));
        assert_eq!(memo.len(), 1);
    });
}

for_each_kind!(
    a_caller_that_waits_for_a_computation_is_counted_while_it_waits,
    cells_a_waiting_caller_is_counted,
    plain_a_waiting_caller_is_counted,
    bounded_a_waiting_caller_is_counted
);

fn a_caller_that_waits_for_a_computation_is_counted_while_it_waits(kind: Kind) {
    check(kind, |memo| {
        // The body, run by whichever caller computes, ends only once the other caller is
        // counted as waiting: a caller blocked on the cell uncounted would leave it spinning,
        // and loom fails the model (it exceeds its branch bound).
        let body = move || {
            while memo.stats().waiting == 0 {
                thread::yield_now();
            }
            7
        };
        let other = spawn(move || memo.__call(&1, || 1, body, |_| true));
        assert_eq!(memo.__call(&1, || 1, body, |_| true), 7);
        assert_eq!(other.join().unwrap(), 7);
        let stats = memo.stats();
        assert_eq!((stats.computations, stats.waits, stats.waiting), (1, 1, 0));
    });
}

const PREEMPTIONS: usize = 4;

for_each_kind!(
    a_caller_counted_as_waiting_is_uncounted_when_it_computes_in_turn,
    cells_a_caller_computing_in_turn_is_uncounted,
    plain_a_caller_computing_in_turn_is_uncounted,
    bounded_a_caller_computing_in_turn_is_uncounted
);

fn a_caller_counted_as_waiting_is_uncounted_when_it_computes_in_turn(kind: Kind) {
    model_with_preemptions(PREEMPTIONS, move || {
        let memo = memo(kind);
        let rejecter_returned = Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let rejecter = {
            let returned = Arc::clone(&rejecter_returned);
            spawn(move || {
                let value = memo.__call(&1, || 1, || 99, |value| *value != 99);
                returned.store(true, Ordering::SeqCst);
                value
            })
        };
        // Ends once the other caller is counted as waiting for this computation, or has
        // returned: then nobody waits, whatever happened before this computation started (the
        // other caller may have computed a value not kept while this one waited).
        let body = || loop {
            if rejecter_returned.load(Ordering::SeqCst) {
                assert_eq!(
                    memo.stats().waiting,
                    0,
                    "a caller is counted but not waiting"
                );
                break 10;
            }
            if memo.stats().waiting > 0 {
                break 10;
            }
            thread::yield_now();
        };
        assert_eq!(memo.__call(&1, || 1, body, |_| true), 10);
        assert!(matches!(rejecter.join().unwrap(), 99 | 10));
        assert_eq!(memo.stats().waiting, 0);
    });
}

/// A plain cache only: a caller computes a key without a cell (an owned flight), a second
/// caller comes to wait for it (and makes the cell, or finds the value, or computes after the
/// invalidation), and a third invalidates the key meanwhile. Every caller gets the value,
/// nobody hangs (loom fails a model that deadlocks), the owner's forgotten computation leaves
/// the table, and the body runs at most twice (again only for a caller that came after the
/// invalidation). Three threads: bounded to 5 preemptions (4 s and 0.8 GB; the full search
/// takes 31 s and 5.9 GB, which beside the cells' models would not fit a CI machine's memory).
/// It fails (a deadlock) if a forgotten computation's owner does not settle the cell its
/// waiter made (a seeded bug, tried).
#[test]
fn plain_an_invalidation_while_a_caller_waits_for_an_owned_computation() {
    model_with_preemptions(5, || {
        let memo = memo(Kind::Plain);
        let runs = Arc::new(AtomicUsize::new(0));
        let waiter = {
            let runs = Arc::clone(&runs);
            spawn(move || call(memo, 1, &runs))
        };
        let invalidator = spawn(move || memo.invalidate(&1));
        assert_eq!(call(memo, 1, &runs), 10);
        assert_eq!(waiter.join().unwrap(), 10);
        invalidator.join().unwrap();
        let ran = runs.load(Ordering::SeqCst);
        assert!(ran == 1 || ran == 2, "the body ran {ran} times");
        assert!(matches!(memo.get(&1), None | Some(10)));
        // Nothing is stuck in flight: the next caller hits or computes, and the value stays.
        assert_eq!(call(memo, 1, &runs), 10);
        assert_eq!(memo.get(&1), Some(10));
    });
}

/// A bounded cache whose keys have drop glue (a `Box`, as a `String` key): its miss looks in
/// the window under the lock before it builds the key, builds it outside, and takes the lock
/// again to put the cell there, so another caller may put the key's cell (or admit it into the
/// map) in between (`memo/window.rs`, `flight_in_window`). Two callers of one key and a
/// caller of another (which fills the window and sends the first key to the policy): one
/// computation of each key, every caller gets its value, and the first key's value is cached.
/// It fails (the body runs twice) if the second lock does not look again before inserting (a
/// seeded bug, tried).
#[test]
fn bounded_keys_with_drop_glue_are_built_between_two_looks() {
    model(|| {
        let mut config: syncmap_core::memo::MemoConfig =
            syncmap_core::memo::__private::MemoOptions::DEFAULT.into();
        config.capacity = Some(2);
        let memo: &'static Memo<Box<u64>, u64> =
            Box::leak(Box::new(Memo::new("loom::boxed", config)));
        let runs = Arc::new(AtomicUsize::new(0));
        let call = move |key: u64, runs: &AtomicUsize| {
            memo.__call(
                &key,
                || Box::new(key),
                || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    key * 10
                },
                |_| true,
            )
        };
        let other = {
            let runs = Arc::clone(&runs);
            spawn(move || call(1, &runs))
        };
        assert_eq!(call(1, &runs), 10);
        assert_eq!(other.join().unwrap(), 10);
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran twice");
        assert_eq!(call(2, &runs), 20);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(memo.get(&1), Some(10));
    });
}
