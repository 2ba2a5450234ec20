//! # syncmap
//!
//! Go's `sync.Map` done right in Rust ([`SyncMap`]), plus [`#[memoize]`](memoize), which turns an
//! expensive pure function into a cached one backed by a per-function static sync map.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use syncmap_core::*;
pub use syncmap_macros::memoize;

/// Implementation details used by code that `#[memoize]` generates. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use syncmap_core::memo::__private::*;
}
