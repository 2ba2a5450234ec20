//! Bytes per entry at 1M `u64 -> u64` entries, from a counting global allocator, after the map
//! settled (for SyncMap, after enough loads to promote the dirty map): the live bytes requested
//! and, with glibc, the heap those requests take (each allocation's `malloc_usable_size` plus
//! the 8-byte chunk header), which is what a map that allocates per entry really costs.
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

/// Bytes requested and (with glibc) heap bytes taken per entry.
fn bytes_per_entry<M: BenchMap>(n: u64) -> (f64, Option<f64>) {
    let before = LIVE.load(Ordering::SeqCst);
    let heap_before = LIVE_HEAP.load(Ordering::SeqCst);
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
    let heap = (LIVE_HEAP.load(Ordering::SeqCst) - heap_before) as f64 / n as f64;
    drop(map);
    (bytes, COUNTS_HEAP.then_some(heap))
}

fn main() {
    let args = Args::parse("memory", &[], maps::ALL);
    let n = if args.quick { 100_000 } else { 1_000_000 };
    let mut rows = Vec::new();
    for map in maps::ALL.iter().filter(|m| args.wants_map(m)) {
        let (bytes, heap) = with_map!(*map, bytes_per_entry, n);
        eprintln!("{map:<18} {bytes:6.1} bytes/entry requested at {n} entries, heap {heap:?}");
        rows.push(Row {
            workload: format!("bytes per entry, {n} u64 -> u64"),
            subject: map.to_string(),
            threads: 1,
            value: bytes,
        });
        if let Some(heap) = heap {
            rows.push(Row {
                workload: format!("heap bytes per entry (glibc chunks), {n} u64 -> u64"),
                subject: map.to_string(),
                threads: 1,
                value: heap,
            });
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
