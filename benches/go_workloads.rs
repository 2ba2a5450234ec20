//! Go's `sync.Map` benchmark workloads (Go 1.19's `sync/map_bench_test.go`, with its key ranges
//! and operation mixes, rewritten in Rust; plus the ones later Go versions added, as defined in
//! issue 4), run on `SyncMap` and its peers side by side.
//!
//! `cargo bench --bench go_workloads [-- --quick] [--workloads a,b] [--maps x,y] [--threads 1,2]`
//!
//! Prints Markdown tables of ns/op (wall time / total operations, median of several runs; the
//! maps of a workload are measured in rounds, one run of each per round, so that their ratios
//! compare runs taken side by side) and writes `target/bench/go_workloads.json`.

#[path = "common/maps.rs"]
mod maps;
#[path = "common/runner.rs"]
mod runner;

use std::hint::black_box;

use maps::BenchMap;
use runner::{prepare, Args, Row, Sampler};

const WORKLOADS: &[&str] = &[
    "LoadMostlyHits",
    "LoadMostlyMisses",
    "LoadOrStoreBalanced",
    "LoadOrStoreUnique",
    "LoadOrStoreCollision",
    "LoadAndDeleteBalanced",
    "LoadAndDeleteUnique",
    "LoadAndDeleteCollision",
    "Range",
    "AdversarialAlloc",
    "AdversarialDelete",
    "DeleteCollision",
    "SwapCollision",
    "SwapMostlyHits",
    "SwapMostlyMisses",
    "CompareAndSwapCollision",
    "CompareAndSwapNoExistingKey",
    "CompareAndSwapValueNotEqual",
    "CompareAndSwapMostlyHits",
    "CompareAndSwapMostlyMisses",
    "CompareAndDeleteCollision",
    "CompareAndDeleteMostlyHits",
    "CompareAndDeleteMostlyMisses",
    "Clear",
];

/// Stores keys `0..hits`, then loads them twice (Go's "prime": promotes the dirty map).
fn store_and_prime<M: BenchMap>(m: &M, hits: u64) {
    for i in 0..hits {
        m.load_or_store(i, i);
    }
    for i in 0..hits * 2 {
        m.load(i % hits);
    }
}

/// The calibrated sampler of `workload` on `M`.
fn run<M: BenchMap>(workload: &str, args: &Args, threads: usize) -> Sampler<'static> {
    let new = M::create;
    match workload {
        "LoadMostlyHits" | "LoadMostlyMisses" => {
            let (hits, misses) = if workload == "LoadMostlyHits" {
                (1023, 1)
            } else {
                (1, 1023)
            };
            prepare(
                args,
                threads,
                move || {
                    let m = new();
                    store_and_prime(&m, hits);
                    m
                },
                move || {
                    move |m: &M, i: u64| {
                        black_box(m.load(i % (hits + misses)));
                    }
                },
            )
        }
        "LoadOrStoreBalanced" => {
            let (hits, misses) = (128, 128);
            prepare(
                args,
                threads,
                move || {
                    let m = new();
                    for i in 0..hits {
                        m.load_or_store(i, i);
                    }
                    for i in 0..hits * 2 {
                        m.load(i % hits);
                    }
                    m
                },
                move || {
                    move |m: &M, i: u64| {
                        let j = i % (hits + misses);
                        if j < hits {
                            assert!(m.load_or_store(j, i).1, "key {j} should be present");
                        } else {
                            black_box(m.load_or_store(i, i));
                        }
                    }
                },
            )
        }
        "LoadOrStoreUnique" => prepare(args, threads, new, move || {
            move |m: &M, i: u64| {
                black_box(m.load_or_store(i, i));
            }
        }),
        "LoadOrStoreCollision" => prepare(
            args,
            threads,
            move || {
                let m = new();
                m.load_or_store(0, 0);
                m
            },
            move || {
                move |m: &M, _: u64| {
                    black_box(m.load_or_store(0, 0));
                }
            },
        ),
        "LoadAndDeleteBalanced" => {
            let (hits, misses) = (128, 128);
            prepare(
                args,
                threads,
                move || {
                    let m = new();
                    store_and_prime(&m, hits);
                    m
                },
                move || {
                    move |m: &M, i: u64| {
                        let j = i % (hits + misses);
                        if j < hits {
                            black_box(m.load_and_delete(j));
                        } else {
                            black_box(m.load_and_delete(i));
                        }
                    }
                },
            )
        }
        "LoadAndDeleteUnique" => prepare(args, threads, new, move || {
            move |m: &M, i: u64| {
                black_box(m.load_and_delete(i));
            }
        }),
        "LoadAndDeleteCollision" => prepare(
            args,
            threads,
            move || {
                let m = new();
                m.load_or_store(0, 0);
                m
            },
            move || {
                move |m: &M, _: u64| {
                    if m.load_and_delete(0).is_some() {
                        m.store(0, 0);
                    }
                }
            },
        ),
        "Range" => prepare(
            args,
            threads,
            move || {
                let m = new();
                for j in 0..1 << 10 {
                    m.store(j, j);
                }
                m
            },
            move || {
                move |m: &M, _: u64| {
                    m.range(&mut |_, _| true);
                }
            },
        ),
        "AdversarialAlloc" => prepare(args, threads, new, move || {
            let (mut stores, mut loads_since_store) = (0u64, 0u64);
            move |m: &M, i: u64| {
                black_box(m.load(i));
                loads_since_store += 1;
                if loads_since_store > stores {
                    m.load_or_store(i, stores);
                    loads_since_store = 0;
                    stores += 1;
                }
            }
        }),
        "AdversarialDelete" => {
            let size = 1 << 10;
            prepare(
                args,
                threads,
                move || {
                    let m = new();
                    for i in 0..size {
                        m.store(i, i);
                    }
                    m
                },
                move || {
                    move |m: &M, i: u64| {
                        black_box(m.load(i));
                        if i % size == 0 {
                            m.range(&mut |k, _| {
                                m.delete(k);
                                false
                            });
                            m.store(i, i);
                        }
                    }
                },
            )
        }
        "DeleteCollision" => prepare(
            args,
            threads,
            move || {
                let m = new();
                m.load_or_store(0, 0);
                m
            },
            || move |m: &M, _: u64| m.delete(0),
        ),
        "SwapCollision" => prepare(
            args,
            threads,
            move || {
                let m = new();
                m.store(0, 0);
                m
            },
            move || {
                move |m: &M, _: u64| {
                    black_box(m.swap(0, 0));
                }
            },
        ),
        "SwapMostlyHits" | "SwapMostlyMisses" => {
            let (hits, misses) = if workload == "SwapMostlyHits" {
                (1023, 1)
            } else {
                (1, 1023)
            };
            prepare(
                args,
                threads,
                move || {
                    let m = new();
                    store_and_prime(&m, hits);
                    m
                },
                move || {
                    move |m: &M, i: u64| {
                        if i % (hits + misses) < hits {
                            let v = i % (hits + misses);
                            black_box(m.swap(v, v));
                        } else {
                            black_box(m.swap(i, i));
                            m.delete(i);
                        }
                    }
                },
            )
        }
        "CompareAndSwapCollision" => prepare(
            args,
            threads,
            move || {
                let m = new();
                m.store(0, 0);
                m
            },
            move || {
                move |m: &M, _: u64| {
                    if m.compare_and_swap(0, 0, 42) {
                        m.compare_and_swap(0, 42, 0);
                    }
                }
            },
        ),
        "CompareAndSwapNoExistingKey" => prepare(args, threads, new, move || {
            move |m: &M, i: u64| {
                if m.compare_and_swap(i, 0, 0) {
                    m.delete(i);
                }
            }
        }),
        "CompareAndSwapValueNotEqual" => prepare(
            args,
            threads,
            move || {
                let m = new();
                m.store(0, 0);
                m
            },
            move || {
                move |m: &M, _: u64| {
                    black_box(m.compare_and_swap(0, 1, 2));
                }
            },
        ),
        "CompareAndSwapMostlyHits" | "CompareAndSwapMostlyMisses" => {
            let (hits, misses) = if workload == "CompareAndSwapMostlyHits" {
                (1023, 1)
            } else {
                (1, 1023)
            };
            prepare(
                args,
                threads,
                move || {
                    let m = new();
                    store_and_prime(&m, hits);
                    m
                },
                move || {
                    move |m: &M, i: u64| {
                        let v = if i % (hits + misses) < hits {
                            i % (hits + misses)
                        } else {
                            i
                        };
                        black_box(m.compare_and_swap(v, v, v));
                    }
                },
            )
        }
        "CompareAndDeleteCollision" => prepare(
            args,
            threads,
            move || {
                let m = new();
                m.store(0, 0);
                m
            },
            move || {
                move |m: &M, _: u64| {
                    if m.compare_and_delete(0, 0) {
                        m.store(0, 0);
                    }
                }
            },
        ),
        "CompareAndDeleteMostlyHits" | "CompareAndDeleteMostlyMisses" => {
            let (hits, misses) = if workload == "CompareAndDeleteMostlyHits" {
                (1023, 1)
            } else {
                (1, 1023)
            };
            prepare(
                args,
                threads,
                move || {
                    let m = new();
                    store_and_prime(&m, hits);
                    m
                },
                move || {
                    move |m: &M, i: u64| {
                        let v = if i % (hits + misses) < hits {
                            i % (hits + misses)
                        } else {
                            i
                        };
                        if m.compare_and_delete(v, v) {
                            m.store(v, v);
                        }
                    }
                },
            )
        }
        "Clear" => prepare(args, threads, new, move || {
            move |m: &M, i: u64| {
                m.clear();
                m.store(i % 256, i % 256);
            }
        }),
        other => panic!("unknown workload {other}"),
    }
}

fn main() {
    let args = Args::parse("go_workloads", WORKLOADS, maps::ALL);
    let mut rows = Vec::new();
    for &threads in &args.threads {
        for workload in WORKLOADS.iter().filter(|w| args.wants_workload(w)) {
            // Every map of this workload is calibrated first, then measured in rounds
            // (`medians_interleaved`), so that their ratios compare runs taken side by side.
            let maps = args.wanted_maps(maps::ALL);
            let mut samplers: Vec<Sampler<'static>> = maps
                .iter()
                .map(|map| with_map!(*map, run, workload, &args, threads))
                .collect();
            let medians = runner::medians_interleaved(args.budget().1, &mut samplers);
            for (map, ns) in maps.iter().zip(medians) {
                eprintln!("{workload:<30} {map:<18} {threads} thread(s): {ns:9.1} ns/op");
                rows.push(Row {
                    workload: workload.to_string(),
                    subject: map.to_string(),
                    threads,
                    value: ns,
                });
            }
        }
    }
    runner::report(&rows, "go_workloads.json", "map", "ns_per_op", "ns/op");
}
