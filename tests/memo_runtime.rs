//! The memoization runtime (`syncmemo::Memo` and the `__private` API that `#[memoize]` calls),
//! tested by hand-written memoized functions: single flight, panics, recursion, invalidation
//! in flight, capacity, TTL, `keep`, striped statistics and the registry.
//!
//! Every test that could hang on a bug runs under a watchdog and fails instead.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use syncmemo::__private::{KeyRef, MemoDebug, MemoOptions, StaticMemo};
use syncmemo::memo::registry;
use syncmemo::Memo;

/// Runs `f` on its own thread; fails the test if it does not finish within `secs` seconds.
fn watchdog<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let result = panic::catch_unwind(AssertUnwindSafe(f));
        let _ = tx.send(());
        result
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => match handle.join().expect("caught above") {
            Ok(value) => value,
            Err(payload) => panic::resume_unwind(payload),
        },
        Err(_) => panic!("watchdog: the test hung for {secs} s (deadlock or lost wake-up)"),
    }
}

fn leak<K, V>(name: &'static str, options: MemoOptions) -> &'static Memo<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Box::leak(Box::new(Memo::new(name, options.into())))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn concurrent_misses_compute_once() {
    watchdog(30, || {
        const THREADS: usize = 8;
        let memo: &'static Memo<u64, String> = leak("t::single_flight", MemoOptions::DEFAULT);
        let runs = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (runs, barrier) = (runs.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    memo.__call(
                        &7,
                        || 7,
                        || {
                            runs.fetch_add(1, Ordering::SeqCst);
                            thread::sleep(Duration::from_millis(200));
                            "seven".to_string()
                        },
                        |_| true,
                    )
                })
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.join().unwrap(), "seven");
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "the body ran more than once"
        );
        let stats = memo.stats();
        assert_eq!(stats.computations, 1);
        // One caller computed; the others waited for it (or came after and hit).
        assert_eq!(stats.misses, 1);
        assert_eq!(stats.hits + stats.waits, THREADS as u64 - 1);
        assert_eq!(stats.hit_ratio(), Some(7.0 / 8.0));
        assert_eq!(stats.entries, 1);
    });
}

#[test]
fn a_panic_caches_nothing_propagates_and_waiters_retry() {
    watchdog(30, || {
        let memo: &'static Memo<u64, u64> = leak("t::panics", MemoOptions::DEFAULT);
        let runs = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(Barrier::new(2));

        // The first caller starts computing, lets the waiter in, then panics.
        let first = {
            let (runs, started) = (runs.clone(), started.clone());
            thread::spawn(move || {
                memo.__call(
                    &1,
                    || 1,
                    || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        started.wait();
                        thread::sleep(Duration::from_millis(150));
                        panic!("body failed");
                    },
                    |_| true,
                )
            })
        };
        started.wait();
        let waiter = {
            let runs = runs.clone();
            thread::spawn(move || {
                memo.__call(
                    &1,
                    || 1,
                    || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        10
                    },
                    |_| true,
                )
            })
        };
        let payload = first.join().expect_err("the panic must reach its caller");
        assert_eq!(panic_message(&*payload), "body failed");
        assert_eq!(
            waiter.join().unwrap(),
            10,
            "the waiter retries and computes"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        // After a lone panic nothing is cached, and the next call computes normally.
        let alone = panic::catch_unwind(|| memo.__call(&2, || 2, || panic!("again"), |_| true));
        assert!(alone.is_err());
        assert_eq!(memo.get(&2), None);
        assert_eq!(memo.__call(&2, || 2, || 20, |_| true), 20);
        assert_eq!(memo.get(&2), Some(20));
    });
}

static FIB: StaticMemo<u64, u64> = StaticMemo::new("memo_runtime::fib", MemoOptions::DEFAULT);

fn fib(n: u64) -> u64 {
    FIB.get(MemoDebug::default).__call(
        &n,
        || n,
        || if n < 2 { n } else { fib(n - 1) + fib(n - 2) },
        |_| true,
    )
}

#[test]
fn recursion_through_other_keys_works() {
    let fib90 = watchdog(10, || fib(90));
    assert_eq!(fib90, 2_880_067_194_370_816_120);
    let stats = FIB.get(MemoDebug::default).stats();
    assert_eq!(stats.computations, 91);
}

static LOOP: StaticMemo<u64, u64> = StaticMemo::new("memo_runtime::forever", MemoOptions::DEFAULT);

fn forever(n: u64) -> u64 {
    LOOP.get(MemoDebug::default)
        .__call(&n, || n, || forever(n) + 1, |_| true)
}

#[test]
fn recursion_with_the_same_key_panics_naming_the_function() {
    let result = watchdog(10, || panic::catch_unwind(|| forever(3)));
    let message = panic_message(&*result.expect_err("must panic, not return"));
    assert!(
        message.contains("memo_runtime::forever"),
        "message does not name the function: {message}"
    );
    // Nothing stuck: the key can be used again (and panics again, not hangs).
    assert!(watchdog(10, || panic::catch_unwind(|| forever(3)).is_err()));
    assert_eq!(LOOP.get(MemoDebug::default).len(), 0);
}

#[test]
fn invalidate_in_flight_does_not_strand_waiters() {
    watchdog(30, || {
        let memo: &'static Memo<u64, u64> = leak("t::invalidate_in_flight", MemoOptions::DEFAULT);
        let started = Arc::new(Barrier::new(2));
        let runs = Arc::new(AtomicUsize::new(0));
        let computer = {
            let (started, runs) = (started.clone(), runs.clone());
            thread::spawn(move || {
                memo.__call(
                    &5,
                    || 5,
                    || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        started.wait();
                        thread::sleep(Duration::from_millis(200));
                        50
                    },
                    |_| true,
                )
            })
        };
        started.wait();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let runs = runs.clone();
                thread::spawn(move || {
                    memo.__call(
                        &5,
                        || 5,
                        || {
                            runs.fetch_add(1, Ordering::SeqCst);
                            50
                        },
                        |_| true,
                    )
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(50));
        // An entry in flight is not a cached value: invalidate reports false and removes it.
        assert!(!memo.invalidate(&5));
        memo.clear();
        assert_eq!(computer.join().unwrap(), 50);
        for waiter in waiters {
            assert_eq!(waiter.join().unwrap(), 50);
        }
        // The key still works afterwards.
        assert_eq!(memo.__call(&5, || 5, || 50, |_| true), 50);
        assert_eq!(memo.get(&5), Some(50));
    });
}

#[test]
fn invalidate_and_invalidate_if() {
    let memo: &'static Memo<(String, u32), u32> = leak("t::invalidate", MemoOptions::DEFAULT);
    for i in 0..10 {
        memo.__call(
            &KeyRef(("k", &i)),
            || ("k".to_string(), i),
            || i * 10,
            |_| true,
        );
    }
    assert_eq!(memo.get(&KeyRef(("k", &3))), Some(30));
    assert!(memo.invalidate(&KeyRef(("k", &3))));
    assert!(!memo.invalidate(&KeyRef(("k", &3))));
    assert_eq!(memo.get(&("k".to_string(), 3)), None);
    assert_eq!(memo.invalidate_if(|(_, i), _| i % 2 == 0), 5);
    let mut left: Vec<u32> = Vec::new();
    memo.range(|(_, i), v| {
        assert_eq!(*v, i * 10);
        left.push(*i);
        true
    });
    left.sort();
    assert_eq!(left, [1, 5, 7, 9]);
    assert_eq!(memo.len(), 4);
    memo.clear();
    assert!(memo.is_empty());
}

#[test]
fn keep_false_is_returned_but_not_cached() {
    let memo: &'static Memo<u8, Result<u8, String>> = leak("t::keep", MemoOptions::DEFAULT);
    let runs = AtomicUsize::new(0);
    for _ in 0..3 {
        let value = memo.__call(
            &1,
            || 1,
            || {
                runs.fetch_add(1, Ordering::SeqCst);
                Err("transient".to_string())
            },
            Result::is_ok,
        );
        assert_eq!(value, Err("transient".to_string()));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3, "an Err must not stick");
    assert_eq!(memo.len(), 0);
    assert_eq!(memo.__call(&1, || 1, || Ok(1), Result::is_ok), Ok(1));
    assert_eq!(memo.__call(&1, || 1, || Ok(2), Result::is_ok), Ok(1));
}

#[test]
fn capacity_bounds_the_entries() {
    watchdog(60, || {
        const CAP: usize = 16;
        let options = MemoOptions {
            capacity: Some(CAP),
            ttl: None,
            ..MemoOptions::DEFAULT
        };
        let memo: &'static Memo<u64, u64> = leak("t::capacity", options);
        for k in 0..500 {
            assert_eq!(memo.__call(&k, || k, || k + 1, |_| true), k + 1);
            assert!(memo.len() <= CAP, "len {} > capacity {CAP}", memo.len());
        }
        let stats = memo.stats();
        assert!(
            stats.evictions + stats.rejections >= 500 - CAP as u64,
            "{stats:?}"
        );
        memo.clear();
        // Concurrent fills never exceed it either, and every call gets its own key's value.
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                thread::spawn(move || {
                    for k in 0..2000u64 {
                        let key = (k * 7 + t) % 300;
                        assert_eq!(memo.__call(&key, || key, || key * 3, |_| true), key * 3);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert!(memo.len() <= CAP);
    });
}

#[test]
fn capacity_never_evicts_an_entry_in_flight() {
    watchdog(30, || {
        let options = MemoOptions {
            capacity: Some(2),
            ttl: None,
            ..MemoOptions::DEFAULT
        };
        let memo: &'static Memo<u64, u64> = leak("t::capacity_in_flight", options);
        let runs = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(Barrier::new(2));
        let slow = {
            let (runs, started) = (runs.clone(), started.clone());
            thread::spawn(move || {
                memo.__call(
                    &1000,
                    || 1000,
                    || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        started.wait();
                        thread::sleep(Duration::from_millis(300));
                        1
                    },
                    |_| true,
                )
            })
        };
        started.wait();
        // Fill the cache with other keys while 1000 is in flight.
        for k in 0..50 {
            memo.__call(&k, || k, || k, |_| true);
        }
        // A caller of the in-flight key still joins the one computation.
        let runs2 = runs.clone();
        let joined = memo.__call(
            &1000,
            || 1000,
            || {
                runs2.fetch_add(1, Ordering::SeqCst);
                2
            },
            |_| true,
        );
        assert_eq!(slow.join().unwrap(), 1);
        assert_eq!(
            joined, 1,
            "the in-flight entry was evicted and computed twice"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn ttl_recomputes_and_purges() {
    let options = MemoOptions {
        capacity: None,
        ttl: Some(Duration::from_millis(100)),
        ..MemoOptions::DEFAULT
    };
    let memo: &'static Memo<u8, usize> = leak("t::ttl", options);
    let runs = AtomicUsize::new(0);
    let call = |k: u8| {
        memo.__call(
            &k,
            || k,
            || runs.fetch_add(1, Ordering::SeqCst) + 1,
            |_| true,
        )
    };
    assert_eq!(call(1), 1);
    assert_eq!(call(1), 1, "fresh: a hit");
    assert_eq!(call(2), 2);
    thread::sleep(Duration::from_millis(150));
    assert_eq!(memo.get(&1), None, "expired values are not returned");
    assert_eq!(call(1), 3, "expired: recomputed on access");
    assert_eq!(call(1), 3);
    assert_eq!(memo.purge_expired(), 1, "only key 2 is expired");
    assert_eq!(memo.len(), 1);
    assert!(memo.stats().expirations >= 2);
    // Without a TTL nothing is purged.
    let plain: &'static Memo<u8, u8> = leak("t::no_ttl", MemoOptions::DEFAULT);
    plain.__call(&1, || 1, || 1, |_| true);
    assert_eq!(plain.purge_expired(), 0);
    assert_eq!(plain.len(), 1);
}

#[test]
fn stats_sum_the_stripes_of_every_thread() {
    let memo: &'static Memo<u64, u64> = leak("t::stats", MemoOptions::DEFAULT);
    for k in 0..10 {
        memo.__call(&k, || k, || k, |_| true);
    }
    let handles: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                for i in 0..1000u64 {
                    memo.__call(&(i % 10), || i % 10, || unreachable!(), |_| true);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let stats = memo.stats();
    assert_eq!(stats.hits, 4000);
    assert_eq!(stats.misses, 10);
    assert_eq!(stats.computations, 10);
    assert_eq!(stats.entries, 10);
    assert_eq!(memo.get(&3), Some(3));
    assert_eq!(memo.stats().hits, 4000, "get is a peek: it counts nothing");
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Opaque(u8);

static SHOWN: StaticMemo<(String, u8), Vec<u8>> =
    StaticMemo::new("memo_runtime::shown", MemoOptions::DEFAULT);
static HIDDEN: StaticMemo<Opaque, Opaque> =
    StaticMemo::new("memo_runtime::hidden", MemoOptions::DEFAULT);

#[test]
fn registry_lists_dumps_and_clears() {
    let shown = SHOWN.get(|| MemoDebug {
        key: syncmemo::__private::debug_fn!((String, u8)),
        value: syncmemo::__private::debug_fn!(Vec<u8>),
        ..MemoDebug::default()
    });
    shown.__call(
        &KeyRef(("a", &1u8)),
        || ("a".into(), 1),
        || vec![1, 2],
        |_| true,
    );
    let hidden = HIDDEN.get(|| MemoDebug {
        key: syncmemo::__private::debug_fn!(Opaque),
        value: syncmemo::__private::debug_fn!(Opaque),
        ..MemoDebug::default()
    });
    hidden.__call(&Opaque(1), || Opaque(1), || Opaque(2), |_| true);
    // Getting the static again registers nothing twice.
    SHOWN.get(MemoDebug::default);

    let handles = registry();
    let find = |name: &str| {
        let found: Vec<_> = handles.iter().filter(|h| h.name() == name).collect();
        assert_eq!(found.len(), 1, "{name} registered {} times", found.len());
        *found[0]
    };
    let shown_handle = find("memo_runtime::shown");
    assert_eq!(shown_handle.len(), 1);
    assert_eq!(
        shown_handle.dump(),
        [("(\"a\", 1)".to_string(), "[1, 2]".to_string())]
    );
    assert_eq!(shown_handle.stats().misses, 1);
    let hidden_handle = find("memo_runtime::hidden");
    let dump = hidden_handle.dump();
    assert_eq!(dump.len(), 1);
    assert!(dump[0].0.contains("not Debug") && dump[0].1.contains("not Debug"));
    assert!(format!("{hidden_handle:?}").contains("memo_runtime::hidden"));
    assert_eq!(
        shown_handle.to_string(),
        "memo_runtime::shown: 1 entries, 0 hits, 1 misses, 1 computations\n  (\"a\", 1) = [1, 2]"
    );
    hidden_handle.clear();
    assert!(hidden.is_empty());
    assert!(hidden_handle.is_empty());
}

static GENERIC: syncmemo::__private::GenericMemos = syncmemo::__private::GenericMemos::new();

fn generic_double<T>(x: T) -> T
where
    T: Clone + Eq + std::hash::Hash + Send + Sync + std::ops::Add<Output = T> + 'static,
{
    GENERIC
        .get::<T, T>(
            "memo_runtime::generic_double",
            MemoOptions::DEFAULT,
            MemoDebug::default,
        )
        .__call(&x, || x.clone(), || x.clone() + x.clone(), |_| true)
}

#[test]
fn generic_functions_get_one_cache_per_instantiation() {
    assert_eq!(generic_double(2u32), 4);
    assert_eq!(generic_double(2u64), 4);
    assert_eq!(generic_double(2u32), 4);
    let a = GENERIC.get::<u32, u32>(
        "memo_runtime::generic_double",
        MemoOptions::DEFAULT,
        MemoDebug::default,
    );
    let b = GENERIC.get::<u64, u64>(
        "memo_runtime::generic_double",
        MemoOptions::DEFAULT,
        MemoDebug::default,
    );
    assert!(!std::ptr::eq(
        a as *const _ as *const u8,
        b as *const _ as *const u8
    ));
    assert_eq!((a.stats().hits, a.stats().misses), (1, 1));
    assert_eq!((b.stats().hits, b.stats().misses), (0, 1));
    let named = registry()
        .iter()
        .filter(|h| h.name() == "memo_runtime::generic_double")
        .count();
    assert_eq!(named, 2);
}

#[test]
fn many_threads_many_keys_compute_each_key_once() {
    watchdog(60, || {
        let memo: &'static Memo<u64, u64> = leak("t::many", MemoOptions::DEFAULT);
        let runs = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let (runs, barrier) = (runs.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    for i in 0..400u64 {
                        let key = (i * (t + 1)) % 97;
                        let got = memo.__call(
                            &key,
                            || key,
                            || {
                                runs.fetch_add(1, Ordering::SeqCst);
                                thread::yield_now();
                                key * key
                            },
                            |_| true,
                        );
                        assert_eq!(got, key * key);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(runs.load(Ordering::SeqCst), memo.len());
        assert_eq!(memo.stats().computations as usize, memo.len());
    });
}

#[test]
fn stats_stay_exact_with_more_threads_than_stripes() {
    watchdog(120, || {
        // More live threads than exclusive stripes: the extra ones share stripes, and no count
        // may be lost between an owner's plain update and a sharer's atomic one.
        const THREADS: usize = 100;
        const HITS: u64 = 20_000;
        let memo: &'static Memo<u8, u8> = leak("t::many_stripes", MemoOptions::DEFAULT);
        memo.__call(&0, || 0, || 0, |_| true);
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..HITS {
                        memo.__call(&0, || 0, || unreachable!(), |_| true);
                    }
                    // Stay alive until every thread is done, so stripes stay claimed.
                    barrier.wait();
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        let stats = memo.stats();
        assert_eq!(stats.hits, THREADS as u64 * HITS);
        assert_eq!(stats.misses, 1);
    });
}
