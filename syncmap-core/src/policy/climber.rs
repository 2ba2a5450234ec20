//! Hill climbing on the window's share of the cache (Caffeine's simple climber): after each
//! sample of calls, if the hit ratio got worse than in the previous sample, the window's
//! step changes direction; steps shrink geometrically and restart when the hit ratio jumps
//! (the workload changed). A bigger window favours recency (new keys stay longer before the
//! frequency filter judges them); a smaller one favours frequency.

/// First step: this fraction of the capacity.
const STEP: f64 = 0.0625;
/// Each sample multiplies the step by this.
const DECAY: f64 = 0.98;
/// A change of the hit ratio this large restarts the steps at full size.
const RESTART: f64 = 0.05;
/// The window stays within this fraction of the capacity.
const MAX_SHARE: f64 = 0.8;

/// The climber's state.
pub(crate) struct Climber {
    capacity: f64,
    /// Signed step, in weight units.
    step: f64,
    previous: Option<f64>,
}

impl Climber {
    pub(crate) fn new(capacity: u64) -> Climber {
        Climber {
            capacity: capacity as f64,
            step: capacity as f64 * STEP,
            previous: None,
        }
    }

    /// The window's new maximum after a sample with `hit_ratio`, from `window`.
    pub(crate) fn adjust(&mut self, window: u64, hit_ratio: f64) -> u64 {
        let Some(previous) = self.previous.replace(hit_ratio) else {
            return self.clamp(window as f64 + self.step);
        };
        let change = hit_ratio - previous;
        if change < 0.0 {
            self.step = -self.step;
        }
        if change.abs() >= RESTART {
            self.step = self.capacity * STEP * self.step.signum();
        } else {
            self.step *= DECAY;
        }
        self.clamp(window as f64 + self.step)
    }

    fn clamp(&self, window: f64) -> u64 {
        window
            .clamp(1.0, (self.capacity * MAX_SHARE).max(1.0))
            .round() as u64
    }
}

// Safe code only (no `unsafe` in `policy`): miri would add nothing but hours of
// interpretation of these long traces.
#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_direction_that_pays_and_reverses_one_that_does_not() {
        let mut c = Climber::new(1000);
        let w = c.adjust(10, 0.50);
        assert!(w > 10);
        let w2 = c.adjust(w, 0.52); // better: keep growing
        assert!(w2 > w);
        let w3 = c.adjust(w2, 0.51); // worse: shrink
        assert!(w3 < w2);
        let w4 = c.adjust(w3, 0.515); // better again: keep shrinking
        assert!(w4 < w3);
    }

    #[test]
    fn stays_in_bounds() {
        let mut c = Climber::new(100);
        let mut w = 1;
        for i in 0..1000 {
            w = c.adjust(w, (i % 7) as f64 / 7.0);
            assert!((1..=80).contains(&w), "{w}");
        }
    }
}
