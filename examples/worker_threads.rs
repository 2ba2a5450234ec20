//! `cargo run --example worker_threads`: a pool of worker threads computing overlapping keys.
//! Single flight computes each key once, however many workers ask for it at the same time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use syncmemo::memoize;

static COMPUTATIONS: AtomicUsize = AtomicUsize::new(0);

/// Collatz stopping time, slowed down to make overlapping requests likely.
#[memoize]
fn stopping_time(n: u64) -> u32 {
    COMPUTATIONS.fetch_add(1, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(2));
    let (mut n, mut steps) = (n, 0);
    while n != 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

fn main() {
    const WORKERS: u64 = 8;
    const JOBS_PER_WORKER: u64 = 200;
    const UNIQUE_KEYS: u64 = 50;
    std::thread::scope(|scope| {
        for worker in 0..WORKERS {
            scope.spawn(move || {
                for job in 0..JOBS_PER_WORKER {
                    // Workers walk the same keys in different orders.
                    let key = 1 + (job * 7 + worker * 13) % UNIQUE_KEYS;
                    stopping_time(key);
                }
            });
        }
    });
    let calls = WORKERS * JOBS_PER_WORKER;
    let computations = COMPUTATIONS.load(Ordering::Relaxed);
    let stats = stopping_time_cache().stats();
    println!("{calls} calls from {WORKERS} threads over {UNIQUE_KEYS} unique keys");
    println!(
        "{computations} computations (== unique keys: {}), {} hits, {} misses",
        computations as u64 == UNIQUE_KEYS,
        stats.hits,
        stats.misses
    );
    assert_eq!(computations as u64, UNIQUE_KEYS);
}
