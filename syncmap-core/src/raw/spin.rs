//! Waiting for a lock held briefly: a bounded spin before sleeping on it.
//!
//! The map's shard locks and a bounded cache's policy locks are held for a few hundred
//! nanoseconds (an insertion, a policy update). parking_lot spins about fifteen pauses before
//! it yields the CPU and sleeps, so at two threads a caller that met the other thread's short
//! critical section went to the kernel (a futex wait and the holder's wake-up, microseconds)
//! for a lock free again a moment later. Measured in `docs/performance-notes.md`.

use parking_lot::{Mutex, MutexGuard};

/// How many times a caller that found a lock held checks it again, a pause apart, before it
/// sleeps on it: about 1.7 µs on the machine of `BENCHMARKS.md` (12.5-14.3 ns per pause),
/// less than one trip through the kernel.
const SPINS_BEFORE_SLEEP: usize = 128;

/// Takes `lock`, which the caller just found held: checks it up to [`SPINS_BEFORE_SLEEP`]
/// times, a pause apart, then sleeps on it as [`Mutex::lock`] does. The lock's word is only
/// read while it looks held (written by a `try_lock` when it looks free), so the spin does
/// not take the holder's cache line from it.
pub(crate) fn lock_after_spinning<T: ?Sized>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    for _ in 0..SPINS_BEFORE_SLEEP {
        std::hint::spin_loop();
        if !lock.is_locked() {
            if let Some(guard) = lock.try_lock() {
                return guard;
            }
        }
    }
    lock.lock()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock freed while a caller spins on it goes to that caller; one held longer than the
    /// spin makes it sleep until it is freed; either way the caller gets it exclusively.
    #[test]
    fn a_spinning_caller_gets_the_lock_once_it_is_free() {
        let lock = Mutex::new(0u64);
        for hold in [
            std::time::Duration::ZERO,
            std::time::Duration::from_millis(20),
        ] {
            let held = lock.lock();
            std::thread::scope(|scope| {
                let waiter = scope.spawn(|| {
                    let mut guard = lock_after_spinning(&lock);
                    *guard += 1;
                });
                std::thread::sleep(hold);
                drop(held);
                waiter.join().expect("the waiter returns");
            });
        }
        assert_eq!(*lock.lock(), 2);
        assert!(!lock.is_locked());
    }
}
