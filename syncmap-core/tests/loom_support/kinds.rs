//! What the loom models of the memo (`loom_memo.rs`, `loom_memo_async.rs`) share: the two ways
//! a cache stores its values, and a pair of tests that runs one model on each.

use syncmap_core::memo::__private::MemoOptions;
use syncmap_core::memo::{Memo, MemoConfig};

/// How a model's cache stores its values: a cell per key (as a cache with a bound or a TTL
/// does: here a TTL no model reaches), or the values in the map with the computations in
/// flight beside them (a plain cache, `memo/plain.rs`).
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Cells,
    Plain,
}

/// A fresh cache of `kind`, leaked: the memo API takes `&'static self`, as generated code
/// holds it in a `static`.
pub fn new_memo(kind: Kind) -> &'static Memo<u64, u64> {
    let mut config: MemoConfig = MemoOptions::DEFAULT.into();
    if let Kind::Cells = kind {
        config.ttl = Some(std::time::Duration::from_secs(3600));
    }
    Box::leak(Box::new(Memo::new("loom::f", config)))
}

/// Two tests of one model (a function of a [`Kind`]), one per kind.
macro_rules! for_both_kinds {
    ($name:ident, $cells:ident, $plain:ident) => {
        #[test]
        fn $cells() {
            $name(Kind::Cells);
        }

        #[test]
        fn $plain() {
            $name(Kind::Plain);
        }
    };
}

pub(crate) use for_both_kinds;
