//! `cargo run --example metrics_prometheus --features metrics`: every memoized function's
//! statistics in Prometheus' text format, through the `metrics` facade.
//!
//! A service would serve `handle.render()` on its `/metrics` route (or use the exporter's own
//! HTTP listener) and call `syncmemo::metrics::report()` just before rendering, or keep a
//! `spawn_reporter` running.

use metrics_exporter_prometheus::PrometheusBuilder;
use syncmemo::memoize;

#[memoize(capacity = 100)]
fn collatz_steps(mut n: u64) -> u32 {
    let mut steps = 0;
    while n != 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

#[memoize]
fn greeting(name: &str) -> String {
    format!("hello, {name}")
}

fn main() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("no other recorder installed");
    syncmemo::metrics::describe();

    for i in 0..1_000u64 {
        collatz_steps(1 + i % 150);
        greeting(["ada", "grace", "barbara"][i as usize % 3]);
    }

    // The scrape hook: read the caches' statistics, then render.
    syncmemo::metrics::report();
    print!("{}", handle.render());
}
