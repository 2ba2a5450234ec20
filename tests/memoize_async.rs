//! `#[memoize] async fn`: single flight across tasks and threads, cancellation, panics, `Err`,
//! recursion and every option, under tokio (multi-thread and current-thread) and `futures`'
//! executor.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use syncmemo::{memoize, MemoStats};
use tokio::sync::Semaphore;

/// How long a test waits for what should happen at once before it fails as a hang instead of
/// hanging. Generous: under ThreadSanitizer on a busy 2-core machine, a caught panic (whose
/// backtrace is printed, with `RUST_BACKTRACE=1`) once took over 10 s to reach its catcher.
const HANG: Duration = Duration::from_secs(60);

/// Waits (without blocking a thread) until `cond` holds; a test that never gets there fails
/// after [`HANG`] instead of hanging.
async fn until(mut cond: impl FnMut() -> bool) {
    let give_up = std::time::Instant::now() + HANG;
    while !cond() {
        assert!(std::time::Instant::now() < give_up, "condition never held");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Fails the test instead of hanging if `future` does not finish within [`HANG`].
async fn finishes<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(HANG, future)
        .await
        .expect("a memoized call hung: a cell was left stuck")
}

// ---------------------------------------------------------------------------------------------
// Send, options, hits.

#[derive(Debug, Clone, PartialEq)]
struct Profile {
    name: String,
}

static PROFILE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(ttl = "60s", capacity = 10_000)]
async fn fetch_profile(user: &str) -> Result<Profile, String> {
    PROFILE_RUNS.fetch_add(1, Ordering::SeqCst);
    let delay: u64 = "2".parse().map_err(|_| "bad delay".to_string())?; // `?` in the body
    tokio::time::sleep(Duration::from_millis(delay)).await;
    Ok(Profile {
        name: user.to_string(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_future_is_send_and_hits_share_the_sync_api() {
    // Compiles only if the returned future is `Send`.
    let spawned = tokio::spawn(fetch_profile("ana"));
    assert_eq!(spawned.await.unwrap().unwrap().name, "ana");
    assert_eq!(fetch_profile("ana").await.unwrap().name, "ana");
    assert_eq!(PROFILE_RUNS.load(Ordering::SeqCst), 1);
    let cache: &'static syncmemo::Memo<String, Result<Profile, String>> = fetch_profile_cache();
    assert_eq!(cache.config().capacity, Some(10_000));
    assert_eq!(cache.get("ana").unwrap().unwrap().name, "ana");
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.computations), (1, 1, 1));
    assert!(syncmemo::memo::registry()
        .iter()
        .any(|handle| handle.name().ends_with("::fetch_profile")));
    assert!(cache.invalidate(&"ana".to_string()));
    fetch_profile("ana").await.unwrap();
    assert_eq!(PROFILE_RUNS.load(Ordering::SeqCst), 2);
    // The uncached twin runs the body every time.
    fetch_profile_uncached("ana").await.unwrap();
    assert_eq!(PROFILE_RUNS.load(Ordering::SeqCst), 3);
}

/// Compiles only if every form's call future is `Send` (and `'static` where its arguments
/// are): free functions with borrowed arguments, methods, `ignore`, `key`, generics.
#[test]
fn every_form_returns_a_send_future() {
    fn send<F: Future + Send>(_: F) {}
    fn spawnable<F: Future + Send + 'static>(_: F) {}
    let client = Client {
        region: "eu".into(),
    };
    let user = String::from("ana");
    send(fetch_profile(&user));
    spawnable(fetch_profile("ana"));
    send(client.price("tea"));
    send(client.shared(1));
    spawnable(by_user((1, "a".into())));
    send(with_trace(1, &user));
    spawnable(sum(&[1, 2]));
    spawnable(describe(1u8));
    spawnable(Catalog::lookup(1));
}

/// The future a call returns holds its arguments and a pointer: the body's state (here a 4 KiB
/// buffer held across an `.await`) lives in the miss path's allocation, so spawning or
/// `join`ing many calls stays small, and a hit moves no large state machine.
#[test]
fn the_call_future_stays_small_whatever_the_body_holds() {
    #[memoize]
    async fn big_body(x: u64) -> u64 {
        let buffer = [x as u8; 4096];
        tokio::task::yield_now().await;
        buffer.iter().map(|&b| u64::from(b)).sum()
    }
    let size = std::mem::size_of_val(&big_body(1));
    assert!(size <= 128, "the call future is {size} bytes");
    assert!(std::mem::size_of_val(&big_body_uncached(1)) > 4096);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(big_body(1)), 4096);
    assert_eq!(runtime.block_on(big_body(1)), 4096);
    assert_eq!(big_body_cache().stats().hits, 1);
}

#[derive(Clone, Hash, PartialEq, Eq)]
struct Client {
    region: String,
}

static METHOD_RUNS: AtomicUsize = AtomicUsize::new(0);

impl Client {
    #[memoize]
    async fn price(&self, item: &str) -> u64 {
        METHOD_RUNS.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        (self.region.len() * 100 + item.len()) as u64
    }

    #[memoize(ignore(self))]
    async fn shared(&self, x: u64) -> u64 {
        let _ = &self.region;
        x + 1
    }
}

#[memoize(key: u64 = request.0)]
async fn by_user(request: (u64, String)) -> String {
    format!("user {}", request.0)
}

#[memoize(ignore(trace))]
async fn with_trace(x: u32, trace: &str) -> u32 {
    let _ = trace;
    x * 3
}

#[memoize(skip_none)]
async fn half(x: u32) -> Option<u32> {
    (x % 2 == 0).then_some(x / 2)
}

#[memoize(cache_err)]
async fn always_err(x: u32) -> Result<u32, String> {
    Err(format!("no {x}"))
}

#[memoize]
async fn sum(xs: &[u32]) -> u32 {
    xs.iter().sum()
}

#[tokio::test]
async fn every_option_works_as_in_the_sync_form() {
    let eu = Client {
        region: "eu".into(),
    };
    let us = Client {
        region: "us-east".into(),
    };
    assert_eq!(eu.price("tea").await, 203);
    assert_eq!(eu.price("tea").await, 203);
    assert_eq!(us.price("tea").await, 703);
    assert_eq!(
        METHOD_RUNS.load(Ordering::SeqCst),
        2,
        "keyed on the receiver"
    );
    assert_eq!(Client::price_cache().len(), 2);
    assert_eq!(eu.shared(1).await, us.shared(1).await);
    assert_eq!(Client::shared_cache().stats().computations, 1);

    assert_eq!(by_user((7, "a".into())).await, "user 7");
    assert_eq!(by_user((7, "b".into())).await, "user 7");
    assert_eq!(by_user_cache().stats().hits, 1);

    assert_eq!(with_trace(2, "x").await, with_trace(2, "y").await);
    assert_eq!(with_trace_cache().stats().computations, 1);

    assert_eq!(half(3).await, None);
    assert_eq!(half(4).await, Some(2));
    assert_eq!(half_cache().len(), 1, "None is not cached with skip_none");

    assert!(always_err(1).await.is_err());
    assert_eq!(always_err_cache().len(), 1, "Err is cached with cache_err");

    assert_eq!(sum(&[1, 2, 3]).await, 6);
    assert_eq!(sum(&[1, 2, 3]).await, 6);
    assert!(
        sum_cache().get(&vec![1, 2, 3]).is_some(),
        "&[T] is keyed as Vec<T>"
    );
}

#[memoize(ttl = "30ms")]
async fn stamped(x: u8) -> std::time::Instant {
    let _ = x;
    std::time::Instant::now()
}

#[tokio::test]
async fn ttl_recomputes_expired_entries() {
    let first = stamped(1).await;
    assert_eq!(stamped(1).await, first);
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_ne!(stamped(1).await, first);
    assert_eq!(stamped_cache().stats().expirations, 1);
}

// ---------------------------------------------------------------------------------------------
// Single flight: 1,000 tasks, on each executor.

/// A body that waits for a gate opened by the test once every caller has joined.
macro_rules! gated {
    ($name:ident, $runs:ident, $gate:ident) => {
        static $runs: AtomicUsize = AtomicUsize::new(0);
        static $gate: Semaphore = Semaphore::const_new(0);

        #[memoize]
        async fn $name(key: u64) -> u64 {
            $runs.fetch_add(1, Ordering::SeqCst);
            let _permit = $gate.acquire().await.unwrap();
            key * 10
        }
    };
}

gated!(flight_mt, FLIGHT_MT_RUNS, FLIGHT_MT_GATE);
gated!(flight_ct, FLIGHT_CT_RUNS, FLIGHT_CT_GATE);
gated!(flight_futures, FLIGHT_FUTURES_RUNS, FLIGHT_FUTURES_GATE);
gated!(flight_cancel, FLIGHT_CANCEL_RUNS, FLIGHT_CANCEL_GATE);

async fn thousand_tasks_one_body(
    f: fn(u64) -> std::pin::Pin<Box<dyn Future<Output = u64> + Send>>,
    runs: &'static AtomicUsize,
    gate: &'static Semaphore,
    stats: fn() -> MemoStats,
) {
    let tasks: Vec<_> = (0..1000).map(|_| tokio::spawn(f(5))).collect();
    // Every caller is computing or waiting before the body may finish.
    until(|| stats().waiting == 999).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    gate.add_permits(1000);
    for task in tasks {
        assert_eq!(finishes(task).await.unwrap(), 50);
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the body ran once for 1,000 callers"
    );
    let stats = stats();
    assert_eq!(
        (stats.misses, stats.waits, stats.computations, stats.waiting),
        (1, 999, 1, 0),
        "one miss and 999 waits, as documented"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_flight_1000_tasks_multi_thread() {
    thousand_tasks_one_body(
        |k| Box::pin(flight_mt(k)),
        &FLIGHT_MT_RUNS,
        &FLIGHT_MT_GATE,
        || flight_mt_cache().stats(),
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn single_flight_1000_tasks_current_thread() {
    thousand_tasks_one_body(
        |k| Box::pin(flight_ct(k)),
        &FLIGHT_CT_RUNS,
        &FLIGHT_CT_GATE,
        || flight_ct_cache().stats(),
    )
    .await;
}

/// More keys in flight at once than the process has wake-up events for waiters (256, shared
/// by address): waiters of different keys share events.
const STRIPED_KEYS: usize = 600;

static STRIPED_RUNS: [AtomicUsize; STRIPED_KEYS] = [const { AtomicUsize::new(0) }; STRIPED_KEYS];
static STRIPED_GATES: [Semaphore; STRIPED_KEYS] = [const { Semaphore::const_new(0) }; STRIPED_KEYS];

#[memoize]
async fn striped(key: usize) -> usize {
    STRIPED_RUNS[key].fetch_add(1, Ordering::SeqCst);
    let _permit = STRIPED_GATES[key].acquire().await.unwrap();
    key * 10
}

/// The end of one key's computation wakes the waiters of the other keys of its event too: they
/// must find their own key still computing and wait again (not compute, not return early), and
/// each must still be woken by its own key's end. The keys are invalidated while computing: a
/// waiter that went back to the map on a wakeup for another key would find its key gone and
/// compute it a second time, instead of taking the value of the computation it waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_of_keys_sharing_a_wakeup_event_wait_for_their_own_key() {
    let tasks: Vec<Vec<_>> = (0..STRIPED_KEYS)
        .map(|key| (0..3).map(|_| tokio::spawn(striped(key))).collect())
        .collect();
    until(|| striped_cache().stats().waiting == 2 * STRIPED_KEYS).await;
    for key in 0..STRIPED_KEYS {
        assert!(
            !striped_cache().invalidate(&key),
            "no value yet, only a computation"
        );
    }
    assert!(striped_cache().is_empty());
    for (key, callers) in tasks.into_iter().enumerate() {
        STRIPED_GATES[key].add_permits(3);
        for caller in callers {
            assert_eq!(finishes(caller).await.unwrap(), key * 10);
        }
        // Every later key still has its computing caller and its two waiters.
        let later = STRIPED_KEYS - key - 1;
        until(|| striped_cache().stats().waiting == 2 * later).await;
        assert!(
            STRIPED_RUNS[key..]
                .iter()
                .all(|runs| runs.load(Ordering::SeqCst) == 1),
            "a waiter woken by another key's end computed its own key"
        );
    }
    let stats = striped_cache().stats();
    assert_eq!(
        (stats.misses, stats.waits, stats.waiting),
        (STRIPED_KEYS as u64, 2 * STRIPED_KEYS as u64, 0usize)
    );
}

#[test]
fn single_flight_on_futures_executor_and_plain_threads() {
    use futures::executor::block_on;
    use futures::future::join_all;
    // 4 OS threads, each running 250 callers on its own `block_on`: no tokio anywhere.
    let threads: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| block_on(join_all((0..250).map(|_| flight_futures(9))))))
        .collect();
    let give_up = std::time::Instant::now() + HANG;
    while flight_futures_cache().stats().waiting < 999 {
        assert!(std::time::Instant::now() < give_up, "callers never joined");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(FLIGHT_FUTURES_RUNS.load(Ordering::SeqCst), 1);
    FLIGHT_FUTURES_GATE.add_permits(1000);
    for thread in threads {
        assert!(thread.join().unwrap().iter().all(|&v| v == 90));
    }
    assert_eq!(FLIGHT_FUTURES_RUNS.load(Ordering::SeqCst), 1);
    let stats = flight_futures_cache().stats();
    assert_eq!((stats.misses, stats.waits, stats.waiting), (1, 999, 0));
    // A hit on this executor completes too.
    assert_eq!(block_on(flight_futures(9)), 90);
}

// ---------------------------------------------------------------------------------------------
// Cancellation.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_dropped_while_waiting_leave_the_waiting_gauge() {
    let computing = tokio::spawn(flight_cancel(7));
    until(|| FLIGHT_CANCEL_RUNS.load(Ordering::SeqCst) == 1).await;
    let waiters: Vec<_> = (0..10).map(|_| tokio::spawn(flight_cancel(7))).collect();
    until(|| flight_cancel_cache().stats().waiting == 10).await;
    for waiter in &waiters {
        waiter.abort();
    }
    for waiter in waiters {
        assert!(finishes(waiter).await.unwrap_err().is_cancelled());
    }
    // Each dropped waiter stopped counting; none counted a wait or a miss.
    assert_eq!(flight_cancel_cache().stats().waiting, 0);
    FLIGHT_CANCEL_GATE.add_permits(1);
    assert_eq!(finishes(computing).await.unwrap(), 70);
    let stats = flight_cancel_cache().stats();
    assert_eq!(
        (stats.misses, stats.waits, stats.waiting, stats.computations),
        (1, 0, 0, 1)
    );
    assert_eq!(FLIGHT_CANCEL_RUNS.load(Ordering::SeqCst), 1);
}

static SLOW_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
async fn slow(key: u64) -> u64 {
    SLOW_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    key + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_on_the_computing_caller_hands_over_to_a_waiter() {
    // The computing caller gives up after 20 ms...
    let computing = tokio::spawn(tokio::time::timeout(Duration::from_millis(20), slow(1)));
    until(|| SLOW_RUNS.load(Ordering::SeqCst) == 1).await;
    // ...while 50 others wait for it.
    let waiters: Vec<_> = (0..50).map(|_| tokio::spawn(slow(1))).collect();
    // 50 wait on the first computation, or 49 on a waiter's if the timeout fired first.
    until(|| slow_cache().stats().waiting >= 49).await;
    assert!(
        computing.await.unwrap().is_err(),
        "the computing call timed out"
    );
    for waiter in waiters {
        assert_eq!(finishes(waiter).await.unwrap(), 2);
    }
    // One waiter took over: exactly two bodies started, one finished and was cached.
    assert_eq!(SLOW_RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(slow_cache().stats().computations, 2);
    assert_eq!(slow(1).await, 2);
    assert_eq!(SLOW_RUNS.load(Ordering::SeqCst), 2);

    // Cancelled with nobody waiting: the next call computes.
    let _ = tokio::time::timeout(Duration::from_millis(5), slow(2)).await;
    assert_eq!(slow_cache().get(&2), None);
    assert_eq!(finishes(slow(2)).await, 3);
    assert_eq!(SLOW_RUNS.load(Ordering::SeqCst), 4);
}

static ABORT_STARTED: AtomicUsize = AtomicUsize::new(0);
static ABORT_FINISHED: AtomicUsize = AtomicUsize::new(0);
static ABORT_ACTIVE: AtomicUsize = AtomicUsize::new(0);
static ABORT_OVERLAP: AtomicBool = AtomicBool::new(false);

/// Counts the body as inactive when it ends, by return or by being dropped.
struct Active;

impl Drop for Active {
    fn drop(&mut self) {
        ABORT_ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

#[memoize]
async fn abortable(round: u64) -> u64 {
    ABORT_STARTED.fetch_add(1, Ordering::SeqCst);
    if ABORT_ACTIVE.fetch_add(1, Ordering::SeqCst) != 0 {
        ABORT_OVERLAP.store(true, Ordering::SeqCst);
    }
    let _active = Active;
    tokio::time::sleep(Duration::from_micros(300)).await;
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_micros(300)).await;
    ABORT_FINISHED.fetch_add(1, Ordering::SeqCst);
    round * 2
}

/// xorshift64*: reproducible random delays and choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborts_at_random_points_leave_no_stuck_cell() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let rounds = 200;
    let mut aborted_total = 0;
    for round in 0..rounds {
        let started_before = ABORT_STARTED.load(Ordering::SeqCst);
        let tasks: Vec<_> = (0..8).map(|_| tokio::spawn(abortable(round))).collect();
        tokio::time::sleep(Duration::from_micros(rng.next() % 900)).await;
        let mut kept = Vec::new();
        for task in tasks {
            if rng.next() % 2 == 0 {
                task.abort();
                aborted_total += 1;
                let _ = task.await;
            } else {
                kept.push(task);
            }
        }
        for task in kept {
            assert_eq!(finishes(task).await.unwrap(), round * 2, "round {round}");
        }
        // Whatever was aborted, the key is not stuck: this call returns, and from then on it
        // is a hit.
        assert_eq!(finishes(abortable(round)).await, round * 2, "round {round}");
        let started = ABORT_STARTED.load(Ordering::SeqCst);
        assert_eq!(finishes(abortable(round)).await, round * 2);
        assert_eq!(
            ABORT_STARTED.load(Ordering::SeqCst),
            started,
            "a hit after the round"
        );
        // Exactly one body of the round finished (the value cached); every other start was a
        // body dropped by an abort.
        assert_eq!(ABORT_FINISHED.load(Ordering::SeqCst), round as usize + 1);
        assert!(started > started_before);
    }
    assert!(
        !ABORT_OVERLAP.load(Ordering::SeqCst),
        "two bodies ran at once for one key"
    );
    assert_eq!(ABORT_ACTIVE.load(Ordering::SeqCst), 0);
    let stats = abortable_cache().stats();
    assert_eq!(
        stats.computations,
        ABORT_STARTED.load(Ordering::SeqCst) as u64
    );
    assert_eq!(stats.entries, rounds as usize);
    assert!(aborted_total > 0);
    println!(
        "{rounds} rounds, {aborted_total} aborted callers, {} bodies started for {rounds} cached",
        ABORT_STARTED.load(Ordering::SeqCst)
    );
}

static TIMEOUT_STARTED: AtomicUsize = AtomicUsize::new(0);
static TIMEOUT_FINISHED: AtomicUsize = AtomicUsize::new(0);
static TIMEOUT_ACTIVE: AtomicUsize = AtomicUsize::new(0);
static TIMEOUT_OVERLAP: AtomicBool = AtomicBool::new(false);

/// Counts the body of `timed` as inactive when it ends, by return or by being dropped.
struct TimedActive;

impl Drop for TimedActive {
    fn drop(&mut self) {
        TIMEOUT_ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

#[memoize]
async fn timed(round: u64) -> u64 {
    TIMEOUT_STARTED.fetch_add(1, Ordering::SeqCst);
    if TIMEOUT_ACTIVE.fetch_add(1, Ordering::SeqCst) != 0 {
        TIMEOUT_OVERLAP.store(true, Ordering::SeqCst);
    }
    let _active = TimedActive;
    tokio::time::sleep(Duration::from_micros(300)).await;
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_micros(300)).await;
    TIMEOUT_FINISHED.fetch_add(1, Ordering::SeqCst);
    round + 7
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_at_random_points_leave_no_stuck_cell() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let rounds = 200;
    let (mut timed_out, mut completed) = (0, 0);
    for round in 0..rounds {
        // 8 callers, each under a timeout drawn at random (0 to 4 ms; the body takes 2 to 3 ms
        // with tokio's 1 ms timer): the computing one and the waiters time out at any point, or
        // finish.
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let limit = Duration::from_micros(rng.next() % 4000);
                tokio::spawn(tokio::time::timeout(limit, timed(round)))
            })
            .collect();
        for task in tasks {
            match finishes(task).await.unwrap() {
                Ok(value) => {
                    assert_eq!(value, round + 7, "round {round}");
                    completed += 1;
                }
                Err(_) => timed_out += 1,
            }
        }
        // Whatever timed out, the key is not stuck: this call returns, then it is a hit.
        assert_eq!(finishes(timed(round)).await, round + 7, "round {round}");
        let started = TIMEOUT_STARTED.load(Ordering::SeqCst);
        assert_eq!(finishes(timed(round)).await, round + 7);
        assert_eq!(TIMEOUT_STARTED.load(Ordering::SeqCst), started, "a hit");
        // One body of the round finished; every other start was dropped by a timeout.
        assert_eq!(TIMEOUT_FINISHED.load(Ordering::SeqCst), round as usize + 1);
    }
    assert!(
        !TIMEOUT_OVERLAP.load(Ordering::SeqCst),
        "two bodies ran at once for one key"
    );
    assert_eq!(TIMEOUT_ACTIVE.load(Ordering::SeqCst), 0);
    let stats = timed_cache().stats();
    assert_eq!(
        stats.computations,
        TIMEOUT_STARTED.load(Ordering::SeqCst) as u64
    );
    assert_eq!(stats.entries, rounds as usize);
    assert!(
        timed_out > 0 && completed > 0,
        "{timed_out} timed out, {completed} completed"
    );
    println!(
        "{rounds} rounds: {timed_out} callers timed out, {completed} completed, {} bodies \
         started for {rounds} cached",
        TIMEOUT_STARTED.load(Ordering::SeqCst)
    );
}

// ---------------------------------------------------------------------------------------------
// Panics and `Err`.

static PANIC_RUNS: AtomicUsize = AtomicUsize::new(0);
static PANIC_GATE: Semaphore = Semaphore::const_new(0);

#[memoize]
async fn panics_first(key: u64) -> u64 {
    let run = PANIC_RUNS.fetch_add(1, Ordering::SeqCst);
    let _permit = PANIC_GATE.acquire().await.unwrap();
    if run == 0 {
        panic!("first run fails");
    }
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_reaches_the_computing_caller_and_a_waiter_computes_in_turn() {
    let first = tokio::spawn(panics_first(3));
    until(|| PANIC_RUNS.load(Ordering::SeqCst) == 1).await;
    let waiters: Vec<_> = (0..20).map(|_| tokio::spawn(panics_first(3))).collect();
    until(|| panics_first_cache().stats().waiting == 20).await;
    PANIC_GATE.add_permits(100);
    assert!(first.await.unwrap_err().is_panic());
    for waiter in waiters {
        assert_eq!(finishes(waiter).await.unwrap(), 3);
    }
    assert_eq!(PANIC_RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(panics_first(3).await, 3);
    assert_eq!(PANIC_RUNS.load(Ordering::SeqCst), 2);
}

static ERR_RUNS: AtomicUsize = AtomicUsize::new(0);
static ERR_GATE: Semaphore = Semaphore::const_new(0);

#[memoize]
async fn fails_first(key: u64) -> Result<u64, String> {
    let run = ERR_RUNS.fetch_add(1, Ordering::SeqCst);
    let _permit = ERR_GATE.acquire().await.unwrap();
    if run == 0 {
        return Err("transient".into());
    }
    Ok(key)
}

static CACHED_ERR_RUNS: AtomicUsize = AtomicUsize::new(0);
static CACHED_ERR_GATE: Semaphore = Semaphore::const_new(0);

#[memoize(cache_err)]
async fn fails_cached(key: u64) -> Result<u64, String> {
    CACHED_ERR_RUNS.fetch_add(1, Ordering::SeqCst);
    let _permit = CACHED_ERR_GATE.acquire().await.unwrap();
    Err(format!("no {key}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn err_is_not_shared_with_waiters_unless_cache_err() {
    let first = tokio::spawn(fails_first(4));
    until(|| ERR_RUNS.load(Ordering::SeqCst) == 1).await;
    let waiters: Vec<_> = (0..20).map(|_| tokio::spawn(fails_first(4))).collect();
    until(|| fails_first_cache().stats().waiting == 20).await;
    ERR_GATE.add_permits(100);
    // The computing caller gets its Err; the waiters compute in turn: one runs, the others
    // get its Ok.
    assert_eq!(first.await.unwrap(), Err("transient".to_string()));
    for waiter in waiters {
        assert_eq!(finishes(waiter).await.unwrap(), Ok(4));
    }
    assert_eq!(ERR_RUNS.load(Ordering::SeqCst), 2);

    // With cache_err, waiters get the Err of the computation they joined.
    let first = tokio::spawn(fails_cached(5));
    until(|| CACHED_ERR_RUNS.load(Ordering::SeqCst) == 1).await;
    let waiters: Vec<_> = (0..20).map(|_| tokio::spawn(fails_cached(5))).collect();
    until(|| fails_cached_cache().stats().waiting == 20).await;
    CACHED_ERR_GATE.add_permits(100);
    assert!(first.await.unwrap().is_err());
    for waiter in waiters {
        assert_eq!(finishes(waiter).await.unwrap(), Err("no 5".to_string()));
    }
    assert_eq!(CACHED_ERR_RUNS.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------
// Recursion.

#[memoize]
async fn fib(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    Box::pin(fib(n - 1)).await + Box::pin(fib(n - 2)).await
}

/// Recursion without `Box::pin`: the miss path is boxed by the attribute.
#[memoize]
async fn fib_direct(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    fib_direct(n - 1).await + fib_direct(n - 2).await
}

#[memoize]
async fn same_key_direct(n: u64) -> u64 {
    if n == 0 {
        return same_key_direct(0).await;
    }
    n
}

#[memoize]
async fn same_key(n: u64) -> u64 {
    if n == 0 {
        return Box::pin(same_key(0)).await;
    }
    n
}

/// Recursion through `join`: the inner call is polled from inside the outer computation,
/// alongside another branch.
#[memoize]
async fn same_key_in_join(n: u64) -> u64 {
    let (a, b) = futures::future::join(Box::pin(same_key_in_join(n)), async { n }).await;
    a + b
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursion_through_other_keys_works_and_the_same_key_panics_naming_the_function() {
    assert_eq!(fib(90).await, 2_880_067_194_370_816_120);
    assert_eq!(fib_cache().stats().computations, 91);

    let error = tokio::spawn(same_key(0)).await.unwrap_err();
    let message = panic_message(error.into_panic());
    assert!(message.contains("::same_key`"), "{message}");
    assert!(
        message.contains("called itself with the same arguments"),
        "{message}"
    );
    // Nothing is stuck: the other keys work, and the key is free again (and panics again).
    assert_eq!(same_key(3).await, 3);
    assert!(tokio::spawn(same_key(0)).await.unwrap_err().is_panic());

    let error = tokio::spawn(same_key_in_join(1)).await.unwrap_err();
    assert!(panic_message(error.into_panic()).contains("::same_key_in_join`"));

    // The same without `Box::pin`.
    assert_eq!(fib_direct(90).await, 2_880_067_194_370_816_120);
    assert_eq!(fib_direct_cache().stats().computations, 91);
    let error = tokio::spawn(same_key_direct(0)).await.unwrap_err();
    assert!(panic_message(error.into_panic()).contains("::same_key_direct`"));
    assert_eq!(same_key_direct(4).await, 4);
}

#[test]
fn recursion_is_detected_on_the_futures_executor_too() {
    let result = std::panic::catch_unwind(|| futures::executor::block_on(same_key(0)));
    let message = panic_message(result.unwrap_err());
    assert!(message.contains("::same_key`"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// Sharing across tasks of different runtimes, and invalidation during a computation.

static SHARED_RUNS: AtomicU64 = AtomicU64::new(0);
static SHARED_GATE: Semaphore = Semaphore::const_new(0);

#[memoize]
async fn shared_across_runtimes(key: u64) -> u64 {
    SHARED_RUNS.fetch_add(1, Ordering::SeqCst);
    let _permit = SHARED_GATE.acquire().await.unwrap();
    key
}

#[test]
fn callers_on_two_runtimes_share_one_computation_and_invalidation_in_flight_is_safe() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let on_tokio: Vec<_> = (0..10)
        .map(|_| runtime.spawn(shared_across_runtimes(1)))
        .collect();
    let on_futures = std::thread::spawn(|| {
        futures::executor::block_on(futures::future::join_all(
            (0..10).map(|_| shared_across_runtimes(1)),
        ))
    });
    let give_up = std::time::Instant::now() + HANG;
    // Every caller has joined the computation (a caller that had not yet found the key's cell
    // when it is invalidated would compute again, for itself).
    while shared_across_runtimes_cache().stats().waiting < 19 {
        assert!(std::time::Instant::now() < give_up);
        std::thread::sleep(Duration::from_millis(1));
    }
    // Invalidated while computing: the callers still get the value, which is not cached.
    assert!(!shared_across_runtimes_cache().invalidate(&1));
    SHARED_GATE.add_permits(100);
    for task in on_tokio {
        assert_eq!(runtime.block_on(task).unwrap(), 1);
    }
    assert!(on_futures.join().unwrap().iter().all(|&v| v == 1));
    assert_eq!(SHARED_RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(shared_across_runtimes_cache().get(&1), None);
    let computed_again = Arc::new(futures::executor::block_on(shared_across_runtimes(1)));
    assert_eq!(*computed_again, 1);
    assert_eq!(SHARED_RUNS.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------------------------
// Generic and associated async functions.

#[memoize]
async fn describe<T: std::fmt::Debug + Clone + std::hash::Hash + Eq + Send + Sync + 'static>(
    x: T,
) -> String {
    tokio::task::yield_now().await;
    format!("{x:?}")
}

struct Catalog;

impl Catalog {
    #[memoize]
    async fn lookup(id: u32) -> String {
        format!("item {id}")
    }
}

#[tokio::test]
async fn generic_and_associated_async_functions() {
    assert_eq!(describe(1u8).await, "1");
    assert_eq!(describe("a".to_string()).await, "\"a\"");
    assert_eq!(describe(1u8).await, "1");
    assert_eq!(describe_cache::<u8>().stats().hits, 1);
    assert_eq!(describe_cache::<String>().len(), 1);
    assert_eq!(Catalog::lookup(3).await, "item 3");
    assert_eq!(Catalog::lookup(3).await, "item 3");
    assert_eq!(Catalog::lookup_cache().stats().hits, 1);
}

// ---------------------------------------------------------------------------------------------
// A synchronous computation of the same cache, waited for by an async call.

static MIXED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
async fn mixed(x: u64) -> u64 {
    MIXED_RUNS.fetch_add(1, Ordering::SeqCst);
    x + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_call_waits_for_a_synchronous_computation_of_its_key_and_is_woken() {
    let started = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let sync_caller = {
        let (started, release) = (Arc::clone(&started), Arc::clone(&release));
        std::thread::spawn(move || {
            mixed_cache().get_or_compute(&7, || {
                started.store(true, Ordering::SeqCst);
                while !release.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                70
            })
        })
    };
    until(|| started.load(Ordering::SeqCst)).await;
    // The key is being computed synchronously: the async call waits for that computation
    // (its body does not run), and is woken when it ends.
    let waiter = tokio::spawn(mixed(7));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !waiter.is_finished(),
        "the async call waits for the computation in flight"
    );
    release.store(true, Ordering::SeqCst);
    assert_eq!(sync_caller.join().unwrap(), 70);
    assert_eq!(finishes(waiter).await.unwrap(), 70);
    assert_eq!(
        MIXED_RUNS.load(Ordering::SeqCst),
        0,
        "the async body never ran"
    );
}

static MIXED_RECURSION_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
async fn mixed_recursion(x: u64) -> u64 {
    MIXED_RECURSION_RUNS.fetch_add(1, Ordering::SeqCst);
    // Held in flight until the test lets it go.
    until(|| MIXED_RELEASE.load(Ordering::SeqCst)).await;
    x + 1
}

static MIXED_RELEASE: AtomicBool = AtomicBool::new(false);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronous_same_key_recursion_panics_while_an_async_call_computes_the_key() {
    // An async computation of key 3 is in flight ...
    let async_caller = tokio::spawn(mixed_recursion(3));
    until(|| MIXED_RECURSION_RUNS.load(Ordering::SeqCst) == 1).await;
    // ... while a synchronous computation of the same key recurses into itself: that is
    // reported as a recursion (a panic naming the function), not a thread blocked for ever.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(|| {
            mixed_recursion_cache()
                .get_or_compute(&3, || mixed_recursion_cache().get_or_compute(&3, || 30) + 1)
        });
        let _ = done_tx.send(outcome.map_err(|payload| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default()
        }));
    });
    let outcome = tokio::task::spawn_blocking(move || done_rx.recv_timeout(HANG))
        .await
        .unwrap()
        .expect("the recursive synchronous call blocked instead of panicking");
    let message = outcome.expect_err("a same-key recursion panics");
    assert!(
        message.contains("mixed_recursion` called itself with the same arguments"),
        "{message}"
    );
    MIXED_RELEASE.store(true, Ordering::SeqCst);
    assert_eq!(finishes(async_caller).await.unwrap(), 4);
}
