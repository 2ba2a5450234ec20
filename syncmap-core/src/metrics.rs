//! Export of every cache's statistics through the [`metrics`](https://docs.rs/metrics) facade
//! (feature `metrics`), to Prometheus, StatsD or any other recorder the application installs.
//!
//! Nothing is added to the hit path: the caches keep counting on their per-thread stripes as
//! always, and [`report`] reads [`Memo::stats`](crate::Memo::stats) of every cache of the
//! [registry](fn@crate::memo::registry) into absolute counters and gauges. Call it from the
//! exporter's scrape hook, or let [`spawn_reporter`] call it on a background thread.
//!
//! | metric | kind | meaning |
//! |---|---|---|
//! | `syncmemo_hits_total` | counter | calls answered from the cache |
//! | `syncmemo_misses_total` | counter | calls that found no value and ran the body |
//! | `syncmemo_waits_total` | counter | calls that waited for another caller's computation |
//! | `syncmemo_computations_total` | counter | times the body ran |
//! | `syncmemo_evictions_total` | counter | entries removed to respect the capacity |
//! | `syncmemo_rejections_total` | counter | new entries the eviction policy declined to keep |
//! | `syncmemo_expirations_total` | counter | entries found past their TTL |
//! | `syncmemo_entries` | gauge | entries in the cache now |
//! | `syncmemo_waiting` | gauge | callers waiting now for another caller's computation |
//! | `syncmemo_hit_ratio` | gauge | `(hits + waits) / (hits + waits + misses)`, absent before the first call |
//!
//! Each carries a `cache` label: the memoized function's path (`my_crate::parse`).
//!
//! ```
//! // Once per scrape (or on a timer):
//! syncmap_core::metrics::report();
//! ```

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use ::metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

use crate::memo::{registry, MemoHandle};

/// Describes the metrics to the installed recorder (help texts and units). Optional; call it
/// once after installing the recorder.
///
/// ```
/// syncmap_core::metrics::describe();
/// ```
pub fn describe() {
    describe_counter!(
        "syncmemo_hits_total",
        Unit::Count,
        "Calls answered from the cache"
    );
    describe_counter!(
        "syncmemo_misses_total",
        Unit::Count,
        "Calls that found no cached value"
    );
    describe_counter!(
        "syncmemo_waits_total",
        Unit::Count,
        "Calls that waited for another caller's computation of the same key"
    );
    describe_counter!(
        "syncmemo_computations_total",
        Unit::Count,
        "Times the memoized function's body ran"
    );
    describe_counter!(
        "syncmemo_evictions_total",
        Unit::Count,
        "Entries removed to respect the capacity"
    );
    describe_counter!(
        "syncmemo_rejections_total",
        Unit::Count,
        "New entries the eviction policy declined to keep"
    );
    describe_counter!(
        "syncmemo_expirations_total",
        Unit::Count,
        "Entries found past their TTL"
    );
    describe_gauge!("syncmemo_entries", Unit::Count, "Entries in the cache");
    describe_gauge!(
        "syncmemo_waiting",
        Unit::Count,
        "Callers waiting for another caller's computation of their key"
    );
    describe_gauge!(
        "syncmemo_hit_ratio",
        "(hits + waits) / (hits + waits + misses) since the process started"
    );
}

/// Reports every cache of the registry to the installed recorder (a no-op without one).
///
/// Counters are set to their absolute values (`Counter::absolute`), so calling it more or less
/// often changes nothing but freshness. Takes time linear in the total number of entries
/// (counting a cache's entries visits them) and runs no user code. The only lock it takes is
/// the registry's, while copying its list (a function's very first call, which registers its
/// cache, may wait that long); hits and misses never wait on it.
///
/// ```
/// // After `#[memoize] fn square(x: u64) -> u64` was called once:
/// // syncmemo_misses_total{cache="my_crate::square"} 1, syncmemo_entries{…} 1, …
/// syncmap_core::metrics::report();
/// ```
pub fn report() {
    for cache in registry() {
        report_cache(&cache);
    }
}

/// Reports one cache (see [`report`]).
///
/// ```
/// for cache in syncmap_core::memo::registry() {
///     if cache.name().starts_with("my_crate::") {
///         syncmap_core::metrics::report_cache(&cache);
///     }
/// }
/// ```
pub fn report_cache(cache: &MemoHandle) {
    let stats = cache.stats();
    let name = cache.name();
    counter!("syncmemo_hits_total", "cache" => name).absolute(stats.hits);
    counter!("syncmemo_misses_total", "cache" => name).absolute(stats.misses);
    counter!("syncmemo_waits_total", "cache" => name).absolute(stats.waits);
    counter!("syncmemo_computations_total", "cache" => name).absolute(stats.computations);
    counter!("syncmemo_evictions_total", "cache" => name).absolute(stats.evictions);
    counter!("syncmemo_rejections_total", "cache" => name).absolute(stats.rejections);
    counter!("syncmemo_expirations_total", "cache" => name).absolute(stats.expirations);
    gauge!("syncmemo_entries", "cache" => name).set(stats.entries as f64);
    gauge!("syncmemo_waiting", "cache" => name).set(stats.waiting as f64);
    if let Some(ratio) = stats.hit_ratio() {
        gauge!("syncmemo_hit_ratio", "cache" => name).set(ratio);
    }
}

/// A background thread calling [`report`] periodically; dropping it (or [`stop`](Self::stop))
/// stops the thread.
#[derive(Debug)]
pub struct Reporter {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Reporter {
    /// Stops the thread and waits for it (at most one `report` in progress).
    ///
    /// ```
    /// let reporter = syncmap_core::metrics::spawn_reporter(std::time::Duration::from_secs(10));
    /// reporter.stop();
    /// ```
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts a thread (`syncmemo-metrics`) that calls [`report`] now and then every `every`, until
/// the returned [`Reporter`] is dropped. Caches created later are reported from their first use
/// on.
///
/// # Panics
///
/// If the thread cannot be spawned.
///
/// ```
/// use std::time::Duration;
///
/// // Keep it alive as long as the exporter runs.
/// let _reporter = syncmap_core::metrics::spawn_reporter(Duration::from_secs(15));
/// ```
pub fn spawn_reporter(every: Duration) -> Reporter {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = thread::Builder::new()
        .name("syncmemo-metrics".to_string())
        .spawn(move || loop {
            report();
            match stopped.recv_timeout(every) {
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                _ => break,
            }
        })
        .expect("failed to spawn the syncmemo-metrics thread");
    Reporter {
        stop: Some(stop),
        thread: Some(thread),
    }
}
