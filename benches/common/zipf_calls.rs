//! The "zipf bounded" and "zipf unbounded" workloads of `benches/memoize.rs`: 2M calls whose keys
//! are drawn from Zipf 0.9 over 100k keys, split across the threads, a trivial body; bounded
//! caches hold 10k entries. The figure is wall time / calls (ns per call), medians of rounds,
//! each round starting from an empty cache, subjects alternating within a round. It includes
//! the misses, so it moves with the hit ratio (printed to stderr) and with what a miss costs.
#![allow(dead_code)]

use std::hint::black_box;
use std::sync::{Barrier, LazyLock, Mutex};
use std::time::Instant;

use cached::Cached;

pub const WORKLOADS: [&str; 2] = ["zipf bounded", "zipf unbounded"];
pub const SUBJECTS: [&str; 4] = [
    "syncmemo #[memoize]",
    "cached",
    "moka get_with",
    "quick_cache",
];
const KEYS: usize = 100_000;
const CAPACITY: usize = 10_000;

/// The 2M keys (fewer with `--quick`), drawn once.
fn trace(quick: bool) -> &'static [u64] {
    static FULL: LazyLock<Vec<u64>> = LazyLock::new(|| draw(2_000_000));
    static QUICK: LazyLock<Vec<u64>> = LazyLock::new(|| draw(500_000));
    if quick {
        &QUICK
    } else {
        &FULL
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Zipf(0.9) ranks over `KEYS`, by inverting the cumulative distribution; ranks map to
/// scrambled keys.
fn draw(calls: usize) -> Vec<u64> {
    let mut cdf = Vec::with_capacity(KEYS);
    let mut sum = 0.0;
    for k in 1..=KEYS {
        sum += 1.0 / (k as f64).powf(0.9);
        cdf.push(sum);
    }
    (0..calls as u64)
        .map(|i| {
            let u = (mix(i ^ 0x5eed) >> 11) as f64 / (1u64 << 53) as f64 * sum;
            mix(cdf.partition_point(|&c| c < u).min(KEYS - 1) as u64) >> 16
        })
        .collect()
}

fn body(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)
}

#[syncmemo::memoize(capacity = 10_000)]
fn ours_bounded(x: u64) -> u64 {
    body(x)
}

#[syncmemo::memoize]
fn ours_unbounded(x: u64) -> u64 {
    body(x)
}

type Lru = Mutex<cached::LruCache<u64, u64>>;
type Unbound = Mutex<cached::UnboundCache<u64, u64>>;

/// What `#[cached(size = 10_000)]` / `#[cached]` keep: a store behind a mutex.
static CACHED_BOUNDED: LazyLock<Lru> =
    LazyLock::new(|| Mutex::new(cached::LruCache::new(CAPACITY)));
static CACHED_UNBOUNDED: LazyLock<Unbound> =
    LazyLock::new(|| Mutex::new(cached::UnboundCache::new()));

fn cached_call<C: Cached<u64, u64>>(cache: &Mutex<C>, x: u64) -> u64 {
    if let Some(&v) = cache.lock().unwrap().cache_get(&x) {
        return v;
    }
    let v = body(x);
    cache.lock().unwrap().cache_set(x, v);
    v
}

/// One round of `subject` on `workload` with `threads` threads: (ns per call, hit ratio).
fn round(subject: &str, bounded: bool, keys: &[u64], threads: usize) -> (f64, f64) {
    let capacity = if bounded { CAPACITY } else { 1 << 24 };
    let moka = (subject == "moka get_with").then(|| moka::sync::Cache::new(capacity as u64));
    let quick =
        (subject == "quick_cache").then(|| quick_cache::sync::Cache::<u64, u64>::new(capacity));
    match (subject, bounded) {
        ("syncmemo #[memoize]", true) => ours_bounded_cache().clear(),
        ("syncmemo #[memoize]", false) => ours_unbounded_cache().clear(),
        ("cached", true) => CACHED_BOUNDED.lock().unwrap().cache_clear(),
        ("cached", false) => CACHED_UNBOUNDED.lock().unwrap().cache_clear(),
        _ => {}
    }
    let computations_before = match bounded {
        true => ours_bounded_cache().stats().computations,
        false => ours_unbounded_cache().stats().computations,
    };
    let runs = std::sync::atomic::AtomicU64::new(0);
    let barrier = Barrier::new(threads);
    let per_thread = keys.len() / threads;
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let slice = &keys[t * per_thread..(t + 1) * per_thread];
            let (barrier, moka, quick, runs) = (&barrier, &moka, &quick, &runs);
            s.spawn(move || {
                barrier.wait();
                let mut misses = 0u64;
                for &k in slice {
                    let v = match subject {
                        "syncmemo #[memoize]" if bounded => ours_bounded(k),
                        "syncmemo #[memoize]" => ours_unbounded(k),
                        "cached" if bounded => cached_call(&CACHED_BOUNDED, k),
                        "cached" => cached_call(&CACHED_UNBOUNDED, k),
                        "moka get_with" => moka.as_ref().unwrap().get_with(k, || {
                            misses += 1;
                            body(k)
                        }),
                        "quick_cache" => quick
                            .as_ref()
                            .unwrap()
                            .get_or_insert_with(&k, || {
                                misses += 1;
                                Ok::<_, ()>(body(k))
                            })
                            .unwrap(),
                        other => panic!("unknown subject {other}"),
                    };
                    black_box(v);
                }
                runs.fetch_add(misses, std::sync::atomic::Ordering::Relaxed);
            });
        }
    });
    let elapsed = start.elapsed();
    let calls = (per_thread * threads) as f64;
    let misses = match subject {
        "syncmemo #[memoize]" => {
            let after = match bounded {
                true => ours_bounded_cache().stats().computations,
                false => ours_unbounded_cache().stats().computations,
            };
            (after - computations_before) as f64
        }
        "cached" => f64::NAN, // not counted by this store
        _ => runs.load(std::sync::atomic::Ordering::Relaxed) as f64,
    };
    (elapsed.as_nanos() as f64 / calls, 1.0 - misses / calls)
}

/// Runs the workload for each wanted subject and thread count: medians of rounds, subjects
/// alternating within a round. Returns (subject, threads, ns per call).
pub fn run(
    workload: &str,
    subjects: &[&str],
    threads: &[usize],
    quick: bool,
) -> Vec<(String, usize, f64)> {
    let bounded = workload == "zipf bounded";
    let keys = trace(quick);
    let rounds = if quick { 3 } else { 5 };
    let mut out = Vec::new();
    for &t in threads {
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); subjects.len()];
        for _ in 0..rounds {
            for (i, subject) in subjects.iter().enumerate() {
                let (ns, hit_ratio) = round(subject, bounded, keys, t);
                eprintln!(
                    "  {workload} {subject} {t} thread(s): {ns:.1} ns/call, hit ratio {:.1}%",
                    hit_ratio * 100.0
                );
                samples[i].push(ns);
            }
        }
        for (subject, mut s) in subjects.iter().zip(samples) {
            s.sort_by(f64::total_cmp);
            out.push((subject.to_string(), t, s[s.len() / 2]));
        }
    }
    out
}
