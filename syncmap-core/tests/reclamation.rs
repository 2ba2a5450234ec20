//! Reclamation that nothing outside a map's operations can hold back (issue 16, items 4-5).
//!
//! Kept in a binary of its own: the epoch is shared by the maps of a process, so threads of
//! other tests pinned at the same time would hold back the passes these tests measure.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::SeqCst};
use std::sync::{mpsc, Arc};

use syncmap_core::SyncMap;

/// Batches of retired values (the collector's `BATCH`, 8 under miri).
const BATCH: i64 = if cfg!(miri) { 8 } else { 1024 };

/// A value that counts its live instances.
struct Counted(Arc<AtomicI64>);
impl Counted {
    fn new(live: &Arc<AtomicI64>) -> Self {
        live.fetch_add(1, SeqCst);
        Counted(Arc::clone(live))
    }
}
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// Item 4: a thread blocked in `load_or_store_with`'s closure (documented as possibly slow) on
/// one map held back every reclamation pass in the process: while it waited, another thread's
/// 200,000 swaps on another map kept all their old values alive. The closure now runs with no
/// guard held, so the swapping thread's garbage stays within its bound.
#[test]
fn a_slow_load_or_store_with_closure_holds_back_no_reclamation() {
    let swaps: i64 = if cfg!(miri) { 200 } else { 200_000 };
    let keys = 64;
    let a: SyncMap<u64, u64> = SyncMap::new();
    let b: SyncMap<u64, Counted> = SyncMap::new();
    let live = Arc::new(AtomicI64::new(0));
    let (entered, wait_entered) = mpsc::channel();
    let done = AtomicBool::new(false);
    let peak = std::thread::scope(|s| {
        let slow = s.spawn(|| {
            a.load_or_store_with(1, || {
                entered.send(()).unwrap();
                while !done.load(SeqCst) {
                    std::thread::yield_now();
                }
                1
            })
        });
        wait_entered.recv().unwrap();
        let mut peak = 0;
        for i in 0..swaps {
            b.store(i as u64 % keys, Counted::new(&live));
            if i % 1000 == 0 || i == swaps - 1 {
                peak = peak.max(live.load(SeqCst));
            }
        }
        done.store(true, SeqCst);
        assert_eq!(slow.join().unwrap(), (1, false));
        peak
    });
    // One writer: its bag (under BATCH) plus the batch it sealed last (its own guard pins it
    // until its next pass), plus the 64 current values.
    let bound = 2 * BATCH + keys as i64;
    assert!(
        peak <= bound,
        "{peak} values alive at peak (bound {bound}): reclamation was held back"
    );
    drop(b);
    assert_eq!(live.load(SeqCst), 0);
}
