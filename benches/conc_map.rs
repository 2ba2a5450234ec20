//! The three workloads of conc-map-bench, through the `bustle` crate: ReadHeavy (98% reads, 1%
//! inserts, 1% removes, 75% prefill), Exchange (10% reads, 40% inserts, 40% removes, 10% updates)
//! and RapidGrow (5% reads, 80% inserts, 5% removes, 10% updates, empty start), at an initial
//! capacity of 2^20 keys, 1 and 2 threads. Throughput in Mop/s (higher is better), the median
//! of three runs (one with `--quick`), taken in rounds: one run of each map per round.
//!
//! `cargo bench --bench conc_map [-- --quick] [--maps x,y] [--threads 1,2]`

#[path = "common/maps.rs"]
mod maps;
#[path = "common/runner.rs"]
mod runner;

use std::sync::Arc;

use bustle::{Collection, CollectionHandle, Mix, Workload};
use maps::BenchMap;
use runner::{Args, Row, Sampler};

struct Table<M>(Arc<M>);
struct Handle<M>(Arc<M>);

impl<M: BenchMap> Collection for Table<M> {
    type Handle = Handle<M>;
    fn with_capacity(_capacity: usize) -> Self {
        Table(Arc::new(M::create()))
    }
    fn pin(&self) -> Self::Handle {
        Handle(Arc::clone(&self.0))
    }
}

impl<M: BenchMap> CollectionHandle for Handle<M> {
    type Key = u64;
    fn get(&mut self, key: &u64) -> bool {
        self.0.load(*key).is_some()
    }
    fn insert(&mut self, key: &u64) -> bool {
        !self.0.load_or_store(*key, 0).1
    }
    fn remove(&mut self, key: &u64) -> bool {
        self.0.load_and_delete(*key).is_some()
    }
    fn update(&mut self, key: &u64) -> bool {
        match self.0.load(*key) {
            Some(v) => {
                self.0.compare_and_swap(*key, v, v.wrapping_add(1));
                true
            }
            None => false,
        }
    }
}

fn mixes() -> [(&'static str, Mix, f64); 3] {
    let mix = |read, insert, remove, update| Mix {
        read,
        insert,
        remove,
        update,
        upsert: 0,
    };
    [
        ("ReadHeavy", mix(98, 1, 1, 0), 0.75),
        ("Exchange", mix(10, 40, 40, 10), 0.0),
        ("RapidGrow", mix(5, 80, 5, 10), 0.0),
    ]
}

/// Runs per figure in full mode; the figure is their median (one run varies by up to 2x on a
/// shared host, mostly at 2 threads).
const RUNS: usize = 3;

fn run<M: BenchMap>(mix: Mix, prefill: f64, threads: usize, quick: bool) -> f64 {
    let mut workload = Workload::new(threads, mix);
    workload
        // Quick runs use 2^18 keys: at 2^16 a run took a few milliseconds, and a delay of bustle's
        // timing thread between its start barrier and reading the clock could swallow most of it
        // (one quick run printed 3176 Mop/s for dashmap).
        .initial_capacity_log2(if quick { 18 } else { 20 })
        .prefill_fraction(prefill)
        .operations(if quick { 1.0 } else { 4.0 })
        .seed([7; 32]);
    let measurement = workload.run_silently::<Table<M>>();
    measurement.throughput / 1e6
}

fn main() {
    let names: Vec<&str> = mixes().iter().map(|(name, _, _)| *name).collect();
    let args = Args::parse("conc_map", &names, maps::ALL);
    let mut rows = Vec::new();
    for &threads in &args.threads {
        for (name, mix, prefill) in mixes() {
            if !args.wants_workload(name) {
                continue;
            }
            // One run of each map per round, so that their ratios compare runs taken side by
            // side; each figure is the median of its map's runs.
            let maps = args.wanted_maps(maps::ALL);
            let mut samplers: Vec<Sampler<'static>> = maps
                .iter()
                .map(|&map| -> Sampler<'static> {
                    let quick = args.quick;
                    Box::new(move || with_map!(map, run, mix, prefill, threads, quick))
                })
                .collect();
            let runs = if args.quick { 1 } else { RUNS };
            let medians = runner::medians_interleaved(runs, &mut samplers);
            for (map, mops) in maps.iter().zip(medians) {
                eprintln!("{name:<10} {map:<18} {threads} thread(s): {mops:8.2} Mop/s");
                rows.push(Row {
                    workload: name.to_string(),
                    subject: map.to_string(),
                    threads,
                    value: mops,
                });
            }
        }
    }
    runner::report(
        &rows,
        "conc_map.json",
        "map",
        "mops",
        "Mop/s (higher is better)",
    );
}
