//! The eviction policy of bounded caches: an adaptive W-TinyLFU over CLOCK queues, runtime-free
//! (no threads, no locks, no atomics of its own) so that it is unit-tested on its own. The
//! memo runtime holds it under a mutex taken only on the miss path (one policy per shard of a
//! large cache's keys, see [`Policy::one_of`]).
//!
//! - **Window**: a new entry enters a small FIFO window (it starts at 1% of the capacity;
//!   [`Climber`] resizes it). The memo keeps that window outside the policy, beside its map
//!   (`memo/window.rs`), and hands the policy each entry leaving it
//!   ([`Policy::admit_candidate`]); the policy's own window (`Policy::insert`) serves its
//!   unit tests, which simulate the whole.
//! - **Admission**: an entry leaving the window enters the main space if that has room, or
//!   if its estimated frequency (a [`Sketch`] of recent accesses) beats the frequency of the
//!   main space's victim (the summed frequencies of the victims, when weights make it
//!   displace several, as moka does); otherwise it is evicted (a *rejection*). A one-time
//!   scan thus never displaces entries that are used again. A candidate that lost but is itself warm (an
//!   estimated frequency of at least [`JITTER_FROM`]) is still admitted once in
//!   [`JITTER_ONE_IN`] duels, as Caffeine does (with a lower threshold and more often than
//!   Caffeine's 6 and 128, measured): a victim whose frequency is stale (popular before the
//!   workload moved) cannot hold its place for ever, and keys crafted to collide with a victim
//!   in the sketch cannot keep every newcomer out. The sketch is halved every ten times the
//!   capacity calls, so old popularity fades.
//! - **Ghost**: the hashes of recently rejected keys are remembered (a [`Ghost`] table of half
//!   the capacity, S3-FIFO's ghost queue); a key that comes back while remembered is admitted
//!   to the main space without a duel, so a popular set that moved gets in before the sketch
//!   has aged the old one out.
//! - **Main space**: segmented, as Caffeine's. Admitted entries join a *probation* FIFO;
//!   victims come from its front: an entry hit since it was admitted moves to the *protected*
//!   CLOCK queue (at most [`PROTECTED_PERCENT`]% of the main space, its oldest demoted back
//!   to probation), one that was not is the victim. When probation is empty, the protected queue's hand picks
//!   the first entry whose credit (up to 3 passes, earned by hits) is spent. Hits are folded
//!   into the sketch whenever the policy looks at an entry.
//! - **Hits** are not seen by the policy when they happen: each entry counts its own hits
//!   ([`Resident::take_hits`], a saturating counter in the entry written only while it
//!   changes), and the policy reads and resets them when it next looks at the entry. That is
//!   what keeps a hit lock-free.
//! - **Adaptation**: after each sample of calls (ten times the capacity, at least
//!   [`SAMPLE_MIN`]), the window grows if growing it last time
//!   raised the hit ratio by more than the sample's noise, and shrinks otherwise (hill
//!   climbing): recency-heavy workloads get a large window (closer to LRU), frequency-heavy
//!   ones a small one (closer to LFU).
//!
//! Every operation is amortized O(1): each entry passes the window once, and each second
//! chance in the main queue is paid for by a hit (and bounded per call by [`MAX_SECOND_CHANCES`]).

mod climber;
mod ghost;
mod sketch;

use std::collections::VecDeque;

use climber::Climber;
use ghost::Ghost;
use sketch::Sketch;

/// What the policy needs to know of a cached entry.
pub(crate) trait Resident {
    /// The hash of the entry's key (what the sketch and the ghost index by).
    fn hash(&self) -> u64;
    /// The hits recorded since the last call, resetting the count.
    fn take_hits(&self) -> u32;
    /// Whether the entry is still in the cache (not invalidated, expired or replaced since it
    /// was inserted). Entries that are not are dropped from the queues as they are met.
    fn is_live(&self) -> bool;
}

/// Why an entry left the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    /// Evicted from the main space, for a candidate with a higher frequency or to respect the
    /// capacity.
    Evicted,
    /// Not admitted: the new entry's frequency did not beat the victim's, or it alone weighs
    /// more than the capacity.
    Rejected,
    /// The entry had already left the cache ([`Resident::is_live`] was false).
    Gone,
}

/// Where the policy puts the entries that must leave the cache: a `Vec`, or a list on the
/// caller's stack (a miss evicts one or two entries, so the memo runtime keeps them there
/// rather than allocate or share a list).
pub(crate) trait Removals<E> {
    fn push(&mut self, removal: (E, Removal));
}

impl<E> Removals<E> for Vec<(E, Removal)> {
    fn push(&mut self, removal: (E, Removal)) {
        Vec::push(self, removal);
    }
}

impl<E, A: smallvec::Array<Item = (E, Removal)>> Removals<E> for smallvec::SmallVec<A> {
    fn push(&mut self, removal: (E, Removal)) {
        smallvec::SmallVec::push(self, removal);
    }
}

/// At most this many entries get a second chance per victim search: past it, the current
/// entry is the victim even if it was hit. Keeps a miss's work bounded when every entry is hot.
pub(crate) const MAX_SECOND_CHANCES: usize = 64;

/// A rejected candidate with at least this estimated frequency is admitted anyway once in
/// [`JITTER_ONE_IN`] duels against a single victim. Caffeine uses 6 and 128; 4 and 32 lowered the average gap to OPT
/// of the hit-ratio bench by 0.1 point (replayed, three hash seeds) and let a moved popular
/// set in sooner.
pub(crate) const JITTER_FROM: u8 = 4;

/// See [`JITTER_FROM`].
pub(crate) const JITTER_ONE_IN: u64 = 32;

/// The protected part of the main space holds at most this share of it (Caffeine: 80). With
/// 80, after the popular set moved, keys popular before filled the protected part for hundreds
/// of thousands of calls (they leave it only one per promotion); with 50 they go sooner
/// (shifting trace at 10%: +1.7 points, replayed), for 0.3-0.6 points on the 0.1% Zipf rows.
pub(crate) const PROTECTED_PERCENT: u64 = 50;

/// The climber's samples are at least this many calls: with 1,000 (before), at small
/// capacities the window followed the samples' noise (the binomial spread of 1,000 calls at a
/// 65% hit ratio is 1.5 points) rather than the workload; Zipf with scans at 364 entries gained
/// 1.1 points, replayed.
pub(crate) const SAMPLE_MIN: u64 = 10_000;

/// The most passes of the main queue's hand an entry survives without hits.
const MAX_CREDIT: u32 = 3;

/// An entry in a queue.
struct Node<E> {
    weight: u64,
    /// Passes of the main queue's hand this entry survives without new hits.
    credit: u8,
    /// The key was in the [`Ghost`] when inserted: it leaves the window for the main space
    /// without a duel.
    returning: bool,
    entry: E,
}

/// Adaptive W-TinyLFU; see the module documentation.
pub(crate) struct Policy<E> {
    window: VecDeque<Node<E>>,
    /// The main space's protected part (entries hit since they were admitted), a CLOCK queue.
    main: VecDeque<Node<E>>,
    /// The main space's probation part: entries admitted and not hit since, or demoted from
    /// the protected part; victims come from here first.
    probation: VecDeque<Node<E>>,
    window_weight: u64,
    /// Weight of `main` and `probation` together.
    main_weight: u64,
    /// Weight of `main` alone.
    protected_weight: u64,
    capacity: u64,
    /// The window's share of `capacity`, moved by `climber`.
    window_max: u64,
    sketch: Sketch,
    /// Recently rejected keys.
    ghost: Ghost,
    /// The victims of the current duel (kept to reuse its allocation).
    victims: Vec<Node<E>>,
    climber: Climber,
    /// Calls at the start of the current sample (see [`Policy::observe`]).
    sample_start: Option<(u64, u64)>,
    /// Insertions since the last call to [`Policy::observe`].
    inserts: u64,
    /// With weights ([`Policy::weighted`]): the number of entries the sketch is sized for,
    /// doubled as the policy holds more. `None`: sized for `capacity` entries.
    sketch_for: Option<u64>,
    /// xorshift64 state for the admission jitter (never 0).
    jitter: u64,
    /// Calls (hits and misses) at the sketch's last halving.
    aged_at: Option<u64>,
    /// The number of policies the cache is split into, this one among them (see
    /// [`one_of`](Self::one_of)).
    shards: u64,
}

impl<E: Resident> Policy<E> {
    /// A policy for a total weight of `capacity` (entries weigh 1 unless told otherwise).
    pub(crate) fn new(capacity: u64) -> Policy<E> {
        Policy {
            window: VecDeque::new(),
            main: VecDeque::new(),
            probation: VecDeque::new(),
            window_weight: 0,
            main_weight: 0,
            protected_weight: 0,
            capacity,
            window_max: (capacity / 100).max(1),
            sketch: Sketch::new(capacity),
            ghost: Ghost::new(capacity),
            victims: Vec::new(),
            climber: Climber::new(capacity),
            sample_start: None,
            inserts: 0,
            sketch_for: None,
            jitter: 0x2545_F491_4F6C_DD1D,
            aged_at: None,
            shards: 1,
        }
    }

    /// Makes this policy one of `shards` that split a cache's keys between them. It still reads
    /// the whole cache's calls ([`observe`](Self::observe)) and sees about one in `shards` of
    /// them, so it ages its sketch and ends its samples after `shards` times as many: as often
    /// as one policy for the whole cache would, by the cache's calls. The climber judges the
    /// hit ratio of all those calls, which is as noisy as their count says.
    pub(crate) fn one_of(mut self, shards: u64) -> Policy<E> {
        self.shards = shards.max(1);
        self
    }

    /// A policy for a total weight of `max_weight`, with entries of any weights: the sketch,
    /// sized by entries, starts small and grows with the number of entries held (a bound of
    /// 64 MiB in bytes must not allocate a sketch for 64 Mi entries).
    pub(crate) fn weighted(max_weight: u64) -> Policy<E> {
        const FIRST: u64 = 64;
        Policy {
            sketch: Sketch::new(FIRST),
            ghost: Ghost::new(FIRST),
            sketch_for: Some(FIRST),
            ..Policy::new(0)
        }
        .with_capacity(max_weight)
    }

    /// Sets the capacity and what depends on it, but the sketch.
    fn with_capacity(mut self, capacity: u64) -> Policy<E> {
        self.capacity = capacity;
        self.window_max = (capacity / 100).max(1);
        self.climber = Climber::new(capacity);
        self
    }

    /// The number of entries the sketch is sized for, with weights.
    #[cfg(test)]
    pub(crate) fn sketch_for(&self) -> Option<u64> {
        self.sketch_for
    }

    /// The total weight of the entries held.
    pub(crate) fn weight(&self) -> u64 {
        self.window_weight + self.main_weight
    }

    /// The number of entries held (some may be gone from the cache, see [`Removal::Gone`]).
    pub(crate) fn len(&self) -> usize {
        self.window.len() + self.main.len() + self.probation.len()
    }

    /// The window's current maximum weight.
    pub(crate) fn window_max(&self) -> u64 {
        self.window_max
    }

    /// Takes a new entry, just inserted in the cache with `weight`, into the policy's own
    /// window, and pushes to `out` the entries that must leave so that the total weight is at
    /// most the capacity (possibly the new entry itself). The memo keeps its window outside
    /// the policy ([`admit_candidate`](Self::admit_candidate)); this form, the policy whole,
    /// is what its unit tests and trace replays simulate.
    #[cfg(test)]
    pub(crate) fn insert(&mut self, weight: u64, entry: E, out: &mut impl Removals<E>) {
        let hash = entry.hash();
        self.count_insertion();
        self.sketch.add(hash, 1);
        if weight > self.capacity {
            out.push((entry, Removal::Rejected));
            return;
        }
        self.window.push_back(Node {
            weight,
            credit: 0,
            returning: self.ghost.take(hash),
            entry,
        });
        self.window_weight += weight;
        while self.window_weight > self.window_max {
            let Some(candidate) = self.window.pop_front() else {
                break;
            };
            self.window_weight -= candidate.weight;
            if !candidate.entry.is_live() {
                out.push((candidate.entry, Removal::Gone));
                continue;
            }
            let hits = candidate.entry.take_hits();
            self.sketch.add(candidate.entry.hash(), hits);
            self.admit(candidate, out);
        }
        // The window may have grown past what the main space left it.
        while self.weight() > self.capacity {
            let victim = match self.victim(out) {
                Some(victim) => victim,
                None => match self.window.pop_front() {
                    Some(node) => {
                        self.window_weight -= node.weight;
                        node
                    }
                    None => break,
                },
            };
            out.push((victim.entry, Removal::Evicted));
        }
        self.prefetch_next();
    }

    /// `insert` for a cache that keeps its window outside the policy (the
    /// memo's, `memo/window.rs`): takes `entry`, a candidate leaving that window (with the hits
    /// it got there, not taken yet), into the main space if it wins its duel, and pushes to
    /// `out` the entries that must leave (its victims, or `entry` itself). Returns the
    /// entry if it was admitted (now held by the policy), `None` if it was rejected (in
    /// `out`). The outer window holds at most [`window_max`](Self::window_max) in weight, and
    /// the main space the rest of the capacity (see [`make_room`](Self::make_room)).
    pub(crate) fn admit_candidate(
        &mut self,
        weight: u64,
        entry: E,
        out: &mut impl Removals<E>,
    ) -> Option<&E> {
        let hash = entry.hash();
        self.count_insertion();
        // The call that inserted it, and its hits since.
        let hits = entry.take_hits();
        self.sketch.add(hash, 1 + hits);
        if weight > self.capacity {
            out.push((entry, Removal::Rejected));
            return None;
        }
        let candidate = Node {
            weight,
            credit: 0,
            returning: self.ghost.take(hash),
            entry,
        };
        let admitted = self.admit(candidate, out);
        self.prefetch_next();
        // An admitted candidate is the last of probation.
        admitted.then(|| &self.probation.back().expect("just admitted").entry)
    }

    /// With a window kept outside the policy, of weight `outside`: evicts from the main space
    /// until both fit the capacity (the window grows when the climber says so, and the main
    /// space then gives way, as in `insert`).
    pub(crate) fn make_room(&mut self, outside: u64, out: &mut impl Removals<E>) {
        while self.main_weight + outside > self.capacity {
            let Some(victim) = self.victim(out) else {
                break;
            };
            out.push((victim.entry, Removal::Evicted));
        }
    }

    /// Counts an insertion (for [`wants_sample`](Self::wants_sample)) and, with weights, grows
    /// the sketch with the number of entries held.
    fn count_insertion(&mut self) {
        self.inserts += 1;
        if let Some(sized_for) = self.sketch_for {
            if self.len() as u64 >= sized_for {
                // Doubling: amortized O(1); the frequencies start over, as Caffeine's do.
                let entries = sized_for.saturating_mul(2);
                self.sketch = Sketch::new(entries);
                self.ghost = Ghost::new(entries);
                self.sketch_for = Some(entries);
            }
        }
    }

    /// Asks, with write intent, for the lines at the backs of the queues where the next
    /// insertions write their nodes. Each was last touched a lap of its queue ago (in a large
    /// cache, a miss) or by another core, and the policy's lock is released only once those
    /// writes are done: 1-thread zipf bounded ran 0.93x the time (`docs/performance-notes.md`).
    #[inline]
    fn prefetch_next(&self) {
        for queue in [&self.window, &self.probation, &self.main] {
            if let Some(node) = queue.back() {
                let next = node as *const Node<E> as usize + std::mem::size_of::<Node<E>>();
                crate::raw::prefetch::prefetch_for_write(next);
                crate::raw::prefetch::prefetch_for_write(next + 63);
            }
        }
    }

    /// Moves `candidate`, out of the window, into the main space if there is room or if it
    /// wins its duel: its frequency must beat the summed frequencies of the victims it would
    /// displace (moka's rule; with weights, a heavy candidate displaces several entries). A
    /// key rejected recently (the [`Ghost`] remembered it) that displaces a single entry at
    /// least as heavy skips the duel. A candidate rejected now is remembered; the victims of a
    /// lost duel go back to the front of probation, in their order.
    fn admit(&mut self, candidate: Node<E>, out: &mut impl Removals<E>) -> bool {
        let main_max = self.capacity.saturating_sub(self.window_max);
        let frequency = self.sketch.frequency(candidate.entry.hash());
        let mut victims = std::mem::take(&mut self.victims);
        let mut victims_frequency = 0u32;
        while self.main_weight + candidate.weight > main_max {
            let Some(victim) = self.victim(out) else {
                break;
            };
            victims_frequency += u32::from(self.sketch.frequency(victim.entry.hash()));
            victims.push(victim);
        }
        // Without the weight condition, a returning heavy key pushed out several lighter,
        // hotter entries: the weighted rows of the bench lost 0.6-0.8 points. The jitter, too,
        // applies only against a single victim (moka has none; against several victims it
        // cost the weighted rows 0.2-2.5 points).
        let returning =
            candidate.returning && victims.len() == 1 && candidate.weight <= victims[0].weight;
        if victims.is_empty()
            || returning
            || u32::from(frequency) > victims_frequency
            || (victims.len() == 1 && self.jitter_admits(frequency))
        {
            for victim in victims.drain(..) {
                out.push((victim.entry, Removal::Evicted));
            }
            self.main_weight += candidate.weight;
            self.probation.push_back(candidate);
            self.victims = victims;
            true
        } else {
            for victim in victims.drain(..).rev() {
                self.main_weight += victim.weight;
                self.probation.push_front(victim);
            }
            self.ghost.insert(candidate.entry.hash());
            out.push((candidate.entry, Removal::Rejected));
            self.victims = victims;
            false
        }
    }

    /// Whether a candidate of `frequency` that lost its duel is admitted anyway (once in
    /// [`JITTER_ONE_IN`] when it is warm).
    fn jitter_admits(&mut self, frequency: u8) -> bool {
        if frequency < JITTER_FROM {
            return false;
        }
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        self.jitter % JITTER_ONE_IN == 0
    }

    /// Takes the main space's victim out of the queue: the first entry not hit since the hand
    /// last passed (hit entries go to the back, their hits folded into the sketch). Entries
    /// gone from the cache met on the way are pushed to `out`.
    fn victim(&mut self, out: &mut impl Removals<E>) -> Option<Node<E>> {
        let mut chances = MAX_SECOND_CHANCES.min(self.len());
        loop {
            let mut node = match self.probation.pop_front() {
                Some(node) => node,
                None => {
                    let node = self.main.pop_front()?;
                    self.protected_weight -= node.weight;
                    node
                }
            };
            self.main_weight -= node.weight;
            if !node.entry.is_live() {
                out.push((node.entry, Removal::Gone));
                continue;
            }
            let hits = node.entry.take_hits();
            self.sketch.add(node.entry.hash(), hits);
            node.credit = (u32::from(node.credit) + hits).min(MAX_CREDIT) as u8;
            if node.credit == 0 || chances == 0 {
                return Some(node);
            }
            node.credit -= 1;
            chances -= 1;
            self.main_weight += node.weight;
            self.protected_weight += node.weight;
            self.main.push_back(node);
            // The protected part keeps at most its share of the main space: demote its oldest.
            let protected_max =
                self.capacity.saturating_sub(self.window_max) * PROTECTED_PERCENT / 100;
            while self.protected_weight > protected_max && self.main.len() > 1 {
                let Some(demoted) = self.main.pop_front() else {
                    break;
                };
                self.protected_weight -= demoted.weight;
                self.probation.push_back(demoted);
            }
        }
    }

    /// Whether the caller should call [`observe`](Self::observe) now (cheaply: every few
    /// insertions, so that the caller sums its call counters rarely).
    pub(crate) fn wants_sample(&self) -> bool {
        self.inserts >= (self.len() as u64 / 16).max(16)
    }

    /// Feeds the cache's running totals of hits and misses. Halves the sketch once every
    /// [`Sketch::period`] calls. Once a sample of ten times the number of entries (at least
    /// [`SAMPLE_MIN`]) calls has passed, moves the window by hill climbing on the sample's hit
    /// ratio. For one of several shards, both counts of calls are multiplied by their number
    /// ([`one_of`](Self::one_of)).
    pub(crate) fn observe(&mut self, hits: u64, misses: u64) {
        self.inserts = 0;
        let calls = hits.saturating_add(misses);
        let aged_at = *self.aged_at.get_or_insert(calls);
        if calls.saturating_sub(aged_at) >= self.sketch.period().saturating_mul(self.shards) {
            self.sketch.halve();
            self.aged_at = Some(calls);
        }
        let Some((start_hits, start_misses)) = self.sample_start else {
            self.sample_start = Some((hits, misses));
            return;
        };
        let (h, m) = (
            hits.saturating_sub(start_hits),
            misses.saturating_sub(start_misses),
        );
        if h + m < (10 * self.len() as u64 * self.shards).max(SAMPLE_MIN) {
            return;
        }
        self.sample_start = Some((hits, misses));
        self.window_max = self
            .climber
            .adjust(self.window_max, h, h + m)
            .min(self.capacity);
    }

    /// Takes every entry out, to `out` (as [`Removal::Gone`]): after the cache is cleared.
    pub(crate) fn drain(&mut self, out: &mut impl Removals<E>) {
        let queues = self.window.drain(..).chain(self.main.drain(..));
        for node in queues.chain(self.probation.drain(..)) {
            out.push((node.entry, Removal::Gone));
        }
        self.window_weight = 0;
        self.main_weight = 0;
        self.protected_weight = 0;
    }
}

// Safe code only (no `unsafe` in `policy`): miri would add nothing but hours of
// interpretation of these long traces.
#[cfg(all(test, not(miri)))]
mod tests;
