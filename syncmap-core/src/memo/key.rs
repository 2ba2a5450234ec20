//! Borrowed views of tuple keys, so that a cache hit on `f(a: &str, b: &str)` looks up
//! `(String, String)` without building one.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

use crate::Equivalent;

/// A borrowed view of a tuple key, to look up a cache keyed by owned tuples without building
/// one: `KeyRef(("a", "b"))` finds the key `("a".to_string(), "b".to_string())`.
///
/// `KeyRef((&a, &b, ..))` (up to 12 parts) finds the key `(A, B, ..)` when `A: Borrow<Qa>`,
/// `B: Borrow<Qb>`, ...: `&str` for `String`, `&[T]` for `Vec<T>`, `&T` for `T`. It hashes
/// exactly like the owned tuple (tuples hash their fields in order, and `Borrow` requires
/// equal hashes), and compares field by field. A plain tuple of references cannot be used
/// directly: `(String, String)` does not implement `Borrow<(&str, &str)>`.
///
/// ```
/// use syncmemo::memo::KeyRef;
///
/// #[syncmemo::memoize]
/// fn price(shop: &str, item: &str) -> u64 {
///     (shop.len() * 100 + item.len()) as u64
/// }
/// price("a", "b");
/// assert_eq!(price_cache().get(&KeyRef(("a", "b"))), Some(101));
/// assert!(price_cache().invalidate(&KeyRef(("a", "b"))));
/// assert_eq!(price_cache().get(&KeyRef(("a", "b"))), None);
///
/// // Parts that are not references are borrowed too.
/// let map: syncmemo::SyncMap<(String, u64), u8> = syncmemo::SyncMap::new();
/// map.store(("a".to_string(), 1), 7);
/// assert_eq!(map.load(&KeyRef(("a", &1u64))), Some(7));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct KeyRef<T>(pub T);

macro_rules! key_ref {
    ($(($($owned:ident $borrowed:ident $index:tt),+))+) => {$(
        impl<$($borrowed: ?Sized + Hash),+> Hash for KeyRef<($(&$borrowed,)+)> {
            fn hash<H: Hasher>(&self, state: &mut H) {
                $(self.0.$index.hash(state);)+
            }
        }

        impl<$($owned,)+ $($borrowed),+> Equivalent<($($owned,)+)> for KeyRef<($(&$borrowed,)+)>
        where
            $($owned: Borrow<$borrowed>, $borrowed: ?Sized + Eq,)+
        {
            fn equivalent(&self, key: &($($owned,)+)) -> bool {
                $(self.0.$index == key.$index.borrow())&&+
            }
        }
    )+};
}

key_ref! {
    (A0 Q0 0)
    (A0 Q0 0, A1 Q1 1)
    (A0 Q0 0, A1 Q1 1, A2 Q2 2)
    (A0 Q0 0, A1 Q1 1, A2 Q2 2, A3 Q3 3)
    (A0 Q0 0, A1 Q1 1, A2 Q2 2, A3 Q3 3, A4 Q4 4)
    (A0 Q0 0, A1 Q1 1, A2 Q2 2, A3 Q3 3, A4 Q4 4, A5 Q5 5)
    (A0 Q0 0, A1 Q1 1, A2 Q2 2, A3 Q3 3, A4 Q4 4, A5 Q5 5, A6 Q6 6)
    (A0 Q0 0, A1 Q1 1, A2 Q2 2, A3 Q3 3, A4 Q4 4, A5 Q5 5, A6 Q6 6, A7 Q7 7)
    (A0 Q0 0, A1 Q1 1, A2 Q2 2, A3 Q3 3, A4 Q4 4, A5 Q5 5, A6 Q6 6, A7 Q7 7, A8 Q8 8)
    (A0 Q0 0, A1 Q1 1, A2 Q2 2, A3 Q3 3, A4 Q4 4, A5 Q5 5, A6 Q6 6, A7 Q7 7, A8 Q8 8, A9 Q9 9)
    (A0 Q0 0, A1 Q1 1, A2 Q2 2, A3 Q3 3, A4 Q4 4, A5 Q5 5, A6 Q6 6, A7 Q7 7, A8 Q8 8, A9 Q9 9, A10 Q10 10)
    (A0 Q0 0, A1 Q1 1, A2 Q2 2, A3 Q3 3, A4 Q4 4, A5 Q5 5, A6 Q6 6, A7 Q7 7, A8 Q8 8, A9 Q9 9, A10 Q10 10, A11 Q11 11)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn hashes_like_the_owned_tuple() {
        let state = std::collections::hash_map::RandomState::new();
        let owned = ("ab".to_string(), vec![1u8, 2], 7u64);
        let view = KeyRef(("ab", &[1u8, 2][..], &7u64));
        assert_eq!(state.hash_one(&owned), state.hash_one(view));
        assert!(view.equivalent(&owned));
        assert!(!KeyRef(("ab", &[1u8][..], &7u64)).equivalent(&owned));
    }
}
