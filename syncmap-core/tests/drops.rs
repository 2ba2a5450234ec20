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
