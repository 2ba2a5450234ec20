//! The async rows of `benches/memoize.rs`, on a tokio multi-thread runtime with as many
//! workers as the row's thread count:
//!
//! - `async hit u64`: each worker's task awaits hits on 1024 warm keys in a loop; ns per call.
//!   The `syncmemo #[memoize]` column is the *synchronous* memoized function called from the
//!   same tasks, the reference for the async hit.
//! - `async stampede`: 1,000 tasks ask for the same missing key at once; its body spins for
//!   10 µs, yields to the executor, and spins 10 µs more (so that the other tasks do ask while
//!   it runs, also on one worker); µs per key (spawning the 1,000 tasks included, for every
//!   subject alike). The `syncmemo #[memoize]` column's body is the synchronous 20 µs spin (it
//!   cannot yield).
//! - `async stampede body runs per key`: the body runs of that workload divided by the keys.
//!   The subjects that promise single flight (all but `cached async` without `sync_writes`)
//!   must show exactly 1.00: the bench panics otherwise.

use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::runner::{Args, Row};
use super::{cheap, BODY_RUNS, KEYS, NEXT_KEY};

/// The stampede's body: 20 µs of work with a yield in the middle.
async fn slow(x: u64) -> u64 {
    BODY_RUNS.fetch_add(1, Ordering::Relaxed);
    spin(Duration::from_micros(10));
    tokio::task::yield_now().await;
    spin(Duration::from_micros(10));
    x
}

fn spin(time: Duration) {
    let until = Instant::now() + time;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

pub const WORKLOADS: [&str; 2] = ["async hit u64", "async stampede"];

pub const SUBJECTS: &[&str] = &[
    "syncmemo async",
    "syncmemo #[memoize]",
    "moka future get_with",
    "quick_cache async guard",
    "cached async",
    "cached async sync_writes",
];

mod ours {
    #[syncmemo::memoize]
    pub async fn u64_key(x: u64) -> u64 {
        super::cheap(x)
    }
    #[syncmemo::memoize]
    pub async fn slow_key(x: u64) -> u64 {
        super::slow(x).await
    }
}

mod ours_sync {
    pub async fn u64_key(x: u64) -> u64 {
        crate::ours::u64_key(x)
    }
    pub async fn slow_key(x: u64) -> u64 {
        crate::ours::slow_key(x)
    }
}

mod moka_future {
    use std::sync::LazyLock;
    type C = LazyLock<moka::future::Cache<u64, u64>>;
    static U64: C = LazyLock::new(|| moka::future::Cache::new(1 << 24));
    static SLOW: C = LazyLock::new(|| moka::future::Cache::new(1 << 24));
    pub async fn u64_key(x: u64) -> u64 {
        U64.get_with(x, async move { super::cheap(x) }).await
    }
    pub async fn slow_key(x: u64) -> u64 {
        SLOW.get_with(x, super::slow(x)).await
    }
}

mod quick_async {
    use std::sync::LazyLock;
    type C = LazyLock<quick_cache::sync::Cache<u64, u64>>;
    static U64: C = LazyLock::new(|| quick_cache::sync::Cache::new(1 << 24));
    static SLOW: C = LazyLock::new(|| quick_cache::sync::Cache::new(1 << 24));
    async fn get<F: std::future::Future<Output = u64>>(cache: &'static C, x: u64, f: F) -> u64 {
        match cache.get_value_or_guard_async(&x).await {
            Ok(value) => value,
            Err(guard) => {
                let value = f.await;
                let _ = guard.insert(value);
                value
            }
        }
    }
    pub async fn u64_key(x: u64) -> u64 {
        get(&U64, x, async move { super::cheap(x) }).await
    }
    pub async fn slow_key(x: u64) -> u64 {
        get(&SLOW, x, super::slow(x)).await
    }
}

mod cached_async {
    use cached::proc_macro::cached;
    #[cached(sync_writes = false)]
    pub async fn u64_key(x: u64) -> u64 {
        super::cheap(x)
    }
    #[cached(sync_writes = false)]
    pub async fn slow_key(x: u64) -> u64 {
        super::slow(x).await
    }
}

mod cached_async_sync {
    use cached::proc_macro::cached;
    #[cached(sync_writes = true)]
    pub async fn u64_key(x: u64) -> u64 {
        super::cheap(x)
    }
    #[cached(sync_writes = true)]
    pub async fn slow_key(x: u64) -> u64 {
        super::slow(x).await
    }
}

type BoxFuture = std::pin::Pin<Box<dyn Future<Output = u64> + Send>>;

/// A subject's two functions, boxed only where spawned (the stampede), never in the hit loop.
#[derive(Clone, Copy)]
struct Subject {
    name: &'static str,
    /// Whether it promises one body run per key among concurrent callers.
    single_flight: bool,
    hit_loop: fn(u64, u64) -> BoxFuture,
    slow: fn(u64) -> BoxFuture,
}

macro_rules! subject {
    ($name:literal, $module:ident, single_flight: $single_flight:expr) => {
        Subject {
            name: $name,
            single_flight: $single_flight,
            hit_loop: |start, n| {
                Box::pin(async move {
                    let mut sum = 0u64;
                    for i in start..start + n {
                        sum = sum.wrapping_add(black_box($module::u64_key(i % KEYS).await));
                        // Hits never yield: let the scheduler spread the tasks over the
                        // workers (otherwise one worker may run them one after the other).
                        if i % 4096 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    sum
                })
            },
            slow: |x| Box::pin($module::slow_key(x)),
        }
    };
}

fn subjects() -> Vec<Subject> {
    vec![
        subject!("syncmemo async", ours, single_flight: true),
        subject!("syncmemo #[memoize]", ours_sync, single_flight: true),
        subject!("moka future get_with", moka_future, single_flight: true),
        subject!("quick_cache async guard", quick_async, single_flight: true),
        // Without `sync_writes`, concurrent misses all run the body.
        subject!("cached async", cached_async, single_flight: false),
        subject!("cached async sync_writes", cached_async_sync, single_flight: true),
    ]
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .build()
        .expect("a tokio runtime")
}

/// Wall time of `threads` tasks each awaiting `n` hits.
fn hit_run(rt: &tokio::runtime::Runtime, subject: Subject, threads: usize, n: u64) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..threads as u64)
            .map(|t| tokio::spawn((subject.hit_loop)(t * 7, n)))
            .collect();
        for task in tasks {
            black_box(task.await.unwrap());
        }
        start.elapsed()
    })
}

fn async_hits(args: &Args, threads: usize, wanted: &[Subject]) -> Vec<f64> {
    let rt = runtime(threads);
    let (target, runs) = args.budget();
    // Warm every key (and each worker's first use of the caches), then calibrate.
    let mut iterations = Vec::new();
    for subject in wanted {
        hit_run(&rt, *subject, threads, KEYS * 4);
        let mut n = 1024u64;
        loop {
            let elapsed = hit_run(&rt, *subject, threads, n);
            if elapsed >= target / 10 || n >= 1 << 30 {
                let per_call = elapsed.as_secs_f64() / n as f64;
                n = ((target.as_secs_f64() / per_call) as u64).clamp(1024, 1 << 30);
                break;
            }
            n *= 4;
        }
        iterations.push(n);
    }
    // Rounds of one run per subject, as the sync rows do; medians.
    let mut samples = vec![Vec::new(); wanted.len()];
    for _ in 0..runs {
        for ((subject, &n), samples) in wanted.iter().zip(&iterations).zip(&mut samples) {
            let elapsed = hit_run(&rt, *subject, threads, n);
            samples.push(elapsed.as_nanos() as f64 / (n as f64 * threads as f64));
        }
    }
    samples.into_iter().map(median).collect()
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

/// 1,000 tasks ask for one new key at once, `rounds` times; µs per key, and body runs per key.
///
/// # Panics
///
/// If a subject that promises single flight ran the body more than once for a key.
fn async_stampede(args: &Args, threads: usize, subject: Subject) -> (f64, f64) {
    const TASKS: usize = 1000;
    let rounds: u64 = if args.quick { 10 } else { 100 };
    let rt = runtime(threads);
    let runs_before = BODY_RUNS.load(Ordering::Relaxed);
    let start = Instant::now();
    rt.block_on(async {
        for _ in 0..rounds {
            let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
            let tasks: Vec<_> = (0..TASKS)
                .map(|_| tokio::spawn((subject.slow)(key)))
                .collect();
            for task in tasks {
                assert_eq!(task.await.unwrap(), key);
            }
        }
    });
    let per_key = start.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let runs = BODY_RUNS.load(Ordering::Relaxed) - runs_before;
    eprintln!(
        "  async stampede {}: {threads} thread(s), {runs} body runs for {rounds} keys",
        subject.name,
    );
    if subject.single_flight {
        assert_eq!(
            runs, rounds,
            "{} promises one body run per key, but ran {runs} for {rounds} keys",
            subject.name
        );
    }
    (per_key, runs as f64 / rounds as f64)
}

/// Measures the async workloads the arguments select and appends their rows.
pub fn run(args: &Args, rows: &mut Vec<Row>) {
    let wanted: Vec<Subject> = subjects()
        .into_iter()
        .filter(|s| args.wants_map(s.name))
        .collect();
    if wanted.is_empty() {
        return;
    }
    eprintln!(
        "size of the future of one call, bytes: syncmemo async {}, moka future get_with {}, \
         quick_cache async guard {}, cached async {}",
        std::mem::size_of_val(&ours::slow_key(0)),
        std::mem::size_of_val(&moka_future::slow_key(0)),
        std::mem::size_of_val(&quick_async::slow_key(0)),
        std::mem::size_of_val(&cached_async::slow_key(0)),
    );
    let mut body_runs = Vec::new();
    for workload in WORKLOADS {
        if !args.wants_workload(workload) {
            continue;
        }
        for &threads in &args.threads {
            let values = if workload == "async hit u64" {
                async_hits(args, threads, &wanted)
            } else {
                let (times, runs): (Vec<f64>, Vec<f64>) = wanted
                    .iter()
                    .map(|s| async_stampede(args, threads, *s))
                    .unzip();
                body_runs.extend(wanted.iter().zip(runs).map(|(subject, runs)| Row {
                    workload: "async stampede body runs per key".to_string(),
                    subject: subject.name.to_string(),
                    threads,
                    value: runs,
                }));
                times
            };
            for (subject, value) in wanted.iter().zip(values) {
                let unit = if workload == "async hit u64" {
                    "ns/call"
                } else {
                    "µs/key"
                };
                eprintln!(
                    "{workload:<14} {:<26} {threads} thread(s): {value:9.1} {unit}",
                    subject.name
                );
                rows.push(Row {
                    workload: workload.to_string(),
                    subject: subject.name.to_string(),
                    threads,
                    value,
                });
            }
        }
    }
    rows.extend(body_runs);
}
