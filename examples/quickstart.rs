//! `cargo run --example quickstart`: memoize a visibly expensive function, time the first and
//! second call, and print the cache's contents and statistics.

use std::time::{Duration, Instant};

use syncmemo::memoize;

/// Edit distance between two words, made visibly expensive.
#[memoize]
fn edit_distance(a: &str, b: &str) -> usize {
    std::thread::sleep(Duration::from_millis(200)); // stands for real work
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

fn timed(a: &str, b: &str) {
    let start = Instant::now();
    let distance = edit_distance(a, b);
    println!(
        "edit_distance({a:?}, {b:?}) = {distance}  in {:?}",
        start.elapsed()
    );
}

fn main() {
    timed("kitten", "sitting"); // computes
    timed("kitten", "sitting"); // cache hit
    timed("flaw", "lawn");

    let cache = edit_distance_cache();
    println!("\ncache {} holds {} entries:", cache.name(), cache.len());
    cache.range(|(a, b), distance| {
        println!("  ({a:?}, {b:?}) -> {distance}");
        true
    });
    let stats = cache.stats();
    println!(
        "hits {}, misses {}, computations {}, hit ratio {:.2}",
        stats.hits,
        stats.misses,
        stats.computations,
        stats.hit_ratio().unwrap_or(0.0)
    );
}
