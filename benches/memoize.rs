//! `#[memoize]` (also with its miss-ratio curve on, 1% sampling) against what users would pick
//! instead: `cached` (`#[cached]`, with and without
//! `sync_writes`), the `memoize` crate (shared and thread-local caches), moka's `get_with`,
//! quick_cache's `get_or_insert_with`, and a hand-written `RwLock<HashMap>`.
//!
//! `cargo bench --bench memoize [-- --quick] [--workloads a,b] [--maps x,y] [--threads 1,2]`
//!
//! Workloads: `hit u64` and `hit &str` (1024 warm keys), `miss u64` (a new key each call, a
//! trivial body), `stampede` (all threads ask for the same missing key, whose body takes 20 µs;
//! the figure is µs per key, and the number of body runs per key is printed), `zipf bounded`
//! and `zipf unbounded` (see `common/zipf_calls.rs`: 2M Zipf 0.9 calls over 100k keys split
//! across the threads, capacity 10k; subjects `#[memoize]`, cached, moka, quick_cache). Also
//! prints allocations per hit. Writes `target/bench/memoize.json`. The async rows (`async hit
//! u64`, `async stampede`: `#[memoize] async fn` against moka's `future::Cache::get_with`,
//! quick_cache's `get_value_or_guard_async` and `cached`'s async `#[cached]`) are described in
//! `common/memoize_async.rs`.

#[path = "../tests/support/alloc_counter.rs"]
mod alloc_counter;
#[path = "common/memoize_async.rs"]
mod memoize_async;
#[path = "common/runner.rs"]
mod runner;
#[path = "common/zipf_calls.rs"]
mod zipf_calls;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, LazyLock};
use std::time::{Duration, Instant};

use runner::{prepare, Args, Row, Sampler};

use alloc_counter::allocations;

const KEYS: u64 = 1024;
static STR_KEYS: LazyLock<Vec<String>> =
    LazyLock::new(|| (0..KEYS).map(|i| format!("key-{i:05}")).collect());
static BODY_RUNS: AtomicU64 = AtomicU64::new(0);
/// New keys for the miss workload, shared by every run so that keys are never reused.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1 << 40);

fn cheap(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)
}

fn slow(x: u64) -> u64 {
    BODY_RUNS.fetch_add(1, Ordering::Relaxed);
    let until = Instant::now() + Duration::from_micros(20);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    x
}

/// The three functions of one subject: u64 key, &str key, slow body.
trait Subject: Sync {
    const NAME: &'static str;
    fn u64_key(x: u64) -> u64;
    fn str_key(s: &str) -> usize;
    fn slow_key(x: u64) -> u64;
}

mod ours {
    #[syncmemo::memoize]
    pub fn u64_key(x: u64) -> u64 {
        super::cheap(x)
    }
    #[syncmemo::memoize]
    pub fn str_key(s: &str) -> usize {
        s.len()
    }
    #[syncmemo::memoize]
    pub fn slow_key(x: u64) -> u64 {
        super::slow(x)
    }
}

/// The same functions with the miss-ratio curve on (1% of keys sampled; see `main`).
mod ours_mrc {
    #[syncmemo::memoize]
    pub fn u64_key(x: u64) -> u64 {
        super::cheap(x)
    }
    #[syncmemo::memoize]
    pub fn str_key(s: &str) -> usize {
        s.len()
    }
    #[syncmemo::memoize]
    pub fn slow_key(x: u64) -> u64 {
        super::slow(x)
    }
}

mod cached_plain {
    use cached::proc_macro::cached;
    #[cached(sync_writes = false)]
    pub fn u64_key(x: u64) -> u64 {
        super::cheap(x)
    }
    #[cached(sync_writes = false, key = "String", convert = r#"{ s.to_string() }"#)]
    pub fn str_key(s: &str) -> usize {
        s.len()
    }
    #[cached(sync_writes = false)]
    pub fn slow_key(x: u64) -> u64 {
        super::slow(x)
    }
}

mod cached_sync {
    use cached::proc_macro::cached;
    #[cached(sync_writes = true)]
    pub fn u64_key(x: u64) -> u64 {
        super::cheap(x)
    }
    #[cached(sync_writes = true, key = "String", convert = r#"{ s.to_string() }"#)]
    pub fn str_key(s: &str) -> usize {
        s.len()
    }
    #[cached(sync_writes = true)]
    pub fn slow_key(x: u64) -> u64 {
        super::slow(x)
    }
}

mod memoize_shared {
    use memoize::memoize;
    #[memoize(SharedCache)]
    pub fn u64_key(x: u64) -> u64 {
        super::cheap(x)
    }
    /// The `memoize` crate rejects `&str` arguments: callers pass an owned `String`.
    #[memoize(SharedCache)]
    pub fn str_key(s: String) -> usize {
        s.len()
    }
    #[memoize(SharedCache)]
    pub fn slow_key(x: u64) -> u64 {
        super::slow(x)
    }
}

mod memoize_local {
    use memoize::memoize;
    #[memoize]
    pub fn u64_key(x: u64) -> u64 {
        super::cheap(x)
    }
    #[memoize]
    pub fn str_key(s: String) -> usize {
        s.len()
    }
    #[memoize]
    pub fn slow_key(x: u64) -> u64 {
        super::slow(x)
    }
}

mod moka_cache {
    use std::sync::LazyLock;
    type C<K, V> = LazyLock<moka::sync::Cache<K, V>>;
    static U64: C<u64, u64> = LazyLock::new(|| moka::sync::Cache::new(1 << 24));
    static STR: C<String, usize> = LazyLock::new(|| moka::sync::Cache::new(1 << 24));
    static SLOW: C<u64, u64> = LazyLock::new(|| moka::sync::Cache::new(1 << 24));
    pub fn u64_key(x: u64) -> u64 {
        U64.get_with(x, || super::cheap(x))
    }
    pub fn str_key(s: &str) -> usize {
        STR.get_with_by_ref(s, || s.len())
    }
    pub fn slow_key(x: u64) -> u64 {
        SLOW.get_with(x, || super::slow(x))
    }
}

mod quick {
    use std::convert::Infallible;
    use std::sync::LazyLock;
    type C<K, V> = LazyLock<quick_cache::sync::Cache<K, V>>;
    static U64: C<u64, u64> = LazyLock::new(|| quick_cache::sync::Cache::new(1 << 24));
    static STR: C<String, usize> = LazyLock::new(|| quick_cache::sync::Cache::new(1 << 24));
    static SLOW: C<u64, u64> = LazyLock::new(|| quick_cache::sync::Cache::new(1 << 24));
    pub fn u64_key(x: u64) -> u64 {
        U64.get_or_insert_with(&x, || Ok::<_, Infallible>(super::cheap(x)))
            .unwrap()
    }
    pub fn str_key(s: &str) -> usize {
        STR.get_or_insert_with(s, || Ok::<_, Infallible>(s.len()))
            .unwrap()
    }
    pub fn slow_key(x: u64) -> u64 {
        SLOW.get_or_insert_with(&x, || Ok::<_, Infallible>(super::slow(x)))
            .unwrap()
    }
}

mod rwlock {
    use super::*;
    type C<K, V> = LazyLock<parking_lot::RwLock<HashMap<K, V, foldhash::fast::RandomState>>>;
    static U64: C<u64, u64> = LazyLock::new(Default::default);
    static STR: C<String, usize> = LazyLock::new(Default::default);
    static SLOW: C<u64, u64> = LazyLock::new(Default::default);
    pub fn u64_key(x: u64) -> u64 {
        if let Some(v) = U64.read().get(&x) {
            return *v;
        }
        let v = super::cheap(x);
        *U64.write().entry(x).or_insert(v)
    }
    pub fn str_key(s: &str) -> usize {
        if let Some(v) = STR.read().get(s) {
            return *v;
        }
        let v = s.len();
        *STR.write().entry(s.to_string()).or_insert(v)
    }
    pub fn slow_key(x: u64) -> u64 {
        if let Some(v) = SLOW.read().get(&x) {
            return *v;
        }
        let v = super::slow(x);
        *SLOW.write().entry(x).or_insert(v)
    }
}

macro_rules! subject {
    ($ty:ident, $name:literal, $module:ident, str_arg: $convert:expr) => {
        struct $ty;
        impl Subject for $ty {
            const NAME: &'static str = $name;
            fn u64_key(x: u64) -> u64 {
                $module::u64_key(x)
            }
            fn str_key(s: &str) -> usize {
                #[allow(clippy::redundant_closure_call)]
                $module::str_key(($convert)(s))
            }
            fn slow_key(x: u64) -> u64 {
                $module::slow_key(x)
            }
        }
    };
}

subject!(Ours, "syncmemo #[memoize]", ours, str_arg: |s| s);
subject!(OursMrc, "syncmemo + miss-ratio curve", ours_mrc, str_arg: |s| s);
subject!(CachedPlain, "cached", cached_plain, str_arg: |s| s);
subject!(CachedSync, "cached sync_writes", cached_sync, str_arg: |s| s);
subject!(MemoizeShared, "memoize SharedCache", memoize_shared, str_arg: |s: &str| s.to_string());
subject!(MemoizeLocal, "memoize thread-local", memoize_local, str_arg: |s: &str| s.to_string());
subject!(Moka, "moka get_with", moka_cache, str_arg: |s| s);
subject!(Quick, "quick_cache", quick, str_arg: |s| s);
subject!(RwLockMap, "RwLock<HashMap>", rwlock, str_arg: |s| s);

const SUBJECTS: &[&str] = &[
    "syncmemo #[memoize]",
    "syncmemo + miss-ratio curve",
    "cached",
    "cached sync_writes",
    "memoize SharedCache",
    "memoize thread-local",
    "moka get_with",
    "quick_cache",
    "RwLock<HashMap>",
];

macro_rules! with_subject {
    ($name:expr, $f:ident $(, $arg:expr)*) => {
        match $name {
            "syncmemo #[memoize]" => $f::<Ours>($($arg),*),
            "syncmemo + miss-ratio curve" => $f::<OursMrc>($($arg),*),
            "cached" => $f::<CachedPlain>($($arg),*),
            "cached sync_writes" => $f::<CachedSync>($($arg),*),
            "memoize SharedCache" => $f::<MemoizeShared>($($arg),*),
            "memoize thread-local" => $f::<MemoizeLocal>($($arg),*),
            "moka get_with" => $f::<Moka>($($arg),*),
            "quick_cache" => $f::<Quick>($($arg),*),
            "RwLock<HashMap>" => $f::<RwLockMap>($($arg),*),
            other => panic!("unknown subject {other}"),
        }
    };
}

/// Warms every key on this thread (thread-local caches need it per thread).
fn warm<S: Subject>() {
    for i in 0..KEYS {
        S::u64_key(i);
        S::str_key(&STR_KEYS[i as usize]);
    }
}

/// The calibrated sampler of a per-call workload (not the stampede) on `S`.
fn run<S: Subject>(workload: &str, args: &Args, threads: usize) -> Sampler<'static> {
    match workload {
        "hit u64" => prepare(
            args,
            threads,
            || (),
            move || {
                warm::<S>();
                move |_: &(), i: u64| {
                    black_box(S::u64_key(i % KEYS));
                }
            },
        ),
        "hit &str" => prepare(
            args,
            threads,
            || (),
            move || {
                warm::<S>();
                move |_: &(), i: u64| {
                    black_box(S::str_key(&STR_KEYS[(i % KEYS) as usize]));
                }
            },
        ),
        "miss u64" => prepare(
            args,
            threads,
            || (),
            move || {
                move |_: &(), _: u64| {
                    black_box(S::u64_key(NEXT_KEY.fetch_add(1, Ordering::Relaxed)));
                }
            },
        ),
        other => panic!("unknown workload {other}"),
    }
}

/// All threads call the slow function with the same new key at once; µs per key.
fn stampede<S: Subject>(args: &Args, threads: usize) -> f64 {
    let rounds: u64 = if args.quick { 50 } else { 400 };
    let barrier = Barrier::new(threads);
    let runs_before = BODY_RUNS.load(Ordering::Relaxed);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..rounds {
                    barrier.wait();
                    let key = NEXT_KEY.load(Ordering::Relaxed);
                    black_box(S::slow_key(key));
                    if barrier.wait().is_leader() {
                        NEXT_KEY.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let per_key = start.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let runs = BODY_RUNS.load(Ordering::Relaxed) - runs_before;
    eprintln!(
        "  stampede {}: {threads} thread(s), {:.2} body runs per key",
        S::NAME,
        runs as f64 / rounds as f64
    );
    per_key
}

fn allocations_per_hit<S: Subject>() -> (f64, f64) {
    warm::<S>();
    warm::<S>();
    let n = 10_000u64;
    let before = allocations();
    for i in 0..n {
        black_box(S::u64_key(i % KEYS));
    }
    let u64_hits = (allocations() - before) as f64 / n as f64;
    let before = allocations();
    for i in 0..n {
        black_box(S::str_key(&STR_KEYS[(i % KEYS) as usize]));
    }
    (u64_hits, (allocations() - before) as f64 / n as f64)
}

fn main() {
    const WORKLOADS: [&str; 6] = [
        "hit u64",
        "hit &str",
        "miss u64",
        "stampede",
        zipf_calls::WORKLOADS[0],
        zipf_calls::WORKLOADS[1],
    ];
    let all_workloads: Vec<&str> = WORKLOADS
        .iter()
        .chain(&memoize_async::WORKLOADS)
        .copied()
        .collect();
    let mut all_subjects = SUBJECTS.to_vec();
    all_subjects.extend(
        memoize_async::SUBJECTS
            .iter()
            .filter(|s| !SUBJECTS.contains(s)),
    );
    let args = Args::parse("memoize", &all_workloads, &all_subjects);
    ours_mrc::u64_key_cache().enable_miss_ratio_curve(0.01);
    ours_mrc::str_key_cache().enable_miss_ratio_curve(0.01);
    ours_mrc::slow_key_cache().enable_miss_ratio_curve(0.01);
    let mut rows = Vec::new();
    for subject in SUBJECTS.iter().filter(|s| args.wants_map(s)) {
        let (u64_allocs, str_allocs) = with_subject!(*subject, allocations_per_hit);
        for (workload, value) in [
            ("allocations per hit, u64", u64_allocs),
            ("allocations per hit, &str", str_allocs),
        ] {
            rows.push(Row {
                workload: workload.to_string(),
                subject: subject.to_string(),
                threads: 1,
                value,
            });
        }
    }
    // Workload-major order: every hit measurement runs before the miss workload fills the same
    // caches with millions of keys (which made the 2-thread hits memory-bound in earlier runs).
    for workload in WORKLOADS {
        if !args.wants_workload(workload) {
            continue;
        }
        if zipf_calls::WORKLOADS.contains(&workload) {
            let subjects: Vec<&str> = zipf_calls::SUBJECTS
                .into_iter()
                .filter(|s| args.wants_map(s))
                .collect();
            for (subject, threads, value) in
                zipf_calls::run(workload, &subjects, &args.threads, args.quick)
            {
                eprintln!("{workload:<10} {subject:<22} {threads} thread(s): {value:9.1} ns/call");
                rows.push(Row {
                    workload: workload.to_string(),
                    subject,
                    threads,
                    value,
                });
            }
            continue;
        }
        for &threads in &args.threads {
            let subjects = args.wanted_maps(SUBJECTS);
            let values = if workload == "stampede" {
                subjects
                    .iter()
                    .map(|subject| with_subject!(*subject, stampede, &args, threads))
                    .collect()
            } else {
                // Calibrated first, then measured in rounds, one run of each subject per
                // round, so that their ratios compare runs taken side by side.
                let mut samplers: Vec<Sampler<'static>> = subjects
                    .iter()
                    .map(|subject| with_subject!(*subject, run, workload, &args, threads))
                    .collect();
                runner::medians_interleaved(args.budget().1, &mut samplers)
            };
            for (subject, value) in subjects.iter().zip(values) {
                let unit = if workload == "stampede" {
                    "µs/key"
                } else {
                    "ns/call"
                };
                eprintln!("{workload:<10} {subject:<22} {threads} thread(s): {value:9.1} {unit}");
                rows.push(Row {
                    workload: workload.to_string(),
                    subject: subject.to_string(),
                    threads,
                    value,
                });
            }
        }
    }
    memoize_async::run(&args, &mut rows);
    runner::report(
        &rows,
        "memoize.json",
        "subject",
        "value",
        "ns per call (stampede: µs per key; allocation rows: allocations per hit)",
    );
}
