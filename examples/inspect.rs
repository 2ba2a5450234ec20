//! `cargo run --example inspect`: a small debugging tool over `syncmemo::memo::registry()`: a
//! table of every cache, a dump of entries, and invalidation by predicate.

use syncmemo::memoize;

#[memoize]
fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

#[memoize(capacity = 64)]
fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Not `Debug`: the dump shows a placeholder for it.
#[derive(Clone)]
struct Opaque(#[allow(dead_code)] u8);

#[memoize]
fn opaque(x: u8) -> Opaque {
    Opaque(x)
}

fn table() {
    println!(
        "{:<40} {:>8} {:>8} {:>8} {:>10}",
        "cache", "entries", "hits", "misses", "hit ratio"
    );
    for cache in syncmemo::memo::registry() {
        let stats = cache.stats();
        println!(
            "{:<40} {:>8} {:>8} {:>8} {:>10}",
            cache.name(),
            stats.entries,
            stats.hits,
            stats.misses,
            stats
                .hit_ratio()
                .map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0)),
        );
    }
}

fn main() {
    fib(30);
    for text in ["a b c", "hello world", "a b c", "one"] {
        word_count(text);
    }
    opaque(1);
    opaque(1);

    table();

    println!("\nentries of every cache (Debug, or a placeholder):");
    for cache in syncmemo::memo::registry() {
        for (key, value) in cache.dump().into_iter().take(5) {
            println!("  {}({key}) = {value}", cache.name());
        }
    }

    let removed = fib_cache().invalidate_if(|n, _| n % 2 == 1);
    println!("\ninvalidated {removed} odd fib entries");
    table();
}
