//! `cargo bench --features redis --bench shared_tier [-- --quick]`: the shared Redis tier on its
//! own `redis-server` (started here on a free loopback port).
//!
//! - local hit, Redis hit (local miss), compute-and-publish: ns or µs per call, one thread,
//!   for a sync function and for an `async fn` (awaited with `futures::executor::block_on`:
//!   the async client's calls run on the tier's I/O thread);
//! - a fleet: N processes (this binary, re-run) call a memoized function over Zipf-distributed
//!   keys; prints the total number of computations with the tier and without it.

#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis_server::RedisServer;
use syncmemo::memoize;
use syncmemo::tier::redis::{install_with, Config};

#[memoize(shared)]
fn shared_fn(x: u64) -> u64 {
    std::hint::black_box(x.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

#[memoize(shared)]
async fn shared_async_fn(x: u64) -> u64 {
    std::hint::black_box(x.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

#[memoize]
fn local_fn(x: u64) -> u64 {
    std::hint::black_box(x.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// What a fleet process computes: counted by the body.
#[memoize(shared)]
fn fleet_shared(x: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(200));
    x * 2
}

#[memoize]
fn fleet_local(x: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(200));
    x * 2
}

/// A Zipf(s) sampler over 0..n by inverse CDF (deterministic xorshift).
struct Zipf {
    cdf: Vec<f64>,
    state: u64,
}

impl Zipf {
    fn new(n: usize, s: f64, seed: u64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for rank in 1..=n {
            sum += 1.0 / (rank as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf {
            cdf,
            state: seed | 1,
        }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let u = (self.state >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf.partition_point(|&c| c < u) as u64
    }
}

fn config(url: &str, namespace: &str) -> Config {
    Config::new(url).namespace(namespace)
}

fn child(role: &str) {
    let url = std::env::var("BENCH_URL").unwrap();
    let seed: u64 = std::env::var("BENCH_SEED").unwrap().parse().unwrap();
    let calls: usize = std::env::var("BENCH_CALLS").unwrap().parse().unwrap();
    let keys: usize = std::env::var("BENCH_KEYS").unwrap().parse().unwrap();
    install_with(config(&url, "fleet")).unwrap();
    let mut zipf = Zipf::new(keys, 0.9, seed * 7919 + 1);
    for _ in 0..calls {
        let key = zipf.next();
        match role {
            "shared" => assert_eq!(fleet_shared(key), key * 2),
            _ => assert_eq!(fleet_local(key), key * 2),
        }
    }
    let computations = match role {
        "shared" => fleet_shared_cache().stats().computations,
        _ => fleet_local_cache().stats().computations,
    };
    println!("COMPUTATIONS {computations}");
}

fn fleet(server: &RedisServer, role: &str, processes: usize, calls: usize, keys: usize) -> u64 {
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..processes)
        .map(|i| {
            Command::new(&exe)
                .env("BENCH_CHILD", role)
                .env("BENCH_URL", server.url())
                .env("BENCH_SEED", i.to_string())
                .env("BENCH_CALLS", calls.to_string())
                .env("BENCH_KEYS", keys.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success());
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("COMPUTATIONS "))
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

fn per_call(label: &str, calls: u64, f: impl FnMut(u64)) {
    let mut f = f;
    let start = Instant::now();
    for i in 0..calls {
        f(i);
    }
    let ns = start.elapsed().as_nanos() as f64 / calls as f64;
    if ns >= 10_000.0 {
        println!("{label:<42} {:>10.1} µs/call", ns / 1000.0);
    } else {
        println!("{label:<42} {ns:>10.1} ns/call");
    }
}

fn main() {
    if let Ok(role) = std::env::var("BENCH_CHILD") {
        return child(&role);
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let n: u64 = if quick { 2_000 } else { 20_000 };
    let server = RedisServer::start();
    install_with(config(&server.url(), "bench")).unwrap();
    println!("shared tier, redis-server on loopback, {n} calls per row, one thread");

    // Fill: each key computed and published once.
    per_call("compute-and-publish (shared, new keys)", n, |i| {
        shared_fn(i);
    });
    per_call("local miss, compute (not shared)", n, |i| {
        local_fn(i);
    });
    // Hits are timed after one untimed pass: the first hits of keys inserted since the map's
    // last promotion take its lock (the map's design); the rows show the steady state.
    for i in 0..n {
        shared_fn(i);
        local_fn(i);
    }
    per_call("local hit (shared)", n, |i| {
        shared_fn(i);
    });
    per_call("local hit (not shared)", n, |i| {
        local_fn(i);
    });
    shared_fn_cache().clear_local(); // local only: Redis keeps the values
    per_call("Redis hit, local miss (shared)", n, |i| {
        shared_fn(i);
    });
    let stats = shared_fn_cache().shared_stats().unwrap();
    assert_eq!(stats.hits, n, "{stats:?}");
    assert_eq!(shared_fn_cache().stats().computations, n);

    // The same for an `async fn` (the async client, on the tier's I/O thread).
    use futures::executor::block_on;
    per_call("compute-and-publish (shared async fn, new keys)", n, |i| {
        block_on(shared_async_fn(i));
    });
    for i in 0..n {
        block_on(shared_async_fn(i));
    }
    per_call("local hit (shared async fn)", n, |i| {
        block_on(shared_async_fn(i));
    });
    shared_async_fn_cache().clear_local();
    per_call("Redis hit, local miss (shared async fn)", n, |i| {
        block_on(shared_async_fn(i));
    });
    let stats = shared_async_fn_cache().shared_stats().unwrap();
    assert_eq!(stats.hits, n, "{stats:?}");
    assert_eq!(shared_async_fn_cache().stats().computations, n);

    // The peer: cached's RedisCache on the same server (no local tier, no single flight).
    {
        use cached::prelude::ConcurrentCached;
        let peer: cached::RedisCache<u64, u64> = cached::RedisCache::builder("bench")
            .connection_string(&server.url())
            .ttl(Duration::from_secs(3600))
            .build()
            .unwrap();
        let offset = 1 << 40;
        per_call("cached RedisCache: get (miss), compute, set", n, |i| {
            if peer.cache_get(&(i + offset)).unwrap().is_none() {
                let value = std::hint::black_box(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                peer.cache_set(i + offset, value).unwrap();
            }
        });
        per_call("cached RedisCache: get (hit)", n, |i| {
            assert!(peer.cache_get(&(i + offset)).unwrap().is_some());
        });
    }

    // A fleet over Zipf keys.
    let (calls, keys) = if quick {
        (2_000, 2_000)
    } else {
        (10_000, 10_000)
    };
    for processes in [2, 4] {
        let with = fleet(&server, "shared", processes, calls, keys);
        let without = fleet(&server, "local", processes, calls, keys);
        println!(
            "fleet: {processes} processes x {calls} calls, Zipf 0.9 over {keys} keys: \
             {with} computations with the tier, {without} without"
        );
        let mut con = server.connection();
        redis::cmd("FLUSHALL").query::<()>(&mut con).unwrap();
    }
}
