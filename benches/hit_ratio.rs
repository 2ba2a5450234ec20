//! Hit ratios of bounded caches: `#[memoize(capacity = N)]` (the `Memo` runtime, called the way
//! the macro calls it) against moka 0.12 (`sync::Cache::get_with`; as it comes, and "moka
//! (bound held)": `run_pending_tasks()` after each insertion, since moka applies its bound
//! lazily and otherwise holds more entries than asked at small capacities), quick_cache 0.7
//! (`get_or_insert_with`), an exact LRU (`cached`'s `LruCache`, formerly `SizedCache`), and Belady's OPT (the
//! clairvoyant limit, computed here; it may also decline to cache a key).
//!
//! `cargo bench --bench hit_ratio [-- --quick] [--workloads a,b] [--maps x,y]`
//! (`HIT_RATIO_DUMP=dir` writes the traces there instead of running them).
//!
//! Hit ratio = 1 - body runs / calls, single thread. Each trace is run at capacities of 0.1%,
//! 1% and 10% of its distinct keys. The real traces are built at bench time from files any
//! Debian/Rust machine has: the identifier stream of the Rust sources under
//! `~/.cargo/registry/src` and the word stream of the text files under `/usr/share/doc` (files
//! in sorted path order, so the same machine gives the same trace). Markdown goes to stdout,
//! JSON (trace, capacity, subject, hit_ratio, calls) to `target/bench/hit_ratio.json`. The
//! "best peer" of each row is the best of the subjects that hold their bound: moka (bound
//! held), quick_cache and LRU (the output lists the rows where `#[memoize]` is more than a
//! point under it).
//!
//! "zipf weighted" bounds weight instead of entries: Zipf 0.9 over 100k keys whose values
//! weigh 1 to 128 (a power of two drawn from the key), under a `max_weight` of 0.1%, 1% and
//! 10% of the distinct keys' total weight: `#[memoize(max_weight, weigher)]` against moka's
//! `weigher` and quick_cache's `Weighter` (no LRU or OPT: `cached` has no weigher, and
//! Belady's rule is not optimal when sizes differ).

#[path = "common/runner.rs"]
mod runner;

use std::collections::{BinaryHeap, HashMap};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cached::Cached;
use runner::Args;
use syncmemo::__private::MemoOptions;
use syncmemo::Memo;

const TRACES: &[&str] = &[
    "zipf 0.6",
    "zipf 0.9",
    "zipf 1.2",
    "zipf+scans",
    "loop",
    "shifting",
    "rust idents",
    "doc words",
    "zipf weighted",
];
const SUBJECTS: &[&str] = &[
    "OPT",
    "syncmemo",
    "moka",
    "moka (bound held)",
    "quick_cache",
    "LRU",
];

/// Subjects left out of the goal's "best peer": OPT (the limit), ours, and plain moka, whose
/// bound is applied lazily (bounded to 22 entries it held about 40 on average on the real
/// traces, see `HIT_RATIO_MOKA_HELD`), so it is measured at another capacity than asked.
/// "moka (bound held)" is the same cache made to apply its bound after each insertion.
const NOT_PEERS: &[&str] = &["OPT", "syncmemo", "moka"];

/// The best hit ratio of a row among its peers (the subjects that hold their bound).
fn best_peer(subjects: &[&str], cells: &[f64]) -> f64 {
    subjects
        .iter()
        .zip(cells)
        .filter(|(s, _)| !NOT_PEERS.contains(*s))
        .map(|(_, &c)| c)
        .fold(f64::NAN, f64::max)
}

/// A row's hit ratios in percent, in bold where at least `best_peer` (never OPT's or plain
/// moka's, which are not peers).
fn row_cells(subjects: &[&str], cells: &[f64], best_peer: f64) -> Vec<String> {
    subjects
        .iter()
        .zip(cells)
        .map(|(s, c)| {
            if !matches!(*s, "OPT" | "moka") && *c >= best_peer - 1e-12 {
                format!("**{:.1}**", c * 100.0)
            } else {
                format!("{:.1}", c * 100.0)
            }
        })
        .collect()
}

/// splitmix64: scrambles ranks into keys (so key order carries no locality) and drives the RNG.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        mix(self.0)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf(s) over ranks `0..n`, by inverting a cumulative table.
struct Zipf(Vec<f64>);
impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut sum = 0.0;
        let mut cdf = Vec::with_capacity(n);
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(s);
            cdf.push(sum);
        }
        cdf.iter_mut().for_each(|c| *c /= sum);
        Zipf(cdf)
    }
    fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        self.0.partition_point(|&c| c < u).min(self.0.len() - 1) as u64
    }
}

fn zipf_trace(keys: usize, s: f64, calls: usize, seed: u64) -> Vec<u64> {
    let zipf = Zipf::new(keys, s);
    let mut rng = Rng(seed);
    (0..calls).map(|_| mix(zipf.sample(&mut rng))).collect()
}

/// Zipf 0.9 over 100k keys; every 50k calls, a scan of 20k keys never seen again.
fn scan_trace(calls: usize) -> Vec<u64> {
    let zipf = Zipf::new(100_000, 0.9);
    let mut rng = Rng(7);
    let mut trace = Vec::with_capacity(calls);
    let mut fresh = 1u64 << 40;
    while trace.len() < calls {
        for _ in 0..50_000 {
            trace.push(mix(zipf.sample(&mut rng)));
        }
        for _ in 0..20_000 {
            trace.push(mix(fresh));
            fresh += 1;
        }
    }
    trace.truncate(calls);
    trace
}

/// Zipf 0.9 over 100k keys whose popular set moves to other keys halfway.
fn shifting_trace(calls: usize) -> Vec<u64> {
    let zipf = Zipf::new(100_000, 0.9);
    let mut rng = Rng(11);
    (0..calls)
        .map(|i| {
            let rank = zipf.sample(&mut rng);
            mix(if i < calls / 2 {
                rank
            } else {
                rank + 10_000_000
            })
        })
        .collect()
}

/// Every file under `root` whose name passes `keep`, in sorted path order.
fn files(root: &Path, keep: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) {
    let Ok(dir) = std::fs::read_dir(root) else {
        return;
    };
    let mut entries: Vec<_> = dir.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            files(&path, keep, out);
        } else if meta.is_file() && keep(&path) {
            out.push(path);
        }
    }
}

/// The stream of tokens (`[A-Za-z_][A-Za-z0-9_]*`, or lowercase words when `words`) of the
/// files, hashed to keys, at most `calls` of them.
fn token_trace(paths: &[PathBuf], words: bool, calls: usize) -> Vec<u64> {
    let mut trace = Vec::with_capacity(calls);
    for path in paths {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        let mut token: Vec<u8> = Vec::new();
        for &b in bytes.iter().chain(std::iter::once(&b' ')) {
            let part = if words {
                b.is_ascii_alphabetic()
            } else {
                b.is_ascii_alphanumeric() || b == b'_'
            };
            if part && !(token.is_empty() && b.is_ascii_digit()) {
                token.push(if words { b.to_ascii_lowercase() } else { b });
                continue;
            }
            if !token.is_empty() {
                let h = token.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| {
                    (h ^ c as u64).wrapping_mul(0x100_0000_01b3)
                });
                trace.push(mix(h));
                token.clear();
                if trace.len() == calls {
                    return trace;
                }
            }
        }
    }
    trace
}

fn rust_idents(calls: usize) -> Vec<u64> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_default();
    let mut paths = Vec::new();
    files(
        &home.join("registry/src"),
        &|p| p.extension().is_some_and(|e| e == "rs"),
        &mut paths,
    );
    token_trace(&paths, false, calls)
}

fn doc_words(calls: usize) -> Vec<u64> {
    let mut paths = Vec::new();
    files(
        Path::new("/usr/share/doc"),
        &|p| {
            !p.extension()
                .is_some_and(|e| e == "gz" || e == "xz" || e == "bz2" || e == "png")
        },
        &mut paths,
    );
    token_trace(&paths, true, calls)
}

fn trace(name: &str, calls: usize) -> Vec<u64> {
    match name {
        "zipf 0.6" => zipf_trace(1_000_000, 0.6, calls, 1),
        "zipf 0.9" => zipf_trace(1_000_000, 0.9, calls, 2),
        "zipf 1.2" => zipf_trace(1_000_000, 1.2, calls, 3),
        "zipf+scans" => scan_trace(calls),
        "loop" => (0..calls as u64).map(|i| mix(i % 50_000)).collect(),
        "shifting" => shifting_trace(calls),
        "zipf weighted" => zipf_trace(100_000, 0.9, calls, 13),
        "rust idents" => rust_idents(calls),
        "doc words" => doc_words(calls),
        _ => unreachable!("unknown trace {name}"),
    }
}

/// The weight of key `k`'s value in "zipf weighted": 1 to 128, a power of two drawn from the key.
fn weight(k: u64) -> u64 {
    1 << (mix(k ^ 0x5EED) % 8)
}

/// quick_cache's weigher for "zipf weighted".
#[derive(Clone)]
struct KeyWeight;
impl quick_cache::Weighter<u64, u64> for KeyWeight {
    fn weight(&self, key: &u64, _: &u64) -> u64 {
        weight(*key)
    }
}

/// Body runs of each weighted subject on `trace` under `max_weight`.
/// Calls `memo` as `#[memoize] fn f(k: u64) -> u64 { k }` expands to, once per key of `trace`,
/// and returns how many times the body ran; clears the cache afterwards.
fn replay_memo(memo: &Memo<u64, u64>, trace: &[u64]) -> u64 {
    let mut runs = 0u64;
    for &k in trace {
        if let Some(v) = memo.__hit(&k) {
            black_box(v);
            continue;
        }
        black_box(memo.__miss_owned(
            k,
            || {
                runs += 1;
                k
            },
            |_| true,
        ));
    }
    memo.clear();
    runs
}

fn run_weighted(subject: &str, trace: &[u64], max_weight: u64, distinct: usize) -> u64 {
    let mut runs = 0u64;
    match subject {
        "syncmemo" => {
            let memo: &'static Memo<u64, u64> = Box::leak(Box::new(
                Memo::builder("hit_ratio::weighted")
                    .max_weight(max_weight)
                    .weigher(|k, _| weight(*k))
                    .build(),
            ));
            runs = replay_memo(memo, trace);
        }
        "moka" | "moka (bound held)" => {
            let cache = moka::sync::Cache::builder()
                .max_capacity(max_weight)
                .weigher(|k: &u64, _: &u64| weight(*k) as u32)
                .build();
            let hold = subject == "moka (bound held)";
            for &k in trace {
                let before = runs;
                black_box(cache.get_with(k, || {
                    runs += 1;
                    k
                }));
                if hold && runs != before {
                    cache.run_pending_tasks();
                    assert!(
                        cache.weighted_size() <= max_weight,
                        "moka over its weight bound"
                    );
                }
            }
        }
        "quick_cache" => {
            // Its item estimate: the bound over the mean weight (about 32).
            let items = (max_weight as usize / 32).clamp(1, distinct);
            let cache = quick_cache::sync::Cache::with_weighter(items, max_weight, KeyWeight);
            for &k in trace {
                let v: Result<u64, ()> = cache.get_or_insert_with(&k, || {
                    runs += 1;
                    Ok(k)
                });
                black_box(v.ok());
            }
        }
        _ => unreachable!("no weighted run for {subject}"),
    }
    runs
}

/// Belady's OPT with bypass: on a miss, evicts (or does not cache) whichever key is next used
/// furthest in the future. Returns the number of misses.
fn opt(trace: &[u64], capacity: usize) -> u64 {
    let never = usize::MAX;
    let mut next = vec![never; trace.len()];
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (i, &k) in trace.iter().enumerate().rev() {
        next[i] = seen.insert(k, i).unwrap_or(never);
    }
    // key -> its next use while cached; a max-heap of (next use, key) with stale entries.
    let mut cached: HashMap<u64, usize> = HashMap::with_capacity(capacity + 1);
    let mut heap: BinaryHeap<(usize, u64)> = BinaryHeap::new();
    let mut misses = 0;
    for (i, &k) in trace.iter().enumerate() {
        let n = next[i];
        if let Some(slot) = cached.get_mut(&k) {
            *slot = n;
            heap.push((n, k));
            continue;
        }
        misses += 1;
        if n == never || capacity == 0 {
            continue;
        }
        if cached.len() >= capacity {
            // The furthest next use among the cached keys, skipping stale heap entries.
            let (far, victim) = loop {
                let (far, victim) = *heap.peek().expect("a full cache has heap entries");
                if cached.get(&victim) == Some(&far) {
                    break (far, victim);
                }
                heap.pop();
            };
            if far <= n {
                continue; // the new key is needed later than every cached one: bypass
            }
            heap.pop();
            cached.remove(&victim);
        }
        cached.insert(k, n);
        heap.push((n, k));
        if heap.len() > 8 * capacity + 64 {
            heap = cached.iter().map(|(&k, &n)| (n, k)).collect();
        }
    }
    misses
}

/// Body runs of moka on `trace` at `capacity`. `hold`: calls `run_pending_tasks()` after each
/// insertion (each body run), so the bound is applied at once rather than lazily, and asserts
/// `entry_count() <= capacity` after it (`HIT_RATIO_MOKA_HOLD=call`: after each call instead).
fn run_moka(trace: &[u64], capacity: usize, hold: bool) -> u64 {
    let mut runs = 0u64;
    let cache = moka::sync::Cache::new(capacity as u64);
    let every_call = hold && std::env::var("HIT_RATIO_MOKA_HOLD").is_ok_and(|v| v == "call");
    // `HIT_RATIO_MOKA_HELD=1`: how many entries moka holds (`iter().count()` every 100 calls),
    // to tell its lazily applied bound from its policy.
    let held = std::env::var_os("HIT_RATIO_MOKA_HELD").is_some();
    let (mut most, mut sum, mut samples) = (0, 0, 0);
    for (i, &k) in trace.iter().enumerate() {
        let before = runs;
        black_box(cache.get_with(k, || {
            runs += 1;
            k
        }));
        if every_call || (hold && runs != before) {
            cache.run_pending_tasks();
            assert!(
                cache.entry_count() <= capacity as u64,
                "moka held {} entries over its bound of {capacity}",
                cache.entry_count()
            );
        }
        if held && i % 100 == 99 {
            let n = cache.iter().count();
            (most, sum, samples) = (most.max(n), sum + n, samples + 1);
        }
    }
    if held {
        eprintln!(
            "  moka{} at capacity {capacity} held {:.1} entries on average, at most {most}",
            if hold { " (bound held)" } else { "" },
            sum as f64 / samples.max(1) as f64
        );
    }
    runs
}

/// Body runs of each subject on `trace` at `capacity`.
fn run(subject: &str, trace: &[u64], capacity: usize) -> u64 {
    let mut runs = 0u64;
    match subject {
        "OPT" => return opt(trace, capacity),
        "syncmemo" => {
            let options = MemoOptions {
                capacity: Some(capacity),
                ..MemoOptions::DEFAULT
            };
            // `#[memoize]` keeps its cache in a static; a leaked one per run here.
            let memo: &'static Memo<u64, u64> =
                Box::leak(Box::new(Memo::new("hit_ratio::f", options.into())));
            runs = replay_memo(memo, trace);
        }
        "moka" => runs = run_moka(trace, capacity, false),
        "moka (bound held)" => runs = run_moka(trace, capacity, true),
        "quick_cache" => {
            let cache = quick_cache::sync::Cache::new(capacity);
            for &k in trace {
                let v: Result<u64, ()> = cache.get_or_insert_with(&k, || {
                    runs += 1;
                    Ok(k)
                });
                black_box(v.ok());
            }
        }
        "LRU" => {
            let mut cache = cached::LruCache::new(capacity);
            for &k in trace {
                if cache.cache_get(&k).is_none() {
                    runs += 1;
                    cache.cache_set(k, k);
                }
            }
        }
        _ => unreachable!("unknown subject {subject}"),
    }
    runs
}

fn main() {
    let args = Args::parse("hit_ratio", TRACES, SUBJECTS);
    let calls = if args.quick { 200_000 } else { 1_000_000 };
    let subjects = args.wanted_maps(SUBJECTS);
    let mut json = Vec::new();
    let mut table = Vec::new();
    let weighted_subjects: Vec<&str> = ["syncmemo", "moka", "moka (bound held)", "quick_cache"]
        .into_iter()
        .filter(|s| args.wants_map(s))
        .collect();
    let mut weighted = Vec::new();
    for &name in TRACES.iter().filter(|t| args.wants_workload(t)) {
        let started = Instant::now();
        let trace = trace(name, calls);
        let mut distinct: Vec<u64> = trace.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let distinct = distinct.len();
        eprintln!(
            "{name}: {} calls, {distinct} distinct keys (built in {:.1?})",
            trace.len(),
            started.elapsed()
        );
        if trace.is_empty() {
            eprintln!("{name}: no data on this machine, skipped");
            continue;
        }
        if name == "zipf weighted" {
            if std::env::var_os("HIT_RATIO_DUMP").is_some() {
                continue; // the policy's replay test has no weights
            }
            let mut keys = trace.clone();
            keys.sort_unstable();
            keys.dedup();
            let total: u64 = keys.iter().map(|&k| weight(k)).sum();
            for per_mille in [1u64, 10, 100] {
                let max_weight = (total * per_mille / 1000).max(1);
                let mut cells = Vec::new();
                for &subject in &weighted_subjects {
                    let started = Instant::now();
                    let runs = run_weighted(subject, &trace, max_weight, distinct);
                    let hit_ratio = 1.0 - runs as f64 / trace.len() as f64;
                    eprintln!(
                        "  {name} max_weight {max_weight}: {subject} {:.2}% ({:.1?})",
                        hit_ratio * 100.0,
                        started.elapsed()
                    );
                    json.push(serde_json::json!({
                        "trace": name,
                        "max_weight": max_weight,
                        "distinct": distinct,
                        "subject": subject,
                        "hit_ratio": hit_ratio,
                        "calls": trace.len(),
                    }));
                    cells.push(hit_ratio);
                }
                weighted.push((trace.len(), distinct, total, max_weight, per_mille, cells));
            }
            continue;
        }
        // `HIT_RATIO_DUMP=dir`: only write the trace (u64 keys, little-endian) for the policy's
        // replay test (`replay_dumped_traces` in syncmap-core/src/policy/tests.rs).
        if let Some(dir) = std::env::var_os("HIT_RATIO_DUMP") {
            let bytes: Vec<u8> = trace.iter().flat_map(|k| k.to_le_bytes()).collect();
            let file = Path::new(&dir).join(name.replace([' ', '+', '.'], "_"));
            std::fs::write(&file, bytes).expect("write the trace");
            eprintln!("{name}: written to {}", file.display());
            continue;
        }
        for per_mille in [1usize, 10, 100] {
            let capacity = (distinct * per_mille / 1000).max(1);
            let mut cells = Vec::new();
            for &subject in &subjects {
                let started = Instant::now();
                let runs = run(subject, &trace, capacity);
                let hit_ratio = 1.0 - runs as f64 / trace.len() as f64;
                eprintln!(
                    "  {name} capacity {capacity}: {subject} {:.2}% ({:.1?})",
                    hit_ratio * 100.0,
                    started.elapsed()
                );
                json.push(serde_json::json!({
                    "trace": name,
                    "capacity": capacity,
                    "distinct": distinct,
                    "subject": subject,
                    "hit_ratio": hit_ratio,
                    "calls": trace.len(),
                }));
                cells.push(hit_ratio);
            }
            table.push((name, trace.len(), distinct, capacity, per_mille, cells));
        }
    }

    println!("\nHit ratio (%), 1 - body runs / calls; single thread\n");
    println!(
        "| trace | calls | distinct | capacity | {} |",
        subjects.join(" | ")
    );
    println!("|---|---|---|---|{}", "---|".repeat(subjects.len()));
    let ours = subjects.iter().position(|s| *s == "syncmemo");
    let mut short = Vec::new();
    for (name, calls, distinct, capacity, per_mille, cells) in &table {
        let best_peer = best_peer(&subjects, cells);
        if let Some(ours) = ours.map(|i| cells[i]) {
            if ours < best_peer - 0.01 {
                short.push(format!(
                    "{name} @{capacity} ({:.1} vs {:.1})",
                    ours * 100.0,
                    best_peer * 100.0
                ));
            }
        }
        let cells = row_cells(&subjects, cells, best_peer);
        println!(
            "| {name} | {calls} | {distinct} | {capacity} ({:.1}%) | {} |",
            *per_mille as f64 / 10.0,
            cells.join(" | ")
        );
    }
    println!(
        "\nBold: at least the best peer. Peers are the subjects that hold their bound ({}); \
         plain moka applies its bound lazily and may hold more entries than its capacity \
         (`HIT_RATIO_MOKA_HELD=1` prints how many), so it is shown but not a peer.",
        subjects
            .iter()
            .filter(|s| !NOT_PEERS.contains(*s))
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    );
    if ours.is_some() {
        println!(
            "syncmemo more than 1 point under the best peer: {}",
            if short.is_empty() {
                "none".to_string()
            } else {
                short.join(", ")
            }
        );
    }
    // Average gap to OPT per subject, over the rows.
    if let Some(opt_at) = subjects.iter().position(|s| *s == "OPT") {
        let gaps: Vec<String> = subjects
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != opt_at)
            .map(|(i, s)| {
                let gap: f64 = table.iter().map(|r| r.5[opt_at] - r.5[i]).sum::<f64>()
                    / table.len().max(1) as f64;
                format!("{s} {:.2}", gap * 100.0)
            })
            .collect();
        println!("\nAverage gap to OPT (points): {}", gaps.join(", "));
    }

    if !weighted.is_empty() {
        println!(
            "\nWeighted: zipf weighted, hit ratio (%) under max_weight (values weigh 1-128)\n"
        );
        println!(
            "| calls | distinct | total weight | max_weight | {} |",
            weighted_subjects.join(" | ")
        );
        println!(
            "|---|---|---|---|{}",
            "---|".repeat(weighted_subjects.len())
        );
        for (calls, distinct, total, max_weight, per_mille, cells) in &weighted {
            let best = best_peer(&weighted_subjects, cells);
            let cells = row_cells(&weighted_subjects, cells, best);
            println!(
                "| {calls} | {distinct} | {total} | {max_weight} ({:.1}%) | {} |",
                *per_mille as f64 / 10.0,
                cells.join(" | ")
            );
        }
    }

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    let path = dir.join("hit_ratio.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).expect("write json");
    println!("\nwrote {}", path.display());
}
