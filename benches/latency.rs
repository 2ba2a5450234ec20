//! Worst-case single-operation latency (HdrHistogram, ns): inserts growing a map from empty to
//! 1M entries, and loads of present keys while another thread inserts new keys. SyncMap against
//! papaya and dashmap (and RwLock<HashMap> for scale). Go's design pauses on the first new key
//! after a promotion (an O(n) copy); this shows whether SyncMap does.
//!
//! `cargo bench --bench latency [-- --quick] [--maps x,y]`

#[path = "common/maps.rs"]
mod maps;
#[path = "common/runner.rs"]
mod runner;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use maps::BenchMap;
use runner::{Args, Row};

const SUBJECTS: &[&str] = &["SyncMap+foldhash", "papaya", "dashmap", "RwLock<HashMap>"];

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000_000, 3).unwrap()
}

fn inserts<M: BenchMap>(n: u64) -> Histogram<u64> {
    let map = M::create();
    let mut h = histogram();
    for k in 0..n {
        let start = Instant::now();
        map.store(k, k);
        h.saturating_record(start.elapsed().as_nanos() as u64);
    }
    h
}

fn loads_under_writer<M: BenchMap>(n: u64) -> Histogram<u64> {
    let map = M::create();
    for k in 0..n / 10 {
        map.store(k, k);
    }
    for k in 0..n / 10 {
        map.load(k);
        map.load(k);
    }
    let stop = AtomicBool::new(false);
    let mut h = histogram();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut k = n;
            while !stop.load(Ordering::Relaxed) {
                map.store(k, k);
                k += 1;
            }
        });
        for i in 0..n {
            let key = (i * 7919) % (n / 10);
            let start = Instant::now();
            black_box(map.load(key));
            h.saturating_record(start.elapsed().as_nanos() as u64);
        }
        stop.store(true, Ordering::Relaxed);
    });
    h
}

fn main() {
    const WORKLOADS: [&str; 2] = ["insert to 1M", "load under writer"];
    let args = Args::parse("latency", &WORKLOADS, SUBJECTS);
    let n: u64 = if args.quick { 100_000 } else { 1_000_000 };
    let mut rows = Vec::new();
    for workload in WORKLOADS {
        if !args.wants_workload(workload) {
            continue;
        }
        for subject in SUBJECTS.iter().filter(|s| args.wants_map(s)) {
            let h = match workload {
                "insert to 1M" => with_map!(*subject, inserts, n),
                _ => with_map!(*subject, loads_under_writer, n),
            };
            for (quantile, label) in [
                (0.5, "p50"),
                (0.99, "p99"),
                (0.9999, "p99.99"),
                (1.0, "max"),
            ] {
                let value = h.value_at_quantile(quantile) as f64;
                rows.push(Row {
                    workload: format!("{workload} {label}"),
                    subject: subject.to_string(),
                    threads: 1,
                    value,
                });
            }
            eprintln!(
                "{workload:<18} {subject:<18} p50 {} p99 {} p99.99 {} max {} ns",
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.9999),
                h.max()
            );
        }
    }
    runner::report(&rows, "latency.json", "map", "ns", "latency, ns");
}
