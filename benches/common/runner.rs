//! Go-style parallel benchmark runner: every thread runs the same loop `iterations` times with
//! its own counter `i` starting at `thread * iterations` (as in Go's `RunParallel`), and the
//! result is wall time / total operations, the median of several runs.
#![allow(dead_code)]

use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Command-line options shared by the benches (`cargo bench --bench X -- --quick ...`).
pub struct Args {
    pub quick: bool,
    pub workloads: Option<Vec<String>>,
    pub maps: Option<Vec<String>>,
    pub threads: Vec<usize>,
}

impl Args {
    /// Parses the flags of the bench `bench`, whose workloads and subjects (maps or caches) are
    /// `workloads` and `subjects`. `--help` prints the usage and exits; an unknown flag, or a
    /// name in `--workloads`/`--maps` that is not in the lists, is an error (exit status 2)
    /// that names the valid ones, rather than a silently empty or full run.
    pub fn parse(bench: &str, workloads: &[&str], subjects: &[&str]) -> Args {
        Self::try_parse(bench, workloads, subjects).unwrap_or_else(|exit| match exit {
            Exit::Help(usage) => {
                println!("{usage}");
                std::process::exit(0)
            }
            Exit::Error(message) => {
                eprintln!("{message}");
                std::process::exit(2)
            }
        })
    }

    fn try_parse(bench: &str, workloads: &[&str], subjects: &[&str]) -> Result<Args, Exit> {
        let usage = usage(bench, workloads, subjects);
        let mut args = Args {
            quick: false,
            workloads: None,
            maps: None,
            threads: default_threads(),
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut list = |flag: &str, known: &[&str]| -> Result<Vec<String>, Exit> {
                let value = it
                    .next()
                    .ok_or_else(|| Exit::Error(format!("{flag} needs a value\n\n{usage}")))?;
                let names: Vec<String> = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                if let Some(unknown) = names
                    .iter()
                    .find(|n| !known.is_empty() && !known.iter().any(|k| k.eq_ignore_ascii_case(n)))
                {
                    return Err(Exit::Error(format!(
                        "{flag}: no {unknown:?} in this bench; one of: {}",
                        known.join(", ")
                    )));
                }
                Ok(names)
            };
            match arg.as_str() {
                "--help" | "-h" => return Err(Exit::Help(usage)),
                "--quick" => args.quick = true,
                "--workloads" => args.workloads = Some(list("--workloads", workloads)?),
                "--maps" => args.maps = Some(list("--maps", subjects)?),
                "--threads" => {
                    args.threads = list("--threads", &[])?
                        .iter()
                        .map(|t| match t.parse::<usize>() {
                            Ok(n) if n > 0 => Ok(n),
                            _ => Err(Exit::Error(format!(
                                "--threads takes positive numbers, got {t:?}"
                            ))),
                        })
                        .collect::<Result<_, _>>()?
                }
                // Cargo passes `--bench` to every bench target; libtest flags are harmless.
                "--bench" | "--nocapture" => {}
                other => {
                    return Err(Exit::Error(format!(
                        "unknown argument {other:?}\n\n{usage}"
                    )))
                }
            }
        }
        Ok(args)
    }

    pub fn wants_workload(&self, name: &str) -> bool {
        self.workloads
            .as_ref()
            .is_none_or(|w| w.iter().any(|x| x.eq_ignore_ascii_case(name)))
    }

    /// The subjects of `all` that `--maps` selects, in `all`'s order.
    pub fn wanted_maps<'a>(&self, all: &[&'a str]) -> Vec<&'a str> {
        all.iter().copied().filter(|m| self.wants_map(m)).collect()
    }

    pub fn wants_map(&self, name: &str) -> bool {
        self.maps
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x.eq_ignore_ascii_case(name)))
    }

    /// Time each measured run aims at, and how many runs to take the median of.
    pub fn budget(&self) -> (Duration, usize) {
        if self.quick {
            (Duration::from_millis(25), 3)
        } else {
            (Duration::from_millis(200), 5)
        }
    }
}

/// Why parsing stopped: `--help` (the usage, printed to stdout) or a bad argument.
#[derive(Debug)]
enum Exit {
    Help(String),
    Error(String),
}

fn usage(bench: &str, workloads: &[&str], subjects: &[&str]) -> String {
    format!(
        "usage: cargo bench --bench {bench} -- [--quick] [--workloads A,B] [--maps X,Y] \
         [--threads 1,2]\n\n\
         --quick       short runs (a smoke test; figures are noisier)\n\
         --workloads   only these workloads: {}\n\
         --maps        only these subjects: {}\n\
         --threads     thread counts (default: 1, 2 and available_parallelism, deduplicated)\n\n\
         Tables go to stdout, progress to stderr, JSON to target/bench/{bench}.json.",
        workloads.join(", "),
        subjects.join(", ")
    )
}

/// 1, 2 and `available_parallelism()`, without duplicates.
pub fn default_threads() -> Vec<usize> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut threads = vec![1, 2, n];
    threads.sort_unstable();
    threads.dedup();
    threads
}

/// Runs the loop made by `per_thread` for `i` in `thread * iterations .. (thread + 1) *
/// iterations` on each of `threads` threads, returning the wall time of the loops.
pub fn run_once<S, F, L>(threads: usize, iterations: u64, state: &S, per_thread: &F) -> Duration
where
    S: Sync,
    F: Fn() -> L + Sync,
    L: FnMut(&S, u64),
{
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        for t in 0..threads as u64 {
            let barrier = &barrier;
            scope.spawn(move || {
                let mut body = per_thread();
                barrier.wait();
                for i in t * iterations..(t + 1) * iterations {
                    body(state, i);
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

/// One subject's measurement, calibrated: each call runs the loop once on a fresh state and
/// returns ns/op.
pub type Sampler<'a> = Box<dyn FnMut() -> f64 + 'a>;

/// Calibrates the iterations so that one run takes about the budget, and returns the sampler
/// of the loop made by `per_thread` on states from `make`.
pub fn prepare<'a, S, M, F, L>(args: &Args, threads: usize, make: M, per_thread: F) -> Sampler<'a>
where
    S: Sync,
    M: Fn() -> S + 'a,
    F: Fn() -> L + Sync + 'a,
    L: FnMut(&S, u64),
{
    let (target, _) = args.budget();
    let mut iterations = 64u64;
    loop {
        let state = make();
        let elapsed = run_once(threads, iterations, &state, &per_thread);
        if elapsed >= target / 10 || iterations >= 1 << 32 {
            let per_op = elapsed.as_secs_f64() / iterations as f64;
            iterations = ((target.as_secs_f64() / per_op) as u64).clamp(64, 1 << 32);
            break;
        }
        iterations *= 4;
    }
    Box::new(move || {
        let state = make();
        let elapsed = run_once(threads, iterations, &state, &per_thread);
        elapsed.as_nanos() as f64 / (iterations as f64 * threads as f64)
    })
}

/// The median of `runs` runs of each sampler. The runs are taken in rounds, one run of every
/// subject per round, so that a change of the host's speed during the measurement (this
/// machine's varies by tens of percent over minutes) weighs on every subject alike and the
/// ratios between them stay fair.
pub fn medians_interleaved(runs: usize, samplers: &mut [Sampler<'_>]) -> Vec<f64> {
    let mut samples = vec![Vec::with_capacity(runs); samplers.len()];
    for _ in 0..runs {
        for (sampler, samples) in samplers.iter_mut().zip(&mut samples) {
            samples.push(sampler());
        }
    }
    samples
        .into_iter()
        .map(|mut samples| {
            samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
            samples[samples.len() / 2]
        })
        .collect()
}

/// One measured figure.
pub struct Row {
    pub workload: String,
    pub subject: String,
    pub threads: usize,
    pub value: f64,
}

/// Prints a Markdown table (workloads x subjects, one block per thread count) and writes JSON
/// to `<workspace>/target/bench/<file>`.
pub fn report(rows: &[Row], file: &str, subject_key: &str, value_key: &str, unit: &str) {
    let mut subjects: Vec<&str> = Vec::new();
    let mut workloads: Vec<&str> = Vec::new();
    let mut threads: Vec<usize> = Vec::new();
    for row in rows {
        if !subjects.contains(&row.subject.as_str()) {
            subjects.push(&row.subject);
        }
        if !workloads.contains(&row.workload.as_str()) {
            workloads.push(&row.workload);
        }
        if !threads.contains(&row.threads) {
            threads.push(row.threads);
        }
    }
    for t in &threads {
        println!("\n{unit}, {t} thread(s)\n");
        println!("| workload | {} |", subjects.join(" | "));
        println!("|---|{}", "---|".repeat(subjects.len()));
        for w in &workloads {
            let cells: Vec<String> = subjects
                .iter()
                .map(|s| {
                    rows.iter()
                        .find(|r| r.workload == *w && r.subject == *s && r.threads == *t)
                        .map_or("-".to_string(), |r| format!("{:.1}", r.value))
                })
                .collect();
            println!("| {w} | {} |", cells.join(" | "));
        }
    }
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "workload": r.workload,
                subject_key: r.subject,
                "threads": r.threads,
                value_key: r.value,
            })
        })
        .collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    let path = dir.join(file);
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).expect("write json");
    println!("\nwrote {}", path.display());
}
