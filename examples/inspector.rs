//! `cargo run --example inspector --features inspector`: the cache inspector over a few busy
//! caches. Open the printed address in a browser; counts change on every reload.
//!
//! Options: `--port N` (default 9090; 0 picks a free port), `--seconds N` (stop after N
//! seconds; default: run until interrupted), `--read-only` (no invalidate/clear buttons).

use std::time::{Duration, Instant};

use syncmemo::inspector::Inspector;
use syncmemo::memoize;

#[memoize]
fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(n - 1).wrapping_add(fib(n - 2))
    }
}

#[memoize(capacity = 64)]
fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Keys are user input: the inspector shows them as text, never as markup.
#[memoize]
fn render(template: &str) -> String {
    format!("<p>{}</p>", template.len())
}

/// Sensitive values: the inspector lists the keys and hides the values.
#[memoize(ttl = "2s")]
fn session_token(user: &str) -> String {
    format!("secret-{user}-{:x}", user.len() * 7919)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> std::io::Result<()> {
    let port: u16 = arg("--port").map_or(9090, |p| p.parse().expect("--port N"));
    let seconds: Option<u64> = arg("--seconds").map(|s| s.parse().expect("--seconds N"));
    let read_only = std::env::args().any(|a| a == "--read-only");

    // Every cache exists (and is listed) from the first call on.
    render("<script>alert('hi')</script>");
    render("plain");
    // The word counter's page plots its miss-ratio curve (every key sampled: it has only 100).
    word_count_cache().enable_miss_ratio_curve(1.0);
    let server = Inspector::new()
        .write_actions(!read_only)
        .hide_values(session_token_cache().name())
        .page_size(25)
        .serve(("127.0.0.1", port))?;
    println!("inspector listening on http://{}/", server.local_addr());

    // Busy callers: a cheap deterministic pseudo-random stream per thread.
    let workers: Vec<_> = (0..2u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                loop {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    fib(x % 90);
                    word_count(&format!("the quick brown fox {}", x % 100));
                    session_token(["ada", "grace", "barbara", "edsger"][(x % 4) as usize]);
                    render(&format!("template {}", x % 20));
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();

    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if seconds.is_some_and(|s| start.elapsed() >= Duration::from_secs(s)) {
            break;
        }
    }
    server.stop();
    drop(workers); // detached: the process exits with main
    Ok(())
}
