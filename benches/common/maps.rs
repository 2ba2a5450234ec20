//! One interface over `SyncMap` and the maps users would pick instead, with `u64` keys and
//! values, for the benchmarks. Each adapter uses the peer's natural API for each operation.
//!
//! Go's `Range` lets the callback call the map; peers whose iteration holds a lock (the
//! `RwLock`/`Mutex` maps, dashmap) would deadlock, so their `range` copies the entries first,
//! as a user of those maps has to.
#![allow(dead_code)]

use std::collections::HashMap;
use std::hash::BuildHasher;

use parking_lot::{Mutex, RwLock};
use syncmemo::SyncMap;

pub type Fast = foldhash::fast::RandomState;

pub trait BenchMap: Send + Sync + 'static {
    const NAME: &'static str;
    fn create() -> Self;
    fn load(&self, k: u64) -> Option<u64>;
    fn store(&self, k: u64, v: u64);
    fn load_or_store(&self, k: u64, v: u64) -> (u64, bool);
    fn load_and_delete(&self, k: u64) -> Option<u64>;
    fn delete(&self, k: u64);
    fn swap(&self, k: u64, v: u64) -> Option<u64>;
    fn compare_and_swap(&self, k: u64, old: u64, new: u64) -> bool;
    fn compare_and_delete(&self, k: u64, old: u64) -> bool;
    fn range(&self, f: &mut dyn FnMut(u64, u64) -> bool);
    fn clear(&self);
}

pub struct SyncM<S>(pub SyncMap<u64, u64, S>);

macro_rules! syncmap_adapter {
    ($hasher:ty, $name:literal) => {
        impl BenchMap for SyncM<$hasher> {
            const NAME: &'static str = $name;
            fn create() -> Self {
                SyncM(SyncMap::default())
            }
            fn load(&self, k: u64) -> Option<u64> {
                self.0.load(&k)
            }
            fn store(&self, k: u64, v: u64) {
                self.0.store(k, v)
            }
            fn load_or_store(&self, k: u64, v: u64) -> (u64, bool) {
                self.0.load_or_store(k, v)
            }
            fn load_and_delete(&self, k: u64) -> Option<u64> {
                self.0.load_and_delete(&k)
            }
            fn delete(&self, k: u64) {
                self.0.delete(&k)
            }
            fn swap(&self, k: u64, v: u64) -> Option<u64> {
                self.0.swap(k, v)
            }
            fn compare_and_swap(&self, k: u64, old: u64, new: u64) -> bool {
                self.0.compare_and_swap(&k, &old, new)
            }
            fn compare_and_delete(&self, k: u64, old: u64) -> bool {
                self.0.compare_and_delete(&k, &old)
            }
            fn range(&self, f: &mut dyn FnMut(u64, u64) -> bool) {
                self.0.range(|k, v| f(*k, *v))
            }
            fn clear(&self) {
                self.0.clear()
            }
        }
    };
}
syncmap_adapter!(std::collections::hash_map::RandomState, "SyncMap");
syncmap_adapter!(Fast, "SyncMap+foldhash");

pub struct RwLockMap(RwLock<HashMap<u64, u64, Fast>>);
pub struct MutexMap(Mutex<HashMap<u64, u64, Fast>>);

macro_rules! locked_adapter {
    ($ty:ident, $name:literal, $read:ident, $write:ident) => {
        impl BenchMap for $ty {
            const NAME: &'static str = $name;
            fn create() -> Self {
                $ty(Default::default())
            }
            fn load(&self, k: u64) -> Option<u64> {
                self.0.$read().get(&k).copied()
            }
            fn store(&self, k: u64, v: u64) {
                self.0.$write().insert(k, v);
            }
            fn load_or_store(&self, k: u64, v: u64) -> (u64, bool) {
                if let Some(v) = self.0.$read().get(&k) {
                    return (*v, true);
                }
                let mut map = self.0.$write();
                match map.get(&k) {
                    Some(v) => (*v, true),
                    None => {
                        map.insert(k, v);
                        (v, false)
                    }
                }
            }
            fn load_and_delete(&self, k: u64) -> Option<u64> {
                self.0.$write().remove(&k)
            }
            fn delete(&self, k: u64) {
                self.0.$write().remove(&k);
            }
            fn swap(&self, k: u64, v: u64) -> Option<u64> {
                self.0.$write().insert(k, v)
            }
            fn compare_and_swap(&self, k: u64, old: u64, new: u64) -> bool {
                let mut map = self.0.$write();
                match map.get_mut(&k) {
                    Some(v) if *v == old => {
                        *v = new;
                        true
                    }
                    _ => false,
                }
            }
            fn compare_and_delete(&self, k: u64, old: u64) -> bool {
                let mut map = self.0.$write();
                if map.get(&k) == Some(&old) {
                    map.remove(&k);
                    true
                } else {
                    false
                }
            }
            fn range(&self, f: &mut dyn FnMut(u64, u64) -> bool) {
                let entries: Vec<(u64, u64)> =
                    self.0.$read().iter().map(|(k, v)| (*k, *v)).collect();
                for (k, v) in entries {
                    if !f(k, v) {
                        break;
                    }
                }
            }
            fn clear(&self) {
                self.0.$write().clear()
            }
        }
    };
}
locked_adapter!(RwLockMap, "RwLock<HashMap>", read, write);
locked_adapter!(MutexMap, "Mutex<HashMap>", lock, lock);

pub struct Dash(dashmap::DashMap<u64, u64, Fast>);

impl BenchMap for Dash {
    const NAME: &'static str = "dashmap";
    fn create() -> Self {
        Dash(dashmap::DashMap::with_hasher(Fast::default()))
    }
    fn load(&self, k: u64) -> Option<u64> {
        self.0.get(&k).map(|v| *v)
    }
    fn store(&self, k: u64, v: u64) {
        self.0.insert(k, v);
    }
    fn load_or_store(&self, k: u64, v: u64) -> (u64, bool) {
        if let Some(v) = self.0.get(&k) {
            return (*v, true);
        }
        match self.0.entry(k) {
            dashmap::mapref::entry::Entry::Occupied(o) => (*o.get(), true),
            dashmap::mapref::entry::Entry::Vacant(e) => {
                e.insert(v);
                (v, false)
            }
        }
    }
    fn load_and_delete(&self, k: u64) -> Option<u64> {
        self.0.remove(&k).map(|(_, v)| v)
    }
    fn delete(&self, k: u64) {
        self.0.remove(&k);
    }
    fn swap(&self, k: u64, v: u64) -> Option<u64> {
        self.0.insert(k, v)
    }
    fn compare_and_swap(&self, k: u64, old: u64, new: u64) -> bool {
        match self.0.get_mut(&k) {
            Some(mut v) if *v == old => {
                *v = new;
                true
            }
            _ => false,
        }
    }
    fn compare_and_delete(&self, k: u64, old: u64) -> bool {
        self.0.remove_if(&k, |_, v| *v == old).is_some()
    }
    fn range(&self, f: &mut dyn FnMut(u64, u64) -> bool) {
        let entries: Vec<(u64, u64)> = self.0.iter().map(|e| (*e.key(), *e.value())).collect();
        for (k, v) in entries {
            if !f(k, v) {
                break;
            }
        }
    }
    fn clear(&self) {
        self.0.clear()
    }
}

pub struct Papaya(papaya::HashMap<u64, u64, Fast>);

impl BenchMap for Papaya {
    const NAME: &'static str = "papaya";
    fn create() -> Self {
        Papaya(papaya::HashMap::with_hasher(Fast::default()))
    }
    fn load(&self, k: u64) -> Option<u64> {
        self.0.pin().get(&k).copied()
    }
    fn store(&self, k: u64, v: u64) {
        self.0.pin().insert(k, v);
    }
    fn load_or_store(&self, k: u64, v: u64) -> (u64, bool) {
        match self.0.pin().try_insert(k, v) {
            Ok(v) => (*v, false),
            Err(e) => (*e.current, true),
        }
    }
    fn load_and_delete(&self, k: u64) -> Option<u64> {
        self.0.pin().remove(&k).copied()
    }
    fn delete(&self, k: u64) {
        self.0.pin().remove(&k);
    }
    fn swap(&self, k: u64, v: u64) -> Option<u64> {
        self.0.pin().insert(k, v).copied()
    }
    fn compare_and_swap(&self, k: u64, old: u64, new: u64) -> bool {
        use papaya::{Compute, Operation};
        let map = self.0.pin();
        matches!(
            map.compute(k, |entry| match entry {
                Some((_, v)) if *v == old => Operation::Insert(new),
                _ => Operation::Abort(()),
            }),
            Compute::Updated { .. }
        )
    }
    fn compare_and_delete(&self, k: u64, old: u64) -> bool {
        matches!(self.0.pin().remove_if(&k, |_, v| *v == old), Ok(Some(_)))
    }
    fn range(&self, f: &mut dyn FnMut(u64, u64) -> bool) {
        for (k, v) in self.0.pin().iter() {
            if !f(*k, *v) {
                break;
            }
        }
    }
    fn clear(&self) {
        self.0.pin().clear()
    }
}

pub struct SccIndex(scc::HashIndex<u64, u64, Fast>);

impl BenchMap for SccIndex {
    const NAME: &'static str = "scc::HashIndex";
    fn create() -> Self {
        SccIndex(scc::HashIndex::with_hasher(Fast::default()))
    }
    fn load(&self, k: u64) -> Option<u64> {
        self.0.peek_with(&k, |_, v| *v)
    }
    fn store(&self, k: u64, v: u64) {
        match self.0.entry_sync(k) {
            scc::hash_index::Entry::Occupied(mut o) => o.update(v),
            scc::hash_index::Entry::Vacant(e) => {
                e.insert_entry(v);
            }
        }
    }
    fn load_or_store(&self, k: u64, v: u64) -> (u64, bool) {
        if let Some(v) = self.0.peek_with(&k, |_, v| *v) {
            return (v, true);
        }
        match self.0.entry_sync(k) {
            scc::hash_index::Entry::Occupied(o) => (*o.get(), true),
            scc::hash_index::Entry::Vacant(e) => {
                e.insert_entry(v);
                (v, false)
            }
        }
    }
    fn load_and_delete(&self, k: u64) -> Option<u64> {
        let mut old = None;
        self.0.remove_if_sync(&k, |v| {
            old = Some(*v);
            true
        });
        old
    }
    fn delete(&self, k: u64) {
        self.0.remove_sync(&k);
    }
    fn swap(&self, k: u64, v: u64) -> Option<u64> {
        match self.0.entry_sync(k) {
            scc::hash_index::Entry::Occupied(mut o) => {
                let old = *o.get();
                o.update(v);
                Some(old)
            }
            scc::hash_index::Entry::Vacant(e) => {
                e.insert_entry(v);
                None
            }
        }
    }
    fn compare_and_swap(&self, k: u64, old: u64, new: u64) -> bool {
        if self.0.peek_with(&k, |_, v| *v != old).unwrap_or(true) {
            return false;
        }
        match self.0.get_sync(&k) {
            Some(mut o) if *o.get() == old => {
                o.update(new);
                true
            }
            _ => false,
        }
    }
    fn compare_and_delete(&self, k: u64, old: u64) -> bool {
        self.0.remove_if_sync(&k, |v| *v == old)
    }
    fn range(&self, f: &mut dyn FnMut(u64, u64) -> bool) {
        let guard = scc::Guard::new();
        for (k, v) in self.0.iter(&guard) {
            if !f(*k, *v) {
                break;
            }
        }
    }
    fn clear(&self) {
        self.0.clear_sync()
    }
}

pub struct SccMap(scc::HashMap<u64, u64, Fast>);

impl BenchMap for SccMap {
    const NAME: &'static str = "scc::HashMap";
    fn create() -> Self {
        SccMap(scc::HashMap::with_hasher(Fast::default()))
    }
    fn load(&self, k: u64) -> Option<u64> {
        self.0.read_sync(&k, |_, v| *v)
    }
    fn store(&self, k: u64, v: u64) {
        self.0.upsert_sync(k, v);
    }
    fn load_or_store(&self, k: u64, v: u64) -> (u64, bool) {
        match self.0.entry_sync(k) {
            scc::hash_map::Entry::Occupied(o) => (*o.get(), true),
            scc::hash_map::Entry::Vacant(e) => {
                e.insert_entry(v);
                (v, false)
            }
        }
    }
    fn load_and_delete(&self, k: u64) -> Option<u64> {
        self.0.remove_sync(&k).map(|(_, v)| v)
    }
    fn delete(&self, k: u64) {
        self.0.remove_sync(&k);
    }
    fn swap(&self, k: u64, v: u64) -> Option<u64> {
        self.0.upsert_sync(k, v)
    }
    fn compare_and_swap(&self, k: u64, old: u64, new: u64) -> bool {
        self.0
            .update_sync(&k, |_, v| {
                if *v == old {
                    *v = new;
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false)
    }
    fn compare_and_delete(&self, k: u64, old: u64) -> bool {
        self.0.remove_if_sync(&k, |v| *v == old).is_some()
    }
    fn range(&self, f: &mut dyn FnMut(u64, u64) -> bool) {
        // `iter_sync` holds a bucket lock while it calls back; copy first, as for the lock-based
        // maps, so that the callback may call the map (module documentation).
        let mut entries = Vec::with_capacity(self.0.len());
        self.0.iter_sync(|k, v| {
            entries.push((*k, *v));
            true
        });
        for (k, v) in entries {
            if !f(k, v) {
                break;
            }
        }
    }
    fn clear(&self) {
        self.0.clear_sync()
    }
}

/// Names of every adapter, in table order.
pub const ALL: &[&str] = &[
    "SyncMap",
    "SyncMap+foldhash",
    "RwLock<HashMap>",
    "Mutex<HashMap>",
    "dashmap",
    "papaya",
    "scc::HashIndex",
    "scc::HashMap",
];

/// Calls `$f::<Adapter>()` for the adapter named `$name`.
#[macro_export]
macro_rules! with_map {
    ($name:expr, $f:ident $(, $arg:expr)*) => {
        match $name {
            "SyncMap" => $f::<$crate::maps::SyncM<std::collections::hash_map::RandomState>>($($arg),*),
            "SyncMap+foldhash" => $f::<$crate::maps::SyncM<$crate::maps::Fast>>($($arg),*),
            "RwLock<HashMap>" => $f::<$crate::maps::RwLockMap>($($arg),*),
            "Mutex<HashMap>" => $f::<$crate::maps::MutexMap>($($arg),*),
            "dashmap" => $f::<$crate::maps::Dash>($($arg),*),
            "papaya" => $f::<$crate::maps::Papaya>($($arg),*),
            "scc::HashIndex" => $f::<$crate::maps::SccIndex>($($arg),*),
            "scc::HashMap" => $f::<$crate::maps::SccMap>($($arg),*),
            other => panic!("unknown map {other}; known: {:?}", $crate::maps::ALL),
        }
    };
}

#[allow(unused)]
fn _hasher_is_used<S: BuildHasher>() {}
