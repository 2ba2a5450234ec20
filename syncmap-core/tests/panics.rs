//! A panic in a user closure propagates and leaves the map consistent and usable, from the same
//! thread and from others (the lock does not poison).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use syncmap_core::SyncMap;

const ROUNDS: u64 = if cfg!(miri) { 10 } else { 200 };

fn filled() -> SyncMap<u64, String> {
    let map = SyncMap::new();
    for k in 0..32 {
        map.store(k, k.to_string());
    }
    map
}

fn assert_intact(map: &SyncMap<u64, String>) {
    for k in 0..32 {
        assert_eq!(map.load(&k), Some(k.to_string()));
    }
    map.store(100, "new".into());
    assert_eq!(map.load(&100).as_deref(), Some("new"));
    assert_eq!(map.len(), 33);
    map.delete(&100);
}

#[test]
fn panic_in_range_callback() {
    let map = filled();
    let result = catch_unwind(|| map.range(|k, _| if *k == 5 { panic!("boom") } else { true }));
    assert!(result.is_err());
    assert_intact(&map);
}

#[test]
fn panic_in_load_with_closure() {
    let map = filled();
    let result = catch_unwind(|| map.load_with(&3, |_| panic!("boom")));
    assert!(result.is_err());
    assert_intact(&map);
}

#[test]
fn panic_in_load_or_store_with_stores_nothing() {
    let map = filled();
    let result = catch_unwind(|| map.load_or_store_with(77, || panic!("boom")));
    assert!(result.is_err());
    assert!(!map.contains_key(&77));
    assert_intact(&map);
}

#[test]
fn panics_on_one_thread_do_not_block_others() {
    let map = Arc::new(filled());
    let panicking: Vec<_> = (0..2)
        .map(|t| {
            let map = Arc::clone(&map);
            std::thread::spawn(move || {
                for i in 0..ROUNDS {
                    let _ = catch_unwind(AssertUnwindSafe(|| {
                        map.load_or_store_with(1000 + t * 1000 + i, || panic!("boom"))
                    }));
                    let _ = catch_unwind(AssertUnwindSafe(|| map.range(|_, _| panic!("boom"))));
                }
            })
        })
        .collect();
    for i in 0..ROUNDS {
        map.store(10_000 + i, i.to_string());
        assert_eq!(map.load(&(10_000 + i)), Some(i.to_string()));
    }
    for t in panicking {
        t.join().unwrap();
    }
    for i in 0..ROUNDS {
        map.delete(&(10_000 + i));
    }
    assert_intact(&map);
}
