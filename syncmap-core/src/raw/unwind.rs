//! Dropping many user values when any of their destructors may panic.
//!
//! Like std's collections, the map and its collector drop every remaining value after one
//! destructor panicked, and then resume that panic; unlike a plain drop guard, a second
//! panicking destructor does not abort the process: its panic is discarded (the first one is
//! resumed). While the thread is already unwinding, every panic is discarded, since resuming
//! one would abort.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};

/// Collects the first panic of a series of calls that must all run.
#[derive(Default)]
#[must_use = "call `resume` once every call has run"]
pub(crate) struct Panics(Option<Box<dyn Any + Send>>);

impl Panics {
    /// Runs `f`, keeping its panic (the first one) for [`resume`](Self::resume).
    #[inline]
    pub(crate) fn run(&mut self, f: impl FnOnce()) {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(f)) {
            if self.0.is_none() {
                self.0 = Some(payload);
            }
        }
    }

    /// Resumes the first panic caught, if any, unless the thread is already unwinding (the
    /// payload is then dropped, and a panic of its own `Drop` discarded).
    pub(crate) fn resume(self) {
        if let Some(payload) = self.0 {
            if std::thread::panicking() {
                let _ = panic::catch_unwind(AssertUnwindSafe(|| drop(payload)));
            } else {
                panic::resume_unwind(payload);
            }
        }
    }
}

/// Calls `f` on every item, even after a call panicked; then resumes the first panic.
pub(crate) fn for_each<T>(items: impl IntoIterator<Item = T>, mut f: impl FnMut(T)) {
    let mut panics = Panics::default();
    for item in items {
        panics.run(|| f(item));
    }
    panics.resume();
}
