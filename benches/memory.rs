//! Bytes per entry at 1M `u64 -> u64` entries, from a counting global allocator (live bytes
//! requested), after the map settled: for SyncMap, after enough loads to promote the dirty map.
//!
//! `cargo bench --bench memory [-- --quick] [--maps x,y]`

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
// SAFETY: forwards to `System` and counts requested bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

fn bytes_per_entry<M: BenchMap>(n: u64) -> f64 {
    let before = LIVE.load(Ordering::SeqCst);
    let map = M::create();
    for k in 0..n {
        map.store(k, k);
    }
    // Settle: SyncMap promotes its dirty map after as many missed loads as it has entries.
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
    let bytes = (LIVE.load(Ordering::SeqCst) - before) as f64 / n as f64;
    drop(map);
    bytes
}

fn main() {
    let args = Args::parse("memory", &[], maps::ALL);
    let n = if args.quick { 100_000 } else { 1_000_000 };
    let mut rows = Vec::new();
    for map in maps::ALL.iter().filter(|m| args.wants_map(m)) {
        let bytes = with_map!(*map, bytes_per_entry, n);
        eprintln!("{map:<18} {bytes:6.1} bytes/entry at {n} entries");
        rows.push(Row {
            workload: format!("bytes per entry, {n} u64 -> u64"),
            subject: map.to_string(),
            threads: 1,
            value: bytes,
        });
    }
    runner::report(
        &rows,
        "memory.json",
        "map",
        "bytes_per_entry",
        "bytes per entry",
    );
}
