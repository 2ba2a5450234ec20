//! What `#[memoize]` requires of keys and values, as traits whose compile errors say so in the
//! user's terms, and the dispatch that keeps a rejected function down to those errors.

use std::any::TypeId;
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;

use super::__private::{GenericMemos, MemoDebug, MemoOptions, SiteMemo, StaticMemo};
use super::Memo;
use crate::Equivalent;

/// What a part of a `#[memoize]` cache key must be: `Hash + Eq + Clone + Send + Sync`.
///
/// Every argument of a memoized function (after `&str` → `String`, `&[T]` → `Vec<T>`,
/// `&T` → `T::Owned`), `self` in a method, and the type of a `key: T = expr` option is a key
/// part. Implemented for every type with those traits; a function with an argument that lacks
/// one is a compile error at that argument, which suggests `ignore(arg)` or `key: T = expr`.
///
/// ```
/// fn assert_key_part<T: syncmemo::memo::KeyPart>() {}
/// assert_key_part::<(String, u64)>();
/// assert_key_part::<Vec<u8>>();
/// ```
///
/// ```compile_fail
/// fn assert_key_part<T: syncmemo::memo::KeyPart>() {}
/// assert_key_part::<f64>(); // floats are not `Eq` or `Hash`: key on `x.to_bits()`
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a #[memoize] cache key: a key part must be `Hash + Eq + Clone + Send + Sync`",
    label = "this argument is part of the cache key",
    note = "implement or derive the missing traits, leave the argument out of the key with `#[memoize(ignore(name))]`, or key the cache on other data with `#[memoize(key: T = expr)]` (for a float, `key: u64 = x.to_bits()`)"
)]
pub trait KeyPart {
    /// Names the check in generated code.
    #[doc(hidden)]
    #[inline(always)]
    fn __assert() {}
}

#[diagnostic::do_not_recommend]
impl<T: Hash + Eq + Clone + Send + Sync> KeyPart for T {}

/// What a `#[memoize]` function's return type must be: `Clone + Send + Sync` (a hit returns a
/// clone of the cached value, and the cache is shared between threads).
///
/// Implemented for every type with those traits. Wrap a large or non-`Clone` value in
/// [`Arc`](std::sync::Arc): `fn load(path: &str) -> Arc<Image>`.
///
/// ```
/// fn assert_value<T: syncmemo::memo::MemoValue>() {}
/// assert_value::<std::sync::Arc<Vec<u8>>>();
/// ```
#[diagnostic::on_unimplemented(
    message = "#[memoize] cannot cache values of type `{Self}`: a cached value must be `Clone + Send + Sync`",
    label = "a hit returns a clone of this type, shared between threads",
    note = "return an `Arc` of it (`std::sync::Arc<{Self}>`) if it is `Send + Sync` but not `Clone`"
)]
pub trait MemoValue {
    /// Names the check in generated code.
    #[doc(hidden)]
    #[inline(always)]
    fn __assert() {}
}

#[diagnostic::do_not_recommend]
impl<T: Clone + Send + Sync> MemoValue for T {}

/// Picks the cache's real operations when `K` and `V` meet the requirements, and inert ones
/// otherwise, so that a function rejected by a [`KeyPart`] or [`MemoValue`] check reports only
/// that error (autoref specialization: `(&&Probe).method()` tries `&Probe` first).
pub struct Probe<K, V>(PhantomData<fn() -> (K, V)>);

impl<K, V> Probe<K, V> {
    /// A probe.
    pub const fn new() -> Self {
        Probe(PhantomData)
    }
}

impl<K, V> Default for Probe<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

/// The real operations, for keys and values that meet the requirements.
pub trait ViaMemo<K, V> {
    /// [`StaticMemo::get`].
    fn static_memo(
        &self,
        memo: &'static StaticMemo<K, V>,
        debug: impl FnOnce() -> MemoDebug<K, V>,
    ) -> &'static Memo<K, V>;
    /// [`GenericMemos::get_instance`].
    fn generic_memo(
        &self,
        memos: &'static GenericMemos,
        instance: TypeId,
        name: impl FnOnce() -> &'static str,
        options: MemoOptions,
        debug: impl FnOnce() -> MemoDebug<K, V>,
    ) -> &'static Memo<K, V>;
    /// [`SiteMemo::get`].
    fn site_memo(
        &self,
        memo: &'static SiteMemo<K, V>,
        site: &'static str,
        name: &'static str,
        options: MemoOptions,
        debug: impl FnOnce() -> MemoDebug<K, V>,
    ) -> &'static Memo<K, V>;
    /// [`site_memo_instance`](super::__private::site_memo_instance).
    fn generic_site_memo(
        &self,
        site: &'static str,
        instance: TypeId,
        name: impl FnOnce() -> &'static str,
        options: MemoOptions,
        debug: impl FnOnce() -> MemoDebug<K, V>,
    ) -> &'static Memo<K, V>;
    /// [`Memo::__hit`].
    fn hit<Q: ?Sized + Hash + Equivalent<K>>(
        &self,
        memo: &'static Memo<K, V>,
        key: &Q,
    ) -> Option<V>;
    /// [`Memo::__miss_owned`].
    #[track_caller]
    fn miss(
        &self,
        memo: &'static Memo<K, V>,
        key: K,
        compute: impl FnOnce() -> V,
        keep: impl FnOnce(&V) -> bool,
    ) -> V;
    /// [`Memo::__miss_async`].
    fn miss_async<F: Future<Output = V>>(
        &self,
        memo: &'static Memo<K, V>,
        key: K,
        compute: F,
        keep: impl FnOnce(&V) -> bool,
    ) -> impl Future<Output = V>;
}

impl<K, V> ViaMemo<K, V> for &Probe<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    #[inline]
    fn static_memo(
        &self,
        memo: &'static StaticMemo<K, V>,
        debug: impl FnOnce() -> MemoDebug<K, V>,
    ) -> &'static Memo<K, V> {
        memo.get(debug)
    }
    #[inline]
    fn generic_memo(
        &self,
        memos: &'static GenericMemos,
        instance: TypeId,
        name: impl FnOnce() -> &'static str,
        options: MemoOptions,
        debug: impl FnOnce() -> MemoDebug<K, V>,
    ) -> &'static Memo<K, V> {
        memos.get_instance(instance, name, options, debug)
    }
    #[inline]
    fn site_memo(
        &self,
        memo: &'static SiteMemo<K, V>,
        site: &'static str,
        name: &'static str,
        options: MemoOptions,
        debug: impl FnOnce() -> MemoDebug<K, V>,
    ) -> &'static Memo<K, V> {
        memo.get(site, name, options, debug)
    }
    #[inline]
    fn generic_site_memo(
        &self,
        site: &'static str,
        instance: TypeId,
        name: impl FnOnce() -> &'static str,
        options: MemoOptions,
        debug: impl FnOnce() -> MemoDebug<K, V>,
    ) -> &'static Memo<K, V> {
        super::__private::site_memo_instance(site, instance, name, options, debug)
    }
    #[inline]
    fn hit<Q: ?Sized + Hash + Equivalent<K>>(
        &self,
        memo: &'static Memo<K, V>,
        key: &Q,
    ) -> Option<V> {
        memo.__hit(key)
    }
    #[inline]
    #[track_caller]
    fn miss(
        &self,
        memo: &'static Memo<K, V>,
        key: K,
        compute: impl FnOnce() -> V,
        keep: impl FnOnce(&V) -> bool,
    ) -> V {
        memo.__miss_owned(key, compute, keep)
    }
    #[inline]
    fn miss_async<F: Future<Output = V>>(
        &self,
        memo: &'static Memo<K, V>,
        key: K,
        compute: F,
        keep: impl FnOnce(&V) -> bool,
    ) -> impl Future<Output = V> {
        memo.__miss_async(key, compute, keep)
    }
}

const REJECTED: &str = "#[memoize] reported a compile error for this function";

/// Inert operations for a function whose key or value failed a check: that check is its compile
/// error, so none of these ever runs.
pub trait ViaRejected<K, V> {
    /// Never runs.
    fn static_memo<D>(&self, memo: &'static StaticMemo<K, V>, debug: D) -> &'static Memo<K, V> {
        let _ = (memo, debug);
        unreachable!("{REJECTED}")
    }
    /// Never runs.
    fn generic_memo<N, D>(
        &self,
        memos: &'static GenericMemos,
        instance: TypeId,
        name: N,
        options: MemoOptions,
        debug: D,
    ) -> &'static Memo<K, V> {
        let _ = (memos, instance, name, options, debug);
        unreachable!("{REJECTED}")
    }
    /// Never runs.
    fn site_memo<D>(
        &self,
        memo: &'static SiteMemo<K, V>,
        site: &'static str,
        name: &'static str,
        options: MemoOptions,
        debug: D,
    ) -> &'static Memo<K, V> {
        let _ = (memo, site, name, options, debug);
        unreachable!("{REJECTED}")
    }
    /// Never runs.
    fn generic_site_memo<N, D>(
        &self,
        site: &'static str,
        instance: TypeId,
        name: N,
        options: MemoOptions,
        debug: D,
    ) -> &'static Memo<K, V> {
        let _ = (site, instance, name, options, debug);
        unreachable!("{REJECTED}")
    }
    /// Never runs.
    fn hit<Q: ?Sized>(&self, memo: &'static Memo<K, V>, key: &Q) -> Option<V> {
        let _ = (memo, key);
        unreachable!("{REJECTED}")
    }
    /// Never runs.
    fn miss<C, F>(&self, memo: &'static Memo<K, V>, key: K, compute: C, keep: F) -> V {
        let _ = (memo, key, compute, keep);
        unreachable!("{REJECTED}")
    }
    /// Never runs.
    fn miss_async<C, F>(
        &self,
        memo: &'static Memo<K, V>,
        key: K,
        compute: C,
        keep: F,
    ) -> impl Future<Output = V> {
        let _ = (memo, key, compute, keep);
        async { unreachable!("{REJECTED}") }
    }
}

impl<K, V> ViaRejected<K, V> for Probe<K, V> {}

/// Clones a key part when it is `Clone`, and is inert otherwise (a [`KeyPart`] check then
/// reports it), so that a missing `Clone` is reported once, at the argument.
pub struct CloneProbe<'a, T>(pub &'a T);

/// Picked when the part is `Clone`.
pub trait ViaClone<T> {
    /// A clone of the part.
    fn clone_part(&self) -> T;
}

impl<T: Clone> ViaClone<T> for &CloneProbe<'_, T> {
    #[inline(always)]
    fn clone_part(&self) -> T {
        self.0.clone()
    }
}

/// Picked otherwise; never runs.
pub trait ViaNoClone<T> {
    /// Never runs.
    fn clone_part(&self) -> T {
        unreachable!("{REJECTED}")
    }
}

impl<T> ViaNoClone<T> for CloneProbe<'_, T> {}
