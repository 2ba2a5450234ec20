//! Feature `metrics`: `syncmemo::metrics::report` exports every cache's counters through the
//! `metrics` facade, with a `cache` label, as absolute values.

use std::collections::HashMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use syncmemo::memoize;

#[memoize(capacity = 8)]
fn square(x: u64) -> u64 {
    x * x
}

#[memoize(ttl = "1ms")]
fn fleeting(x: u64) -> u64 {
    x + 1
}

/// `(kind, name, cache label) -> value` of everything recorded.
fn recorded(recorder: &DebuggingRecorder) -> HashMap<(MetricKind, String, String), f64> {
    let mut out = HashMap::new();
    for (key, _, _, value) in recorder.snapshotter().snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        let cache = key
            .labels()
            .find(|l| l.key() == "cache")
            .map(|l| l.value().to_string())
            .expect("every metric has a cache label");
        let value = match value {
            DebugValue::Counter(n) => n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(_) => panic!("no histogram expected"),
        };
        out.insert((kind, key.name().to_string(), cache), value);
    }
    out
}

#[test]
fn report_exports_every_counter_with_a_cache_label() {
    for round in 0..3 {
        for x in 0..20 {
            square(x % (10 + round));
        }
    }
    fleeting(1);
    std::thread::sleep(std::time::Duration::from_millis(5));
    fleeting(1); // expired: recomputed

    let recorder = DebuggingRecorder::new();
    metrics::with_local_recorder(&recorder, syncmemo::metrics::report);
    let got = recorded(&recorder);

    let square_name = square_cache().name().to_string();
    let stats = square_cache().stats();
    let counter =
        |name: &str, cache: &str| got[&(MetricKind::Counter, name.to_string(), cache.to_string())];
    let gauge =
        |name: &str, cache: &str| got[&(MetricKind::Gauge, name.to_string(), cache.to_string())];
    assert_eq!(
        counter("syncmemo_hits_total", &square_name),
        stats.hits as f64
    );
    assert_eq!(
        counter("syncmemo_misses_total", &square_name),
        stats.misses as f64
    );
    assert_eq!(
        counter("syncmemo_computations_total", &square_name),
        stats.computations as f64
    );
    assert_eq!(
        counter("syncmemo_evictions_total", &square_name),
        stats.evictions as f64
    );
    assert_eq!(
        counter("syncmemo_rejections_total", &square_name),
        stats.rejections as f64
    );
    assert_eq!(
        counter("syncmemo_waits_total", &square_name),
        stats.waits as f64
    );
    assert!(
        stats.evictions + stats.rejections > 0,
        "capacity 8 with 12 keys evicts or rejects"
    );
    assert_eq!(
        gauge("syncmemo_entries", &square_name),
        stats.entries as f64
    );
    assert_eq!(gauge("syncmemo_waiting", &square_name), 0.0);
    assert_eq!(
        gauge("syncmemo_hit_ratio", &square_name),
        stats.hit_ratio().unwrap()
    );

    let fleeting_name = fleeting_cache().name().to_string();
    assert_eq!(counter("syncmemo_expirations_total", &fleeting_name), 1.0);
    assert_eq!(counter("syncmemo_computations_total", &fleeting_name), 2.0);

    // Absolute values: reporting again after more calls sets, never adds twice.
    square(0);
    metrics::with_local_recorder(&recorder, syncmemo::metrics::report);
    let again = recorded(&recorder);
    assert_eq!(
        again[&(
            MetricKind::Counter,
            "syncmemo_hits_total".to_string(),
            square_name.clone()
        )],
        square_cache().stats().hits as f64
    );
}

#[test]
fn reporter_thread_reports_and_stops() {
    square(1);
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The reporter thread reports to the global recorder; this test binary installs it once.
    recorder
        .install()
        .expect("no other global recorder in this test binary");
    let reporter = syncmemo::metrics::spawn_reporter(std::time::Duration::from_millis(10));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let seen = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .any(|(key, ..)| {
                key.key().name() == "syncmemo_entries"
                    && key
                        .key()
                        .labels()
                        .any(|l| l.value() == square_cache().name())
            });
        if seen {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reporter never reported"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    reporter.stop(); // joins the thread: returns only once it has ended
}
