//! The `async fn` form: the same lookup and key as the synchronous form, a miss that awaits
//! the runtime's async single flight, and the checks only async functions need.

use proc_macro2::TokenStream;
use quote::quote;
use syn::visit::Visit;
use syn::{Block, Type};

/// The error for a function that returns a future by hand.
pub(crate) const FUTURE_RETURN: &str = "#[memoize] caches values, not futures: write `async fn \
     name(..) -> T` and the attribute caches the `T` (a future can be awaited only once)";

/// The error for `#[memoize]` on a `static` or `const` initialized with a closure, an async
/// closure or an async block (`static FETCH: fn(u64) -> BoxFuture<..> = |id| Box::pin(async
/// move { .. })`), if it is one: spanned at the first async closure or block, else at the
/// closure.
pub(crate) fn closure_or_async_block(item: &TokenStream) -> Option<syn::Error> {
    struct Finder<'a> {
        found: Option<(&'a syn::Expr, &'static str)>,
    }
    impl<'ast> Visit<'ast> for Finder<'ast> {
        fn visit_expr(&mut self, expr: &'ast syn::Expr) {
            if self.found.is_some() {
                return;
            }
            match expr {
                syn::Expr::Closure(closure) if closure.asyncness.is_some() => {
                    self.found = Some((expr, "an async closure"));
                }
                syn::Expr::Async(_) => self.found = Some((expr, "an async block")),
                _ => syn::visit::visit_expr(self, expr),
            }
        }
    }
    let item = syn::parse2::<syn::Item>(item.clone()).ok()?;
    let expr = match &item {
        syn::Item::Static(item) => &item.expr,
        syn::Item::Const(item) => &item.expr,
        _ => return None,
    };
    let mut finder = Finder { found: None };
    finder.visit_expr(expr);
    let (at, what) = match finder.found {
        Some(found) => found,
        None if matches!(&**expr, syn::Expr::Closure(_)) => (&**expr, "a closure"),
        None => return None,
    };
    Some(syn::Error::new_spanned(
        at,
        format!(
            "#[memoize] cannot cache {what}: it applies to functions; write `async fn name(..) \
             -> T` (or `fn name(..) -> T`) and the attribute caches the `T`"
        ),
    ))
}

/// The miss of an `async fn`, awaited: `compute` is the body's future, polled only by the
/// caller that computes. Outside a known `impl` the body is inlined as an `async move` block
/// (the siblings cannot be named); in an `impl`, it is `Self::f_uncached(..)`.
pub(crate) fn miss(
    sync_compute_in_impl: Option<TokenStream>,
    block: &Block,
    make_key: &TokenStream,
    keep: &TokenStream,
) -> TokenStream {
    let compute = match sync_compute_in_impl {
        Some(call) => call,
        None => quote!(async move #block),
    };
    // Boxed: the miss's state (the body's future, the single flight's listener) lives on the
    // heap, so the future a call returns is the arguments and a pointer. A hit never creates
    // it; a miss allocates anyway (the owned key, the cell).
    quote! {
        ::std::boxed::Box::pin(
            __syncmap_probe.miss_async(__syncmap_memo, #make_key, #compute, #keep)
        ).await
    }
}

/// The part of a return type that names a future (`impl Future<..>`, `dyn Future<..>`,
/// `Pin<Box<dyn Future<..>>>`, `BoxFuture<..>`), if any.
pub(crate) fn names_a_future(ty: &Type) -> Option<&Type> {
    struct Finder<'a> {
        outer: &'a Type,
        found: bool,
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_path_segment(&mut self, segment: &'ast syn::PathSegment) {
            let name = segment.ident.to_string();
            if matches!(
                name.as_str(),
                "Future" | "IntoFuture" | "BoxFuture" | "LocalBoxFuture"
            ) {
                self.found = true;
            }
            syn::visit::visit_path_segment(self, segment);
        }
    }
    let mut finder = Finder {
        outer: ty,
        found: false,
    };
    finder.visit_type(ty);
    finder.found.then_some(finder.outer)
}
