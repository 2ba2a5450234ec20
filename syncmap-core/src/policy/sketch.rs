//! A count-min sketch of recent access frequencies (TinyLFU's): four rows of 4-bit saturating
//! counters indexed by independent mixes of the key's hash, halved ("aged") by the policy every
//! [`Sketch::period`] calls of the cache, so that old popularity fades.

/// Counters saturate here (4 bits, as in TinyLFU: more would only slow down aging).
const MAX: u8 = 15;

/// Frequencies of hashes, approximate from above (collisions only add).
pub(crate) struct Sketch {
    /// `4 * width` counters of 4 bits, sixteen per word, counter `i` at bits `4 * (i % 16)..`
    /// of word `i / 16` (`width` = 8 per entry of the capacity, rounded up to a power of two:
    /// fewer collisions than 4, measured in `docs/eviction-notes.md`; packed, they take the
    /// bytes that 4 unpacked counters took). In words rather than bytes, an increment is an
    /// add of `n << shift` (the counter cannot carry, it is checked below 15 first), and
    /// halving shifts eight bytes at once.
    table: Box<[u64]>,
    mask: usize,
    /// The number of calls of the cache (hits and misses) between two halvings.
    period: u64,
}

impl Sketch {
    /// A sketch sized for a cache of `capacity` entries.
    pub(crate) fn new(capacity: u64) -> Sketch {
        let width = 8 * (capacity.clamp(64, 1 << 24) as usize).next_power_of_two();
        Sketch {
            table: vec![0; 4 * width / 16].into_boxed_slice(),
            mask: width - 1,
            period: capacity.max(64).saturating_mul(10),
        }
    }

    /// The counter of `hash` in `row`.
    #[inline]
    fn index(&self, hash: u64, row: usize) -> usize {
        // A different odd multiplier per row, then the high bits: independent enough indexes.
        const SEEDS: [u64; 4] = [
            0x9E37_79B9_7F4A_7C15,
            0xC2B2_AE3D_27D4_EB4F,
            0x1656_67B1_9E37_79F9,
            0xD6E8_FEB8_6659_FD93,
        ];
        let h = (hash ^ (hash >> 29)).wrapping_mul(SEEDS[row]);
        row * (self.mask + 1) + ((h >> 32) as usize & self.mask)
    }

    /// Records `n` accesses of `hash`.
    pub(crate) fn add(&mut self, hash: u64, n: u32) {
        if n == 0 {
            return;
        }
        let n = u64::from(n.min(u32::from(MAX)));
        for row in 0..4 {
            let i = self.index(hash, row);
            let shift = (i % 16) * 4;
            let word = &mut self.table[i / 16];
            let counter = (*word >> shift) & 0xF;
            *word += (n.min(u64::from(MAX) - counter)) << shift;
        }
    }

    /// The estimated number of recent accesses of `hash` (0..=15).
    pub(crate) fn frequency(&self, hash: u64) -> u8 {
        // Written out: the iterator's `min` compiled to an out-of-line loop (about 130
        // instructions per call under callgrind, twice per miss of a full cache).
        let counter = |row| self.get(self.index(hash, row));
        counter(0).min(counter(1)).min(counter(2).min(counter(3)))
    }

    /// Counter `i` (its nibble of the table).
    #[inline]
    fn get(&self, i: usize) -> u8 {
        ((self.table[i / 16] >> ((i % 16) * 4)) & 0xF) as u8
    }

    /// The number of calls of the cache between two halvings: ten times the capacity (at least
    /// 64), as Caffeine's. Counted in calls, not in recorded accesses: hits reach the sketch
    /// only when the policy next looks at their entry, at most 15 at a time, so a count of
    /// additions did not follow the calls (a loop over 10x the capacity lost 1.5 points of hit
    /// ratio to it, replayed).
    pub(crate) fn period(&self) -> u64 {
        self.period
    }

    /// Ages every counter: halves it (the sixteen of each word at once).
    pub(crate) fn halve(&mut self) {
        for c in self.table.iter_mut() {
            *c = (*c >> 1) & 0x7777_7777_7777_7777;
        }
    }
}

// Safe code only (no `unsafe` in `policy`): miri would add nothing but hours of
// interpretation of these long traces.
#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    fn h(i: u64) -> u64 {
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x1234_5678
    }

    #[test]
    fn counts_and_saturates() {
        let mut s = Sketch::new(1000);
        assert_eq!(s.frequency(h(1)), 0);
        s.add(h(1), 1);
        s.add(h(1), 2);
        assert_eq!(s.frequency(h(1)), 3);
        s.add(h(1), 100);
        assert_eq!(s.frequency(h(1)), MAX);
        assert_eq!(s.frequency(h(2)), 0);
    }

    #[test]
    fn ages_by_halving() {
        let mut s = Sketch::new(64);
        assert_eq!(s.period(), 640);
        s.add(h(7), 8);
        s.add(h(8), 15);
        s.add(h(8), 15);
        assert_eq!(s.frequency(h(7)), 8);
        s.halve();
        assert_eq!(s.frequency(h(7)), 4);
        assert_eq!(s.frequency(h(8)), 7);
        s.halve();
        s.halve();
        s.halve();
        assert_eq!(s.frequency(h(7)), 0);
    }

    /// Two counters share each byte: neither may leak into the other, also when halving.
    #[test]
    fn packed_counters_stay_apart() {
        let mut s = Sketch::new(4096);
        let count = |k: u64| (k % 16) as u32;
        for k in 0..500 {
            s.add(h(k), count(k));
        }
        let exact = (0..500)
            .filter(|&k| u32::from(s.frequency(h(k))) == count(k))
            .count();
        assert!((0..500).all(|k| u32::from(s.frequency(h(k))) >= count(k)));
        assert!(exact >= 490, "{exact}");
        s.halve();
        let halved = (0..500)
            .filter(|&k| u32::from(s.frequency(h(k))) == count(k) / 2)
            .count();
        assert!(halved >= 490, "{halved}");
    }

    /// The packed counters behave as an array of one byte per counter (the model): additions
    /// of every size, saturation, halving, and neighbours of a saturated counter untouched.
    #[test]
    fn packed_counters_match_unpacked_ones() {
        let mut s = Sketch::new(64);
        let mut model = vec![0u8; 4 * (s.mask + 1)];
        let mut seed = 1u64;
        let mut next = || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            seed >> 33
        };
        for step in 0..200_000u64 {
            let hash = h(next() % 3000);
            if step % 20_000 == 19_999 {
                s.halve();
                model.iter_mut().for_each(|c| *c >>= 1);
            }
            let n = [0, 1, 1, 1, 2, 7, 15, 40][(next() % 8) as usize];
            s.add(hash, n);
            let mut expected = MAX;
            for row in 0..4 {
                let i = s.index(hash, row);
                let n = n.min(u32::from(MAX)) as u8;
                model[i] = model[i].saturating_add(n).min(MAX);
                expected = expected.min(model[i]);
            }
            assert_eq!(s.frequency(hash), expected, "step {step}");
        }
        assert!((0..model.len()).all(|i| s.get(i) == model[i]));
    }

    #[test]
    fn tells_hot_from_cold() {
        let mut s = Sketch::new(1000);
        for round in 0..5 {
            for i in 0..100 {
                s.add(h(i), 1);
            }
            let _ = round;
        }
        for i in 1000..1500 {
            s.add(h(i), 1);
        }
        let hot = (0..100).filter(|&i| s.frequency(h(i)) >= 4).count();
        let cold = (1000..1500).filter(|&i| s.frequency(h(i)) >= 4).count();
        assert!(hot >= 95, "{hot}");
        assert!(cold <= 10, "{cold}");
    }
}
