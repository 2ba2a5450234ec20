//! Memory barriers: light on the reader side, heavy in reclamation passes.

use std::sync::atomic::{self, Ordering};

#[cfg(all(target_os = "linux", not(miri), not(syncmap_tsan)))]
mod imp {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Once;

    const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

    /// Whether `membarrier` private expedited is registered. Goes from false to true at
    /// most once, inside `detect`, which completes before the first `Collector` exists;
    /// every thread that pins or reclaims holds a collector obtained after that, so it
    /// reads the final value.
    static FAST: AtomicBool = AtomicBool::new(false);
    static DETECT: Once = Once::new();

    fn membarrier(cmd: libc::c_int) -> libc::c_long {
        // SAFETY: `membarrier(cmd, flags = 0, cpu_id = 0)` has no memory-safety
        // preconditions; it only returns an error code for unsupported commands.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_int,
                0 as libc::c_int,
            )
        }
    }

    pub(in super::super) fn detect() {
        DETECT.call_once(|| {
            let supported = membarrier(MEMBARRIER_CMD_QUERY);
            let wanted = (MEMBARRIER_CMD_PRIVATE_EXPEDITED
                | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED)
                as libc::c_long;
            if supported >= 0
                && supported & wanted == wanted
                && membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0
            {
                FAST.store(true, Ordering::Relaxed);
            }
        });
    }

    #[inline]
    pub(in super::super) fn fast() -> bool {
        FAST.load(Ordering::Relaxed)
    }

    pub(in super::super) fn membarrier_all() {
        if membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 {
            // Readers rely on it: continuing would be unsound.
            std::process::abort();
        }
    }
}

#[cfg(not(all(target_os = "linux", not(miri), not(syncmap_tsan))))]
mod imp {
    pub(in super::super) fn detect() {}
    #[inline]
    pub(in super::super) fn fast() -> bool {
        false
    }
    pub(in super::super) fn membarrier_all() {
        unreachable!("membarrier is never used on this target")
    }
}

pub(super) use imp::{detect, fast};

/// The reader-side barrier between publishing the record's epoch and loading pointers.
/// `fast` is [`fast()`] (read once, when the collector was created, after `detect`: it
/// never changes afterwards), which the caller keeps next to its epoch.
#[inline]
pub(super) fn light(fast: bool) {
    if fast {
        atomic::compiler_fence(Ordering::SeqCst);
    } else {
        atomic::fence(Ordering::SeqCst);
    }
}

/// The reclaimer-side barrier, paired with every thread's `light` (see the module docs).
pub(super) fn heavy() {
    atomic::fence(Ordering::SeqCst);
    if imp::fast() {
        imp::membarrier_all();
    }
}
