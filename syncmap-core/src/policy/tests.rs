//! Behaviour of the policy on small traces, through a single-threaded simulated cache.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use super::*;

/// A simulated entry: its hit counter and whether the cache still holds it.
#[derive(Default)]
struct Fake {
    hits: Cell<u32>,
    live: Cell<bool>,
    hash: Cell<u64>,
}

/// What [`Policy::insert`] reports removed.
type Removals = Vec<(Rc<Fake>, Removal)>;

impl Fake {
    /// A new entry that the cache holds.
    fn live() -> Rc<Fake> {
        let e = Rc::new(Fake::default());
        e.live.set(true);
        e
    }
}

impl Resident for Rc<Fake> {
    fn hash(&self) -> u64 {
        self.hash.get()
    }
    fn take_hits(&self) -> u32 {
        self.hits.replace(0)
    }
    fn is_live(&self) -> bool {
        self.live.get()
    }
}

/// A cache of keys over the policy, counting hits the way `Memo` does.
struct Sim {
    policy: Policy<Rc<Fake>>,
    map: HashMap<u64, Rc<Fake>>,
    keys: HashMap<*const Fake, u64>,
    hits: u64,
    misses: u64,
    evictions: u64,
    rejections: u64,
    /// Mixed into the keys' hashes.
    seed: u64,
}

/// Inserts `e`, whose key has the hash `hash`, with `weight`.
fn insert(policy: &mut Policy<Rc<Fake>>, hash: u64, weight: u64, e: Rc<Fake>, out: &mut Removals) {
    e.hash.set(hash);
    policy.insert(weight, e, out);
}

fn hash(k: u64) -> u64 {
    hash_seeded(k, 0)
}

/// splitmix64 of `k ^ seed`: the replay test varies the seed, as the caches' hashers vary.
fn hash_seeded(k: u64, seed: u64) -> u64 {
    let mut z = (k ^ seed).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Sim {
    fn new(capacity: u64) -> Sim {
        Sim {
            policy: Policy::new(capacity),
            map: HashMap::new(),
            keys: HashMap::new(),
            hits: 0,
            misses: 0,
            evictions: 0,
            rejections: 0,
            seed: 0,
        }
    }

    /// One call; whether it hit.
    fn access(&mut self, k: u64) -> bool {
        if let Some(e) = self.map.get(&k) {
            e.hits.set((e.hits.get() + 1).min(15));
            self.hits += 1;
            return true;
        }
        self.misses += 1;
        let e = Fake::live();
        self.map.insert(k, e.clone());
        self.keys.insert(Rc::as_ptr(&e), k);
        let mut out = Vec::new();
        insert(&mut self.policy, hash_seeded(k, self.seed), 1, e, &mut out);
        for (e, why) in out {
            let key = self.keys.remove(&Rc::as_ptr(&e)).expect("known entry");
            match why {
                Removal::Evicted => self.evictions += 1,
                Removal::Rejected => self.rejections += 1,
                Removal::Gone => {
                    assert!(!e.live.get());
                    continue;
                }
            }
            assert!(e.live.replace(false));
            self.map.remove(&key);
        }
        if self.policy.wants_sample() {
            self.policy.observe(self.hits, self.misses);
        }
        assert!(self.map.len() as u64 <= self.policy.capacity);
        false
    }

    fn invalidate(&mut self, k: u64) {
        if let Some(e) = self.map.remove(&k) {
            e.live.set(false);
        }
    }
}

#[test]
fn bound_holds_and_every_removal_is_reported() {
    let mut sim = Sim::new(100);
    for i in 0..10_000u64 {
        sim.access(hash(i) % 500);
        if i % 97 == 0 {
            sim.invalidate(hash(i + 1) % 500);
        }
        assert!(sim.map.len() <= 100);
        assert!(sim.policy.weight() <= 100);
    }
    assert!(sim.evictions + sim.rejections > 0);
}

#[test]
fn a_scan_of_ten_times_the_capacity_keeps_the_hot_set() {
    let capacity = 400u64;
    let mut sim = Sim::new(capacity);
    let hot: Vec<u64> = (0..capacity / 4).collect();
    // Warm up the hot set.
    for _ in 0..4 {
        for &k in &hot {
            sim.access(k);
        }
    }
    // One pass over 10x capacity fresh keys, the hot set hit throughout.
    let mut hot_misses = 0;
    for (i, k) in (1_000_000..1_000_000 + 10 * capacity).enumerate() {
        sim.access(k);
        if i % 4 == 0 {
            let h = hot[(i / 4) % hot.len()];
            hot_misses += u64::from(!sim.access(h));
        }
    }
    assert_eq!(hot_misses, 0, "hot keys evicted by a scan");
    assert!(hot.iter().all(|k| sim.map.contains_key(k)));
}

#[test]
fn a_key_hit_every_other_call_survives() {
    let mut sim = Sim::new(50);
    sim.access(7);
    let mut misses = 0;
    for i in 0..20_000u64 {
        if i % 2 == 0 {
            misses += u64::from(!sim.access(7));
        } else {
            sim.access(1_000 + i); // every other call a new key
        }
    }
    assert_eq!(misses, 0);
}

#[test]
fn frequent_keys_beat_recent_ones() {
    // Zipf-like: 20 keys take half the calls, the rest are spread over 100k keys.
    let mut sim = Sim::new(100);
    let mut misses_hot = 0;
    for i in 0..200_000u64 {
        if i % 2 == 0 {
            let warm = i > 20_000;
            let hit = sim.access(hash(i) % 20);
            misses_hot += u64::from(warm && !hit);
        } else {
            sim.access(100 + hash(i) % 100_000);
        }
    }
    assert!(misses_hot < 50, "{misses_hot}");
}

/// A recency-heavy trace: each new key is used a few times shortly after its first use, then
/// never again. LRU-like behaviour (a large window) wins.
#[test]
fn the_window_grows_on_a_recency_heavy_trace() {
    let capacity = 1_000u64;
    let mut sim = Sim::new(capacity);
    let start = sim.policy.window_max();
    let mut next = 0u64;
    for i in 0..400_000u64 {
        // Keys are reused at distances up to ~500 calls (half the capacity), never later.
        let k = if i % 3 == 0 {
            next += 1;
            next
        } else {
            next.saturating_sub(hash(i) % 150)
        };
        sim.access(k);
    }
    let end = sim.policy.window_max();
    assert!(end > start * 10, "window {start} -> {end}");
}

/// A frequency-heavy trace (a fixed popular set among one-time keys): the window stays small.
#[test]
fn the_window_stays_small_on_a_frequency_heavy_trace() {
    let capacity = 1_000u64;
    let mut sim = Sim::new(capacity);
    // Start from a large window, as if the trace before had been recency-heavy.
    sim.policy.window_max = 600;
    let mut fresh = 1u64 << 40;
    for i in 0..400_000u64 {
        let k = if i % 2 == 0 {
            hash(i) % 800 // popular set, fits the cache
        } else {
            fresh += 1;
            fresh
        };
        sim.access(k);
    }
    let end = sim.policy.window_max();
    assert!(end < 300, "window 600 -> {end}");
}

#[test]
fn oversized_entries_are_rejected_and_weights_bound_the_total() {
    let mut policy: Policy<Rc<Fake>> = Policy::new(100);
    let mut out = Vec::new();
    let e = Fake::live();
    insert(&mut policy, 1, 101, e, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, Removal::Rejected);
    out.clear();
    for k in 0..1000u64 {
        let e = Fake::live();
        insert(&mut policy, hash(k), 1 + k % 30, e, &mut out);
        for (e, _) in out.drain(..) {
            e.live.set(false);
        }
        assert!(policy.weight() <= 100, "{}", policy.weight());
    }
}

#[test]
fn drain_empties_the_policy() {
    let mut sim = Sim::new(10);
    for k in 0..30 {
        sim.access(k);
    }
    let mut out = Vec::new();
    sim.policy.drain(&mut out);
    assert_eq!(out.len(), 10);
    assert_eq!(sim.policy.len(), 0);
    assert_eq!(sim.policy.weight(), 0);
}

#[test]
fn weighted_sketch_grows_with_the_entries_not_the_weight() {
    let mut policy: Policy<Rc<Fake>> = Policy::weighted(1 << 40);
    assert_eq!(policy.sketch_for(), Some(64));
    let mut out = Vec::new();
    for k in 0..1000u64 {
        let e = Fake::live();
        insert(&mut policy, hash(k), 1_000 + k, e, &mut out);
    }
    assert!(out.is_empty(), "all fit: {}", out.len());
    assert_eq!(policy.len(), 1000);
    // Sized for the entries held (1,000 → 1,024), not for 2^40 of weight.
    assert_eq!(policy.sketch_for(), Some(1024));
    // The bound still holds once the weight is reached.
    let mut policy: Policy<Rc<Fake>> = Policy::weighted(10_000);
    for k in 0..5_000u64 {
        let e = Fake::live();
        insert(&mut policy, hash(k), 1 + k % 200, e, &mut out);
        for (e, _) in out.drain(..) {
            e.live.set(false);
        }
        assert!(policy.weight() <= 10_000, "{}", policy.weight());
    }
    assert!(policy.sketch_for().unwrap() <= 1024);
}

/// Fills a policy of 4,000 entries whose estimated frequencies are all 8, then offers `tries`
/// new keys of estimated frequency `frequency` (below the victims', so each loses its duel);
/// returns how many were admitted anyway. No halving happens meanwhile (the sketch ages only
/// through [`Policy::observe`], not called here).
fn admitted_against_hotter_victims(frequency: u32, tries: u64) -> usize {
    let capacity = 4_000u64;
    let mut policy: Policy<Rc<Fake>> = Policy::new(capacity);
    let mut out = Vec::new();
    for k in 0..capacity {
        let e = Fake::live();
        insert(&mut policy, hash(k), 1, e, &mut out);
        policy.sketch.add(hash(k), 7);
    }
    assert!(out.is_empty());
    let mut candidates = Vec::new();
    for i in 0..tries {
        let h = hash(1 << 40 | i);
        policy.sketch.add(h, frequency - 1); // the insertion adds the last one
        let e = Fake::live();
        candidates.push(e.clone());
        insert(&mut policy, h, 1, e, &mut out);
        for (e, _) in out.drain(..) {
            e.live.set(false);
        }
    }
    let window = policy.window.len();
    candidates.iter().filter(|e| e.live.get()).count() - window
}

#[test]
fn a_warm_candidate_is_sometimes_admitted_against_a_hotter_victim() {
    let tries = 1_300;
    let warm = admitted_against_hotter_victims(u32::from(JITTER_FROM), tries);
    // About tries / 32 (40); a victim whose frequency is stale cannot hold its place for
    // ever, yet the admission stays rare.
    assert!((20..=70).contains(&warm), "{warm}");
    let cool = admitted_against_hotter_victims(u32::from(JITTER_FROM) - 1, tries);
    assert_eq!(
        cool, 0,
        "a candidate under the jitter's threshold was admitted"
    );
}

/// A weighted policy bounded to `capacity`, holding keys `0..capacity` of weight 1, and the
/// (empty) list of removals to reuse.
fn weighted_full_of_weight_one(capacity: u64) -> (Policy<Rc<Fake>>, Removals) {
    let mut policy: Policy<Rc<Fake>> = Policy::weighted(capacity);
    let mut out = Vec::new();
    for k in 0..capacity {
        insert(&mut policy, hash(k), 1, Fake::live(), &mut out);
    }
    (policy, out)
}

/// A key rejected by the admission duel that comes back soon is admitted without a duel (the
/// ghost remembers it); one rejected long ago, forgotten, duels again and loses.
#[test]
fn a_rejected_key_that_returns_soon_is_admitted() {
    let capacity = 1_000u64;
    let mut policy: Policy<Rc<Fake>> = Policy::new(capacity);
    let mut out = Vec::new();
    for k in 0..capacity {
        let e = Fake::live();
        insert(&mut policy, hash(k), 1, e, &mut out);
        policy.sketch.add(hash(k), 7);
    }
    assert!(out.is_empty());
    // Offers key `k` (a new entry) and then enough fresh keys to push it out of the window;
    // returns whether `k`'s entry was admitted.
    let mut fresh = 1u64 << 50;
    let mut offer = |policy: &mut Policy<Rc<Fake>>, k: u64| {
        let e = Fake::live();
        insert(policy, hash(k), 1, e.clone(), &mut out);
        for _ in 0..policy.window_max() + 1 {
            let other = Fake::live();
            fresh += 1;
            insert(policy, hash(fresh), 1, other, &mut out);
        }
        for (gone, _) in out.drain(..) {
            gone.live.set(false);
        }
        assert!(!policy.window.iter().any(|n| Rc::ptr_eq(&n.entry, &e)));
        e.live.get()
    };
    let returning = 1u64 << 40;
    assert!(
        !offer(&mut policy, returning),
        "a cold key beat a hot victim"
    );
    assert!(
        offer(&mut policy, returning),
        "a returning key was rejected again"
    );
    let forgotten = 1u64 << 41;
    assert!(!offer(&mut policy, forgotten));
    // Many rejections later (the fresh keys), the ghost no longer holds it.
    for k in 0..20 * capacity {
        offer(&mut policy, (1 << 42) + k);
    }
    assert!(
        !offer(&mut policy, forgotten),
        "the ghost remembered a key for ever"
    );
}

/// With weights, a returning key displaces without a duel only entries at least as heavy: a
/// heavy key rejected once does not push out several light, hotter entries when it returns.
#[test]
fn a_returning_heavy_key_still_duels_lighter_victims() {
    let capacity = 1_000u64;
    let (mut policy, mut out) = weighted_full_of_weight_one(capacity);
    // After the fill: the weighted sketch starts over each time it grows.
    for k in 0..capacity {
        policy.sketch.add(hash(k), 7);
    }
    assert!(out.is_empty());
    let heavy = hash(1 << 40);
    let mut fresh = 1u64 << 50;
    for round in 0..2 {
        let e = Fake::live();
        insert(&mut policy, heavy, 8, e.clone(), &mut out);
        for _ in 0..policy.window_max() + 1 {
            let other = Fake::live();
            fresh += 1;
            insert(&mut policy, hash(fresh), 1, other, &mut out);
        }
        let rejected = out
            .iter()
            .any(|(gone, why)| Rc::ptr_eq(gone, &e) && *why == Removal::Rejected);
        assert!(rejected, "round {round}: the heavy key was admitted");
        for (gone, _) in out.drain(..) {
            gone.live.set(false);
        }
    }
}

/// With weights, a candidate that would displace several entries must beat their summed
/// frequencies, not each one's: a key of weight 4 and frequency 3 (under the jitter's
/// threshold) does not push out four entries of frequency 1 or 2; one of frequency 14 does.
#[test]
fn a_heavy_candidate_duels_the_sum_of_its_victims() {
    let capacity = 1_000u64;
    let (mut policy, mut out) = weighted_full_of_weight_one(capacity);
    // After the fill (the weighted sketch starts over each time it grows): 1 or 2.
    for k in 0..capacity {
        policy.sketch.add(hash(k), 1);
    }
    assert!(out.is_empty());
    let mut fresh = 1u64 << 50;
    let mut offer = |policy: &mut Policy<Rc<Fake>>, k: u64, frequency: u32| {
        let h = hash(k);
        policy.sketch.add(h, frequency - 1); // the insertion adds the last one
        let e = Fake::live();
        insert(policy, h, 4, e.clone(), &mut out);
        for _ in 0..policy.window_max() + 1 {
            let other = Fake::live();
            fresh += 1;
            insert(policy, hash(fresh), 1, other, &mut out);
        }
        for (gone, _) in out.drain(..) {
            gone.live.set(false);
        }
        e.live.get()
    };
    assert!(
        !offer(&mut policy, 1 << 40, 3),
        "4 victims of frequency 1-2 lost to 3"
    );
    assert!(
        offer(&mut policy, 1 << 41, 14),
        "4 victims of frequency 1-2 beat 14"
    );
}

/// With weights, the admission jitter applies only against a single victim: warm heavy
/// candidates that lose against several victims together are never let in.
#[test]
fn no_jitter_against_several_victims() {
    let capacity = 1_000u64;
    let (mut policy, mut out) = weighted_full_of_weight_one(capacity);
    for k in 0..capacity {
        policy.sketch.add(hash(k), 4);
    }
    let mut admitted = 0;
    for i in 0..300u64 {
        let h = hash(1 << 40 | i);
        policy.sketch.add(h, u32::from(JITTER_FROM) + 1);
        let e = Fake::live();
        insert(&mut policy, h, 4, e.clone(), &mut out);
        for j in 0..policy.window_max() + 1 {
            let other = Fake::live();
            insert(&mut policy, hash(1 << 45 | i << 16 | j), 1, other, &mut out);
        }
        for (gone, _) in out.drain(..) {
            gone.live.set(false);
        }
        admitted += usize::from(e.live.get());
    }
    assert_eq!(admitted, 0, "warm heavy candidates admitted by the jitter");
}

/// A policy of `capacity` entries, one of `shards`, told the whole cache's call totals: its
/// sketch halves after ten times `capacity * shards` calls, not one call before.
fn ages_after_ten_capacities_of_calls(capacity: u64, shards: u64) -> Policy<Rc<Fake>> {
    let mut policy: Policy<Rc<Fake>> = Policy::new(capacity).one_of(shards);
    let h = hash(1);
    policy.sketch.add(h, 12);
    policy.observe(0, 0);
    policy.observe(10 * capacity * shards - 1, 0);
    assert_eq!(policy.sketch.frequency(h), 12);
    policy.observe(10 * capacity * shards, 0);
    assert_eq!(policy.sketch.frequency(h), 6);
    policy
}

/// The sketch ages with the cache's calls, hits included: a cache whose calls all hit still
/// forgets old frequencies (with aging counted in the accesses recorded, hits that the policy
/// has not yet folded into the sketch did not count).
#[test]
fn the_sketch_ages_every_ten_capacities_of_calls() {
    let capacity = 1_000u64;
    let mut policy = ages_after_ten_capacities_of_calls(capacity, 1);
    policy.observe(15 * capacity, 5 * capacity);
    assert_eq!(policy.sketch.frequency(hash(1)), 3);
}

/// One of four shards of a cache sees a quarter of its calls and is told the cache's totals:
/// it ages its sketch after ten capacities of the whole cache's calls, as one policy would.
#[test]
fn a_shard_ages_its_sketch_by_the_whole_caches_calls() {
    ages_after_ten_capacities_of_calls(1_000, 4);
}

/// Replays the traces that `HIT_RATIO_DUMP=dir cargo bench --bench hit_ratio` writes (u64
/// keys, little-endian, one file per trace) at 0.1%, 1% and 10% of their distinct keys, and
/// prints the hit ratios: a policy change is tried on the bench's traces in seconds, without
/// the bench's peers. `HIT_RATIO_ONLY=loop,shifting` keeps only those files;
/// `HIT_RATIO_SEED=n` mixes `n` into the keys' hashes (tiny capacities move by a point or more
/// with the seed: average several).
///
/// `HIT_RATIO_TRACES=dir cargo test --release -p syncmap-core --lib replay -- --ignored --nocapture`
#[test]
#[ignore = "needs the traces the hit_ratio bench dumps"]
fn replay_dumped_traces() {
    let Some(dir) = std::env::var_os("HIT_RATIO_TRACES") else {
        return;
    };
    let only = std::env::var("HIT_RATIO_ONLY").unwrap_or_default();
    let seed = std::env::var("HIT_RATIO_SEED").map_or(0, |s| s.parse().expect("a u64 seed"));
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("trace directory")
        .flatten()
        .map(|e| e.path())
        .collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !only.is_empty() && !only.split(',').any(|o| o == name) {
            continue;
        }
        let bytes = std::fs::read(&path).expect("trace");
        let trace: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let mut distinct = trace.clone();
        distinct.sort_unstable();
        distinct.dedup();
        for per_mille in [1usize, 10, 100] {
            let capacity = (distinct.len() * per_mille / 1000).max(1) as u64;
            let mut sim = Sim::new(capacity);
            sim.seed = seed;
            let hits = trace.iter().filter(|&&k| sim.access(k)).count();
            println!(
                "replay {name} {capacity} {:.3}",
                100.0 * hits as f64 / trace.len().max(1) as f64
            );
        }
    }
}

/// A queue's node of a 16-byte entry (the memo's: its key's hash and its slot) takes half a
/// cache line: the node keeps no hash of its own (the entry gives it).
#[test]
fn a_node_of_a_sixteen_byte_entry_takes_32_bytes() {
    assert_eq!(std::mem::size_of::<Node<[u64; 2]>>(), 32);
}

/// With the window outside the policy (the memo's, `memo/window.rs`): a candidate duels at
/// once, the main space and a full outer window of `window_max` stay within the capacity (the
/// main space gives way when the window grows), and a key called often keeps its place
/// against a stream of keys called once.
#[test]
fn candidates_from_an_outer_window_duel_and_the_bound_holds() {
    let capacity = 100;
    let mut policy: Policy<Rc<Fake>> = Policy::new(capacity);
    let mut out: Removals = Vec::new();
    let hot: Vec<Rc<Fake>> = (0..20).map(|_| Fake::live()).collect();
    for (i, e) in hot.iter().enumerate() {
        e.hash.set(hash(1_000_000 + i as u64));
        let admitted = policy.admit_candidate(1, e.clone(), &mut out);
        assert!(
            admitted.is_some_and(|held| Rc::ptr_eq(held, e)),
            "room: admitted, and handed back"
        );
    }
    let mut admitted_cold = 0;
    for k in 0..5_000u64 {
        // The hot keys are called again between the cold ones (their hits, as a cache's
        // entries count them).
        for e in &hot {
            e.hits.set(e.hits.get() + 1);
        }
        let cold = Fake::live();
        cold.hash.set(hash(k));
        admitted_cold += usize::from(policy.admit_candidate(1, cold, &mut out).is_some());
        policy.make_room(policy.window_max(), &mut out);
        for (e, why) in out.drain(..) {
            assert_ne!(why, Removal::Gone, "no entry left the cache on its own");
            e.live.set(false);
        }
        assert!(
            policy.weight() + policy.window_max() <= capacity,
            "main {} + window {} > {capacity}",
            policy.weight(),
            policy.window_max()
        );
    }
    assert!(hot.iter().all(|e| e.live.get()), "a hot key was evicted");
    assert!(
        admitted_cold > 0,
        "the main space took cold keys while it had room"
    );
    // A window grown by the climber: the main space gives way at once.
    policy.make_room(30, &mut out);
    assert!(policy.weight() + 30 <= capacity, "main {}", policy.weight());
}
