//! A value's `Drop` may call back into the map that dropped it. Replaced values are dropped by
//! the map's collector during later writes, some of which hold the map's lock: those passes are
//! deferred until the lock is released, so this does not deadlock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::LazyLock;
use std::time::Duration;

use syncmap_core::SyncMap;

static MAP: LazyLock<SyncMap<u64, Noisy>> = LazyLock::new(SyncMap::new);
static REENTERED: AtomicUsize = AtomicUsize::new(0);

/// On drop, stores into (and reads) the same map, unless it is a plain value.
struct Noisy {
    reenter: bool,
}

impl Drop for Noisy {
    fn drop(&mut self) {
        if self.reenter {
            REENTERED.fetch_add(1, Ordering::Relaxed);
            MAP.store(1_000_000, Noisy { reenter: false });
            let _ = MAP.len();
        }
    }
}

#[test]
fn drop_of_a_replaced_value_may_reenter_the_map() {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let rounds = if cfg!(miri) { 600 } else { 20_000 };
        for i in 0..rounds {
            // New keys (taken under the lock) and replacements (retired values) interleave, so
            // reclamation passes start both inside and outside locked sections.
            MAP.store(i % 64, Noisy { reenter: true });
            MAP.store(10_000 + i, Noisy { reenter: false });
            MAP.delete(&(10_000 + i));
        }
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(Duration::from_secs(if cfg!(miri) { 600 } else { 60 }))
        .expect("a value's Drop calling back into the map deadlocked");
    assert!(
        REENTERED.load(Ordering::Relaxed) > 0,
        "no replaced value was dropped yet"
    );
}
