//! `#[memoize] async fn` on tokio: 1,000 concurrent requests over 10 URLs run the (simulated,
//! slow) fetch 10 times; then a timeout cancels the request that is computing while the
//! requests waiting for it still get their page.
//!
//! `cargo run --example async_fetch`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use syncmemo::memoize;

/// How many times the fetch really ran.
static FETCHES: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone)]
struct Page {
    url: String,
    bytes: usize,
}

/// A slow fetch: 50 ms of simulated network per call, cached for a minute.
#[memoize(ttl = "60s", capacity = 10_000)]
async fn fetch(url: &str) -> Result<Page, String> {
    FETCHES.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(Page {
        url: url.to_string(),
        bytes: 1000 + url.len(),
    })
}

#[tokio::main]
async fn main() {
    // 1. A thousand concurrent requests over ten URLs.
    let start = Instant::now();
    let requests: Vec<_> = (0..1000)
        .map(|i| {
            let url = format!("https://example.com/page/{}", i % 10);
            tokio::spawn(async move { fetch(&url).await })
        })
        .collect();
    let mut bytes = 0;
    for request in requests {
        bytes += request.await.expect("no panic").expect("no error").bytes;
    }
    let fetches = FETCHES.load(Ordering::SeqCst);
    println!(
        "1000 requests over 10 URLs in {:?}: the fetch ran {fetches} times ({bytes} bytes served)",
        start.elapsed()
    );
    assert_eq!(fetches, 10);
    let stats = fetch_cache().stats();
    println!(
        "cache: {} entries, {} misses (each computed or joined a computation), {} computations",
        stats.entries, stats.misses, stats.computations
    );

    // 2. The request computing a page gives up after 10 ms; five others wait for it.
    let url = "https://example.com/slow";
    let before = FETCHES.load(Ordering::SeqCst);
    let impatient = tokio::spawn(tokio::time::timeout(Duration::from_millis(10), fetch(url)));
    while FETCHES.load(Ordering::SeqCst) == before {
        tokio::time::sleep(Duration::from_millis(1)).await; // until it is computing
    }
    let patient: Vec<_> = (0..5).map(|_| tokio::spawn(fetch(url))).collect();
    match impatient.await.expect("no panic") {
        Err(_elapsed) => println!("the computing request timed out after 10 ms and was dropped"),
        Ok(_) => unreachable!("the fetch takes 50 ms"),
    }
    for request in patient {
        let page = request.await.expect("no panic").expect("no error");
        println!(
            "a waiting request still got {} ({} bytes)",
            page.url, page.bytes
        );
    }
    let fetches = FETCHES.load(Ordering::SeqCst) - before;
    println!(
        "the fetch of {url} started {fetches} times: the cancelled one, and one waiter that took over"
    );
    assert_eq!(fetches, 2);
    assert!(fetch_cache().get(url).is_some());
}
