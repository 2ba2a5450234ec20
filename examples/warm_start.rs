//! `cargo run --example warm_start --features serde` (run it twice): a memoized function's cache
//! is saved at exit and reloaded at the next start, so the second run computes nothing.
//!
//! The file goes to the path given as the first argument, or `warm_start.cache` in the system's
//! temporary directory. A file from another function, or from an older signature, is refused
//! with a clear error and the program starts cold.

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use syncmemo::memoize;

/// Stands for an expensive, pure computation (a parse, a query plan, a layout).
#[memoize]
fn word_lengths(text: &str) -> Vec<usize> {
    std::thread::sleep(Duration::from_millis(20));
    text.split_whitespace().map(str::len).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("warm_start.cache"));

    // Start: load the previous run's cache, if any.
    match File::open(&path) {
        Ok(file) => match word_lengths_cache().import(file) {
            Ok(n) => println!("warm start: {n} entries from {}", path.display()),
            Err(e) => println!("cold start ({e})"),
        },
        Err(_) => println!("cold start: no {}", path.display()),
    }

    let start = Instant::now();
    for i in 0..50 {
        word_lengths(&format!("sentence number {i} of the warm start example"));
    }
    let stats = word_lengths_cache().stats();
    println!(
        "50 calls in {:?}: {} computed, {} from the cache",
        start.elapsed(),
        stats.computations,
        stats.hits
    );

    // Exit: save the cache for the next start (write to a temporary file, then rename, so an
    // interrupted save never leaves a truncated file behind).
    let partial = path.with_extension("partial");
    let saved = word_lengths_cache().export(File::create(&partial)?)?;
    std::fs::rename(&partial, &path)?;
    println!("saved {saved} entries to {}", path.display());
    Ok(())
}
