//! Loom models of the async single flight (`Memo::__miss_async`, `memo/flight.rs`): the claim
//! word (`FREE`, a computation's token, `DEAD`) and the listen / re-check / await protocol of the
//! waiters, with the event replaced by a model of `event-listener`'s contract (a listener
//! registered before a `notify` is completed and woken by it).
//!
//! Each caller is a future driven by `loom::future::block_on` on its own loom thread; a body
//! that is pending once makes the computation span a suspension point, where the other caller
//! joins. `block_on` parks the thread until its waker is woken, so a lost wakeup shows up as a
//! deadlock that loom reports. The models check:
//!
//! - two callers of one missing key: one body run, both get its value, the key is cached;
//! - the computing future dropped after its first poll (a timeout, an abort): the other caller
//!   takes over or computes afresh, nothing is left claimed, and a later call hits;
//! - a result not kept (`Err` without `cache_err`): the other caller computes in turn instead
//!   of seeing it, and nothing stays claimed.
//! - a synchronous `get_or_compute` of the same key (its thread id takes the claim word while
//!   it computes): an async caller that waits for it is woken, whether or not it listened
//!   before the synchronous caller looked for listeners.
//!
//! With at most 3 preemptions per execution (the default here), loom explored 21262, 17112,
//! 31576 and 15227 executions of the four models (about 12 s; 3926, 3740 and 6417 for the
//! first three before the claim word also packed the policy bits and the synchronous mark,
//! which added compare-and-swap loops); unbounded, the first three passed in about 7 minutes on
//! 2 cores (before that change; not rerun). Five seeded bugs were each caught: a waiter that
//! listens *after* re-checking the claim (a lost wakeup: loom reports the deadlock), an
//! abandoned computation that does not notify (deadlock in the cancellation and not-kept
//! models), a claim taken by a load and a store instead of a compare-exchange (the body ran
//! twice), a synchronous computation whose end never notifies (deadlock in the fourth), and an
//! end that skips the notification although one listener is registered (deadlock). The model
//! of the event counts listeners under its mutex, so the fences that pair the "any listener?"
//! check with the waiter's re-check are not exercised by loom; see `Flight::notify_listeners`.
//!
//! Each model runs on both storages of a cache: a cell per key in the map (a cache with a
//! bound or a TTL), and a plain cache, whose computations in flight are in a striped table
//! beside the map (`memo/plain.rs`).
//!
//! Run with `RUSTFLAGS="--cfg syncmap_loom" cargo test -p syncmap-core --release --test
//! loom_memo_async` (`LOOM_MAX_PREEMPTIONS=N` to change the bound). Without that cfg this file
//! compiles to nothing.
#![cfg(syncmap_loom)]

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use syncmap_core::memo::Memo;

#[path = "loom_support/kinds.rs"]
mod kinds;
use kinds::{for_each_kind, new_memo, Kind};

/// A fresh cache per execution, leaked: the memo API takes `&'static self`, as generated code
/// holds it in a `static`. Made on a thread of its own: building a `Memo` (its striped counters
/// take 9 KiB) overflows the 32 KiB coroutine stack of loom's main thread.
fn memo(kind: Kind) -> &'static Memo<u64, u64> {
    spawn(move || new_memo(kind)).join().unwrap()
}

/// Pending once (waking its task at once), then ready: a suspension point inside a body.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// `f(key)` through the async miss path: a body that counts its runs, suspends once, and
/// returns `value`, cached only if `keep(&value)`.
async fn call(
    memo: &'static Memo<u64, u64>,
    key: u64,
    runs: &AtomicUsize,
    value: u64,
    keep: fn(&u64) -> bool,
) -> u64 {
    memo.__miss_async(
        key,
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            YieldOnce(false).await;
            value
        },
        keep,
    )
    .await
}

/// `loom::model` with at most 3 preemptions per execution unless `LOOM_MAX_PREEMPTIONS` says
/// otherwise (unbounded, the three models take about 7 minutes on 2 cores).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    // A std atomic: counted outside what loom models.
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&executions);
    builder.check(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    println!(
        "{} executions explored (preemption bound {:?})",
        executions.load(std::sync::atomic::Ordering::Relaxed),
        builder.preemption_bound
    );
}

fn keep_all(_: &u64) -> bool {
    true
}

/// Runs `f` on a new loom thread with a stack of 512 KiB (loom's default, 32 KiB, is too small
/// for a `Memo` and the futures).
fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> thread::JoinHandle<T> {
    thread::Builder::new()
        .stack_size(1 << 16)
        .spawn(f)
        .expect("a loom thread")
}

/// `block_on(call(..))` on its own thread, joined: a caller that comes after the others.
fn call_later(memo: &'static Memo<u64, u64>, runs: &Arc<AtomicUsize>) -> u64 {
    let runs = Arc::clone(runs);
    spawn(move || loom::future::block_on(call(memo, 1, &runs, 10, keep_all)))
        .join()
        .unwrap()
}

for_each_kind!(
    two_callers_of_a_missing_key_share_one_body_run,
    cells_two_callers_share_one_body_run,
    plain_two_callers_share_one_body_run,
    bounded_two_callers_share_one_body_run
);

fn two_callers_of_a_missing_key_share_one_body_run(kind: Kind) {
    model(move || {
        let memo = memo(kind);
        let runs = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let runs = Arc::clone(&runs);
                spawn(move || loom::future::block_on(call(memo, 1, &runs, 10, keep_all)))
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.join().unwrap(), 10);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran twice");
        assert_eq!(memo.get(&1), Some(10));
        assert_eq!(memo.len(), 1);
    });
}

for_each_kind!(
    a_computing_future_dropped_midway_hands_over_and_leaves_nothing_claimed,
    cells_a_dropped_computation_hands_over,
    plain_a_dropped_computation_hands_over,
    bounded_a_dropped_computation_hands_over
);

fn a_computing_future_dropped_midway_hands_over_and_leaves_nothing_claimed(kind: Kind) {
    model(move || {
        let memo = memo(kind);
        let runs = Arc::new(AtomicUsize::new(0));
        let other = {
            let runs = Arc::clone(&runs);
            spawn(move || loom::future::block_on(call(memo, 1, &runs, 10, keep_all)))
        };
        let cancelling = {
            let runs = Arc::clone(&runs);
            spawn(move || {
                // Polled once, then dropped: cancelled at the body's suspension point if it
                // computes, or while waiting if the other caller does.
                let mut cancelled = pin!(call(memo, 1, &runs, 10, keep_all));
                let mut context = Context::from_waker(Waker::noop());
                if let Poll::Ready(value) = cancelled.as_mut().poll(&mut context) {
                    assert_eq!(value, 10);
                }
            })
        };
        cancelling.join().unwrap();
        assert_eq!(other.join().unwrap(), 10, "the other caller finished");
        let started = runs.load(Ordering::SeqCst);
        assert!((1..=2).contains(&started), "{started} bodies started");
        // Nothing is left claimed: this call hits.
        assert_eq!(call_later(memo, &runs), 10);
        assert_eq!(runs.load(Ordering::SeqCst), started);
        assert_eq!(memo.get(&1), Some(10));
    });
}

for_each_kind!(
    a_result_not_kept_is_not_shared_and_the_waiter_computes_in_turn,
    cells_a_result_not_kept_is_not_shared,
    plain_a_result_not_kept_is_not_shared,
    bounded_a_result_not_kept_is_not_shared
);

fn a_result_not_kept_is_not_shared_and_the_waiter_computes_in_turn(kind: Kind) {
    model(move || {
        let memo = memo(kind);
        let runs = Arc::new(AtomicUsize::new(0));
        // Computes 99 and does not keep it (an `Err` without `cache_err`).
        let rejecting = {
            let runs = Arc::clone(&runs);
            spawn(move || loom::future::block_on(call(memo, 1, &runs, 99, |value| *value != 99)))
        };
        let keeping = {
            let runs = Arc::clone(&runs);
            spawn(move || loom::future::block_on(call(memo, 1, &runs, 10, keep_all)))
        };
        let theirs = rejecting.join().unwrap();
        let mine = keeping.join().unwrap();
        assert_eq!(mine, 10, "a waiter never gets a result that is not kept");
        assert!(theirs == 99 || theirs == 10, "{theirs}");
        assert_eq!(memo.get(&1), Some(10));
        // Nothing is left claimed: this call hits.
        let started = runs.load(Ordering::SeqCst);
        assert_eq!(call_later(memo, &runs), 10);
        assert_eq!(runs.load(Ordering::SeqCst), started);
    });
}

for_each_kind!(
    an_async_caller_waiting_for_a_synchronous_computation_is_woken,
    cells_an_async_caller_waiting_for_a_thread_is_woken,
    plain_an_async_caller_waiting_for_a_thread_is_woken,
    bounded_an_async_caller_waiting_for_a_thread_is_woken
);

fn an_async_caller_waiting_for_a_synchronous_computation_is_woken(kind: Kind) {
    // The synchronous caller marks the cell as computed by its thread, in the word the async
    // claim uses; the async caller that finds it waits, and the synchronous caller's end
    // notifies only if it sees a listener (a lost wakeup would be reported as a deadlock).
    model(move || {
        let memo = memo(kind);
        let runs = Arc::new(AtomicUsize::new(0));
        let sync_caller = {
            let runs = Arc::clone(&runs);
            spawn(move || {
                memo.get_or_compute(&1, || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    10
                })
            })
        };
        let async_caller = {
            let runs = Arc::clone(&runs);
            spawn(move || loom::future::block_on(call(memo, 1, &runs, 10, keep_all)))
        };
        assert_eq!(sync_caller.join().unwrap(), 10);
        assert_eq!(async_caller.join().unwrap(), 10);
        // Each caller may compute (the async one before the synchronous one marks the cell,
        // or the synchronous one while the async claim is in flight), but no more.
        assert!((1..=2).contains(&runs.load(Ordering::SeqCst)));
        assert_eq!(memo.get(&1), Some(10));
    });
}
