//! `#[memoize(shared)]` against real `redis-server`s that the tests start (and stop) on free
//! loopback ports. Run with `cargo test --features redis --test shared_tier`.
//!
//! The tier is installed process-wide, so the tests take turns (`serial()`), each in its own
//! namespace. Multi-process tests re-run this binary: the children run the ignored
//! `child_process` test with `SYNCMEMO_TEST_CHILD` saying what to do.

#[path = "support/redis_server.rs"]
mod redis_server;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use redis_server::RedisServer;
use syncmemo::memo::KeyRef;
use syncmemo::memoize;
use syncmemo::tier::redis::{install_with, uninstall, Config};
use syncmemo::tier::{TierError, TierErrorKind};

/// One test at a time: the tier is global to the process.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The server shared by the tests that do not hurt it.
fn shared_server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

fn install(url: &str, namespace: &str) {
    install_with(
        Config::new(url)
            .namespace(namespace)
            .connect_timeout(Duration::from_millis(200))
            .command_timeout(Duration::from_millis(200))
            .poll_interval(Duration::from_millis(20)),
    )
    .unwrap();
}

/// Every key of the server.
fn all_keys(con: &mut redis::Connection) -> Vec<String> {
    redis::cmd("KEYS").arg("*").query(con).unwrap()
}

/// The Redis key of a `String` key, built from the documented format: postcard (a varint length,
/// then the bytes) in base64url without padding, after `{namespace}:{path}:{fingerprint}:`.
fn encoded_string_key(key: &str) -> String {
    let mut bytes = Vec::new();
    let mut len = key.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.extend_from_slice(key.as_bytes());
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The prefix `{namespace}:{path}:{fingerprint}:` of the value keys in `keys`.
fn prefix_of(keys: &[String]) -> String {
    let key = keys
        .iter()
        .find(|k| !k.ends_with(":lock"))
        .expect("a value key");
    let cut = key.rfind(':').unwrap();
    key[..=cut].to_string()
}

fn counter(con: &mut redis::Connection, key: &str) -> u64 {
    redis::cmd("GET")
        .arg(key)
        .query::<Option<u64>>(con)
        .unwrap()
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Two tiers in one process.

#[memoize(shared)]
fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn a_redis_hit_fills_the_local_cache_without_computing() {
    let _serial = serial();
    let server = shared_server();
    install(&server.url(), "hits");
    assert_eq!(square(12), 144); // computes, writes
    let stats = square_cache().shared_stats().unwrap();
    assert_eq!((stats.misses, stats.writes), (1, 1));
    square_cache().invalidate_local(&12); // local only: Redis still has it
    assert_eq!(square(12), 144);
    let stats = square_cache().shared_stats().unwrap();
    assert_eq!(stats.hits, 1, "{stats:?}");
    assert_eq!(square_cache().stats().computations, 1);
    assert_eq!(square(12), 144); // a local hit: no Redis traffic
    assert_eq!(square_cache().shared_stats().unwrap().hits, 1);
    assert_eq!(square_cache().stats().hits, 1);
    uninstall();
}

// ---------------------------------------------------------------------------------------------
// Several OS processes: this binary, re-run.

#[memoize(shared)]
fn fleet_value(key: u64) -> String {
    count_computation();
    std::thread::sleep(Duration::from_millis(1));
    format!("value-{}", key * 3 + 1)
}

#[memoize(shared)]
async fn fleet_value_async(key: u64) -> String {
    count_computation();
    tokio::time::sleep(Duration::from_millis(1)).await;
    format!("value-{}", key * 3 + 1)
}

/// Counts a computation in the test's Redis (`test:{namespace}:computations`).
fn count_computation() {
    let url = std::env::var("SYNCMEMO_TEST_URL").unwrap();
    let namespace = std::env::var("SYNCMEMO_TEST_NS").unwrap();
    thread_local! {
        static CON: std::cell::RefCell<Option<redis::Connection>> = const { std::cell::RefCell::new(None) };
    }
    CON.with(|con| {
        let mut con = con.borrow_mut();
        let con =
            con.get_or_insert_with(|| redis::Client::open(url).unwrap().get_connection().unwrap());
        redis::cmd("INCR")
            .arg(format!("test:{namespace}:computations"))
            .query::<u64>(con)
            .unwrap();
    });
}

#[memoize(shared)]
fn listened(key: String) -> usize {
    key.len()
}

/// What a child process does, by `SYNCMEMO_TEST_CHILD`.
#[test]
#[ignore = "run by the multi-process tests in a child process"]
fn child_process() {
    let role = std::env::var("SYNCMEMO_TEST_CHILD").expect("SYNCMEMO_TEST_CHILD");
    let url = std::env::var("SYNCMEMO_TEST_URL").unwrap();
    let namespace = std::env::var("SYNCMEMO_TEST_NS").unwrap();
    install(&url, &namespace);
    let mut con = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let ready = format!("test:{namespace}:ready");
    let go = format!("test:{namespace}:go");
    redis::cmd("INCR")
        .arg(&ready)
        .query::<u64>(&mut con)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !redis::cmd("EXISTS")
        .arg(&go)
        .query::<bool>(&mut con)
        .unwrap()
    {
        assert!(Instant::now() < deadline, "never told to go");
        std::thread::sleep(Duration::from_millis(1));
    }
    match role.as_str() {
        "fleet" => {
            let keys: u64 = std::env::var("SYNCMEMO_TEST_KEYS")
                .unwrap()
                .parse()
                .unwrap();
            let seed: u64 = std::env::var("SYNCMEMO_TEST_SEED")
                .unwrap()
                .parse()
                .unwrap();
            std::thread::scope(|scope| {
                for thread in 0..2u64 {
                    scope.spawn(move || {
                        // Each thread walks the keys from its own offset and stride.
                        let stride =
                            [1, 7, 11, 13, 17, 19, 23, 29][((seed * 2 + thread) % 8) as usize];
                        let start = seed * 251 + thread * 97;
                        for i in 0..keys {
                            let key = (start + i * stride) % keys;
                            assert_eq!(fleet_value(key), format!("value-{}", key * 3 + 1));
                        }
                    });
                }
            });
            let local = fleet_value_cache().stats();
            let tier = fleet_value_cache().shared_stats().unwrap();
            println!(
                "CHILD computations={} redis_hits={} waits={} wait_timeouts={} faults={}",
                local.computations,
                tier.hits,
                tier.waits,
                tier.wait_timeouts,
                tier.faults()
            );
        }
        "fleet_async" => {
            let keys: u64 = std::env::var("SYNCMEMO_TEST_KEYS")
                .unwrap()
                .parse()
                .unwrap();
            let seed: u64 = std::env::var("SYNCMEMO_TEST_SEED")
                .unwrap()
                .parse()
                .unwrap();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                // Four tasks per process, each walking the keys from its own offset and stride.
                let tasks: Vec<_> = (0..4u64)
                    .map(|task| {
                        tokio::spawn(async move {
                            let stride =
                                [1, 7, 11, 13, 17, 19, 23, 29][((seed * 4 + task) % 8) as usize];
                            let start = seed * 251 + task * 97;
                            for i in 0..keys {
                                let key = (start + i * stride) % keys;
                                assert_eq!(
                                    fleet_value_async(key).await,
                                    format!("value-{}", key * 3 + 1)
                                );
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            });
            let local = fleet_value_async_cache().stats();
            let tier = fleet_value_async_cache().shared_stats().unwrap();
            println!(
                "CHILD computations={} redis_hits={} waits={} wait_timeouts={} faults={}",
                local.computations,
                tier.hits,
                tier.waits,
                tier.wait_timeouts,
                tier.faults()
            );
        }
        "listener" => {
            // Cache two keys, say so, then wait until another process's invalidation and clear
            // remove them from this process's local cache.
            assert_eq!(listened("a:b".to_string()), 3);
            assert_eq!(listened("c".to_string()), 1);
            redis::cmd("SET")
                .arg(format!("test:{namespace}:cached"))
                .arg(1)
                .query::<()>(&mut con)
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while listened_cache().get("a:b").is_some() {
                assert!(Instant::now() < deadline, "the invalidation never arrived");
                std::thread::sleep(Duration::from_millis(2));
            }
            assert!(
                listened_cache().get("c").is_some(),
                "only `a:b` was invalidated"
            );
            println!("CHILD invalidated");
            while listened_cache().get("c").is_some() {
                assert!(Instant::now() < deadline, "the clear never arrived");
                std::thread::sleep(Duration::from_millis(2));
            }
            println!("CHILD cleared");
            assert!(
                listened_cache()
                    .shared_stats()
                    .unwrap()
                    .remote_invalidations
                    >= 2
            );
        }
        other => panic!("unknown child role {other}"),
    }
}

/// Starts `n` children with `role`, lets them go at once, returns their outputs.
fn run_children(
    server: &RedisServer,
    namespace: &str,
    role: &str,
    n: usize,
    extra: &[(&str, String)],
    mut while_running: impl FnMut(&mut redis::Connection),
) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..n)
        .map(|i| {
            let mut command = Command::new(&exe);
            command
                .args([
                    "--exact",
                    "child_process",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("SYNCMEMO_TEST_CHILD", role)
                .env("SYNCMEMO_TEST_URL", server.url())
                .env("SYNCMEMO_TEST_NS", namespace)
                .env("SYNCMEMO_TEST_SEED", i.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            for (name, value) in extra {
                command.env(name, value);
            }
            command.spawn().expect("re-run the test binary")
        })
        .collect();
    let mut con = server.connection();
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter(&mut con, &format!("test:{namespace}:ready")) < n as u64 {
        assert!(Instant::now() < deadline, "children did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    redis::cmd("SET")
        .arg(format!("test:{namespace}:go"))
        .arg(1)
        .query::<()>(&mut con)
        .unwrap();
    while_running(&mut con);
    children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(output.status.success(), "a child failed:\n{stdout}");
            stdout
        })
        .collect()
}

fn fleet(processes: usize, keys: u64) {
    fleet_of("fleet", processes, keys);
}

fn fleet_of(role: &str, processes: usize, keys: u64) {
    let _serial = serial();
    let server = shared_server();
    let namespace = format!("{role}{processes}");
    let outputs = run_children(
        server,
        &namespace,
        role,
        processes,
        &[("SYNCMEMO_TEST_KEYS", keys.to_string())],
        |_| {},
    );
    let mut con = server.connection();
    let total = counter(&mut con, &format!("test:{namespace}:computations"));
    let mut reported = 0;
    let mut waits = 0;
    for output in &outputs {
        let line = output
            .lines()
            .find_map(|l| l.find("CHILD computations=").map(|at| &l[at..]))
            .unwrap_or_else(|| panic!("no report in:\n{output}"));
        println!("{line}");
        let field = |name: &str| -> u64 {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name))
                .unwrap()
                .parse()
                .unwrap()
        };
        reported += field("computations=");
        waits += field("waits=");
        assert_eq!(field("faults="), 0, "{line}");
        assert_eq!(field("wait_timeouts="), 0, "{line}");
    }
    assert_eq!(total, keys, "the body ran {total} times for {keys} keys");
    assert_eq!(reported, keys);
    println!("{processes} processes, {keys} keys: {total} computations, {waits} waits");
}

#[test]
fn two_processes_compute_each_key_once() {
    fleet(2, 1000);
}

#[test]
fn four_processes_compute_each_key_once() {
    fleet(4, 1000);
}

#[test]
fn two_processes_of_async_tasks_compute_each_key_once() {
    fleet_of("fleet_async", 2, 1000);
}

#[test]
fn four_processes_of_async_tasks_compute_each_key_once() {
    fleet_of("fleet_async", 4, 1000);
}

#[test]
fn invalidate_and_clear_reach_the_other_process() {
    let _serial = serial();
    let server = shared_server();
    let namespace = "listen";
    install(&server.url(), namespace);
    let outputs = run_children(server, namespace, "listener", 1, &[], |con| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while counter(con, &format!("test:{namespace}:cached")) == 0 {
            assert!(Instant::now() < deadline, "the child never cached its keys");
            std::thread::sleep(Duration::from_millis(2));
        }
        // Both processes listen on the namespace's channel before the messages go out.
        while redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(format!("{namespace}:__syncmemo"))
            .query::<(String, u64)>(con)
            .unwrap()
            .1
            < 2
        {
            assert!(Instant::now() < deadline, "the child never subscribed");
            std::thread::sleep(Duration::from_millis(2));
        }
        // This process never called `listened`: the plain `invalidate`, with a borrowed key,
        // deletes in Redis and tells the other process.
        assert!(listened_cache().invalidate("a:b"));
        let keys = all_keys(con);
        assert_eq!(
            keys.iter().filter(|k| k.starts_with("listen:")).count(),
            1,
            "{keys:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(listened_cache().clear(), 1);
        assert!(!all_keys(con).iter().any(|k| k.starts_with("listen:")));
    });
    assert!(outputs[0].contains("CHILD invalidated") && outputs[0].contains("CHILD cleared"));
    uninstall();
}

// ---------------------------------------------------------------------------------------------
// The plain `invalidate` and `clear` act on both tiers; the `_local` ones on this process.

#[memoize(shared)]
fn pair(name: &str, n: u32) -> String {
    format!("{name}{n}")
}

/// A view of a `String` key that is `Equivalent` to it but serializes as something else.
struct Mislabeled<'a>(&'a str);

impl std::hash::Hash for Mislabeled<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl syncmemo::Equivalent<String> for Mislabeled<'_> {
    fn equivalent(&self, key: &String) -> bool {
        self.0 == key
    }
}

impl serde::Serialize for Mislabeled<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0.len() as u64)
    }
}

#[test]
fn plain_invalidate_and_clear_reach_redis_local_ones_do_not() {
    let _serial = serial();
    let server = shared_server();
    install(&server.url(), "plain");
    let mut con = server.connection();
    let ours = |con: &mut redis::Connection| -> Vec<String> {
        let mut keys: Vec<String> = all_keys(con)
            .into_iter()
            .filter(|k| k.starts_with("plain:"))
            .collect();
        keys.sort();
        keys
    };
    for (name, n) in [("x", 1), ("y", 2), ("z", 3)] {
        assert_eq!(pair(name, n), format!("{name}{n}"));
    }
    assert_eq!(ours(&mut con).len(), 3);
    // A borrowed tuple key: deleted here and in Redis.
    assert!(pair_cache().invalidate(&KeyRef(("x", &1u32))));
    assert_eq!(pair_cache().get(&KeyRef(("x", &1u32))), None);
    assert_eq!(ours(&mut con).len(), 2);
    // Known to Redis only: still deleted there (`true`: Redis held it).
    pair_cache().invalidate_local(&KeyRef(("y", &2u32)));
    assert!(pair_cache().invalidate(&("y".to_string(), 2u32)));
    assert_eq!(ours(&mut con).len(), 1);
    assert!(
        !pair_cache().invalidate(&KeyRef(("y", &2u32))),
        "nothing left"
    );
    // `_local`: Redis keeps the value, and the next call is a Redis hit.
    assert!(pair_cache().invalidate_local(&KeyRef(("z", &3u32))));
    assert_eq!(ours(&mut con).len(), 1);
    let computations = pair_cache().stats().computations;
    assert_eq!(pair("z", 3), "z3");
    assert_eq!(pair_cache().stats().computations, computations);
    // `Memo::invalidate` through a `&Memo`: this process only (documented).
    assert!(pair_cache().memo().invalidate(&KeyRef(("z", &3u32))));
    assert_eq!(ours(&mut con).len(), 1);
    // `clear_local` leaves Redis; `clear` (on the handle or on the `&Memo`) empties it.
    assert_eq!(pair("w", 4), "w4");
    pair_cache().clear_local();
    assert!(pair_cache().is_empty());
    assert_eq!(ours(&mut con).len(), 2);
    assert_eq!(pair("w", 4), "w4"); // a Redis hit
    pair_cache().memo().clear();
    assert!(pair_cache().is_empty());
    assert!(ours(&mut con).is_empty());
    assert_eq!(pair_cache().shared_stats().unwrap().faults(), 0);
    uninstall();
}

#[test]
fn a_view_that_does_not_encode_as_its_key_leaves_redis_alone() {
    let _serial = serial();
    let server = shared_server();
    install(&server.url(), "mislabeled");
    let mut con = server.connection();
    assert_eq!(listened("abc".to_string()), 3);
    let count = |con: &mut redis::Connection| {
        all_keys(con)
            .iter()
            .filter(|k| k.starts_with("mislabeled:"))
            .count()
    };
    assert_eq!(count(&mut con), 1);
    // Removed here (it is `Equivalent`), but its bytes do not name the key: Redis keeps it and
    // the fault is counted.
    let errors = listened_cache().shared_stats().unwrap().errors;
    assert!(listened_cache().invalidate(&Mislabeled("abc")));
    assert_eq!(count(&mut con), 1);
    assert_eq!(
        listened_cache().shared_stats().unwrap().errors,
        errors + 1,
        "counted"
    );
    assert!(listened_cache().invalidate("abc"));
    assert_eq!(count(&mut con), 0);
    uninstall();
}

// ---------------------------------------------------------------------------------------------
// TTL.

#[memoize(shared, ttl = "400ms")]
fn stamped(x: u32) -> u32 {
    x + 1
}

#[test]
fn values_expire_in_redis_and_locally_from_their_computation() {
    let _serial = serial();
    let server = shared_server();
    install(&server.url(), "ttl");
    let mut con = server.connection();
    assert_eq!(stamped(1), 2);
    let keys = all_keys(&mut con);
    let key = keys.iter().find(|k| k.starts_with("ttl:")).unwrap().clone();
    let pttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut con).unwrap();
    assert!(pttl > 0 && pttl <= 400, "PTTL {pttl}");
    // A copy fetched from Redis later expires locally with the original, not a TTL later.
    std::thread::sleep(Duration::from_millis(250));
    stamped_cache().invalidate_local(&1);
    assert_eq!(stamped(1), 2);
    assert_eq!(stamped_cache().shared_stats().unwrap().hits, 1);
    std::thread::sleep(Duration::from_millis(200)); // 450 ms after the computation
    assert!(
        stamped_cache().get(&1).is_none(),
        "the local copy outlived the value's TTL"
    );
    assert!(!redis::cmd("EXISTS")
        .arg(&key)
        .query::<bool>(&mut con)
        .unwrap());
    assert_eq!(stamped(1), 2);
    assert_eq!(stamped_cache().stats().computations, 2);
    uninstall();
}

// ---------------------------------------------------------------------------------------------
// Keys stay in their prefix; large values are not written.

#[memoize(shared)]
fn measure(text: &str) -> usize {
    text.len()
}

#[memoize(shared)]
fn measure_too(text: &str) -> usize {
    text.len() + 1
}

#[memoize(shared)]
fn blob(size: usize) -> Vec<u8> {
    vec![7; size]
}

#[test]
fn hostile_keys_stay_inside_their_prefix() {
    let _serial = serial();
    let server = shared_server();
    install(&server.url(), "keys");
    let mut con = server.connection();
    let huge = "x:*\n".repeat(256 * 1024); // 1 MiB
    let hostile = [
        "a:b",
        "*",
        "keys:*",
        "\n",
        "a\r\nSET x y\r\n",
        "",
        "}{",
        "[a-z]?",
        huge.as_str(),
    ];
    for text in hostile {
        assert_eq!(measure(text), text.len());
        assert_eq!(measure_too(text), text.len() + 1);
    }
    let keys = all_keys(&mut con);
    let ours: Vec<&String> = keys.iter().filter(|k| k.starts_with("keys:")).collect();
    assert_eq!(
        ours.len(),
        2 * hostile.len(),
        "one key per call, no lock left"
    );
    let prefixes: HashSet<String> = ours
        .iter()
        .map(|k| k[..=k.rfind(':').unwrap()].to_string())
        .collect();
    assert_eq!(prefixes.len(), 2, "{prefixes:?}");
    for key in &ours {
        let encoded = &key[key.rfind(':').unwrap() + 1..];
        assert!(
            encoded
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "{key:?}"
        );
    }
    // The documented format, rebuilt by hand.
    let prefix = ours
        .iter()
        .find(|k| k.contains("measure:"))
        .map(|k| k[..=k.rfind(':').unwrap()].to_string())
        .unwrap();
    assert!(prefix.starts_with("keys:shared_tier::measure:"), "{prefix}");
    for text in hostile {
        let key = format!("{prefix}{}", encoded_string_key(text));
        assert!(
            ours.contains(&&key),
            "no key for {:?}",
            &text[..text.len().min(10)]
        );
    }
    // Clearing one function leaves the other's keys.
    assert_eq!(measure_cache().clear(), hostile.len() as u64);
    let left = all_keys(&mut con);
    assert_eq!(
        left.iter().filter(|k| k.starts_with("keys:")).count(),
        hostile.len()
    );
    uninstall();
}

#[test]
fn values_over_the_maximum_are_not_written() {
    let _serial = serial();
    let server = shared_server();
    install_with(
        Config::new(server.url())
            .namespace("big")
            .max_value_bytes(4096),
    )
    .unwrap();
    let mut con = server.connection();
    assert_eq!(blob(100).len(), 100);
    assert_eq!(blob(10_000).len(), 10_000);
    let stats = blob_cache().shared_stats().unwrap();
    assert_eq!((stats.writes, stats.oversized), (1, 1), "{stats:?}");
    let keys: Vec<String> = all_keys(&mut con)
        .into_iter()
        .filter(|k| k.starts_with("big:"))
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "only the small value, and no lock left: {keys:?}"
    );
    uninstall();
}

// ---------------------------------------------------------------------------------------------
// Faults: every call returns the right value; the counters show the faults.

#[memoize(shared)]
fn resilient(x: u64) -> u64 {
    x * 10 + 3
}

#[test]
fn a_killed_then_restarted_server_only_costs_local_computations() {
    let _serial = serial();
    let mut server = RedisServer::start();
    install(&server.url(), "crash");
    for x in 0..50 {
        assert_eq!(resilient(x), x * 10 + 3);
    }
    let before = resilient_cache().shared_stats().unwrap();
    assert_eq!((before.writes, before.faults()), (50, 0));
    server.kill();
    for x in 50..100 {
        assert_eq!(resilient(x), x * 10 + 3);
    }
    let down = resilient_cache().shared_stats().unwrap();
    assert!(down.faults() >= 1, "{down:?}");
    assert!(
        down.skipped >= 1,
        "backs off instead of retrying each call: {down:?}"
    );
    assert_eq!(down.writes, 50);
    server.restart();
    // It reconnects by itself: within a few back-off periods, values reach Redis again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut x = 100;
    while resilient_cache().shared_stats().unwrap().writes == 50 {
        assert!(Instant::now() < deadline, "the tier never reconnected");
        assert_eq!(resilient(x), x * 10 + 3);
        x += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(resilient_cache().stats().computations, x);
    uninstall();
}

#[memoize(shared)]
fn patient(x: u64) -> u64 {
    x + 1000
}

#[test]
fn a_paused_server_times_out_and_the_call_computes() {
    let _serial = serial();
    let server = RedisServer::start();
    install(&server.url(), "pause");
    assert_eq!(patient(1), 1001);
    let sleeper = std::thread::spawn({
        let mut con = server.connection();
        move || {
            redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg("1")
                .query::<()>(&mut con)
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    assert_eq!(patient(2), 1002);
    let took = start.elapsed();
    sleeper.join().unwrap().unwrap();
    let stats = patient_cache().shared_stats().unwrap();
    assert!(stats.timeouts >= 1, "{stats:?}");
    println!("call during DEBUG SLEEP 1 returned after {took:?}");
    assert_eq!(patient(3), 1003);
    uninstall();
}

#[memoize(shared)]
fn decoded(x: String) -> String {
    format!("<{x}>")
}

#[test]
fn garbage_bytes_are_recomputed_and_overwritten() {
    let _serial = serial();
    let server = shared_server();
    install(&server.url(), "garbage");
    let mut con = server.connection();
    assert_eq!(decoded("a".into()), "<a>");
    let keys = all_keys(&mut con);
    let key = keys
        .iter()
        .find(|k| k.starts_with("garbage:"))
        .unwrap()
        .clone();
    for garbage in [&b"not a value"[..], &[1u8; 12][..], &[][..]] {
        redis::cmd("SET")
            .arg(&key)
            .arg(garbage)
            .query::<()>(&mut con)
            .unwrap();
        decoded_cache().invalidate_local("a");
        assert_eq!(decoded("a".into()), "<a>");
        let now: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut con).unwrap();
        assert_ne!(now, garbage, "the garbage was overwritten");
    }
    let stats = decoded_cache().shared_stats().unwrap();
    assert_eq!(stats.decode_errors, 3, "{stats:?}");
    assert_eq!(decoded_cache().stats().computations, 4);
    // Overwritten with a good value: a fresh local miss is a Redis hit again.
    decoded_cache().invalidate_local("a");
    assert_eq!(decoded("a".into()), "<a>");
    assert_eq!(decoded_cache().stats().computations, 4);
    uninstall();
}

#[memoize(shared)]
fn orphan(x: String) -> usize {
    x.len() * 2
}

#[test]
fn a_lock_left_by_a_crashed_owner_delays_by_at_most_its_lifetime() {
    let _serial = serial();
    let server = shared_server();
    install(&server.url(), "stale");
    let mut con = server.connection();
    assert_eq!(orphan("first".into()), 10);
    let prefix = prefix_of(
        &all_keys(&mut con)
            .into_iter()
            .filter(|k| k.starts_with("stale:"))
            .collect::<Vec<_>>(),
    );
    // A crashed owner's lock on "second", 600 ms left.
    let lock = format!("{prefix}{}:lock", encoded_string_key("second"));
    redis::cmd("SET")
        .arg(&lock)
        .arg("crashed-owner")
        .arg("PX")
        .arg(600)
        .query::<()>(&mut con)
        .unwrap();
    let start = Instant::now();
    assert_eq!(orphan("second".into()), 12);
    let waited = start.elapsed();
    let stats = orphan_cache().shared_stats().unwrap();
    assert_eq!(stats.waits, 1, "{stats:?}");
    assert_eq!(stats.writes, 2, "{stats:?}");
    println!("waited {waited:?} for a stale lock of 600 ms");
    uninstall();
}

#[memoize(shared)]
fn crowded(x: u64) -> u64 {
    x * 7
}

#[test]
fn a_full_server_refuses_writes_and_the_call_computes() {
    let _serial = serial();
    let server = RedisServer::start();
    install(&server.url(), "full");
    let mut con = server.connection();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query::<()>(&mut con)
        .unwrap();
    for x in 0..5 {
        assert_eq!(crowded(x), x * 7);
    }
    let stats = crowded_cache().shared_stats().unwrap();
    assert_eq!(stats.writes, 0, "{stats:?}");
    assert!(stats.errors >= 5, "{stats:?}");
    uninstall();
}

#[memoize(shared)]
fn unreachable_tier(x: u8) -> u8 {
    x
}

#[test]
fn no_server_at_all_means_local_caching() {
    let _serial = serial();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    install(&format!("redis://127.0.0.1:{port}/0"), "nobody");
    for _ in 0..3 {
        assert_eq!(unreachable_tier(5), 5);
    }
    assert_eq!(unreachable_tier_cache().stats().computations, 1);
    let stats = unreachable_tier_cache().shared_stats().unwrap();
    assert_eq!(stats.errors, 1, "{stats:?}");
    uninstall();
}

// ---------------------------------------------------------------------------------------------
// `async fn`: the async client, on any executor; faults and cancellation.

#[memoize(shared)]
async fn cube_async(x: u64) -> u64 {
    x * x * x
}

#[test]
fn an_async_fn_shares_through_redis_on_any_executor() {
    let _serial = serial();
    let server = shared_server();
    install(&server.url(), "async");
    // futures' executor: no tokio runtime on this thread.
    assert_eq!(futures::executor::block_on(cube_async(3)), 27);
    let stats = cube_async_cache().shared_stats().unwrap();
    assert_eq!((stats.misses, stats.writes), (1, 1), "{stats:?}");
    cube_async_cache().invalidate_local(&3);
    // tokio, current-thread: a Redis hit, no computation.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(cube_async(3)), 27);
    assert_eq!(cube_async_cache().shared_stats().unwrap().hits, 1);
    assert_eq!(cube_async_cache().stats().computations, 1);
    // The plain `invalidate` reaches Redis from async code too.
    assert!(cube_async_cache().invalidate(&3));
    assert_eq!(runtime.block_on(cube_async(3)), 27);
    assert_eq!(cube_async_cache().stats().computations, 2);
    uninstall();
}

/// Runs `test` on a multi-threaded tokio runtime (the caller holds `serial()`, which must not be
/// held across an `.await`).
fn on_tokio(test: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

#[memoize(shared)]
async fn resilient_async(x: u64) -> u64 {
    x * 10 + 7
}

#[test]
fn an_async_fn_survives_a_killed_then_restarted_server() {
    let _serial = serial();
    on_tokio(an_async_fn_survives_a_killed_then_restarted_server_body());
}

async fn an_async_fn_survives_a_killed_then_restarted_server_body() {
    let mut server = RedisServer::start();
    install(&server.url(), "crash_async");
    for x in 0..50 {
        assert_eq!(resilient_async(x).await, x * 10 + 7);
    }
    let before = resilient_async_cache().shared_stats().unwrap();
    assert_eq!((before.writes, before.faults()), (50, 0), "{before:?}");
    server.kill();
    for x in 50..100 {
        assert_eq!(resilient_async(x).await, x * 10 + 7);
    }
    let down = resilient_async_cache().shared_stats().unwrap();
    assert!(down.faults() >= 1, "{down:?}");
    assert!(down.skipped >= 1, "backs off: {down:?}");
    assert_eq!(down.writes, 50);
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut x = 100;
    while resilient_async_cache().shared_stats().unwrap().writes == 50 {
        assert!(
            Instant::now() < deadline,
            "the async tier never reconnected"
        );
        assert_eq!(resilient_async(x).await, x * 10 + 7);
        x += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(resilient_async_cache().stats().computations, x);
    uninstall();
}

#[memoize(shared)]
async fn patient_async(x: u64) -> u64 {
    x + 2000
}

#[test]
fn an_async_call_to_a_paused_server_times_out_and_computes() {
    let _serial = serial();
    on_tokio(an_async_call_to_a_paused_server_times_out_and_computes_body());
}

async fn an_async_call_to_a_paused_server_times_out_and_computes_body() {
    let server = RedisServer::start();
    install(&server.url(), "pause_async");
    assert_eq!(patient_async(1).await, 2001);
    let sleeper = std::thread::spawn({
        let mut con = server.connection();
        move || {
            redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg("1")
                .query::<()>(&mut con)
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(patient_async(2).await, 2002);
    sleeper.join().unwrap().unwrap();
    let stats = patient_async_cache().shared_stats().unwrap();
    assert!(stats.timeouts >= 1, "{stats:?}");
    uninstall();
}

#[memoize(shared)]
async fn slow_async(x: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(300)).await;
    x + 1
}

#[test]
fn a_dropped_async_computation_releases_its_lock_and_its_cell() {
    let _serial = serial();
    on_tokio(a_dropped_async_computation_releases_its_lock_and_its_cell_body());
}

async fn a_dropped_async_computation_releases_its_lock_and_its_cell_body() {
    let server = shared_server();
    install(&server.url(), "cancel");
    let mut con = server.connection();
    // Dropped while computing, holding the key's lock in Redis.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), slow_async(1))
            .await
            .is_err()
    );
    // The lock is released (not left to expire after its 5 s lifetime).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let locks: Vec<String> = all_keys(&mut con)
            .into_iter()
            .filter(|k| k.starts_with("cancel:") && k.ends_with(":lock"))
            .collect();
        if locks.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lock was not released: {locks:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // No stuck local cell: the next call computes and caches.
    assert_eq!(slow_async(1).await, 2);
    assert_eq!(slow_async_cache().get(&1), Some(2));
    let stats = slow_async_cache().shared_stats().unwrap();
    assert_eq!(stats.wait_timeouts, 0, "{stats:?}");
    assert_eq!(stats.writes, 1, "{stats:?}");
    assert_eq!(slow_async_cache().stats().computations, 2);
    uninstall();
}

#[memoize(shared)]
async fn waited_async(x: String) -> usize {
    x.len() * 3
}

#[test]
fn an_async_caller_waits_for_another_process_then_takes_a_stale_lock() {
    let _serial = serial();
    on_tokio(an_async_caller_waits_for_another_process_then_takes_a_stale_lock_body());
}

async fn an_async_caller_waits_for_another_process_then_takes_a_stale_lock_body() {
    let server = shared_server();
    install(&server.url(), "stale_async");
    let mut con = server.connection();
    assert_eq!(waited_async("first".into()).await, 15);
    let prefix = prefix_of(
        &all_keys(&mut con)
            .into_iter()
            .filter(|k| k.starts_with("stale_async:"))
            .collect::<Vec<_>>(),
    );
    let lock = format!("{prefix}{}:lock", encoded_string_key("second"));
    let set_lock = |con: &mut redis::Connection| {
        redis::cmd("SET")
            .arg(&lock)
            .arg("crashed-owner")
            .arg("PX")
            .arg(400)
            .query::<()>(con)
            .unwrap();
    };
    // A caller dropped while waiting for the lock's owner leaves nothing behind.
    set_lock(&mut con);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), waited_async("second".into()))
            .await
            .is_err()
    );
    assert_eq!(waited_async_cache().get("second"), None);
    // A caller that waits the lock out computes and publishes.
    set_lock(&mut con);
    assert_eq!(waited_async("second".into()).await, 18);
    let stats = waited_async_cache().shared_stats().unwrap();
    // Both waits ended without a value; the second took the lock once it expired.
    assert_eq!((stats.waits, stats.misses), (2, 2), "{stats:?}");
    assert_eq!(stats.writes, 2, "{stats:?}");
    uninstall();
}

// ---------------------------------------------------------------------------------------------
// `tier_errors = "return"`: faults reach functions returning `Result`.

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum LookupError {
    Tier(String),
    Missing,
}

impl From<TierError> for LookupError {
    fn from(error: TierError) -> Self {
        LookupError::Tier(format!("{:?}", error.kind()))
    }
}

#[memoize(shared, tier_errors = "return")]
fn strict(x: u64) -> Result<u64, LookupError> {
    if x == 0 {
        Err(LookupError::Missing)
    } else {
        Ok(x * 2)
    }
}

#[memoize(shared, tier_errors = "return")]
async fn strict_async(x: u64) -> Result<u64, LookupError> {
    Ok(x * 3)
}

fn tier_error(kind: TierErrorKind) -> LookupError {
    LookupError::from(TierError::from(kind))
}

#[test]
fn tier_errors_return_faults_to_functions_returning_result() {
    let _serial = serial();
    let mut server = RedisServer::start();
    install(&server.url(), "strict");
    let mut con = server.connection();
    assert_eq!(strict(1), Ok(2));
    assert_eq!(strict(0), Err(LookupError::Missing));
    assert_eq!(futures::executor::block_on(strict_async(1)), Ok(3));
    // Garbage in Redis: a decode error, returned (and not cached).
    let key = all_keys(&mut con)
        .into_iter()
        .find(|k| k.starts_with("strict:") && k.contains("::strict:"))
        .unwrap();
    redis::cmd("SET")
        .arg(&key)
        .arg("garbage")
        .query::<()>(&mut con)
        .unwrap();
    strict_cache().invalidate_local(&1);
    assert_eq!(strict(1), Err(tier_error(TierErrorKind::Decode)));
    assert_eq!(strict_cache().get(&1), None, "a tier error is not cached");
    let computations = strict_cache().stats().computations;
    assert_eq!(computations, 2, "no computation for the fault");
    // Redis down: sync and async calls return the error; local hits still answer.
    redis::cmd("DEL").arg(&key).query::<()>(&mut con).unwrap();
    assert_eq!(strict(1), Ok(2));
    server.kill();
    assert_eq!(strict(2), Err(tier_error(TierErrorKind::Unavailable)));
    assert_eq!(strict(1), Ok(2), "a local hit");
    assert_eq!(
        futures::executor::block_on(strict_async(2)),
        Err(tier_error(TierErrorKind::Unavailable))
    );
    assert_eq!(strict_cache().stats().computations, 3);
    let stats = strict_cache().shared_stats().unwrap();
    assert!(stats.faults() >= 2, "{stats:?}");
    // Back up: the calls compute and share again.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while strict(2).is_err() {
        assert!(Instant::now() < deadline, "the tier never reconnected");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(strict_cache().get(&2), Some(Ok(4)));
    uninstall();
}
