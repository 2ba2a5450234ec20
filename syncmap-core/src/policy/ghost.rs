//! A history of recently rejected keys (S3-FIFO's ghost queue, as a table of hashes): a key
//! that the admission duel turned away and that comes back while the table still remembers it
//! is admitted to the main space without a duel. It lets a popular set that moved in sooner
//! than the sketch's aging alone would (the keys popular before keep their counts until the
//! sketch halves them).

/// The table holds this many hashes per entry of the cache, as a fraction: half. Measured on
/// the hit-ratio bench's traces (replayed, six hash seeds): a quarter to three quarters of the
/// capacity all lift the shifting trace at 10% by 1 to 1.3 points; the capacity itself or
/// more cost the loop over ten times the capacity 2 to 4 points (keys of the loop come back
/// while they are remembered and displace entries that would have hit).
const PER_ENTRY: (u64, u64) = (1, 2);

/// Hashes of rejected keys, one slot per hash (a newer hash overwrites an older one in its
/// slot): a fixed-size, lossy history; O(1) to record and to look up.
pub(crate) struct Ghost {
    /// `hash | 1` of a remembered key, 0 for an empty slot.
    slots: Box<[u64]>,
}

impl Ghost {
    /// A history for a cache of `entries` entries.
    pub(crate) fn new(entries: u64) -> Ghost {
        let len = (entries.clamp(1, 1 << 24) * PER_ENTRY.0 / PER_ENTRY.1).max(1);
        Ghost {
            slots: vec![0; len as usize].into_boxed_slice(),
        }
    }

    /// The slot of `hash` (multiply-shift over the table's length, on bits the sketch and the
    /// map use least).
    #[inline]
    fn slot(&self, hash: u64) -> usize {
        ((u128::from(hash.rotate_left(17)) * self.slots.len() as u128) >> 64) as usize
    }

    /// Remembers `hash` (a key just rejected).
    pub(crate) fn insert(&mut self, hash: u64) {
        let i = self.slot(hash);
        self.slots[i] = hash | 1;
    }

    /// Whether `hash` is remembered; forgets it.
    pub(crate) fn take(&mut self, hash: u64) -> bool {
        let i = self.slot(hash);
        let found = self.slots[i] == hash | 1;
        if found {
            self.slots[i] = 0;
        }
        found
    }
}

// Safe code only (no `unsafe` in `policy`).
#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    fn h(i: u64) -> u64 {
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x0BAD_F00D
    }

    #[test]
    fn remembers_recent_keys_once() {
        let mut g = Ghost::new(1000);
        assert!(!g.take(h(1)));
        g.insert(h(1));
        assert!(g.take(h(1)));
        assert!(!g.take(h(1)), "a key is forgotten once it came back");
    }

    #[test]
    fn forgets_old_keys_as_new_ones_come() {
        let mut g = Ghost::new(1000);
        for i in 0..500 {
            g.insert(h(i));
        }
        // 500 keys in 500 slots: those that did not share a slot with a later one (about
        // 1 - 1/e of them with random hashes) are remembered.
        let recent = (0..500).filter(|&i| g.take(h(i))).count();
        assert!(recent >= 200, "{recent}");
        for i in 0..500 {
            g.insert(h(i));
        }
        for i in 10_000..20_000 {
            g.insert(h(i));
        }
        // Twenty times the table's size later, the first keys are (nearly) all forgotten.
        let old = (0..500).filter(|&i| g.take(h(i))).count();
        assert!(old <= 5, "{old}");
    }

    #[test]
    fn tiny_caches_have_a_slot() {
        let mut g = Ghost::new(1);
        g.insert(h(3));
        assert!(g.take(h(3)));
    }
}
