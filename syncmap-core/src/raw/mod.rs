//! Internals of [`SyncMap`](crate::SyncMap): the shared [`entry::Entry`], the [`read::ReadOnly`]
//! snapshot, the [`shard::Shard`] that pairs a snapshot with its dirty map, a striped counter,
//! and the bounded spin its locks (and a bounded cache's policy locks) take before sleeping
//! ([`spin`]). Everything `unsafe` in the crate lives here.

pub(crate) mod counter;
pub(crate) mod dirty;
pub(crate) mod entry;
#[cfg(not(syncmap_loom))]
pub(crate) mod epoch;
pub(crate) mod prefetch;
pub(crate) mod read;
pub(crate) mod shard;
pub(crate) mod spin;
pub(crate) mod sync;
pub(crate) mod table_alloc;
pub(crate) mod unwind;
