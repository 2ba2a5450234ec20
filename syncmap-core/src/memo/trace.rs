//! One `tracing` span per computation (feature `tracing`): the function's name, how long the
//! body ran and how it ended. Hits create nothing.

use std::time::Instant;

/// The span of one running computation; records its outcome when finished, or `panicked` when
/// dropped during unwinding.
pub(crate) struct ComputeSpan {
    span: tracing::Span,
    start: Option<Instant>,
    finished: bool,
}

impl ComputeSpan {
    /// Opens the span (a `DEBUG`-level span named `memo.compute`; when no subscriber wants it,
    /// this is one relaxed load of the callsite's interest and no clock read).
    #[inline]
    pub(crate) fn start(function: &'static str) -> ComputeSpan {
        let span = tracing::debug_span!(
            "memo.compute",
            function,
            outcome = tracing::field::Empty,
            duration_us = tracing::field::Empty,
        );
        let start = (!span.is_disabled()).then(Instant::now);
        ComputeSpan {
            span,
            start,
            finished: false,
        }
    }

    /// Runs the body inside the span.
    #[inline]
    pub(crate) fn in_scope<T>(&self, body: impl FnOnce() -> T) -> T {
        self.span.in_scope(body)
    }

    /// Records the outcome: `cached`, or `not kept` (the value was not to be cached).
    pub(crate) fn finish(mut self, kept: bool) {
        self.record(if kept { "cached" } else { "not kept" });
        self.finished = true;
    }

    fn record(&self, outcome: &'static str) {
        if let Some(start) = self.start {
            self.span.record("outcome", outcome);
            self.span
                .record("duration_us", start.elapsed().as_micros() as u64);
        }
    }
}

impl Drop for ComputeSpan {
    fn drop(&mut self) {
        if !self.finished {
            self.record("panicked");
        }
    }
}
