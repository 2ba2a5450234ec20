//! The runtime of [`syncmap`](https://docs.rs/syncmap): [`SyncMap`], a concurrent map with the
//! read/dirty design of Go's `sync.Map`, and the [`memo`] runtime behind `#[memoize]`.
//!
//! Most users depend on the `syncmap` crate, which re-exports everything here.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod map;
pub mod memo;
mod raw;

pub use equivalent::Equivalent;
pub use map::SyncMap;
pub use memo::{Memo, MemoStats};
