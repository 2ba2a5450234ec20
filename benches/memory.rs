//! Bytes per entry at 1M `u64 -> u64` entries (or the sizes `--workloads` names), each
//! subject in a fresh child process:
//!
//! - the maps (`SyncMap` and its peers): 1M `store`s, then two loads of each key (SyncMap
//!   promotes a shard's dirty map after as many missed loads as half its entries);
//! - the memoization caches: 1M distinct calls of a memoized `fn(u64) -> u64` (`#[memoize]`,
//!   quick_cache `get_or_insert_with` with a capacity of 1.25M, `cached`'s `#[cached]` with its
//!   default `UnboundCache`, moka `get_with` with a capacity of 16M), then two more calls of
//!   each key (hits; the body must have run exactly once per key).
//!
//! Three rows per subject: the live bytes requested from a counting global allocator; with
//! glibc, the heap those requests take (each allocation's `malloc_usable_size` plus the 8-byte
//! chunk header), which is what a structure that allocates per entry really costs; and the
//! resident memory the child gained (`/proc/self/statm`, Linux), which also counts what was
//! freed but not returned to the system (old tables) and the allocator's own overhead.
//!
//! A table that doubles when full costs between 1 and 2 times its minimum, so one size can
//! flatter or wrong a subject; `--workloads 500k,1.5M,3M` measures others.
//!
//! `cargo bench --bench memory [-- --quick] [--maps x,y] [--workloads 1M,1.5M]`

#[path = "common/maps.rs"]
mod maps;
#[path = "common/runner.rs"]
mod runner;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use maps::BenchMap;
use runner::{Args, Row};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
static LIVE_HEAP: AtomicIsize = AtomicIsize::new(0);

/// Whether [`heap_size`] knows the allocator (glibc's malloc).
const COUNTS_HEAP: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

/// The heap an allocation of glibc's malloc takes: its usable size and the chunk header.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_size(ptr: *mut u8) -> Option<isize> {
    // SAFETY: `ptr` is a live allocation of `System`, which is glibc's malloc here.
    let usable = unsafe { libc::malloc_usable_size(ptr.cast()) };
    Some((usable + std::mem::size_of::<usize>()) as isize)
}
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_size(_ptr: *mut u8) -> Option<isize> {
    None
}

// SAFETY: forwards to `System` and counts requested (and, with glibc, taken) bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded.
        let ptr = unsafe { System.alloc(layout) };
        if let Some(size) = heap_size(ptr).filter(|_| !ptr.is_null()) {
            LIVE_HEAP.fetch_add(size, Ordering::Relaxed);
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        if let Some(size) = heap_size(ptr) {
            LIVE_HEAP.fetch_sub(size, Ordering::Relaxed);
        }
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

/// What one subject added, per entry.
struct PerEntry {
    requested: f64,
    heap: Option<f64>,
    resident: Option<f64>,
}

/// The resident memory of this process, in bytes (`/proc/self/statm`, Linux only).
fn resident() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: `sysconf` has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page > 0).then_some(pages * page as f64)
}

/// Runs `fill` (which builds a structure of `n` entries and returns it, to be dropped after the
/// measurement) and returns what it added per entry.
fn per_entry<T>(n: u64, fill: impl FnOnce() -> T) -> PerEntry {
    let before = LIVE.load(Ordering::SeqCst);
    let heap_before = LIVE_HEAP.load(Ordering::SeqCst);
    let resident_before = resident();
    let kept = fill();
    let resident_after = resident();
    let requested = (LIVE.load(Ordering::SeqCst) - before) as f64 / n as f64;
    let heap = (LIVE_HEAP.load(Ordering::SeqCst) - heap_before) as f64 / n as f64;
    drop(kept);
    PerEntry {
        requested,
        heap: COUNTS_HEAP.then_some(heap),
        resident: resident_before
            .zip(resident_after)
            .map(|(b, a)| (a - b) / n as f64),
    }
}

/// A map of `n` entries, settled.
fn map_per_entry<M: BenchMap>(n: u64) -> PerEntry {
    per_entry(n, || {
        let map = M::create();
        for k in 0..n {
            map.store(k, k);
        }
        // Settle: SyncMap promotes a shard's dirty map after missed loads of half its entries.
        for _ in 0..2 {
            for k in 0..n {
                map.load(k);
            }
        }
        let mut count = 0;
        map.range(&mut |_, _| {
            count += 1;
            true
        });
        assert_eq!(count, n);
        map
    })
}

/// The memoization subjects (names for `--maps`).
const MEMOS: &[&str] = &["#[memoize]", "quick_cache", "cached UnboundCache", "moka"];

/// How many times the memoized bodies ran.
static BODY_RUNS: AtomicIsize = AtomicIsize::new(0);

fn body(x: u64) -> u64 {
    BODY_RUNS.fetch_add(1, Ordering::Relaxed);
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[syncmemo::memoize]
fn with_memoize(x: u64) -> u64 {
    body(x)
}

#[cached::proc_macro::cached]
fn with_cached(x: u64) -> u64 {
    body(x)
}

/// 1M distinct memoized calls, then two more rounds of hits, through `call`.
fn memo_per_entry<T>(
    n: u64,
    create: impl FnOnce() -> T,
    call: impl Fn(&T, u64) -> u64,
) -> PerEntry {
    per_entry(n, || {
        let cache = create();
        for _ in 0..3 {
            for k in 0..n {
                std::hint::black_box(call(&cache, k));
            }
        }
        assert_eq!(
            BODY_RUNS.load(Ordering::Relaxed),
            n as isize,
            "every key stays cached"
        );
        cache
    })
}

/// Measures `subject` in this process (the child).
fn measure(subject: &str, n: u64) -> PerEntry {
    match subject {
        "#[memoize]" => memo_per_entry(n, || (), |_, k| with_memoize(k)),
        "cached UnboundCache" => memo_per_entry(n, || (), |_, k| with_cached(k)),
        "quick_cache" => memo_per_entry(
            n,
            || quick_cache::sync::Cache::<u64, u64>::new((n + n / 4) as usize),
            |c, k| {
                c.get_or_insert_with(&k, || Ok::<_, std::convert::Infallible>(body(k)))
                    .unwrap()
            },
        ),
        "moka" => memo_per_entry(
            n,
            || moka::sync::Cache::<u64, u64>::new(1 << 24),
            |c, k| c.get_with(k, || body(k)),
        ),
        map => with_map!(map, map_per_entry, n),
    }
}

/// The sizes `--workloads` may name, in entries; without it, 1M (100k with `--quick`).
const SIZES: &[(&str, u64)] = &[
    ("100k", 100_000),
    ("200k", 200_000),
    ("500k", 500_000),
    ("700k", 700_000),
    ("1M", 1_000_000),
    ("1.5M", 1_500_000),
    ("2M", 2_000_000),
    ("3M", 3_000_000),
];

/// The child's answer on stdout: `per-entry requested heap resident` (`-` when unknown).
const CHILD: &str = "SYNCMEMO_MEMORY_CHILD";

fn main() {
    if let Ok(subject) = std::env::var(CHILD) {
        let n = std::env::var("SYNCMEMO_MEMORY_N").map_or(1_000_000, |n| n.parse().unwrap());
        let m = measure(&subject, n);
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| v.to_string());
        println!(
            "per-entry {} {} {}",
            m.requested,
            opt(m.heap),
            opt(m.resident)
        );
        return;
    }
    let subjects: Vec<&str> = maps::ALL.iter().chain(MEMOS).copied().collect();
    let size_names: Vec<&str> = SIZES.iter().map(|(name, _)| *name).collect();
    let args = Args::parse("memory", &size_names, &subjects);
    let sizes: Vec<u64> = match args.workloads {
        Some(_) => SIZES
            .iter()
            .filter(|(name, _)| args.wants_workload(name))
            .map(|&(_, n)| n)
            .collect(),
        None if args.quick => vec![100_000],
        None => vec![1_000_000],
    };
    let exe = std::env::current_exe().expect("the bench's own path");
    let mut rows = Vec::new();
    for (n, subject) in sizes.iter().flat_map(|&n| {
        subjects
            .iter()
            .filter(|s| args.wants_map(s))
            .map(move |s| (n, s))
    }) {
        let out = std::process::Command::new(&exe)
            .env(CHILD, subject)
            .env("SYNCMEMO_MEMORY_N", n.to_string())
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run the bench's child");
        assert!(out.status.success(), "{subject}: the child failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("per-entry "))
            .unwrap_or_else(|| panic!("{subject}: no answer in {text:?}"));
        let fields: Vec<Option<f64>> = line.split(' ').map(|f| f.parse().ok()).collect();
        let (requested, heap, resident) =
            (fields[0].expect("requested bytes"), fields[1], fields[2]);
        eprintln!(
            "{subject:<20} {requested:6.1} bytes/entry requested at {n} entries, heap {heap:?}, \
             resident {resident:?}"
        );
        let mut push = |workload: String, value: f64| {
            rows.push(Row {
                workload,
                subject: subject.to_string(),
                threads: 1,
                value,
            })
        };
        push(format!("bytes per entry, {n} u64 -> u64"), requested);
        if let Some(heap) = heap {
            push(
                format!("heap bytes per entry (glibc chunks), {n} u64 -> u64"),
                heap,
            );
        }
        if let Some(resident) = resident {
            push(
                format!("resident bytes per entry (statm), {n} u64 -> u64"),
                resident,
            );
        }
    }
    runner::report(
        &rows,
        "memory.json",
        "map",
        "bytes_per_entry",
        "bytes per entry",
    );
}
