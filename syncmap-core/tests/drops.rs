//! Drop accounting: every key and value the map is given is dropped exactly once (clones it
//! hands out are counted too), through concurrent swaps, deletes, clear, and the map's drop.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use syncmap_core::SyncMap;

/// Counts live instances: +1 when made or cloned, -1 when dropped. A double drop shows as a
/// negative count, a leak as a positive one.
struct Counted {
    id: u64,
    live: Arc<AtomicI64>,
}

impl Counted {
    fn new(id: u64, live: &Arc<AtomicI64>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Counted {
            id,
            live: Arc::clone(live),
        }
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        Counted::new(self.id, &self.live)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PartialEq for Counted {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for Counted {}
impl std::hash::Hash for Counted {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

#[test]
fn every_key_and_value_is_dropped_exactly_once() {
    let keys = Arc::new(AtomicI64::new(0));
    let values = Arc::new(AtomicI64::new(0));
    {
        let map = Arc::new(SyncMap::<Counted, Counted>::new());
        let rounds = if cfg!(miri) { 40 } else { 20_000 };
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let (map, keys, values) =
                    (Arc::clone(&map), Arc::clone(&keys), Arc::clone(&values));
                std::thread::spawn(move || {
                    let mut x = t * 7 + 3;
                    for _ in 0..rounds {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let k = (x >> 33) % 64;
                        let key = Counted::new(k, &keys);
                        let value = Counted::new(x % 1000, &values);
                        match (x >> 20) % 9 {
                            0 | 1 => map.store(key, value),
                            2 => drop(map.swap(key, value)),
                            3 => drop(map.load_or_store(key, value)),
                            4 => drop(map.load_and_delete(&key)),
                            5 => map.delete(&key),
                            6 => drop(map.load(&key)),
                            7 => drop(map.compare_and_swap(&key, &value.clone(), value)),
                            _ if x % 101 == 0 => map.clear(),
                            _ => drop(map.compare_and_delete(&key, &value)),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(keys.load(Ordering::SeqCst) >= map.len() as i64);
    }
    assert_eq!(
        keys.load(Ordering::SeqCst),
        0,
        "keys leaked or dropped twice"
    );
    assert_eq!(
        values.load(Ordering::SeqCst),
        0,
        "values leaked or dropped twice"
    );
}

#[test]
fn clear_and_drop_release_everything() {
    let live = Arc::new(AtomicI64::new(0));
    let map = SyncMap::<u64, Counted>::new();
    for k in 0..100 {
        map.store(k, Counted::new(k, &live));
    }
    for k in 0..200 {
        map.load(&k); // promote
    }
    map.clear();
    for k in 0..50 {
        map.store(k, Counted::new(k, &live));
    }
    drop(map);
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

/// More threads than the collector's first slot buckets, two maps at once, enough retirements
/// per thread to seal batches and run reclamation passes, and one map dropped while threads
/// that retired into it are still alive (their bags live in that map's collector).
#[test]
fn map_dropped_while_retiring_threads_live() {
    let (threads_n, rounds) = if cfg!(miri) {
        (3u64, 30u64)
    } else {
        (12, 3_000)
    };
    for round in 0..if cfg!(miri) { 1 } else { 3 } {
        let live_a = Arc::new(AtomicI64::new(0));
        let live_b = Arc::new(AtomicI64::new(0));
        let a = Arc::new(SyncMap::<u64, Counted>::new());
        let b = Arc::new(SyncMap::<u64, Counted>::new());
        let phase1 = Arc::new(std::sync::Barrier::new(threads_n as usize + 1));
        let phase2 = Arc::new(std::sync::Barrier::new(threads_n as usize + 1));
        let handles: Vec<_> = (0..threads_n)
            .map(|t| {
                let (a, b) = (Arc::clone(&a), Arc::clone(&b));
                let (live_a, live_b) = (Arc::clone(&live_a), Arc::clone(&live_b));
                let (phase1, phase2) = (Arc::clone(&phase1), Arc::clone(&phase2));
                std::thread::spawn(move || {
                    for i in 0..rounds {
                        let k = (i * 31 + t) % 16;
                        drop(a.swap(k, Counted::new(i, &live_a)));
                        drop(b.swap(k, Counted::new(i, &live_b)));
                        if i % 7 == 0 {
                            a.delete(&((k + 1) % 16));
                        }
                    }
                    drop(a); // only the main thread's handle remains
                    phase1.wait(); // main drops `a` now, while this thread lives
                    phase2.wait();
                    for i in 0..rounds {
                        drop(b.swap((i + t) % 16, Counted::new(i, &live_b)));
                    }
                })
            })
            .collect();
        phase1.wait();
        let a = Arc::into_inner(a).expect("threads dropped their handles");
        drop(a);
        assert_eq!(live_a.load(Ordering::SeqCst), 0, "round {round}: map a");
        phase2.wait();
        for h in handles {
            h.join().unwrap();
        }
        assert!(live_b.load(Ordering::SeqCst) >= b.len() as i64);
        drop(b);
        assert_eq!(live_b.load(Ordering::SeqCst), 0, "round {round}: map b");
    }
}

/// Values that are maps themselves: reclaiming an outer value drops a whole inner map (and its
/// collector) inside the outer map's reclamation.
#[test]
fn nested_maps_drop_everything_once() {
    let live = Arc::new(AtomicI64::new(0));
    let rounds = if cfg!(miri) { 20 } else { 2_000 };
    {
        let outer = Arc::new(SyncMap::<u64, Arc<SyncMap<u64, Counted>>>::new());
        let handles: Vec<_> = (0..3u64)
            .map(|t| {
                let (outer, live) = (Arc::clone(&outer), Arc::clone(&live));
                std::thread::spawn(move || {
                    for i in 0..rounds {
                        let inner = Arc::new(SyncMap::new());
                        for j in 0..3 {
                            inner.store(j, Counted::new(i, &live));
                        }
                        drop(outer.swap((i + t) % 4, inner));
                        outer.load_with(&((i + 1) % 4), |m| {
                            drop(m.swap(0, Counted::new(i, &live)));
                        });
                        if i % 5 == 0 {
                            outer.delete(&(i % 4));
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

/// A value whose `Drop` writes to another map (allowed: only the same map is off limits).
struct Logged {
    id: u64,
    log: Arc<SyncMap<u64, u64>>,
    live: Arc<AtomicI64>,
}

impl Clone for Logged {
    fn clone(&self) -> Self {
        self.live.fetch_add(1, Ordering::SeqCst);
        Logged {
            id: self.id,
            log: Arc::clone(&self.log),
            live: Arc::clone(&self.live),
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _previous = self.log.swap(self.id % 8, self.id);
        self.log.delete(&((self.id + 3) % 8));
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn value_drop_may_write_to_another_map() {
    let live = Arc::new(AtomicI64::new(0));
    let log = Arc::new(SyncMap::new());
    let rounds = if cfg!(miri) { 30 } else { 5_000 };
    {
        let map = Arc::new(SyncMap::<u64, Logged>::new());
        let handles: Vec<_> = (0..3u64)
            .map(|t| {
                let (map, log, live) = (Arc::clone(&map), Arc::clone(&log), Arc::clone(&live));
                std::thread::spawn(move || {
                    for i in 0..rounds {
                        live.fetch_add(1, Ordering::SeqCst);
                        let v = Logged {
                            id: i * 3 + t,
                            log: Arc::clone(&log),
                            live: Arc::clone(&live),
                        };
                        drop(map.swap(i % 8, v));
                        if i % 3 == 0 {
                            map.delete(&((i + 1) % 8));
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
    assert_eq!(live.load(Ordering::SeqCst), 0);
    assert!(log.len() <= 8);
}
