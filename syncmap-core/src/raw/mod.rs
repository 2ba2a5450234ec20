//! Internals of [`SyncMap`](crate::SyncMap).
