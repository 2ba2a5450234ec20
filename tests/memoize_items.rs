//! `#[memoize]` keeps the function's attributes (here `cfg`, which must reach all three generated
//! items or the two `twice` definitions below would clash) and gives `<fn>_cache()` and
//! `<fn>_uncached` the function's visibility (the private case is `tests/ui/private_cache.rs`).

use syncmemo::memoize;

mod inner {
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub static CALLS: AtomicUsize = AtomicUsize::new(0);

    /// Public: the siblings are public too.
    #[syncmemo::memoize]
    pub fn visible(x: u64) -> u64 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        x + 1
    }

    #[syncmemo::memoize]
    pub(crate) fn crate_visible(x: u64) -> u64 {
        x + 2
    }
}

#[memoize]
#[cfg(any())]
fn twice(x: u64) -> u64 {
    x
}

#[memoize]
#[cfg(not(any()))]
fn twice(x: u64) -> u64 {
    x * 2
}

#[memoize]
#[must_use]
#[inline]
fn kept(x: u8) -> u8 {
    x
}

#[test]
fn siblings_have_the_function_visibility() {
    use std::sync::atomic::Ordering;
    assert_eq!(inner::visible(1), 2);
    assert_eq!(inner::visible(1), 2);
    assert_eq!(inner::CALLS.load(Ordering::SeqCst), 1);
    let cache: &'static syncmemo::Memo<u64, u64> = inner::visible_cache();
    assert_eq!(cache.get(&1), Some(2));
    assert_eq!(inner::visible_uncached(1), 2);
    assert_eq!(inner::CALLS.load(Ordering::SeqCst), 2);
    assert_eq!(inner::crate_visible(1), 3);
    assert_eq!(inner::crate_visible_cache().len(), 1);
    assert_eq!(inner::crate_visible_uncached(5), 7);
}

#[test]
fn cfg_and_other_attributes_are_kept() {
    assert_eq!(twice(4), 8);
    assert_eq!(twice_cache().get(&4), Some(8));
    assert_eq!(twice_uncached(5), 10);
    assert_eq!(kept(3), 3);
    assert!(
        kept_cache().name().ends_with("::kept"),
        "{}",
        kept_cache().name()
    );
}
