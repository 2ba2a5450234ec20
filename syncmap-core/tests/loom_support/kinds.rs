//! What the loom models of the memo (`loom_memo.rs`, `loom_memo_async.rs`) share: the two ways
//! a cache stores its values, and a pair of tests that runs one model on each.

use syncmap_core::memo::__private::MemoOptions;
use syncmap_core::memo::{Memo, MemoConfig};

/// How a model's cache stores its values: a cell per key (as a cache with a TTL does: here a
/// TTL no model reaches), the same with a bound (new cells wait in the policy's window, outside
/// the map, until admitted: `memo/window.rs`), or the values in the map with the computations
/// in flight beside them (a plain cache, `memo/plain.rs`).
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Cells,
    Bounded,
    Plain,
}

/// A fresh cache of `kind`, leaked: the memo API takes `&'static self`, as generated code
/// holds it in a `static`.
pub fn new_memo(kind: Kind) -> &'static Memo<u64, u64> {
    let mut config: MemoConfig = MemoOptions::DEFAULT.into();
    match kind {
        Kind::Cells => config.ttl = Some(std::time::Duration::from_secs(3600)),
        Kind::Bounded => config.capacity = Some(2),
        Kind::Plain => {}
    }
    Box::leak(Box::new(Memo::new("loom::f", config)))
}

/// Three tests of one model (a function of a [`Kind`]), one per kind.
macro_rules! for_each_kind {
    ($name:ident, $cells:ident, $plain:ident, $bounded:ident) => {
        #[test]
        fn $cells() {
            $name(Kind::Cells);
        }

        #[test]
        fn $plain() {
            $name(Kind::Plain);
        }

        #[test]
        fn $bounded() {
            $name(Kind::Bounded);
        }
    };
}

pub(crate) use for_each_kind;
